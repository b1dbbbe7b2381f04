"""Log compaction, checked against a plain-Python reference model.

The model: below the first uncleanable offset, min(high watermark, active segment base),
only the latest record of each key survives (and, past the delete horizon, no tombstone);
everything from there on is untouched. It must hold whatever the high watermark, and
however small the cleaner's offset map (then several passes get there).
"""

from __future__ import annotations

import tempfile

from hypothesis import given, settings, strategies as st
from storage_helpers import contents

from rafka.storage import Log, LogConfig, ManualClock, make_batch

DELETE_RETENTION_MS = 1000

records = st.tuples(st.sampled_from([b"a", b"b", b"c", b"d", b"e"]), st.one_of(st.none(), st.binary(min_size=1, max_size=20)))
batches = st.lists(st.lists(records, min_size=1, max_size=8), min_size=1, max_size=25)


def open_compacted(directory: str, clock: ManualClock, segment_bytes: int, dirty_ratio: float = 0.5) -> Log:
    config = LogConfig.from_dict({
        "cleanup.policy": "compact",
        "segment.bytes": str(segment_bytes),
        "delete.retention.ms": str(DELETE_RETENTION_MS),
        "min.cleanable.dirty.ratio": str(dirty_ratio),
    })
    return Log(directory, config, clock)


def compact_until_clean(log: Log, offset_map_bytes: int) -> None:
    """Run passes until none is due (a small offset map needs several)."""
    for _ in range(1000):
        if log.compact(offset_map_bytes).first_dirty_offset == -1:
            return
    raise AssertionError("compaction passes never stopped")


def reference(written, cleanable_end: int, drop_tombstones: bool):
    """The records compaction must leave: in [0, cleanable_end) the latest per key (and,
    once past the delete horizon, no tombstones); everything after untouched."""
    latest = {}
    for offset, key, _value in written:
        if offset < cleanable_end:
            latest[key] = offset
    kept = []
    for offset, key, value in written:
        if offset >= cleanable_end:
            kept.append((offset, key, value))
        elif latest[key] == offset and not (drop_tombstones and value is None):
            kept.append((offset, key, value))
    return kept


@settings(max_examples=60, deadline=None)
@given(batches=batches, segment_bytes=st.sampled_from([1024, 3000, 8192]),
       high_watermark_share=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
       offset_map_bytes=st.sampled_from([1, 40, 10**6]))
def test_compaction_matches_the_reference_model(batches, segment_bytes, high_watermark_share, offset_map_bytes):
    with tempfile.TemporaryDirectory() as directory:
        clock = ManualClock()
        # Ratio 0: any dirty byte makes a pass due, so passes run until the model holds.
        log = open_compacted(directory, clock, segment_bytes, dirty_ratio=0.0)
        written = []
        for batch in batches:
            keys = [key for key, _ in batch]
            values = [value for _, value in batch]
            info = log.append(make_batch(values, keys=keys, timestamps_ms=clock.now_ms()))
            written += [(info.first_offset + i, key, value) for i, (key, value) in enumerate(batch)]
            clock.advance(1)
        log.set_high_watermark(int(log.log_end_offset * high_watermark_share))
        cleanable_end = min(log.high_watermark, log.segment_base_offsets[-1])
        end_before = log.log_end_offset

        compact_until_clean(log, offset_map_bytes)
        assert contents(log) == reference(written, cleanable_end, drop_tombstones=False)
        assert log.log_end_offset == end_before
        assert log.cleaner_offset == max(cleanable_end, log.log_start_offset)

        # Within the delete horizon nothing is due and nothing changes.
        assert log.compact(offset_map_bytes).bytes_read == 0
        assert contents(log) == reference(written, cleanable_end, drop_tombstones=False)

        clock.advance(DELETE_RETENTION_MS)
        compact_until_clean(log, offset_map_bytes)
        expected = reference(written, cleanable_end, drop_tombstones=True)
        assert contents(log) == expected

        log.close()
        assert contents(open_compacted(directory, clock, segment_bytes)) == expected


def test_compaction_never_touches_the_active_segment(tmp_path):
    clock = ManualClock()
    log = open_compacted(str(tmp_path), clock, 1_000_000)
    for _ in range(5):
        log.append(make_batch([b"x", None], keys=[b"k", b"k"], timestamps_ms=clock.now_ms()))
    log.set_high_watermark(log.log_end_offset)
    before = contents(log)
    assert log.compact().segments_cleaned == 0
    assert contents(log) == before and len(before) == 10


def test_compaction_keeps_offsets_and_serves_reads_from_gaps(tmp_path):
    clock = ManualClock()
    log = open_compacted(str(tmp_path), clock, 1024)
    for value in range(6):
        log.append(make_batch([b"%d" % value], keys=[b"same"], timestamps_ms=clock.now_ms()))
    log.set_high_watermark(log.log_end_offset)
    result = log.compact()
    assert result.records_removed == 4  # offsets 0-3; 4 is latest in range, 5 is active
    assert [offset for offset, _, _ in contents(log)] == [4, 5]
    read = log.read(1)
    assert read.batches[0].column("offset").to_pylist() == [4]


def test_min_compaction_lag_protects_recent_segments(tmp_path):
    clock = ManualClock()
    config = LogConfig.from_dict({"cleanup.policy": "compact", "segment.bytes": "1024", "min.compaction.lag.ms": "5000"})
    log = Log(str(tmp_path), config, clock)
    for value in range(4):
        log.append(make_batch([b"%d" % value], keys=[b"k"], timestamps_ms=clock.now_ms()))
    log.set_high_watermark(log.log_end_offset)
    assert log.compact().segments_cleaned == 0
    clock.advance(5000)
    assert log.compact().records_removed == 2


def test_compaction_keeps_each_segment_ending_where_it_did(tmp_path):
    """Emptied batches at a segment's end stay as empty frames: a later truncation cannot
    hand out an offset twice."""
    clock = ManualClock()
    log = open_compacted(str(tmp_path), clock, 1024)
    for value in range(4):
        log.append(make_batch([b"%d" % value], keys=[b"k"], timestamps_ms=clock.now_ms()))
    log.append(make_batch([b"x"], keys=[b"other"], timestamps_ms=clock.now_ms()))
    log.set_high_watermark(log.log_end_offset)
    ends_before = [segment.next_offset for segment in log.segments()]
    log.compact()
    assert [segment.next_offset for segment in log.segments()] == ends_before
    assert log.truncate_to(2) == 2
    assert log.append(make_batch([b"new"], keys=[b"k"])).first_offset == 2


def test_compaction_drops_records_without_keys(tmp_path):
    clock = ManualClock()
    plain = Log(str(tmp_path), LogConfig.from_dict({"segment.bytes": "1024"}), clock)
    plain.append(make_batch([b"keyless"], timestamps_ms=clock.now_ms()))
    plain.append(make_batch([b"keyed"], keys=[b"k"], timestamps_ms=clock.now_ms()))
    plain.append(make_batch([b"active"], keys=[b"a"], timestamps_ms=clock.now_ms()))
    plain.close()
    log = open_compacted(str(tmp_path), clock, 1024)
    log.set_high_watermark(log.log_end_offset)
    log.compact()
    assert [value for _, _, value in contents(log)] == [b"keyed", b"active"]
