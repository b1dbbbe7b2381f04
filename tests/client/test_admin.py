"""Topic administration against a live cluster."""

from __future__ import annotations

import pytest

import rafka


def test_create_topic_places_partitions_on_distinct_brokers_and_lists_it(cluster, topic):
    admin = cluster.admin()
    description = admin.create_topic(topic, partitions=4, config={"retention.ms": "3600000"})
    assert [p["partition"] for p in description["partitions"]] == [0, 1, 2, 3]
    assert {p["leader"] for p in description["partitions"]} == {0, 1}  # spread over both brokers
    assert all(p["leader_epoch"] == 0 and p["replicas"] == [p["leader"]] for p in description["partitions"])
    assert topic in admin.list_topics()
    assert admin.describe_topic(topic)["config"] == {"retention.ms": "3600000"}


def test_create_existing_topic_raises_topic_exists(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic)
    with pytest.raises(rafka.TopicExistsError, match=topic):
        admin.create_topic(topic)


@pytest.mark.parametrize(
    ("name", "partitions", "config", "error", "message"),
    [
        ("bad name!", 1, None, rafka.InvalidTopicError, "'bad name!'"),
        ("", 1, None, rafka.InvalidTopicError, "invalid topic name ''"),
        ("ok", 0, None, rafka.InvalidTopicError, "partitions must be at least 1, got 0"),
        ("ok", "3", None, rafka.InvalidTopicError, "partitions must be an int, got '3'"),
        ("ok", 1, {"retention.ms": "forever"}, rafka.InvalidConfigError, "'retention.ms' must be an integer, got 'forever'"),
        ("ok", 1, {"no.such.config": "1"}, rafka.InvalidConfigError, "unknown topic config 'no.such.config'"),
    ],
)
def test_invalid_topic_requests_name_the_bad_value(cluster, name, partitions, config, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        cluster.admin().create_topic(name, partitions=partitions, config=config)
    assert name not in cluster.admin().list_topics()


def test_replication_factor_above_broker_count_is_rejected(cluster, topic):
    with pytest.raises(rafka.InvalidTopicError, match="replication_factor 3 is more than the 2 live brokers"):
        cluster.admin().create_topic(topic, replication_factor=3)


def test_describe_unknown_topic_raises_topic_not_found(cluster):
    with pytest.raises(rafka.TopicNotFoundError, match="no-such-topic"):
        cluster.admin().describe_topic("no-such-topic")


def test_alter_configs_validates_persists_and_resets(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic)
    configs = admin.alter_configs(topic, {"retention.bytes": "1048576", "cleanup.policy": "compact"})
    assert configs["retention.bytes"] == "1048576" and configs["cleanup.policy"] == "compact"
    with pytest.raises(rafka.InvalidConfigError, match="'cleanup.policy' must be one of"):
        admin.alter_configs(topic, {"cleanup.policy": "sometimes"})
    assert admin.describe_configs(topic)["cleanup.policy"] == "compact"
    assert admin.alter_configs(topic, {"cleanup.policy": None})["cleanup.policy"] == "delete"


def test_create_partitions_grows_a_topic_and_producers_use_them(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1)
    admin.create_partitions(topic, 3)
    assert len(admin.describe_topic(topic)["partitions"]) == 3
    with pytest.raises(rafka.InvalidTopicError, match="must be more, got 2"):
        admin.create_partitions(topic, 2)
    producer = cluster.producer()
    assert producer.send(topic, b"x", partition=2).result(timeout=30).partition == 2
    producer.close()


def test_delete_topic_removes_it_and_its_data(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    producer = cluster.producer()
    producer.send(topic, b"doomed").result(timeout=30)
    producer.close()
    admin.delete_topic(topic)
    assert topic not in admin.list_topics()
    with pytest.raises(rafka.TopicNotFoundError):
        cluster.producer().send(topic, b"x")
    admin.create_topic(topic, partitions=2)
    assert admin.list_offsets(topic, "latest") == {0: 0, 1: 0}


def test_a_single_node_cluster_runs_one_voter_under_the_controller_name_without_a_router(cluster):
    # A quorum of one has nothing to route between: its voter carries the controller's
    # name itself, so the embedded default starts one process fewer (issue 19's start time).
    import ray

    from rafka.actors import names

    quorum = cluster.quorum()
    assert quorum["leader"] == "0" and quorum["lag"] == {"0": 0}
    assert [(voter["voter_id"], voter["role"], voter["reachable"]) for voter in quorum["voters"]] == [("0", "leader", True)]
    assert ray.get(cluster.controller.status.remote(), timeout=30)["voter_id"] == "0"
    named = {actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
             if actor["namespace"] == cluster.namespace}
    assert names.CONTROLLER in named and names.raft_voter("0") not in named
