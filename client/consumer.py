"""Consumer: reads assigned partitions from their leaders, with fetches pipelined.

For each assigned, unpaused partition the consumer keeps one fetch in flight to the
leader replica (a long poll bounded by ``fetch_max_wait_ms``) and at most
``buffered_fetches_per_partition`` answered fetches waiting to be handed out, so memory
stays bounded by about ``(1 + buffered) * max_partition_fetch_bytes`` per partition.
``poll()`` turns records into ``Record`` tuples; ``poll_batches()`` hands out the Arrow
batches themselves, which is the fast path.

Positions: a partition's position is the offset of the next record ``poll`` will return.
It starts where ``seek`` puts it, or per ``auto_offset_reset`` (earliest, latest, or
"none" → ``NoOffsetForPartitionError``); the same policy applies when the position falls
out of the log's range (retention deleted it). Consumer groups and committed offsets are
not part of this class yet: ``group_id`` is accepted for forward compatibility only.

Not thread-safe: one thread uses a consumer, as with Kafka's.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import time
from itertools import repeat
from typing import Any, Iterable

import pyarrow as pa
import ray

from rafka.actors.replica import EARLIEST, LATEST
from rafka.client import rpc
from rafka.client.records import Record, TopicPartition
from rafka.errors import (
    InvalidConfigError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RafkaError,
)
from rafka.storage.batch import decode_stream

RESETS = ("earliest", "latest", "none")
_new_record = functools.partial(tuple.__new__, Record)  # Record(*row) without Python-level __new__
RETRY_BACKOFF_S = 0.1


@dataclasses.dataclass(frozen=True)
class ConsumerConfig:
    group_id: str | None = None
    auto_offset_reset: str = "latest"
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    max_poll_records: int = 500
    buffered_fetches_per_partition: int = 2
    request_timeout_ms: int = 30_000

    @classmethod
    def build(cls, **options: Any) -> "ConsumerConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        for name, value in options.items():
            if name not in known:
                raise InvalidConfigError(f"unknown consumer option {name!r}; known: {', '.join(sorted(known))}")
            if name not in ("group_id", "auto_offset_reset") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidConfigError(f"consumer option {name} must be a non-negative int, got {value!r}")
        if options.get("auto_offset_reset", "latest") not in RESETS:
            raise InvalidConfigError(
                f"auto_offset_reset must be one of {', '.join(RESETS)}, got {options['auto_offset_reset']!r}"
            )
        return cls(**options)


class _PartitionState:
    __slots__ = ("position", "generation", "in_flight", "buffered", "paused", "retry_at")

    def __init__(self) -> None:
        self.position: int | None = None
        self.generation = 0  # bumped by seek: answers to older fetches are dropped
        self.in_flight = False
        self.buffered: collections.deque = collections.deque()  # [batches, next_offset]
        self.paused = False
        self.retry_at = 0.0


class Consumer:
    def __init__(self, cluster: Any, **options: Any) -> None:
        self.config = ConsumerConfig.build(**options)
        self._metadata = cluster.metadata
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._fetches: dict[ray.ObjectRef, tuple[TopicPartition, int, int]] = {}
        self._fetch_sent_s: dict[ray.ObjectRef, float] = {}
        self._closed = False

    # -- assignment and positions ----------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any earlier assignment)."""
        wanted = [_topic_partition(tp) for tp in partitions]
        for tp in wanted:
            if not 0 <= tp.partition < self._metadata.partition_count(tp.topic):
                raise OffsetOutOfRangeError(f"topic {tp.topic!r} has no partition {tp.partition}")
        self._partitions = {tp: self._partitions.get(tp) or _PartitionState() for tp in wanted}
        self._fetches = {ref: f for ref, f in self._fetches.items() if f[0] in self._partitions}
        self._fetch_sent_s = {ref: t for ref, t in self._fetch_sent_s.items() if ref in self._fetches}

    def assignment(self) -> set[TopicPartition]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> list[int]:
        return list(range(self._metadata.partition_count(topic)))

    def _state(self, tp: TopicPartition) -> _PartitionState:
        state = self._partitions.get(_topic_partition(tp))
        if state is None:
            raise ValueError(f"partition {tp} is not assigned to this consumer")
        return state

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next offset ``poll`` returns from ``tp``."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {offset!r}")
        state = self._state(tp)
        state.position = offset
        state.generation += 1
        state.buffered.clear()
        state.in_flight = False

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or list(self._partitions):
            self.seek(tp, self._list_offset(_topic_partition(tp), EARLIEST))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in partitions or list(self._partitions):
            self.seek(tp, self._list_offset(_topic_partition(tp), LATEST))

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record ``poll`` returns from ``tp``."""
        state = self._state(tp)
        if state.position is None:
            self._reset_position(_topic_partition(tp), state)
        return state.position

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, tuple[int, int] | None]:
        """Per partition, (offset, timestamp) of the first record at or after the given
        timestamp (ms), or None when there is none."""
        answers = {}
        for tp, timestamp_ms in timestamps.items():
            if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
                raise ValueError(f"timestamp for {tp} must be a non-negative int (ms), got {timestamp_ms!r}")
            tp = _topic_partition(tp)
            leader, _ = self._metadata.leader(tp.topic, tp.partition)
            offset, timestamp = rpc.get(leader.list_offset.remote(timestamp_ms))
            answers[tp] = None if offset < 0 else (offset, timestamp)
        return answers

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_topic_partition(tp): self._list_offset(_topic_partition(tp), EARLIEST) for tp in partitions}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_topic_partition(tp): self._list_offset(_topic_partition(tp), LATEST) for tp in partitions}

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._partitions.items() if state.paused}

    def _list_offset(self, tp: TopicPartition, spec: int) -> int:
        deadline = time.monotonic() + self.config.request_timeout_ms / 1000
        while True:
            try:
                leader, _ = self._metadata.leader(tp.topic, tp.partition)
                return rpc.get(leader.list_offset.remote(spec), timeout_s=self.config.request_timeout_ms / 1000)[0]
            except RafkaError as error:
                if not error.retriable or time.monotonic() > deadline:
                    raise
                self._metadata.invalidate(tp.topic)
                time.sleep(RETRY_BACKOFF_S)

    def _reset_position(self, tp: TopicPartition, state: _PartitionState) -> None:
        policy = self.config.auto_offset_reset
        if policy == "none":
            raise NoOffsetForPartitionError(f"no position for {tp.topic}-{tp.partition} and auto_offset_reset='none'")
        state.position = self._list_offset(tp, EARLIEST if policy == "earliest" else LATEST)
        state.generation += 1
        state.buffered.clear()
        state.in_flight = False

    # -- polling ---------------------------------------------------------------------

    def poll_batches(self, timeout_s: float = 1.0, max_records: int | None = None) -> dict[TopicPartition, list[pa.RecordBatch]]:
        """Arrow batches of records at each partition's position, waiting up to
        ``timeout_s`` for the first; positions move past what is returned."""
        self._check_open()
        limit = max_records if max_records is not None else 1 << 62
        deadline = time.monotonic() + timeout_s
        out: dict[TopicPartition, list[pa.RecordBatch]] = {}
        while True:
            self._send_fetches()
            taken = self._drain(out, limit)
            if taken or time.monotonic() >= deadline:
                return out
            self._receive(max(0.0, deadline - time.monotonic()))

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[Record]:
        """Up to ``max_records`` (default ``max_poll_records``) records, waiting up to
        ``timeout_s`` for the first."""
        limit = max_records if max_records is not None else self.config.max_poll_records
        records: list[Record] = []
        # Building many tuples triggers the cyclic garbage collector over and over, which
        # costs more than the tuples themselves; records hold no cycles, so pause it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for (topic, partition), batches in self.poll_batches(timeout_s, limit).items():
                for batch in batches:
                    count = batch.num_rows
                    columns = [batch.column(name).to_pylist() for name in ("offset", "timestamp", "key", "value")]
                    headers = batch.column("headers")
                    headers = [None if h is None else [(e["key"], e["value"]) for e in h] for h in headers.to_pylist()] \
                        if headers.null_count != count else repeat(None, count)
                    records.extend(map(_new_record, zip(repeat(topic, count), repeat(partition, count), *columns, headers)))
        finally:
            if collecting:
                gc.enable()
        return records

    def _drain(self, out: dict, limit: int) -> int:
        taken = 0
        for tp, state in self._partitions.items():
            while state.buffered and taken < limit and not state.paused:
                entry = state.buffered[0]
                batches, next_offset = entry
                while batches and taken < limit:
                    batch = batches[0]
                    if batch.num_rows <= limit - taken:
                        batches.pop(0)
                    else:
                        batch, batches[0] = batch.slice(0, limit - taken), batch.slice(limit - taken)
                    out.setdefault(tp, []).append(batch)
                    taken += batch.num_rows
                    state.position = batch.column(0)[-1].as_py() + 1
                if not batches:
                    state.buffered.popleft()
                    state.position = max(state.position, next_offset)
        return taken

    def _send_fetches(self) -> None:
        now = time.monotonic()
        for tp, state in self._partitions.items():
            if state.paused or state.in_flight or state.retry_at > now:
                continue
            if len(state.buffered) >= self.config.buffered_fetches_per_partition:
                continue
            if state.position is None:
                self._reset_position(tp, state)
            fetch_offset = state.buffered[-1][1] if state.buffered else state.position
            try:
                leader, _ = self._metadata.leader(tp.topic, tp.partition)
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                state.retry_at = now + RETRY_BACKOFF_S
                continue
            ref = leader.fetch.remote(fetch_offset, self.config.max_partition_fetch_bytes,
                                      self.config.fetch_max_wait_ms, self.config.fetch_min_bytes)
            self._fetches[ref] = (tp, state.generation, fetch_offset)
            self._fetch_sent_s[ref] = now
            state.in_flight = True

    def _receive(self, timeout_s: float) -> None:
        if not self._fetches:
            time.sleep(min(timeout_s, RETRY_BACKOFF_S))
            return
        ready, _ = ray.wait(list(self._fetches), num_returns=1, timeout=timeout_s)
        if not ready:
            self._expire_fetches()
        if ready:
            ready, _ = ray.wait(list(self._fetches), num_returns=len(self._fetches), timeout=0)
        for ref in ready:
            tp, generation, fetch_offset = self._fetches.pop(ref)
            self._fetch_sent_s.pop(ref, None)
            state = self._partitions.get(tp)
            if state is None or generation != state.generation:
                continue  # unassigned or moved by seek meanwhile
            state.in_flight = False
            try:
                response = rpc.get(ref)
            except OffsetOutOfRangeError:
                if self.config.auto_offset_reset == "none":
                    raise
                self._reset_position(tp, state)
                continue
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                state.retry_at = time.monotonic() + RETRY_BACKOFF_S
                continue
            if response.records is not None:
                state.buffered.append([decode_stream(response.records), response.next_offset])
            elif response.next_offset > fetch_offset:
                state.buffered.append([[], response.next_offset])

    def _expire_fetches(self) -> None:
        """Forget fetches unanswered for far longer than their long poll (the leader's
        node may have died) so the partition is fetched again, from the new leader."""
        limit_s = (self.config.fetch_max_wait_ms + self.config.request_timeout_ms) / 1000
        now = time.monotonic()
        for ref, sent_s in list(self._fetch_sent_s.items()):
            if now - sent_s > limit_s:
                del self._fetch_sent_s[ref]
                entry = self._fetches.pop(ref, None)
                if entry is None:
                    continue
                tp = entry[0]
                state = self._partitions.get(tp)
                if state is not None:
                    state.in_flight = False
                self._metadata.invalidate(tp.topic)

    def close(self) -> None:
        self._closed = True
        self._fetches.clear()
        self._partitions.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RafkaError("consumer is closed")

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _topic_partition(tp: TopicPartition | tuple[str, int]) -> TopicPartition:
    if isinstance(tp, TopicPartition):
        return tp
    if isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str) and isinstance(tp[1], int):
        return TopicPartition(*tp)
    raise TypeError(f"expected a TopicPartition(topic, partition), got {tp!r}")
