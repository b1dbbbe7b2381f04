"""ConsumerPool: consumer actors in one group running a handler, at-least-once through
scaling, a killed actor, and handler failures under each error policy.

Handlers record what they processed as lines in files under a shared directory (the
actors run in other processes on this machine), so the tests can check that every
produced record was handled at least once.
"""

from __future__ import annotations

import collections
import os
import sys
import time

import pytest
import ray
from ray import cloudpickle

import rafka

# The actors must unpickle this module's handlers without importing the test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

FAST = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300, "auto_offset_reset": "earliest",
        "actor_options": {"num_cpus": 0}}


class Recorder:
    """Writes "partition offset" per handled record to a file of its own. ``gate``: a
    path; the handler waits until it exists (so nothing is committed before)."""

    def __init__(self, directory: str, poison: bytes | None = None, delay_s: float = 0.0,
                 gate: str | None = None) -> None:
        self.file = open(os.path.join(directory, f"worker-{os.getpid()}-{time.monotonic_ns()}"), "a")
        self.poison = poison
        self.delay_s = delay_s
        self.gate = gate

    def __call__(self, batch, tp):
        if self.poison is not None and self.poison in batch.column("value").to_pylist():
            raise ValueError(f"poison in {tp.topic}-{tp.partition}")
        while self.gate is not None and not os.path.exists(self.gate):
            time.sleep(0.05)
        time.sleep(self.delay_s)
        self.file.write("".join(f"{tp.partition} {offset}\n" for offset in batch.column("offset").to_pylist()))
        self.file.flush()

    def close(self):
        self.file.close()


class FailsFirstPoll(Recorder):
    """A Recorder whose actor's first ``poll_batches`` raises ``RequestTimeoutError``
    while ``marker`` exists (once across actors: it removes the marker)."""

    def __init__(self, directory: str, marker: str) -> None:
        super().__init__(directory)
        from rafka.client.consumer import Consumer

        original = Consumer.poll_batches

        def poll_batches(consumer, *args, **kwargs):
            if os.path.exists(marker):
                os.unlink(marker)
                raise rafka.RequestTimeoutError("injected: no answer in time")
            return original(consumer, *args, **kwargs)

        Consumer.poll_batches = poll_batches


def handled(directory: str) -> list[tuple[int, int]]:
    """Every (partition, offset) handled, once per handling; a line still being written
    is left out."""
    seen = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as handle:
            seen.extend(tuple(map(int, line.split())) for line in handle if line.endswith("\n"))
    return seen


def owned_once(pool, partitions: int, sizes: list[int]) -> bool:
    """The pool's actors own shares of ``sizes`` partitions, disjoint, covering all."""
    shares = [[tuple(tp)[1] for tp in stats["assignment"]] for stats in pool.stats()]
    owned = [partition for share in shares for partition in share]
    return sorted(map(len, shares)) == sizes and sorted(owned) == list(range(partitions))


def produce(cluster, topic, count, partitions, poison_at=None):
    with cluster.producer(acks="all", linger_ms=5) as producer:
        for index in range(count):
            value = b"poison" if index == poison_at else b"value-%d" % index
            producer.send(topic, value, partition=index % partitions)


def marker_and_out(tmp_path, marker_name):
    """A marker file that exists (a handler fails while it does) and an empty directory
    for the handlers' records."""
    marker, out = tmp_path / marker_name, tmp_path / "out"
    marker.write_text("")
    out.mkdir()
    return marker, out


def expected(count, partitions):
    ends = [len(range(p, count, partitions)) for p in range(partitions)]
    return {(p, o) for p in range(partitions) for o in range(ends[p])}


def wait_for(condition, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_pool_scales_and_survives_a_killed_actor_without_skipping(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=4)
    produce(cluster, topic, 4000, 4)
    group = "pool-" + topic
    pool = cluster.consumer_pool([topic], group, Recorder, handler_args=(str(tmp_path),),
                                 consumers=2, max_poll_records=200, **FAST)
    try:
        pool.wait_caught_up(timeout_s=180)
        assert set(handled(tmp_path)) == expected(4000, 4)
        wait_for(lambda: owned_once(pool, 4, [2, 2]), what="2 + 2 partitions, each owned once")

        pool.scale(3)
        wait_for(lambda: owned_once(pool, 4, [1, 1, 2]), what="three members, each partition owned once")
        # Scale down: the one actor left owns every partition and keeps processing.
        pool.scale(1)
        wait_for(lambda: owned_once(pool, 4, [4]), what="one member with all")
        produce(cluster, topic, 400, 4)
        pool.wait_caught_up(timeout_s=180)
        assert set(handled(tmp_path)) == expected(4400, 4)

        # Kill an actor for good while records keep coming: the pool replaces it, its
        # partitions move, and their new owner resumes from the committed offsets.
        pool.scale(2)
        wait_for(lambda: owned_once(pool, 4, [2, 2]), what="two members")
        produce(cluster, topic, 4000, 4)
        victim = pool._workers[0]
        victim_member = ray.get(victim.stats.remote())["member_id"]
        committed_before = {p["partition"]: p["committed_offset"] or 0
                            for p in cluster.admin().describe_group(group)["partitions"]}
        handled_before = collections.Counter(handled(tmp_path))
        ray.kill(victim, no_restart=True)
        members = lambda: {m["member_id"] for m in cluster.admin().describe_group(group)["members"]}  # noqa: E731
        wait_for(lambda: victim_member not in members(), timeout_s=120, what="the dead member to be removed")
        wait_for(lambda: victim not in pool._workers and owned_once(pool, 4, [2, 2]), timeout_s=120,
                 what="the replacement and the survivor to own every partition once")
        pool.wait_caught_up(timeout_s=180)
        handled_after = collections.Counter(handled(tmp_path))
        assert set(handled_after) == expected(8400, 4)  # nothing skipped
        # At-least-once re-handles only what follows the last commit: nothing below it.
        again = sorted((p, o) for (p, o), count in handled_after.items()
                       if o < committed_before[p] and count > handled_before[(p, o)])
        assert not again, f"records below the last commit were handled again: {again[:5]}... ({len(again)})"
        assert pool.size == 2
        assert [e["action"] for e in pool.errors() if e["kind"] == "actor"] == ["replace"]
    finally:
        pool.stop()
    assert cluster.admin().describe_group(group)["state"] == "Empty"


def test_static_members_of_a_pool_each_get_their_own_instance_id(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 200, 2)
    pool = cluster.consumer_pool([topic], "pool-" + topic, Recorder, handler_args=(str(tmp_path),), consumers=2,
                                 group_instance_id="billing", **FAST)
    try:
        pool.wait_caught_up(timeout_s=60)
        wait_for(lambda: owned_once(pool, 2, [1, 1]), what="one partition per static member")
        members = cluster.admin().describe_group("pool-" + topic)["members"]
    finally:
        pool.stop()
    assert sorted(m["instance_id"] for m in members) == ["billing-0", "billing-1"]
    assert set(handled(tmp_path)) == expected(200, 2)


def test_skip_policy_reports_and_skips_only_the_failing_record(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 400, 2, poison_at=101)  # partition 1, offset 50
    pool = cluster.consumer_pool([topic], "pool-" + topic, Recorder, handler_args=(str(tmp_path), b"poison"),
                                 on_error="skip", max_retries=1, retry_backoff_ms=10, **FAST)
    try:
        pool.wait_caught_up(timeout_s=60)
        errors = pool.errors()
    finally:
        pool.stop()
    assert set(handled(tmp_path)) == expected(400, 2) - {(1, 50)}
    skipped = [e for e in errors if e["action"] == "skip" and e["offset"] == e["last_offset"]]
    assert [(e["topic"], e["partition"], e["offset"]) for e in skipped] == [(topic, 1, 50)]
    assert "poison" in skipped[0]["error"] and "Traceback" in skipped[0]["traceback"]


def test_stop_policy_stops_the_pool_before_the_failing_record(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=1)
    produce(cluster, topic, 300, 1, poison_at=120)
    pool = cluster.consumer_pool([topic], "pool-" + topic, Recorder, handler_args=(str(tmp_path), b"poison"),
                                 mode="batches", on_error="stop", max_retries=2, retry_backoff_ms=10,
                                 max_poll_records=50, **FAST)
    with pytest.raises(rafka.HandlerError, match=f"{topic}-0 at offset 100") as failure:
        pool.wait(timeout_s=60)
    assert (failure.value.topic, failure.value.partition, failure.value.offset) == (topic, 0, 100)
    assert failure.value.report["attempt"] == 3
    committed = cluster.consumer(group_id="pool-" + topic).committed([rafka.TopicPartition(topic, 0)])
    assert committed[rafka.TopicPartition(topic, 0)] == 100  # the failed batch is not committed
    assert set(handled(tmp_path)) == {(0, o) for o in range(100)}


def test_records_mode_with_a_function_handler_and_retry(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=1)
    produce(cluster, topic, 50, 1)
    marker, out = marker_and_out(tmp_path, "fail-once")

    def handle(record):
        if record.offset == 7 and marker.exists():
            marker.unlink()
            raise RuntimeError("transient")
        with open(out / f"w-{os.getpid()}", "a") as handle_file:
            handle_file.write(f"{record.partition} {record.offset}\n")

    pool = cluster.consumer_pool([topic], "pool-" + topic, handle, mode="records", on_error="retry",
                                 retry_backoff_ms=10, **FAST)
    try:
        pool.wait_caught_up(timeout_s=60)
        errors = pool.errors()
    finally:
        pool.stop()
    assert set(handled(out)) == {(0, o) for o in range(50)}
    assert [(e["offset"], e["action"]) for e in errors] == [(7, "retry")]


def test_autoscale_grows_with_the_backlog_before_the_first_commit(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 2000, 2)
    gate = tmp_path / "open"
    out = tmp_path / "out"
    out.mkdir()
    pool = cluster.consumer_pool([topic], "pool-" + topic, Recorder, handler_args=(str(out), None, 0.0, str(gate)),
                                 autoscale=(1, 3), lag_per_consumer=500, autoscale_interval_s=0.5,
                                 max_poll_records=20, **FAST)
    try:
        assert pool.size == 1
        # The handler waits at the gate, so nothing is committed: the lag is the backlog.
        assert pool.lag() == 2000
        wait_for(lambda: pool.size == 2, timeout_s=120, what="scale up to 2 (capped by 2 partitions)")
        gate.write_text("")
        pool.wait_caught_up(timeout_s=180)
        assert set(handled(out)) == expected(2000, 2)
        assert pool.lag() == 0
    finally:
        pool.stop()


def test_a_consumer_error_that_would_repeat_stops_the_pool(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=1)
    pool = cluster.consumer_pool([topic], "pool-" + topic, Recorder, handler_args=(str(tmp_path),),
                                 **dict(FAST, auto_offset_reset="none"))
    try:
        with pytest.raises(rafka.NoOffsetForPartitionError, match="not retriable") as failure:
            pool.wait(timeout_s=120)
    finally:
        pool.stop()
    assert failure.value.report["action"] == "stop"
    assert pool.size == 0
    reports = [(e["kind"], e["error_type"], e["action"]) for e in pool.errors()]
    assert reports == [("consumer", "NoOffsetForPartitionError", "stop")]


def test_a_consumer_actor_failing_with_a_retriable_error_is_replaced(cluster, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 200, 2)
    marker, out = marker_and_out(tmp_path, "fail")
    pool = cluster.consumer_pool([topic], "pool-" + topic, FailsFirstPoll, handler_args=(str(out), str(marker)),
                                 **FAST)
    try:
        first = pool._workers[0]
        pool.wait_caught_up(timeout_s=180)
        assert set(handled(out)) == expected(200, 2)
        assert pool.size == 1 and pool._workers[0] is not first
        reports = [(e["kind"], e["error_type"], e["action"]) for e in pool.errors()]
        assert reports == [("consumer", "RequestTimeoutError", "replace")]
    finally:
        pool.stop()


def test_bad_pool_arguments_are_named(cluster, topic):
    with pytest.raises(rafka.InvalidConfigError, match="'sometimes'"):
        cluster.consumer_pool([topic], "g", print, on_error="sometimes")
    with pytest.raises(rafka.InvalidConfigError, match="'rows'"):
        cluster.consumer_pool([topic], "g", print, mode="rows")
    with pytest.raises(TypeError, match="handler"):
        cluster.consumer_pool([topic], "g", 42)
    with pytest.raises(rafka.TopicNotFoundError, match="no-such-topic"):
        cluster.consumer_pool(["no-such-topic"], "g", print)
    with pytest.raises(rafka.InvalidConfigError, match="autoscale"):
        cluster.consumer_pool([topic], "g", print, autoscale=(3, 1))
    with pytest.raises(rafka.InvalidConfigError, match="fetch_max_wait"):
        cluster.consumer_pool([topic], "g", print, fetch_max_wait=5)


def test_a_slot_that_keeps_failing_is_refilled_with_backoff():
    """The pool's refill policy: refilling the same slot again within its backoff is
    deferred to a later round; the backoff doubles up to its cap, a quiet minute resets
    it, and slots are independent."""
    from rafka.client.pool import ReplaceBackoff

    backoff = ReplaceBackoff(max_s=4.0, reset_s=60.0)
    clock_s, refilled = 1000.0, []
    for after_s in (0, 0.5, 0.6, 1.5, 0.6, 3.9, 0.2, 4.0, 61, 1.1):
        clock_s += after_s
        refilled.append(backoff.allow(0, clock_s))
    #  first  <1 s   >1 s  <2 s   >2 s  <4 s   >4 s  4 s (cap)  quiet minute  >1 s again
    assert refilled == [True, False, True, False, True, False, True, True, True, True]
    assert backoff.allow(1, clock_s), "another slot has its own backoff"
