"""Producing and consuming through a live cluster."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest
import ray

import rafka
from rafka.client.partitioner import partition_for_key

TP = rafka.TopicPartition


def consume_all(consumer, expected: int, timeout_s: float = 30.0) -> list[rafka.Record]:
    import time

    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        records += consumer.poll(timeout_s=0.5, max_records=100_000)
    return records


def test_records_round_trip_with_keys_headers_and_timestamps(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(linger_ms=1) as producer:
        first = producer.send(topic, b"v0", key=b"k0", headers=[("trace", b"abc")], timestamp_ms=1234)
        second = producer.send(topic, None, key=b"k1")
        assert first.result(timeout=30) == rafka.RecordMetadata(topic, 0, 0, 1234)
        assert second.result(timeout=30).offset == 1
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    records = consume_all(consumer, 2)
    assert [(r.offset, r.key, r.value, r.timestamp) for r in records] == [
        (0, b"k0", b"v0", 1234), (1, b"k1", None, records[1].timestamp)]
    assert records[0].headers == [("trace", b"abc")] and records[1].headers is None
    assert consumer.position(TP(topic, 0)) == 2


def test_keys_land_in_the_partition_kafka_would_choose(cluster, topic):
    cluster.admin().create_topic(topic, partitions=5)
    with cluster.producer() as producer:
        futures = {b"key-%d" % i: producer.send(topic, b"x", key=b"key-%d" % i) for i in range(200)}
        again = {key: producer.send(topic, b"y", key=key) for key in list(futures)[:20]}
        for key, future in futures.items():
            assert future.result(timeout=30).partition == partition_for_key(key, 5)
        for key, future in again.items():
            assert future.result(timeout=30).partition == futures[key].result().partition


def test_null_keys_stick_to_one_partition_per_batch(cluster, topic):
    cluster.admin().create_topic(topic, partitions=3)
    with cluster.producer(linger_ms=50) as producer:
        futures = [producer.send(topic, b"v%d" % i) for i in range(50)]
        partitions = {future.result(timeout=30).partition for future in futures}
    assert len(partitions) == 1


def test_each_producer_keeps_its_order_when_producers_run_concurrently(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    per_producer = 3000

    def produce(name: bytes) -> None:
        with cluster.producer(linger_ms=0, batch_size=2048, max_in_flight=5) as producer:
            for index in range(per_producer):
                producer.send(topic, b"%s-%06d" % (name, index), partition=0)

    threads = [threading.Thread(target=produce, args=(name,)) for name in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    records = consume_all(consumer, 2 * per_producer)
    assert [r.offset for r in records] == list(range(2 * per_producer))
    for name in (b"a", b"b"):
        mine = [r.value for r in records if r.value.startswith(name)]
        assert mine == [b"%s-%06d" % (name, index) for index in range(per_producer)]


def test_send_batch_and_poll_batches_round_trip_arrow(cluster, topic):
    cluster.admin().create_topic(topic, partitions=3)
    table = pa.table({"key": [b"k%d" % i for i in range(3000)], "value": [b"v%d" % i for i in range(3000)]})
    with cluster.producer() as producer:
        landed = producer.send_batch(topic, table).result(timeout=30)
    assert sum(batch.record_count for batch in landed) == 3000
    assert {batch.partition for batch in landed} == {0, 1, 2}
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, p) for p in range(3)])
    seen = {}
    while sum(len(v) for v in seen.values()) < 3000:
        for tp, batches in consumer.poll_batches(timeout_s=5).items():
            for batch in batches:
                assert isinstance(batch, pa.RecordBatch)
                for key, value in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
                    assert tp.partition == partition_for_key(key, 3)
                    seen.setdefault(tp.partition, []).append(value)
    assert sorted(v for values in seen.values() for v in values) == sorted(b"v%d" % i for i in range(3000))


def test_send_batch_without_keys_to_an_explicit_partition(cluster, topic):
    cluster.admin().create_topic(topic, partitions=2)
    with cluster.producer() as producer:
        landed = producer.send_batch(topic, pa.record_batch({"value": [b"a", b"b"]}), partition=1).result(timeout=30)
    assert landed == [rafka.BatchMetadata(topic, 1, 0, 2)]


@pytest.mark.parametrize("compression_type", ["lz4", "zstd"])
def test_compressed_batches_round_trip(cluster, topic, compression_type):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(compression_type=compression_type) as producer:
        for i in range(100):
            producer.send(topic, b"compressible " * 20 + b"%d" % i)
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    values = [r.value for r in consume_all(consumer, 100)]
    assert values == [b"compressible " * 20 + b"%d" % i for i in range(100)]


def test_acks_zero_sends_without_waiting_for_offsets(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(acks=0) as producer:
        future = producer.send(topic, b"fire-and-forget")
        assert future.result(timeout=30).offset == -1
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    assert [r.value for r in consume_all(consumer, 1)] == [b"fire-and-forget"]


def test_callbacks_receive_metadata(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    delivered = []
    with cluster.producer() as producer:
        for i in range(10):
            producer.send(topic, b"%d" % i, callback=lambda metadata, error: delivered.append((metadata.offset, error)))
    assert sorted(delivered) == [(i, None) for i in range(10)]


def test_callback_that_raises_is_logged_and_the_others_still_run(cluster, topic, caplog):
    cluster.admin().create_topic(topic, partitions=1)
    delivered = []

    def callback(metadata, error):
        delivered.append(metadata.offset)
        if metadata.offset % 2:
            raise RuntimeError(f"bad callback at {metadata.offset}")

    with caplog.at_level("ERROR", logger="rafka.client.producer"):
        with cluster.producer(linger_ms=1000) as producer:
            for i in range(10):
                producer.send(topic, b"%d" % i, callback=callback)
    assert sorted(delivered) == list(range(10))
    failures = [r for r in caplog.records if r.name == "rafka.client.producer"]
    assert failures and f"{topic}-0" in failures[0].getMessage()
    assert failures[0].exc_info[0] is RuntimeError
    # One batch: the first failure with its traceback, the other four counted.
    assert sum(1 for r in failures if r.exc_info) + sum(int(r.getMessage().split()[0]) for r in failures
                                                        if not r.exc_info) == 5


def test_seek_position_pause_and_offsets_for_times(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer() as producer:
        for i in range(10):
            producer.send(topic, b"%d" % i, timestamp_ms=1000 + i * 100)
    tp = TP(topic, 0)
    consumer = cluster.consumer(auto_offset_reset="latest")
    consumer.assign([tp])
    assert consumer.position(tp) == 10
    consumer.seek(tp, 4)
    assert [r.offset for r in consume_all(consumer, 6)] == [4, 5, 6, 7, 8, 9]
    assert consumer.offsets_for_times({tp: 1250}) == {tp: (3, 1300)}
    assert consumer.offsets_for_times({tp: 99_999}) == {tp: None}
    consumer.seek_to_beginning(tp)
    consumer.pause(tp)
    assert consumer.poll(timeout_s=0.3) == []
    consumer.resume(tp)
    assert consume_all(consumer, 10)[0].offset == 0
    consumer.seek_to_end()
    assert consumer.position(tp) == 10


def test_consumer_auto_offset_reset_none_and_out_of_range(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    tp = TP(topic, 0)
    strict = cluster.consumer(auto_offset_reset="none")
    strict.assign([tp])
    with pytest.raises(rafka.NoOffsetForPartitionError, match=topic):
        strict.poll(timeout_s=0.2)
    strict.seek(tp, 50)
    with pytest.raises(rafka.OffsetOutOfRangeError, match="offset 50"):
        strict.poll(timeout_s=2)
    lenient = cluster.consumer(auto_offset_reset="earliest")
    lenient.assign([tp])
    lenient.seek(tp, 50)
    assert lenient.poll(timeout_s=1) == []
    assert lenient.position(tp) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"value": "text"}, TypeError, "value must be bytes or None, got str"),
        ({"value": b"v", "key": 7}, TypeError, "key must be bytes or None, got int"),
        ({"value": b"v", "partition": 9}, rafka.TopicNotFoundError, "has no partition 9"),
        ({"value": b"v", "headers": [("h", "not bytes")]}, TypeError, "headers must be"),
        ({"value": b"x" * (9 * 1024 * 1024)}, rafka.RecordTooLargeError, "max_request_size"),
    ],
)
def test_bad_records_are_rejected_naming_the_argument(cluster, topic, kwargs, error, message):
    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer() as producer:
        with pytest.raises(error, match=message):
            producer.send(topic, **kwargs)
        assert producer.send(topic, b"fine").result(timeout=30).offset == 0


def test_send_to_unknown_topic_raises_topic_not_found(cluster):
    with cluster.producer() as producer:
        with pytest.raises(rafka.TopicNotFoundError, match="no-such-topic"):
            producer.send("no-such-topic", b"x")


def test_batch_over_topic_max_message_bytes_fails_its_futures_only(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1, config={"max.message.bytes": "2048"})
    with cluster.producer(linger_ms=0) as producer:
        big = producer.send(topic, b"x" * 4096)
        with pytest.raises(rafka.RecordTooLargeError, match="max.message.bytes=2048"):
            big.result(timeout=30)
        assert producer.send(topic, b"small").result(timeout=30).offset == 0


def test_unknown_producer_option_is_named(cluster):
    with pytest.raises(rafka.InvalidConfigError, match="'lingerms'"):
        cluster.producer(lingerms=5)
    with pytest.raises(rafka.InvalidConfigError, match=r"'acks': must be 0, 1 or 'all' \(got 2\)"):
        cluster.producer(acks=2)


def test_killed_replica_restarts_and_keeps_every_acknowledged_record(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    leader = cluster.admin().describe_topic(topic)["partitions"][0]["leader"]
    replica = ray.get_actor(f"replica:{topic}:0:{leader}", namespace=cluster.namespace)
    with cluster.producer(linger_ms=1, delivery_timeout_ms=60_000) as producer:
        acknowledged = [producer.send(topic, b"before-%d" % i) for i in range(500)]
        producer.flush()
        ray.kill(replica, no_restart=False)  # Ray restarts it; it recovers its log
        acknowledged += [producer.send(topic, b"after-%d" % i) for i in range(500)]
        offsets = [future.result(timeout=60).offset for future in acknowledged]
    assert offsets == list(range(1000))
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    values = [r.value for r in consume_all(consumer, 1000, timeout_s=60)]
    assert values == [b"before-%d" % i for i in range(500)] + [b"after-%d" % i for i in range(500)]


def test_a_fetch_that_never_answers_is_sent_again_while_other_partitions_answer(cluster, topic):
    """A fetch unanswered for fetch_max_wait_ms + request_timeout_ms is forgotten and the
    partition fetched again (from a fresh leader lookup: the old leader's node may be
    gone without Ray saying so). The consumer checked this only when no fetch at all
    answered, so another partition's long polls, answering every fetch_max_wait_ms, kept
    a stuck partition stuck for good."""
    import os
    import signal
    import time

    cluster.admin().create_topic(topic, partitions=2)
    with cluster.producer(linger_ms=1) as producer:
        for partition in (0, 1):
            producer.send(topic, b"first", partition=partition)
    consumer = cluster.consumer(auto_offset_reset="earliest", fetch_max_wait_ms=100, request_timeout_ms=1000)
    consumer.assign([TP(topic, 0), TP(topic, 1)])
    assert len(consume_all(consumer, 2)) == 2

    def fetches_of_partition_1() -> set:
        return {ref for ref, (tp, _, _) in consumer._fetches.items() if tp.partition == 1}

    leader = cluster.admin().describe_topic(topic)["partitions"][1]["leader"]
    replica = ray.get_actor(f"replica:{topic}:1:{leader}", namespace=cluster.namespace)
    pid = ray.get(replica.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    stop = threading.Event()

    def keep_partition_0_busy() -> None:  # so that some fetch answers within every wait
        with cluster.producer(linger_ms=1) as busy:
            while not stop.wait(0.01):
                busy.send(topic, b"busy", partition=0)

    busy = threading.Thread(target=keep_partition_0_busy, daemon=True)
    busy.start()
    os.kill(pid, signal.SIGSTOP)
    try:
        consumer.poll(timeout_s=0.3)  # partition 1's next fetch is now stuck in the frozen replica
        stuck = fetches_of_partition_1()
        assert stuck, "partition 1 has a fetch in flight"
        resent, deadline = False, time.monotonic() + 20.0
        while not resent:
            if time.monotonic() > deadline:
                raise TimeoutError("partition 1's stuck fetch was never sent again")
            consumer.poll(timeout_s=0.3)
            resent = bool(fetches_of_partition_1() - stuck)
    finally:
        os.kill(pid, signal.SIGCONT)
        stop.set()
        busy.join(30)
    with cluster.producer(linger_ms=1) as producer:
        producer.send(topic, b"second", partition=1)
    later, deadline = [], time.monotonic() + 30.0
    while not later:  # partition 1 is served again once its replica runs
        if time.monotonic() > deadline:
            raise TimeoutError("partition 1 was not served after its replica resumed")
        later = [r.value for r in consumer.poll(timeout_s=0.5, max_records=100_000) if r.partition == 1]
    assert later == [b"second"]
    consumer.close()


def test_poll_returns_in_its_time_while_the_controller_does_not_answer(cluster, topic):
    """A consumer that must look a leader up again (its metadata was invalidated) while
    the controller is frozen returns from poll(0.3) at its deadline with what it has, and
    reads on once the controller answers. poll() used to wait for the controller for up
    to a minute, so a controller failover made group members miss max_poll_interval_ms."""
    import os
    import signal
    import time

    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(linger_ms=1) as producer:
        producer.send(topic, b"before", partition=0)
    consumer = cluster.consumer(auto_offset_reset="earliest", fetch_max_wait_ms=100)
    consumer.assign([TP(topic, 0)])
    assert [r.value for r in consume_all(consumer, 1)] == [b"before"]
    pid = ray.get(cluster.controller.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    returned = threading.Event()

    def poll_five_times() -> None:  # 1.5 s of polls: the fetch in flight (100 ms) ends, the next needs a lookup
        for _ in range(5):
            consumer.poll(timeout_s=0.3)
        returned.set()

    consumer._metadata.invalidate(topic)
    os.kill(pid, signal.SIGSTOP)
    try:
        poller = threading.Thread(target=poll_five_times, daemon=True)
        poller.start()
        if not returned.wait(8.0):
            raise TimeoutError("five poll(timeout_s=0.3) calls were still waiting for the frozen controller after 8 s")
    finally:
        os.kill(pid, signal.SIGCONT)
    poller.join(60)
    with cluster.producer(linger_ms=1) as producer:
        producer.send(topic, b"after", partition=0)
    later, deadline = [], time.monotonic() + 30.0
    while not later:
        if time.monotonic() > deadline:
            raise TimeoutError("the consumer did not read on after the controller resumed")
        later = [r.value for r in consumer.poll(timeout_s=0.5)]
    assert later == [b"after"]
    consumer.close()


def _frozen_while(handle, action) -> None:
    """Run ``action()`` while ``handle``'s actor process is stopped (SIGSTOP)."""
    import os
    import signal

    pid = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
    os.kill(pid, signal.SIGSTOP)
    try:
        action()
    finally:
        os.kill(pid, signal.SIGCONT)


def _polls_return_in_time(consumer, read: list, polls: int = 5, poll_s: float = 0.3, limit_s: float = 8.0) -> None:
    """``polls`` calls of poll(poll_s), their records added to ``read``, all back within ``limit_s``."""
    returned = threading.Event()

    def poll_several() -> None:
        for _ in range(polls):
            read.extend(consumer.poll(timeout_s=poll_s))
        returned.set()

    threading.Thread(target=poll_several, daemon=True).start()
    if not returned.wait(limit_s):
        raise TimeoutError(f"{polls} poll(timeout_s={poll_s}) calls were still waiting after {limit_s} s")


def test_poll_returns_in_its_time_while_the_coordinator_does_not_answer_its_committed_offsets(cluster, topic):
    """A group consumer's new partitions get their positions from the committed offsets,
    asked of the group coordinator. While the coordinator is frozen, poll(0.3) returns at
    its deadline (it used to wait for the answer up to request_timeout_ms, 30 s); once it
    answers, the consumer reads from the committed offset."""
    import time

    cluster.admin().create_topic(topic, partitions=1)
    with cluster.producer(linger_ms=1) as producer:
        for value in (b"a", b"b", b"c"):
            producer.send(topic, value, partition=0)
    group = f"frozen-coordinator-{topic}"
    with cluster.consumer(group_id=group, enable_auto_commit=False) as committer:
        committer.commit({TP(topic, 0): 1})
    consumer = cluster.consumer(group_id=group, auto_offset_reset="earliest", fetch_max_wait_ms=100,
                                enable_auto_commit=False)
    consumer.assign([TP(topic, 0)])
    read: list = []
    _frozen_while(consumer._coordinator.handle(), lambda: _polls_return_in_time(consumer, read))
    deadline = time.monotonic() + 30.0
    while len(read) < 2 and time.monotonic() < deadline:
        read += consumer.poll(timeout_s=0.5)
    assert [r.value for r in read] == [b"b", b"c"]  # from the committed offset 1
    consumer.close()


def test_poll_reads_other_partitions_while_a_leader_does_not_answer_an_offset_reset(cluster, topic):
    """A partition without a committed offset is reset (auto_offset_reset) by asking its
    leader. While one leader is frozen, poll(0.3) returns at its deadline and the other
    partition is read meanwhile (the reset used to block poll up to request_timeout_ms);
    once the leader answers, its partition is read too."""
    import time

    cluster.admin().create_topic(topic, partitions=2)
    with cluster.producer(linger_ms=1) as producer:
        for partition in (0, 1):
            producer.send(topic, b"p%d" % partition, partition=partition)
    consumer = cluster.consumer(auto_offset_reset="earliest", fetch_max_wait_ms=100)
    consumer.assign([TP(topic, 0), TP(topic, 1)])
    leader, _ = cluster.metadata.leader(topic, 1)
    read: list = []
    _frozen_while(leader, lambda: _polls_return_in_time(consumer, read))
    assert [(r.partition, r.value) for r in read] == [(0, b"p0")]
    deadline = time.monotonic() + 30.0
    while len(read) < 2 and time.monotonic() < deadline:
        read += consumer.poll(timeout_s=0.5)
    assert sorted((r.partition, r.value) for r in read) == [(0, b"p0"), (1, b"p1")]
    consumer.close()
