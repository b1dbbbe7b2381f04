"""PartitionReplica: one replica of one partition, owning one ``storage.Log``.

As leader it appends produced batches (assigning offsets), answers long-poll fetches up
to the high watermark, and lists offsets. Replication factor 1 makes the high watermark
the log end offset; the replication issue adds followers and ISR on top of this class.

Concurrency: the actor is async (so a long-polling fetch never blocks a produce) and runs
every coroutine on one event-loop thread. Log calls are synchronous and never awaited in
the middle, so offset assignment is atomic: the event loop is the per-partition lock.
Ray may start a caller's calls out of order, so order within a producer comes from its
sequence numbers: a batch whose sequence is ahead waits for its predecessors (bounded by
``sequence_wait_s``), a retried batch already appended is answered from the producer's
recent batches instead of being appended twice.

Errors raised here are ``rafka`` errors; the client unwraps them from Ray's wrapper.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import time

from rafka.errors import InvalidProducerEpochError, NotLeaderError, OutOfOrderSequenceError
from rafka.storage import Log, LogConfig
from rafka.storage.batch import NO_PRODUCER_ID, decode_stream, encode_stream

CONFIG_FILE = "topic-config.json"
RECENT_BATCHES_PER_PRODUCER = 5  # as Kafka: enough for max_in_flight=5 retries
PRODUCER_STATE_SEGMENTS = 2  # segments scanned for producer state on open
MAINTENANCE_INTERVAL_S = 5.0
EARLIEST = -2
LATEST = -1


@dataclasses.dataclass
class _ProducerState:
    epoch: int
    next_sequence: int
    recent: collections.deque  # of (base_sequence, base_offset, log_append_time_ms)


@dataclasses.dataclass(frozen=True)
class FetchResponse:
    """One fetch: the records as an Arrow IPC stream, and the partition's offsets."""

    records: bytes | None
    record_count: int
    next_offset: int
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


class PartitionReplica:
    def __init__(self, topic: str, partition: int, broker_id: int, directory: str,
                 config: dict[str, str], leader_epoch: int, sequence_wait_s: float = 30.0) -> None:
        self.topic, self.partition, self.broker_id = topic, partition, broker_id
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        # After a restart by Ray the constructor arguments are the original ones; the
        # config on disk is the latest the controller sent.
        stored = _read_config(directory)
        config = stored if stored is not None else config
        _write_config(directory, config)
        self.log = Log(directory, LogConfig.from_dict(config))
        self.leader_epoch = leader_epoch
        self.is_leader = True
        self.sequence_wait_s = sequence_wait_s
        self._producers: dict[int, _ProducerState] = self._producer_states_from_log()
        self._appended = asyncio.Event()
        self._sequence_advanced: asyncio.Condition | None = None
        self._maintenance: asyncio.Task | None = None
        self._sync_high_watermark()

    def _producer_states_from_log(self) -> dict[int, _ProducerState]:
        """Each producer's next sequence and recent batches, from the batch headers of
        the newest segments: after a restart, retries are still recognised as duplicates
        and sequences still ordered. Producers silent for longer are forgotten (they are
        then accepted as new), as Kafka expires idle producer ids."""
        states: dict[int, _ProducerState] = {}
        for segment in self.log.segments()[-PRODUCER_STATE_SEGMENTS:]:
            for _position, header in segment.headers():
                if header.producer_id == NO_PRODUCER_ID:
                    continue
                state = states.get(header.producer_id)
                if state is None or header.producer_epoch > state.epoch:
                    state = states[header.producer_id] = _ProducerState(
                        header.producer_epoch, 0, collections.deque(maxlen=RECENT_BATCHES_PER_PRODUCER))
                state.next_sequence = header.base_sequence + header.last_offset_delta + 1
                state.recent.append((header.base_sequence, header.base_offset, -1))
        return states

    def _name(self) -> str:
        return f"{self.topic}-{self.partition}"

    def _sync_high_watermark(self) -> None:
        # With a single replica every appended record is fully replicated.
        self.log.set_high_watermark(self.log.log_end_offset)

    def _ensure_background(self) -> None:
        if self._maintenance is None:
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def ready(self) -> dict:
        self._ensure_background()
        return self.status()

    def status(self) -> dict:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "broker_id": self.broker_id,
            "leader_epoch": self.leader_epoch,
            "log_start_offset": self.log.log_start_offset,
            "log_end_offset": self.log.log_end_offset,
            "high_watermark": self.log.high_watermark,
            "size_bytes": self.log.size_bytes,
            "segments": self.log.segment_count,
            "recovery": dataclasses.asdict(self.log.last_recovery),
        }

    # -- produce -------------------------------------------------------------------

    async def produce(self, payload: bytes, codec: str = "uncompressed", leader_epoch: int = -1,
                      producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1,
                      base_sequence: int = -1) -> tuple[int, int]:
        """Append the batch in ``payload`` (an IPC stream from the producer); return
        (base offset, log append time or -1)."""
        self._ensure_background()
        self._check_leader(leader_epoch)
        if producer_id == NO_PRODUCER_ID:
            return self._append(payload, codec, producer_id, producer_epoch, base_sequence)
        state = await self._wait_for_turn(producer_id, producer_epoch, base_sequence)
        if state is not None and base_sequence < state.next_sequence:
            for sequence, base_offset, append_time in state.recent:
                if sequence == base_sequence:
                    return base_offset, append_time  # a retry of a batch we already have
            raise OutOfOrderSequenceError(
                f"{self._name()}: sequence {base_sequence} of producer {producer_id} is older than the "
                f"{RECENT_BATCHES_PER_PRODUCER} batches remembered (next expected {state.next_sequence})"
            )
        batches = decode_stream(payload)
        record_count = sum(batch.num_rows for batch in batches)
        try:
            result = self._append_batches(batches, codec, producer_id, producer_epoch, base_sequence)
        finally:
            # A rejected batch is final for the producer: later sequences must not wait on it.
            state = self._producers.get(producer_id)
            if state is None or producer_epoch > state.epoch:
                state = self._producers[producer_id] = _ProducerState(producer_epoch, base_sequence, collections.deque(maxlen=RECENT_BATCHES_PER_PRODUCER))
            state.next_sequence = base_sequence + record_count
            condition = self._condition()
            async with condition:
                condition.notify_all()
        state.recent.append((base_sequence, *result))
        return result

    def _condition(self) -> asyncio.Condition:
        if self._sequence_advanced is None:
            self._sequence_advanced = asyncio.Condition()
        return self._sequence_advanced

    async def _wait_for_turn(self, producer_id: int, producer_epoch: int, base_sequence: int) -> _ProducerState | None:
        condition = self._condition()
        deadline = time.monotonic() + self.sequence_wait_s
        async with condition:
            while True:
                state = self._producers.get(producer_id)
                remaining = deadline - time.monotonic()
                if state is None or producer_epoch > state.epoch:
                    # A producer (or epoch) not seen before starts at sequence 0; a later
                    # first sequence waits for 0 to arrive, and is accepted if it never
                    # does (the producer's history was lost or expired).
                    if base_sequence <= 0 or remaining <= 0:
                        return None
                    await self._wait(condition, remaining)
                    continue
                if producer_epoch < state.epoch:
                    raise InvalidProducerEpochError(
                        f"{self._name()}: producer {producer_id} epoch {producer_epoch} is older than {state.epoch}"
                    )
                if base_sequence <= state.next_sequence:
                    return state
                if remaining <= 0:
                    raise OutOfOrderSequenceError(
                        f"{self._name()}: producer {producer_id} sent sequence {base_sequence} but the partition "
                        f"expects {state.next_sequence}; the batches between never arrived"
                    )
                await self._wait(condition, remaining)

    @staticmethod
    async def _wait(condition: asyncio.Condition, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(condition.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def _append(self, payload: bytes, codec: str, producer_id: int, producer_epoch: int, base_sequence: int):
        return self._append_batches(decode_stream(payload), codec, producer_id, producer_epoch, base_sequence)

    def _append_batches(self, batches, codec, producer_id, producer_epoch, base_sequence) -> tuple[int, int]:
        first_offset, append_time = -1, -1
        for batch in batches:
            info = self.log.append(batch, leader_epoch=self.leader_epoch, producer_id=producer_id,
                                   producer_epoch=producer_epoch, base_sequence=base_sequence,
                                   producer_codec=codec)
            if first_offset < 0:
                first_offset, append_time = info.first_offset, info.log_append_time_ms
        self._sync_high_watermark()
        self._appended.set()
        self._appended = asyncio.Event()
        return first_offset, append_time

    def _check_leader(self, leader_epoch: int) -> None:
        if not self.is_leader or (leader_epoch >= 0 and leader_epoch != self.leader_epoch):
            raise NotLeaderError(
                f"broker {self.broker_id} is not the leader of {self._name()} at epoch {leader_epoch} "
                f"(its epoch is {self.leader_epoch})"
            )

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, offset: int, max_bytes: int = 1024 * 1024, max_wait_ms: int = 500,
                    min_bytes: int = 1) -> FetchResponse:
        """Records from ``offset`` below the high watermark: waits up to ``max_wait_ms``
        for at least ``min_bytes`` of them. ``OffsetOutOfRangeError`` if ``offset`` is
        outside [log start, log end]."""
        self._ensure_background()
        deadline = time.monotonic() + max_wait_ms / 1000
        while True:
            appended = self._appended
            result = self.log.read(offset, max_bytes=max_bytes, max_offset=self.log.high_watermark)
            size = sum(header.frame_bytes for header in result.headers)
            remaining = deadline - time.monotonic()
            if size >= min_bytes or remaining <= 0:
                break
            try:
                await asyncio.wait_for(appended.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return FetchResponse(
            records=encode_stream(result.batches) if result.batches else None,
            record_count=result.record_count,
            next_offset=result.next_offset,
            high_watermark=self.log.high_watermark,
            log_start_offset=self.log.log_start_offset,
            log_end_offset=self.log.log_end_offset,
        )

    async def list_offset(self, timestamp_ms: int) -> tuple[int, int]:
        """(offset, timestamp) for ``EARLIEST`` (-2), ``LATEST`` (-1), or the first record
        at or after ``timestamp_ms``; (-1, -1) when no record is that recent."""
        if timestamp_ms == EARLIEST:
            return self.log.log_start_offset, -1
        if timestamp_ms == LATEST:
            return self.log.high_watermark, -1
        found = self.log.offsets_for_times(timestamp_ms)
        if found is None or found[0] >= self.log.high_watermark:
            return -1, -1
        return found

    # -- administration --------------------------------------------------------------

    async def update_config(self, config: dict[str, str]) -> None:
        self.log.update_config(LogConfig.from_dict(config))
        _write_config(self.directory, config)

    async def delete_records_before(self, offset: int) -> int:
        return self.log.delete_records_before(min(offset, self.log.high_watermark))

    async def close(self, delete: bool = False) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        self.log.close()
        if delete:
            import shutil

            shutil.rmtree(self.directory, ignore_errors=True)

    async def _maintain(self) -> None:
        """Retention, compaction and time-based flush, every few seconds."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            self.log.flush_if_due()
            self.log.enforce_retention()
            self.log.compact()


def _read_config(directory: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(directory, CONFIG_FILE)) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def _write_config(directory: str, config: dict[str, str]) -> None:
    from rafka.storage.checkpoint import write_atomically

    write_atomically(os.path.join(directory, CONFIG_FILE), json.dumps(config, sort_keys=True))
