"""Kafka's classic group protocol with real clients: confluent-kafka (each of range,
roundrobin and cooperative-sticky), kafka-python and aiokafka consumers in one group
split a multi-partition topic, one leaves, the other takes every partition and re-reads
nothing that was committed; the group is a rafka group (Admin.describe_group) and Kafka's
admin requests describe and delete both kinds of group."""

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata as AioOffsetAndMetadata, TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, ConsumerGroupState, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition as KafkaTopicPartition
from test_confluent_kafka import produce

import rafka

DEADLINE_S = 90
PARTITIONS = 4
RECORDS_PER_PHASE = 40


def group_name() -> str:
    return f"classic-{uuid.uuid4().hex[:8]}"


class ConfluentMember:
    """A confluent-kafka group member that commits every record it got, synchronously."""

    def __init__(self, bootstrap: str, group: str, topic: str, assignor: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False, "partition.assignment.strategy": assignor,
                                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        self.consumer.subscribe([topic])

    def poll(self) -> list[tuple[int, int]]:
        self.committed_now = {}
        messages = [m for m in self.consumer.consume(100, timeout=0.3) if not m.error()]
        if not messages:
            return []
        latest = {}
        for message in messages:
            latest[message.partition()] = message.offset()
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic_of(messages), p, o + 1) for p, o in latest.items()],
                                 asynchronous=False)
            self.committed_now = latest
        except KafkaException:
            self.committed_now = {}  # refused (a rebalance meanwhile): these may be read again
        return [(m.partition(), m.offset()) for m in messages]

    @staticmethod
    def topic_of(messages) -> str:
        return messages[0].topic()

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.consumer.close()


class KafkaPythonMember:
    def __init__(self, bootstrap: str, group: str, topic: str, assignor: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      session_timeout_ms=10000, heartbeat_interval_ms=500)

    def poll(self) -> list[tuple[int, int]]:
        got = [(tp.partition, r.offset) for tp, records in self.consumer.poll(timeout_ms=300).items() for r in records]
        latest = {}
        for partition, offset in got:
            latest[partition] = max(offset, latest.get(partition, -1))
        self.committed_now = {}
        if latest:
            try:
                self.consumer.commit({KafkaTopicPartition(self.topic, p): OffsetAndMetadata(o + 1, "", -1)
                                      for p, o in latest.items()})
                self.committed_now = latest
            except Exception:  # noqa: BLE001 - CommitFailedError and friends: may be read again
                pass
        return got

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.consumer.close()


class AiokafkaMember:
    """An aiokafka member driven from the test thread on an event loop of its own."""

    loop: asyncio.AbstractEventLoop

    def __init__(self, bootstrap: str, group: str, topic: str, assignor: str) -> None:
        self.topic = topic
        self.consumer = self.loop.run_until_complete(self._start(bootstrap, group, topic))

    @staticmethod
    async def _start(bootstrap, group, topic):
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                    enable_auto_commit=False, session_timeout_ms=10000, heartbeat_interval_ms=500)
        await consumer.start()
        return consumer

    def poll(self) -> list[tuple[int, int]]:
        batches = self.loop.run_until_complete(self.consumer.getmany(timeout_ms=300))
        got = [(tp.partition, r.offset) for tp, records in batches.items() for r in records]
        latest = {}
        for partition, offset in got:
            latest[partition] = max(offset, latest.get(partition, -1))
        self.committed_now = {}
        if latest:
            try:
                self.loop.run_until_complete(self.consumer.commit(
                    {AioTopicPartition(self.topic, p): AioOffsetAndMetadata(o + 1, "") for p, o in latest.items()}))
                self.committed_now = latest
            except Exception:  # noqa: BLE001 - CommitFailedError and friends: may be read again
                pass
        return got

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())


class Tracker:
    """What one member received and what it committed (per partition, the next offset)."""

    def __init__(self, member) -> None:
        self.member = member
        self.received: list[tuple[int, int]] = []
        self.committed: dict[int, int] = {}

    def poll(self) -> None:
        got = self.member.poll()
        self.received.extend(got)
        for partition, offset in getattr(self.member, "committed_now", {}).items():
            self.committed[partition] = max(self.committed.get(partition, 0), offset + 1)


def poll_until(trackers: list[Tracker], done, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: assignments {[sorted(t.member.assignment()) for t in trackers]}, "
                               f"received {[len(t.received) for t in trackers]}")
        for tracker in trackers:
            tracker.poll()


def produce_phase(bootstrap: str, topic: str, phase: int) -> set[tuple[int, int]]:
    delivered = produce(bootstrap, topic, [{"value": f"{phase}-{i}".encode(), "partition": i % PARTITIONS}
                                           for i in range(RECORDS_PER_PHASE)])
    return {(m.partition(), m.offset()) for m in delivered}


def run_two_members_then_one_leaves(cluster, bootstrap: str, topic: str, make_member, assignor: str,
                                    protocol: str = "classic") -> str:
    """Two members split the topic, one leaves, the survivor takes everything (module
    docstring); rafka describes the group with ``protocol`` and ``assignor``. Returns
    the group id."""
    cluster.admin().create_topic(topic, partitions=PARTITIONS)
    group = group_name()
    first = produce_phase(bootstrap, topic, 0)
    a = Tracker(make_member(bootstrap, group, topic, assignor))
    b = Tracker(make_member(bootstrap, group, topic, assignor))
    try:
        everything = set(range(PARTITIONS))

        def split() -> bool:
            left, right = a.member.assignment(), b.member.assignment()
            return bool(left) and bool(right) and not left & right and left | right == everything

        poll_until([a, b], lambda: split() and first <= set(a.received) | set(b.received),
                   "both members assigned and the first records read")
        description = cluster.admin().describe_group(group)
        assert description["protocol"] == protocol and description["assignor"] == assignor
        assert sorted(tp for m in description["members"] for tp in m["assignment"]) == [
            (topic, p) for p in range(PARTITIONS)]
        assert all(m["topics"] == [topic] for m in description["members"])
        second = produce_phase(bootstrap, topic, 1)
        poll_until([a, b], lambda: second <= set(a.received) | set(b.received), "the second records read")
        a.member.close()
        third = produce_phase(bootstrap, topic, 2)
        poll_until([b], lambda: b.member.assignment() == everything and third <= set(b.received),
                   "the survivor owns every partition and read the third records")
    finally:
        for tracker in (a, b):
            try:
                tracker.member.close()
            except Exception:  # noqa: BLE001 - already closed
                pass
    # At least once: everything was read; nothing the leaver committed was read again.
    assert first | second | third <= set(a.received) | set(b.received)
    re_read = [(p, o) for p, o in set(a.received) & set(b.received) if o < a.committed.get(p, 0)]
    assert not re_read, f"records committed by the member that left were read again: {sorted(re_read)[:10]}"
    return group


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_confluent_kafka_group_splits_partitions_and_survivor_takes_over_with_each_assignor(
        cluster, bootstrap, topic, assignor):
    group = run_two_members_then_one_leaves(cluster, bootstrap, topic, ConfluentMember, assignor)
    assert cluster.admin().describe_group(group)["state"] == "Empty"


def test_kafka_python_group_splits_partitions_and_survivor_takes_over(cluster, bootstrap, topic):
    run_two_members_then_one_leaves(cluster, bootstrap, topic, KafkaPythonMember, "range")


def test_aiokafka_group_splits_partitions_and_survivor_takes_over(cluster, bootstrap, topic):
    AiokafkaMember.loop = asyncio.new_event_loop()
    try:
        # (aiokafka's default assignor is roundrobin)
        run_two_members_then_one_leaves(cluster, bootstrap, topic, AiokafkaMember, "roundrobin")
    finally:
        AiokafkaMember.loop.close()


def test_describe_groups_shows_a_wire_group_and_a_native_group_alike(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    wire_group, native_group = group_name(), group_name()
    wire = Tracker(ConfluentMember(bootstrap, wire_group, topic, "roundrobin"))
    native = cluster.consumer(group_id=native_group, auto_offset_reset="earliest")
    native.subscribe([topic])
    try:
        poll_until([wire], lambda: wire.member.assignment() == {0, 1}, "the wire member owns both partitions")
        deadline = time.monotonic() + DEADLINE_S
        while len(native.assignment()) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the native member owns {native.assignment()}")
            native.poll(timeout_s=0.5)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the native member reports what it owns at its next heartbeat: then Stable
            futures = admin.describe_consumer_groups([wire_group, native_group], request_timeout=30)
            described = {group: future.result(timeout=DEADLINE_S) for group, future in futures.items()}
            if all(d.state == ConsumerGroupState.STABLE for d in described.values()):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"groups not stable: {[(g, d.state) for g, d in described.items()]}")
            wire.poll()
            native.poll(timeout_s=0.2)
        for group, assignor in ((wire_group, "roundrobin"), (native_group, "sticky")):
            [member] = described[group].members
            assert described[group].partition_assignor == assignor
            assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]
    finally:
        wire.member.close()
        native.close()


def test_delete_groups_deletes_an_empty_group_and_refuses_one_with_members(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    empty, busy = group_name(), group_name()
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": empty, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    committer.close()
    member = Tracker(ConfluentMember(bootstrap, busy, topic, "range"))
    try:
        poll_until([member], lambda: member.member.assignment() == {0}, "the member owns the partition")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.delete_consumer_groups([empty, busy], request_timeout=30)
        futures[empty].result(timeout=DEADLINE_S)
        with pytest.raises(KafkaException, match="NON_EMPTY_GROUP"):
            futures[busy].result(timeout=DEADLINE_S)
    finally:
        member.member.close()
    with pytest.raises(rafka.GroupNotFoundError):
        cluster.admin().describe_group(empty)


def test_native_consumer_cannot_join_a_group_with_wire_members(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    group = group_name()
    member = Tracker(ConfluentMember(bootstrap, group, topic, "range"))
    try:
        poll_until([member], lambda: member.member.assignment() == {0}, "the wire member owns the partition")
        native = cluster.consumer(group_id=group, auto_offset_reset="earliest")
        native.subscribe([topic])
        try:
            with pytest.raises(rafka.InconsistentGroupProtocolError, match="classic"):
                deadline = time.monotonic() + DEADLINE_S
                while time.monotonic() < deadline:
                    native.poll(timeout_s=0.5)
        finally:
            native.close()
    finally:
        member.member.close()
