"""Idempotent-producer state of one partition: which sequence each producer sends next.

Every batch from a producer carries (producer id, epoch, base sequence). The leader
appends a producer's batches in sequence order: a batch whose sequence is ahead waits
(bounded by ``sequence_wait_s``) for the ones before it, because Ray may start a caller's
calls out of order, and is refused with ``OutOfOrderSequenceError`` if they never come
(it was not appended); a batch whose sequence is behind is a retry of one already
appended and is answered from the last ``RECENT_BATCHES_PER_PRODUCER`` batches, or
refused with ``DuplicateSequenceError`` if it is older than those (it is in the log, it
is not appended again); a batch from an older producer epoch is fenced
(``InvalidProducerEpochError``).

Sequences are 31-bit and wrap to 0 after 2^31 - 1, as Kafka's do; "ahead" and "behind"
are decided on the circle (within 2^30 of the expected sequence). A newer epoch starts
afresh at sequence 0: that is how a producer recovers from a sequence gap it caused
itself (a batch that expired before it reached the leader; Kafka's KIP-360).

Durability across restarts and leader changes: ``rebuild`` loads the newest valid
producer-state snapshot (``rafka.storage.producer_snapshot``) and replays the batch
headers after it; ``maintain_snapshots`` writes one when a segment has rolled and
``snapshot_at_close`` on a clean shutdown, keeping the newest ``SNAPSHOTS_KEPT``. Without
any snapshot the whole log is replayed once. Building a snapshot replays the headers
since the previous one at most ``REPLAY_HEADERS_PER_STEP`` per maintenance step, so it
never stalls the replica's event loop for long (``rebuild`` replays its tail at once). Followers keep no state in memory; their
snapshots are built from their own log, so a new leader starts from its own files.

Expiry: a producer not seen for ``producer_id_expiration_ms`` (the topic config
``producer.id.expiration.ms``, Kafka's default one day) is forgotten, so short-lived
producers do not grow the leader's memory without bound; a forgotten producer is
accepted as new. "Seen" is the leader's clock at an append, or at the replay that
rebuilt the entry, so a rebuild may keep a producer longer than that, never forget it
sooner. Idle producers are swept as appends arrive, at most once per
``SWEEP_INTERVAL_MS``, and at every snapshot.

Not promised: a producer whose batches compaction removed, or whose batches retention
deleted before a snapshot covered them, is rebuilt from what remains (as if new, or at
an older sequence: its next batch then waits for the gap and the producer bumps its
epoch). Not thread-safe: one replica's event loop owns it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

from rafka.errors import DuplicateSequenceError, InvalidProducerEpochError, OutOfOrderSequenceError
from rafka.storage import Log, producer_snapshot
from rafka.storage.batch import ATTRIBUTE_LOG_APPEND_TIME, NO_PRODUCER_ID
from rafka.storage.clock import Clock, SystemClock

RECENT_BATCHES_PER_PRODUCER = 5  # as Kafka: enough for max_in_flight=5 retries
SEQUENCE_MODULUS = 2**31  # sequences are non-negative int32s that wrap, as Kafka's
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 24 * 3600 * 1000  # Kafka's producer.id.expiration.ms
SWEEP_INTERVAL_MS = 10 * 60 * 1000  # as Kafka's producer.id.expiration.check.interval.ms
SNAPSHOTS_KEPT = 2
# Building a snapshot replays the headers since the previous one on the replica's event
# loop: at most this many per maintenance step (~20 us each measured, so ~0.4 s), the rest
# at the next steps, so a segment of a million tiny batches never stalls the replica.
REPLAY_HEADERS_PER_STEP = 20_000


def add_sequence(sequence: int, count: int) -> int:
    """The sequence ``count`` records after ``sequence``, wrapped at 2^31."""
    return (sequence + count) % SEQUENCE_MODULUS


def _is_ahead(sequence: int, expected: int) -> bool:
    return 0 < (sequence - expected) % SEQUENCE_MODULUS < SEQUENCE_MODULUS // 2


@dataclasses.dataclass
class _Producer:
    epoch: int
    next_sequence: int
    last_seen_ms: int
    recent: collections.deque  # of (base_sequence, base_offset, log_append_time_ms)


def _apply(producers: dict[int, _Producer], producer_id: int, producer_epoch: int, base_sequence: int,
           record_count: int, base_offset: int, append_time_ms: int, seen_ms: int) -> None:
    state = producers.get(producer_id)
    if state is None or producer_epoch > state.epoch:
        state = producers[producer_id] = _Producer(
            producer_epoch, base_sequence, seen_ms, collections.deque(maxlen=RECENT_BATCHES_PER_PRODUCER))
    elif producer_epoch < state.epoch:
        return  # a fenced epoch never changes the state (the leader refused it)
    state.next_sequence = add_sequence(base_sequence, record_count)
    state.last_seen_ms = max(state.last_seen_ms, seen_ms)
    if base_offset >= 0:
        state.recent.append((base_sequence, base_offset, append_time_ms))


@dataclasses.dataclass
class _Replay:
    """A snapshot being built: the producers' state of every batch below ``replayed_to``,
    valid while the log still has ``leader_epoch`` at ``replayed_to - 1``."""

    producers: dict
    replayed_to: int
    leader_epoch: int


class ProducerStates:
    def __init__(self, name: str, sequence_wait_s: float,
                 producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
                 clock: Clock | None = None, replay_headers_per_step: int = REPLAY_HEADERS_PER_STEP) -> None:
        self.name = name
        self.replay_headers_per_step = replay_headers_per_step
        self.sequence_wait_s = sequence_wait_s
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.clock = clock or SystemClock()
        self._producers: dict[int, _Producer] = {}
        self._advanced: asyncio.Condition | None = None
        self._last_sweep_ms = self.clock.now_ms()
        self._snapshot_written: tuple[int, int] | None = None  # (offset, leader epoch)
        self._replay: _Replay | None = None

    def producer_ids(self) -> list[int]:
        """The producers this partition remembers (for tests and status)."""
        return sorted(self._producers)

    # -- the live state --------------------------------------------------------------

    def record(self, producer_id: int, producer_epoch: int, base_sequence: int, record_count: int,
               base_offset: int, append_time_ms: int) -> None:
        """Note that a batch was appended (or definitively rejected, with base_offset -1)."""
        now_ms = self.clock.now_ms()
        _apply(self._producers, producer_id, producer_epoch, base_sequence, record_count, base_offset,
               append_time_ms, now_ms)
        if now_ms - self._last_sweep_ms >= min(self.producer_id_expiration_ms, SWEEP_INTERVAL_MS):
            self.expire()

    def expire(self) -> int:
        """Forget producers idle for ``producer_id_expiration_ms``; return how many."""
        now_ms = self._last_sweep_ms = self.clock.now_ms()
        return _expire(self._producers, now_ms, self.producer_id_expiration_ms)

    async def notify(self) -> None:
        condition = self._condition()
        async with condition:
            condition.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._advanced is None:
            self._advanced = asyncio.Condition()
        return self._advanced

    async def wait_for_turn(self, producer_id: int, producer_epoch: int, base_sequence: int) -> tuple[int, int] | None:
        """Wait until ``base_sequence`` is the producer's next; return the (base offset,
        append time) of an already appended batch with that sequence (a retry), or None
        when the batch should be appended now."""
        condition = self._condition()
        deadline = time.monotonic() + self.sequence_wait_s
        async with condition:
            while True:
                state = self._producers.get(producer_id)
                remaining = deadline - time.monotonic()
                if state is None or producer_epoch > state.epoch:
                    # A producer (or epoch) not seen before starts at sequence 0; a later
                    # first sequence waits for 0, and is accepted if it never arrives
                    # (the producer's history was lost or expired).
                    if base_sequence <= 0 or remaining <= 0:
                        return None
                elif producer_epoch < state.epoch:
                    raise InvalidProducerEpochError(
                        f"{self.name}: producer {producer_id} epoch {producer_epoch} is older than {state.epoch}"
                    )
                elif base_sequence == state.next_sequence:
                    return None
                else:
                    for sequence, base_offset, append_time in state.recent:
                        if sequence == base_sequence:
                            return base_offset, append_time
                    if not _is_ahead(base_sequence, state.next_sequence):
                        raise DuplicateSequenceError(
                            f"{self.name}: sequence {base_sequence} of producer {producer_id} was appended before "
                            f"the {RECENT_BATCHES_PER_PRODUCER} batches remembered (next expected "
                            f"{state.next_sequence}); it is not appended again"
                        )
                    if remaining <= 0:
                        raise OutOfOrderSequenceError(
                            f"{self.name}: producer {producer_id} sent sequence {base_sequence} but the partition "
                            f"expects {state.next_sequence}; the batches between never arrived"
                        )
                try:
                    await asyncio.wait_for(condition.wait(), max(remaining, 0.001))
                except asyncio.TimeoutError:
                    pass

    # -- snapshots and rebuilding ------------------------------------------------------

    def rebuild(self, log: Log) -> None:
        """Replace the live state with the state of ``log``: the newest valid snapshot
        plus the batches after it."""
        self._producers = self._state_at(log, log.log_end_offset)
        self._last_sweep_ms = self.clock.now_ms()

    def maintain_snapshots(self, log: Log) -> None:
        """Write a snapshot at the base of the active segment if none is there yet (a
        segment rolled since the last one), and sweep idle producers when due. Cheap
        when nothing rolled; the replica calls it from its maintenance loop."""
        if self.clock.now_ms() - self._last_sweep_ms >= min(self.producer_id_expiration_ms, SWEEP_INTERVAL_MS):
            self.expire()  # a partition with no appends sweeps here
        bases = log.segment_base_offsets
        if len(bases) > 1:
            self._snapshot(log, bases[-1], self.replay_headers_per_step)

    def snapshot_at_close(self, log: Log) -> None:
        """Snapshot at the log end offset, so that the next open replays nothing."""
        self._snapshot(log, log.log_end_offset, None)

    def _snapshot(self, log: Log, offset: int, max_headers: int | None) -> None:
        """Replay toward a snapshot at ``offset`` (at most ``max_headers`` batch headers
        this call) and write it once the replay gets there."""
        epochs = log.leader_epochs
        key = (offset, producer_snapshot.epoch_at(epochs, offset - 1))
        if offset <= 0 or key == self._snapshot_written:
            return
        replay = self._replay
        if (replay is None or replay.replayed_to > offset
                or replay.leader_epoch != producer_snapshot.epoch_at(epochs, replay.replayed_to - 1)):
            producers, start = self._load_snapshot(log, offset)  # nothing usable in progress
            replay = self._replay = _Replay(producers, start, producer_snapshot.epoch_at(epochs, start - 1))
        replay.replayed_to = _replay(replay.producers, log, replay.replayed_to, offset, self.clock.now_ms(),
                                     max_headers)
        replay.leader_epoch = producer_snapshot.epoch_at(epochs, replay.replayed_to - 1)
        if replay.replayed_to < offset:
            return  # the next maintenance step goes on from here
        producers = replay.producers
        _expire(producers, self.clock.now_ms(), self.producer_id_expiration_ms)
        entries = [[producer_id, state.epoch, state.next_sequence, state.last_seen_ms,
                    [list(batch) for batch in state.recent]] for producer_id, state in sorted(producers.items())]
        producer_snapshot.write_snapshot(log.directory, producer_snapshot.ProducerSnapshot(offset, key[1], entries))
        self._snapshot_written = key
        # Keep the newest few (an older one is the fallback if a truncation invalidates
        # the newest); one past the log end describes batches a truncation removed.
        snapshots = producer_snapshot.list_snapshots(log.directory)
        below_end = [path for at, path in snapshots if at <= log.log_end_offset]
        for path in below_end[:-SNAPSHOTS_KEPT] + [path for at, path in snapshots if at > log.log_end_offset]:
            producer_snapshot.delete_snapshot(path)

    def _state_at(self, log: Log, offset: int) -> dict[int, _Producer]:
        """The producers' state below ``offset``: a snapshot at or below it, then a replay."""
        now_ms = self.clock.now_ms()
        producers, start = self._load_snapshot(log, offset)
        _replay(producers, log, start, offset, now_ms, None)
        _expire(producers, now_ms, self.producer_id_expiration_ms)
        return producers

    def _load_snapshot(self, log: Log, offset: int) -> tuple[dict[int, _Producer], int]:
        """The newest valid snapshot at or below ``offset`` and its offset ({} and 0 if none)."""
        producers: dict[int, _Producer] = {}
        for at, path in reversed(producer_snapshot.list_snapshots(log.directory)):
            if at > offset:
                continue
            snapshot = producer_snapshot.read_snapshot(path)
            if snapshot is None or snapshot.offset != at:
                producer_snapshot.delete_snapshot(path)  # torn or corrupt: a replay replaces it
                continue
            if snapshot.leader_epoch != producer_snapshot.epoch_at(log.leader_epochs, at - 1):
                continue  # describes batches a truncation removed
            for producer_id, epoch, next_sequence, last_seen_ms, recent in snapshot.producers:
                producers[producer_id] = _Producer(epoch, next_sequence, last_seen_ms, collections.deque(
                    (tuple(batch) for batch in recent), maxlen=RECENT_BATCHES_PER_PRODUCER))
            return producers, at
        return producers, 0


def _replay(producers: dict[int, _Producer], log: Log, start: int, end: int, seen_ms: int,
            max_headers: int | None) -> int:
    """Apply the producer fields of the batch headers with start <= base offset < end,
    at most ``max_headers`` of them; return the offset below which all are applied."""
    scanned = 0
    segments = log.segments()
    bases = log.segment_base_offsets
    for index, segment in enumerate(segments):
        segment_end = bases[index + 1] if index + 1 < len(bases) else log.log_end_offset
        if segment_end <= start:
            continue
        if segment.base_offset >= end:
            break
        position = segment.position_for(start) if start > segment.base_offset else 0
        for _position, header in segment.headers(position):
            if header.base_offset >= end:
                return end
            if header.base_offset < start:
                continue
            if max_headers is not None and scanned >= max_headers:
                return header.base_offset
            scanned += 1
            if header.producer_id == NO_PRODUCER_ID:
                continue
            append_time_ms = header.max_timestamp_ms if header.attributes & ATTRIBUTE_LOG_APPEND_TIME else -1
            _apply(producers, header.producer_id, header.producer_epoch, header.base_sequence,
                   header.last_offset_delta + 1, header.base_offset, append_time_ms, seen_ms)
    return end


def _expire(producers: dict[int, _Producer], now_ms: int, expiration_ms: int) -> int:
    expired = [producer_id for producer_id, state in producers.items() if now_ms - state.last_seen_ms >= expiration_ms]
    for producer_id in expired:
        del producers[producer_id]
    return len(expired)
