"""Log compaction: keep the latest record per key below the first uncleanable offset.

Contract (``cleanup.policy`` ``compact`` or ``compact,delete``), after Kafka's LogCleaner:

* **What may be cleaned.** Only offsets below the *first uncleanable offset*:
  min(high watermark, base of the active segment, base of the first segment whose newest
  record is younger than ``min.compaction.lag.ms``). A record at or above the high
  watermark is not yet on every in-sync replica and may be truncated after a leader
  change; were it allowed to remove an older committed record of its key, that
  truncation would lose the key for good. So such records are never removed, and never
  remove anything. (Kafka's bound is the last stable offset, which is at most the high
  watermark; rafka has no transactions, so the two are the same.)
* **Incremental.** The log keeps a cleaner checkpoint, the *first dirty offset*: every
  record below it has been cleaned (see ``checkpoint.CLEANER_OFFSET_FILE``). A pass builds
  an offset map (key → latest offset) of the dirty section [first dirty, first
  uncleanable) only, then rewrites the segments from the log start on, removing every
  record whose key has a newer offset in the map. A record in the clean section therefore
  stays until a newer record of its key is written and cleaned, which is all compaction
  promises. The checkpoint then moves to where the map ended.
* **When a pass runs.** Only when the dirty section holds more than
  ``min.cleanable.dirty.ratio`` of the cleanable bytes (clean + dirty; Kafka's rule and
  default 0.5), or when a kept tombstone's delete horizon has passed. Deciding costs a few
  offset-index lookups: a log with nothing dirty is not read at all.
* **Bounded memory.** The offset map holds at most ``offset_map_bytes`` (key bytes plus
  12 bytes per key; Kafka's ``log.cleaner.dedupe.buffer.size`` plays this part). When the
  dirty section has more keys than fit, the map stops at a batch boundary, the pass cleans
  up to there and the next pass continues from it. One batch always goes in, so a pass
  makes progress even when a single batch's keys exceed the bound (then the map exceeds it
  by that batch, which ``max.message.bytes`` bounds). While the map grows it briefly holds
  about twice its size, plus one chunk of keys being added (a quarter of the bound).
* **Offsets never change** (gaps are fine, as in Kafka); batches keep their base offset,
  last offset delta, producer fields and leader epoch. A segment's last batch stays (empty
  if need be), so a later truncation never hands out an offset twice. Records without a
  key (a log switched from ``delete``) are dropped from the cleaned range.
* **Tombstones.** A tombstone (null value) that survives a pass gets a *delete horizon* of
  now + ``delete.retention.ms`` stored in its batch header the first time a pass keeps it;
  a pass at or after the horizon removes it. Consumers that read the log within
  ``delete.retention.ms`` of that first pass therefore always see the deletion.
* **Crash safety.** Each changed segment is written to ``<base>.log.<pass>.cleaned``,
  fsynced, and renamed over the original; its indexes are deleted before the rename and
  rebuilt after, so a crash at any point leaves either the old or the new segment (and the
  next open deletes leftovers). The checkpoint moves only after every rename.

Concurrency (see ``Log``'s docstring): a pass has three steps. ``plan_cleaning`` and
``finish_cleaning`` run on the log's owner (they read and change the log); the expensive
middle, ``build_cleaned_segments``, touches only the plan's snapshot (immutable memory
maps of closed segments, and new files of its own) and may run in a worker thread while
the owner appends, reads and truncates. ``finish_cleaning`` swaps the new segments in only
if the log was not truncated meanwhile and each segment is still in the log; otherwise it
discards them and the next pass starts over. Not promised: that a process dying
mid-pass leaves no ``.cleaned`` file (the next open deletes it).

Imports: ``pyarrow.compute`` is imported inside the functions that use it, not here. It
takes about 100 ms and several MiB to load, and every replica process imports this module
(through ``Log``) while only replicas of compacted topics ever clean.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import os
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pyarrow as pa

from rafka.errors import CorruptRecordError
from rafka.storage.batch import BatchHeader, check_frame, decode_body, encode_body, encode_frame
from rafka.storage.checkpoint import NO_DELETE_HORIZON
from rafka.storage.segment import Segment

if TYPE_CHECKING:
    from rafka.storage.log import Log

CLEANED_SUFFIX = ".cleaned"
DEFAULT_OFFSET_MAP_BYTES = 16 * 1024 * 1024
# An entry costs its key bytes plus a 4-byte position in the key array and an 8-byte offset.
OFFSET_MAP_ENTRY_OVERHEAD_BYTES = 12
# Pass numbers make each pass's file names unique in the process, so a build abandoned in
# its thread can never write over the files of a later pass.
_pass_numbers = itertools.count()


@dataclasses.dataclass(frozen=True)
class CompactionResult:
    """What one call did. ``bytes_read`` counts the stored bytes the pass read;
    ``first_dirty_offset`` is the cleaner checkpoint after it. A call with nothing due
    reads nothing: ``bytes_read`` 0 and ``first_dirty_offset`` -1."""

    segments_cleaned: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_read: int = 0
    first_dirty_offset: int = -1


@dataclasses.dataclass(frozen=True)
class SegmentSnapshot:
    """A closed segment as the plan saw it. The buffer is a memory map that stays valid
    whatever the owner does to the segment later (files are replaced, never shrunk)."""

    segment: Segment
    base_offset: int
    buffer: pa.Buffer
    size_bytes: int
    log_path: str


@dataclasses.dataclass(frozen=True)
class CleaningPlan:
    number: int
    generation: int
    first_dirty_offset: int
    first_uncleanable_offset: int
    now_ms: int
    delete_retention_ms: int
    offset_map_bytes: int
    segments: tuple[SegmentSnapshot, ...]  # every non-empty segment below the uncleanable offset


@dataclasses.dataclass(frozen=True)
class CleanedSegment:
    source: SegmentSnapshot
    cleaned_path: str
    records_removed: int
    tombstones_removed: int
    bytes_after: int


@dataclasses.dataclass(frozen=True)
class CleaningWork:
    """A built pass, ready for ``finish_cleaning``."""

    plan: CleaningPlan
    first_dirty_offset: int  # the checkpoint once the pass is in
    earliest_delete_horizon_ms: int
    cleaned: tuple[CleanedSegment, ...]
    records_removed: int
    tombstones_removed: int
    bytes_read: int


class OffsetMap:
    """key → latest offset of the dirty section, at most ``max_bytes`` (keys plus
    ``OFFSET_MAP_ENTRY_OVERHEAD_BYTES`` per key). Keys are exact (no hashing, so no
    collision can make one key remove another's record)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"offset_map_bytes must be positive, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._keys = pa.array([], pa.binary())
        self._offsets = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: pa.Array, offsets: np.ndarray, batch_ends: np.ndarray) -> int:
        """Add the rows of whole batches (``batch_ends``: each batch's end row, increasing)
        while the map stays within its bound; return how many rows went in (a batch end,
        at least the first batch's when the map is empty). Offsets must exceed every
        offset already in the map. Rows without a key take no room and are not added."""
        row_count = len(keys)
        if row_count == 0:
            return 0
        import pyarrow.compute as pc  # lazy: see the module docstring
        valid = pc.is_valid(keys).to_numpy(zero_copy_only=False)
        key_bytes = pc.binary_length(keys).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        # A key costs room where it first appears in these rows, unless the map has it.
        rows = pa.array(np.arange(row_count, dtype=np.int64))
        firsts = (pa.table({"key": keys, "row": rows}).filter(pa.array(valid))
                  .group_by("key", use_threads=False).aggregate([("row", "min")])
                  .column("row_min").to_numpy())
        cost = np.zeros(row_count, dtype=np.int64)
        cost[firsts] = key_bytes[firsts] + OFFSET_MAP_ENTRY_OVERHEAD_BYTES
        if len(self._keys):
            cost[pc.is_in(keys, value_set=self._keys).to_numpy(zero_copy_only=False)] = 0
        cumulative = np.cumsum(cost)
        fitting = int(np.searchsorted(cumulative[batch_ends - 1], self.max_bytes - self.size_bytes, side="right"))
        if fitting == 0 and not len(self._keys):
            fitting = 1
        if fitting == 0:
            return 0
        taken = int(batch_ends[fitting - 1])
        added = pa.table({"key": keys.slice(0, taken), "offset": pa.array(offsets[:taken])}).filter(pa.array(valid[:taken]))
        merged = pa.concat_tables([pa.table({"key": self._keys, "offset": pa.array(self._offsets)}), added])
        grouped = merged.group_by("key", use_threads=False).aggregate([("offset", "max")])
        self._keys = grouped.column("key").combine_chunks()
        self._offsets = grouped.column("offset_max").to_numpy()
        self.size_bytes += int(cumulative[taken - 1])
        return taken

    def latest_offsets(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The map's offset for each key, -1 where the map does not hold it."""
        if not len(self._keys) or len(keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        import pyarrow.compute as pc  # lazy: see the module docstring
        positions = pc.index_in(keys, value_set=self._keys).fill_null(-1).to_numpy(zero_copy_only=False)
        if isinstance(positions, list):  # a chunked result comes back chunk by chunk
            positions = np.concatenate(positions)
        return np.where(positions >= 0, self._offsets[np.maximum(positions, 0)], -1)


def plan_cleaning(log: "Log", offset_map_bytes: int = DEFAULT_OFFSET_MAP_BYTES) -> CleaningPlan | None:
    """On the log's owner: decide whether a pass is due and snapshot what it needs.
    Reads no record: offset-index lookups and segment sizes only."""
    if not log.config.compact:
        return None
    segments = log.segments()
    base_offsets = log.segment_base_offsets
    now_ms = log.clock.now_ms()
    first_dirty = min(max(log.cleaner_offset, log.log_start_offset), log.log_end_offset)
    first_uncleanable = min(log.high_watermark, base_offsets[-1])
    lag_ms = log.config.min_compaction_lag_ms
    if lag_ms > 0:
        for segment in segments[_segment_index(base_offsets, first_dirty):-1]:
            if segment.base_offset >= first_uncleanable:
                break
            if not segment.empty and segment.max_timestamp_ms > now_ms - lag_ms:
                first_uncleanable = min(first_uncleanable, segment.base_offset)
                break
    # Batches are the unit of storage: one holding both clean and dirty offsets counts
    # as dirty, so a dirty section inside a single batch still makes a pass due.
    clean_bytes = _position(segments, base_offsets, first_dirty)
    dirty_bytes = 0
    if first_uncleanable > first_dirty:
        dirty_bytes = _position(segments, base_offsets, first_uncleanable, round_up=True) - clean_bytes
    dirty_due = dirty_bytes > 0 and dirty_bytes / (clean_bytes + dirty_bytes) > log.config.min_cleanable_dirty_ratio
    horizon_ms = log.cleaner_delete_horizon_ms
    horizon_due = horizon_ms != NO_DELETE_HORIZON and now_ms >= horizon_ms
    if not (dirty_due or horizon_due):
        return None
    snapshots = tuple(
        SegmentSnapshot(segment, segment.base_offset, segment.buffer(), segment.size_bytes, segment.log_path)
        for segment in segments[:-1]
        if segment.base_offset < first_uncleanable and not segment.empty
    )
    return CleaningPlan(next(_pass_numbers), log.structure_generation, first_dirty, first_uncleanable, now_ms,
                        log.config.delete_retention_ms, offset_map_bytes, snapshots)


def build_cleaned_segments(plan: CleaningPlan) -> CleaningWork:
    """The expensive part of a pass, safe in a worker thread: reads only the plan's
    snapshot and writes only this pass's ``.cleaned`` files (fsynced)."""
    offset_map = OffsetMap(plan.offset_map_bytes)
    bytes_read = 0
    map_end = plan.first_dirty_offset
    if plan.first_uncleanable_offset > plan.first_dirty_offset:
        map_end, bytes_read = _fill_offset_map(plan, offset_map)
    # Records at or above clean_end are neither removed nor looked at for removal.
    clean_end = min(map_end, plan.first_uncleanable_offset)
    cleaned: list[CleanedSegment] = []
    records_removed = tombstones_removed = 0
    earliest_horizon_ms = NO_DELETE_HORIZON
    try:
        for snapshot in plan.segments:
            if snapshot.base_offset >= clean_end:
                break
            bytes_read += snapshot.size_bytes
            result, horizon_ms = _clean_segment(plan, snapshot, offset_map, clean_end)
            if horizon_ms != NO_DELETE_HORIZON:
                earliest_horizon_ms = (horizon_ms if earliest_horizon_ms == NO_DELETE_HORIZON
                                       else min(earliest_horizon_ms, horizon_ms))
            if result is not None:
                cleaned.append(result)
                records_removed += result.records_removed
                tombstones_removed += result.tombstones_removed
    except BaseException:
        for result in cleaned:
            _unlink(result.cleaned_path)
        raise
    return CleaningWork(plan, max(plan.first_dirty_offset, clean_end), earliest_horizon_ms, tuple(cleaned),
                        records_removed, tombstones_removed, bytes_read)


def discard(work: CleaningWork) -> None:
    for result in work.cleaned:
        _unlink(result.cleaned_path)


def swap_in(log: "Log", work: CleaningWork) -> CompactionResult:
    """On the log's owner, after ``Log.finish_cleaning`` checked the log did not change
    under the pass: rename each cleaned file over its segment and swap the segment."""
    config = log.config
    segments_cleaned = bytes_before = bytes_after = 0
    records_removed, tombstones_removed = work.records_removed, work.tombstones_removed
    for result in work.cleaned:
        index = next((i for i, segment in enumerate(log.segments()) if segment is result.source.segment), None)
        if index is None:  # retention deleted it meanwhile
            _unlink(result.cleaned_path)
            records_removed -= result.records_removed
            tombstones_removed -= result.tombstones_removed
            continue
        segment = result.source.segment
        created_ms = segment.created_ms
        segment.close()
        segment.offset_index.delete()
        segment.time_index.delete()
        os.replace(result.cleaned_path, segment.log_path)
        replacement = Segment(segment.directory, segment.base_offset, config.index_interval_bytes,
                              config.segment_index_bytes, created_ms)
        replacement.rebuild_indexes()
        replacement.unflushed = True
        replacement.flush()
        log.replace_segment(index, replacement)
        segments_cleaned += 1
        bytes_before += result.source.size_bytes
        bytes_after += replacement.size_bytes
    return CompactionResult(segments_cleaned, records_removed, tombstones_removed, bytes_before, bytes_after,
                            work.bytes_read, work.first_dirty_offset)


def _segment_index(base_offsets: list[int], offset: int) -> int:
    return max(0, bisect.bisect_right(base_offsets, offset) - 1)


def _position(segments: list[Segment], base_offsets: list[int], offset: int, round_up: bool = False) -> int:
    """Where the batch holding ``offset`` starts, counted in bytes from the first
    segment's start; with ``round_up``, where the last batch holding an offset below
    ``offset`` ends."""
    index = _segment_index(base_offsets, offset)
    segment = segments[index]
    position = segment.position_for(offset)
    if round_up and position < segment.size_bytes:
        header, _reason = check_frame(segment.buffer(), position, segment.size_bytes, verify_crc=False)
        if header is not None and header.base_offset < offset:
            position += header.frame_bytes
    return sum(earlier.size_bytes for earlier in segments[:index]) + position


def _frames(snapshot: SegmentSnapshot, position: int = 0) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each frame of the snapshot (framing checked, not CRCs)."""
    while position < snapshot.size_bytes:
        header, reason = check_frame(snapshot.buffer, position, snapshot.size_bytes, verify_crc=False)
        if header is None:
            raise CorruptRecordError(f"segment {snapshot.log_path} at position {position}: {reason}")
        yield position, header
        position += header.frame_bytes


def _fill_offset_map(plan: CleaningPlan, offset_map: OffsetMap) -> tuple[int, int]:
    """Add the dirty section to the map in chunks of whole batches; return (the offset
    where the map ends: the dirty section's end, or the first batch that did not fit;
    bytes read)."""
    start, end = plan.first_dirty_offset, plan.first_uncleanable_offset
    chunk_limit_bytes = max(1, plan.offset_map_bytes // 4)
    keys: list[pa.Array] = []
    offsets: list[np.ndarray] = []
    batch_ends: list[int] = []
    batch_next_offsets: list[int] = []
    chunk_rows = chunk_key_bytes = bytes_read = 0

    def flush_chunk() -> int | None:
        """Add the chunk; return the offset the map stops at if it filled, else None."""
        nonlocal chunk_rows, chunk_key_bytes
        if not batch_ends:
            return None
        taken = offset_map.add(pa.concat_arrays(keys), np.concatenate(offsets), np.array(batch_ends, dtype=np.int64))
        stop = None
        if taken < chunk_rows:
            stop = batch_next_offsets[batch_ends.index(taken)] if taken else int(offsets[0][0])
        keys.clear(), offsets.clear(), batch_ends.clear(), batch_next_offsets.clear()
        chunk_rows = chunk_key_bytes = 0
        return stop

    for snapshot in plan.segments:
        if snapshot.base_offset >= end:
            break
        frames = _frames(snapshot)
        for position, header in frames:
            if header.last_offset < start or header.record_count == 0:
                continue
            if header.base_offset >= end:
                break
            bytes_read += header.frame_bytes
            batch = decode_body(snapshot.buffer, position, header)
            batch_offsets = batch.column(0).to_numpy()
            first, last = np.searchsorted(batch_offsets, [start, end])
            if first == last:
                continue
            batch_keys = batch.column(2).slice(first, last - first)
            keys.append(batch_keys)
            offsets.append(batch_offsets[first:last])
            chunk_rows += int(last - first)
            batch_ends.append(chunk_rows)
            batch_next_offsets.append(min(header.next_offset, end))
            chunk_key_bytes += batch_keys.nbytes
            if chunk_key_bytes >= chunk_limit_bytes:
                stop = flush_chunk()
                if stop is not None:
                    return stop, bytes_read
    stop = flush_chunk()
    return (end if stop is None else stop), bytes_read


def _clean_segment(plan: CleaningPlan, snapshot: SegmentSnapshot, offset_map: OffsetMap,
                   clean_end: int) -> tuple[CleanedSegment | None, int]:
    """Write the cleaned copy of one segment if anything in it changes. Returns it (None
    when nothing changes) and the earliest delete horizon of a tombstone kept below
    ``clean_end`` (``NO_DELETE_HORIZON`` if none)."""
    import pyarrow.compute as pc  # lazy: see the module docstring
    frames = list(_frames(snapshot))
    batches = [decode_body(snapshot.buffer, position, header) for position, header in frames]
    if batches:
        latest = offset_map.latest_offsets(pa.chunked_array([batch.column(2) for batch in batches], pa.binary()))
    row_start = 0
    pieces: list = []
    records_removed = tombstones_removed = 0
    earliest_horizon_ms = NO_DELETE_HORIZON
    changed = False
    last_position = frames[-1][0] if frames else -1
    for (position, header), batch in zip(frames, batches):
        rows = batch.num_rows
        latest_rows = latest[row_start:row_start + rows]
        row_start += rows
        offsets = batch.column(0).to_numpy()
        in_range = offsets < clean_end
        superseded = latest_rows > offsets  # a newer record of the key is in the map
        # Records without a key cannot be compacted (a log switched from delete): drop them.
        keyless = in_range & ~pc.is_valid(batch.column(2)).to_numpy(zero_copy_only=False)
        kept = ~(superseded | keyless)
        tombstones = pc.is_null(batch.column(3)).to_numpy(zero_copy_only=False)
        horizon_ms = header.delete_horizon_ms
        if horizon_ms != NO_DELETE_HORIZON and plan.now_ms >= horizon_ms:
            expired = kept & tombstones & in_range
            tombstones_removed += int(expired.sum())
            kept &= ~expired
        kept_count = int(kept.sum())
        records_removed += rows - kept_count
        kept_tombstones = bool((kept & tombstones & in_range).any())
        if kept_tombstones and horizon_ms == NO_DELETE_HORIZON:
            horizon_ms = plan.now_ms + plan.delete_retention_ms
        if kept_tombstones:
            earliest_horizon_ms = horizon_ms if earliest_horizon_ms == NO_DELETE_HORIZON else min(earliest_horizon_ms, horizon_ms)
        if kept_count == rows and horizon_ms == header.delete_horizon_ms:
            pieces.append(snapshot.buffer.slice(position, header.frame_bytes))
            continue
        changed = True
        if kept_count == 0 and position != last_position:
            continue
        # A segment's last batch stays, empty if need be, so the segment still ends
        # where it did: later truncation must never hand out an offset twice.
        filtered = batch.filter(pa.array(kept))
        body = encode_body(filtered, header.codec)
        new_header = dataclasses.replace(
            header,
            record_count=kept_count,
            max_timestamp_ms=pc.max(filtered.column(1)).as_py() if kept_count else header.max_timestamp_ms,
            delete_horizon_ms=horizon_ms,
        )
        frame_header, _ = encode_frame(new_header, body)
        pieces.extend([frame_header, body])
    if not changed:
        return None, earliest_horizon_ms
    cleaned_path = f"{snapshot.log_path}.{plan.number}{CLEANED_SUFFIX}"
    size_bytes = 0
    try:
        with open(cleaned_path, "wb") as handle:
            for piece in pieces:
                view = memoryview(piece)
                handle.write(view)
                size_bytes += view.nbytes
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink(cleaned_path)
        raise
    return CleanedSegment(snapshot, cleaned_path, records_removed, tombstones_removed, size_bytes), earliest_horizon_ms


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
