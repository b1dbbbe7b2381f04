"""Controller: the cluster's metadata — brokers, topics, partition placement, leaders and
leader epochs — and the one place that changes it.

Every change is first made durable in the ``MetadataStore`` (an fsynced metadata log plus
snapshots in ``<data_dir>/controller``), then pushed to the brokers it concerns, then
acknowledged. The actor runs with ``max_restarts=-1``: after a crash Ray restarts it and
it rebuilds the same state from its store; brokers and replicas keep running meanwhile,
and clients keep using the leaders they know.

Placement follows Kafka's: partition p's replicas are on consecutive brokers starting at
a random offset, so replicas of one partition are always on distinct brokers and leaders
spread evenly. The first replica is the preferred leader.

Liveness: a background task pings every broker each ``heartbeat_interval_s``. A broker
that answers with a new incarnation (Ray restarted it) is sent its replicas again; one
that misses ``heartbeat_misses_max`` pings in a row is reported dead in ``brokers()``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import uuid

import ray

from rafka.actors import names
from rafka.actors.metadata_store import MetadataStore
from rafka.errors import (
    ClusterError,
    InvalidConfigError,
    InvalidTopicError,
    TopicExistsError,
    TopicNotFoundError,
)
from rafka.storage import LogConfig

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
TOPIC_NAME_MAX = 249
PRODUCER_ID_BLOCK = 1000


def validate_topic_name(topic: object) -> str:
    if not isinstance(topic, str):
        raise InvalidTopicError(f"topic name must be a str, got {topic!r}")
    if not topic or topic in (".", "..") or len(topic) > TOPIC_NAME_MAX or not TOPIC_NAME.match(topic):
        raise InvalidTopicError(
            f"invalid topic name {topic!r}: use 1-{TOPIC_NAME_MAX} of the characters a-z A-Z 0-9 . _ -"
        )
    return topic


def validate_count(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTopicError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise InvalidTopicError(f"{name} must be at least {minimum}, got {value}")
    return value


def validate_config(config: object) -> dict[str, str]:
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidConfigError(f"topic config must be a dict of Kafka config names, got {config!r}")
    LogConfig.from_dict(config)  # raises InvalidConfigError naming a bad key or value
    return {str(key): str(value).lower() if isinstance(value, bool) else str(value) for key, value in config.items()}


class Controller:
    def __init__(self, data_dir: str, namespace: str, heartbeat_interval_s: float = 1.0,
                 heartbeat_misses_max: int = 3) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.namespace = namespace
        self.store = MetadataStore(os.path.join(self.data_dir, "controller"))
        self.heartbeat_interval_s = heartbeat_interval_s
        self.heartbeat_misses_max = heartbeat_misses_max
        self._broker_handles: dict[int, ray.actor.ActorHandle] = {}
        self._incarnations: dict[int, str] = {}
        self._misses: dict[int, int] = {}
        self._producer_ids: list[int] = []
        self._heartbeats: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def state(self) -> dict:
        return self.store.state

    def _mutex(self) -> asyncio.Lock:
        # Admin operations await brokers midway; one at a time keeps them from interleaving.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _start_heartbeats(self) -> None:
        if self._heartbeats is None:
            self._heartbeats = asyncio.get_running_loop().create_task(self._heartbeat_loop())

    # -- brokers ---------------------------------------------------------------------

    async def add_broker(self, broker_id: int, info: dict, incarnation: str) -> None:
        """Register (or re-register) a broker and start the replicas placed on it."""
        self._start_heartbeats()
        async with self._mutex():
            known = self.state["brokers"].get(str(broker_id))
            record = {"type": "register_broker", "broker_id": broker_id, "node_id": info["node_id"],
                      "data_dir": info["data_dir"], "host": info["host"]}
            if known is None or any(known.get(key) != record[key] for key in ("node_id", "data_dir", "host")):
                self.store.apply(record)
            self._incarnations[broker_id] = incarnation
            self._misses[broker_id] = 0
            await self._ensure_on_broker(broker_id)

    def _broker(self, broker_id: int) -> ray.actor.ActorHandle:
        handle = self._broker_handles.get(broker_id)
        if handle is None:
            handle = ray.get_actor(names.broker(broker_id), namespace=self.namespace)
            self._broker_handles[broker_id] = handle
        return handle

    def _specs_for(self, broker_id: int, topic: str | None = None) -> list[dict]:
        specs = []
        for name, topic_state in self.state["topics"].items():
            if topic is not None and name != topic:
                continue
            for partition, partition_state in enumerate(topic_state["partitions"]):
                if broker_id in partition_state["replicas"]:
                    specs.append({"topic": name, "partition": partition, "config": topic_state["config"],
                                  "leader_epoch": partition_state["leader_epoch"]})
        return specs

    async def _ensure_on_broker(self, broker_id: int, topic: str | None = None) -> None:
        specs = self._specs_for(broker_id, topic)
        if specs:
            await self._broker(broker_id).ensure_replicas.remote(specs)

    def brokers(self) -> list[dict]:
        return [
            {**info, "broker_id": int(broker_id), "alive": self._misses.get(int(broker_id), 0) < self.heartbeat_misses_max
             and int(broker_id) in self._incarnations}
            for broker_id, info in sorted(self.state["brokers"].items(), key=lambda item: int(item[0]))
        ]

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            for broker_id in [int(key) for key in self.state["brokers"]]:
                try:
                    handle = self._broker(broker_id)
                    incarnation = await asyncio.wait_for(handle.heartbeat.remote(), self.heartbeat_interval_s)
                except Exception:  # noqa: BLE001 - any failure to answer is a missed heartbeat
                    self._misses[broker_id] = self._misses.get(broker_id, 0) + 1
                    self._broker_handles.pop(broker_id, None)
                    continue
                self._misses[broker_id] = 0
                if self._incarnations.get(broker_id) != incarnation:
                    # Ray restarted the broker (or the controller): hand it its replicas again.
                    self._incarnations[broker_id] = incarnation
                    try:
                        await self._ensure_on_broker(broker_id)
                    except Exception:  # noqa: BLE001 - retried on the next beat
                        self._incarnations.pop(broker_id, None)

    # -- topics ----------------------------------------------------------------------

    async def create_topic(self, topic: str, partitions: int, replication_factor: int,
                           config: dict[str, str] | None) -> dict:
        self._start_heartbeats()
        validate_topic_name(topic)
        validate_count("partitions", partitions)
        validate_count("replication_factor", replication_factor)
        config = validate_config(config)
        async with self._mutex():
            if topic in self.state["topics"]:
                raise TopicExistsError(f"topic {topic!r} already exists")
            broker_ids = [broker["broker_id"] for broker in self.brokers() if broker["alive"]]
            if replication_factor > len(broker_ids):
                raise InvalidTopicError(
                    f"replication_factor {replication_factor} is more than the {len(broker_ids)} live brokers"
                )
            if replication_factor > 1:
                raise InvalidTopicError(
                    f"replication_factor {replication_factor}: this rafka version serves replication factor 1 only"
                )
            assignments = _assign(broker_ids, 0, partitions, replication_factor)
            self.store.apply({
                "type": "create_topic", "topic": topic, "topic_id": uuid.uuid4().hex, "config": config,
                "assignments": assignments, "leaders": [replicas[0] for replicas in assignments],
                "leader_epochs": [0] * partitions, "isr": assignments,
            })
            await self._ensure_topic(topic)
            return self.describe_topic(topic)

    async def _ensure_topic(self, topic: str) -> None:
        brokers = {b for p in self.state["topics"][topic]["partitions"] for b in p["replicas"]}
        await asyncio.gather(*(self._ensure_on_broker(broker_id, topic) for broker_id in brokers))

    def _topic(self, topic: str) -> dict:
        topic_state = self.state["topics"].get(topic)
        if topic_state is None:
            raise TopicNotFoundError(f"unknown topic {topic!r}")
        return topic_state

    async def delete_topic(self, topic: str) -> None:
        async with self._mutex():
            topic_state = self._topic(topic)
            brokers = {b for p in topic_state["partitions"] for b in p["replicas"]}
            self.store.apply({"type": "delete_topic", "topic": topic})
            await asyncio.gather(*(self._broker(b).remove_replicas.remote(topic, True) for b in brokers),
                                 return_exceptions=True)

    def list_topics(self, include_internal: bool = False) -> list[str]:
        return sorted(name for name in self.state["topics"] if include_internal or not name.startswith("__"))

    def describe_topic(self, topic: str) -> dict:
        topic_state = self._topic(topic)
        return {
            "topic": topic,
            "topic_id": topic_state.get("topic_id"),
            "partitions": [dict(partition=index, **partition) for index, partition in enumerate(topic_state["partitions"])],
            "config": dict(topic_state["config"]),
        }

    def describe_configs(self, topic: str) -> dict[str, str]:
        """Every config of the topic: its overrides on top of the defaults."""
        return LogConfig.from_dict(self._topic(topic)["config"]).to_dict()

    async def alter_configs(self, topic: str, changes: dict[str, str | None]) -> dict[str, str]:
        """Set (or, with a None value, reset to default) configs of ``topic``."""
        async with self._mutex():
            topic_state = self._topic(topic)
            if not isinstance(changes, dict):
                raise InvalidConfigError(f"config changes must be a dict, got {changes!r}")
            config = dict(topic_state["config"])
            for key, value in changes.items():
                if value is None:
                    config.pop(key, None)
                else:
                    config[key] = value
            config = validate_config(config)
            self.store.apply({"type": "alter_config", "topic": topic, "config": config})
            brokers = {b for p in topic_state["partitions"] for b in p["replicas"]}
            await asyncio.gather(*(self._broker(b).update_config.remote(topic, config) for b in brokers))
            return self.describe_configs(topic)

    async def create_partitions(self, topic: str, total: int) -> dict:
        """Grow ``topic`` to ``total`` partitions (Kafka never shrinks a topic)."""
        async with self._mutex():
            topic_state = self._topic(topic)
            current = len(topic_state["partitions"])
            validate_count("partitions", total)
            if total <= current:
                raise InvalidTopicError(f"topic {topic!r} has {current} partitions; a new count must be more, got {total}")
            broker_ids = [broker["broker_id"] for broker in self.brokers() if broker["alive"]]
            replication_factor = len(topic_state["partitions"][0]["replicas"])
            if replication_factor > len(broker_ids):
                raise ClusterError(f"only {len(broker_ids)} live brokers for replication factor {replication_factor}")
            assignments = _assign(broker_ids, current, total - current, replication_factor)
            self.store.apply({
                "type": "add_partitions", "topic": topic, "assignments": assignments,
                "leaders": [replicas[0] for replicas in assignments], "leader_epochs": [0] * len(assignments),
                "isr": assignments,
            })
            await self._ensure_topic(topic)
            return self.describe_topic(topic)

    def metadata(self, topics: list[str] | None = None) -> dict:
        """What clients need to route requests: per topic, per partition, the leader
        broker, its epoch and the replica set. Unknown topics map to None."""
        wanted = topics if topics is not None else self.list_topics()
        return {
            topic: (
                [dict(partition=index, **partition) for index, partition in enumerate(self.state["topics"][topic]["partitions"])]
                if topic in self.state["topics"] else None
            )
            for topic in wanted
        }

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, even across controller restarts."""
        if not self._producer_ids:
            start = self.state["next_producer_id"]
            self.store.apply({"type": "allocate_producer_ids", "next_producer_id": start + PRODUCER_ID_BLOCK})
            self._producer_ids = list(range(start + PRODUCER_ID_BLOCK - 1, start - 1, -1))
        return self._producer_ids.pop()

    async def shutdown(self) -> None:
        """Stop every broker's replicas (flushing their logs); the caller then kills actors."""
        if self._heartbeats is not None:
            self._heartbeats.cancel()
        await asyncio.gather(*(self._broker(int(b)).stop.remote() for b in self.state["brokers"]), return_exceptions=True)
        self.store.close()

    def ping(self) -> str:
        return "ok"


def _assign(broker_ids: list[int], first_partition: int, count: int, replication_factor: int) -> list[list[int]]:
    ordered = sorted(broker_ids)
    start = random.randrange(len(ordered))
    return [
        [ordered[(start + partition + replica) % len(ordered)] for replica in range(replication_factor)]
        for partition in range(first_partition, first_partition + count)
    ]
