"""Log compaction: keep the latest record per key in the closed segments.

Contract (``cleanup.policy`` ``compact`` or ``compact,delete``):

* Only *cleanable* segments are touched: closed segments (never the active one), oldest
  first, up to the first whose newest record is younger than ``min.compaction.lag.ms``.
* Within the cleanable range a record survives only if it is the latest record of its key
  there. Offsets never change (gaps are fine, as in Kafka); batches keep their base
  offset, last offset delta, producer fields and leader epoch.
* A tombstone (null value) that survives gets a *delete horizon* of now +
  ``delete.retention.ms`` stored in its batch header the first time a cleaning pass sees
  it; a pass at or after the horizon removes it. Consumers that read the log within
  ``delete.retention.ms`` of the first pass therefore always see the deletion.
* Each segment is rewritten to ``<base>.log.cleaned``, fsynced, and renamed over the
  original; its indexes are deleted before the rename and rebuilt after, so a crash at any
  point leaves either the old or the new segment, plus indexes the next open rebuilds.

Memory: the key → latest offset map holds every key of the cleanable range (keys and
offsets only, never values). Kafka bounds this with a dedupe buffer and multiple passes;
rafka does not yet, which is fine for the segment counts one replica holds today.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from rafka.storage.batch import decode_body, encode_body, encode_frame
from rafka.storage.segment import Segment

if TYPE_CHECKING:
    from rafka.storage.log import Log

CLEANED_SUFFIX = ".cleaned"


@dataclasses.dataclass(frozen=True)
class CompactionResult:
    segments_cleaned: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


def compact_log(log: "Log") -> CompactionResult:
    if not log.config.compact:
        return CompactionResult()
    now_ms = log.clock.now_ms()
    cleanable: list[Segment] = []
    for segment in log.segments()[:-1]:
        if not segment.empty and now_ms - segment.max_timestamp_ms < log.config.min_compaction_lag_ms:
            break
        cleanable.append(segment)
    if not cleanable:
        return CompactionResult()
    latest_offsets = _latest_offset_per_key(cleanable)
    totals = [0, 0, 0, 0, 0]
    for index, segment in enumerate(cleanable):
        result = _clean_segment(log, index, segment, latest_offsets, now_ms)
        for position, value in enumerate(dataclasses.astuple(result)):
            totals[position] += value
    return CompactionResult(*totals)


def _latest_offset_per_key(segments: list[Segment]) -> pa.Array:
    keys, offsets = [], []
    for segment in segments:
        buffer = segment.buffer()
        for position, header in segment.headers():
            batch = decode_body(buffer, position, header)
            offsets.append(batch.column(0))
            keys.append(batch.column(2))
    if not keys:
        return pa.array([], pa.int64())
    table = pa.table({"key": pa.chunked_array(keys, pa.binary()), "offset": pa.chunked_array(offsets, pa.int64())})
    return table.group_by("key").aggregate([("offset", "max")]).column("offset_max").combine_chunks()


def _clean_segment(log: "Log", index: int, segment: Segment, latest_offsets: pa.Array, now_ms: int) -> CompactionResult:
    buffer = segment.buffer()
    pieces: list = []
    records_removed = tombstones_removed = 0
    changed = False
    last_position = max((position for position, _ in segment.headers()), default=-1)
    for position, header in segment.headers():
        batch = decode_body(buffer, position, header)
        # Records without a key cannot be compacted (a log switched from delete): drop them.
        kept = pc.and_(pc.is_in(batch.column(0), value_set=latest_offsets), pc.is_valid(batch.column(2)))
        tombstones = pc.is_null(batch.column(3))
        horizon_ms = header.delete_horizon_ms
        if horizon_ms != -1 and now_ms >= horizon_ms:
            expired = pc.and_(kept, tombstones)
            tombstones_removed += pc.sum(expired).as_py() or 0
            kept = pc.and_(kept, pc.invert(tombstones))
        kept_count = pc.sum(kept).as_py() or 0
        records_removed += batch.num_rows - kept_count
        if kept_count and horizon_ms == -1 and pc.any(pc.and_(kept, tombstones)).as_py():
            horizon_ms = now_ms + log.config.delete_retention_ms
        if kept_count == batch.num_rows and horizon_ms == header.delete_horizon_ms:
            pieces.append(buffer.slice(position, header.frame_bytes))
            continue
        changed = True
        if kept_count == 0 and position != last_position:
            continue
        # A segment's last batch stays, empty if need be, so the segment still ends
        # where it did: later truncation must never hand out an offset twice.
        filtered = batch.filter(kept)
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
        return CompactionResult()
    bytes_before = segment.size_bytes
    cleaned_path = segment.log_path + CLEANED_SUFFIX
    with open(cleaned_path, "wb") as handle:
        for piece in pieces:
            handle.write(memoryview(piece))
        handle.flush()
        os.fsync(handle.fileno())
    created_ms = segment.created_ms
    segment.close()
    segment.offset_index.delete()
    segment.time_index.delete()
    os.replace(cleaned_path, segment.log_path)
    replacement = Segment(segment.directory, segment.base_offset, log.config.index_interval_bytes,
                          log.config.segment_index_bytes, created_ms)
    replacement.rebuild_indexes()
    replacement.unflushed = True
    replacement.flush()
    log.replace_segment(index, replacement)
    return CompactionResult(1, records_removed, tombstones_removed, bytes_before, replacement.size_bytes)
