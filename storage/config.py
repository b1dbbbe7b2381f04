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

from rafka.errors import InvalidConfigError

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
        values: dict[str, Any] = {}
        for key, raw in (config or {}).items():
            spec = _SPECS.get(key)
            if spec is None:
                raise InvalidConfigError(
                    f"unknown topic config {key!r}; known: {', '.join(sorted(_SPECS))}"
                )
            values[spec.field] = spec.parse(key, raw)
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        """The config as Kafka dotted names with string values (what describe shows)."""
        out = {}
        for name, spec in _SPECS.items():
            value = getattr(self, spec.field)
            out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def updated(self, changes: Mapping[str, Any]) -> "LogConfig":
        """A copy with ``changes`` (dotted names) applied and validated."""
        merged = self.to_dict()
        merged.update({k: v for k, v in changes.items()})
        return LogConfig.from_dict(merged)


@dataclasses.dataclass(frozen=True)
class _Spec:
    field: str
    kind: type
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None
    allow_never: bool = False

    def parse(self, key: str, raw: Any) -> Any:
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise InvalidConfigError(f"topic config {key!r} must be true or false, got {raw!r}")
        if self.kind is float:
            return self._parse_float(key, raw)
        if self.kind is str:
            if not isinstance(raw, str) or raw not in (self.choices or ()):
                raise InvalidConfigError(
                    f"topic config {key!r} must be one of {', '.join(self.choices or ())}, got {raw!r}"
                )
            return raw
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise InvalidConfigError(f"topic config {key!r} must be an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise InvalidConfigError(f"topic config {key!r} must be an integer, got {raw!r}") from None
        if self.allow_never and value == NEVER:
            return value
        if self.minimum is not None and value < self.minimum:
            raise InvalidConfigError(
                f"topic config {key!r} must be at least {self.minimum}"
                + (" (or -1 for no limit)" if self.allow_never else "")
                + f", got {raw!r}"
            )
        if self.maximum is not None and value > self.maximum:
            raise InvalidConfigError(f"topic config {key!r} must be at most {self.maximum}, got {raw!r}")
        return value

    def _parse_float(self, key: str, raw: Any) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise InvalidConfigError(f"topic config {key!r} must be a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise InvalidConfigError(f"topic config {key!r} must be a number, got {raw!r}") from None
        # NaN fails both comparisons below, so it is refused with the range message.
        if not (self.minimum is None or value >= self.minimum) or not (self.maximum is None or value <= self.maximum):
            raise InvalidConfigError(
                f"topic config {key!r} must be between {self.minimum} and {self.maximum}, got {raw!r}"
            )
        return value


_SPECS: dict[str, _Spec] = {
    # Segment files use 32-bit positions in their indexes, like Kafka's.
    "segment.bytes": _Spec("segment_bytes", int, minimum=1024, maximum=2**31 - 1),
    "segment.ms": _Spec("segment_ms", int, minimum=1),
    "segment.index.bytes": _Spec("segment_index_bytes", int, minimum=4),
    "index.interval.bytes": _Spec("index_interval_bytes", int, minimum=0),
    "retention.ms": _Spec("retention_ms", int, minimum=0, allow_never=True),
    "retention.bytes": _Spec("retention_bytes", int, minimum=0, allow_never=True),
    "cleanup.policy": _Spec("cleanup_policy", str, choices=CLEANUP_POLICIES),
    "delete.retention.ms": _Spec("delete_retention_ms", int, minimum=0),
    "min.compaction.lag.ms": _Spec("min_compaction_lag_ms", int, minimum=0),
    "min.cleanable.dirty.ratio": _Spec("min_cleanable_dirty_ratio", float, minimum=0, maximum=1),
    "max.message.bytes": _Spec("max_message_bytes", int, minimum=1024),
    "flush.messages": _Spec("flush_messages", int, minimum=1, allow_never=True),
    "flush.ms": _Spec("flush_ms", int, minimum=0, allow_never=True),
    "compression.type": _Spec("compression_type", str, choices=COMPRESSION_TYPES),
    "message.timestamp.type": _Spec("message_timestamp_type", str, choices=TIMESTAMP_TYPES),
    "min.insync.replicas": _Spec("min_insync_replicas", int, minimum=1),
    "unclean.leader.election.enable": _Spec("unclean_leader_election_enable", bool),
    "producer.id.expiration.ms": _Spec("producer_id_expiration_ms", int, minimum=1),
    "rafka.internal": _Spec("internal", bool),
}
