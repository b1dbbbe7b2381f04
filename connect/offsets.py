"""Source offsets: where each source partition of a connector resumes.

A source partition (a file, a table) and its offset are JSON-able dicts chosen by the
connector. ``partition_key`` is their canonical text (sorted keys, no spaces), so the same
dict always finds the same stored offset. Offsets live in ``__connect_offsets`` under the
key ``["<connector>", {source partition}]``.
"""

from __future__ import annotations

import json
from typing import Any

from rafka.connect.store import OFFSETS_PARTITIONS, OFFSETS_TOPIC, TopicStore


def partition_key(source_partition: dict) -> str:
    return json.dumps(source_partition, sort_keys=True, separators=(",", ":"))


def _record_key(connector: str, source_partition_key: str) -> str:
    return f"[{json.dumps(connector)},{source_partition_key}]"


class OffsetStore:
    """The committed source offsets of one connector."""

    def __init__(self, cluster: Any, connector: str) -> None:
        self.connector = connector
        self.store = TopicStore(cluster, OFFSETS_TOPIC, OFFSETS_PARTITIONS)
        self._prefix = f"[{json.dumps(connector)},"

    def load(self) -> dict[str, dict]:
        """``partition_key(source partition)`` → committed offset, for this connector."""
        raw = self.store.read_all(accept=lambda key: key.startswith(self._prefix))
        return {partition_key(json.loads(key)[1]): offset for key, offset in raw.items()}

    def commit(self, offsets: dict[str, dict]) -> None:
        """Store ``partition_key`` → offset for each entry, acks=all."""
        self.store.put_many({_record_key(self.connector, key): offset for key, offset in offsets.items()})

    def delete(self, keys: list[str]) -> None:
        self.store.put_many({_record_key(self.connector, key): None for key in keys})

    def close(self) -> None:
        self.store.close()
