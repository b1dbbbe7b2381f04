"""Connect's internal topics: compacted key → JSON value logs read back in full.

* ``__connect_configs`` (1 partition): ``connector-<name>`` → ``{"config": {...},
  "target_state": "RUNNING" | "PAUSED"}``; a tombstone deletes the connector.
* ``__connect_status`` (1 partition): ``connector-<name>`` / ``task-<name>-<id>`` → the
  last status the herder saw (state, worker, trace), so status survives a restart.
* ``__connect_offsets`` (``OFFSETS_PARTITIONS`` partitions, by key):
  ``["<connector>", {source partition}]`` → ``{source offset}``, written by source tasks
  after the records before that offset were acknowledged.

Each is internal (docs/security.md): only the herder and the tasks write to it, through
``internal_producer``; a client's produce is refused. Each is created on first use,
compacted, replicated to min(3, live brokers) brokers.
Writes are ``acks=all``; ``read_all`` returns the latest value per key (tombstones
removed), reading every partition from its start to the end offset it saw first.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from rafka.client import rpc
from rafka.client.records import TopicPartition
from rafka.errors import TopicExistsError

CONFIGS_TOPIC = "__connect_configs"
STATUS_TOPIC = "__connect_status"
OFFSETS_TOPIC = "__connect_offsets"
OFFSETS_PARTITIONS = 5
READ_TIMEOUT_S = 60.0


def encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def ensure_topic(cluster: Any, topic: str, partitions: int) -> None:
    """Create the compacted internal ``topic`` unless it exists."""
    if rpc.call_with_retries(cluster.controller.metadata, [topic])[topic] is not None:
        return
    alive = sum(1 for broker in cluster.brokers() if broker.get("alive", True))
    replication = max(1, min(3, alive))
    config = {"cleanup.policy": "compact", "min.insync.replicas": str(2 if replication >= 3 else 1)}
    try:
        rpc.call_with_retries(cluster.controller.create_topic, topic, partitions, replication, config)
    except TopicExistsError:
        pass  # another herder or task created it first


class TopicStore:
    """Reads and writes one compacted internal topic of JSON values."""

    def __init__(self, cluster: Any, topic: str, partitions: int = 1) -> None:
        self.cluster = cluster
        self.topic = topic
        ensure_topic(cluster, topic, partitions)
        self._producer = None

    def put(self, key: str, value: Any) -> None:
        """Write ``key`` → ``value`` (None is a tombstone) and wait for acks=all."""
        self.put_many({key: value})

    def put_many(self, values: dict[str, Any]) -> None:
        if not values:
            return
        if self._producer is None:
            from rafka.client.producer import internal_producer

            self._producer = internal_producer(self.cluster, acks="all", linger_ms=0)
        futures = [self._producer.send(self.topic, key=key.encode("utf-8"),
                                       value=None if value is None else encode(value))
                   for key, value in values.items()]
        self._producer.flush()
        for future in futures:
            future.result()

    def read_all(self, accept: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """The latest value of every key (for which ``accept(key)`` holds)."""
        consumer = self.cluster.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            partitions = [TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)]
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, consumer.beginning_offsets([tp])[tp])
            latest: dict[str, Any] = {}
            waiting = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
            deadline_polls = int(READ_TIMEOUT_S / 0.5)
            while waiting and deadline_polls > 0:
                deadline_polls -= 1
                for batches in consumer.poll_batches(timeout_s=0.5).values():
                    for batch in batches:
                        keys = batch.column("key").to_pylist()
                        values = batch.column("value").to_pylist()
                        for key, value in zip(keys, values):
                            if key is None:
                                continue
                            text = key.decode("utf-8")
                            if accept is not None and not accept(text):
                                continue
                            if value is None:
                                latest.pop(text, None)
                            else:
                                latest[text] = json.loads(value)
                waiting = {tp for tp in waiting if consumer.position(tp) < ends[tp]}
            if waiting:
                raise rpc.RequestTimeoutError(f"could not read {self.topic} to its end within {READ_TIMEOUT_S:.0f} s")
            return latest
        finally:
            consumer.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
