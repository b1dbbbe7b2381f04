"""Retrying with exponential backoff and jitter: one schedule and one loop, sync and async.

``Backoff`` is the schedule, as Kafka's ``ExponentialBackoff``: the delay before retry
``attempt`` (0 for the first retry) is ``initial_s * multiplier ** attempt``, multiplied
by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]``, then capped at ``max_s``.
So every delay lies in ``[initial_s * (1 - jitter), max_s]``. Jitter spreads the retries
of many callers that failed together (a leader moved, an actor restarted) so they do not
return in lockstep; ``jitter=0`` gives the exact doubling schedule.

``retry`` / ``retry_async`` call a function until it returns, sleeping the schedule's
delay after each failure that ``retriable(error, failures)`` accepts (``failures`` counts
the failed calls, this one included: 1 after the first). They stop and raise the last
error:
  * at once, for an error ``retriable`` refuses (or one that is not an ``Exception``:
    ``KeyboardInterrupt`` and cancellation always pass through);
  * when the next sleep would end after ``deadline_s`` (a ``time.monotonic()`` value), so
    a call never sleeps past its caller's deadline (an attempt that starts before the
    deadline may still run past it: the deadline bounds the retrying, not the call);
  * after ``max_attempts`` calls, when given.
``retriable`` may also raise an error of its own, which replaces the failure (a caller's
way to give up with a different error); it is called inside the ``except`` block, so
``traceback.format_exc()`` there describes the failure.

Pure Python: no Ray, no I/O besides sleeping. The clock, the sleep and the random source
are parameters, so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")
Retriable = Callable[[BaseException, int], bool]


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter (see the module docstring)."""

    initial_s: float
    max_s: float
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.initial_s >= 0:
            raise ValueError(f"Backoff.initial_s must be >= 0, got {self.initial_s!r}")
        if not self.max_s >= self.initial_s:
            raise ValueError(f"Backoff.max_s must be >= initial_s ({self.initial_s!r}), got {self.max_s!r}")
        if not self.multiplier >= 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1), got {self.jitter!r}")

    def delay_s(self, attempt: int, random_source: random.Random | None = None) -> float:
        """The delay before retry ``attempt`` (0-based), jittered and capped at ``max_s``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        if self.initial_s == 0:
            return 0.0  # no backoff asked for (a pool's retry_backoff_ms=0)
        # The exponent stops where the term reaches max_s (Kafka's expMax): a long outage
        # neither overflows the float nor loses the jitter below the cap.
        exponent_max = math.log(self.max_s / self.initial_s, self.multiplier) if self.multiplier > 1 else 0.0
        term_s = self.initial_s * self.multiplier ** min(attempt, exponent_max)
        if self.jitter:
            term_s *= (random_source or random).uniform(1 - self.jitter, 1 + self.jitter)
        return min(term_s, self.max_s)


def _always(error: BaseException, failures: int) -> bool:
    return True


def retry(call: Callable[[], T], backoff: Backoff, *, retriable: Retriable = _always,
          deadline_s: float | None = None, max_attempts: int | None = None,
          sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
          random_source: random.Random | None = None) -> T:
    """``call()`` until it returns; see the module docstring for when it gives up."""
    attempt = 0
    while True:
        try:
            return call()
        except Exception as error:
            delay_s = _next_delay_s(error, attempt, backoff, retriable, deadline_s, max_attempts, clock,
                                    random_source)
            if delay_s is None:
                raise
        sleep(delay_s)
        attempt += 1


async def retry_async(call: Callable[[], Awaitable[T]], backoff: Backoff, *, retriable: Retriable = _always,
                      deadline_s: float | None = None, max_attempts: int | None = None,
                      sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                      clock: Callable[[], float] = time.monotonic, random_source: random.Random | None = None) -> T:
    """``await call()`` until it returns; the async twin of ``retry``."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as error:
            delay_s = _next_delay_s(error, attempt, backoff, retriable, deadline_s, max_attempts, clock,
                                    random_source)
            if delay_s is None:
                raise
        await sleep(delay_s)
        attempt += 1


def _next_delay_s(error: BaseException, attempt: int, backoff: Backoff, retriable: Retriable,
                  deadline_s: float | None, max_attempts: int | None, clock: Callable[[], float],
                  random_source: random.Random | None) -> float | None:
    """How long to sleep before the next attempt, or None to raise ``error``."""
    if max_attempts is not None and attempt + 1 >= max_attempts:
        return None
    if not retriable(error, attempt + 1):
        return None
    delay_s = backoff.delay_s(attempt, random_source)
    if deadline_s is not None and clock() + delay_s > deadline_s:
        return None
    return delay_s
