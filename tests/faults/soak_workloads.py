"""Workloads a soak runs under the nemesis, each recording what it did into a ``History``.

All of them run as threads of the driver process, so their timestamps
(``time.monotonic()``) are comparable. Each is bounded: producers send at a fixed rate
(``records_per_s``), consumers poll with bounded ``max_records``, and every wait at the
end has a deadline. The recorded shapes are the ones ``history_checker`` documents.

* ``ProducerWorkload``: an idempotent acks=all producer sending unique values
  ``<name>-<index>`` with keys; each send's outcome is ``ok`` (offset), ``failed``
  (``send()`` raised: nothing was queued) or ``unknown`` (the future failed, or was not
  done when the run ended: it may or may not be in the log). A producer whose batches
  fail with a non-retriable error is closed and replaced by a new one (a new producer
  id), as an application would.
* ``CompactedWorkload``: the same on a compacted topic, over a small key space, with
  tombstones.
* ``GroupWorkload``: consumers of one group that commit synchronously every
  ``commit_interval_s`` and when partitions are revoked; records assignments (intervals), every record
  returned, and every commit. ``rejoin(i)`` and ``stall(i, s)`` are the nemesis's
  hooks. An observer samples, every second, the group's committed offsets and its
  grants (describe_group) from its coordinator.
* ``StreamWorkload``: a stream job (rafka.streams, one worker actor) copying an append
  topic to an output topic, key and value, at least once. ``worker()`` is the nemesis's
  hook (its current worker actor). At the end it waits for the job to commit its whole
  input, and records whether it did (``streams`` in the history).
* ``read_all``: a whole topic from the earliest offset to its end, in assign mode.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

STOP_WAIT_S = 60.0


class History:
    """The run's record: lists the workloads append to (under one lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, Any] = {"topics": {}, "sends": [], "observations": [], "final_reads": {},
                                     "assignments": [], "commits": [], "committed_samples": [],
                                     "grant_samples": [], "nemesis": [], "streams": [],
                                     "notes": []}

    def append(self, kind: str, entry: Any) -> Any:
        with self.lock:
            self.data[kind].append(entry)
        return entry

    def extend(self, kind: str, entries: list) -> None:
        with self.lock:
            self.data[kind].extend(entries)

    def note(self, text: str) -> None:
        self.append("notes", {"at_s": time.monotonic(), "note": text[:500]})


class ProducerWorkload:
    def __init__(self, cluster: Any, history: History, name: str, topic: str, *, keys: int, records_per_s: float,
                 tombstone_share: float = 0.0, seed: int = 0, producer_config: dict | None = None) -> None:
        self.cluster, self.history, self.name, self.topic = cluster, history, name, topic
        self.keys, self.records_per_s, self.tombstone_share = keys, records_per_s, tombstone_share
        self.rng = random.Random(f"{seed}-{name}")
        self.producer_config = {"acks": "all", "enable_idempotence": True, "linger_ms": 5,
                                "delivery_timeout_ms": 60_000, "request_timeout_ms": 5_000, "max_block_ms": 10_000,
                                **(producer_config or {})}
        self._stop = threading.Event()
        self._replace = threading.Event()
        self._pending: list[tuple[dict, Any]] = []
        self._thread = threading.Thread(target=self._run, name=f"soak-{name}", daemon=True)
        self.producers_made = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(STOP_WAIT_S + 30)

    def _new_producer(self):
        self.producers_made += 1
        return self.cluster.producer(**self.producer_config)

    def _callback(self, entry: dict):
        def done(metadata, error) -> None:
            entry["done_s"] = time.monotonic()
            if error is None:
                entry.update(outcome="ok", partition=metadata.partition, offset=metadata.offset)
            else:
                entry.update(outcome="unknown", error=repr(error)[:200])
                if not getattr(error, "retriable", False):
                    self._replace.set()
        return done

    def _run(self) -> None:
        producer = None
        index = 0
        chunk = max(1, int(self.records_per_s / 20))
        next_s = time.monotonic()
        try:
            while not self._stop.is_set():
                if producer is None or self._replace.is_set():
                    if producer is not None:
                        self._close(producer)
                        self.history.note(f"{self.name}: replaced its producer after a non-retriable error")
                    self._replace.clear()
                    try:
                        producer = self._new_producer()
                    except Exception as error:  # noqa: BLE001 - the controller may be down: try again
                        self.history.note(f"{self.name}: could not make a producer: {error!r}")
                        producer = None
                        self._stop.wait(1.0)
                        continue
                for _ in range(chunk):
                    key = f"k{self.rng.randrange(self.keys)}"
                    tombstone = self.tombstone_share and self.rng.random() < self.tombstone_share
                    value = None if tombstone else f"{self.name}-{index}"
                    entry = {"producer": self.name, "index": index, "topic": self.topic, "key": key,
                             "value": value, "outcome": "pending", "partition": None, "offset": None,
                             "sent_s": time.monotonic()}
                    if tombstone:
                        entry["tombstone_id"] = f"{self.name}-{index}"
                    index += 1
                    self.history.append("sends", entry)
                    try:
                        producer.send(self.topic, None if value is None else value.encode(), key=key.encode(),
                                      callback=self._callback(entry))
                    except Exception as error:  # noqa: BLE001 - recorded as a definite failure
                        entry.update(outcome="failed", error=repr(error)[:200], done_s=time.monotonic())
                        break
                next_s += chunk / self.records_per_s
                self._stop.wait(max(0.0, next_s - time.monotonic()))
                next_s = max(next_s, time.monotonic() - 1.0)  # no burst to catch up after a stall
        finally:
            if producer is not None:
                self._close(producer)
            with self.history.lock:
                for entry in self.history.data["sends"]:
                    if entry["producer"] == self.name and entry["outcome"] == "pending":
                        entry["outcome"] = "unknown"
                        entry["error"] = "not done when the run ended"

    def _close(self, producer: Any) -> None:
        try:
            producer.flush(timeout_s=STOP_WAIT_S)
        except Exception as error:  # noqa: BLE001 - what is unfinished stays unknown
            self.history.note(f"{self.name}: flush failed: {error!r}")
        try:
            producer.close(timeout_s=5)
        except Exception as error:  # noqa: BLE001
            self.history.note(f"{self.name}: close failed: {error!r}")


class _Listener:
    """Records a group consumer's ownership intervals (see history_checker)."""

    def __init__(self, slot: "_ConsumerSlot") -> None:
        self.slot = slot

    def on_partitions_assigned(self, assigned) -> None:
        now = time.monotonic()
        for tp in assigned:
            self.slot.interval_counter += 1
            self.slot.open_intervals[(tp.topic, tp.partition)] = {
                "consumer": self.slot.name, "interval": self.slot.interval_counter, "topic": tp.topic,
                "partition": tp.partition, "start_s": now, "end_s": None, "how": None}

    def on_partitions_revoked(self, revoked) -> None:
        # Commit what was processed while the partitions are still ours (auto-commit is off).
        self.slot.commit({tp for tp in revoked})
        self.slot.close_intervals(revoked, "revoked")

    def on_partitions_lost(self, lost) -> None:
        self.slot.close_intervals(lost, "lost")


class _ConsumerSlot:
    """One consumer position of the group; ``generation`` counts its incarnations."""

    def __init__(self, workload: "GroupWorkload", index: int) -> None:
        self.workload = workload
        self.index = index
        self.generation = 0
        self.name = ""
        self.consumer: Any = None
        self.interval_counter = 0
        self.open_intervals: dict[tuple[str, int], dict] = {}
        self.stall_until_s = 0.0
        self.rejoin_requested = threading.Event()

    def close_intervals(self, partitions, how: str, at_s: float | None = None) -> None:
        now = time.monotonic() if at_s is None else at_s
        for tp in list(partitions):
            key = (tp.topic, tp.partition) if not isinstance(tp, tuple) else tp
            interval = self.open_intervals.pop(key, None)
            if interval is not None:
                interval.update(end_s=now, how=how)
                self.workload.history.append("assignments", interval)

    def commit(self, partitions=None) -> None:
        consumer = self.consumer
        try:
            positions = {tp: consumer.position(tp) for tp in consumer.assignment()
                         if partitions is None or tp in partitions}
        except Exception as error:  # noqa: BLE001 - no position to commit yet
            self.workload.history.note(f"{self.name}: no positions to commit: {error!r}")
            return
        if not positions:
            return
        try:
            consumer.commit(positions)
            outcome, error = "ok", None
        except Exception as caught:  # noqa: BLE001 - a refused or timed-out commit is recorded
            outcome, error = "failed", repr(caught)[:200]
        now = time.monotonic()
        self.workload.history.extend("commits", [
            {"consumer": self.name, "topic": tp.topic, "partition": tp.partition, "offset": offset,
             "outcome": outcome, "done_s": now, **({"error": error} if error else {})}
            for tp, offset in positions.items()])


class GroupWorkload:
    def __init__(self, cluster: Any, history: History, group_id: str, topic: str, consumers: int,
                 consumer_config: dict | None = None, commit_interval_s: float = 0.25) -> None:
        self.commit_interval_s = commit_interval_s
        self.cluster, self.history, self.group_id, self.topic = cluster, history, group_id, topic
        self.consumer_config = {"group_id": group_id, "auto_offset_reset": "earliest", "enable_auto_commit": False,
                                "session_timeout_ms": 6_000, "heartbeat_interval_ms": 1_000,
                                "max_poll_interval_ms": 8_000, "request_timeout_ms": 10_000,
                                **(consumer_config or {})}
        self.slots = [_ConsumerSlot(self, index) for index in range(consumers)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(slot,), name=f"soak-consumer-{slot.index}",
                                          daemon=True) for slot in self.slots]
        self._observer = threading.Thread(target=self._observe, name="soak-committed-observer", daemon=True)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._observer.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads + [self._observer]:
            thread.join(STOP_WAIT_S)

    # -- nemesis hooks ---------------------------------------------------------------

    def rejoin(self, index: int) -> None:
        self.slots[index % len(self.slots)].rejoin_requested.set()

    def stall(self, index: int, duration_s: float) -> None:
        slot = self.slots[index % len(self.slots)]
        slot.stall_until_s = max(slot.stall_until_s, time.monotonic() + duration_s)

    # -- the consumers ---------------------------------------------------------------

    def _open(self, slot: _ConsumerSlot) -> None:
        slot.generation += 1
        slot.name = f"c{slot.index}.{slot.generation}"
        slot.consumer = self.cluster.consumer(**self.consumer_config)
        slot.consumer.subscribe([self.topic], listener=_Listener(slot))

    def _close(self, slot: _ConsumerSlot) -> None:
        consumer = slot.consumer
        if consumer is None:
            return
        try:
            slot.commit()
        except Exception as error:  # noqa: BLE001
            self.history.note(f"{slot.name}: final commit failed: {error!r}")
        # The slot stops using its partitions when it starts closing (close() returns no
        # records and commits nothing more), and the consumer's leave inside close() lets
        # the coordinator hand them on before close() returns: so the interval ends here.
        closing_s = time.monotonic()
        try:
            consumer.close()
        except Exception as error:  # noqa: BLE001
            self.history.note(f"{slot.name}: close failed: {error!r}")
        slot.close_intervals(list(slot.open_intervals), "closed", at_s=closing_s)
        slot.consumer = None

    def _run(self, slot: _ConsumerSlot) -> None:
        next_commit_s = 0.0
        try:
            while not self._stop.is_set():
                if slot.consumer is None or slot.rejoin_requested.is_set():
                    if slot.consumer is not None:
                        self._close(slot)
                        self.history.note(f"consumer slot {slot.index}: rejoined")
                    slot.rejoin_requested.clear()
                    try:
                        self._open(slot)
                    except Exception as error:  # noqa: BLE001 - coordinator or controller down: retry
                        self.history.note(f"consumer slot {slot.index}: could not join: {error!r}")
                        slot.consumer = None
                        self._stop.wait(1.0)
                        continue
                stall_s = slot.stall_until_s - time.monotonic()
                if stall_s > 0:
                    self._stop.wait(stall_s)  # not polling: as a consumer stuck in its handler
                    continue
                try:
                    records = slot.consumer.poll(timeout_s=0.5, max_records=2000)
                except Exception as error:  # noqa: BLE001 - recorded; the consumer rejoins
                    self.history.note(f"{slot.name}: poll failed: {error!r}")
                    slot.rejoin_requested.set()
                    continue
                if records:
                    intervals = slot.open_intervals
                    self.history.extend("observations", [
                        {"reader": slot.name,
                         "interval": intervals[(r.topic, r.partition)]["interval"]
                         if (r.topic, r.partition) in intervals else -1,
                         "topic": r.topic, "partition": r.partition, "offset": r.offset,
                         "key": None if r.key is None else r.key.decode(),
                         "value": None if r.value is None else r.value.decode()} for r in records])
                if time.monotonic() >= next_commit_s:
                    slot.commit()
                    next_commit_s = time.monotonic() + self.commit_interval_s
        finally:
            self._close(slot)

    def _observe(self) -> None:
        observer = None
        while not self._stop.wait(1.0):
            try:
                if observer is None:
                    import rafka

                    observer = self.cluster.consumer(group_id=self.group_id, request_timeout_ms=5_000)
                    partitions = [rafka.TopicPartition(self.topic, p) for p in observer.partitions_for_topic(self.topic)]
                committed = observer.committed(partitions)
            except Exception as error:  # noqa: BLE001 - the coordinator may be down: sample later
                self.history.note(f"committed-offsets observer: {error!r}")
                continue
            now = time.monotonic()
            self.history.extend("committed_samples", [
                {"topic": tp.topic, "partition": tp.partition, "offset": offset, "at_s": now}
                for tp, offset in committed.items() if offset is not None])
            try:
                description = self.cluster.admin().describe_group(self.group_id)
            except Exception as error:  # noqa: BLE001 - sampled again next second
                self.history.note(f"group observer: {error!r}")
                continue
            self.history.append("grant_samples", {"at_s": time.monotonic(), "grants": {
                member["member_id"]: [list(tp) for tp in member["assignment"]] for member in description["members"]}})
        if observer is not None:
            try:
                observer.close()
            except Exception:  # noqa: BLE001 - the run is over and its history complete: nothing to record
                pass


class StreamWorkload:
    def __init__(self, cluster: Any, history: History, name: str, input_topic: str, output_topic: str) -> None:
        self.cluster, self.history, self.name = cluster, history, name
        self.input_topic, self.output_topic = input_topic, output_topic
        self.job = None

    def start(self) -> None:
        from rafka.streams import StreamsApp

        app = StreamsApp(self.name, commit_interval_ms=200)
        app.source(self.input_topic).to(self.output_topic)
        # num_cpus 0: the soak's Ray nodes have one CPU each, held by nothing else of rafka.
        self.job = app.start(self.cluster, workers=1, actor_options={"num_cpus": 0}, session_timeout_ms=6_000,
                             heartbeat_interval_ms=1_000)

    def worker(self):
        """The job's current worker actor (the supervisor replaces one that stops answering)."""
        return self.job._workers[0]

    def stop(self, catch_up_timeout_s: float = 120.0) -> None:
        caught_up = False
        try:
            self.job.wait_caught_up(timeout_s=catch_up_timeout_s)
            caught_up = True
        except Exception as error:  # noqa: BLE001 - recorded: the checker reports it
            self.history.note(f"stream {self.name} did not catch up: {error!r}")
        finally:
            self.job.stop()
        self.history.append("streams", {"name": self.name, "input": self.input_topic, "output": self.output_topic,
                                        "caught_up": caught_up})


def read_all(cluster: Any, topics: list[str], timeout_s: float = 120.0) -> list[list]:
    """Every record of ``topics`` as [topic, partition, offset, key, value], read from
    the earliest offset to the end offsets seen at the start. Raises TimeoutError if
    the end is not reached in ``timeout_s``."""
    import rafka

    consumer = cluster.consumer(auto_offset_reset="earliest", request_timeout_ms=10_000)
    try:
        partitions = [rafka.TopicPartition(topic, p) for topic in topics for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        rows: list[list] = []
        deadline = time.monotonic() + timeout_s
        while not all(consumer.position(tp) >= end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"read_all did not reach the end offsets {ends} in {timeout_s} s")
            for r in consumer.poll(timeout_s=0.5, max_records=50_000):
                rows.append([r.topic, r.partition, r.offset, None if r.key is None else r.key.decode(),
                             None if r.value is None else r.value.decode()])
        return rows
    finally:
        consumer.close()
