"""Clocks for the log: the wall clock in production, a manual one in tests.

Every time-based rule of the log (segment roll by ``segment.ms``, retention by
``retention.ms``, ``flush.ms``, the tombstone delete horizon, ``LogAppendTime``) reads
time only through a ``Clock``, so tests control time exactly instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""


class SystemClock:
    """The machine's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, now_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, duration_ms: int) -> None:
        if duration_ms < 0:
            raise ValueError(f"a clock does not go back: advance({duration_ms})")
        self._now_ms += duration_ms
