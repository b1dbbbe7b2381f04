"""The idempotent producer end to end on the shared cluster: recovering from a batch that
expired before it reached the leader (KIP-360), the state a leader rebuilds from its log,
and what ``enable_idempotence=False`` means."""

from __future__ import annotations

import glob
import os
import time

import pyarrow as pa
import pytest
import ray

import rafka
from rafka.actors import names
from rafka.storage.batch import NO_PRODUCER_ID, PRODUCE_SCHEMA, check_frame, encode_stream

TP = rafka.TopicPartition


def read_values(cluster, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"read {len(records)} of {expected} records of {topic} within {timeout_s} s")
        records += consumer.poll(timeout_s=0.5)
    consumer.close()
    return [record.value for record in records]


def stored_headers(cluster, topic: str) -> list:
    """The batch headers in the leader's segment files of ``topic``-0, read from disk."""
    leader = cluster.admin().describe_topic(topic)["partitions"][0]["leader"]
    data_dir = next(broker["data_dir"] for broker in cluster.brokers() if broker["broker_id"] == leader)
    headers = []
    for path in sorted(glob.glob(os.path.join(data_dir, f"{topic}-0", "*.log"))):
        buffer = pa.py_buffer(open(path, "rb").read())
        position = 0
        while position < buffer.size:
            header, _reason = check_frame(buffer, position, buffer.size, verify_crc=True)
            if header is None:
                break
            headers.append(header)
            position += header.frame_bytes
    return headers


def test_send_after_an_expired_batch_succeeds_on_the_same_partition(cluster, topic):
    # A batch the leader refuses before appending (acks=all with too few in-sync
    # replicas) until its delivery timeout leaves a hole in the producer's sequences.
    # The producer must bump its epoch for the partition and start again at sequence 0,
    # instead of every later batch waiting for the hole and failing.
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1)
    with cluster.producer(acks="all", linger_ms=0, delivery_timeout_ms=2000, retry_backoff_ms=50) as producer:
        before = [producer.send(topic, b"before-%d" % index, partition=0) for index in range(3)]
        assert [future.result(timeout=60).offset for future in before] == [0, 1, 2]
        admin.alter_configs(topic, {"min.insync.replicas": "2"})  # one replica: refused
        expired = producer.send(topic, b"expired", partition=0)
        with pytest.raises(rafka.NotEnoughReplicasError):
            expired.result(timeout=60)
        admin.alter_configs(topic, {"min.insync.replicas": "1"})
        after = [producer.send(topic, b"after-%d" % index, partition=0) for index in range(3)]
        assert [future.result(timeout=60).offset for future in after] == [3, 4, 5]
    assert read_values(cluster, topic, 6) == [b"before-0", b"before-1", b"before-2", b"after-0", b"after-1", b"after-2"]


def test_retry_of_a_batch_older_than_the_newest_segments_is_a_duplicate_after_a_restart(cluster, topic):
    # Producer A writes one batch; producer B then rolls several segments. The leader's
    # replica restarts (Ray restarts the actor; it reopens its log) and A's retry of its
    # batch must be answered with the original offset, not appended again.
    cluster.admin().create_topic(topic, partitions=1, config={"segment.bytes": "4096"})
    leader_id = cluster.admin().describe_topic(topic)["partitions"][0]["leader"]
    replica = ray.get_actor(names.replica(topic, 0, leader_id), namespace=cluster.namespace)
    payload = encode_stream([pa.RecordBatch.from_arrays(
        [pa.array([0], pa.int64()), pa.array([b"k"], pa.binary()), pa.array([b"a-0"], pa.binary()),
         pa.nulls(1, PRODUCE_SCHEMA.field("headers").type)], schema=PRODUCE_SCHEMA)], PRODUCE_SCHEMA)
    producer_a = 10**9 + 7  # an id the controller will not hand out in this session
    first = ray.get(replica.produce.remote(payload, "uncompressed", -1, producer_a, 0, 0, 1, 30_000))
    with cluster.producer(linger_ms=0, acks=1) as producer_b:
        for index in range(40):
            producer_b.send(topic, b"b" * 500 + b"%d" % index, partition=0).result(timeout=60)
    segments = glob.glob(os.path.join(_replica_dir(cluster, topic, leader_id), "*.log"))
    assert len(segments) > 3
    old_pid = ray.get(replica.__ray_call__.remote(_pid), timeout=30)
    ray.kill(replica, no_restart=False)
    deadline = time.monotonic() + 120
    while True:  # the restarted replica asks the controller for its role, then leads
        try:
            if ray.get(replica.__ray_call__.remote(_pid), timeout=30) == old_pid:
                raise rafka.ClusterError("the replica has not restarted yet")
            retried = ray.get(replica.produce.remote(payload, "uncompressed", -1, producer_a, 0, 0, 1, 30_000))
            break
        except (ray.exceptions.RayError, rafka.RafkaError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert retried == first
    assert cluster.consumer().end_offsets([TP(topic, 0)]) == {TP(topic, 0): 41}
    assert read_values(cluster, topic, 41).count(b"a-0") == 1


def test_retry_of_an_old_batch_is_a_duplicate_on_a_new_leader_built_from_its_snapshot(cluster, topic):
    # As above, but the leader dies and the follower takes over: it rebuilds the state
    # from its own producer-state snapshot (written by its maintenance loop when its
    # segments rolled) and the tail of its log.
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2, config={"segment.bytes": "4096"})
    state = admin.describe_topic(topic)["partitions"][0]
    old_leader = state["leader"]
    follower = next(broker for broker in state["replicas"] if broker != old_leader)
    leader = ray.get_actor(names.replica(topic, 0, old_leader), namespace=cluster.namespace)
    payload = _payload(b"a-0")
    producer_a = 10**9 + 11
    first = ray.get(leader.produce.remote(payload, "uncompressed", -1, producer_a, 0, 0, -1, 30_000))
    with cluster.producer(linger_ms=0, acks="all") as producer_b:
        for index in range(40):
            producer_b.send(topic, b"b" * 500 + b"%d" % index, partition=0).result(timeout=60)
    follower_dir = _replica_dir(cluster, topic, follower)
    _wait_until(lambda: len(glob.glob(os.path.join(follower_dir, "*.log"))) > 3
                and glob.glob(os.path.join(follower_dir, "*.snapshot")), "a snapshot on the follower")
    ray.kill(leader, no_restart=False)
    _wait_until(lambda: admin.describe_topic(topic)["partitions"][0]["leader"] == follower, "the follower leads")
    new_leader = ray.get_actor(names.replica(topic, 0, follower), namespace=cluster.namespace)
    retried = _wait_until(lambda: _try(lambda: ray.get(new_leader.produce.remote(
        payload, "uncompressed", -1, producer_a, 0, 0, -1, 30_000))), "the new leader answers")
    assert retried == first
    assert cluster.consumer().end_offsets([TP(topic, 0)]) == {TP(topic, 0): 41}


def _payload(value: bytes) -> bytes:
    return encode_stream([pa.RecordBatch.from_arrays(
        [pa.array([0], pa.int64()), pa.array([b"k"], pa.binary()), pa.array([value], pa.binary()),
         pa.nulls(1, PRODUCE_SCHEMA.field("headers").type)], schema=PRODUCE_SCHEMA)], PRODUCE_SCHEMA)


def _try(call):
    try:
        return call()
    except (ray.exceptions.RayError, rafka.RafkaError):
        return None


def _wait_until(predicate, what: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)


def _pid(_replica) -> int:
    return os.getpid()


def _replica_dir(cluster, topic: str, broker_id: int) -> str:
    data_dir = next(broker["data_dir"] for broker in cluster.brokers() if broker["broker_id"] == broker_id)
    return os.path.join(data_dir, f"{topic}-0")


def test_enable_idempotence_false_sends_no_producer_id_or_sequence(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(enable_idempotence=False, linger_ms=0, max_in_flight=1) as producer:
        for index in range(3):
            producer.send(topic, b"plain-%d" % index, partition=0).result(timeout=60)
    headers = stored_headers(cluster, topic)
    assert len(headers) == 3
    assert {(h.producer_id, h.producer_epoch, h.base_sequence) for h in headers} == {(NO_PRODUCER_ID, -1, -1)}
    assert read_values(cluster, topic, 3) == [b"plain-0", b"plain-1", b"plain-2"]


def test_idempotent_producer_stores_its_id_and_consecutive_sequences(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(linger_ms=0) as producer:
        for index in range(3):
            producer.send(topic, b"x-%d" % index, partition=0).result(timeout=60)
    headers = stored_headers(cluster, topic)
    assert [h.base_sequence for h in headers] == [0, 1, 2]
    assert len({h.producer_id for h in headers}) == 1 and headers[0].producer_id != NO_PRODUCER_ID


def test_bump_epoch_renumbers_unwritten_batches_in_order_and_fails_those_maybe_written(cluster, topic):
    # The bookkeeping of a bump, driven directly (the sender thread is stopped): the
    # partition's numbered batches go first, in their original order, to be numbered
    # again from 0; one whose earlier attempt may be in the log is failed, not re-sent;
    # another partition's batches keep their numbers.
    import collections

    from rafka.client.producer import _Batch

    cluster.admin().create_topic(topic, partitions=2)
    producer = cluster.producer(linger_ms=0)
    producer.close()
    bumped, other = (topic, 0), (topic, 1)

    def numbered(tp, order: int, maybe_appended: bool) -> _Batch:
        batch = _Batch(tp[0], tp[1], 0.0)
        batch.sequence, batch.order, batch.maybe_appended = order * 10, order, maybe_appended
        return batch

    first, unknown, third = numbered(bumped, 0, False), numbered(bumped, 1, True), numbered(bumped, 2, False)
    elsewhere, fresh = numbered(other, 3, False), _Batch(topic, 0, 0.0)
    producer._retry = [(0.0, third), (0.0, first)]
    producer._ready = collections.deque([unknown, elsewhere, fresh])
    producer._next_sequence[bumped] = 30
    producer._bump_epoch(bumped)
    assert list(producer._ready) == [first, third, elsewhere, fresh]
    assert (first.sequence, third.sequence, elsewhere.sequence, fresh.sequence) == (-1, -1, 30, -1)
    assert producer._doomed == [unknown] and producer._retry == []
    assert producer._identity[bumped] == (producer._producer_id, 1) and producer._next_sequence[bumped] == 0
