"""Running a stream job: worker actors, state restore, and the commit order (a task,
one sub-topology on one partition, is in task.py).

``app.start(cluster, workers=N)`` compiles the dataflow (topology.py), creates the
internal topics, and starts N worker actors. Each worker runs one consumer in the group
named by the application id, subscribed to every topic any sub-topology reads, with the
``copartitioned`` assignor (partition p of every topic goes to one worker). For each
assigned partition number p a worker runs one task per sub-topology reading p. Workers
beyond the partition count idle; more workers up to it spread the tasks.

The workers a job starts with join its group together: their consumers ask the
coordinator for an initial rebalance delay that ends when all of them are in (see
actors/coordinator.py), so the first to start does not take every task and hand most of
them over a moment later.

A task that arrives (a new job, a rebalance, a worker restarted after a crash) first
restores its state: each aggregation replays its changelog partition; each table loads
its source partition to its current end and goes on from there (so stream records of a
backlog are joined against the table as it is now). Then it processes input from the
committed offsets.

Commit, every ``commit_interval_ms`` (default 30 s, as in Kafka Streams), when the
input is drained — a poll found no input, or took every record the leaders had, after
records were processed since the last commit (a drained input need not wait out the
interval to be durable) — and before partitions are revoked: (1) each
aggregation sends its changes since the last commit to its changelog, (2) every
changelog, repartition and output record sent so far is acknowledged by all in-sync
replicas (acks=all); if any of them failed for good, the worker fails without
committing — and only then (3) the input offsets reached at (1) are committed.

The periodic commit is pipelined: at (1) the worker notes the input positions and the
producer's pending sends (``CheckedProducer.checkpoint``) and goes on processing; it
commits those positions at a later loop turn, once every one of those sends is
acknowledged (2). One such commit is in flight at a time: the next one first waits for
it. Before partitions are revoked and when the worker stops, the commit is synchronous
(flush, then commit), and it supersedes the one in flight.

Guarantee: **at-least-once**. No input record is lost: an offset is committed only
after the state and outputs it produced are durable. After a crash the
task restores the state as of its last changelog flush, which may include the effect
of records after the last committed offset; those records are processed again, so an
aggregate may count them twice and outputs may repeat. Exactly-once needs transactions,
which rafka does not have yet.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import threading
import time
import traceback
from typing import Any, Callable

import pyarrow as pa
import ray

from rafka.actors.process import tune_actor_process
from rafka.client import rpc
from rafka.client.delivery import CheckedProducer
from rafka.client.group import ConsumerRebalanceListener
from rafka.client.producer import internal_producer
from rafka.client.records import TopicPartition
from rafka.errors import CommitFailedError, RafkaError, TopicExistsError, UnknownMemberIdError
from rafka.streams.dsl import StreamsApp
from rafka.streams.task import Task
from rafka.streams.topology import Compiled, changelog_topic, compile_app

logger = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 1.0
STATS_TIMEOUT_S = 30.0  # a worker that does not answer stats() in this time is replaced
# ... once it has answered at least once. Until then it is starting (a process, imports,
# connecting to the cluster: seconds on a loaded node), and gets this long from its start.
WORKER_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 120.0  # how long stop() waits for workers to commit and stop before killing them
INITIAL_REBALANCE_DELAY_MS = 3_000  # Kafka's default group.initial.rebalance.delay.ms
CAUGHT_UP_COMMIT_SPACING_S = 0.1
RETRY_BACKOFF_S = 0.5  # after a retriable poll failure (a coordinator or leader restarting)
# Changelog and repartition topics are written by the job's workers only: a client's
# produce to them is refused (docs/security.md).
INTERNAL_TOPIC_CONFIG = {"rafka.internal": "true"}
GC_GEN0_THRESHOLD = 100_000  # the worker's collector threshold (see _StreamWorker._run)


class _StreamWorker(ConsumerRebalanceListener):
    """One worker actor; its loop runs on a thread started by the constructor."""

    def __init__(self, namespace: str, app: StreamsApp, consumer_options: dict) -> None:
        tune_actor_process()
        from rafka.client.cluster import Cluster

        self.cluster = Cluster.connect(namespace=namespace)
        self.app = app
        self.compiled = compile_app(app)
        self.consumer_options = consumer_options
        self.tasks: dict[tuple[int, int], Task] = {}
        self.fatal: dict | None = None
        self.restored_records = 0
        self.records = 0  # input records processed by this worker, over every task it ran
        self.loop_times = _LoopTimes()
        self.first_assigned_unix_s: float | None = None  # when this worker first got partitions
        self.last_commit_unix_s: float | None = None  # when its latest offset commit returned
        self._commit_schedule = _CommitSchedule(app.commit_interval_ms / 1000)
        # The commit in flight (see the module docstring): input positions to commit once
        # every send of the producer checkpoint is acknowledged. None when there is none.
        self._pending_positions: dict[TopicPartition, int] | None = None
        self._pending_checkpoint: list = []
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rafka-stream-worker", daemon=True)
        self._thread.start()

    def stats(self) -> dict:
        return {"pid": os.getpid(), "tasks": sorted(self.tasks), "records": self.records,
                "late_records": sum(t.late_records for t in self.tasks.values()),
                "loop_s": {phase: round(seconds, 3) for phase, seconds in self.loop_times.wall_s.items()},
                "loop_cpu_s": {phase: round(seconds, 3) for phase, seconds in self.loop_times.cpu_s.items()},
                "polls_with_records": self.loop_times.polls_with_records,
                "process_cpu_s": round(time.process_time(), 3),
                "first_assigned_unix_s": self.first_assigned_unix_s, "last_commit_unix_s": self.last_commit_unix_s,
                "restored_records": self.restored_records, "fatal": self.fatal, "stopped": self._stopped.is_set()}

    def stop(self, timeout_s: float = 60.0) -> bool:
        self._stopping.set()
        return self._stopped.wait(timeout_s)

    def _run(self) -> None:
        app = self.app
        # Checked: a lost output or changelog batch fails the worker's next flush, before
        # it commits the input offsets past it (see client/delivery.py).
        # internal_producer: the changelog and repartition topics take only rafka's own writes.
        self.producer = CheckedProducer(internal_producer(self.cluster, acks="all", linger_ms=5))
        self.consumer = None
        try:
            self.consumer = self.cluster.consumer(
                group_id=app.application_id, enable_auto_commit=False, partition_assignment_strategy="copartitioned",
                auto_offset_reset=app.auto_offset_reset, **self.consumer_options)
            self.consumer.subscribe(self.compiled.all_source_topics(), listener=self)
            # The cyclic garbage collector: aggregations create and keep many small
            # tuples (a group each), and at the default threshold (a collection every
            # 700 new containers) the collector ran hundreds of times a batch and its
            # older generations rescanned the worker's heap — Ray's objects and the state —
            # again and again: 15-20% of the worker's CPU in streams_bench. What exists
            # now (imports, Ray, the clients) is frozen out of its scans, and it runs
            # about every GC_GEN0_THRESHOLD new containers. Garbage cycles (rare here) are
            # still collected, a little later. The worker is its own process, so this
            # changes nothing outside it.
            gc.freeze()
            gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
            times, schedule = self.loop_times, self._commit_schedule
            schedule.start()
            while not self._stopping.is_set():
                times.start_turn()
                polled = self._poll()
                if polled is None:
                    continue
                times.end_poll(brought_records=bool(polled))
                turn = schedule.after_poll(bool(polled), self._caught_up)
                self._process(polled)
                times.end_phase("process")
                reason = schedule.commit_due(turn)
                if reason is not None:
                    # Idle marks keep to the interval: "no input since the last commit"
                    # must not shrink to one empty poll.
                    schedule.commit_started(reason, self._start_commit(idle_check=reason == COMMIT_INTERVAL))
                # With no input to process, waiting for the commit in flight costs nothing.
                self._finish_commit(wait=not polled or turn.caught_up)
                times.end_phase("commit")
            self._commit()
        except BaseException as error:  # noqa: BLE001 - reported through stats()
            logger.exception("stream worker failed")
            self.fatal = {"error": repr(error), "traceback": traceback.format_exc()}
        finally:
            try:
                if self.consumer is not None:
                    self.consumer.close()
                self.producer.close()
            finally:
                self._stopped.set()

    def _poll(self) -> dict | None:
        """The next batches of the assigned partitions, or None after a retriable failure
        (waited out here); any other failure raises."""
        try:
            return self.consumer.poll_batches(timeout_s=0.1, max_records=self.app.max_poll_records)
        except RafkaError as error:
            # Nothing was returned, so nothing is skipped: a coordinator or leader
            # that is restarting is waited out, as Kafka Streams retries a timeout.
            if not error.retriable:
                raise
            logger.warning("streams %r: poll failed, retrying: %s", self.app.application_id, error)
            time.sleep(RETRY_BACKOFF_S)
            return None

    def _process(self, polled: dict) -> None:
        """Run each polled partition's batches through every task that reads them."""
        for tp, batches in polled.items():
            for sub in self.compiled.subtopology_of(tp.topic):
                task = self.tasks[(sub.index, tp.partition)]
                before = task.records
                task.process(tp.topic, batches)
                self.records += task.records - before

    def _caught_up(self) -> bool:
        consumer = self.consumer
        return all(consumer.current_lag(tp) == 0 for tp in consumer.assignment())

    def _start_commit(self, idle_check: bool = True) -> float:
        """The pipelined commit's step (1): changelogs sent, positions and pending sends
        noted; ``_finish_commit`` commits them once the sends are acknowledged. A
        commit still in flight is finished first (waiting for its sends). Returns when
        the new commit began (time.monotonic s, after that wait: the commit schedule's
        clock)."""
        self._finish_commit(wait=True)
        began_s = time.monotonic()
        if idle_check:
            self._mark_idle_tasks()
        for task in self.tasks.values():
            task.write_changelogs()
        self._pending_positions = {tp: self.consumer.position(tp) for tp in self.consumer.assignment()}
        self._pending_checkpoint = self.producer.checkpoint()
        return began_s

    def _finish_commit(self, wait: bool) -> None:
        """Commit the positions of the commit in flight if its sends are all acknowledged
        (with ``wait``, after waiting for them); raises if one of them failed."""
        if self._pending_positions is None:
            return
        if not self.producer.settled(self._pending_checkpoint, wait=wait):
            return
        # Partitions that left since (lost ones are dropped on the spot, revoked ones were
        # committed synchronously) are not this worker's to commit any more.
        assignment = self.consumer.assignment()
        positions = {tp: offset for tp, offset in self._pending_positions.items() if tp in assignment}
        self._pending_positions, self._pending_checkpoint = None, []
        self._commit_positions(positions)

    def _commit(self, partitions: set[TopicPartition] | None = None, idle_check: bool = True) -> None:
        """Synchronous: changelogs, then flush everything sent, then commit the input
        offsets (of ``partitions``, default all assigned). The commit in flight is settled
        by the flush; its positions of other partitions are committed with these."""
        if partitions is None and idle_check:
            self._mark_idle_tasks()
        for task in self.tasks.values():
            task.write_changelogs()
        self.producer.flush()
        assignment = self.consumer.assignment()
        positions = {tp: offset for tp, offset in (self._pending_positions or {}).items()
                     if tp in assignment and partitions is not None and tp not in partitions}
        self._pending_positions, self._pending_checkpoint = None, []
        positions.update({tp: self.consumer.position(tp) for tp in assignment
                          if partitions is None or tp in partitions})
        self._commit_positions(positions)

    def _commit_positions(self, positions: dict[TopicPartition, int]) -> None:
        if not positions:
            return
        try:
            self.consumer.commit(positions)
            self.last_commit_unix_s = time.time()
        except (CommitFailedError, UnknownMemberIdError) as error:
            # This worker's session ended (a long pause): its partitions may already
            # be elsewhere. Nothing is lost — the next owner restarts from the last
            # commit, with the state flushed above — and the next poll reports the
            # partitions lost, which drops their tasks.
            logger.warning("streams %r: commit refused, partitions moved: %s", self.app.application_id, error)
        except RafkaError as error:
            # The coordinator did not answer in time or is restarting: the commit may
            # or may not be stored. Nothing is lost either way — the outputs are
            # flushed, and the next commit covers these positions (or, if the
            # partitions move, their next owner re-reads from the last stored commit).
            if not error.retriable:
                raise
            logger.warning("streams %r: commit failed, the next one covers it: %s", self.app.application_id, error)

    def _mark_idle_tasks(self) -> None:
        """Send an idle mark for each task that writes a repartition topic, had no input
        since the last commit, and has read all of its input (see task.Task)."""
        quiet = [task for task in self.tasks.values() if task.repartition_sinks and not task.idle and not task.active]
        for task in self.tasks.values():
            task.active = False
        if not quiet:
            return
        inputs = {task: [TopicPartition(topic, task.partition) for topic in task.sub.source_topics] for task in quiet}
        try:
            ends = self.consumer.end_offsets({tp for tps in inputs.values() for tp in tps})
            for task, tps in inputs.items():
                if all(self.consumer.position(tp) >= ends[tp] for tp in tps):
                    task.mark_idle()
        except RafkaError as error:  # a leader moving: try again at the next commit
            logger.info("streams %r: no idle check this time: %s", self.app.application_id, error)

    # -- rebalance listener (runs inside poll, on the worker thread) ------------------------

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._commit(revoked)
        numbers = {tp.partition for tp in revoked}
        for key in [key for key in self.tasks if key[1] in numbers]:
            del self.tasks[key]

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        if self._pending_positions is not None:  # another worker may own them already
            self._pending_positions = {tp: offset for tp, offset in self._pending_positions.items() if tp not in lost}
        numbers = {tp.partition for tp in lost}
        for key in [key for key in self.tasks if key[1] in numbers]:
            del self.tasks[key]

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned and self.first_assigned_unix_s is None:
            self.first_assigned_unix_s = time.time()
        for tp in sorted(assigned):
            for sub in self.compiled.subtopology_of(tp.topic):
                key = (sub.index, tp.partition)
                if key not in self.tasks:
                    task = Task(self.compiled, sub, tp.partition, self.producer)
                    self._restore(task)
                    self.tasks[key] = task

    def _restore(self, task: Task) -> None:
        for aggregate in task.aggregates:
            for table in _read_partition(self.cluster, changelog_topic(self.app, aggregate.node.name), task.partition):
                task.restore(aggregate, table)
                self.restored_records += table.num_rows
        for store in task.tables:
            topics = task.parents[store.node][0].options["topics"]
            for topic in topics:
                # Bootstrap: load the table's partition to its current end before any
                # stream record is joined (so a backlog of stream records meets the
                # table as it is now, not half-loaded), then consume it from there.
                tp = TopicPartition(topic, task.partition)
                end = self.consumer.end_offsets([tp])[tp]
                source = task.processors[task.parents[store.node][0]]
                for table in _read_partition(self.cluster, topic, task.partition, end):
                    # Decode as the source does, without running the rest of the graph.
                    for key, value in _decoded_pairs(source, table):
                        if value is None:
                            store.values.pop(key, None)
                        else:
                            store.values[key] = value
                    self.restored_records += table.num_rows
                self.consumer.seek(tp, end)


COMMIT_INTERVAL = "interval"  # commit_interval_ms passed since the last periodic commit
COMMIT_DRAINED = "drained"  # the input is drained after records were processed


@dataclasses.dataclass(frozen=True)
class _Turn:
    """What one poll of the worker's loop found, for its commit decision."""

    drained: bool  # no input after records since the last commit, or caught up
    caught_up: bool  # the poll took every record the leaders had


class _CommitSchedule:
    """When the worker's loop starts a commit (the rules are the module docstring's):
    every ``interval_s`` (``commit_interval_ms``), counted from when the loop starts and
    then from the end of each periodic commit's step (1); or as soon as the input is
    drained after records were processed since the last commit — a poll found no input,
    or took every record the leaders had (as of their last fetch answers: the job commits
    then rather than one empty poll, the poll timeout, later), the latter at most every
    CAUGHT_UP_COMMIT_SPACING_S after the latest commit began, so a stream that trickles
    in is not committed at every poll. Only a periodic commit marks idle tasks (see
    ``_StreamWorker._mark_idle_tasks``): "no input since the last commit" must not shrink
    to one empty poll. ``clock_s`` gives monotonic seconds (a fake one in tests). Only
    the worker thread uses it."""

    def __init__(self, interval_s: float, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock_s = clock_s
        self._next_periodic_s = float("inf")  # clock_s seconds; set by start()
        self._uncommitted = False  # records processed since the last commit
        self._latest_began_s = float("-inf")  # clock_s seconds when the latest commit began

    def start(self) -> None:
        """The loop starts: the first periodic commit is due ``interval_s`` from now."""
        self._next_periodic_s = self.clock_s() + self.interval_s

    def after_poll(self, polled: bool, caught_up: Callable[[], bool]) -> _Turn:
        """Note a poll (``polled``: it brought records); ``caught_up`` asks the consumer
        whether no lag is left, and is asked only when the answer could start a commit."""
        is_caught_up = (polled and self.clock_s() - self._latest_began_s >= CAUGHT_UP_COMMIT_SPACING_S
                        and caught_up())
        turn = _Turn(drained=(not polled and self._uncommitted) or is_caught_up, caught_up=is_caught_up)
        self._uncommitted = self._uncommitted or polled
        return turn

    def commit_due(self, turn: _Turn) -> str | None:
        """COMMIT_INTERVAL, COMMIT_DRAINED, or None: no commit starts this turn. The
        interval wins when both are due."""
        if self.clock_s() >= self._next_periodic_s:
            return COMMIT_INTERVAL
        return COMMIT_DRAINED if turn.drained else None

    def commit_started(self, reason: str, began_s: float) -> None:
        """A commit for ``reason`` began at ``began_s`` (``clock_s`` seconds, once the one
        in flight before it was finished) and its step (1) is done now."""
        self._latest_began_s = began_s
        if reason == COMMIT_INTERVAL:
            self._next_periodic_s = self.clock_s() + self.interval_s
        self._uncommitted = False


class _LoopTimes:
    """Where a stream worker's loop spends its time, per phase of a turn (poll, process,
    commit): wall seconds (``wall_clock_s``) and CPU seconds of the worker's thread
    (``cpu_clock_s``), summed over the turns, and how many polls brought records — what
    limits a job's throughput (``stats()``, benchmarks/streams_bench.py). A turn whose
    poll failed counts in none of them. Only the worker thread writes it; ``stats()``
    reads it from another thread (a value it reads may be one turn old)."""

    PHASES = ("poll", "process", "commit")

    def __init__(self, wall_clock_s: Callable[[], float] = time.perf_counter,
                 cpu_clock_s: Callable[[], float] = time.thread_time) -> None:
        self.wall_clock_s, self.cpu_clock_s = wall_clock_s, cpu_clock_s
        self.wall_s = dict.fromkeys(self.PHASES, 0.0)
        self.cpu_s = dict.fromkeys(self.PHASES, 0.0)
        self.polls_with_records = 0
        self._mark_wall_s = self._mark_cpu_s = 0.0

    def start_turn(self) -> None:
        """A turn starts: mark now (a failed poll's turn is dropped by the next mark)."""
        self._mark_wall_s, self._mark_cpu_s = self.wall_clock_s(), self.cpu_clock_s()

    def end_poll(self, brought_records: bool) -> None:
        self.end_phase("poll")
        self.polls_with_records += brought_records

    def end_phase(self, phase: str) -> None:
        """Charge the time since the previous mark to ``phase`` and mark now."""
        wall_s, cpu_s = self.wall_clock_s(), self.cpu_clock_s()
        self.wall_s[phase] += wall_s - self._mark_wall_s
        self.cpu_s[phase] += cpu_s - self._mark_cpu_s
        self._mark_wall_s, self._mark_cpu_s = wall_s, cpu_s


def _decoded_pairs(source, table: pa.Table):
    captured = []

    class _Capture:
        def process(self, decoded, sender):
            captured.append(decoded)

    children, source.children = source.children, [_Capture()]
    try:
        source.process(table, None)
    finally:
        source.children = children
    for decoded in captured:
        for key, value in zip(decoded.column("key").to_pylist(), decoded.column("value").to_pylist()):
            yield key, value


def _read_partition(cluster: Any, topic: str, partition: int, end: int | None = None):
    """Tables of ``topic``/``partition`` from its start to ``end`` (default: its end)."""
    tp = TopicPartition(topic, partition)
    consumer = cluster.consumer(auto_offset_reset="earliest", fetch_max_wait_ms=100)
    try:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp] if end is None else end
        while consumer.position(tp) < end:
            for batches in consumer.poll_batches(timeout_s=0.5).values():
                for batch in batches:
                    table = pa.Table.from_batches([batch])
                    offsets = table.column("offset").to_numpy()
                    if offsets[-1] >= end:
                        table = table.slice(0, int((offsets < end).sum()))
                    if table.num_rows:
                        yield table
    finally:
        consumer.close()


class StreamsJob:
    """A running stream job: its worker actors (see the module docstring)."""

    def __init__(self, cluster: Any, app: StreamsApp, workers: int = 1, *, session_timeout_ms: int = 10_000,
                 heartbeat_interval_ms: int = 1_000, actor_options: dict | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.cluster = cluster
        self.app = app
        self.compiled = compile_app(app)
        self.partitions = prepare_topics(cluster, self.compiled)
        # The workers started now join together: the coordinator grants no partition
        # until all of them are in (or INITIAL_REBALANCE_DELAY_MS passed since the last
        # joined), so the first to start does not take every task only to hand most over.
        self._consumer_options = {"session_timeout_ms": session_timeout_ms,
                                  "heartbeat_interval_ms": heartbeat_interval_ms,
                                  "group_initial_rebalance_delay_ms": INITIAL_REBALANCE_DELAY_MS,
                                  "group_initial_members": workers}
        self._actor_options = {"num_cpus": 1, **(actor_options or {})}
        self._workers: list[Any] = []
        self._started: list[Any] = []  # every worker this job started: stop() kills them all
        # Workers that have not answered stats() yet, with the monotonic time they started.
        self._starting: dict[Any, float] = {}
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self.failure: dict | None = None
        self.scale(workers)
        self._supervisor = threading.Thread(target=self._supervise, daemon=True, name=f"rafka-streams-{app.application_id}")
        self._supervisor.start()

    @property
    def size(self) -> int:
        return len(self._workers)

    def scale(self, workers: int) -> None:
        """Run ``workers`` worker actors (tasks move between them by rebalancing)."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        with self._lock:
            while len(self._workers) < workers:
                self._workers.append(self._start_worker())
            surplus = self._workers[workers:]
            del self._workers[workers:]
        self._stop_workers(surplus)

    def _start_worker(self):
        worker = (ray.remote(_StreamWorker)
                  .options(max_restarts=-1, max_concurrency=4, namespace=self.cluster.namespace, **self._actor_options)
                  .remote(self.cluster.namespace, self.app, self._consumer_options))
        with self._lock:
            self._started.append(worker)
            self._starting[worker] = time.monotonic()
        return worker

    def _stop_workers(self, workers: list) -> None:
        if not workers:
            return
        try:
            rpc.get([worker.stop.remote() for worker in workers], timeout_s=STOP_TIMEOUT_S)
        except RafkaError as error:
            logger.warning("streams %r: a worker did not stop cleanly: %s", self.app.application_id, error)
        for worker in workers:
            self._kill(worker)

    def stats(self) -> list[dict]:
        with self._lock:
            workers = list(self._workers)
        answers = []
        for worker in workers:
            try:
                answers.append(rpc.get(worker.stats.remote(), timeout_s=STATS_TIMEOUT_S))
                with self._lock:
                    self._starting.pop(worker, None)
            except RafkaError as error:
                answers.append({"tasks": [], "records": 0, "dead": str(error)})
        return answers

    def wait_caught_up(self, timeout_s: float = 120.0, poll_interval_s: float = 0.05) -> None:
        """Wait until the job has committed every record of every topic it reads
        (sources and repartition topics alike), asking the group's coordinator every
        ``poll_interval_s``."""
        from rafka.errors import GroupNotFoundError, RequestTimeoutError

        topics = set(self.compiled.all_source_topics())
        expected = sum(self.partitions[t] for t in topics)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.failure is not None:
                raise RafkaError(f"stream job {self.app.application_id!r} failed: {self.failure['error']}")
            try:
                description = self.cluster.admin().describe_group(self.app.application_id)
                entries = [p for p in description["partitions"] if p["topic"] in topics]
                if len(entries) == expected and all(p["lag"] == 0 or p["log_end_offset"] == 0 for p in entries):
                    return
            except GroupNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RequestTimeoutError(f"stream job {self.app.application_id!r} did not catch up in {timeout_s} s")
            time.sleep(poll_interval_s)

    def stop(self) -> None:
        """Commit and stop every worker; the job resumes from here when started again.

        Then kill every worker this job ever started, replaced ones included (a worker
        replaced because it did not answer was killed then; this makes sure), so no
        actor of the job goes on consuming in its group after stop() returns."""
        with self._lock:
            workers, self._workers = self._workers, []
            self._stopped.set()
        self._stop_workers(workers)
        supervisor = getattr(self, "_supervisor", None)
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout=STATS_TIMEOUT_S + 10)
        with self._lock:
            started = list(self._started)
        for worker in started:
            self._kill(worker)

    def __enter__(self) -> "StreamsJob":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _supervise(self) -> None:
        while not self._stopped.wait(SUPERVISE_INTERVAL_S):
            self._check_workers()

    def _check_workers(self) -> None:
        """One round of supervision: replace each worker that does not answer (one that
        never has yet is starting, and gets WORKER_START_TIMEOUT_S from its start), report
        the first fatal error of one that does."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            try:
                stats = rpc.get(worker.stats.remote(), timeout_s=STATS_TIMEOUT_S)
            except RafkaError as error:
                with self._lock:
                    started_s = self._starting.get(worker)
                if started_s is not None and time.monotonic() - started_s < WORKER_START_TIMEOUT_S:
                    continue  # still starting: not hung (yet)
                self._replace(worker, error)
                continue
            with self._lock:
                self._starting.pop(worker, None)
            if stats.get("fatal") is not None and self.failure is None:
                self.failure = stats["fatal"]
                logger.error("streams %r: a worker failed: %s", self.app.application_id, self.failure["error"])

    def _replace(self, worker: Any, error: RafkaError) -> None:
        with self._lock:
            if self._stopped.is_set() or worker not in self._workers:
                return
            logger.warning("streams %r: a worker did not answer (%s); killing it and starting a replacement",
                           self.app.application_id, error)
            # Kill it for good first. A worker that is only slow (its stats call timed
            # out) or that Ray is restarting (max_restarts=-1) would otherwise go on
            # consuming in the group beside its replacement, tracked by nobody.
            self._kill(worker)
            self._workers[self._workers.index(worker)] = self._start_worker()

    def _kill(self, worker: Any) -> None:
        """Kill a worker actor for good (no restart); one already dead is fine."""
        try:
            ray.kill(worker, no_restart=True)
        except Exception as error:  # noqa: BLE001 - stop() tries again; the actor may be gone
            logger.warning("streams %r: could not kill a worker: %r", self.app.application_id, error)
            return
        with self._lock:
            self._starting.pop(worker, None)
            if worker in self._started:
                self._started.remove(worker)


def prepare_topics(cluster: Any, compiled: Compiled) -> dict[str, int]:
    """Check co-partitioning and create the internal topics; returns every topic's
    partition count."""
    admin = cluster.admin()
    counts: dict[str, int] = {}
    metadata = cluster.metadata
    internal = set(compiled.repartition_topics)
    for sub in compiled.subtopologies:
        for topic in sub.source_topics:
            if topic not in internal:
                counts[topic] = metadata.partition_count(topic)  # TopicNotFoundError names it
    replication = min(3, sum(1 for b in cluster.brokers() if b["alive"]))
    pending = dict(compiled.repartition_topics)
    while pending:
        progressed = False
        for topic, writer in list(pending.items()):
            sources = compiled.subtopologies[writer].source_topics
            if all(t in counts for t in sources):
                counts[topic] = max(counts[t] for t in sources)
                _create(admin, topic, counts[topic], replication, dict(INTERNAL_TOPIC_CONFIG))
                del pending[topic]
                progressed = True
        if not progressed:
            raise ValueError(f"repartition topics {sorted(pending)} form a cycle")
    for sub in compiled.subtopologies:
        sizes = {t: counts[t] for t in sub.source_topics}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"sub-topology {sub.index} reads topics with different partition counts {sizes}; "
                             "joined topics must be co-partitioned")
    for topic, index in compiled.changelog_topics.items():
        sub = compiled.subtopologies[index]
        counts[topic] = counts[sub.source_topics[0]]
        _create(admin, topic, counts[topic], replication, {"cleanup.policy": "compact", **INTERNAL_TOPIC_CONFIG})
    return counts


def _create(admin: Any, topic: str, partitions: int, replication: int, config: dict) -> None:
    try:
        admin.create_topic(topic, partitions=partitions, replication_factor=replication, config=config)
    except TopicExistsError:
        existing = len(admin.describe_topic(topic)["partitions"])
        if existing != partitions:
            raise ValueError(f"internal topic {topic!r} has {existing} partitions, the job needs {partitions}") from None
