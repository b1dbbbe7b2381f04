"""A partition log: an ordered list of segments in one directory.

Directory layout::

    <dir>/00000000000000000000.log|.index|.timeindex   segments, named by base offset
    <dir>/recovery-point-checkpoint ...                 checkpoints (see checkpoint.py)

Offsets: the log assigns consecutive offsets from the log end offset (LEO) on a leader
append; a follower append keeps the leader's offsets, which must start at or above the
LEO and increase. ``log_start_offset`` is the first offset that may be read; retention and
``delete_records_before`` move it up, compaction never does (compacted logs have gaps, and
a read from a gap returns the next record that exists). ``high_watermark`` is kept here for
the owner (the replica) and bounds nothing unless a read passes ``max_offset``.

Durability: an append is written to the file (so it survives the death of the process)
and fsynced per ``flush.messages`` / ``flush.ms``. ``recovery_point`` is the offset below
which everything is fsynced; on open every segment from the one holding the recovery point
onward is validated frame by frame, and a torn or corrupt tail is cut off and reported in
``Log.last_recovery`` and as a warning of the ``rafka.storage.log`` logger that names the
partition directory and what was dropped (the whole of opening, Kafka's LogLoader, is
``rafka.storage.log_loader``: what it trusts, validates, cuts and returns).

Clean shutdown (Kafka's clean-shutdown marker, the input of KIP-966's unclean-shutdown
detection): ``close`` leaves a ``clean-shutdown`` file, ``open`` removes it (durably,
before any append) and reports in ``RecoveryResult.clean_shutdown`` whether it was there.
A log that was not closed (its process was killed, its machine lost power) may have lost
records that were acknowledged but not yet fsynced; its owner must not lead with it
before the controller knows (``actors/replica.py``). A new, empty directory counts as
clean: it has nothing to lose.

Reads return Arrow batches that are zero-copy views of memory-mapped segment files, sliced
to exactly the requested offsets. Views stay valid after truncation, retention or
compaction (files are replaced or unlinked, never shrunk in place while mapped).

Compaction (``cleanup.policy=compact``, see ``rafka.storage.cleaner``) cleans only below
the first uncleanable offset, min(high watermark, active segment base), incrementally from
the cleaner checkpoint, and only when ``min.cleanable.dirty.ratio`` of the cleanable bytes
are dirty (or a tombstone's delete horizon passed).

Concurrency: not thread-safe. One owner (a replica actor) serializes every call; that
owner is also what makes offset assignment atomic. The one exception is the middle of a
compaction pass: ``compact_async`` plans on the owner's thread, builds the cleaned
segments in a worker thread from an immutable snapshot (memory maps of closed segments)
while the owner goes on appending, reading and truncating, and swaps them in back on the
owner's thread, discarding the pass if the log was truncated meanwhile. One pass at a time.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import os

import numpy as np

# pyarrow imports numpy.ma on the first pa.array(ndarray): about 0.1 s of CPU that would
# otherwise fall on a replica's first append. Pay it when the module loads.
import numpy.ma  # noqa: F401
import pyarrow as pa

from rafka.errors import InvalidRecordError, OffsetOutOfRangeError, RecordTooLargeError, StorageError
from rafka.storage import checkpoint, cleaner
from rafka.storage.batch import (
    ATTRIBUTE_LOG_APPEND_TIME,
    CODECS,
    NO_PRODUCER_ID,
    RECORD_SCHEMA,
    BatchHeader,
    check_frame,
    decode_body,
    encode_body,
    encode_frame,
    producer_columns,
)
from rafka.storage.checkpoint import NO_DELETE_HORIZON, LeaderEpochCache
from rafka.storage.cleaner import DEFAULT_OFFSET_MAP_BYTES, CleaningPlan, CleaningWork, CompactionResult
from rafka.storage.clock import Clock, SystemClock
from rafka.storage.config import NEVER, LogConfig
from rafka.storage.log_loader import RecoveryResult, load_log
from rafka.storage.segment import MAX_RELATIVE_OFFSET, Segment, _body_matches

DEFAULT_READ_MAX_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class AppendInfo:
    """What an append wrote: offsets [first_offset, last_offset]."""

    first_offset: int
    last_offset: int
    record_count: int
    max_timestamp_ms: int
    log_append_time_ms: int
    frame_bytes: int


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """Batches of one read, in offset order, and where the next read should start."""

    batches: list[pa.RecordBatch]
    headers: list[BatchHeader]
    next_offset: int
    log_start_offset: int
    log_end_offset: int

    @property
    def record_count(self) -> int:
        return sum(batch.num_rows for batch in self.batches)


@dataclasses.dataclass(frozen=True)
class RetentionResult:
    segments_deleted: int = 0
    bytes_deleted: int = 0


class Log:
    def __init__(self, directory: str, config: LogConfig | None = None, clock: Clock | None = None) -> None:
        self.directory = os.path.abspath(directory)
        self.config = config or LogConfig()
        self.clock = clock or SystemClock()
        os.makedirs(self.directory, exist_ok=True)
        self._segments: list[Segment] = []
        self._base_offsets: list[int] = []
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock.now_ms()
        self._closed = False
        # Bumped by every truncation: a compaction pass built across one is discarded.
        self._structure_generation = 0
        self._cleaning: CleaningPlan | None = None
        # Offsets this Log last wrote to each checkpoint file (see checkpoint()); empty at
        # open, so the first checkpoint writes all three.
        self._checkpointed: dict[str, int] = {}
        self.last_recovery = self._open()

    # -- properties ------------------------------------------------------------------

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return list(self._base_offsets)

    @property
    def leader_epochs(self) -> LeaderEpochCache:
        return self._epochs

    @property
    def cleaner_offset(self) -> int:
        """The cleaner checkpoint: every record below it has been cleaned (it may lag
        the log start offset, which the cleaner then starts from)."""
        return self._cleaner_offset

    @property
    def cleaner_delete_horizon_ms(self) -> int:
        """The earliest delete horizon of a tombstone the cleaner kept (-1: none)."""
        return self._cleaner_horizon_ms

    @property
    def structure_generation(self) -> int:
        return self._structure_generation

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- open and recovery -----------------------------------------------------------

    def _open(self) -> RecoveryResult:
        """Recover the directory (``rafka.storage.log_loader``) and take its state."""
        loaded = load_log(self.directory, self.config, self.clock)
        self._segments = loaded.segments
        self._base_offsets = [segment.base_offset for segment in loaded.segments]
        self._log_start_offset = loaded.log_start_offset
        self._high_watermark = loaded.high_watermark
        self._recovery_point = loaded.recovery_point
        self._epochs = loaded.epochs
        self._cleaner_offset, self._cleaner_horizon_ms = loaded.cleaner_offset, loaded.cleaner_delete_horizon_ms
        self.checkpoint()
        return loaded.recovery

    def _new_segment(self, base_offset: int, now_ms: int) -> Segment:
        return Segment(self.directory, base_offset, self.config.index_interval_bytes,
                       self.config.segment_index_bytes, now_ms)

    # -- append ----------------------------------------------------------------------

    def append(self, batch: pa.RecordBatch | pa.Table, *, leader_epoch: int = 0,
               producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1,
               base_sequence: int = -1, producer_codec: str = "uncompressed") -> AppendInfo:
        """Append ``batch`` as the leader: assign it offsets from the LEO and write it as
        one frame, compressed per ``compression.type`` (``producer`` keeps
        ``producer_codec``, the codec the batch arrived with). Raises
        ``InvalidRecordError`` (schema, empty, null key on a compacted log, Arrow buffers
        that fail full validation) or ``RecordTooLargeError`` before anything is written."""
        return self.append_many([batch], leader_epoch=leader_epoch, producer_id=producer_id,
                                producer_epoch=producer_epoch, base_sequence=base_sequence,
                                producer_codec=producer_codec)[0]

    def append_many(self, batches: list[pa.RecordBatch | pa.Table], *, leader_epoch: int = 0,
                    producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1,
                    base_sequence: int = -1, producer_codec: str = "uncompressed") -> list[AppendInfo]:
        """Append ``batches`` (one frame each, consecutive offsets) all or nothing: every
        batch is validated and encoded before the first is written, so a bad one (see
        ``append``) leaves the log as it was."""
        self._check_open()
        prepared, first_offset = [], self.log_end_offset
        for batch in batches:
            prepared.append(self._prepare(batch, first_offset, leader_epoch, producer_id, producer_epoch,
                                          base_sequence, producer_codec))
            first_offset = prepared[-1][3].last_offset + 1
        for frame_header, body, header, _info in prepared:
            self._write(frame_header, body, header)
        return [info for *_, info in prepared]

    def _prepare(self, batch: pa.RecordBatch | pa.Table, first_offset: int, leader_epoch: int, producer_id: int,
                 producer_epoch: int, base_sequence: int, producer_codec: str) -> tuple:
        """(frame header, body, header, AppendInfo) of ``batch`` at ``first_offset``,
        validated; nothing written."""
        for name, value, bits in (("leader_epoch", leader_epoch, 32), ("producer_id", producer_id, 64),
                                  ("producer_epoch", producer_epoch, 16), ("base_sequence", base_sequence, 32)):
            if isinstance(value, bool) or not isinstance(value, int) or not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
                raise InvalidRecordError(f"{name} must be a {bits}-bit int, got {value!r}")
        try:
            # In full (offsets in bounds, UTF-8 header keys): a client's batch is
            # untrusted, and a bad buffer stored here would fail every reader later.
            batch.validate(full=True)
        except pa.ArrowInvalid as error:
            raise InvalidRecordError(f"batch is not valid Arrow data: {error}") from None
        except AttributeError:
            raise InvalidRecordError(f"expected a pyarrow RecordBatch, got {type(batch).__name__}") from None
        timestamps, keys, values, headers = producer_columns(batch)
        count = len(values)
        if count == 0:
            raise InvalidRecordError("empty batch: a batch needs at least one record")
        if self.config.compact and keys.null_count:
            raise InvalidRecordError(
                f"a compacted log (cleanup.policy={self.config.cleanup_policy}) needs a key on every record; "
                f"{keys.null_count} of {count} records have none"
            )
        offsets = pa.array(np.arange(first_offset, first_offset + count, dtype=np.int64))
        attributes = 0
        log_append_time_ms = -1
        if self.config.message_timestamp_type == "LogAppendTime":
            log_append_time_ms = self.clock.now_ms()
            timestamps = pa.array(np.full(count, log_append_time_ms, dtype=np.int64))
            attributes |= ATTRIBUTE_LOG_APPEND_TIME
        batch = pa.RecordBatch.from_arrays([offsets, timestamps, keys, values, headers], schema=RECORD_SCHEMA)
        max_timestamp_ms = int(timestamps.to_numpy().max())
        codec = self.config.compression_type
        if codec == "producer":
            codec = producer_codec if producer_codec in CODECS else "uncompressed"
        attributes |= CODECS[codec]
        body = encode_body(batch, codec)
        header = BatchHeader(
            base_offset=first_offset,
            last_offset_delta=count - 1,
            record_count=count,
            max_timestamp_ms=max_timestamp_ms,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            leader_epoch=leader_epoch,
            attributes=attributes,
        )
        frame_header, header = encode_frame(header, body)
        if header.frame_bytes > self.config.max_message_bytes:
            raise RecordTooLargeError(
                f"batch of {count} records is {header.frame_bytes} bytes, over max.message.bytes="
                f"{self.config.max_message_bytes}"
            )
        info = AppendInfo(first_offset, header.last_offset, count, max_timestamp_ms, log_append_time_ms,
                          header.frame_bytes)
        return frame_header, body, header, info

    def append_frames(self, frames: pa.Buffer | bytes | memoryview) -> AppendInfo:
        """Append frames exactly as the leader stored them (a follower's append).

        Every frame is validated first (framing, CRC, Arrow body, offsets at or above the
        LEO and increasing); if any fails, nothing is written and ``InvalidRecordError``
        names the frame."""
        self._check_open()
        buffer = frames if isinstance(frames, pa.Buffer) else pa.py_buffer(frames)
        first, _ = check_frame(buffer, 0, buffer.size, verify_crc=False)
        if (first is not None and self.size_bytes == 0 and first.base_offset < self.log_end_offset
                <= first.last_offset):
            # An empty log set to start inside the leader's first batch (the leader's log
            # start is mid-batch): start at the batch instead, as Kafka's fetcher does.
            self.truncate_fully_and_start_at(first.base_offset)
        headers: list[tuple[int, BatchHeader]] = []
        position, expected_offset = 0, self.log_end_offset
        while position < buffer.size:
            header, reason = check_frame(buffer, position, buffer.size, verify_crc=True)
            if header is None:
                raise InvalidRecordError(f"replicated frame at byte {position}: {reason}")
            if header.base_offset < expected_offset:
                raise InvalidRecordError(
                    f"replicated batch at offset {header.base_offset} is below the log end offset {expected_offset}; "
                    "offsets must increase"
                )
            if not _body_matches(buffer, position, header):
                raise InvalidRecordError(f"replicated frame at byte {position}: body does not match its header")
            headers.append((position, header))
            expected_offset = header.next_offset
            position += header.frame_bytes
        if not headers:
            raise InvalidRecordError("no frames to append")
        for position, header in headers:
            frame = buffer.slice(position, header.frame_bytes)
            self._write(b"", frame, header)
        first, last = headers[0][1], headers[-1][1]
        return AppendInfo(first.base_offset, last.last_offset, sum(h.record_count for _, h in headers),
                          max(h.max_timestamp_ms for _, h in headers), -1, buffer.size)

    def _write(self, frame_header: bytes, body, header: BatchHeader) -> None:
        self._maybe_roll(header)
        # History first (as Kafka): an entry without its batch is dropped on open, a
        # batch without its entry would give wrong truncation answers.
        if header.leader_epoch > self._epochs.latest_epoch:
            self._epochs.assign(header.leader_epoch, header.base_offset)
        self._segments[-1].append(frame_header, body, header)
        self._unflushed_messages += header.record_count
        if self.config.flush_messages != NEVER and self._unflushed_messages >= self.config.flush_messages:
            self.flush()
        else:
            self.flush_if_due()

    def _maybe_roll(self, header: BatchHeader) -> None:
        active = self._segments[-1]
        if header.last_offset - active.base_offset > MAX_RELATIVE_OFFSET:
            # A follower's batch far past our end (the leader's log has a huge gap): it
            # needs a segment of its own based at it.
            if active.empty:
                self._segments.pop().delete()
                self._base_offsets.pop()
            else:
                active.flush()  # every segment before the active one is durable (see roll)
            self._segments.append(self._new_segment(header.base_offset, self.clock.now_ms()))
            self._base_offsets.append(header.base_offset)
            return
        if active.empty:
            return
        now_ms = self.clock.now_ms()
        if (
            active.size_bytes + header.frame_bytes > self.config.segment_bytes
            or header.last_offset - active.base_offset > MAX_RELATIVE_OFFSET
            or now_ms - active.created_ms >= self.config.segment_ms
            or active.indexes_full
        ):
            self.roll()

    def roll(self) -> None:
        """Start a new active segment at the log end offset (no-op if the active one is empty).

        The closed segment is fsynced and the recovery point moves to the new base, as
        Kafka does on a roll: recovery after a crash then validates only the active
        segment, however long the log ran without ``flush.messages`` / ``flush.ms``. The
        fsync is of one segment that the kernel has mostly written back already."""
        closed = self._segments[-1]
        if closed.empty:
            return
        base = self.log_end_offset
        closed.flush()
        self._recovery_point = max(self._recovery_point, base)
        self._segments.append(self._new_segment(base, self.clock.now_ms()))
        self._base_offsets.append(base)

    # -- read ------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int = DEFAULT_READ_MAX_BYTES, max_offset: int | None = None,
             verify_crc: bool = False) -> ReadResult:
        """Batches holding the records at ``offset`` and after, up to about ``max_bytes``
        of stored frames (at least one batch, so a large batch never blocks progress) and
        below ``max_offset`` (the high watermark, for a leader serving consumers).

        Raises ``OffsetOutOfRangeError`` when ``offset`` is below the log start offset or
        above the log end offset; reading at the log end offset returns no batches."""
        self._check_offset(offset)
        end = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        batches: list[pa.RecordBatch] = []
        headers: list[BatchHeader] = []
        next_offset, read_bytes = offset, 0
        segment_index = max(0, bisect.bisect_right(self._base_offsets, offset) - 1)
        while next_offset < end and segment_index < len(self._segments) and (not batches or read_bytes < max_bytes):
            segment = self._segments[segment_index]
            buffer = segment.buffer()
            for position, header in segment.headers(segment.position_for(next_offset)):
                if header.base_offset >= end or (batches and read_bytes >= max_bytes):
                    break
                if verify_crc:
                    segment.check_crc(position)
                batch = _slice(decode_body(buffer, position, header), header, next_offset, end)
                next_offset = min(header.next_offset, end)
                if batch.num_rows:
                    batches.append(batch)
                    headers.append(header)
                    read_bytes += header.frame_bytes
            else:
                segment_index += 1
                continue
            break
        return ReadResult(batches, headers, max(next_offset, offset), self._log_start_offset, self.log_end_offset)

    def read_frames(self, offset: int, max_bytes: int = DEFAULT_READ_MAX_BYTES,
                    max_offset: int | None = None) -> tuple[pa.Buffer, int]:
        """Whole stored frames from the batch holding ``offset`` onward, from one segment,
        as one zero-copy buffer (what a follower appends with ``append_frames``), and the
        offset after the last frame. At least one frame when any is available."""
        self._check_offset(offset)
        end = self.log_end_offset if max_offset is None else min(max_offset, self.log_end_offset)
        segment_index = max(0, bisect.bisect_right(self._base_offsets, offset) - 1)
        while segment_index < len(self._segments):
            segment = self._segments[segment_index]
            start = segment.position_for(offset)
            stop, next_offset = start, offset
            for position, header in segment.headers(start):
                if header.last_offset >= end or (stop > start and position + header.frame_bytes - start > max_bytes):
                    break
                stop, next_offset = position + header.frame_bytes, header.next_offset
            if stop > start or start < segment.size_bytes:
                return segment.buffer().slice(start, stop - start), next_offset
            segment_index += 1
        return pa.py_buffer(b""), offset

    def _check_offset(self, offset: int) -> None:
        self._check_open()
        if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool):
            raise TypeError(f"offset must be an int, got {offset!r}")
        if offset < self._log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range [{self._log_start_offset}, {self.log_end_offset}] of log {self.directory}"
            )

    def offsets_for_times(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record whose timestamp is >= ``timestamp_ms``,
        or None if no record is that recent."""
        self._check_open()
        for segment in self._segments:
            if segment.max_timestamp_ms < timestamp_ms:
                continue
            start_offset = max(segment.time_index.lookup(timestamp_ms), self._log_start_offset)
            buffer = segment.buffer()
            for position, header in segment.headers(segment.position_for(start_offset)):
                if header.max_timestamp_ms < timestamp_ms:
                    continue
                batch = decode_body(buffer, position, header)
                offsets = batch.column(0).to_numpy()
                matches = np.flatnonzero((batch.column(1).to_numpy() >= timestamp_ms) & (offsets >= self._log_start_offset))
                if len(matches):
                    row = int(matches[0])
                    return int(offsets[row]), int(batch.column(1)[row].as_py())
        return None

    # -- truncation, deletion, retention ---------------------------------------------

    def truncate_to(self, offset: int) -> int:
        """Remove every batch holding an offset >= ``offset``; return the new log end
        offset (below ``offset`` if ``offset`` fell inside a batch: batches are whole)."""
        self._check_open()
        _require_offset("truncate_to", offset)
        if offset >= self.log_end_offset:
            return self.log_end_offset
        if offset <= self._log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return self.log_end_offset
        keep = bisect.bisect_right(self._base_offsets, offset) - 1
        if self._segments[keep].base_offset == offset and keep > 0:
            keep -= 1  # the segment starting at `offset` goes entirely
        for segment in self._segments[keep + 1 :]:
            segment.delete()
        del self._segments[keep + 1 :], self._base_offsets[keep + 1 :]
        self._segments[-1].truncate_to(offset)
        if self.log_end_offset < self._log_start_offset:
            # Whole batches went, down below the log start: nothing readable is left.
            self.truncate_fully_and_start_at(self._log_start_offset)
        else:
            self._after_truncation()
        return self.log_end_offset

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every record and restart the log empty at ``offset``."""
        self._check_open()
        _require_offset("truncate_fully_and_start_at", offset)
        for segment in self._segments:
            segment.delete()
        self._segments = [self._new_segment(offset, self.clock.now_ms())]
        self._base_offsets = [offset]
        self._log_start_offset = offset
        self._high_watermark = offset
        self._recovery_point = offset
        self._epochs.clear()
        self._save_cleaner_offset(offset, NO_DELETE_HORIZON)
        self._after_truncation()

    def _after_truncation(self) -> None:
        end = self.log_end_offset
        self._structure_generation += 1
        self._high_watermark = min(self._high_watermark, end)
        self._recovery_point = min(self._recovery_point, end)
        self._epochs.truncate_from_end(end)
        if self._cleaner_offset > end:
            # Records re-appended at these offsets are dirty (Kafka's maybeTruncateCheckpoint).
            self._save_cleaner_offset(end, self._cleaner_horizon_ms)
        self.checkpoint()

    def set_high_watermark(self, offset: int) -> None:
        """Record the high watermark the replication protocol computed (clamped to the log)."""
        _require_offset("high watermark", offset)
        self._high_watermark = min(max(offset, self._log_start_offset), self.log_end_offset)

    def delete_records_before(self, offset: int) -> int:
        """Move the log start offset up to ``offset`` (Kafka's DeleteRecords) and delete
        segments wholly below it; return the new log start offset."""
        self._check_open()
        _require_offset("delete_records_before", offset)
        if offset > self._high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records before {offset}: past the high watermark {self._high_watermark} "
                "(records not yet replicated are never deleted)"
            )
        if offset <= self._log_start_offset:
            return self._log_start_offset
        self._log_start_offset = offset
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            self._delete_first_segment()
        if self._segments[0].next_offset <= offset and not self._segments[0].empty:
            self.roll()
            self._delete_first_segment()
        self._epochs.truncate_from_start(offset)
        self.checkpoint()
        return offset

    def _segment_end(self, index: int) -> int:
        """The offset after segment ``index``: the next segment's base, or the LEO."""
        return self._base_offsets[index + 1] if index + 1 < len(self._segments) else self.log_end_offset

    def _delete_first_segment(self) -> int:
        segment = self._segments.pop(0)
        self._base_offsets.pop(0)
        size = segment.size_bytes
        segment.delete()
        return size

    def enforce_retention(self) -> RetentionResult:
        """Delete the oldest whole segments past ``retention.ms`` (by their largest record
        timestamp) or beyond ``retention.bytes``. No-op unless cleanup.policy has delete."""
        self._check_open()
        if not self.config.delete:
            return RetentionResult()
        now_ms = self.clock.now_ms()
        # Only segments wholly below the high watermark may go: records not yet
        # replicated are never deleted (as in Kafka).
        deletable = 0
        while deletable < len(self._segments) and not self._segments[deletable].empty and (
                self._segment_end(deletable) <= self._high_watermark):
            deletable += 1
        doomed = 0
        if self.config.retention_ms != NEVER:
            while doomed < deletable and now_ms - self._segments[doomed].max_timestamp_ms > self.config.retention_ms:
                doomed += 1
        if self.config.retention_bytes != NEVER:
            excess = self.size_bytes - self.config.retention_bytes
            by_size = 0
            while by_size < deletable and excess - self._segments[by_size].size_bytes >= 0:
                excess -= self._segments[by_size].size_bytes
                by_size += 1
            doomed = max(doomed, by_size)
        if doomed == 0:
            return RetentionResult()
        if doomed == len(self._segments):
            self.roll()  # the log keeps an active segment at its end offset
        deleted_bytes = sum(self._delete_first_segment() for _ in range(doomed))
        self._log_start_offset = max(self._log_start_offset, self._base_offsets[0])
        self._epochs.truncate_from_start(self._log_start_offset)
        self.checkpoint()
        return RetentionResult(doomed, deleted_bytes)

    def compact(self, offset_map_bytes: int = DEFAULT_OFFSET_MAP_BYTES) -> CompactionResult:
        """Run a compaction pass here and now if one is due (see ``rafka.storage.cleaner``):
        the whole pass on the caller's thread."""
        plan = self.plan_cleaning(offset_map_bytes)
        if plan is None:
            return CompactionResult()
        try:
            work = cleaner.build_cleaned_segments(plan)
        except BaseException:
            self.abandon_cleaning(plan)
            raise
        return self.finish_cleaning(work)

    async def compact_async(self, offset_map_bytes: int = DEFAULT_OFFSET_MAP_BYTES) -> CompactionResult:
        """``compact`` for a log owned by an event loop: the reading and rewriting run in
        the loop's default executor (a worker thread) while the loop keeps serving the
        log; the plan and the swap run on the loop. Cancelling abandons the pass."""
        plan = self.plan_cleaning(offset_map_bytes)
        if plan is None:
            return CompactionResult()
        build = asyncio.get_running_loop().run_in_executor(None, cleaner.build_cleaned_segments, plan)
        try:
            # Shielded: a cancelled caller cannot stop the thread, so the build runs on
            # and its files are deleted when it ends instead of being left behind.
            work = await asyncio.shield(build)
        except BaseException:
            self.abandon_cleaning(plan)
            build.add_done_callback(_discard_built_pass)
            raise
        return self.finish_cleaning(work)

    def plan_cleaning(self, offset_map_bytes: int = DEFAULT_OFFSET_MAP_BYTES) -> CleaningPlan | None:
        """Start a pass if one is due and none is in flight (on the owner's thread)."""
        self._check_open()
        if self._cleaning is not None:
            return None
        plan = cleaner.plan_cleaning(self, offset_map_bytes)
        self._cleaning = plan
        return plan

    def finish_cleaning(self, work: CleaningWork) -> CompactionResult:
        """Swap a built pass in (on the owner's thread), or discard it if the log was
        truncated or closed while it was built."""
        plan = work.plan
        if self._cleaning is not plan or self._closed or plan.generation != self._structure_generation:
            cleaner.discard(work)
            if self._cleaning is plan:
                self._cleaning = None
            return CompactionResult()
        try:
            result = cleaner.swap_in(self, work)
        finally:
            self._cleaning = None
        self._save_cleaner_offset(work.first_dirty_offset, work.earliest_delete_horizon_ms)
        return result

    def abandon_cleaning(self, plan: CleaningPlan) -> None:
        """Forget a pass whose build failed or was cancelled."""
        if self._cleaning is plan:
            self._cleaning = None

    def _save_cleaner_offset(self, offset: int, horizon_ms: int) -> None:
        self._cleaner_offset, self._cleaner_horizon_ms = offset, horizon_ms
        checkpoint.write_cleaner_offset(self._path(checkpoint.CLEANER_OFFSET_FILE), offset, horizon_ms)

    # -- flush, checkpoint, close ----------------------------------------------------

    def flush(self) -> None:
        """fsync every segment with unwritten data; everything below the LEO is durable."""
        for segment in self._segments:
            segment.flush()
        self._recovery_point = self.log_end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self.clock.now_ms()

    def flush_if_due(self) -> bool:
        """Flush if ``flush.ms`` has passed since the last flush; True if it did."""
        if self.config.flush_ms == NEVER or not self._unflushed_messages:
            return False
        if self.clock.now_ms() - self._last_flush_ms < self.config.flush_ms:
            return False
        self.flush()
        return True

    def checkpoint(self) -> None:
        """Write the recovery point, high watermark and log start offset checkpoints,
        each only if it changed since this Log last wrote it: a replica checkpoints
        every few seconds, and on an idle log each rewrite was two fsyncs for nothing."""
        for name, offset in ((checkpoint.RECOVERY_POINT_FILE, self._recovery_point),
                             (checkpoint.HIGH_WATERMARK_FILE, self._high_watermark),
                             (checkpoint.LOG_START_OFFSET_FILE, self._log_start_offset)):
            if self._checkpointed.get(name) != offset:
                checkpoint.write_offset(self._path(name), offset)
                self._checkpointed[name] = offset

    def update_config(self, config: LogConfig) -> None:
        self.config = config
        for segment in self._segments:
            segment.index_interval_bytes = config.index_interval_bytes

    def close(self) -> None:
        """Flush, checkpoint and release files, then mark the shutdown clean. A closed log
        reopens without recovery work."""
        if self._closed:
            return
        self._structure_generation += 1
        self.flush()
        self.checkpoint()
        for segment in self._segments:
            segment.close()
        self._closed = True
        checkpoint.write_atomically(self._path(checkpoint.CLEAN_SHUTDOWN_FILE), "")

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"log {self.directory} is closed")

    def segments(self) -> list[Segment]:
        """The segments, oldest first (for the cleaner and tests; do not mutate)."""
        return self._segments

    def replace_segment(self, index: int, segment: Segment) -> None:
        """Swap in a rewritten segment with the same base offset (the cleaner's hook)."""
        assert segment.base_offset == self._base_offsets[index]
        self._segments[index] = segment


def _discard_built_pass(build: "asyncio.Future[CleaningWork]") -> None:
    if not build.cancelled() and build.exception() is None:
        cleaner.discard(build.result())


def _require_offset(name: str, offset: object) -> None:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
        raise TypeError(f"{name} needs a non-negative int offset, got {offset!r}")


def _slice(batch: pa.RecordBatch, header: BatchHeader, start_offset: int, end_offset: int) -> pa.RecordBatch:
    """Rows of ``batch`` with start_offset <= offset < end_offset (zero-copy)."""
    if start_offset <= header.base_offset and end_offset > header.last_offset:
        return batch
    if header.dense:
        first = max(0, start_offset - header.base_offset)
        last = min(batch.num_rows, end_offset - header.base_offset)
    else:
        offsets = batch.column(0).to_numpy()
        first = int(np.searchsorted(offsets, start_offset, side="left"))
        last = int(np.searchsorted(offsets, end_offset, side="left"))
    return batch.slice(first, max(0, last - first))
