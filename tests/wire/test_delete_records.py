"""DeleteRecords through the listener with librdkafka's AdminClient, and rafka's own
Admin.delete_records: the log start offset moves on the leader and on its in-sync
follower, consumers start there, and it stays there after the leader fails over."""

import time

import pytest
import ray
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from test_confluent_kafka import consume, produce
from test_idempotent_failover import wait_until

import rafka
from rafka.actors import names

DEADLINE_S = 60.0


def replica_status(cluster, topic: str, broker_id: int) -> dict:
    return ray.get(ray.get_actor(names.replica(topic, 0, broker_id), namespace=cluster.namespace).status.remote())


def test_delete_records_moves_the_start_on_leader_and_follower_and_survives_a_failover(cluster, bootstrap, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2)
    wait_until(lambda: len(admin.describe_topic(topic)["partitions"][0]["isr"]) == 2)
    produce(bootstrap, topic, [{"value": b"r%03d" % i, "partition": 0} for i in range(100)], acks="all")
    client = AdminClient({"bootstrap.servers": bootstrap})
    [future] = client.delete_records([TopicPartition(topic, 0, 40)], request_timeout=30).values()
    assert future.result(timeout=DEADLINE_S).low_watermark == 40
    state = admin.describe_topic(topic)["partitions"][0]
    assert [replica_status(cluster, topic, b)["log_start_offset"] for b in state["replicas"]] == [40, 40]
    messages = consume(bootstrap, topic, [0], 60)
    assert [m.offset() for m in messages] == list(range(40, 100))
    assert [m.value() for m in messages] == [b"r%03d" % i for i in range(40, 100)]

    # Past the high watermark: refused, nothing deleted.
    [future] = client.delete_records([TopicPartition(topic, 0, 500)], request_timeout=30).values()
    with pytest.raises(KafkaException, match="OFFSET_OUT_OF_RANGE"):
        future.result(timeout=DEADLINE_S)
    assert admin.list_offsets(topic, "earliest") == {0: 40}

    # The follower that takes over starts at 40 too.
    ray.kill(ray.get_actor(names.replica(topic, 0, state["leader"]), namespace=cluster.namespace), no_restart=False)
    wait_until(lambda: admin.describe_topic(topic)["partitions"][0]["leader_epoch"] > state["leader_epoch"])
    assert wait_until(lambda: _earliest(admin, topic)) == 40


def _earliest(admin, topic: str) -> int | None:
    try:
        return admin.list_offsets(topic, "earliest")[0]
    except rafka.RafkaError:
        return None


def test_admin_delete_records_to_the_high_watermark_and_a_consumer_below_it_resets(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    with cluster.producer() as producer:
        for index in range(50):
            producer.send(topic, b"v%d" % index, partition=index % 2)
    assert admin.delete_records(topic, {0: -1, 1: 10}) == {0: 25, 1: 10}
    assert admin.list_offsets(topic, "earliest") == {0: 25, 1: 10}
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": "unused-assign-only",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 1, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 15 and time.monotonic() < deadline:
            got += [m.offset() for m in consumer.consume(15, timeout=1.0) if not m.error()]
        assert got == list(range(10, 25))
    finally:
        consumer.close()
    with pytest.raises(ValueError, match="partition 7"):
        admin.delete_records(topic, {7: 1})
    with pytest.raises(ValueError, match="offset must be an int >= -1, got 'x'"):
        admin.delete_records(topic, {0: "x"})
