"""Opening a log (storage/log_loader.py): what it removes, clamps and rebuilds from the
checkpoints. Torn and corrupt tails, index rebuilds and the clean-shutdown marker are in
test_recovery.py."""

from __future__ import annotations

import pytest
from storage_helpers import batch_of, crash, offsets_of

from rafka.storage import LogConfig, ManualClock, checkpoint
from rafka.storage.log_loader import load_log


@pytest.mark.parametrize("suffix", [".tmp", ".truncating", ".swap"])
def test_load_removes_leftovers_of_interrupted_writes(open_log, tmp_path, suffix):
    log = open_log()
    log.append(batch_of(5))
    log.close()
    leftover = tmp_path / "log" / ("00000000000000000000.log" + suffix)
    leftover.write_bytes(b"partial")
    reopened = open_log()
    assert not leftover.exists()
    assert offsets_of(reopened.read(0)) == list(range(5))


def test_load_removes_indexes_whose_segment_is_gone(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(5))
    log.close()
    orphans = [tmp_path / "log" / ("00000000000000000999" + suffix) for suffix in (".index", ".timeindex")]
    for orphan in orphans:
        orphan.write_bytes(b"\x00" * 16)
    reopened = open_log()
    assert [orphan.exists() for orphan in orphans] == [False, False]
    assert reopened.segment_base_offsets == [0]


def test_load_of_a_directory_without_segments_starts_at_the_log_start_checkpoint(tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    checkpoint.write_offset(str(directory / checkpoint.LOG_START_OFFSET_FILE), 70)
    loaded = load_log(str(directory), LogConfig(), ManualClock())
    assert [segment.base_offset for segment in loaded.segments] == [70]
    assert (loaded.log_start_offset, loaded.recovery_point) == (70, 70)


def test_load_returns_flushed_segments_and_the_log_end_as_recovery_point(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 100, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    crash(log)  # nothing fsynced: every segment is validated
    loaded = load_log(str(tmp_path / "log"), LogConfig.from_dict({"segment.bytes": 2048}), ManualClock())
    assert loaded.recovery.segments_recovered == len(loaded.segments) > 1
    assert [segment.unflushed for segment in loaded.segments] == [False] * len(loaded.segments)
    assert loaded.recovery_point == loaded.segments[-1].next_offset == 100


def test_load_raises_a_log_start_checkpoint_below_the_first_segment_to_its_base(open_log, tmp_path):
    log = open_log(segment_bytes=2048)
    for start in range(0, 200, 10):
        log.append(batch_of(10, start=start, value_bytes=30))
    log.set_high_watermark(200)
    log.delete_records_before(150)
    first_base = log.segment_base_offsets[0]
    log.close()
    checkpoint.write_offset(str(tmp_path / "log" / checkpoint.LOG_START_OFFSET_FILE), 0)
    assert 0 < first_base <= 150
    assert open_log(segment_bytes=2048).log_start_offset == first_base


def test_load_lowers_a_log_start_checkpoint_past_the_log_end_to_the_log_end(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(10))
    log.close()
    checkpoint.write_offset(str(tmp_path / "log" / checkpoint.LOG_START_OFFSET_FILE), 500)
    reopened = open_log()
    assert (reopened.log_start_offset, reopened.log_end_offset) == (10, 10)


def test_load_clamps_the_high_watermark_to_a_cut_tail(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(10))
    log.flush()
    flushed_bytes = log.size_bytes
    log.append(batch_of(10, start=10))
    log.set_high_watermark(20)
    log.checkpoint()  # the high watermark of 20 is on disk, the second batch is not fsynced
    crash(log)
    segment = tmp_path / "log" / "00000000000000000000.log"
    segment.write_bytes(segment.read_bytes()[: flushed_bytes + 7])  # torn second batch
    reopened = open_log()
    assert reopened.last_recovery.batches_dropped == 1
    assert (reopened.log_end_offset, reopened.high_watermark) == (10, 10)


def test_load_extends_the_epoch_checkpoint_with_epochs_of_validated_batches(open_log, tmp_path):
    """A crash between writing a batch of a new epoch and saving the epoch history."""
    epochs_file = tmp_path / "log" / checkpoint.LEADER_EPOCH_FILE
    log = open_log()
    log.append(batch_of(5), leader_epoch=0)
    log.flush()
    log.checkpoint()
    saved_history = epochs_file.read_bytes()
    log.append(batch_of(5, start=5), leader_epoch=3)
    crash(log)
    epochs_file.write_bytes(saved_history)
    assert open_log().leader_epochs.entries() == [(0, 0), (3, 5)]


def test_load_without_a_cleaner_checkpoint_counts_the_whole_log_as_dirty(open_log, tmp_path):
    log = open_log()
    for start in range(0, 30, 10):
        log.append(batch_of(10, start=start))
    log.set_high_watermark(30)
    log.delete_records_before(12)
    log.close()
    (tmp_path / "log" / checkpoint.CLEANER_OFFSET_FILE).unlink(missing_ok=True)
    reopened = open_log()
    assert (reopened.cleaner_offset, reopened.cleaner_delete_horizon_ms) == (12, checkpoint.NO_DELETE_HORIZON)


def test_load_rewrites_a_cleaner_checkpoint_past_the_log_end_as_the_log_end(open_log, tmp_path):
    log = open_log()
    log.append(batch_of(10))
    log.close()
    cleaner_file = str(tmp_path / "log" / checkpoint.CLEANER_OFFSET_FILE)
    checkpoint.write_cleaner_offset(cleaner_file, 50, 1234)
    reopened = open_log()
    assert (reopened.cleaner_offset, reopened.cleaner_delete_horizon_ms) == (10, 1234)
    assert checkpoint.read_cleaner_offset(cleaner_file) == (10, 1234)
