"""The leader's idempotent-producer state as a plain class (no Ray): sequence order,
retries, wrap-around at 2^31, epoch bumps, expiry of idle producers, and rebuilding the
state from a reopened log through producer-state snapshots."""

from __future__ import annotations

import asyncio

import pytest

from rafka.actors.producer_state import SEQUENCE_MODULUS, ProducerStates, add_sequence
from rafka.errors import DuplicateSequenceError, InvalidProducerEpochError, OutOfOrderSequenceError
from rafka.storage import Log, LogConfig, ManualClock, make_batch, producer_snapshot

ONE_DAY_MS = 24 * 3600 * 1000
WAIT_S = 0.2


def turn(states: ProducerStates, producer_id: int, epoch: int, sequence: int):
    return asyncio.run(states.wait_for_turn(producer_id, epoch, sequence))


def append(log: Log, states: ProducerStates | None, producer_id: int, epoch: int, sequence: int, count: int,
           value_bytes: int = 10) -> int:
    """Append ``count`` records as the leader would for this producer; return the base offset."""
    batch = make_batch([b"x" * value_bytes] * count, timestamps_ms=log.clock.now_ms())
    info = log.append(batch, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)
    if states is not None:
        states.record(producer_id, epoch, sequence, count, info.first_offset, -1)
    return info.first_offset


def test_sequence_wraps_to_zero_after_the_largest_int32():
    assert SEQUENCE_MODULUS == 2**31
    assert add_sequence(2**31 - 3, 3) == 0
    assert add_sequence(2**31 - 1, 5) == 4
    assert add_sequence(7, 5) == 12


def test_wait_for_turn_accepts_the_wrapped_sequence_after_the_limit():
    states = ProducerStates("t-0", WAIT_S)
    states.record(1, 0, 2**31 - 5, 5, 100, -1)  # the batch ends on sequence 2^31 - 1
    assert turn(states, 1, 0, 0) is None  # the next batch starts again at 0
    states.record(1, 0, 0, 3, 105, -1)
    assert turn(states, 1, 0, 3) is None


def test_wait_for_turn_answers_a_retry_across_the_wrap_from_memory():
    states = ProducerStates("t-0", WAIT_S)
    states.record(1, 0, 2**31 - 2, 4, 100, -1)  # sequences 2^31-2, 2^31-1, 0, 1
    states.record(1, 0, 2, 2, 104, -1)
    assert turn(states, 1, 0, 2**31 - 2) == (100, -1)
    assert turn(states, 1, 0, 2) == (104, -1)


def test_wait_for_turn_refuses_a_gap_that_never_fills():
    states = ProducerStates("t-0", WAIT_S)
    states.record(1, 0, 0, 5, 0, -1)
    with pytest.raises(OutOfOrderSequenceError, match="expects 5"):
        turn(states, 1, 0, 9)


def test_wait_for_turn_calls_a_retry_older_than_memory_a_duplicate():
    states = ProducerStates("t-0", WAIT_S)
    for index in range(8):
        states.record(1, 0, index, 1, index, -1)
    with pytest.raises(DuplicateSequenceError, match="sequence 0"):
        turn(states, 1, 0, 0)


def test_wait_for_turn_accepts_a_new_epoch_at_sequence_zero_after_a_gap():
    states = ProducerStates("t-0", WAIT_S)
    states.record(1, 0, 0, 5, 0, -1)  # sequences 5.. were lost with an expired batch
    assert turn(states, 1, 1, 0) is None
    states.record(1, 1, 0, 2, 5, -1)
    with pytest.raises(InvalidProducerEpochError, match="epoch 0 is older than 1"):
        turn(states, 1, 0, 5)


def test_expire_forgets_producers_idle_longer_than_the_expiration():
    clock = ManualClock()
    states = ProducerStates("t-0", WAIT_S, producer_id_expiration_ms=ONE_DAY_MS, clock=clock)
    states.record(1, 0, 0, 1, 0, -1)
    clock.advance(ONE_DAY_MS - 1000)
    states.record(2, 0, 0, 1, 1, -1)
    clock.advance(2000)  # producer 1 is now idle for a day and a second, producer 2 for 2 s
    assert states.expire() == 1
    assert states.producer_ids() == [2]


def test_record_sweeps_idle_producers_without_an_explicit_expire():
    clock = ManualClock()
    states = ProducerStates("t-0", WAIT_S, producer_id_expiration_ms=60_000, clock=clock)
    for producer_id in range(100):
        states.record(producer_id, 0, 0, 1, producer_id, -1)
    clock.advance(61_000)
    states.record(1000, 0, 0, 1, 100, -1)
    assert states.producer_ids() == [1000]


def test_rebuild_after_reopen_recognises_a_retry_older_than_the_newest_segments(tmp_path):
    # Producer 1 writes once; producer 2 then fills several segments. After the log is
    # reopened (a restart, or another replica becoming leader), producer 1's retry of its
    # last batch must still be recognised as a duplicate, not appended again.
    clock = ManualClock()
    config = LogConfig.from_dict({"segment.bytes": "2048"})
    log = Log(str(tmp_path / "log"), config, clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock)
    append(log, states, 1, 0, 0, 3)
    first_retry_offset = append(log, states, 1, 0, 3, 3)
    for index in range(60):
        append(log, states, 2, 0, index * 2, 2, value_bytes=200)
        states.maintain_snapshots(log)  # what the replica does after its appends
    assert log.segment_count > 4
    log.close()

    reopened = Log(str(tmp_path / "log"), config, clock)
    rebuilt = ProducerStates("t-0", WAIT_S, clock=clock)
    rebuilt.rebuild(reopened)
    assert turn(rebuilt, 1, 0, 3) == (first_retry_offset, -1)
    assert turn(rebuilt, 1, 0, 6) is None  # and its next batch is the next in order
    assert turn(rebuilt, 2, 0, 120) is None


def test_snapshot_keeps_a_producer_whose_segments_retention_deleted(tmp_path):
    clock = ManualClock()
    config = LogConfig.from_dict({"segment.bytes": "2048", "retention.ms": "3600000"})
    log = Log(str(tmp_path / "log"), config, clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock)
    retried = append(log, states, 1, 0, 0, 3)
    log.roll()
    clock.advance(2 * 3600 * 1000)
    for index in range(30):
        append(log, states, 2, 0, index, 1, value_bytes=300)
        states.maintain_snapshots(log)
    log.set_high_watermark(log.log_end_offset)
    assert log.enforce_retention().segments_deleted >= 1
    assert log.log_start_offset > retried
    rebuilt = ProducerStates("t-0", WAIT_S, clock=clock)
    rebuilt.rebuild(log)
    assert turn(rebuilt, 1, 0, 0) == (retried, -1)


def test_maintain_snapshots_writes_one_snapshot_per_roll_and_keeps_the_newest_two(tmp_path):
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig.from_dict({"segment.bytes": "2048"}), clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock)
    for index in range(40):
        append(log, states, 2, 0, index, 1, value_bytes=300)
        states.maintain_snapshots(log)
    offsets = [offset for offset, _path in producer_snapshot.list_snapshots(log.directory)]
    assert offsets == log.segment_base_offsets[-2:]


def test_rebuild_ignores_a_snapshot_past_a_truncation(tmp_path):
    # A follower truncated below a snapshot and took different batches from its new
    # leader: the snapshot describes records that are gone and must not be used.
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig.from_dict({"segment.bytes": "2048"}), clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock)
    for index in range(12):
        append(log, states, 1, 0, index, 1, value_bytes=300)
        states.maintain_snapshots(log)
    snapshot_offset = producer_snapshot.list_snapshots(log.directory)[-1][0]
    log.truncate_to(2)
    for index in range(12):  # producer 3's records, written under a newer leader epoch
        log.append(make_batch([b"y" * 300]), leader_epoch=5, producer_id=3, producer_epoch=0, base_sequence=index)
    assert log.log_end_offset > snapshot_offset
    rebuilt = ProducerStates("t-0", WAIT_S, clock=clock)
    rebuilt.rebuild(log)
    assert rebuilt.producer_ids() == [1, 3]
    assert turn(rebuilt, 1, 0, 2) is None  # producer 1 holds sequences 0 and 1 only


def test_a_corrupt_snapshot_is_ignored_and_the_log_replayed(tmp_path):
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig.from_dict({"segment.bytes": "2048"}), clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock)
    for index in range(12):
        append(log, states, 1, 0, index, 1, value_bytes=300)
        states.maintain_snapshots(log)
    for _offset, path in producer_snapshot.list_snapshots(log.directory):
        with open(path, "r+b") as handle:
            handle.write(b"garbage")
    rebuilt = ProducerStates("t-0", WAIT_S, clock=clock)
    rebuilt.rebuild(log)
    assert turn(rebuilt, 1, 0, 11) == (11, -1)


def test_rebuild_drops_producers_whose_snapshot_says_they_are_idle_too_long(tmp_path):
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig.from_dict({"segment.bytes": "2048"}), clock)
    states = ProducerStates("t-0", WAIT_S, producer_id_expiration_ms=ONE_DAY_MS, clock=clock)
    append(log, states, 1, 0, 0, 1)
    for index in range(12):
        append(log, states, 2, 0, index, 1, value_bytes=300)
    log.roll()
    states.maintain_snapshots(log)  # both producers in the snapshot, last seen now
    clock.advance(ONE_DAY_MS + 1)
    append(log, states, 3, 0, 0, 1)  # after the snapshot: seen again by the replay
    rebuilt = ProducerStates("t-0", WAIT_S, producer_id_expiration_ms=ONE_DAY_MS, clock=clock)
    rebuilt.rebuild(log)
    assert rebuilt.producer_ids() == [3]


def test_maintain_snapshots_spreads_a_long_replay_over_steps(tmp_path):
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig(), clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock, replay_headers_per_step=5)
    for index in range(12):
        append(log, states, 1, 0, index, 1)
    log.roll()
    states.maintain_snapshots(log)
    states.maintain_snapshots(log)
    assert producer_snapshot.list_snapshots(log.directory) == []  # 10 of 12 headers replayed
    states.maintain_snapshots(log)
    [(offset, path)] = producer_snapshot.list_snapshots(log.directory)
    assert offset == 12
    assert producer_snapshot.read_snapshot(path).producers[0][:3] == [1, 0, 12]


def test_a_replay_in_progress_starts_over_after_a_truncation_below_it(tmp_path):
    clock = ManualClock()
    log = Log(str(tmp_path / "log"), LogConfig(), clock)
    states = ProducerStates("t-0", WAIT_S, clock=clock, replay_headers_per_step=5)
    for index in range(12):
        append(log, states, 1, 0, index, 1)
    log.roll()
    states.maintain_snapshots(log)  # 5 headers of producer 1 replayed, then the truncation
    log.truncate_to(2)
    for index in range(12):
        log.append(make_batch([b"y"]), leader_epoch=5, producer_id=3, producer_epoch=0, base_sequence=index)
    log.roll()
    for _step in range(4):
        states.maintain_snapshots(log)
    [(offset, path)] = producer_snapshot.list_snapshots(log.directory)
    assert offset == 14
    assert [entry[:3] for entry in producer_snapshot.read_snapshot(path).producers] == [[1, 0, 2], [3, 0, 12]]
