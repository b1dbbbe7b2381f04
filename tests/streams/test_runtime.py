"""StreamsJob's supervision on real worker actors.

A worker is made to stop answering by freezing its process with SIGSTOP, as a hung,
swapped-out or stalled process stops answering: the job must kill it for good (a
frozen actor that Ray later thaws or restarts would consume beside its replacement)
and start a replacement that carries on without losing input; and stop() must leave
no worker of the job alive, even one whose stop call never returns or whose first
kill failed. The one thing not real is that failed kill: a ``ray.kill`` that raises
(the GCS not taking the request) is injected, because it cannot be provoked here.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import psutil
import ray

import rafka
from rafka.streams import StreamsApp, runtime

JOB = {"actor_options": {"num_cpus": 0}, "session_timeout_ms": 4000, "heartbeat_interval_ms": 500}


@contextmanager
def frozen(pids: list[int]):
    """Freeze these processes; thaw any that is still there afterwards, so a failed
    test leaves no stopped process behind."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def produce(cluster, topic: str, numbers: range) -> None:
    with cluster.producer(acks="all", linger_ms=5) as producer:
        for number in numbers:
            producer.send(topic, str(number).encode(), key=str(number).encode())


def read_values(cluster, topic: str) -> list[int]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    ends = consumer.end_offsets(consumer.assignment())
    values = []
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        values += [int(record.value) for record in consumer.poll(timeout_s=0.5, max_records=100_000)]
    consumer.close()
    return values


def start_copy_job(cluster, topic: str, workers: int):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    admin.create_topic(topic + "-out", partitions=2)
    app = StreamsApp("supervised-" + topic, commit_interval_ms=100)
    app.source(topic).to(topic + "-out")
    return app.start(cluster, workers=workers, **JOB)


def test_a_worker_that_stops_answering_is_killed_for_good_and_replaced(cluster, topic, monkeypatch):
    monkeypatch.setattr(runtime, "STATS_TIMEOUT_S", 2.0)
    job = start_copy_job(cluster, topic, workers=1)
    try:
        produce(cluster, topic, range(0, 600))
        job.wait_caught_up(timeout_s=60)
        (hung,) = job._workers
        (stats,) = job.stats()
        with frozen([stats["pid"]]):
            produce(cluster, topic, range(600, 900))  # arrives while nobody answers
            wait_for(lambda: job._workers[0] is not hung, 60, "the supervisor to replace the frozen worker")
            wait_for(lambda: is_gone(stats["pid"]), 30, "the frozen worker's process to be killed")
        job.wait_caught_up(timeout_s=60)
        (replacement,) = job.stats()
        assert "dead" not in replacement and replacement["pid"] != stats["pid"]
        assert replacement["fatal"] is None
    finally:
        job.stop()
    # At-least-once: every input record is in the output; the replacement may repeat
    # what the frozen worker processed after its last commit.
    values = read_values(cluster, topic + "-out")
    assert set(values) == set(range(900)), sorted(set(range(900)) - set(values))[:10]


def test_stop_leaves_no_worker_alive_after_a_failed_kill_and_a_stop_that_never_returns(cluster, topic, monkeypatch):
    monkeypatch.setattr(runtime, "STATS_TIMEOUT_S", 2.0)
    monkeypatch.setattr(runtime, "STOP_TIMEOUT_S", 3.0)
    job = start_copy_job(cluster, topic, workers=2)
    pids: list[int] = []
    try:
        produce(cluster, topic, range(200))
        job.wait_caught_up(timeout_s=60)
        first, second = job._workers
        pids = [s["pid"] for s in job.stats()]
        real_kill, refused = ray.kill, []

        def kill_refused_once(actor, no_restart=True):
            if not refused:
                refused.append(actor)
                raise RuntimeError("injected: the kill request was not taken")
            real_kill(actor, no_restart=no_restart)

        monkeypatch.setattr(ray, "kill", kill_refused_once)
        with frozen(pids[:1]):
            wait_for(lambda: job._workers[0] is not first, 60, "the supervisor to replace the frozen worker")
            assert refused == [first]
            assert psutil.Process(pids[0]).status() == psutil.STATUS_STOPPED, "its kill failed: it is still there"
            replacement = job._workers[0]
            wait_for(lambda: "pid" in ray.get(replacement.stats.remote()), 30, "the replacement to answer")
            pids.append(ray.get(replacement.stats.remote())["pid"])
            # The second worker now hangs too: its stop call will never return.
            with frozen(pids[1:2]):
                job.stop()
                assert job.size == 0 and not job._started, "every worker the job started was killed"
                for pid in pids:
                    wait_for(lambda: is_gone(pid), 30, f"worker process {pid} to be gone")  # noqa: B023 - called now
        job._check_workers()  # a supervision round after stop() starts nothing
        assert job.size == 0 and not job._started
        assert second not in job._workers
    finally:
        job.stop()
        for pid in pids:
            if not is_gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_worker_still_starting_is_not_replaced_as_hung(cluster, topic, monkeypatch):
    """A worker that has never answered is starting (here: waiting for CPUs the cluster
    does not have), not hung: the supervisor used to replace it after one stats timeout,
    and its replacement too, in a loop that never let a slow-starting job run."""
    monkeypatch.setattr(runtime, "STATS_TIMEOUT_S", 0.2)
    monkeypatch.setattr(runtime, "SUPERVISE_INTERVAL_S", 0.1)
    monkeypatch.setattr(runtime, "STOP_TIMEOUT_S", 1.0)  # it never starts, so it never stops
    cluster.admin().create_topic(topic, partitions=1)
    app = StreamsApp("starting-" + topic)
    app.source(topic).to(topic + "-out")
    job = app.start(cluster, workers=1, **{**JOB, "actor_options": {"num_cpus": 10_000}})
    try:
        (worker,) = job._workers
        time.sleep(3.0)  # about 15 supervision rounds, each with a stats call that times out
        assert job._workers == [worker] and job._started == [worker], "a starting worker was replaced"
    finally:
        job.stop()
