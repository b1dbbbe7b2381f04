"""Windows on event time, and the vectorized assignment of records to windows.

All times are epoch milliseconds of the record's timestamp (or of a user extractor);
wall-clock time never matters. A window is [start, end): it holds records with
``start <= timestamp < end``.

* ``TimeWindows.tumbling(size_ms)``: fixed, non-overlapping windows aligned to epoch 0.
* ``TimeWindows.hopping(size_ms, advance_ms)``: fixed windows every ``advance_ms``
  (a record falls in ``size_ms / advance_ms`` of them), aligned to epoch 0.
* ``SlidingWindows(size_ms)``: Kafka's sliding windows: a window [t - size, t] ends at
  every record (inclusive at both ends, as Kafka's), so an aggregate covers exactly
  the records within ``size_ms`` of each other. Evaluated per key in Python (slow path).
* ``SessionWindows(gap_ms)``: per key, records closer than ``gap_ms`` form one session
  [first, last]; a record that bridges two sessions merges them (slow path).

Every kind takes ``grace_ms``. Per input partition, *stream time* is the largest
timestamp seen so far; a window is closed once ``end + grace_ms <= stream time`` and a
record that would land only in closed windows is late: it is dropped and counted. The
watermark advances only with event time, so a replay or a backlog never makes a valid
record late. Behind a repartition topic, stream time is the upstream tasks' watermark
(the slowest busy one's; idle ones do not hold it back): see ``task.Task``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TimeWindows:
    size_ms: int
    advance_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("size_ms", "advance_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int (ms), got {value!r}")
        if self.advance_ms > self.size_ms:
            raise ValueError(f"advance_ms ({self.advance_ms}) must not exceed size_ms ({self.size_ms})")
        _check_grace(self.grace_ms)

    @classmethod
    def tumbling(cls, size_ms: int, grace_ms: int = 0) -> "TimeWindows":
        return cls(size_ms, size_ms, grace_ms)

    @classmethod
    def hopping(cls, size_ms: int, advance_ms: int, grace_ms: int = 0) -> "TimeWindows":
        return cls(size_ms, advance_ms, grace_ms)

    def assign(self, timestamps: np.ndarray, stream_time_ms: int,
               advance: bool = True) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Windows of each record, processing ``timestamps`` in order after a partition
        whose stream time was ``stream_time_ms`` (with ``advance`` False the records
        do not move stream time: it comes from elsewhere, a watermark).

        Returns (row index, window start) pairs for every (record, open window), the
        number of late records (all their windows closed), and the new stream time."""
        count = len(timestamps)
        if count == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64), 0, stream_time_ms
        # Stream time when each record is processed: the max of what came before and it.
        if advance:
            stream_times = np.maximum.accumulate(np.maximum(timestamps, stream_time_ms))
        else:
            stream_times = np.full(count, stream_time_ms, dtype=np.int64)
        per_record = self.size_ms // self.advance_ms + (1 if self.size_ms % self.advance_ms else 0)
        last_start = timestamps - np.mod(timestamps, self.advance_ms)
        if per_record == 1:
            # Tumbling: one window per record, so a record is late exactly when its
            # window is closed (no repeat, tile or distinct count needed).
            keep = last_start + self.size_ms + self.grace_ms > stream_times
            kept_rows = np.flatnonzero(keep)
            return (kept_rows, last_start[keep], count - len(kept_rows),
                    int(stream_times[-1]) if advance else stream_time_ms)
        rows = np.repeat(np.arange(count), per_record)
        starts = np.repeat(last_start, per_record) - np.tile(np.arange(per_record) * self.advance_ms, count)
        inside = starts + self.size_ms > np.repeat(timestamps, per_record)  # hopping: not every candidate holds it
        open_ = starts + self.size_ms + self.grace_ms > np.repeat(stream_times, per_record)
        keep = inside & open_
        kept_rows = rows[keep]
        # kept_rows is ascending (a filtered repeat of arange): count its distinct values
        # by the steps between neighbours instead of hashing them.
        late = count - (1 + int(np.count_nonzero(np.diff(kept_rows)))) if len(kept_rows) else count
        return kept_rows, starts[keep], late, int(stream_times[-1]) if advance else stream_time_ms

    def end_of(self, start_ms: int) -> int:
        return start_ms + self.size_ms

    def closed(self, start_ms: int, stream_time_ms: int) -> bool:
        return start_ms + self.size_ms + self.grace_ms <= stream_time_ms


@dataclasses.dataclass(frozen=True)
class SlidingWindows:
    size_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.size_ms, bool) or not isinstance(self.size_ms, int) or self.size_ms <= 0:
            raise ValueError(f"size_ms must be a positive int (ms), got {self.size_ms!r}")
        _check_grace(self.grace_ms)

    def end_of(self, start_ms: int) -> int:
        return start_ms + self.size_ms

    def closed(self, start_ms: int, stream_time_ms: int) -> bool:
        return start_ms + self.size_ms + self.grace_ms < stream_time_ms


@dataclasses.dataclass(frozen=True)
class SessionWindows:
    gap_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.gap_ms, bool) or not isinstance(self.gap_ms, int) or self.gap_ms <= 0:
            raise ValueError(f"gap_ms must be a positive int (ms), got {self.gap_ms!r}")
        _check_grace(self.grace_ms)

    def closed(self, end_ms: int, stream_time_ms: int) -> bool:
        """A session [start, end] can no longer grow once ``end + gap + grace`` is past."""
        return end_ms + self.gap_ms + self.grace_ms <= stream_time_ms


def _check_grace(grace_ms: object) -> None:
    if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or grace_ms < 0:
        raise ValueError(f"grace_ms must be a non-negative int (ms), got {grace_ms!r}")
