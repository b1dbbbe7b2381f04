"""One segment of a partition log: a file of framed batches plus its two indexes.

Layout in the partition directory, named by the segment's base offset (20 digits)::

    00000000000000000000.log        frames (see batch.py), in offset order
    00000000000000000000.index      sparse offset index  (see index.py)
    00000000000000000000.timeindex  sparse time index    (see index.py)

The base offset is the smallest offset the segment may hold; batches in it have strictly
increasing offsets, the first at or above the base. Only the log's last (active) segment
takes appends. Reads map the file into memory and hand out zero-copy Arrow buffers.

A mapping must never see its file shrink underneath it (the reader would fault), so a
truncation of a segment that may be mapped writes the kept prefix to a new file and
renames it over the old one: existing mappings keep the old inode. Recovery at open, when
nothing is mapped yet, truncates in place.

Not thread-safe: the owning ``Log`` serializes every call.
"""

from __future__ import annotations

import mmap
import os
from typing import Iterator

import numpy as np
import pyarrow as pa

from rafka.errors import CorruptIndexError, CorruptRecordError
from rafka.storage.batch import FRAME_HEADER_BYTES, BatchHeader, check_frame, decode_body
from rafka.storage.index import OffsetIndex, TimeIndex

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
NO_TIMESTAMP = -1
# Indexes store offsets relative to the segment's base in 32 bits.
MAX_RELATIVE_OFFSET = 2**32 - 1


def segment_file_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class Segment:
    def __init__(self, directory: str, base_offset: int, index_interval_bytes: int,
                 index_max_bytes: int, created_ms: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        stem = os.path.join(directory, segment_file_name(base_offset))
        self.log_path = stem + LOG_SUFFIX
        self.offset_index = OffsetIndex(stem + INDEX_SUFFIX, base_offset, index_max_bytes)
        self.time_index = TimeIndex(stem + TIME_INDEX_SUFFIX, base_offset, index_max_bytes)
        self._fd = os.open(self.log_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.size_bytes = os.fstat(self._fd).st_size
        if self.size_bytes == 0:
            # A new segment starts with empty indexes (a missing one means "rebuild").
            for path in (self.offset_index.path, self.time_index.path):
                if not os.path.exists(path):
                    open(path, "ab").close()
        self.next_offset = base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self.created_ms = created_ms
        self.unflushed = False
        self._bytes_since_index_entry = 0
        self._map: pa.Buffer | None = None

    # -- reading ---------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return self.size_bytes == 0

    def buffer(self) -> pa.Buffer:
        """A zero-copy view of the whole segment as it is now."""
        if self._map is None or self._map.size < self.size_bytes:
            if self.size_bytes == 0:
                return pa.py_buffer(b"")
            # A fresh mapping of the grown file; older mappings live on in buffers that
            # readers still hold.
            self._map = pa.py_buffer(mmap.mmap(self._fd, self.size_bytes, access=mmap.ACCESS_READ))
        return self._map

    def headers(self, position: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each frame from ``position``; checks framing, not CRCs."""
        end = self.size_bytes if end is None else end
        buffer = self.buffer()
        expected_offset = self.base_offset
        while position < end:
            header, reason = check_frame(buffer, position, end, verify_crc=False)
            if header is not None and header.base_offset < expected_offset:
                header, reason = None, f"batch offset {header.base_offset} is below {expected_offset}"
            elif header is not None and header.last_offset - self.base_offset > MAX_RELATIVE_OFFSET:
                header, reason = None, f"batch offset {header.last_offset} is beyond what a segment at {self.base_offset} holds"
            if header is None:
                raise CorruptRecordError(f"segment {self.log_path} at position {position}: {reason}")
            expected_offset = header.next_offset
            yield position, header
            position += header.frame_bytes

    def position_for(self, offset: int) -> int:
        """Position of the first batch whose last offset is >= ``offset`` (or the size)."""
        for position, header in self.headers(self.offset_index.lookup(offset)):
            if header.last_offset >= offset:
                return position
        return self.size_bytes

    def check_crc(self, position: int) -> BatchHeader:
        header, reason = check_frame(self.buffer(), position, self.size_bytes, verify_crc=True)
        if header is None:
            raise CorruptRecordError(f"segment {self.log_path} at position {position}: {reason}")
        return header

    # -- writing ---------------------------------------------------------------------

    def append(self, frame_header: bytes, body: pa.Buffer | bytes | memoryview, header: BatchHeader) -> int:
        """Write one frame at the end; return its position."""
        assert header.base_offset >= self.next_offset, (header.base_offset, self.next_offset)
        position = self.size_bytes
        _write_all(self._fd, [frame_header, body], position)
        self._account(position, header)
        self.size_bytes = position + header.frame_bytes
        self.unflushed = True
        return position

    def _account(self, position: int, header: BatchHeader) -> None:
        """Update offsets, timestamps and indexes for a frame now at ``position``."""
        if self._bytes_since_index_entry > self.index_interval_bytes:
            self.offset_index.append(header.base_offset, position)
            self.time_index.append(self.max_timestamp_ms, header.base_offset)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.frame_bytes
        self.next_offset = header.next_offset
        self.max_timestamp_ms = max(self.max_timestamp_ms, header.max_timestamp_ms)

    @property
    def indexes_full(self) -> bool:
        return self.offset_index.is_full or self.time_index.is_full

    def flush(self) -> None:
        if self.unflushed:
            os.fsync(self._fd)
            self.offset_index.flush()
            self.time_index.flush()
            self.unflushed = False

    # -- opening, recovery, truncation -----------------------------------------------

    def load(self) -> bool:
        """Load the indexes of a trusted segment (below the recovery point) and learn its
        next offset and largest timestamp. Returns True if the indexes had to be rebuilt."""
        try:
            self.offset_index.load(self.size_bytes)
            self.time_index.load(self.size_bytes)
            last = self.offset_index.last_entry()
            start = 0
            if last is not None:
                offset, start = last
                header, reason = check_frame(self.buffer(), start, self.size_bytes, verify_crc=False)
                if header is None or header.base_offset != offset:
                    raise CorruptIndexError(f"index {self.offset_index.path} last entry does not point at offset {offset}")
            last_time = self.time_index.last_entry()
            if (last is None) != (last_time is None) or (last and last_time and last_time[1] != last[0]):
                raise CorruptIndexError(f"time index {self.time_index.path} does not match {self.offset_index.path}")
            self.max_timestamp_ms = last_time[0] if last_time else NO_TIMESTAMP
            for _position, header in self.headers(start):
                self.next_offset = header.next_offset
                self.max_timestamp_ms = max(self.max_timestamp_ms, header.max_timestamp_ms)
            self._bytes_since_index_entry = self.size_bytes - start
            return False
        except CorruptIndexError:
            self.rebuild_indexes()
            return True

    def rebuild_indexes(self) -> None:
        """Rebuild both indexes by reading every frame header."""
        self._reset_accounting()
        for position, header in self.headers():
            self._account(position, header)

    def _reset_accounting(self) -> None:
        self.offset_index.reset()
        self.time_index.reset()
        self.next_offset = self.base_offset
        self.max_timestamp_ms = NO_TIMESTAMP
        self._bytes_since_index_entry = 0

    def recover(self, expected_offset: int) -> tuple[int, int]:
        """Validate every frame (framing, CRC, offsets from ``expected_offset`` upward, an
        Arrow body of the stated row count), truncate at the first invalid one, rebuild
        the indexes. Returns (bytes dropped, batches dropped); a partial frame counts as
        one batch."""
        self._reset_accounting()
        buffer = self.buffer()
        position = 0
        expected_offset = max(expected_offset, self.base_offset)
        while position < self.size_bytes:
            header, _reason = check_frame(buffer, position, self.size_bytes, verify_crc=True)
            if header is None or header.base_offset < expected_offset or not _body_matches(buffer, position, header):
                break
            self._account(position, header)
            expected_offset = header.next_offset
            position += header.frame_bytes
        dropped_bytes = self.size_bytes - position
        dropped_batches = _count_frames(buffer, position, self.size_bytes)
        if dropped_bytes:
            self._map = None
            os.ftruncate(self._fd, position)
            self.size_bytes = position
        # What was validated may never have reached the disk: fsync it (and the rebuilt
        # indexes) before the log moves its recovery point past it.
        self.unflushed = True
        return dropped_bytes, dropped_batches

    def truncate_to(self, offset: int) -> int:
        """Remove every batch whose last offset is >= ``offset``; return bytes removed.
        Truncation is at batch boundaries, so the segment's next offset may end up below
        ``offset`` when ``offset`` falls inside a batch."""
        position = self.position_for(offset)
        removed = self.size_bytes - position
        if removed == 0:
            return 0
        temporary = self.log_path + ".truncating"
        destination = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            copied = 0
            while copied < position:
                try:
                    step = os.copy_file_range(self._fd, destination, position - copied, copied, copied)
                except OSError:
                    step = os.pwrite(destination, os.pread(self._fd, min(position - copied, 1 << 24), copied), copied)
                if step <= 0:
                    raise CorruptRecordError(f"segment {self.log_path} ended while copying its first {position} bytes")
                copied += step
            os.fsync(destination)
        finally:
            os.close(destination)
        os.close(self._fd)
        os.replace(temporary, self.log_path)
        self._fd = os.open(self.log_path, os.O_RDWR, 0o644)
        self._map = None
        self.size_bytes = position
        self.offset_index.truncate_to_position(position)
        self.rebuild_indexes()
        self.unflushed = True
        return removed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.offset_index.close()
        self.time_index.close()
        self._map = None

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _write_all(fd: int, pieces: list, position: int) -> None:
    views = [memoryview(piece).cast("B") for piece in pieces]
    while views:
        written = os.pwritev(fd, views, position)
        position += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _body_matches(buffer: pa.Buffer, position: int, header: BatchHeader) -> bool:
    """True if the frame's Arrow body decodes to the rows and offsets its header states."""
    try:
        batch = decode_body(buffer, position, header)
    except (pa.ArrowException, OSError, ValueError):
        return False
    if batch.num_rows != header.record_count:
        return False
    if batch.num_rows == 0:
        return True
    offsets = batch.column(0).to_numpy()
    if offsets[0] < header.base_offset or offsets[-1] > header.last_offset:
        return False
    return bool(np.all(offsets[1:] > offsets[:-1]))


def _count_frames(buffer: pa.Buffer, position: int, end: int) -> int:
    """How many batches the bytes [position, end) held: the invalid frame at ``position``
    counts as one, plus every fully valid frame that follows it where its stated length
    says the next one starts. (After a corrupt length nothing more can be located.)"""
    if position >= end:
        return 0
    count = 1
    if end - position >= FRAME_HEADER_BYTES:
        length = int.from_bytes(buffer.slice(position, 4).to_pybytes(), "little")
        position += 4 + length
        while position < end:
            header, _reason = check_frame(buffer, position, end, verify_crc=True)
            if header is None:
                break
            count += 1
            position += header.frame_bytes
    return count
