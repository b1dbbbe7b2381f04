"""Producer-state snapshot files of a partition directory (Kafka's ``.snapshot`` files).

Layout::

    <dir>/00000000000000004096.snapshot   the idempotent-producer state of every batch
                                           below offset 4096, named by that offset

A snapshot is written when a segment rolls (at the new segment's base offset) and on a
clean shutdown (at the log end offset); on open, or when a replica becomes leader, the
state is the newest *valid* snapshot plus a replay of the batch headers after it. So the
state of a producer whose last batch is many segments old, or whose segments retention
has deleted, survives restarts and leader changes (as Kafka's ProducerStateManager).

File format: one JSON object, then a line with the CRC32 of the JSON text::

    {"version": 1, "offset": N, "leader_epoch": E, "producers": [[id, epoch, next_sequence,
     last_timestamp_ms, [[base_sequence, base_offset, append_time_ms], ...]], ...]}
    <crc32>

``leader_epoch`` is the leader epoch in force at offset N - 1 when the snapshot was
written. A snapshot is valid for a log only while the log's leader-epoch history still
puts that epoch at N - 1: a truncation below N followed by appends from a newer leader
changes it, and the snapshot (describing batches that are gone) is ignored. Within one
leader epoch an offset names the same batch on every replica (KIP-101), which is what
makes this check sufficient.

Writes are atomic (temporary file, fsync, rename); a missing, torn or corrupt file reads
as ``None`` and costs only a longer replay. This module knows the file format only; the
meaning of the entries belongs to ``rafka.actors.producer_state``. Not thread-safe: the
log's owner calls it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

from rafka.storage.checkpoint import LeaderEpochCache, write_atomically

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1


@dataclasses.dataclass
class ProducerSnapshot:
    """The producers' state below ``offset``; ``producers`` holds plain lists (see above)."""

    offset: int
    leader_epoch: int
    producers: list


def snapshot_path(directory: str, offset: int) -> str:
    return os.path.join(directory, f"{offset:020d}{SNAPSHOT_SUFFIX}")


def list_snapshots(directory: str) -> list[tuple[int, str]]:
    """(offset, path) of every snapshot file in ``directory``, oldest first."""
    found = []
    for name in os.listdir(directory):
        stem = name[: -len(SNAPSHOT_SUFFIX)]
        if name.endswith(SNAPSHOT_SUFFIX) and stem.isdigit():
            found.append((int(stem), os.path.join(directory, name)))
    return sorted(found)


def write_snapshot(directory: str, snapshot: ProducerSnapshot) -> str:
    body = json.dumps({"version": SNAPSHOT_VERSION, "offset": snapshot.offset,
                       "leader_epoch": snapshot.leader_epoch, "producers": snapshot.producers},
                      separators=(",", ":"))
    path = snapshot_path(directory, snapshot.offset)
    write_atomically(path, f"{body}\n{zlib.crc32(body.encode())}\n")
    return path


def read_snapshot(path: str) -> ProducerSnapshot | None:
    """The snapshot in ``path``, or None when it is missing, torn or fails its CRC."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode()
        body, crc, trailing = text.split("\n")
        if trailing or zlib.crc32(body.encode()) != int(crc):
            return None
        data = json.loads(body)
        if data.get("version") != SNAPSHOT_VERSION:
            return None
        return ProducerSnapshot(int(data["offset"]), int(data["leader_epoch"]), list(data["producers"]))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def delete_snapshot(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def epoch_at(epochs: LeaderEpochCache, offset: int) -> int:
    """The leader epoch whose range holds ``offset`` by ``epochs``, or -1 when none does.
    Offsets below the history's first start (records retention deleted) get the first
    epoch: the history no longer knows better."""
    entries = epochs.entries()
    if offset < 0 or not entries:
        return -1
    found = entries[0][0]
    for epoch, start_offset in entries:
        if start_offset > offset:
            break
        found = epoch
    return found
