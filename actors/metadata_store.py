"""The controller's durable metadata: a snapshot plus a log of records written after it.

Files in the store's directory::

    metadata.snapshot   msgpack of the whole state, replaced atomically (temp, fsync, rename)
    metadata.log        records since the snapshot, each framed as
                        length uint32 LE | CRC-32C uint32 LE of the body | msgpack body

Every record carries a ``sequence`` one above the previous; the snapshot stores the last
sequence it includes, so log records at or below it (left by a crash between writing a
snapshot and emptying the log) are skipped instead of applied twice.

Durability: ``apply`` writes and fsyncs the record before changing ``state`` and
returning, so whatever the controller acknowledged survives a crash. On open a torn or
corrupt tail record is cut off (it was never acknowledged) and reported in
``last_recovery``; a corrupt snapshot is an error, never an empty cluster.

Not thread-safe: the controller actor serializes calls.
"""

from __future__ import annotations

import copy
import os
import struct

import crc32c
import msgpack

from rafka.errors import StorageError
from rafka.storage.checkpoint import fsync_directory

SNAPSHOT_FILE = "metadata.snapshot"
LOG_FILE = "metadata.log"
FRAME = struct.Struct("<II")
RECORD_TYPES = frozenset({"register_broker", "create_topic", "delete_topic", "alter_config", "add_partitions",
                          "change_leader", "change_isr", "allocate_producer_ids"})
INITIAL_STATE = {"brokers": {}, "topics": {}, "next_producer_id": 0, "sequence": 0}


class MetadataStore:
    def __init__(self, directory: str, snapshot_every: int = 1000) -> None:
        self.directory = directory
        self.snapshot_every = snapshot_every
        os.makedirs(directory, exist_ok=True)
        self.state = self._load_snapshot()
        self.last_recovery = self._replay()
        self._log = open(os.path.join(directory, LOG_FILE), "ab", buffering=0)
        self._records_since_snapshot = self.last_recovery["records_replayed"]

    def _load_snapshot(self) -> dict:
        path = os.path.join(self.directory, SNAPSHOT_FILE)
        if not os.path.exists(path):
            return copy.deepcopy(INITIAL_STATE)
        with open(path, "rb") as handle:
            data = handle.read()
        try:
            if len(data) < FRAME.size:
                raise ValueError("too short")
            length, crc = FRAME.unpack_from(data)
            body = data[FRAME.size:]
            if length != len(body) or crc32c.crc32c(body) != crc:
                raise ValueError("length or CRC mismatch")
            state = msgpack.unpackb(body, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as error:
            raise StorageError(f"controller metadata snapshot {path} is corrupt: {error}") from None
        return state

    def _replay(self) -> dict:
        path = os.path.join(self.directory, LOG_FILE)
        if not os.path.exists(path):
            return {"records_replayed": 0, "bytes_dropped": 0}
        with open(path, "rb") as handle:
            data = handle.read()
        position = replayed = 0
        while position + FRAME.size <= len(data):
            length, crc = FRAME.unpack_from(data, position)
            body = data[position + FRAME.size: position + FRAME.size + length]
            if len(body) != length or crc32c.crc32c(body) != crc:
                break
            try:
                record = msgpack.unpackb(body, strict_map_key=False)
            except (ValueError, msgpack.UnpackException):
                break
            if record["sequence"] > self.state["sequence"]:
                apply_record(self.state, record)
                replayed += 1
            position += FRAME.size + length
        dropped = len(data) - position
        if dropped:
            with open(path, "r+b") as handle:
                handle.truncate(position)
                os.fsync(handle.fileno())
        return {"records_replayed": replayed, "bytes_dropped": dropped}

    def apply(self, record: dict) -> None:
        """Make ``record`` durable, then apply it to ``state``."""
        if record.get("type") not in RECORD_TYPES:
            raise ValueError(f"unknown metadata record type {record.get('type')!r}")
        record = dict(record, sequence=self.state["sequence"] + 1)
        body = msgpack.packb(record)
        self._log.write(FRAME.pack(len(body), crc32c.crc32c(body)) + body)
        os.fsync(self._log.fileno())
        apply_record(self.state, record)
        self._records_since_snapshot += 1
        if self._records_since_snapshot >= self.snapshot_every:
            self.snapshot()

    def snapshot(self) -> None:
        """Write the whole state as the new snapshot, then empty the log."""
        body = msgpack.packb(self.state)
        path = os.path.join(self.directory, SNAPSHOT_FILE)
        temporary = path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(FRAME.pack(len(body), crc32c.crc32c(body)) + body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_directory(self.directory)
        self._log.truncate(0)
        os.fsync(self._log.fileno())
        self._records_since_snapshot = 0

    def close(self) -> None:
        self._log.close()


def apply_record(state: dict, record: dict) -> None:
    """Apply one metadata record to ``state`` in place."""
    kind = record["type"]
    state["sequence"] = record["sequence"]
    if kind == "register_broker":
        state["brokers"][str(record["broker_id"])] = {
            key: record[key] for key in ("broker_id", "node_id", "data_dir", "host")
        }
    elif kind == "create_topic":
        state["topics"][record["topic"]] = {
            "topic_id": record["topic_id"],
            "config": dict(record["config"]),
            "partitions": _partitions(record),
        }
    elif kind == "delete_topic":
        state["topics"].pop(record["topic"], None)
    elif kind == "alter_config":
        state["topics"][record["topic"]]["config"] = dict(record["config"])
    elif kind == "add_partitions":
        state["topics"][record["topic"]]["partitions"].extend(_partitions(record))
    elif kind == "change_leader":
        partition = state["topics"][record["topic"]]["partitions"][record["partition"]]
        partition.update(leader=record["leader"], leader_epoch=record["leader_epoch"], isr=list(record["isr"]))
    elif kind == "change_isr":
        state["topics"][record["topic"]]["partitions"][record["partition"]]["isr"] = list(record["isr"])
    elif kind == "allocate_producer_ids":
        state["next_producer_id"] = record["next_producer_id"]
    else:
        raise ValueError(f"unknown metadata record type {kind!r}")


def _partitions(record: dict) -> list[dict]:
    return [
        {"replicas": list(replicas), "leader": leader, "leader_epoch": epoch, "isr": list(isr)}
        for replicas, leader, epoch, isr in zip(record["assignments"], record["leaders"], record["leader_epochs"], record["isr"])
    ]
