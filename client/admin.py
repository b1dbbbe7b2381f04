"""Admin: create, list, describe, alter and delete topics.

Arguments are validated here, before any remote call, with errors that name the bad
value; the controller validates again (it is the authority) for other callers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rafka.actors.controller import validate_config, validate_count, validate_topic_name
from rafka.client import rpc
from rafka.errors import RafkaError

if TYPE_CHECKING:
    from rafka.client.cluster import Cluster


class Admin:
    def __init__(self, cluster: "Cluster") -> None:
        self._cluster = cluster
        self._controller = cluster.controller

    @staticmethod
    def _call(method, *args):
        # The controller may be restarting (Ray brings it back from its metadata log).
        return rpc.call_with_retries(method, *args)

    def create_topic(self, topic: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None) -> dict:
        """Create ``topic``; returns its description once every replica is serving.
        Raises ``TopicExistsError``, ``InvalidTopicError`` or ``InvalidConfigError``."""
        validate_topic_name(topic)
        validate_count("partitions", partitions)
        validate_count("replication_factor", replication_factor)
        config = validate_config(config)
        return self._call(self._controller.create_topic, topic, partitions, replication_factor, config)

    def delete_topic(self, topic: str) -> None:
        validate_topic_name(topic)
        self._call(self._controller.delete_topic, topic)
        self._cluster.metadata.invalidate(topic)

    def list_topics(self, include_internal: bool = False) -> list[str]:
        return self._call(self._controller.list_topics, include_internal)

    def describe_topic(self, topic: str) -> dict:
        """Partitions (leader, leader epoch, replicas, ISR) and config overrides."""
        validate_topic_name(topic)
        return self._call(self._controller.describe_topic, topic)

    def describe_configs(self, topic: str) -> dict[str, str]:
        """Every config of ``topic`` under Kafka's names, defaults included."""
        validate_topic_name(topic)
        return self._call(self._controller.describe_configs, topic)

    def alter_configs(self, topic: str, changes: dict[str, Any]) -> dict[str, str]:
        """Set configs of ``topic`` (a None value resets one to its default)."""
        validate_topic_name(topic)
        return self._call(self._controller.alter_configs, topic, changes)

    def create_partitions(self, topic: str, total: int) -> dict:
        """Grow ``topic`` to ``total`` partitions."""
        validate_topic_name(topic)
        validate_count("total", total)
        description = self._call(self._controller.create_partitions, topic, total)
        self._cluster.metadata.invalidate(topic)
        return description

    def list_offsets(self, topic: str, spec: str | int = "latest") -> dict[int, int]:
        """Per partition, the earliest offset, latest (high watermark), or the first at
        or after a timestamp (ms); -1 where none."""
        from rafka.actors.replica import EARLIEST, LATEST

        timestamp = {"earliest": EARLIEST, "latest": LATEST}.get(spec, spec) if isinstance(spec, str) else spec
        if not isinstance(timestamp, int):
            raise ValueError(f"spec must be 'earliest', 'latest' or a timestamp in ms, got {spec!r}")
        metadata = self._cluster.metadata
        metadata.refresh([topic])
        count = metadata.partition_count(topic)
        offsets = {}
        for partition in range(count):
            for attempt in range(20):
                try:
                    offsets[partition] = rpc.get(metadata.leader(topic, partition)[0].list_offset.remote(timestamp))[0]
                    break
                except RafkaError as error:
                    if not error.retriable or attempt == 19:
                        raise
                    metadata.invalidate(topic)
        return offsets
