"""ConsumerPool: N consumer actors in one group, each running a user handler.

``cluster.consumer_pool(topics, group_id, handler, consumers=2)`` starts ``consumers``
Ray actors. Each runs a Consumer subscribed to ``topics`` in ``group_id`` and a loop:
``poll_batches()``, call the handler on what arrived, then commit (synchronously) the
offsets after it. The handler is

* a function, called as ``handler(batch, topic_partition)`` with a ``pyarrow.RecordBatch``
  of ``offset, timestamp, key, value, headers`` (``mode="batches"``, the fast path) or as
  ``handler(record)`` with one ``rafka.Record`` (``mode="records"``); or
* a class, instantiated once per actor as ``handler(*handler_args, **handler_kwargs)``
  and then called like the function (``__call__``); its ``close()``, if any, runs when
  the actor stops. State in the instance is the actor's own: an actor that restarts or a
  partition that moves starts from a new instance (keep durable state elsewhere).

Delivery is at-least-once: offsets are committed only after the handler returned for
everything before them, so a killed actor's partitions resume, in another actor, from
the last commit, and records processed since may be handled twice. Nothing is skipped
unless the error policy says so.

Error policy (``on_error``), when the handler raises on a batch or record:

* ``"retry"``: retry it forever with exponential backoff (``retry_backoff_ms`` up to
  ``retry_backoff_max_ms``, each delay jittered by up to 20%: ``rafka.retry``); every
  failure is reported. The actor retries in its poll
  loop, so *every* partition of that actor waits, not only the failing record's (the
  other actors go on). An actor that retries for longer than ``max_poll_interval_ms``
  leaves the group (as any consumer that stops polling): its partitions move to other
  actors, which start again from the last commit — including the failing record — while
  the retrying actor's next commit is refused and it rejoins.
* ``"skip"``: retry ``max_retries`` times, then skip it and go on. In batches mode the
  failed batch is retried row by row so only the rows that fail are skipped.
* ``"stop"`` (default): retry ``max_retries`` times, then stop the whole pool without
  committing the failed record, so the next run starts with it; ``wait()`` raises
  ``HandlerError``.

Supervision. The pool checks its actors every second:

* an actor that died (killed, its node lost) is killed for good and replaced;
* an actor whose consumer loop failed outside the handler with an error a fresh actor
  may not meet again (a retriable rafka error, or the cluster being unreachable) is
  killed and replaced; the error is in ``errors()`` with action "replace". A slot that
  keeps failing is refilled after a backoff (1, 2, 4 ... 30 s), not on every check;
* any other consumer error would only repeat in a replacement
  (``NoOffsetForPartitionError`` with ``auto_offset_reset="none"``,
  ``InconsistentGroupProtocolError``, ``FencedInstanceIdError``, ``TopicNotFoundError``
  when an actor subscribes after a topic was deleted, an exception from the handler
  class's constructor, a bug): the pool stops, as a Kafka consumer's ``poll()`` raises
  it, and ``wait()`` / ``wait_caught_up()`` raise that error (the same rafka class;
  ``RafkaError`` for a non-rafka exception) with the report as its ``report``
  attribute. Its action in ``errors()`` is "stop".

Every failure is kept in ``errors()`` with its topic, partition, offset (and last
offset for a batch; None for a consumer error), the exception, its type, and the action
taken: the last 100 per running actor, and the last 100 of actors that were stopped or
replaced (kept by the pool, so they survive ``stop()``).

``scale(n)`` adds actors or stops surplus ones (each finishes its batch, commits and
leaves the group, so the group rebalances cooperatively: only moved partitions pause).
``autoscale=(min, max)`` lets the pool pick its size from the group's lag: one actor per
``lag_per_consumer`` records of lag, within [min, max] and at most one per partition,
growing at once and shrinking by one after the lag stayed low for three checks. The lag
the autoscaler uses counts a partition with no commit yet from where the group would
start reading it (the log start offset with ``auto_offset_reset="earliest"``, nothing
with "latest"), so a new group on a backlog scales up before its first commit.
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import threading
import time
import traceback
from typing import Any, Callable, Iterable

import ray

from rafka import errors as rafka_errors
from rafka.actors.process import tune_actor_process
from rafka.client import rpc
from rafka.client.records import Record, TopicPartition
from rafka.errors import (
    ClusterError,
    GroupNotFoundError,
    HandlerError,
    InvalidConfigError,
    RafkaError,
    RequestTimeoutError,
)
from rafka.retry import Backoff, retry

logger = logging.getLogger(__name__)

MODES = ("batches", "records")
POLICIES = ("retry", "skip", "stop")
ERRORS_KEPT = 100
SUPERVISE_INTERVAL_S = 1.0
SCALE_DOWN_CHECKS = 3
# A slot whose actor keeps failing is refilled after 1, 2, 4 ... at most 30 s (the
# backoff starts over once the slot has gone REPLACE_BACKOFF_RESET_S without a failure),
# so an error that repeats does not start a new actor every round.
REPLACE_BACKOFF_MAX_S = 30.0
REPLACE_BACKOFF_RESET_S = 60.0


class ReplaceBackoff:
    """When a pool slot may be refilled again: at once the first time, then only after
    1, 2, 4 ... at most ``max_s`` seconds since the previous refill; a slot that went
    ``reset_s`` without one starts over. Times are the caller's monotonic seconds."""

    def __init__(self, max_s: float = REPLACE_BACKOFF_MAX_S, reset_s: float = REPLACE_BACKOFF_RESET_S) -> None:
        self.max_s = max_s
        self.reset_s = reset_s
        # No jitter: the pool's supervisor is the only one refilling its slots, and it
        # checks once a round anyway.
        self.backoff = Backoff(initial_s=min(1.0, max_s), max_s=max_s, jitter=0.0)
        self._slots: dict[int, tuple[float, int]] = {}  # slot -> (its last refill, refills since the reset)

    def allow(self, slot: int, now_s: float) -> bool:
        """Whether ``slot`` may be refilled at ``now_s``; if so, the refill is recorded."""
        last_s, refills = self._slots.get(slot, (float("-inf"), 0))
        if now_s - last_s > self.reset_s:
            refills = 0
        if refills and now_s < last_s + self.backoff.delay_s(refills - 1):
            return False
        self._slots[slot] = (now_s, refills + 1)
        return True


class _PoolWorker:
    """One consumer actor of a pool (see the module docstring). Its loop runs in a
    thread started by the constructor, so a restarted actor resumes by itself."""

    def __init__(self, namespace: str, spec: dict) -> None:
        tune_actor_process()
        from rafka.client.cluster import Cluster

        self.spec = spec
        self.cluster = Cluster.connect(namespace=namespace)
        self.handler: Any = None  # built by the loop, so that a failing constructor is reported
        self.records = 0
        self.batches = 0
        self.failures: collections.deque = collections.deque(maxlen=ERRORS_KEPT)
        self.fatal: dict | None = None
        self.assignment: list[tuple[str, int]] = []
        self.member_id = ""
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rafka-pool-worker", daemon=True)
        self._thread.start()

    def stats(self) -> dict:
        return {"member_id": self.member_id, "records": self.records, "batches": self.batches, "errors": len(self.failures),
                "assignment": self.assignment, "stopped": self._stopped.is_set(), "fatal": self.fatal}

    def errors(self) -> list[dict]:
        return list(self.failures)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Finish the current batch, commit, leave the group; True once stopped."""
        self._stopping.set()
        return self._stopped.wait(timeout_s)

    def _run(self) -> None:
        spec = self.spec
        consumer = None
        try:
            handler = spec["handler"]
            self.handler = handler(*spec["handler_args"], **spec["handler_kwargs"]) if inspect.isclass(handler) \
                else handler
            consumer = self.cluster.consumer(group_id=spec["group_id"], enable_auto_commit=False, **spec["consumer_config"])
            if spec["pattern"] is not None:
                consumer.subscribe(pattern=spec["pattern"])
            else:
                consumer.subscribe(spec["topics"])
            while not self._stopping.is_set():
                polled = consumer.poll_batches(timeout_s=0.5, max_records=spec["max_poll_records"])
                self.assignment = sorted(consumer.assignment())
                self.member_id = consumer.member_id
                if not polled:
                    continue
                done: dict[TopicPartition, int] = {}
                for tp, batches in polled.items():
                    for batch in batches:
                        if not self._handle(tp, batch):
                            self._stopping.set()
                            break
                        done[tp] = batch.column(0)[-1].as_py() + 1
                    if self._stopping.is_set() and self.fatal is not None:
                        break
                if done:
                    try:
                        consumer.commit(done)
                    except RafkaError as error:
                        # Revoked meanwhile (or the coordinator is unreachable): the next
                        # owner re-reads from the last commit, as at-least-once allows.
                        logger.warning("pool worker: commit failed: %s", error)
        except _Abandon:
            pass
        except BaseException as error:  # noqa: BLE001 - reported through stats(), acted on by the pool
            action = "replace" if _replaceable(error) else "stop"
            logger.exception("pool worker: the consumer loop failed (the pool will %s this actor)", action)
            report = {
                "kind": "consumer", "topic": None, "partition": None, "offset": None, "last_offset": None,
                "error": repr(error), "error_type": type(error).__name__, "traceback": traceback.format_exc(),
                "attempt": None, "action": action, "time_ms": time.time_ns() // 1_000_000,
            }
            self.failures.append(report)
            self.fatal = report
        finally:
            try:
                if consumer is not None:
                    consumer.close()
                close = getattr(self.handler, "close", None)
                if self.handler is not None and inspect.isclass(spec["handler"]) and callable(close):
                    close()
            finally:
                self._stopped.set()

    def _handle(self, tp: TopicPartition, batch) -> bool:
        """Run the handler on ``batch`` per the error policy; False to stop the pool."""
        spec = self.spec
        if spec["mode"] == "batches":
            if self._attempt(tp, batch, lambda: self.handler(batch, tp), spec["on_error"]):
                self.records += batch.num_rows
                self.batches += 1
                return True
            if spec["on_error"] == "stop":
                return False
            # skip: find the rows that fail, one at a time, and skip only those.
            for row in range(batch.num_rows):
                single = batch.slice(row, 1)
                self._attempt(tp, single, lambda: self.handler(single, tp), "skip", retries=0)  # noqa: B023 - called now
            self.records += batch.num_rows
            self.batches += 1
            return True
        topic, partition = tp
        columns = [batch.column(name).to_pylist() for name in ("offset", "timestamp", "key", "value", "headers")]
        for row, (offset, timestamp, key, value, headers) in enumerate(zip(*columns)):
            headers = None if headers is None else [(h["key"], h["value"]) for h in headers]
            record = Record(topic, partition, offset, timestamp, key, value, headers)
            if not self._attempt(tp, batch.slice(row, 1), lambda: self.handler(record),  # noqa: B023 - called now
                                 spec["on_error"]):
                if spec["on_error"] == "stop":
                    return False
            self.records += 1
        self.batches += 1
        return True

    def _attempt(self, tp: TopicPartition, batch, call: Callable[[], Any], policy: str,
                 retries: int | None = None) -> bool:
        spec = self.spec
        retries = spec["max_retries"] if retries is None else retries
        backoff = Backoff(initial_s=spec["retry_backoff_ms"] / 1000,
                          max_s=max(spec["retry_backoff_ms"], spec["retry_backoff_max_ms"]) / 1000)

        def after_failure(error: BaseException, attempt: int) -> bool:
            """Report the failure; whether to call the handler again."""
            offsets = batch.column(0)
            exhausted = policy != "retry" and attempt > retries
            action = "retry" if not exhausted else ("skip" if policy == "skip" else "stop")
            if self._stopping.is_set() and not exhausted:
                action = "abandoned (stopping)"
            report = {
                "kind": "handler", "topic": tp[0], "partition": tp[1], "offset": offsets[0].as_py(),
                "last_offset": offsets[-1].as_py(), "error": repr(error),
                "error_type": type(error).__name__, "traceback": traceback.format_exc(),
                "attempt": attempt, "action": action,
                "time_ms": time.time_ns() // 1_000_000,
            }
            self.failures.append(report)
            logger.warning("handler failed on %s-%d offset %d (attempt %d, %s): %r",
                           tp[0], tp[1], report["offset"], attempt, action, error)
            if exhausted and action == "stop":
                self.fatal = report
            if action.startswith("abandoned"):
                # Not committed: the next owner of the partition starts here again.
                raise _Abandon() from None
            return not exhausted

        try:
            retry(call, backoff, retriable=after_failure)
        except _Abandon:
            raise
        except Exception:  # noqa: BLE001 - the handler's failure, reported by after_failure
            return False
        return True


class _Abandon(Exception):
    """The pool is stopping while a handler keeps failing: leave without committing."""


def _replaceable(error: BaseException) -> bool:
    """Whether a fresh actor may succeed where this consumer loop failed: the error is
    retriable (a timeout, a leader moving), or the cluster could not be reached. Any
    other error (a missing offset with auto_offset_reset="none", a fenced or
    inconsistent member, a topic deleted before subscribing, a bug) would only repeat in a replacement."""
    return isinstance(error, RafkaError) and (error.retriable or isinstance(error, ClusterError))


class ConsumerPool:
    """See the module docstring. Create with ``cluster.consumer_pool(...)``."""

    def __init__(self, cluster: Any, topics: Iterable[str] | None, group_id: str, handler: Any, *,
                 pattern: str | None = None, consumers: int = 1, mode: str = "batches", on_error: str = "stop",
                 max_retries: int = 3, retry_backoff_ms: int = 100, retry_backoff_max_ms: int = 10_000,
                 handler_args: tuple = (), handler_kwargs: dict | None = None,
                 autoscale: tuple[int, int] | None = None, lag_per_consumer: int = 100_000,
                 autoscale_interval_s: float = 5.0, max_poll_records: int = 100_000,
                 actor_options: dict | None = None, **consumer_config: Any) -> None:
        if not isinstance(group_id, str) or not group_id:
            raise InvalidConfigError(f"group_id must be a non-empty str, got {group_id!r}")
        if not callable(handler):
            raise TypeError(f"handler must be a function or a class, got {handler!r}")
        if mode not in MODES:
            raise InvalidConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if on_error not in POLICIES:
            raise InvalidConfigError(f"on_error must be one of {', '.join(POLICIES)}, got {on_error!r}")
        for name, value in (("consumers", consumers), ("max_retries", max_retries),
                            ("retry_backoff_ms", retry_backoff_ms), ("retry_backoff_max_ms", retry_backoff_max_ms),
                            ("lag_per_consumer", lag_per_consumer), ("max_poll_records", max_poll_records)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name in (
                    "consumers", "lag_per_consumer", "max_poll_records") else 0):
                raise InvalidConfigError(f"{name} must be a {'positive' if name == 'consumers' else 'non-negative'} "
                                         f"int, got {value!r}")
        if autoscale is not None:
            low, high = autoscale
            if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
                raise InvalidConfigError(f"autoscale must be (min, max) with 1 <= min <= max, got {autoscale!r}")
            consumers = min(max(consumers, low), high)
        from rafka.client.consumer import ConsumerConfig

        ConsumerConfig.build(group_id=group_id, **consumer_config)  # bad options fail here, not in an actor
        if (topics is None) == (pattern is None):
            raise ValueError("consumer_pool() takes either topics or pattern")
        topics = None if topics is None else sorted(set(topics))
        for topic in topics or ():
            cluster.metadata.partition_count(topic)  # TopicNotFoundError names an unknown topic
        self._cluster = cluster
        self.group_id = group_id
        self._spec = {
            "topics": topics, "pattern": pattern, "group_id": group_id, "handler": handler,
            "handler_args": tuple(handler_args), "handler_kwargs": dict(handler_kwargs or {}), "mode": mode,
            "on_error": on_error, "max_retries": max_retries, "retry_backoff_ms": retry_backoff_ms,
            "retry_backoff_max_ms": retry_backoff_max_ms, "max_poll_records": max_poll_records,
            "consumer_config": consumer_config,
        }
        self._actor_options = {"num_cpus": 1, **(actor_options or {})}
        self._autoscale = autoscale
        self._lag_per_consumer = lag_per_consumer
        self._autoscale_interval_s = autoscale_interval_s
        self._workers: list[Any] = []
        self._lock = threading.RLock()
        self._failure: dict | None = None
        # Failures of actors that were stopped or replaced (theirs die with them).
        self._reports: collections.deque = collections.deque(maxlen=ERRORS_KEPT)
        self._stopped = threading.Event()
        self._stopping_lock = threading.Lock()  # held by stop() until every actor is gone
        self._low_lag_checks = 0
        self._replacements = ReplaceBackoff()
        self.scale(consumers)
        self._supervisor = threading.Thread(target=self._supervise, name=f"rafka-pool-{group_id}", daemon=True)
        self._supervisor.start()

    # -- size ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self._workers)

    def scale(self, consumers: int) -> None:
        """Run ``consumers`` actors: start new ones, or stop the newest surplus ones
        gracefully (each commits and leaves the group)."""
        if isinstance(consumers, bool) or not isinstance(consumers, int) or consumers < 1:
            raise InvalidConfigError(f"consumers must be a positive int, got {consumers!r}")
        with self._lock:
            if self._stopped.is_set():
                raise RafkaError("the pool is stopped")
            while len(self._workers) < consumers:
                self._workers.append(self._start_worker(len(self._workers)))
            surplus = self._workers[consumers:]
            del self._workers[consumers:]
        self._stop_workers(surplus)

    def _start_worker(self, slot: int):
        """The actor for position ``slot`` of the pool. With ``group_instance_id`` set,
        each slot is its own static member, ``<group_instance_id>-<slot>``: one shared id
        would make the actors fence each other, and a replacement in the same slot
        takes over its predecessor's partitions without a rebalance."""
        spec = self._spec
        instance_id = spec["consumer_config"].get("group_instance_id")
        if instance_id is not None:
            spec = {**spec, "consumer_config": {**spec["consumer_config"], "group_instance_id": f"{instance_id}-{slot}"}}
        return (ray.remote(_PoolWorker)
                .options(max_restarts=-1, max_concurrency=4, namespace=self._cluster.namespace, **self._actor_options)
                .remote(self._cluster.namespace, spec))

    def _stop_workers(self, workers: list) -> None:
        if not workers:
            return
        try:
            rpc.get([worker.stop.remote() for worker in workers], timeout_s=60)
        except RafkaError as error:
            logger.warning("pool %r: a worker did not stop cleanly: %s", self.group_id, error)
        for worker in workers:
            self._keep_errors(worker)
            ray.kill(worker, no_restart=True)

    def _keep_errors(self, worker) -> None:
        """Keep a worker's failure reports before it goes (errors() then still has them)."""
        try:
            reports = rpc.get(worker.errors.remote(), timeout_s=10)
        except RafkaError:
            return  # dead already: what it had is lost
        with self._lock:
            self._reports.extend(reports)

    def _replace(self, worker, why: str, report: dict | None) -> None:
        """Kill ``worker`` for good and start another in its place (unless the pool is
        stopping or the worker was already removed)."""
        with self._lock:
            if self._stopped.is_set() or worker not in self._workers:
                return
            slot = self._workers.index(worker)
            if not self._replacements.allow(slot, time.monotonic()):
                return  # asked again on a later round (and said then)
            logger.warning("pool %r: %s; starting a replacement", self.group_id, why)
            self._workers[slot] = self._start_worker(slot)
            if report is not None:
                self._reports.append(report)
        if report is None:
            self._keep_errors(worker)
        ray.kill(worker, no_restart=True)

    # -- state ---------------------------------------------------------------------------

    def stats(self) -> list[dict]:
        """Per actor: records and batches handled, errors, its partitions."""
        with self._lock:
            workers = list(self._workers)
        answers = []
        for worker in workers:
            try:
                answers.append(rpc.get(worker.stats.remote(), timeout_s=10))
            except RafkaError as error:
                answers.append({"records": 0, "batches": 0, "errors": 0, "assignment": [], "dead": str(error)})
        return answers

    def errors(self) -> list[dict]:
        """Recent failures (handler and consumer) of every actor, running or gone, oldest
        first (see the module docstring)."""
        with self._lock:
            workers = list(self._workers)
            reports = list(self._reports)
        for worker in workers:
            try:
                reports.extend(rpc.get(worker.errors.remote(), timeout_s=10))
            except RafkaError:
                pass
        return sorted(reports, key=lambda report: report["time_ms"])

    def lag(self) -> int:
        """Records of the subscribed partitions the group has yet to process: per
        partition, the log end offset minus the committed offset or, before the first
        commit, minus where the group starts reading (the log start offset with
        ``auto_offset_reset="earliest"``; nothing with "latest" or "none"). Unlike
        ``Admin.describe_group``, whose lag is None without a commit (as Kafka's tools
        show '-'), this counts a new group's backlog, so autoscaling sees it."""
        admin = self._cluster.admin()
        try:
            partitions = admin.describe_group(self.group_id)["partitions"]
        except GroupNotFoundError:
            partitions = []  # no member has joined yet
        committed = {(p["topic"], p["partition"]): p["committed_offset"] for p in partitions}
        topics = self._spec["topics"] or sorted({topic for topic, _ in committed})
        from_earliest = self._spec["consumer_config"].get("auto_offset_reset", "latest") == "earliest"
        total = 0
        for topic in topics:
            ends = admin.list_offsets(topic, "latest")
            starts = admin.list_offsets(topic, "earliest") if from_earliest else ends
            for partition, end in ends.items():
                offset = committed.get((topic, partition))
                total += max(0, end - (offset if offset is not None else starts.get(partition, end)))
        return total

    def wait_caught_up(self, timeout_s: float = 60.0) -> None:
        """Wait until every record of the subscribed partitions is committed (lag 0, and
        every partition has a commit); raises ``RequestTimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._raise_failure()
            try:
                description = self._cluster.admin().describe_group(self.group_id)
                partitions = [p for p in description["partitions"]
                              if self._spec["topics"] is None or p["topic"] in self._spec["topics"]]
                if partitions and all(p["lag"] == 0 or p["log_end_offset"] == 0 for p in partitions) and \
                        len({(p["topic"], p["partition"]) for p in partitions}) >= self._partition_count():
                    return
            except GroupNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RequestTimeoutError(f"pool {self.group_id!r} did not catch up within {timeout_s} s")
            time.sleep(0.2)

    def _partition_count(self) -> int:
        metadata = self._cluster.metadata
        return sum(metadata.partition_count(topic) for topic in self._spec["topics"] or ())

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the pool stops (``stop()``, the "stop" error policy, or a consumer
        error no replacement could fix); raises ``HandlerError`` when a handler failure
        stopped it, the consumer's error when that did (see the module docstring)."""
        if self._stopped.wait(timeout_s):
            with self._stopping_lock:
                pass  # stop() has finished: errors() has every actor's reports
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is None:
            return
        if failure.get("kind") == "handler":
            raise HandlerError(
                f"handler failed on {failure['topic']}-{failure['partition']} at offset {failure['offset']} "
                f"(attempt {failure['attempt']}): {failure['error']}",
                topic=failure["topic"], partition=failure["partition"], offset=failure["offset"],
                report=failure)
        # A consumer error: raise it as its own rafka class, as Consumer.poll() would.
        error_class = getattr(rafka_errors, failure["error_type"], None)
        if not (isinstance(error_class, type) and issubclass(error_class, RafkaError)) or error_class is HandlerError:
            error_class = RafkaError
        error = error_class(f"pool {self.group_id!r} stopped: a consumer actor failed with {failure['error']} "
                            "(not retriable, so it was not replaced)")
        error.report = failure
        raise error

    def stop(self) -> None:
        """Stop every actor gracefully (each commits and leaves the group); returns when
        they are gone."""
        with self._stopping_lock:
            with self._lock:
                workers, self._workers = self._workers, []
                self._stopped.set()
            self._stop_workers(workers)

    def __enter__(self) -> "ConsumerPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- supervision: replace dead actors, stop on failure, autoscale ---------------------

    def _supervise(self) -> None:
        next_autoscale_s = time.monotonic() + self._autoscale_interval_s
        while not self._stopped.wait(SUPERVISE_INTERVAL_S):
            try:
                self._check_workers()
                if self._autoscale is not None and time.monotonic() >= next_autoscale_s:
                    next_autoscale_s = time.monotonic() + self._autoscale_interval_s
                    self._autoscale_once()
            except Exception as error:  # noqa: BLE001 - supervision must go on
                logger.warning("pool %r: supervision failed: %r", self.group_id, error)

    def _check_workers(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            try:
                stats = rpc.get(worker.stats.remote(), timeout_s=10)
            except RequestTimeoutError:
                continue  # busy or its node is slow: suspect, not dead; ask again next round
            except RafkaError as error:
                # Dead for good (killed without restart, or its node is gone): replace it.
                self._replace(worker, f"a consumer actor died ({error})", {
                    "kind": "actor", "topic": None, "partition": None, "offset": None, "last_offset": None,
                    "error": f"the consumer actor died: {error}", "error_type": type(error).__name__,
                    "traceback": "", "attempt": None, "action": "replace", "time_ms": time.time_ns() // 1_000_000,
                })
                continue
            fatal = stats.get("fatal")
            if fatal is None:
                continue
            if fatal["action"] == "replace":
                self._replace(worker, f"a consumer actor failed ({fatal['error']})", None)
                continue
            # "stop": the handler's policy, or a consumer error a replacement would repeat.
            self._failure = fatal
            logger.error("pool %r: stopping after a failure: %s", self.group_id, fatal["error"])
            self.stop()
            return

    def _autoscale_once(self) -> None:
        low, high = self._autoscale
        partitions = self._partition_count() or high
        lag = self.lag()
        desired = min(max(math.ceil(lag / self._lag_per_consumer), low), high, max(partitions, low))
        current = self.size
        if desired > current:
            self._low_lag_checks = 0
            logger.info("pool %r: lag %d, scaling up %d -> %d", self.group_id, lag, current, desired)
            self.scale(desired)
        elif desired < current:
            self._low_lag_checks += 1
            if self._low_lag_checks >= SCALE_DOWN_CHECKS:
                self._low_lag_checks = 0
                logger.info("pool %r: lag %d, scaling down %d -> %d", self.group_id, lag, current, current - 1)
                self.scale(current - 1)
        else:
            self._low_lag_checks = 0
