"""rafka.retry: the backoff schedule and the retry loop (sync and async), on a fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from rafka.errors import ActorUnavailableError, InvalidConfigError, NotLeaderError
from rafka.retry import Backoff, retry, retry_async


class FakeClock:
    """time.monotonic and time.sleep in one: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now_s = 100.0
        self.sleeps_s: list[float] = []

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, delay_s: float) -> None:
        self.sleeps_s.append(delay_s)
        self.now_s += delay_s

    async def sleep_async(self, delay_s: float) -> None:
        self.sleep(delay_s)


def failing(errors: list[BaseException], result: str = "done"):
    """A call that raises each of ``errors`` in turn, then returns ``result``."""
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    call.calls = calls
    return call


def test_delay_without_jitter_doubles_up_to_the_cap():
    backoff = Backoff(initial_s=0.1, max_s=1.0, jitter=0.0)
    assert [backoff.delay_s(attempt) for attempt in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_delay_with_jitter_stays_within_its_bounds():
    backoff = Backoff(initial_s=0.1, max_s=2.0, jitter=0.2)
    source = random.Random(7)
    for attempt in range(12):
        term_s = min(0.1 * 2 ** attempt, 2.0)
        for _ in range(200):
            delay_s = backoff.delay_s(attempt, source)
            assert term_s * 0.8 <= delay_s <= min(term_s * 1.2, 2.0)


def test_delay_with_jitter_varies():
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.2)
    source = random.Random(3)
    delays_s = {backoff.delay_s(2, source) for _ in range(50)}
    assert len(delays_s) > 40 and min(delays_s) < 4.0 < max(delays_s)


def test_delay_after_a_very_long_outage_is_the_cap():
    backoff = Backoff(initial_s=0.05, max_s=1.0, jitter=0.0)
    assert backoff.delay_s(10**6) == 1.0


def test_delay_of_a_zero_backoff_is_zero():
    assert Backoff(initial_s=0.0, max_s=0.0).delay_s(5) == 0.0


@pytest.mark.parametrize("arguments, bad", [
    ({"initial_s": -1.0, "max_s": 1.0}, "initial_s"),
    ({"initial_s": 2.0, "max_s": 1.0}, "max_s"),
    ({"initial_s": 1.0, "max_s": 2.0, "multiplier": 0.5}, "multiplier"),
    ({"initial_s": 1.0, "max_s": 2.0, "jitter": 1.0}, "jitter"),
])
def test_backoff_with_a_bad_value_names_it(arguments, bad):
    with pytest.raises(ValueError, match=bad):
        Backoff(**arguments)


def test_retry_returns_after_retriable_failures_sleeping_the_schedule():
    clock = FakeClock()
    call = failing([NotLeaderError("moved"), NotLeaderError("moved again")])
    assert retry(call, Backoff(0.1, 1.0, jitter=0.0), sleep=clock.sleep, clock=clock) == "done"
    assert len(call.calls) == 3
    assert clock.sleeps_s == pytest.approx([0.1, 0.2])


def test_retry_raises_a_non_retriable_error_at_once():
    clock = FakeClock()
    call = failing([InvalidConfigError("bad value 'x'")])
    with pytest.raises(InvalidConfigError, match="bad value"):
        retry(call, Backoff(0.1, 1.0), retriable=lambda error, failures: error.retriable, sleep=clock.sleep,
              clock=clock)
    assert len(call.calls) == 1 and clock.sleeps_s == []


def test_retry_never_sleeps_past_the_deadline():
    clock = FakeClock()
    call = failing([ActorUnavailableError(f"down {n}") for n in range(100)])
    with pytest.raises(ActorUnavailableError):
        retry(call, Backoff(0.1, 1.0, jitter=0.2), deadline_s=clock.now_s + 5.0, sleep=clock.sleep, clock=clock,
              random_source=random.Random(1))
    assert clock.now_s <= 100.0 + 5.0
    assert len(clock.sleeps_s) >= 5  # it did retry until the deadline was near


def test_retry_raises_the_last_error_when_the_deadline_passes():
    clock = FakeClock()
    call = failing([ActorUnavailableError("first"), ActorUnavailableError("last")])
    with pytest.raises(ActorUnavailableError, match="last"):
        retry(call, Backoff(1.0, 1.0, jitter=0.0), deadline_s=clock.now_s + 1.5, sleep=clock.sleep, clock=clock)


def test_retry_stops_after_max_attempts():
    clock = FakeClock()
    call = failing([RuntimeError(str(n)) for n in range(10)])
    with pytest.raises(RuntimeError, match="2"):
        retry(call, Backoff(0.1, 1.0), max_attempts=3, sleep=clock.sleep, clock=clock)
    assert len(call.calls) == 3


def test_retry_passes_the_failure_count_and_lets_retriable_raise_its_own_error():
    clock = FakeClock()
    seen = []

    def give_up_after_two(error, failures):
        seen.append(failures)
        if failures == 2:
            raise LookupError("given up") from error
        return True

    with pytest.raises(LookupError, match="given up"):
        retry(failing([RuntimeError("a"), RuntimeError("b"), RuntimeError("c")]), Backoff(0.1, 1.0),
              retriable=give_up_after_two, sleep=clock.sleep, clock=clock)
    assert seen == [1, 2]


def test_retry_lets_keyboard_interrupt_through():
    clock = FakeClock()
    with pytest.raises(KeyboardInterrupt):
        retry(failing([KeyboardInterrupt()]), Backoff(0.1, 1.0), sleep=clock.sleep, clock=clock)
    assert clock.sleeps_s == []


def test_retry_async_returns_after_retriable_failures():
    clock = FakeClock()

    async def main():
        call = failing([NotLeaderError("moved")], result="async done")

        async def attempt():
            return call()

        return await retry_async(attempt, Backoff(0.05, 1.0, jitter=0.0), sleep=clock.sleep_async, clock=clock), call

    result, call = asyncio.run(main())
    assert result == "async done" and len(call.calls) == 2 and clock.sleeps_s == pytest.approx([0.05])


def test_retry_async_raises_a_non_retriable_error_at_once():
    clock = FakeClock()

    async def attempt():
        raise InvalidConfigError("bad value 'y'")

    with pytest.raises(InvalidConfigError, match="bad value"):
        asyncio.run(retry_async(attempt, Backoff(0.05, 1.0), retriable=lambda error, failures: error.retriable,
                                sleep=clock.sleep_async, clock=clock))
    assert clock.sleeps_s == []


def test_retry_async_never_sleeps_past_the_deadline():
    clock = FakeClock()

    async def attempt():
        raise ActorUnavailableError("down")

    with pytest.raises(ActorUnavailableError):
        asyncio.run(retry_async(attempt, Backoff(0.05, 1.0), deadline_s=clock.now_s + 3.0, sleep=clock.sleep_async,
                                clock=clock))
    assert clock.now_s <= 103.0 and len(clock.sleeps_s) >= 3
