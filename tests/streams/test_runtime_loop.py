"""The stream worker loop's two plain parts, on a fake clock and without a Ray instance:
when a commit starts (``runtime._CommitSchedule``) and where the loop's time goes
(``runtime._LoopTimes``, which ``stats()`` reports and benchmarks/streams_bench.py
reads). The loop that drives them runs on real workers in test_streams_job.py."""

from __future__ import annotations

import pytest

from rafka.streams import runtime
from rafka.streams.runtime import COMMIT_DRAINED, COMMIT_INTERVAL, _CommitSchedule, _LoopTimes

INTERVAL_S = 30.0
SPACING_S = runtime.CAUGHT_UP_COMMIT_SPACING_S


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, now_s: float = 1_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class Lag:
    """The consumer's answer to "is every record taken?", counting how often it is asked."""

    def __init__(self, caught_up: bool) -> None:
        self.caught_up, self.asked = caught_up, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.caught_up


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def schedule(clock) -> _CommitSchedule:
    started = _CommitSchedule(INTERVAL_S, clock_s=clock)
    started.start()
    return started


def turn(schedule: _CommitSchedule, polled: bool, caught_up: bool = False) -> str | None:
    """One loop turn's commit decision: a poll (``polled``: it brought records), then
    the reason a commit starts, if any (started at once, as the loop does)."""
    reason = schedule.commit_due(schedule.after_poll(polled, Lag(caught_up)))
    if reason is not None:
        schedule.commit_started(reason, schedule.clock_s())
    return reason


# -- _CommitSchedule -------------------------------------------------------------------


def test_commit_due_is_none_for_empty_polls_before_the_interval(schedule, clock):
    clock.advance(INTERVAL_S - 1)
    assert turn(schedule, polled=False) is None


def test_commit_due_is_interval_once_the_interval_passed_since_start(schedule, clock):
    clock.advance(INTERVAL_S)
    assert turn(schedule, polled=False) == COMMIT_INTERVAL


def test_commit_due_waits_for_start_before_counting_the_interval(clock):
    schedule = _CommitSchedule(INTERVAL_S, clock_s=clock)
    clock.advance(10 * INTERVAL_S)  # e.g. the worker restoring its state before its loop
    schedule.start()
    assert schedule.commit_due(schedule.after_poll(False, Lag(False))) is None


def test_interval_counts_from_the_end_of_the_periodic_commits_first_step(schedule, clock):
    clock.advance(INTERVAL_S)
    reason = schedule.commit_due(schedule.after_poll(False, Lag(False)))
    began_s = clock()
    clock.advance(5)  # changelogs written, positions noted
    schedule.commit_started(reason, began_s)
    clock.advance(INTERVAL_S - 1)
    assert turn(schedule, polled=False) is None
    clock.advance(1)
    assert turn(schedule, polled=False) == COMMIT_INTERVAL


def test_commit_due_is_drained_for_an_empty_poll_after_records(schedule):
    assert turn(schedule, polled=True) is None
    assert turn(schedule, polled=False) == COMMIT_DRAINED


def test_commit_due_is_none_for_a_second_empty_poll_after_a_drained_commit(schedule):
    turn(schedule, polled=True)
    assert turn(schedule, polled=False) == COMMIT_DRAINED
    assert turn(schedule, polled=False) is None


def test_drained_commit_leaves_the_interval_where_it_was(schedule, clock):
    clock.advance(INTERVAL_S / 2)
    turn(schedule, polled=True)
    assert turn(schedule, polled=False) == COMMIT_DRAINED
    clock.advance(INTERVAL_S / 2)
    assert turn(schedule, polled=False) == COMMIT_INTERVAL


def test_commit_due_is_interval_when_the_input_is_drained_too(schedule, clock):
    turn(schedule, polled=True)
    clock.advance(INTERVAL_S)
    assert turn(schedule, polled=False) == COMMIT_INTERVAL  # the one that marks idle tasks


def test_interval_commit_clears_the_records_since_the_last_commit(schedule, clock):
    turn(schedule, polled=True)
    clock.advance(INTERVAL_S)
    assert turn(schedule, polled=True) == COMMIT_INTERVAL
    assert turn(schedule, polled=False) is None


def test_caught_up_poll_is_drained_and_committed_at_once(schedule):
    lag = Lag(caught_up=True)
    current = schedule.after_poll(True, lag)
    assert (current.drained, current.caught_up, lag.asked) == (True, True, 1)
    assert schedule.commit_due(current) == COMMIT_DRAINED


def test_poll_with_lag_left_is_not_drained(schedule):
    current = schedule.after_poll(True, Lag(caught_up=False))
    assert (current.drained, current.caught_up) == (False, False)
    assert schedule.commit_due(current) is None


def test_caught_up_is_not_asked_within_the_spacing_of_the_latest_commit(schedule, clock):
    assert turn(schedule, polled=True, caught_up=True) == COMMIT_DRAINED
    clock.advance(SPACING_S / 2)
    lag = Lag(caught_up=True)
    current = schedule.after_poll(True, lag)
    assert (current.drained, current.caught_up, lag.asked) == (False, False, 0)


def test_caught_up_is_asked_again_once_the_spacing_passed(schedule, clock):
    assert turn(schedule, polled=True, caught_up=True) == COMMIT_DRAINED
    clock.advance(SPACING_S)
    assert turn(schedule, polled=True, caught_up=True) == COMMIT_DRAINED


def test_caught_up_spacing_counts_from_when_the_commit_began(schedule, clock):
    began_s = clock()
    clock.advance(SPACING_S)  # the commit's first step took the whole spacing
    schedule.commit_started(COMMIT_DRAINED, began_s)
    assert turn(schedule, polled=True, caught_up=True) == COMMIT_DRAINED


def test_caught_up_is_not_asked_for_an_empty_poll(schedule):
    lag = Lag(caught_up=True)
    current = schedule.after_poll(False, lag)
    assert (current.drained, current.caught_up, lag.asked) == (False, False, 0)


# -- _LoopTimes ------------------------------------------------------------------------


@pytest.fixture
def cpu_clock() -> FakeClock:
    return FakeClock(now_s=50.0)


@pytest.fixture
def times(clock, cpu_clock) -> _LoopTimes:
    return _LoopTimes(wall_clock_s=clock, cpu_clock_s=cpu_clock)


def loop_turn(times: _LoopTimes, clock: FakeClock, cpu_clock: FakeClock, spent: dict[str, tuple[float, float]],
              brought_records: bool = True) -> None:
    """A turn that spends ``spent[phase]`` = (wall s, CPU s) in each phase."""
    times.start_turn()
    for phase in _LoopTimes.PHASES:
        wall_s, cpu_s = spent[phase]
        clock.advance(wall_s)
        cpu_clock.advance(cpu_s)
        if phase == "poll":
            times.end_poll(brought_records=brought_records)
        else:
            times.end_phase(phase)


def test_loop_times_start_at_zero_for_each_phase_stats_reports(times):
    assert (times.wall_s, times.cpu_s, times.polls_with_records) == (
        {"poll": 0.0, "process": 0.0, "commit": 0.0}, {"poll": 0.0, "process": 0.0, "commit": 0.0}, 0)


def test_end_phase_charges_wall_and_cpu_time_to_each_phase(times, clock, cpu_clock):
    loop_turn(times, clock, cpu_clock, {"poll": (0.5, 0.25), "process": (2.0, 1.5), "commit": (0.125, 0.0)})
    assert times.wall_s == {"poll": 0.5, "process": 2.0, "commit": 0.125}
    assert times.cpu_s == {"poll": 0.25, "process": 1.5, "commit": 0.0}


def test_loop_times_sum_over_turns(times, clock, cpu_clock):
    spent = {"poll": (1.0, 0.5), "process": (2.0, 1.0), "commit": (4.0, 2.0)}
    for _ in range(3):
        loop_turn(times, clock, cpu_clock, spent)
    assert times.wall_s == {"poll": 3.0, "process": 6.0, "commit": 12.0}
    assert times.cpu_s == {"poll": 1.5, "process": 3.0, "commit": 6.0}


def test_time_between_turns_is_charged_to_no_phase(times, clock, cpu_clock):
    spent = {"poll": (1.0, 1.0), "process": (1.0, 1.0), "commit": (1.0, 1.0)}
    loop_turn(times, clock, cpu_clock, spent)
    clock.advance(100.0)  # a failed poll and its backoff: the loop starts a new turn
    cpu_clock.advance(100.0)
    loop_turn(times, clock, cpu_clock, spent)
    assert times.wall_s == times.cpu_s == {"poll": 2.0, "process": 2.0, "commit": 2.0}


def test_polls_with_records_counts_only_polls_that_brought_records(times, clock, cpu_clock):
    spent = {phase: (0.0, 0.0) for phase in _LoopTimes.PHASES}
    for brought in (True, False, True, False, False):
        loop_turn(times, clock, cpu_clock, spent, brought_records=brought)
    assert times.polls_with_records == 2
