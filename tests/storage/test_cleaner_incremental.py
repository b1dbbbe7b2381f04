"""Incremental cleaning: the cleaner checkpoint, min.cleanable.dirty.ratio, the bounded
offset map, and a pass built off the owner's thread while the log changes."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pyarrow as pa

from rafka.storage import Log, LogConfig, ManualClock, cleaner, make_batch
from rafka.storage.checkpoint import CLEANER_OFFSET_FILE, NO_DELETE_HORIZON

DELETE_RETENTION_MS = 1000


def open_compacted(directory, clock: ManualClock, **config: str) -> Log:
    settings = {"cleanup.policy": "compact", "segment.bytes": "4096", "delete.retention.ms": str(DELETE_RETENTION_MS)}
    settings.update({key.replace("_", "."): value for key, value in config.items()})
    return Log(str(directory), LogConfig.from_dict(settings), clock)


def write(log: Log, clock: ManualClock, keys: list[bytes], value: bytes | None = b"v") -> None:
    """One batch per key, all committed (high watermark at the log end)."""
    for key in keys:
        log.append(make_batch([value], keys=[key], timestamps_ms=clock.now_ms()))
    log.roll()
    log.set_high_watermark(log.log_end_offset)


def latest(log: Log) -> dict[bytes, bytes | None]:
    result = log.read(log.log_start_offset, max_bytes=10**9)
    values: dict[bytes, bytes | None] = {}
    for batch in result.batches:
        for key, value in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
            values[key] = value
    return values


def record_count(log: Log) -> int:
    return log.read(log.log_start_offset, max_bytes=10**9).record_count


def keys(start: int, stop: int) -> list[bytes]:
    return [b"key-%04d" % i for i in range(start, stop)]


def test_compact_with_nothing_dirty_reads_no_segment(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 50) + keys(0, 50))
    assert log.compact().records_removed == 50
    # Overwrite every closed segment with garbage of the same size: a pass that read any
    # of them would fail on the first frame.
    for segment in log.segments()[:-1]:
        with open(segment.log_path, "r+b") as handle:
            handle.write(b"\xff" * segment.size_bytes)
    result = log.compact()
    assert (result.bytes_read, result.first_dirty_offset) == (0, -1)


def test_compact_waits_until_the_dirty_share_passes_min_cleanable_dirty_ratio(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock, min_cleanable_dirty_ratio="0.5")
    write(log, clock, keys(0, 100))
    log.compact()
    write(log, clock, keys(0, 60))  # dirty: 60 of 160 batches of the same size
    assert log.compact().bytes_read == 0
    assert record_count(log) == 160
    write(log, clock, keys(60, 100))  # dirty: 100 of 200
    assert log.compact().bytes_read == 0  # exactly half is not more than half
    write(log, clock, keys(0, 1))
    assert log.compact().records_removed == 101
    assert record_count(log) == 100


def test_compact_with_a_small_offset_map_continues_where_the_last_pass_stopped(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock, min_cleanable_dirty_ratio="0")
    write(log, clock, keys(0, 40) + keys(0, 40))
    end = log.high_watermark
    # Room for ten keys: each pass maps the next ten and cleans up to there.
    room = 10 * (len(b"key-0000") + cleaner.OFFSET_MAP_ENTRY_OVERHEAD_BYTES)
    checkpoints = []
    while True:
        result = log.compact(offset_map_bytes=room)
        if result.first_dirty_offset == -1:
            break
        checkpoints.append(result.first_dirty_offset)
    assert checkpoints == sorted(checkpoints) and checkpoints == list(range(10, end + 1, 10))
    assert record_count(log) == 40
    assert latest(log) == {key: b"v" for key in keys(0, 40)}


def test_cleaner_checkpoint_survives_reopen(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 30) + keys(0, 30))
    log.compact()
    end = log.high_watermark
    log.close()
    reopened = open_compacted(tmp_path, clock)
    assert reopened.cleaner_offset == end
    assert reopened.compact().bytes_read == 0


def test_tombstone_delete_horizon_makes_a_pass_due_with_nothing_dirty(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 20))
    write(log, clock, keys(0, 1), value=None)
    log.compact()
    assert log.cleaner_delete_horizon_ms == clock.now_ms() + DELETE_RETENTION_MS
    assert latest(log)[b"key-0000"] is None
    clock.advance(DELETE_RETENTION_MS - 1)
    assert log.compact().bytes_read == 0
    log.close()
    log = open_compacted(tmp_path, clock)  # the horizon is in the cleaner checkpoint
    clock.advance(1)
    assert log.compact().tombstones_removed == 1
    assert b"key-0000" not in latest(log)
    assert log.cleaner_delete_horizon_ms == NO_DELETE_HORIZON


def test_truncate_below_the_cleaner_checkpoint_moves_it_down(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 30) + keys(0, 30))
    log.compact()
    assert log.cleaner_offset == 60
    new_end = log.truncate_to(10)  # batches are whole, so the end may land below 10
    assert log.cleaner_offset == new_end <= 10
    log.close()
    assert open_compacted(tmp_path, clock).cleaner_offset == new_end


def test_finish_cleaning_discards_a_pass_built_across_a_truncation(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 30) + keys(0, 30))
    plan = log.plan_cleaning()
    work = cleaner.build_cleaned_segments(plan)
    assert work.cleaned
    log.truncate_to(45)  # meanwhile a leader change cut the tail
    result = log.finish_cleaning(work)
    assert (result.segments_cleaned, result.records_removed) == (0, 0)
    assert record_count(log) == 45
    assert not [name for name in os.listdir(tmp_path) if name.endswith(cleaner.CLEANED_SUFFIX)]
    # The next pass starts over from the log as it is now.
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    assert log.compact().records_removed == 15
    assert latest(log) == {key: b"v" for key in keys(0, 30)}


def test_finish_cleaning_keeps_what_was_appended_while_the_pass_was_built(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 30) + keys(0, 30))
    plan = log.plan_cleaning()
    assert log.plan_cleaning() is None  # one pass at a time
    work = cleaner.build_cleaned_segments(plan)
    write(log, clock, [b"key-0000"], value=b"newer")
    log.read(0)
    result = log.finish_cleaning(work)
    assert result.records_removed == 30
    assert latest(log)[b"key-0000"] == b"newer"
    assert record_count(log) == 31
    assert log.cleaner_offset == plan.first_uncleanable_offset


def test_compact_async_builds_off_the_loop_while_the_loop_serves_the_log(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock, segment_bytes="65536")
    write(log, clock, keys(0, 500) + keys(0, 500))

    async def scenario() -> tuple[int, object]:
        compaction = asyncio.ensure_future(log.compact_async())
        appended_during_pass = 0
        while not compaction.done():
            log.append(make_batch([b"during"], keys=[b"live-%d" % appended_during_pass], timestamps_ms=clock.now_ms()))
            log.read(log.log_start_offset)
            appended_during_pass += 1
            await asyncio.sleep(0)
        return appended_during_pass, await compaction

    appended_during_pass, result = asyncio.run(scenario())
    assert appended_during_pass > 0
    assert result.records_removed == 500
    values = latest(log)
    assert all(values[key] == b"v" for key in keys(0, 500))
    assert sum(1 for key in values if key.startswith(b"live-")) == appended_during_pass


def test_cancelled_compact_async_lets_the_next_pass_run(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 30) + keys(0, 30))

    async def cancel_one_pass() -> None:
        compaction = asyncio.ensure_future(log.compact_async())
        await asyncio.sleep(0)  # the pass is planned and its build handed to a thread
        compaction.cancel()
        try:
            await compaction
        except asyncio.CancelledError:
            pass

    asyncio.run(cancel_one_pass())
    # The abandoned build ran to its end in its thread; its files are gone.
    assert not [name for name in os.listdir(tmp_path) if name.endswith(cleaner.CLEANED_SUFFIX)]
    assert log.compact().records_removed == 30
    assert latest(log) == {key: b"v" for key in keys(0, 30)}


def test_cleaner_checkpoint_file_is_beside_the_other_checkpoints(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    write(log, clock, keys(0, 10) + keys(0, 10))
    log.compact()
    with open(tmp_path / CLEANER_OFFSET_FILE) as handle:
        assert handle.read().split() == ["0", str(log.high_watermark), str(NO_DELETE_HORIZON)]


def test_offset_map_takes_whole_batches_while_their_new_keys_fit():
    entry_bytes = 4 + cleaner.OFFSET_MAP_ENTRY_OVERHEAD_BYTES
    offset_map = cleaner.OffsetMap(max_bytes=3 * entry_bytes)
    keys_ = pa.array([b"aaaa", b"bbbb", b"aaaa", b"cccc", b"dddd"], pa.binary())
    # Batches [aaaa bbbb] [aaaa] [cccc dddd]: the third would make four keys.
    assert offset_map.add(keys_, np.arange(5, dtype=np.int64), np.array([2, 3, 5])) == 3
    assert (len(offset_map), offset_map.size_bytes) == (2, 2 * entry_bytes)
    assert offset_map.latest_offsets(pa.array([b"aaaa", b"bbbb", b"cccc", None], pa.binary())).tolist() == [2, 1, -1, -1]


def test_offset_map_takes_one_batch_when_empty_even_past_its_bound():
    offset_map = cleaner.OffsetMap(max_bytes=1)
    assert offset_map.add(pa.array([b"a", b"b"], pa.binary()), np.arange(2, dtype=np.int64), np.array([1, 2])) == 1
    assert len(offset_map) == 1
    assert offset_map.add(pa.array([b"c"], pa.binary()), np.array([5], dtype=np.int64), np.array([1])) == 0
