"""The controller's durable metadata: a snapshot plus a log of the records written after it.

Files in the store's directory::

    metadata.snapshot   the whole state: length uint32 LE | CRC-32C uint32 LE | msgpack body
    metadata.log        records since the snapshot, each framed the same way:
                        length uint32 LE | CRC-32C uint32 LE of the body | msgpack body

Every record carries a ``sequence`` one above the previous one (``apply`` assigns it);
``state["sequence"]`` is the last one applied, and the snapshot stores it too.

Durability: ``apply`` checks that the record applies, then writes its frame to the log and
fsyncs the log before it changes ``state`` or returns, so anything the controller
acknowledged survives a crash. A new log file is made durable by fsyncing the directory.
Every ``snapshot_every`` records ``snapshot`` writes the state to ``metadata.snapshot.tmp``,
fsyncs it, renames it over the old snapshot, fsyncs the directory, and only then truncates
the log to empty and fsyncs it. A write or fsync that fails leaves the store refusing
further ``apply`` calls (``StorageError``): after a failed fsync the file's contents are
unknown, and reopening the store is the way back to what is really on disk.

Recovery on open: load the snapshot (missing means the initial state; unreadable, a bad
CRC or a wrong shape raises ``StorageError`` naming the file, never an empty cluster), then
replay the log in order. Records with a sequence at or below the snapshot's are skipped:
they are left by a crash between renaming a snapshot and truncating the log. A sequence
gap raises ``StorageError``. The first frame that is short, fails its CRC or does not
decode ends the log: it and everything after it are cut off (it was never acknowledged,
since a crash can only tear the last write) and ``last_recovery`` reports
``{"records_replayed": n, "bytes_dropped": m}``.

Not thread-safe: the controller actor serializes calls.
"""

from __future__ import annotations

import copy
import os

import crc32c
import msgpack

from rafka.actors.framing import FRAME, frame, frames
from rafka.errors import StorageError
from rafka.storage.checkpoint import fsync_directory

SNAPSHOT_FILE = "metadata.snapshot"
LOG_FILE = "metadata.log"
RECORD_TYPES = frozenset({"register_broker", "create_topic", "delete_topic", "alter_config", "add_partitions",
                          "change_leader", "change_isr", "allocate_producer_ids", "set_broker_per_node",
                          # Wire-listener security (docs/security.md): SCRAM credentials and ACLs.
                          "alter_scram_credentials", "create_acls", "delete_acls"})
# ``broker_per_node``: brokers follow Ray's nodes (one on every node, including nodes that
# join later) rather than a fixed count; see actors/broker_placement.py.
INITIAL_STATE = {"brokers": {}, "topics": {}, "next_producer_id": 0, "sequence": 0, "broker_per_node": False,
                 "deleted_topic_ids": [], "scram_credentials": {}, "acls": []}
# ``scram_credentials``: user -> mechanism -> {salt, iterations, stored_key, server_key}
# (never a password); ``acls``: ACL bindings as rafka.security.acl.AclBinding.to_dict.
# ``deleted_topic_ids``: ids of deleted topics (newest last, at most this many), so a broker
# that was down during a delete finishes it when it returns (see docs/topic-ids.md).
DELETED_TOPIC_IDS_KEPT = 10_000
# Keys every snapshot has had; keys added since are filled from INITIAL_STATE on load.
REQUIRED_STATE_KEYS = frozenset({"brokers", "topics", "next_producer_id", "sequence"})


class MetadataStore:
    """The controller's metadata ``state``, changed only through durable ``apply`` calls."""

    def __init__(self, directory: str, snapshot_every: int = 1000) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be at least 1, not {snapshot_every}")
        self.directory = directory
        self.snapshot_every = snapshot_every
        self._snapshot_path = os.path.join(directory, SNAPSHOT_FILE)
        self._log_path = os.path.join(directory, LOG_FILE)
        os.makedirs(directory, exist_ok=True)
        self.state: dict = self._load_snapshot()
        self.last_recovery: dict = self._replay()
        created = not os.path.exists(self._log_path)
        self._log = open(self._log_path, "ab", buffering=0)
        if created:
            fsync_directory(directory)
        self._records_since_snapshot = self.last_recovery["records_replayed"]
        self._failure: OSError | None = None

    def _load_snapshot(self) -> dict:
        try:
            with open(self._snapshot_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return copy.deepcopy(INITIAL_STATE)
        try:
            if len(data) < FRAME.size:
                raise ValueError(f"{len(data)} bytes is shorter than a frame header")
            length, crc = FRAME.unpack_from(data)
            body = data[FRAME.size:]
            if length != len(body) or crc32c.crc32c(body) != crc:
                raise ValueError("length or CRC-32C mismatch")
            state = msgpack.unpackb(body, strict_map_key=False)
            if not isinstance(state, dict) or not REQUIRED_STATE_KEYS <= set(state):
                raise ValueError("not a metadata state")
        except (ValueError, msgpack.UnpackException) as error:
            raise StorageError(f"controller metadata snapshot {self._snapshot_path} is corrupt: {error}") from None
        return {**copy.deepcopy(INITIAL_STATE), **state}

    def _replay(self) -> dict:
        try:
            with open(self._log_path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return {"records_replayed": 0, "bytes_dropped": 0}
        position = replayed = 0
        for start, record in frames(data):
            if record["sequence"] > self.state["sequence"]:
                if record["sequence"] != self.state["sequence"] + 1:
                    raise StorageError(f"controller metadata log {self._log_path} jumps from sequence "
                                       f"{self.state['sequence']} to {record['sequence']} at byte {start}")
                apply_record(self.state, record)
                replayed += 1
            position = start + FRAME.size + FRAME.unpack_from(data, start)[0]
        if position < len(data):
            with open(self._log_path, "r+b") as handle:
                handle.truncate(position)
                os.fsync(handle.fileno())
        return {"records_replayed": replayed, "bytes_dropped": len(data) - position}

    def apply(self, record: dict) -> None:
        """Make ``record`` durable in the log, then apply it to ``state``.

        Raises ValueError (unknown type), KeyError or IndexError (a missing field, topic or
        partition) before anything is written, and StorageError if the disk fails. An
        OSError from the snapshot that may follow means the record itself is durable."""
        if self._failure is not None:
            raise StorageError(f"controller metadata log {self._log_path} failed earlier: {self._failure}")
        record = dict(record, sequence=self.state["sequence"] + 1)
        apply_record(_probe(self.state, record), record)  # a record that cannot apply must never be logged
        framed = frame(record)
        try:
            self._log.write(framed)
            os.fsync(self._log.fileno())
        except OSError as error:
            self._failure = error
            raise StorageError(f"cannot append to controller metadata log {self._log_path}: {error}") from error
        apply_record(self.state, record)
        self._records_since_snapshot += 1
        if self._records_since_snapshot >= self.snapshot_every:
            self.snapshot()

    def snapshot(self) -> None:
        """Write the whole state as the new snapshot, then empty the log."""
        temporary = self._snapshot_path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(frame(self.state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._snapshot_path)
        fsync_directory(self.directory)
        self._log.truncate(0)
        os.fsync(self._log.fileno())
        self._records_since_snapshot = 0

    def close(self) -> None:
        self._log.close()


def _probe(state: dict, record: dict) -> dict:
    """A copy of ``state`` deep enough that applying ``record`` to it leaves ``state`` alone."""
    probe = dict(state, brokers=dict(state["brokers"]), topics=dict(state["topics"]))
    if record.get("topic") in state["topics"]:
        probe["topics"][record["topic"]] = copy.deepcopy(state["topics"][record["topic"]])
    return probe


def _partitions(record: dict) -> list[dict]:
    columns = [record["assignments"], record["leaders"], record["leader_epochs"], record["isr"]]
    if len({len(column) for column in columns}) != 1:
        raise ValueError(f"{record['type']} record for {record['topic']!r} has columns of different lengths")
    return [{"replicas": list(replicas), "leader": leader, "leader_epoch": epoch, "isr": list(isr),
             "partition_epoch": 0}
            for replicas, leader, epoch, isr in zip(*columns)]


def apply_record(state: dict, record: dict) -> None:
    """Apply one metadata record to ``state`` in place. Pure apart from that mutation and
    deterministic, so replaying the log rebuilds the same state. Every lookup happens
    before the first mutation, so a record that raises leaves ``state`` unchanged."""
    kind = record["type"]
    if kind == "register_broker":
        state["brokers"][str(record["broker_id"])] = {
            key: record[key] for key in ("broker_id", "node_id", "data_dir", "host")}
    elif kind == "create_topic":
        state["topics"][record["topic"]] = {
            "topic_id": record["topic_id"], "config": dict(record["config"]), "partitions": _partitions(record)}
    elif kind == "delete_topic":
        state["topics"].pop(record["topic"], None)
        if record.get("topic_id"):
            deleted = state.setdefault("deleted_topic_ids", [])
            deleted.append(record["topic_id"])
            del deleted[:-DELETED_TOPIC_IDS_KEPT]
    elif kind == "alter_config":
        state["topics"][record["topic"]]["config"] = dict(record["config"])
    elif kind == "add_partitions":
        partitions = state["topics"][record["topic"]]["partitions"]
        partitions.extend(_partitions(record))
    elif kind == "change_leader":
        partition = state["topics"][record["topic"]]["partitions"][record["partition"]]
        partition.update(leader=record["leader"], leader_epoch=record["leader_epoch"], isr=list(record["isr"]),
                         partition_epoch=partition.get("partition_epoch", 0) + 1)
    elif kind == "change_isr":
        partition = state["topics"][record["topic"]]["partitions"][record["partition"]]
        partition.update(isr=list(record["isr"]), partition_epoch=partition.get("partition_epoch", 0) + 1)
    elif kind == "allocate_producer_ids":
        state["next_producer_id"] = record["next_producer_id"]
    elif kind == "set_broker_per_node":
        state["broker_per_node"] = bool(record["enabled"])
    elif kind in ("alter_scram_credentials", "create_acls", "delete_acls"):
        _apply_security_record(state, record)
    else:
        raise ValueError(f"unknown metadata record type {kind!r}")
    state["sequence"] = record["sequence"]


def _apply_security_record(state: dict, record: dict) -> None:
    """SCRAM credentials and ACLs. Builds new containers rather than mutating the old
    ones, so ``_probe``'s shallow copy keeps a failed probe from touching ``state``."""
    kind = record["type"]
    if kind == "alter_scram_credentials":
        credentials = {user: dict(mechanisms) for user, mechanisms in state["scram_credentials"].items()}
        for user, mechanism in record["deletions"]:
            credentials.get(user, {}).pop(mechanism, None)
        for user, stored in record["upsertions"]:
            credentials.setdefault(user, {})[stored["mechanism"]] = {
                key: stored[key] for key in ("salt", "iterations", "stored_key", "server_key")}
        state["scram_credentials"] = {user: mechanisms for user, mechanisms in credentials.items() if mechanisms}
    elif kind == "create_acls":
        acls = list(state["acls"])
        for binding in record["bindings"]:
            if binding not in acls:  # a binding is kept once, even if a record repeats it
                acls.append(dict(binding))
        state["acls"] = acls
    else:  # delete_acls
        removed = record["bindings"]
        state["acls"] = [b for b in state["acls"] if b not in removed]
