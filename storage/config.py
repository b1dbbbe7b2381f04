"""Per-log configuration under Kafka's dotted topic-config names.

``LogConfig.from_dict({"retention.ms": "3600000", ...})`` parses and validates strings or
numbers the way a topic's config arrives from an admin call; any unknown key or bad value
raises ``InvalidConfigError`` naming both. Defaults follow Kafka except where noted:

* ``max.message.bytes`` defaults to 8 MiB, not Kafka's 1 MiB: rafka's unit of transfer is
  an Arrow batch, and measurements (docs/architecture.md, section 7) show 1–8 MiB batches move fastest
  between Ray actors.
* ``flush.messages`` / ``flush.ms`` default to "never" as in Kafka: durability comes from
  replication, and a written batch survives the death of the process (it is in the page
  cache) though not of the machine. Set ``flush.messages=1`` to fsync every batch.

Values of ``-1`` mean "no limit" where Kafka allows it (``retention.ms``,
``retention.bytes``).

``min.cleanable.dirty.ratio`` (a float in [0, 1], Kafka's default 0.5) is the share of a
compacted log's cleanable bytes that must be dirty (written since the last cleaning pass)
before the cleaner runs a pass over it; see ``rafka.storage.cleaner``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from rafka.config import ConfigDef, ConfigField

CLEANUP_POLICIES = ("delete", "compact", "compact,delete")
COMPRESSION_TYPES = ("producer", "uncompressed", "lz4", "zstd")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
NEVER = -1


@dataclasses.dataclass(frozen=True)
class LogConfig:
    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    segment_index_bytes: int = 10 * 1024 * 1024
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = NEVER
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 24 * 3600 * 1000
    min_compaction_lag_ms: int = 0
    min_cleanable_dirty_ratio: float = 0.5
    max_message_bytes: int = 8 * 1024 * 1024
    flush_messages: int = NEVER
    flush_ms: int = NEVER
    compression_type: str = "producer"
    message_timestamp_type: str = "CreateTime"
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False
    # Kafka's broker config of this name, here per topic: how long a partition leader
    # remembers an idle idempotent producer (see actors/producer_state.py).
    producer_id_expiration_ms: int = 24 * 3600 * 1000
    # rafka's own: the topic is written only by rafka's actors (a stream job's changelog
    # and repartition topics); clients get TopicAuthorizationError (docs/security.md).
    # Topics named ``__...`` are internal whatever this says.
    internal: bool = False

    @property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        return "delete" in self.cleanup_policy

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None = None) -> "LogConfig":
        """Build a config from Kafka dotted names; raise ``InvalidConfigError`` on any
        unknown key or invalid value, naming it."""
        return TOPIC_CONFIG.build(cls, config or {})

    def to_dict(self) -> dict[str, str]:
        """The config as Kafka dotted names with string values (what describe shows)."""
        out = {}
        for name, config_field in TOPIC_CONFIG.fields.items():
            value = getattr(self, config_field.key)
            out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def updated(self, changes: Mapping[str, Any]) -> "LogConfig":
        """A copy with ``changes`` (dotted names) applied and validated."""
        merged = self.to_dict()
        merged.update({k: v for k, v in changes.items()})
        return LogConfig.from_dict(merged)


def _field(name: str, kind: str, doc: str, **checks: Any) -> ConfigField:
    return ConfigField(name, kind, doc=doc, attribute=name.replace(".", "_"), **checks)


# Every topic config: its type and bounds here, its default on LogConfig.
TOPIC_CONFIG = ConfigDef([
    # Segment files use 32-bit positions in their indexes, like Kafka's.
    _field("segment.bytes", "int", "the size at which a segment is rolled", min=1024, max=2**31 - 1),
    _field("segment.ms", "int", "the age at which a segment is rolled", min=1),
    _field("segment.index.bytes", "int", "the most bytes of a segment's offset and time indexes", min=4),
    _field("index.interval.bytes", "int", "bytes of records between two index entries", min=0),
    _field("retention.ms", "int", "how long records are kept (-1: forever)", min=0, allow_never=True),
    _field("retention.bytes", "int", "the most bytes a partition keeps (-1: no limit)", min=0, allow_never=True),
    _field("cleanup.policy", "str", "delete old segments, compact by key, or both", choices=CLEANUP_POLICIES),
    _field("delete.retention.ms", "int", "how long a compacted tombstone is kept", min=0),
    _field("min.compaction.lag.ms", "int", "the least age of a record before compaction may remove it", min=0),
    _field("min.cleanable.dirty.ratio", "float", "the dirty share of a compacted log that starts a cleaning pass",
           min=0, max=1),
    _field("max.message.bytes", "int", "the largest record batch the topic accepts", min=1024),
    _field("flush.messages", "int", "fsync after this many batches (-1: never)", min=1, allow_never=True),
    _field("flush.ms", "int", "fsync after this long (-1: never)", min=0, allow_never=True),
    _field("compression.type", "str", "how batches are stored: as the producer sent them, or recompressed",
           choices=COMPRESSION_TYPES),
    _field("message.timestamp.type", "str", "the record's own time, or the time the leader appended it",
           choices=TIMESTAMP_TYPES),
    _field("min.insync.replicas", "int", "replicas that must have an acks=all write", min=1),
    _field("unclean.leader.election.enable", "bool", "elect a replica outside the ISR when none is left (may lose "
           "acknowledged records)"),
    _field("producer.id.expiration.ms", "int", "how long a leader remembers an idle idempotent producer", min=1),
    ConfigField("rafka.internal", "bool", doc="written only by rafka's actors (docs/security.md)", attribute="internal"),
], subject="topic config", strict=True).with_defaults_of(LogConfig)
