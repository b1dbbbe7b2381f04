"""Appends, reads, offsets and bad input on one partition log."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from storage_helpers import batch_of, offsets_of, values_of

from rafka.errors import InvalidRecordError, OffsetOutOfRangeError, RecordTooLargeError, StorageError
from rafka.storage import PRODUCE_SCHEMA, RECORD_SCHEMA, make_batch


def test_append_assigns_consecutive_offsets_from_log_end(open_log):
    log = open_log()
    first = log.append(batch_of(3))
    second = log.append(batch_of(2, start=3))
    assert (first.first_offset, first.last_offset) == (0, 2)
    assert (second.first_offset, second.last_offset) == (3, 4)
    assert log.log_end_offset == 5
    assert offsets_of(log.read(0)) == [0, 1, 2, 3, 4]


def test_read_returns_exactly_the_records_from_the_requested_offset(open_log):
    log = open_log()
    log.append(batch_of(10))
    result = log.read(7)
    assert offsets_of(result) == [7, 8, 9]
    assert values_of(result)[0].startswith(b"v7")
    assert result.next_offset == 10


def test_read_at_log_end_returns_nothing(open_log):
    log = open_log()
    log.append(batch_of(4))
    result = log.read(4)
    assert result.batches == [] and result.next_offset == 4


def test_read_past_log_end_raises_offset_out_of_range(open_log):
    log = open_log()
    log.append(batch_of(4))
    with pytest.raises(OffsetOutOfRangeError, match="offset 5"):
        log.read(5)


def test_read_crosses_segment_boundaries_in_order(open_log):
    log = open_log(segment_bytes=2048, index_interval_bytes=256)
    for start in range(0, 300, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    assert log.segment_count > 3
    seen, offset = [], 0
    while offset < log.log_end_offset:
        result = log.read(offset, max_bytes=700)
        seen += offsets_of(result)
        offset = result.next_offset
    assert seen == list(range(300))
    assert offsets_of(log.read(123, max_bytes=10**9)) == list(range(123, 300))


def test_read_stops_at_max_offset(open_log):
    log = open_log()
    log.append(batch_of(10))
    log.append(batch_of(10, start=10))
    result = log.read(5, max_offset=13)
    assert offsets_of(result) == list(range(5, 13))
    assert result.next_offset == 13


def test_read_returns_at_least_one_batch_beyond_max_bytes(open_log):
    log = open_log()
    log.append(batch_of(100, value_bytes=100))
    assert log.read(0, max_bytes=1).record_count == 100


def test_read_batches_are_zero_copy_views_of_the_segment(open_log):
    log = open_log()
    log.append(batch_of(1000, value_bytes=100))
    batch = log.read(0).batches[0]
    segment_buffer = log.segments()[0].buffer()
    values = batch.column("value").buffers()[2]
    assert segment_buffer.address <= values.address < segment_buffer.address + segment_buffer.size


def test_read_values_keys_timestamps_and_headers_round_trip(open_log):
    log = open_log()
    batch = make_batch([b"a", None], keys=[b"k", None], timestamps_ms=[5, 6], headers=[[("h", b"1")], None])
    log.append(batch)
    got = log.read(0).batches[0]
    assert got.column("value").to_pylist() == [b"a", None]
    assert got.column("key").to_pylist() == [b"k", None]
    assert got.column("timestamp").to_pylist() == [5, 6]
    assert got.column("headers").to_pylist() == [[{"key": "h", "value": b"1"}], None]


def test_append_accepts_a_table_without_an_offset_column(open_log):
    log = open_log()
    table = pa.table({"timestamp": pa.array([1, 2], pa.int64()), "key": pa.array([b"k", b"l"]),
                      "value": pa.array([b"x", b"y"]), "headers": pa.array([None, None], PRODUCE_SCHEMA.field("headers").type)})
    info = log.append(table)
    assert info.record_count == 2 and values_of(log.read(0)) == [b"x", b"y"]


def test_append_of_wrong_schema_names_the_column_and_writes_nothing(open_log):
    log = open_log()
    log.append(batch_of(2))
    wrong = pa.record_batch({"timestamp": pa.array([1], pa.int64()), "key": pa.array([b"k"]),
                             "value": pa.array(["text"]), "headers": pa.array([None], RECORD_SCHEMA.field("headers").type)})
    with pytest.raises(InvalidRecordError, match="'value'"):
        log.append(wrong)
    with pytest.raises(InvalidRecordError, match="no column 'timestamp'"):
        log.append(pa.record_batch({"value": pa.array([b"x"])}))
    assert log.log_end_offset == 2 and log.read(0).record_count == 2


def test_append_of_empty_batch_is_rejected(open_log):
    log = open_log()
    with pytest.raises(InvalidRecordError, match="empty"):
        log.append(batch_of(0))


def test_make_batch_names_the_argument_of_the_wrong_type():
    with pytest.raises(InvalidRecordError, match="values"):
        make_batch([1, 2])
    with pytest.raises(InvalidRecordError, match="keys has 1 entries for 2 records"):
        make_batch([b"a", b"b"], keys=[b"k"])


def test_oversized_batch_is_rejected_and_loses_nothing(open_log):
    log = open_log(max_message_bytes=4096)
    log.append(batch_of(5))
    with pytest.raises(RecordTooLargeError, match="max.message.bytes=4096"):
        log.append(batch_of(100, value_bytes=100))
    log.append(batch_of(5, start=5))
    assert offsets_of(log.read(0)) == list(range(10))


def test_compacted_log_rejects_records_without_keys(open_log):
    log = open_log(cleanup_policy="compact")
    with pytest.raises(InvalidRecordError, match="needs a key"):
        log.append(batch_of(2, keys=[b"k", None]))
    assert log.log_end_offset == 0


def test_log_append_time_replaces_record_timestamps(open_log, clock):
    log = open_log(message_timestamp_type="LogAppendTime")
    info = log.append(batch_of(3, timestamp_ms=1))
    assert info.log_append_time_ms == clock.now_ms()
    assert log.read(0).batches[0].column("timestamp").to_pylist() == [clock.now_ms()] * 3


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_log_round_trips_and_is_smaller(open_log, tmp_path, codec):
    plain = open_log(tmp_path / "plain")
    packed = open_log(tmp_path / codec, compression_type=codec)
    batch = make_batch([b"the same text again and again " * 4] * 500, timestamps_ms=1)
    plain.append(batch)
    packed.append(batch)
    assert packed.read(0).batches[0].equals(plain.read(0).batches[0])
    assert packed.size_bytes < plain.size_bytes / 4


def test_reopen_keeps_every_record_and_offset(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30), leader_epoch=start // 50)
    log.close()
    reopened = open_log(segment_bytes=2048)
    assert reopened.last_recovery.bytes_dropped == 0
    assert reopened.log_end_offset == 100
    assert offsets_of(reopened.read(0, max_bytes=10**9)) == list(range(100))
    assert reopened.leader_epochs.entries() == [(0, 0), (1, 50)]
    reopened.append(batch_of(1))
    assert reopened.log_end_offset == 101


def test_closed_log_refuses_calls(open_log):
    log = open_log()
    log.close()
    with pytest.raises(StorageError, match="closed"):
        log.append(batch_of(1))


def test_offsets_for_times_finds_first_record_at_or_after(open_log):
    log = open_log(segment_bytes=2048, index_interval_bytes=128)
    for index in range(40):
        log.append(batch_of(5, start=index * 5, value_bytes=30, timestamp_ms=1000 + index * 10))
    assert log.offsets_for_times(0) == (0, 1000)
    assert log.offsets_for_times(1000 + 17 * 10) == (85, 1170)
    assert log.offsets_for_times(1000 + 17 * 10 + 1) == (90, 1180)
    assert log.offsets_for_times(10**12) is None


def test_offsets_for_times_handles_out_of_order_timestamps(open_log):
    log = open_log()
    log.append(make_batch([b"a", b"b", b"c"], timestamps_ms=[100, 300, 200]))
    assert log.offsets_for_times(150) == (1, 300)
    assert log.offsets_for_times(301) is None


def test_truncate_to_removes_whole_batches_at_and_after(open_log):
    log = open_log(segment_bytes=2048)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30), leader_epoch=start // 30)
    log.set_high_watermark(100)
    assert log.truncate_to(40) == 40
    assert log.high_watermark == 40
    assert offsets_of(log.read(0, max_bytes=10**9)) == list(range(40))
    assert log.leader_epochs.entries() == [(0, 0), (1, 30)]
    assert log.truncate_to(35) == 30  # inside a batch: the whole batch goes
    log.append(batch_of(5), leader_epoch=7)
    assert offsets_of(log.read(0, max_bytes=10**9)) == list(range(35))
    assert log.leader_epochs.entries() == [(0, 0), (7, 30)]


def test_truncate_keeps_earlier_reads_valid(open_log):
    log = open_log()
    log.append(batch_of(100, value_bytes=100))
    held = log.read(0).batches[0]
    log.truncate_to(0)
    assert held.column("value")[99].as_py().startswith(b"v99")
    assert log.log_end_offset == 0


def test_delete_records_before_moves_log_start_and_drops_segments(open_log):
    log = open_log(segment_bytes=2048)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    segments_before = log.segment_count
    log.set_high_watermark(100)
    assert log.delete_records_before(55) == 55
    assert log.log_start_offset == 55
    assert log.segment_count < segments_before
    assert offsets_of(log.read(55, max_bytes=10**9)) == list(range(55, 100))
    with pytest.raises(OffsetOutOfRangeError, match="offset 54"):
        log.read(54)
    with pytest.raises(OffsetOutOfRangeError, match="past the high watermark 100"):
        log.delete_records_before(101)
    log.close()
    assert open_log(segment_bytes=2048).log_start_offset == 55


def test_delete_records_up_to_log_end_leaves_an_empty_log_at_that_offset(open_log):
    log = open_log()
    log.append(batch_of(10))
    log.set_high_watermark(10)
    log.delete_records_before(10)
    assert (log.log_start_offset, log.log_end_offset, log.size_bytes) == (10, 10, 0)
    assert log.append(batch_of(1)).first_offset == 10


def test_follower_appends_leader_frames_verbatim(open_log, tmp_path):
    leader = open_log(tmp_path / "leader", segment_bytes=2048)
    follower = open_log(tmp_path / "follower")
    for start in range(0, 60, 10):
        leader.append(batch_of(10, start=start, value_bytes=30), leader_epoch=start // 30)
    offset = 0
    while offset < leader.log_end_offset:
        frames, offset = leader.read_frames(offset, max_bytes=1000)
        follower.append_frames(frames)
    assert follower.log_end_offset == 60
    assert values_of(follower.read(0, max_bytes=10**9)) == values_of(leader.read(0, max_bytes=10**9))
    assert follower.leader_epochs.entries() == leader.leader_epochs.entries()


def test_follower_rejects_frames_below_its_log_end_and_writes_nothing(open_log, tmp_path):
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    leader.append(batch_of(10))
    frames, _ = leader.read_frames(0)
    follower.append_frames(frames)
    with pytest.raises(InvalidRecordError, match="below the log end offset 10"):
        follower.append_frames(frames)
    assert follower.log_end_offset == 10


def test_follower_rejects_a_corrupt_frame(open_log, tmp_path):
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    leader.append(batch_of(10))
    frames = bytearray(leader.read_frames(0)[0].to_pybytes())
    frames[-3] ^= 0xFF
    with pytest.raises(InvalidRecordError, match="CRC"):
        follower.append_frames(bytes(frames))
    assert follower.log_end_offset == 0


def test_offset_of_wrong_type_is_named(open_log):
    log = open_log()
    with pytest.raises(TypeError, match="'3'"):
        log.read("3")


def test_large_batches_read_back_intact(open_log):
    log = open_log()
    values = np.random.default_rng(1).bytes(10_000 * 100)
    batch = make_batch([values[i * 100 : (i + 1) * 100] for i in range(10_000)], timestamps_ms=1)
    log.append(batch)
    assert log.read(0).batches[0].column("value").equals(batch.column("value"))


def test_delete_records_above_the_high_watermark_is_refused(open_log):
    log = open_log()
    log.append(batch_of(10))
    log.set_high_watermark(3)
    with pytest.raises(OffsetOutOfRangeError, match="past the high watermark 3"):
        log.delete_records_before(8)
    assert (log.log_start_offset, log.high_watermark) == (0, 3)


def test_truncating_a_batch_that_holds_the_log_start_leaves_a_consistent_empty_log(open_log):
    log = open_log()
    log.append(batch_of(10))
    log.set_high_watermark(10)
    log.delete_records_before(5)
    assert log.truncate_to(7) == 5
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (5, 5, 5)
    assert log.append(batch_of(1)).first_offset == 5


def test_offsets_must_be_non_negative_ints(open_log):
    log = open_log()
    log.append(batch_of(10))
    for call in (lambda: log.delete_records_before(5.5), lambda: log.set_high_watermark(2.5),
                 lambda: log.truncate_to(None), lambda: log.truncate_fully_and_start_at(-5)):
        with pytest.raises(TypeError, match="non-negative int offset"):
            call()
    assert log.log_end_offset == 10


def test_producer_fields_out_of_range_are_named(open_log):
    log = open_log()
    with pytest.raises(InvalidRecordError, match="producer_epoch must be a 16-bit int, got 40000"):
        log.append(batch_of(1), producer_epoch=40000)
    with pytest.raises(InvalidRecordError, match="leader_epoch"):
        log.append(batch_of(1), leader_epoch=2**31)
    with pytest.raises(InvalidRecordError, match="timestamps_ms"):
        make_batch([b"a"], timestamps_ms=[2**70])


def test_follower_starting_inside_the_leaders_first_batch_starts_at_that_batch(open_log, tmp_path):
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    leader.append(batch_of(10))
    leader.set_high_watermark(10)
    leader.delete_records_before(5)
    follower.truncate_fully_and_start_at(leader.log_start_offset)
    frames, _ = leader.read_frames(5)
    follower.append_frames(frames)
    assert follower.log_end_offset == 10 and follower.log_start_offset == 0


def test_follower_frames_far_ahead_get_a_segment_of_their_own(open_log, tmp_path):
    leader = open_log(tmp_path / "leader")
    far = 2**32 + 10
    leader.truncate_fully_and_start_at(far)
    leader.append(batch_of(3))
    follower = open_log(tmp_path / "follower")
    follower.append(batch_of(2))
    follower.append_frames(leader.read_frames(far)[0])
    assert offsets_of(follower.read(far)) == [far, far + 1, far + 2]
    assert follower.segment_base_offsets == [0, far]
