"""Kafka's consumer group protocol (KIP-848, ``group.protocol=consumer``) with a real
client: librdkafka consumers join through ConsumerGroupHeartbeat, the server assigns
(rafka's coordinator), they split a topic, one leaves, the survivor takes every
partition and re-reads nothing that was committed; a librdkafka member and a native
rafka consumer share one group, since both speak the coordinator's own protocol (so the
single-owner rule holds between them as the coordinator's tests show it for natives)."""

import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition
from test_classic_groups import DEADLINE_S, Tracker, run_two_members_then_one_leaves


def group_name() -> str:
    return f"kip848-{uuid.uuid4().hex[:8]}"


class ConsumerProtocolMember:
    """A librdkafka member of the consumer protocol that commits what it got, synchronously."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.committed_now: dict[int, int] = {}

    def poll(self) -> list[tuple[int, int]]:
        self.committed_now = {}
        messages = []
        for message in self.consumer.consume(100, timeout=0.3):
            if message.error():
                raise KafkaException(message.error())
            messages.append(message)
        if not messages:
            return []
        latest = {}
        for message in messages:
            latest[message.partition()] = message.offset()
        try:
            self.consumer.commit(offsets=[TopicPartition(messages[0].topic(), p, o + 1) for p, o in latest.items()],
                                 asynchronous=False)
            self.committed_now = latest
        except KafkaException:
            pass  # refused (the partition moved meanwhile): these may be read again
        return [(m.partition(), m.offset()) for m in messages]

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.consumer.close()


def test_consumer_protocol_members_split_partitions_and_the_survivor_takes_over(cluster, bootstrap, topic):
    # KIP-848's default assignor, "uniform", is rafka's "sticky".
    group = run_two_members_then_one_leaves(
        cluster, bootstrap, topic, lambda b, g, t, _assignor: ConsumerProtocolMember(b, g, t), "sticky",
        protocol="consumer")
    described = cluster.admin().describe_group(group)
    assert described["state"] == "Empty" or not described["members"], described


def test_a_consumer_protocol_member_and_a_native_consumer_share_one_group(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    group = group_name()
    wire = Tracker(ConsumerProtocolMember(bootstrap, group, topic))
    native = cluster.consumer(group_id=group, auto_offset_reset="earliest")
    native.subscribe([topic])
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            wire.poll()
            native.poll(timeout_s=0.2)
            wire_owned, native_owned = wire.member.assignment(), {tp.partition for tp in native.assignment()}
            if len(wire_owned) == 1 and len(native_owned) == 1 and not wire_owned & native_owned:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no split: wire owns {sorted(wire_owned)}, native owns {sorted(native_owned)}")
        members = cluster.admin().describe_group(group)["members"]
        assert len(members) == 2 and sorted(tp for m in members for tp in m["assignment"]) == [(topic, 0), (topic, 1)]
    finally:
        wire.member.close()
        native.close()
