"""Sparse indexes of a segment: offset → file position, and timestamp → offset.

Files (next to ``<base>.log``)::

    <base>.index       entries of (relative offset uint32, position uint32), little-endian
    <base>.timeindex   entries of (timestamp int64, relative offset uint32), little-endian

Relative offsets are ``offset - base_offset`` of the segment. An entry is added for a batch
when at least ``index.interval.bytes`` were appended since the previous entry, and both
indexes get their entry at the same batch. A time index entry (T, o) means: every record in
the batches before offset o has a timestamp <= T (T is the segment's running maximum), so
a search for the first record with timestamp >= ts may start at the last entry whose
T < ts.

Indexes only make lookups fast; the segment is the truth. ``load`` raises
``CorruptIndexError`` on any inconsistency and the owner rebuilds the index from the
segment. Not thread-safe: the owning log serializes calls.
"""

from __future__ import annotations

import array
import bisect
import os
import struct

from rafka.errors import CorruptIndexError

OFFSET_ENTRY = struct.Struct("<II")
TIME_ENTRY = struct.Struct("<qI")


class _IndexFile:
    """Append-only file of fixed-size entries, mirrored in memory."""

    entry: struct.Struct

    def __init__(self, path: str, base_offset: int, max_bytes: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_bytes // self.entry.size)
        self._fd = -1

    def _open_for_append(self) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _write(self, data: bytes) -> None:
        self._open_for_append()
        os.write(self._fd, data)

    def _rewrite(self, data: bytes) -> None:
        self.close()
        temporary = self.path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, self.path)

    def _read_file(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise CorruptIndexError(f"index {self.path} is missing") from None
        if len(data) % self.entry.size:
            raise CorruptIndexError(f"index {self.path} has {len(data)} bytes, not a multiple of {self.entry.size}")
        return data

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def flush(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


class OffsetIndex(_IndexFile):
    entry = OFFSET_ENTRY

    def __init__(self, path: str, base_offset: int, max_bytes: int) -> None:
        super().__init__(path, base_offset, max_bytes)
        self._relative_offsets = array.array("I")
        self._positions = array.array("I")

    def __len__(self) -> int:
        return len(self._positions)

    def load(self, segment_bytes: int) -> None:
        """Read the file; raise ``CorruptIndexError`` unless entries increase strictly and
        every position lies inside a segment of ``segment_bytes``."""
        data = self._read_file()
        relative_offsets, positions = array.array("I"), array.array("I")
        for relative_offset, position in OFFSET_ENTRY.iter_unpack(data):
            if positions and (relative_offset <= relative_offsets[-1] or position <= positions[-1]):
                raise CorruptIndexError(f"index {self.path} entries do not increase at relative offset {relative_offset}")
            if position >= segment_bytes:
                raise CorruptIndexError(
                    f"index {self.path} points at position {position} past the segment's {segment_bytes} bytes")
            relative_offsets.append(relative_offset)
            positions.append(position)
        self._relative_offsets, self._positions = relative_offsets, positions

    def append(self, offset: int, position: int) -> None:
        relative_offset = offset - self.base_offset
        assert not self._positions or (relative_offset > self._relative_offsets[-1] and position > self._positions[-1])
        self._relative_offsets.append(relative_offset)
        self._positions.append(position)
        self._write(OFFSET_ENTRY.pack(relative_offset, position))

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch starting at or before ``offset`` (0 if none)."""
        index = bisect.bisect_right(self._relative_offsets, offset - self.base_offset) - 1
        return self._positions[index] if index >= 0 else 0

    def last_entry(self) -> tuple[int, int] | None:
        if not self._positions:
            return None
        return self.base_offset + self._relative_offsets[-1], self._positions[-1]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries at or after ``position`` (a truncation of the segment)."""
        keep = bisect.bisect_left(self._positions, position)
        if keep == len(self._positions):
            return
        del self._relative_offsets[keep:], self._positions[keep:]
        self._rewrite(b"".join(OFFSET_ENTRY.pack(o, p) for o, p in zip(self._relative_offsets, self._positions)))

    def reset(self) -> None:
        self._relative_offsets, self._positions = array.array("I"), array.array("I")
        self._rewrite(b"")


class TimeIndex(_IndexFile):
    entry = TIME_ENTRY

    def __init__(self, path: str, base_offset: int, max_bytes: int) -> None:
        super().__init__(path, base_offset, max_bytes)
        self._timestamps = array.array("q")
        self._relative_offsets = array.array("I")

    def __len__(self) -> int:
        return len(self._timestamps)

    def load(self, segment_bytes: int) -> None:
        """Read the file; raise ``CorruptIndexError`` unless timestamps and offsets never
        decrease."""
        del segment_bytes  # a time index holds no positions
        data = self._read_file()
        timestamps, relative_offsets = array.array("q"), array.array("I")
        for timestamp, relative_offset in TIME_ENTRY.iter_unpack(data):
            if timestamps and (timestamp < timestamps[-1] or relative_offset <= relative_offsets[-1]):
                raise CorruptIndexError(f"time index {self.path} entries go backwards at timestamp {timestamp}")
            timestamps.append(timestamp)
            relative_offsets.append(relative_offset)
        self._timestamps, self._relative_offsets = timestamps, relative_offsets

    def append(self, max_timestamp_before_ms: int, offset: int) -> None:
        relative_offset = offset - self.base_offset
        assert not self._timestamps or relative_offset > self._relative_offsets[-1]
        timestamp = max(max_timestamp_before_ms, self._timestamps[-1] if self._timestamps else max_timestamp_before_ms)
        self._timestamps.append(timestamp)
        self._relative_offsets.append(relative_offset)
        self._write(TIME_ENTRY.pack(timestamp, relative_offset))

    def lookup(self, timestamp_ms: int) -> int:
        """An offset before which no record has a timestamp >= ``timestamp_ms``."""
        index = bisect.bisect_left(self._timestamps, timestamp_ms) - 1
        return self.base_offset + self._relative_offsets[index] if index >= 0 else self.base_offset

    def last_entry(self) -> tuple[int, int] | None:
        if not self._timestamps:
            return None
        return self._timestamps[-1], self.base_offset + self._relative_offsets[-1]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries at or after ``offset``."""
        keep = bisect.bisect_left(self._relative_offsets, offset - self.base_offset)
        if keep == len(self._timestamps):
            return
        del self._timestamps[keep:], self._relative_offsets[keep:]
        self._rewrite(b"".join(TIME_ENTRY.pack(t, o) for t, o in zip(self._timestamps, self._relative_offsets)))

    def reset(self) -> None:
        self._timestamps, self._relative_offsets = array.array("q"), array.array("I")
        self._rewrite(b"")
