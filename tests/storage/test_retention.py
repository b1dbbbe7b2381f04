"""Segment roll, retention and flush policy, driven by a manual clock."""

from __future__ import annotations

from storage_helpers import batch_of, offsets_of


def test_segment_rolls_when_segment_bytes_would_be_exceeded(open_log):
    log = open_log(segment_bytes=2048)
    frame_bytes = log.append(batch_of(10, value_bytes=30)).frame_bytes
    per_segment = 2048 // frame_bytes
    for start in range(10, 10 * (per_segment + 1), 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    assert log.segment_count == 2
    assert log.segment_base_offsets == [0, 10 * per_segment]
    assert all(segment.size_bytes <= 2048 for segment in log.segments())


def test_segment_rolls_after_segment_ms(open_log, clock):
    log = open_log(segment_ms=1000)
    log.append(batch_of(5))
    clock.advance(999)
    log.append(batch_of(5))
    assert log.segment_count == 1
    clock.advance(1)
    log.append(batch_of(5))
    assert log.segment_base_offsets == [0, 10]


def test_retention_ms_deletes_whole_expired_segments_only(open_log, clock):
    log = open_log(segment_bytes=2048, retention_ms=10_000)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30, timestamp_ms=clock.now_ms()))
        clock.advance(1000)
    bases = log.segment_base_offsets
    assert len(bases) >= 3
    log.set_high_watermark(log.log_end_offset)
    assert log.enforce_retention().segments_deleted == 0
    # Expire exactly the first segment: its newest record is 10 s + 1 ms old.
    newest_in_first = log.segments()[0].max_timestamp_ms
    clock.advance(newest_in_first + 10_001 - clock.now_ms())
    result = log.enforce_retention()
    assert result.segments_deleted == 1
    assert log.log_start_offset == bases[1]
    assert offsets_of(log.read(bases[1], max_bytes=10**9)) == list(range(bases[1], 100))


def test_retention_ms_expiring_everything_keeps_the_log_end(open_log, clock):
    log = open_log(retention_ms=1000)
    log.append(batch_of(10, timestamp_ms=clock.now_ms()))
    log.set_high_watermark(10)
    clock.advance(1001)
    assert log.enforce_retention().segments_deleted == 1
    assert (log.log_start_offset, log.log_end_offset) == (10, 10)
    assert log.append(batch_of(1)).first_offset == 10


def test_retention_bytes_keeps_the_newest_segments_within_the_limit(open_log, clock):
    log = open_log(segment_bytes=4096)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30, timestamp_ms=clock.now_ms()))
    sizes = [segment.size_bytes for segment in log.segments()]
    limit = sum(sizes[-3:])
    log.update_config(log.config.updated({"retention.bytes": str(limit)}))
    log.set_high_watermark(log.log_end_offset)
    result = log.enforce_retention()
    assert result.segments_deleted == len(sizes) - 3
    assert result.bytes_deleted == sum(sizes[:-3])
    assert log.size_bytes == limit


def test_compact_only_policy_never_deletes_by_time(open_log, clock):
    log = open_log(cleanup_policy="compact", retention_ms=1)
    log.append(batch_of(3, keys=[b"a", b"b", b"c"]))
    clock.advance(10_000)
    assert log.enforce_retention().segments_deleted == 0
    assert log.log_end_offset == 3


def test_flush_messages_fsyncs_and_advances_recovery_point(open_log):
    log = open_log(flush_messages=20)
    log.append(batch_of(10))
    assert log.recovery_point == 0
    log.append(batch_of(10))
    assert log.recovery_point == 20


def test_flush_ms_flushes_on_the_first_append_after_the_interval(open_log, clock):
    log = open_log(flush_ms=500)
    log.append(batch_of(10))
    assert log.recovery_point == 0
    clock.advance(500)
    assert log.flush_if_due()
    assert log.recovery_point == 10
    assert not log.flush_if_due()


def test_default_flush_policy_leaves_flushing_to_the_owner(open_log, clock):
    log = open_log()
    log.append(batch_of(10))
    clock.advance(10**9)
    assert not log.flush_if_due()
    assert log.recovery_point == 0
    log.flush()
    assert log.recovery_point == 10


def test_retention_never_deletes_records_above_the_high_watermark(open_log, clock):
    log = open_log(segment_bytes=2048, retention_ms=1000)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30, timestamp_ms=clock.now_ms()))
    log.set_high_watermark(25)
    clock.advance(10_000)
    log.enforce_retention()
    assert log.log_start_offset <= 25
    assert log.read(log.log_start_offset, max_bytes=10**9).record_count == 100 - log.log_start_offset
