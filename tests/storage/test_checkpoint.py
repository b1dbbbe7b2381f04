"""The leader-epoch history and checkpoint files."""

from __future__ import annotations

import os

from storage_helpers import batch_of

from rafka.storage.checkpoint import (
    HIGH_WATERMARK_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    UNDEFINED_EPOCH,
    UNDEFINED_OFFSET,
    LeaderEpochCache,
    read_offset,
    write_offset,
)


def test_offset_checkpoint_round_trips_and_rejects_garbage(tmp_path):
    path = str(tmp_path / "checkpoint")
    assert read_offset(path) is None
    write_offset(path, 42)
    assert read_offset(path) == 42
    (tmp_path / "checkpoint").write_text("0\nforty\n")
    assert read_offset(path) is None


def test_end_offset_for_an_epoch_is_where_the_next_epoch_began(tmp_path):
    cache = LeaderEpochCache(str(tmp_path / "epochs"))
    cache.assign(0, 0)
    cache.assign(2, 10)
    cache.assign(5, 25)
    assert cache.end_offset_for(0, 40) == (0, 10)
    assert cache.end_offset_for(1, 40) == (0, 10)  # epoch 1 never led: answer for 0
    assert cache.end_offset_for(3, 40) == (2, 25)
    assert cache.end_offset_for(5, 40) == (5, 40)  # the current epoch ends at the LEO
    assert cache.end_offset_for(9, 40) == (5, 40)


def test_end_offset_for_an_epoch_before_the_history_is_undefined(tmp_path):
    cache = LeaderEpochCache(str(tmp_path / "epochs"), [(3, 100)])
    assert cache.end_offset_for(2, 150) == (UNDEFINED_EPOCH, UNDEFINED_OFFSET)


def test_assign_ignores_old_epochs_and_persists_new_ones(tmp_path):
    path = str(tmp_path / "epochs")
    cache = LeaderEpochCache(path)
    assert cache.assign(1, 0)
    assert not cache.assign(1, 5)
    assert not cache.assign(0, 7)
    assert cache.assign(4, 9)
    assert LeaderEpochCache.load(path).entries() == [(1, 0), (4, 9)]


def test_truncation_from_both_ends(tmp_path):
    cache = LeaderEpochCache(str(tmp_path / "epochs"), [(0, 0), (1, 10), (2, 20), (3, 30)])
    cache.truncate_from_end(20)
    assert cache.entries() == [(0, 0), (1, 10)]
    cache.truncate_from_start(15)
    assert cache.entries() == [(1, 15)]


def test_load_rejects_an_inconsistent_history(tmp_path):
    path = tmp_path / "epochs"
    path.write_text("0\n2\n3 10\n2 20\n")
    assert LeaderEpochCache.load(str(path)) is None


def test_log_checkpoint_rewrites_only_the_files_whose_offset_changed(open_log, tmp_path):
    """An idle replica checkpoints every few seconds: unchanged offsets must not be
    written (and fsynced) again, changed ones must."""
    log = open_log()
    log.append(batch_of(5))
    log.flush()
    log.set_high_watermark(5)
    log.checkpoint()
    files = (RECOVERY_POINT_FILE, HIGH_WATERMARK_FILE, LOG_START_OFFSET_FILE)
    inodes = {name: os.stat(tmp_path / "log" / name).st_ino for name in files}
    log.checkpoint()
    assert {name: os.stat(tmp_path / "log" / name).st_ino for name in files} == inodes
    log.append(batch_of(2, start=5))
    log.set_high_watermark(7)
    log.checkpoint()
    assert os.stat(tmp_path / "log" / HIGH_WATERMARK_FILE).st_ino != inodes[HIGH_WATERMARK_FILE]
    assert os.stat(tmp_path / "log" / LOG_START_OFFSET_FILE).st_ino == inodes[LOG_START_OFFSET_FILE]
    assert read_offset(str(tmp_path / "log" / HIGH_WATERMARK_FILE)) == 7
