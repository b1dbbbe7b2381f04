"""Recovery on open: torn and corrupt tails, index rebuilds, checkpoints."""

from __future__ import annotations

import os
import re

import pytest
from storage_helpers import batch_of, offsets_of

from rafka.storage.checkpoint import LEADER_EPOCH_FILE, RECOVERY_POINT_FILE

SEGMENT = "00000000000000000000.log"


def crash(log) -> None:
    """Drop a log without flushing or checkpointing, as a killed process would."""
    for segment in log.segments():
        segment.close()


def write_four_flushed_then_one_unflushed(open_log, directory):
    log = open_log(directory)
    for start in range(0, 40, 10):
        log.append(batch_of(10, start=start))
    log.flush()
    log.checkpoint()
    flushed_bytes = log.size_bytes
    log.append(batch_of(3, start=40))
    last_frame_bytes = log.size_bytes - flushed_bytes
    crash(log)
    return flushed_bytes, last_frame_bytes


def test_truncation_at_every_byte_of_the_final_batch_is_recovered(open_log, tmp_path):
    """A torn final batch, cut at any byte, is dropped whole and nothing before it."""
    pristine = tmp_path / "pristine"
    flushed_bytes, frame_bytes = write_four_flushed_then_one_unflushed(open_log, pristine)
    data = (pristine / SEGMENT).read_bytes()
    for cut in range(frame_bytes):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        for name in os.listdir(pristine):
            (directory / name).write_bytes((pristine / name).read_bytes())
        (directory / SEGMENT).write_bytes(data[: flushed_bytes + cut])
        log = open_log(directory)
        assert log.last_recovery.bytes_dropped == cut, cut
        assert log.last_recovery.batches_dropped == (1 if cut else 0), cut
        assert log.log_end_offset == 40
        assert offsets_of(log.read(0, max_bytes=10**9)) == list(range(40))
        crash(log)


def test_flip_at_every_byte_of_the_final_batch_is_detected(open_log, tmp_path):
    """Any corrupted byte of the final batch makes recovery drop exactly that batch."""
    pristine = tmp_path / "pristine"
    flushed_bytes, frame_bytes = write_four_flushed_then_one_unflushed(open_log, pristine)
    data = (pristine / SEGMENT).read_bytes()
    for position in range(flushed_bytes, flushed_bytes + frame_bytes):
        directory = tmp_path / f"flip{position}"
        directory.mkdir()
        for name in os.listdir(pristine):
            (directory / name).write_bytes((pristine / name).read_bytes())
        corrupt = bytearray(data)
        corrupt[position] ^= 0xFF
        (directory / SEGMENT).write_bytes(bytes(corrupt))
        log = open_log(directory)
        assert log.last_recovery.bytes_dropped == frame_bytes, position
        assert log.last_recovery.batches_dropped == 1, position
        assert offsets_of(log.read(0, max_bytes=10**9)) == list(range(40)), position
        assert log.append(batch_of(1)).first_offset == 40
        crash(log)


def test_recovery_drops_everything_after_a_corrupt_batch_and_reports_it(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    sizes = [(segment.base_offset, segment.size_bytes) for segment in log.segments()]
    crash(log)  # nothing flushed: every segment will be validated
    second_base, second_size = sizes[1]
    path = tmp_path / "log" / f"{second_base:020d}.log"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01  # inside the first batch of the second segment
    path.write_bytes(bytes(data))
    log = open_log(segment_bytes=2048)
    later_bytes = sum(size for _, size in sizes[2:])
    frames_per_segment = second_size // (sizes[0][1] // (second_base // 10))
    assert log.last_recovery.bytes_dropped == second_size + later_bytes
    assert log.last_recovery.segments_deleted == len(sizes) - 2
    assert log.last_recovery.batches_dropped == (200 - second_base) // 10
    assert frames_per_segment >= 1
    assert log.log_end_offset == second_base
    assert offsets_of(log.read(0, max_bytes=10**9)) == list(range(second_base))


def test_recovery_that_cuts_a_corrupt_tail_logs_the_directory_and_what_it_dropped(open_log, tmp_path, caplog):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    second_base = log.segments()[1].base_offset
    later_segments = len(log.segments()) - 2
    crash(log)
    path = tmp_path / "log" / f"{second_base:020d}.log"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="rafka.storage.log"):
        log = open_log(segment_bytes=2048)
    [warning] = [record for record in caplog.records if record.name == "rafka.storage.log"]
    message = warning.getMessage()
    assert str(tmp_path / "log") in message
    assert f"at offset {second_base} in segment {second_base}" in message
    assert f"{later_segments} later segments" in message
    cut_bytes, cut_batches, later_bytes, later_batches = map(int, re.search(
        r": (\d+) bytes \((\d+) batches\) of it, and \d+ later segments \((\d+) bytes, (\d+) batches\)",
        message).groups())
    assert cut_bytes + later_bytes == log.last_recovery.bytes_dropped
    assert cut_batches + later_batches == log.last_recovery.batches_dropped


def test_recovery_of_a_clean_log_logs_nothing(open_log, tmp_path, caplog):
    log = open_log()
    log.append(batch_of(10))
    log.close()
    with caplog.at_level("DEBUG", logger="rafka.storage.log"):
        open_log()
    assert [record for record in caplog.records if record.name == "rafka.storage.log"] == []


def test_recovery_of_a_corrupt_fsynced_segment_logs_the_gap(open_log, tmp_path, caplog):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    last_frame = max(position for position, _ in log.segments()[0].headers())
    log.close()
    path = tmp_path / "log" / SEGMENT
    data = bytearray(path.read_bytes())
    data[last_frame + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="rafka.storage.log"):
        open_log(segment_bytes=2048)
    [warning] = [record for record in caplog.records if record.name == "rafka.storage.log"]
    assert str(tmp_path / "log") in warning.getMessage() and "(1 batches)" in warning.getMessage()
    assert "gap" in warning.getMessage()


def test_flushed_segments_are_not_revalidated_on_open(open_log, tmp_path):
    """Below the recovery point data is trusted, as in Kafka: a clean reopen scans nothing."""
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    log.close()
    reopened = open_log(segment_bytes=2048)
    assert reopened.last_recovery.segments_recovered == 0
    assert reopened.recovery_point == 200


def test_missing_recovery_point_checkpoint_validates_everything(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    segments = log.segment_count
    log.close()
    os.unlink(tmp_path / "log" / RECOVERY_POINT_FILE)
    reopened = open_log(segment_bytes=2048)
    assert reopened.last_recovery.segments_recovered == segments
    assert reopened.last_recovery.bytes_dropped == 0
    assert reopened.log_end_offset == 200


@pytest.mark.parametrize("damage", ["delete", "garbage", "odd_length", "wrong_position"])
def test_damaged_index_is_rebuilt(open_log, tmp_path, damage):
    log = open_log(segment_bytes=4096, index_interval_bytes=64)
    for start in range(0, 300, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    log.close()
    index = tmp_path / "log" / "00000000000000000000.index"
    good = index.read_bytes()
    assert len(good) >= 16
    if damage == "delete":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\xff" * len(good))
    elif damage == "odd_length":
        index.write_bytes(good[:-3])
    else:  # a well-formed entry that points into the middle of a batch
        index.write_bytes(good[:-4] + (int.from_bytes(good[-4:], "little") + 8).to_bytes(4, "little"))
    reopened = open_log(segment_bytes=4096, index_interval_bytes=64)
    assert reopened.last_recovery.indexes_rebuilt >= 1
    assert index.read_bytes() == good
    for offset in (0, 57, 123, 299):
        assert offsets_of(reopened.read(offset, max_bytes=10**9))[0] == offset


def test_corrupt_leader_epoch_checkpoint_is_rebuilt_from_batches(open_log, tmp_path):
    log = open_log()
    for epoch in range(3):
        log.append(batch_of(5), leader_epoch=epoch * 2)
    log.close()
    (tmp_path / "log" / LEADER_EPOCH_FILE).write_text("0\n9\nnonsense\n")
    assert open_log().leader_epochs.entries() == [(0, 0), (2, 5), (4, 10)]


def test_leftover_temporary_files_are_removed(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(5))
    log.close()
    leftover = tmp_path / "log" / "00000000000000000000.log.cleaned"
    leftover.write_bytes(b"partial")
    reopened = open_log()
    assert not leftover.exists()
    assert reopened.log_end_offset == 5


def test_corruption_below_the_recovery_point_is_reported_on_read(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(10))
    log.append(batch_of(10))
    log.close()
    path = tmp_path / "log" / SEGMENT
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    reopened = open_log()
    from rafka.errors import CorruptRecordError

    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        reopened.read(10, verify_crc=True)
    assert offsets_of(reopened.read(0, max_bytes=1)) == list(range(10))


def test_corruption_below_the_recovery_point_keeps_the_later_segments(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    last_frame = max(position for position, _ in log.segments()[0].headers())
    log.close()
    path = tmp_path / "log" / SEGMENT
    data = bytearray(path.read_bytes())
    data[last_frame + 8] ^= 0xFF  # the magic byte of the first (fsynced) segment's last frame
    path.write_bytes(bytes(data))
    reopened = open_log(segment_bytes=2048)
    assert reopened.last_recovery.segments_deleted == 0
    assert reopened.last_recovery.batches_dropped == 1
    assert reopened.log_end_offset == 200
    offsets = offsets_of(reopened.read(0, max_bytes=10**9))
    assert offsets[-1] == 199 and len(offsets) == 190


def test_rolled_segments_are_not_revalidated_after_a_crash(open_log, tmp_path):
    """A roll makes the closed segment durable and moves the recovery point to the new
    segment's base (Kafka's roll flush), so recovery after a crash validates only the
    active segment however long the log ran without flush.messages / flush.ms."""
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    active_base = log.segments()[-1].base_offset
    assert log.segment_count > 3 and log.recovery_point == active_base
    log.checkpoint()  # as the replica's maintenance does every few seconds
    crash(log)
    reopened = open_log(segment_bytes=2048)
    assert reopened.last_recovery.segments_recovered == 1
    assert reopened.log_end_offset == 200


def test_a_log_that_was_closed_reopens_as_cleanly_shut_down(open_log, tmp_path):
    log = open_log(tmp_path)
    log.append(batch_of(5))
    log.close()
    assert open_log(tmp_path).last_recovery.clean_shutdown


def test_a_log_that_was_not_closed_reopens_as_uncleanly_shut_down(open_log, tmp_path):
    log = open_log(tmp_path)
    log.append(batch_of(5))
    log.close()
    reopened = open_log(tmp_path)  # the marker is gone from here on: a crash now is unclean
    reopened.append(batch_of(5, start=5))
    crash(reopened)
    again = open_log(tmp_path)
    assert not again.last_recovery.clean_shutdown
    assert offsets_of(again.read(0)) == list(range(10))


def test_a_new_empty_log_counts_as_cleanly_shut_down(open_log, tmp_path):
    assert open_log(tmp_path / "new").last_recovery.clean_shutdown
