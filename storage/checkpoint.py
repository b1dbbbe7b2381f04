"""Checkpoint files of a partition directory and the leader-epoch history.

Files (text, one value per line, version first, like Kafka's checkpoint files)::

    recovery-point-checkpoint     "0\\n<offset>\\n": everything below was fsynced and validated
    high-watermark-checkpoint     "0\\n<offset>\\n": the last high watermark the owner set
    log-start-offset-checkpoint   "0\\n<offset>\\n": records below were deleted on request
    leader-epoch-checkpoint       "0\\n<count>\\n<epoch> <start offset>\\n...": see LeaderEpochCache
    cleaner-offset-checkpoint     "0\\n<offset>\\n<delete horizon ms>\\n": the cleaner has cleaned every
                                  record below the offset (the first dirty offset, as Kafka's file
                                  of that name); the horizon is the earliest delete horizon of a
                                  tombstone it kept (-1: none), when a pass is due to drop it

Every write goes to a temporary file that is fsynced and renamed over the old one, then the
directory is fsynced, so a crash leaves either the old or the new checkpoint, never half.
A missing or unreadable checkpoint reads as ``None``; the log then falls back to the safe
choice (recover from the start, rebuild the epoch history from batch headers).
"""

from __future__ import annotations

import bisect
import os

CHECKPOINT_VERSION = 0
RECOVERY_POINT_FILE = "recovery-point-checkpoint"
HIGH_WATERMARK_FILE = "high-watermark-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
LEADER_EPOCH_FILE = "leader-epoch-checkpoint"
CLEANER_OFFSET_FILE = "cleaner-offset-checkpoint"
# Present only while the log is closed after a clean close (see Log.clean_shutdown).
CLEAN_SHUTDOWN_FILE = "clean-shutdown"
NO_DELETE_HORIZON = -1
UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


def fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(os.path.dirname(path) or ".")


def _read_lines(path: str) -> list[str] | None:
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not lines or lines[0].strip() != str(CHECKPOINT_VERSION):
        return None
    return lines[1:]


def read_offset(path: str) -> int | None:
    """The offset stored in a single-value checkpoint, or None if missing or unreadable."""
    lines = _read_lines(path)
    if lines is None or len(lines) != 1:
        return None
    try:
        value = int(lines[0])
    except ValueError:
        return None
    return value if value >= 0 else None


def write_offset(path: str, offset: int) -> None:
    write_atomically(path, f"{CHECKPOINT_VERSION}\n{offset}\n")


def read_cleaner_offset(path: str) -> tuple[int, int] | None:
    """(first dirty offset, earliest delete horizon ms or -1) from the cleaner checkpoint,
    or None if missing or unreadable (the cleaner then treats the whole log as dirty)."""
    lines = _read_lines(path)
    if lines is None or len(lines) != 2:
        return None
    try:
        offset, horizon_ms = int(lines[0]), int(lines[1])
    except ValueError:
        return None
    if offset < 0 or horizon_ms < NO_DELETE_HORIZON:
        return None
    return offset, horizon_ms


def write_cleaner_offset(path: str, offset: int, horizon_ms: int) -> None:
    write_atomically(path, f"{CHECKPOINT_VERSION}\n{offset}\n{horizon_ms}\n")


class LeaderEpochCache:
    """Which leader epoch began at which offset: the history KIP-101 truncation needs.

    Entries are (epoch, start offset) with both strictly increasing. ``end_offset_for``
    answers a follower's "where did epoch E end on the leader?"; the follower truncates
    there instead of to its own high watermark, which is how replicas avoid both losing
    acknowledged records and diverging after a leader change.
    """

    def __init__(self, path: str | None, entries: list[tuple[int, int]] | None = None) -> None:
        """``path`` None keeps the history in memory only (a copy of another replica's)."""
        self.path = path
        self._epochs: list[int] = []
        self._start_offsets: list[int] = []
        for epoch, start_offset in entries or []:
            self._epochs.append(epoch)
            self._start_offsets.append(start_offset)

    @classmethod
    def load(cls, path: str) -> "LeaderEpochCache | None":
        """Read the checkpoint, or None when it is missing or inconsistent."""
        lines = _read_lines(path)
        if lines is None or not lines:
            return None
        try:
            count = int(lines[0])
            entries = [tuple(int(part) for part in line.split()) for line in lines[1:]]
        except ValueError:
            return None
        if count != len(entries) or any(len(entry) != 2 for entry in entries):
            return None
        for (epoch_a, start_a), (epoch_b, start_b) in zip(entries, entries[1:]):
            if epoch_b <= epoch_a or start_b < start_a:
                return None
        return cls(path, entries)  # type: ignore[arg-type]

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._start_offsets))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def first_start_offset(self) -> int:
        """Where the oldest known epoch began (UNDEFINED_OFFSET when none is known)."""
        return self._start_offsets[0] if self._start_offsets else UNDEFINED_OFFSET

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` began at ``start_offset``; True if the history changed.
        An epoch at or below the latest one is already known and changes nothing."""
        if epoch <= self.latest_epoch:
            return False
        # A new epoch cannot start before an older one did; entries that would are stale
        # (left by a truncation the caller has not told us about).
        while self._start_offsets and self._start_offsets[-1] > start_offset:
            self._epochs.pop()
            self._start_offsets.pop()
        self._epochs.append(epoch)
        self._start_offsets.append(start_offset)
        self.save()
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(largest known epoch <= ``epoch``, the offset where it ended) or
        (UNDEFINED_EPOCH, UNDEFINED_OFFSET) when ``epoch`` predates the history."""
        if not self._epochs or epoch < self._epochs[0]:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if epoch >= self._epochs[-1]:
            return self._epochs[-1], log_end_offset
        index = bisect.bisect_right(self._epochs, epoch) - 1
        return self._epochs[index], self._start_offsets[index + 1]

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that started at or after ``end_offset`` (the log was truncated)."""
        keep = bisect.bisect_left(self._start_offsets, end_offset)
        if keep < len(self._epochs):
            del self._epochs[keep:], self._start_offsets[keep:]
            self.save()

    def truncate_from_start(self, start_offset: int) -> None:
        """Move the history's start to ``start_offset`` (records below were deleted)."""
        below = bisect.bisect_right(self._start_offsets, start_offset) - 1
        if below < 0 or (below == 0 and self._start_offsets[0] == start_offset):
            return
        del self._epochs[:below], self._start_offsets[:below]
        self._start_offsets[0] = start_offset
        self.save()

    def clear(self) -> None:
        self._epochs, self._start_offsets = [], []
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        lines = [str(CHECKPOINT_VERSION), str(len(self._epochs))]
        lines += [f"{epoch} {start}" for epoch, start in zip(self._epochs, self._start_offsets)]
        write_atomically(self.path, "\n".join(lines) + "\n")
