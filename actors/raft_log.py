"""A Raft voter's durable state: its term and vote, its log, and its snapshot.

Files in the voter's directory (every frame as in actors/metadata_store.py:
length uint32 LE | CRC-32C uint32 LE of the body | msgpack body)::

    raft.meta       one frame: {"term", "voted_for", "recovering"}
    raft.snapshot   one frame: {"index", "term", "state"}: the state machine after applying
                    every entry up to ``index`` (whose term was ``term``)
    raft.log        a header frame {"base_index", "base_term"} (the entry just before the
                    first one in the file), then one frame per entry: [index, term, data]

Contract: every method that changes something returns only after it is on disk (written,
fsynced, and for a new or renamed file, the directory fsynced), so a voter may answer a
peer as soon as the call returns: Raft's rule that term, vote and log entries are stable
before a reply. ``meta`` and ``snapshot`` are replaced atomically (temporary file, fsync,
rename, fsync of the directory). Appends go to the end of ``raft.log`` with one fsync per
batch; a conflicting suffix is cut with ``truncate`` and an fsync; a compaction or a
snapshot install writes a new log file and renames it over the old one.

Recovery on open: a missing directory or file means empty (term 0, no vote, no entries);
``fresh`` then says the directory held no meta file, which the caller uses to tell a new
voter from one whose disk was replaced. An unreadable meta or snapshot raises
``StorageError`` naming the file (never an empty voter that would vote again). The log
is read up to its first short, CRC-failing or undecodable frame; that tail was never
acknowledged (a crash can only tear the last write) and is cut off, and
``last_recovery["bytes_dropped"]`` says how much. Entries at or below the snapshot's
index are skipped. Entries after it are kept only if the log continues the snapshot's
history (its header or one of its entries is the snapshot's (index, term)); otherwise a
crash hit an install between its two renames, and those entries are dropped (they
belonged to a history the leader had already replaced). A gap in indexes raises
``StorageError``.

``fsync=False`` exists only for the deterministic simulation tests, which crash voters by
dropping their objects (the page cache survives that, as it survives a process crash);
the actor always syncs.

Not thread-safe: one voter owns its directory.
"""

from __future__ import annotations

import os

import msgpack

from rafka.actors.framing import FRAME, frame as _frame, frames as _frames
from rafka.errors import StorageError
from rafka.storage.checkpoint import fsync_directory

META_FILE = "raft.meta"
SNAPSHOT_FILE = "raft.snapshot"
LOG_FILE = "raft.log"


class RaftLog:
    """Durable term, vote, log entries and snapshot of one voter (see the module docstring)."""

    def __init__(self, directory: str, fsync: bool = True) -> None:
        self.directory = directory
        self.fsync = fsync
        self._meta_path = os.path.join(directory, META_FILE)
        self._snapshot_path = os.path.join(directory, SNAPSHOT_FILE)
        self._log_path = os.path.join(directory, LOG_FILE)
        os.makedirs(directory, exist_ok=True)
        self.fresh = not os.path.exists(self._meta_path)
        meta = self._read_single(self._meta_path) or {"term": 0, "voted_for": None, "recovering": False}
        self.term: int = meta["term"]
        self.voted_for: str | None = meta["voted_for"]
        self.recovering: bool = bool(meta.get("recovering", False))
        snapshot = self._read_single(self._snapshot_path) or {"index": 0, "term": 0, "state": None}
        self.snapshot_index: int = snapshot["index"]
        self.snapshot_term: int = snapshot["term"]
        self.snapshot_state: object = snapshot["state"]
        # entries[i] is the entry at index snapshot_index + 1 + i: (term, data);
        # offsets[i] its byte position in raft.log (for cutting a suffix).
        self.entries: list[tuple[int, object]] = []
        self._offsets: list[int] = []
        self.last_recovery = self._recover_log()
        self._file = open(self._log_path, "ab", buffering=0)

    # -- reading -----------------------------------------------------------------------

    def _read_single(self, path: str) -> dict | None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        frames = list(_frames(data))
        if len(frames) != 1 or not isinstance(frames[0][1], dict) \
                or FRAME.size + len(msgpack.packb(frames[0][1])) != len(data):
            raise StorageError(f"raft file {path} is corrupt ({len(data)} bytes)")
        return frames[0][1]

    def _recover_log(self) -> dict:
        try:
            with open(self._log_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            self._rewrite_log([])
            return {"entries": 0, "bytes_dropped": 0, "entries_dropped": 0}
        frames = _frames(data)
        header = next(frames, None)
        if header is None or not isinstance(header[1], dict) or "base_index" not in header[1]:
            # Not even a header survived: the file was being created. Nothing in it was acknowledged.
            self._rewrite_log([])
            return {"entries": 0, "bytes_dropped": len(data), "entries_dropped": 0}
        base_index, base_term = header[1]["base_index"], header[1]["base_term"]
        end = FRAME.size + len(msgpack.packb(header[1]))
        continues = (base_index, base_term) == (self.snapshot_index, self.snapshot_term)
        kept: list[tuple[int, int, object]] = []
        positions: list[int] = []
        previous = base_index
        for position, value in frames:
            index, term, entry_data = value
            if index != previous + 1:
                raise StorageError(f"raft log {self._log_path} jumps from index {previous} to {index} "
                                   f"at byte {position}")
            previous = index
            end = position + FRAME.size + len(msgpack.packb(value))
            if index == self.snapshot_index and term == self.snapshot_term:
                continues = True
            if index > self.snapshot_index:
                kept.append((index, term, entry_data))
                positions.append(position)
        bytes_dropped = len(data) - end
        if base_index > self.snapshot_index and not continues:
            raise StorageError(f"raft log {self._log_path} starts after index {base_index} but the snapshot "
                               f"{self._snapshot_path} ends at {self.snapshot_index}: entries are missing")
        if not continues:
            # The snapshot replaced this history (a crash between the two renames of an install).
            self._rewrite_log([])
            return {"entries": 0, "bytes_dropped": bytes_dropped, "entries_dropped": len(kept)}
        if bytes_dropped or base_index != self.snapshot_index:
            self._rewrite_log([(term, entry_data) for _, term, entry_data in kept])
        else:
            self.entries = [(term, entry_data) for _, term, entry_data in kept]
            self._offsets = positions
        return {"entries": len(self.entries), "bytes_dropped": bytes_dropped, "entries_dropped": 0}

    # -- the log -----------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1][0] if self.entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if compacted away or past the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if self.snapshot_index < index <= self.last_index:
            return self.entries[index - self.snapshot_index - 1][0]
        return None

    def entry(self, index: int) -> tuple[int, object]:
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, first: int, limit: int) -> list[tuple[int, object]]:
        """Up to ``limit`` entries from ``first`` (which must be above the snapshot)."""
        start = first - self.snapshot_index - 1
        return self.entries[start:start + limit]

    def append(self, entries: list[tuple[int, object]]) -> None:
        """Append (term, data) entries after the last one, durably."""
        if not entries:
            return
        position = os.fstat(self._file.fileno()).st_size
        chunks = []
        for offset, (term, data) in enumerate(entries):
            frame = _frame([self.last_index + 1 + offset, term, data])
            self._offsets.append(position)
            position += len(frame)
            chunks.append(frame)
        try:
            self._file.write(b"".join(chunks))
            self._sync(self._file)
        except OSError as error:
            del self._offsets[len(self.entries):]
            raise StorageError(f"cannot append to raft log {self._log_path}: {error}") from error
        self.entries.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Drop every entry above ``index`` (a suffix that conflicts with the leader's)."""
        assert index >= self.snapshot_index, (index, self.snapshot_index)
        keep = index - self.snapshot_index
        if keep >= len(self.entries):
            return
        self._file.truncate(self._offsets[keep])
        self._sync(self._file)
        del self.entries[keep:]
        del self._offsets[keep:]

    def _rewrite_log(self, entries: list[tuple[int, object]]) -> None:
        """Replace raft.log by a header at the snapshot and ``entries`` after it."""
        temporary = self._log_path + ".tmp"
        offsets, chunks = [], [_frame({"base_index": self.snapshot_index, "base_term": self.snapshot_term})]
        position = len(chunks[0])
        for offset, (term, data) in enumerate(entries):
            frame = _frame([self.snapshot_index + 1 + offset, term, data])
            offsets.append(position)
            position += len(frame)
            chunks.append(frame)
        with open(temporary, "wb") as handle:
            handle.write(b"".join(chunks))
            self._sync(handle)
        old = getattr(self, "_file", None)
        if old is not None:
            old.close()
        os.replace(temporary, self._log_path)
        self._sync_directory()
        self.entries, self._offsets = list(entries), offsets
        if old is not None:
            self._file = open(self._log_path, "ab", buffering=0)

    # -- term, vote, snapshot ----------------------------------------------------------

    def set_term(self, term: int, voted_for: str | None, recovering: bool | None = None) -> None:
        if recovering is None:
            recovering = self.recovering
        if (term, voted_for, recovering) == (self.term, self.voted_for, self.recovering) and not self.fresh:
            return
        assert term >= self.term, (term, self.term)
        self._write_atomically(self._meta_path, {"term": term, "voted_for": voted_for, "recovering": recovering})
        self.term, self.voted_for, self.recovering, self.fresh = term, voted_for, recovering, False

    def save_snapshot(self, index: int, term: int, state: object) -> None:
        """Make ``state`` (the state machine after ``index``) the snapshot and drop the
        entries it covers. Entries after ``index`` are kept when they continue its history
        (the entry at ``index`` has ``term``); otherwise every entry is dropped."""
        assert index > self.snapshot_index, (index, self.snapshot_index)
        keep: list[tuple[int, object]] = []
        if self.term_at(index) == term:
            keep = self.entries[index - self.snapshot_index:]
        self._write_atomically(self._snapshot_path, {"index": index, "term": term, "state": state})
        self.snapshot_index, self.snapshot_term, self.snapshot_state = index, term, state
        self._rewrite_log(keep)

    def _write_atomically(self, path: str, value: dict) -> None:
        temporary = path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(_frame(value))
            self._sync(handle)
        os.replace(temporary, path)
        self._sync_directory()

    def _sync(self, handle) -> None:
        if self.fsync:
            handle.flush()
            os.fsync(handle.fileno())

    def _sync_directory(self) -> None:
        if self.fsync:
            fsync_directory(self.directory)

    def close(self) -> None:
        self._file.close()
