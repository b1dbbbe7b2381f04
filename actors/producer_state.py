"""Idempotent-producer state of one partition: which sequence each producer sends next.

Every batch from a producer carries (producer id, epoch, base sequence). The leader
appends a producer's batches in sequence order: a batch whose sequence is ahead waits
(bounded) for the ones before it, because Ray may start a caller's calls out of order; a
batch whose sequence is behind is a retry of one already appended and is answered from
the last ``RECENT_BATCHES_PER_PRODUCER`` batches instead of being appended again; a batch
from an older producer epoch is fenced.

The state is rebuilt from batch headers in the newest segments when a replica opens its
log or becomes leader, so a new leader or a restarted replica still recognises retries.
Producers silent for longer are forgotten and then accepted as new (as Kafka expires idle
producer ids). Not thread-safe: one replica's event loop owns it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

from rafka.errors import InvalidProducerEpochError, OutOfOrderSequenceError
from rafka.storage import Log
from rafka.storage.batch import NO_PRODUCER_ID

RECENT_BATCHES_PER_PRODUCER = 5  # as Kafka: enough for max_in_flight=5 retries
SEGMENTS_SCANNED = 2


@dataclasses.dataclass
class _Producer:
    epoch: int
    next_sequence: int
    recent: collections.deque  # of (base_sequence, base_offset, log_append_time_ms)


class ProducerStates:
    def __init__(self, name: str, sequence_wait_s: float) -> None:
        self.name = name
        self.sequence_wait_s = sequence_wait_s
        self._producers: dict[int, _Producer] = {}
        self._advanced: asyncio.Condition | None = None

    def rebuild(self, log: Log) -> None:
        self._producers = {}
        for segment in log.segments()[-SEGMENTS_SCANNED:]:
            for _position, header in segment.headers():
                if header.producer_id != NO_PRODUCER_ID:
                    self.record(header.producer_id, header.producer_epoch, header.base_sequence,
                                header.last_offset_delta + 1, header.base_offset, -1)

    def record(self, producer_id: int, producer_epoch: int, base_sequence: int, record_count: int,
               base_offset: int, append_time_ms: int) -> None:
        """Note that a batch was appended (or definitively rejected, with base_offset -1)."""
        state = self._producers.get(producer_id)
        if state is None or producer_epoch > state.epoch:
            state = self._producers[producer_id] = _Producer(
                producer_epoch, base_sequence, collections.deque(maxlen=RECENT_BATCHES_PER_PRODUCER))
        state.next_sequence = base_sequence + record_count
        if base_offset >= 0:
            state.recent.append((base_sequence, base_offset, append_time_ms))

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
                elif base_sequence < state.next_sequence:
                    for sequence, base_offset, append_time in state.recent:
                        if sequence == base_sequence:
                            return base_offset, append_time
                    raise OutOfOrderSequenceError(
                        f"{self.name}: sequence {base_sequence} of producer {producer_id} is older than the "
                        f"{RECENT_BATCHES_PER_PRODUCER} batches remembered (next expected {state.next_sequence})"
                    )
                elif remaining <= 0:
                    raise OutOfOrderSequenceError(
                        f"{self.name}: producer {producer_id} sent sequence {base_sequence} but the partition "
                        f"expects {state.next_sequence}; the batches between never arrived"
                    )
                try:
                    await asyncio.wait_for(condition.wait(), max(remaining, 0.001))
                except asyncio.TimeoutError:
                    pass
