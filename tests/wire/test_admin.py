"""Kafka admin requests and InitProducerId through the listener, driven by librdkafka's
AdminClient and an idempotent confluent-kafka producer, checked against rafka's Admin."""

import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic
from test_confluent_kafka import consume

TIMEOUT_S = 60


def wait(futures: dict) -> dict:
    return {key: future.result(timeout=TIMEOUT_S) for key, future in futures.items()}


def test_create_topics_makes_a_rafka_topic_with_partitions_replicas_and_configs(cluster, bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait(admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=2,
                                       config={"retention.ms": "600000"})], operation_timeout=30))
    described = cluster.admin().describe_topic(topic)
    assert len(described["partitions"]) == 3
    assert all(len(partition["replicas"]) == 2 for partition in described["partitions"])
    assert described["config"]["retention.ms"] == "600000"


def test_create_topics_of_an_existing_topic_fails_with_topic_already_exists(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException) as raised:
        wait(admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]))
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_topics_with_a_bad_name_fails_naming_it(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException) as raised:
        wait(admin.create_topics([NewTopic("bad:name", num_partitions=1, replication_factor=1)]))
    assert "bad:name" in str(raised.value)


def test_delete_topics_removes_the_topic(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait(admin.delete_topics([topic], operation_timeout=30))
    assert topic not in cluster.admin().list_topics()


def test_delete_topics_of_an_unknown_topic_fails_with_unknown_topic(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException) as raised:
        wait(admin.delete_topics([f"never-created-{uuid.uuid4().hex[:6]}"]))
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_create_partitions_grows_the_topic(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait(admin.create_partitions([NewPartitions(topic, 3)]))
    assert len(cluster.admin().describe_topic(topic)["partitions"]) == 3


def test_describe_configs_marks_overrides_and_defaults(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, config={"retention.ms": "123456"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [configs] = wait(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])).values()
    assert configs["retention.ms"].value == "123456" and not configs["retention.ms"].is_default
    expected = cluster.admin().describe_configs(topic)
    assert {name: entry.value for name, entry in configs.items()} == {k: str(v) for k, v in expected.items()}
    assert any(entry.is_default for entry in configs.values())


def test_incremental_alter_configs_sets_deletes_and_subtracts_topic_configs(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, config={"retention.ms": "123456", "segment.bytes": "1048576",
                                                "cleanup.policy": "compact,delete"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "654321", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT)])
    wait(admin.incremental_alter_configs([resource]))
    overrides = cluster.admin().describe_topic(topic)["config"]
    assert overrides["retention.ms"] == "654321" and "segment.bytes" not in overrides
    assert overrides["cleanup.policy"] == "compact"


def test_incremental_alter_configs_with_a_bad_value_fails_naming_it_and_changes_nothing(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, config={"retention.ms": "123456"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "1", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "lots", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException, match="lots"):
        wait(admin.incremental_alter_configs([resource]))
    assert cluster.admin().describe_topic(topic)["config"]["retention.ms"] == "123456"


def test_describe_cluster_lists_every_broker_listener(cluster, bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert sorted(f"{node.host}:{node.port}" for node in described.nodes) == sorted(bootstrap.split(","))


def test_idempotent_producer_gets_a_producer_id_and_writes_in_order_once(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1, replication_factor=2)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2,
                         "batch.num.messages": 50})
    errors = []
    values = [f"{i}".encode() for i in range(500)]
    for value in values:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda error, _m: error and errors.append(error))
    assert producer.flush(TIMEOUT_S) == 0 and not errors
    assert [m.value() for m in consume(bootstrap, topic, [0], len(values))] == values
