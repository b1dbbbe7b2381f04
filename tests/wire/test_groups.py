"""Committed offsets over the wire are the offsets of rafka's consumer groups: a
confluent-kafka consumer (assigning partitions itself) commits and reads them, rafka's
own consumers and Admin see the same group."""

import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from test_confluent_kafka import produce

TIMEOUT_S = 60


def group_name() -> str:
    return f"wire-group-{uuid.uuid4().hex[:8]}"


def test_wire_commit_is_shown_by_rafka_and_resumed_by_a_native_consumer(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    produce(bootstrap, topic, [{"value": f"{i}".encode(), "partition": 0} for i in range(10)])
    group = group_name()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 6)], asynchronous=False)
        [committed] = consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)
        assert committed.offset == 6
    finally:
        consumer.close()
    described = cluster.admin().describe_group(group)
    assert [(p["partition"], p["committed_offset"], p["lag"]) for p in described["partitions"]] == [(0, 6, 4)]
    native = cluster.consumer(group_id=group, auto_offset_reset="earliest")
    native.subscribe([topic])
    try:
        records, deadline = [], time.monotonic() + TIMEOUT_S
        while len(records) < 4:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the native group member read {len(records)} of 4 records")
            records.extend(native.poll(timeout_s=1.0))
        assert [r.offset for r in records] == [6, 7, 8, 9]
    finally:
        native.close()


def test_native_commit_is_read_by_a_wire_consumer(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    producer = cluster.producer()
    for _ in range(5):
        producer.send(topic, value=b"v", partition=1)
    producer.flush()
    producer.close()
    group = group_name()
    native = cluster.consumer(group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    native.subscribe([topic])
    try:
        records, deadline = [], time.monotonic() + TIMEOUT_S
        while len(records) < 5:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the native group member read {len(records)} of 5 records")
            records.extend(native.poll(timeout_s=1.0))
        native.commit()
    finally:
        native.close()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=TIMEOUT_S)
        # The native consumer commits its position on every assigned partition, 0 where it read nothing.
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 0), (1, 5)]
    finally:
        consumer.close()


def test_wire_commit_to_a_group_with_active_members_is_refused(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    group = group_name()
    native = cluster.consumer(group_id=group, auto_offset_reset="earliest")
    native.subscribe([topic])
    try:
        native.poll(timeout_s=2.0)
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
            except Exception as error:  # noqa: BLE001 - confluent-kafka raises KafkaException
                assert "UNKNOWN_MEMBER_ID" in str(error)
            else:
                raise AssertionError("a commit without membership was accepted while the group has a member")
        finally:
            consumer.close()
    finally:
        native.close()


def test_list_consumer_groups_shows_a_wire_committed_group_as_rafka_does(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    group = group_name()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept: librdkafka drops requests of a freed client
    result = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert group in {g.group_id for g in result.valid}
    assert group in {g["group_id"] for g in cluster.admin().list_groups()}
