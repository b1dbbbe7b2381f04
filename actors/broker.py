"""Broker: one per Ray node (or several on one node for local use), each with its own
data directory, creating and supervising the partition replicas placed on it.

Data directory layout::

    <data_dir>/meta.json            {"broker_id": N}: the id survives restarts
    <data_dir>/<topic>-<partition>/ one replica's log (see storage/log.py), with the
                                    topic's id in partition.metadata (actors/replica.py)
    <data_dir>/<topic>-<partition>.stray-<topic id>/
                                    data of a deleted incarnation of the topic, moved aside
                                    by a replica of a newer one; removed by remove_deleted

Topic ids (docs/topic-ids.md): every spec names the topic's id. A replica actor still
running for another id (an old incarnation of the topic: its delete never reached this
broker) is killed and started again, and the new one moves the old data aside.
``remove_replicas`` removes only the id it is given, so a delete that arrives late never
touches a newer topic of the same name; ``remove_deleted`` finishes the deletes this
broker missed while it was down (the controller calls it when the broker returns).

Replica actors are named (see names.py), detached, pinned to the broker's node with a
hard node-affinity scheduling strategy, and restarted by Ray if they crash
(``max_restarts=-1``); a restarted replica recovers its log from disk. The broker never
holds records itself.

The broker publishes ``rafka_broker_replicas`` (see metrics.py) on every heartbeat.

Each broker also serves Kafka's wire protocol (``rafka.wire``) on a TCP port of its node,
in its own event loop, started with its first heartbeat and stopped by ``stop``; the
listener's settings come from ``wire.config`` (see docs/wire.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import uuid

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors import metrics, names
from rafka.actors.process import tune_actor_process
from rafka.actors.replica import STRAY_SUFFIX, PartitionReplica, read_topic_id
from rafka.errors import StaleControllerEpochError
from rafka.storage.checkpoint import write_atomically
from rafka.wire import config as wire_config, tls as wire_tls
from rafka.wire.handlers import KafkaApis
from rafka.wire.server import WireServer

META_FILE = "meta.json"
CONTROLLER_EPOCH_FILE = "controller_epoch.json"
HEARTBEAT_INTERVAL_S = 0.5
READY_TIMEOUT_S = 60.0
logger = logging.getLogger(__name__)


async def _await(ref):
    return await ref


def replica_directory(data_dir: str, topic: str, partition: int) -> str:
    return os.path.join(data_dir, f"{topic}-{partition}")


class Broker:
    def __init__(self, broker_id: int, data_dir: str, namespace: str) -> None:
        tune_actor_process()
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        meta_path = os.path.join(self.data_dir, META_FILE)
        if os.path.exists(meta_path):
            with open(meta_path) as handle:
                stored_id = json.load(handle)["broker_id"]
            if stored_id != broker_id:
                raise ValueError(f"data dir {self.data_dir} belongs to broker {stored_id}, not {broker_id}")
        else:
            with open(meta_path, "w") as handle:
                json.dump({"broker_id": broker_id}, handle)
        self.broker_id = broker_id
        self.namespace = namespace
        # The highest controller epoch seen, kept in the data dir so a restarted broker
        # still refuses a deposed controller (docs/controller-quorum.md).
        self._controller_epoch_path = os.path.join(self.data_dir, CONTROLLER_EPOCH_FILE)
        try:
            with open(self._controller_epoch_path) as handle:
                self.controller_epoch = int(json.load(handle)["controller_epoch"])
        except FileNotFoundError:
            self.controller_epoch = -1
        self.node_id = ray.get_runtime_context().get_node_id()
        self._replicas: dict[tuple[str, int], ray.actor.ActorHandle] = {}
        # Tells the controller's heartbeat that Ray restarted this broker.
        self.incarnation = uuid.uuid4().hex
        self._heartbeats: asyncio.Task | None = None
        self._creating: dict[tuple[str, int], asyncio.Future] = {}
        self._wires: dict[str, WireServer] = {}  # listener name -> its server
        self._wire_started: asyncio.Task | None = None
        self._wire_advertised_hosts: dict[str, str] = {}
        self._wire_apis: KafkaApis | None = None

    def info(self) -> dict:
        return {"broker_id": self.broker_id, "node_id": self.node_id, "data_dir": self.data_dir,
                "host": ray.util.get_node_ip_address()}

    async def heartbeat(self) -> str:
        self._start_heartbeats()
        return self.incarnation

    def _start_heartbeats(self) -> None:
        if self._heartbeats is None:
            self._heartbeats = asyncio.get_running_loop().create_task(self._heartbeat_loop())
        if self._wire_started is None:
            self._wire_started = asyncio.get_running_loop().create_task(self._start_wire())

    # -- Kafka wire protocol ---------------------------------------------------------

    async def _start_wire(self) -> None:
        """Start the Kafka listeners as ``wire.config`` says (a failure is logged and
        leaves the broker without them: its replicas still serve rafka's own clients)."""
        try:
            settings = await asyncio.to_thread(wire_config.load, self.namespace)
            if not settings.enabled:
                return
            apis = self._wire_apis = KafkaApis(self, settings)
            ssl_context = None
            for listener in settings.parsed_listeners():
                if listener.uses_tls and ssl_context is None:
                    ssl_context = await asyncio.to_thread(wire_tls.server_context, settings)
                server = WireServer(apis, listener.host, listener.port_for(self.broker_id),
                                    max_frame_bytes=settings.max_frame_bytes, idle_timeout_s=settings.idle_timeout_s,
                                    max_connections=settings.max_connections, listener_name=listener.name,
                                    sasl=listener.uses_sasl, ssl_context=ssl_context if listener.uses_tls else None)
                await server.start()
                self._wires[listener.name] = server
                self._wire_advertised_hosts[listener.name] = settings.advertised_host or (
                    ray.util.get_node_ip_address() if listener.host in ("0.0.0.0", "::") else listener.host)
        except Exception as error:  # noqa: BLE001 - the broker's other duties go on
            logger.error("broker %s: Kafka listener not started: %r", self.broker_id, error)

    def wire_listener_address(self, listener: str | None = None) -> tuple[str, int] | None:
        """(advertised host, port) of the named listener (default: the first one)."""
        name = listener if listener is not None else next(iter(self._wires), None)
        server = self._wires.get(name) if name is not None else None
        return (self._wire_advertised_hosts[name], server.port) if server is not None else None

    def security_changed(self) -> None:
        """The controller's SCRAM credentials or ACLs changed: the listeners reload them."""
        if self._wire_apis is not None:
            self._wire_apis.security.invalidate()

    def wire_listener_addresses(self) -> dict[str, tuple[str, int]]:
        return {name: (self._wire_advertised_hosts[name], server.port) for name, server in self._wires.items()}

    async def wire_address(self) -> tuple[str, int] | None:
        """(advertised host, port) of this broker's first Kafka listener once it listens;
        None when it is disabled or failed to start."""
        self._start_heartbeats()
        await asyncio.shield(self._wire_started)
        return self.wire_listener_address()

    async def wire_addresses(self) -> dict[str, tuple[str, int]]:
        """Listener name (its protocol) -> (advertised host, port), once they listen."""
        self._start_heartbeats()
        await asyncio.shield(self._wire_started)
        return self.wire_listener_addresses()

    def local_replica(self, topic: str, partition: int) -> ray.actor.ActorHandle | None:
        return self._replicas.get((topic, partition))

    async def _heartbeat_loop(self) -> None:
        """Tell the controller we are alive, every HEARTBEAT_INTERVAL_S; refresh the
        broker's gauge on the way (Ray drops a gauge that is not set again)."""
        while True:
            metrics.set_broker_replicas(self.broker_id, len(self._replicas))
            try:
                controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
                await controller.broker_heartbeat.remote(self.broker_id, self.incarnation)
            except Exception:  # noqa: BLE001 - the controller may be restarting
                pass
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def ensure_replicas(self, specs: list[dict]) -> list[dict]:
        """Start (or find, if already running) the replicas in ``specs`` — each a dict of
        topic, partition, config, leader_epoch — and wait until every one has opened its
        log. Returns their status. Specs from a controller epoch older than one seen
        raise StaleControllerEpochError before anything starts."""
        self._check_controller_epoch([spec.get("controller_epoch") for spec in specs])
        self._start_heartbeats()
        handles = [await self._ensure(spec) for spec in specs]
        results = await asyncio.gather(*(asyncio.wait_for(_await(handle.ready.remote()), READY_TIMEOUT_S)
                                         for handle in handles), return_exceptions=True)
        for index, result in enumerate(results):
            spec = specs[index]
            stale = (not isinstance(result, Exception) and spec.get("topic_id") is not None
                     and result.get("topic_id") != spec["topic_id"])
            if stale:
                logger.warning("broker %s: replica of %s-%s is of topic id %s, not %s (a deleted incarnation); "
                               "replacing it", self.broker_id, spec["topic"], spec["partition"], result.get("topic_id"),
                               spec["topic_id"])
            if isinstance(result, Exception) or stale:
                # A replica actor registered under its name but dead for good (say it was
                # pinned to a node that is gone), or of an old incarnation: replace it.
                ray.kill(handles[index], no_restart=True)
                self._replicas.pop((spec["topic"], spec["partition"]), None)
                await asyncio.sleep(0.5)
                results[index] = await (await self._ensure(spec, fresh=True)).ready.remote()
        await asyncio.to_thread(self._remove_strays, specs)
        return list(results)

    def _check_controller_epoch(self, epochs: list[int | None]) -> None:
        epochs = [epoch for epoch in epochs if epoch is not None]
        if not epochs:
            return
        epoch = min(epochs)
        if epoch < self.controller_epoch:
            raise StaleControllerEpochError(
                f"broker {self.broker_id}: request from controller epoch {epoch} refused; epoch "
                f"{self.controller_epoch} is newer (that controller was deposed)")
        if max(epochs) > self.controller_epoch:
            self.controller_epoch = max(epochs)
            write_atomically(self._controller_epoch_path,
                             json.dumps({"controller_epoch": self.controller_epoch}))

    def _remove_strays(self, specs: list[dict]) -> None:
        """Remove the data a replica of ``specs`` moved aside (``<dir>.stray-<id>``): it
        belongs to an older incarnation of a topic whose name now has another id, so it is
        deleted data that is never read (docs/topic-ids.md)."""
        prefixes = tuple(f"{spec['topic']}-{spec['partition']}{STRAY_SUFFIX}" for spec in specs)
        for name in os.listdir(self.data_dir):
            if name.startswith(prefixes):
                logger.info("broker %s: removing %s (data of a deleted incarnation)", self.broker_id, name)
                shutil.rmtree(os.path.join(self.data_dir, name), ignore_errors=True)

    async def _ensure(self, spec: dict, fresh: bool = False) -> ray.actor.ActorHandle:
        key = (spec["topic"], spec["partition"])
        handle = self._replicas.get(key)
        if handle is not None:
            return handle
        # Creating a named actor waits for the GCS to register the name: on a busy
        # machine that takes long enough, times a dozen replicas, to starve the
        # heartbeat loop, so do it on a thread and keep this event loop free.
        pending = self._creating.get(key)
        if pending is not None:  # a concurrent call is creating it
            return await asyncio.shield(pending)
        pending = self._creating[key] = asyncio.ensure_future(asyncio.to_thread(self._find_or_create, spec, fresh))
        try:
            handle = await pending
        finally:
            del self._creating[key]
        self._replicas[key] = handle
        self._watch(key, handle)
        return handle

    def _find_or_create(self, spec: dict, fresh: bool) -> ray.actor.ActorHandle:
        name = names.replica(spec["topic"], spec["partition"], self.broker_id)
        try:
            if fresh:
                raise ValueError(name)
            handle = ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            handle = (
                ray.remote(PartitionReplica)
                .options(
                    name=name,
                    namespace=self.namespace,
                    lifetime="detached",
                    num_cpus=0,
                    max_restarts=-1,
                    max_concurrency=1000,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(self.node_id, soft=False),
                )
                .remote(
                    spec["topic"],
                    spec["partition"],
                    self.broker_id,
                    replica_directory(self.data_dir, spec["topic"], spec["partition"]),
                    spec["config"],
                    spec["state"],
                    self.namespace,
                    spec["replica_lag_time_max_ms"],
                    topic_id=spec.get("topic_id"),
                )
            )
        return handle

    def _watch(self, key: tuple[str, int], handle: ray.actor.ActorHandle) -> None:
        """Report the replica's death to the controller the moment Ray notices it, so a
        dead leader is replaced without waiting for Ray to restart it."""
        async def watch() -> None:
            try:
                await handle.watch.remote()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - any failure of the pending call means it died
                if self._replicas.get(key) is not handle:
                    return  # removed on purpose
                try:
                    controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
                    await controller.replica_failed.remote(key[0], key[1], self.broker_id)
                except Exception:  # noqa: BLE001 - the controller's own checks remain
                    pass
                await asyncio.sleep(1.0)
                if self._replicas.get(key) is handle:
                    self._watch(key, handle)  # Ray restarts it; keep watching

        asyncio.get_running_loop().create_task(watch())

    async def update_config(self, topic: str, config: dict[str, str]) -> None:
        await asyncio.gather(*(
            handle.update_config.remote(config) for (name, _), handle in self._replicas.items() if name == topic
        ))

    async def remove_replicas(self, topic: str, delete: bool, topic_id: str | None = None) -> int:
        """Close (and with ``delete`` remove the data of) this broker's replicas of
        ``topic``; given ``topic_id``, only replicas of that incarnation of the topic."""
        doomed = [(key, handle) for key, handle in self._replicas.items() if key[0] == topic]
        if topic_id is not None:
            ids = await asyncio.gather(*(_await(handle.__ray_call__.remote(lambda replica: replica.topic_id))
                                         for _, handle in doomed), return_exceptions=True)
            doomed = [entry for entry, held in zip(doomed, ids) if held == topic_id or isinstance(held, Exception)]
        await asyncio.gather(*(handle.close.remote(delete) for _, handle in doomed), return_exceptions=True)
        for key, handle in doomed:
            ray.kill(handle, no_restart=True)
            del self._replicas[key]
        if delete and topic_id is not None:
            await asyncio.to_thread(self._remove_data_of, {topic_id})
        return len(doomed)

    async def remove_deleted(self, topic_ids: list[str]) -> int:
        """Finish deletes this broker missed: stop replica actors still running for any of
        ``topic_ids`` and remove their data (stray copies included). Returns how many
        directories it removed."""
        deleted = set(topic_ids)
        if not deleted:
            return 0
        for key, handle in list(self._replicas.items()):
            try:
                held = await asyncio.wait_for(_await(handle.__ray_call__.remote(lambda replica: replica.topic_id)),
                                              READY_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a dead one is dealt with by the directory scan
                continue
            if held in deleted:
                ray.kill(handle, no_restart=True)
                del self._replicas[key]
        return await asyncio.to_thread(self._remove_data_of, deleted)

    def _remove_data_of(self, topic_ids: set[str]) -> int:
        """Remove every replica directory under the data dir whose topic id is in
        ``topic_ids``, and any still-running detached replica actor of it on this broker."""
        removed = 0
        for name in os.listdir(self.data_dir):
            path = os.path.join(self.data_dir, name)
            if not os.path.isdir(path):
                continue
            stem, _, stray_id = name.partition(STRAY_SUFFIX)
            held = stray_id or read_topic_id(path)
            if held not in topic_ids:
                continue
            if not stray_id:
                topic, _, partition = stem.rpartition("-")
                try:
                    handle = ray.get_actor(names.replica(topic, int(partition), self.broker_id), namespace=self.namespace)
                    held_by_actor = ray.get(handle.__ray_call__.remote(lambda replica: replica.topic_id),
                                            timeout=READY_TIMEOUT_S)
                    if held_by_actor in topic_ids:
                        ray.kill(handle, no_restart=True)
                except (ValueError, ray.exceptions.RayError):
                    pass  # no such actor (or it is dead): only the directory is left
            logger.info("broker %s: removing %s (deleted topic id %s)", self.broker_id, path, held)
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        return removed

    async def stop(self) -> None:
        """Stop the Kafka listener, close every replica (flushing its log) and stop it;
        the data stays."""
        for server in list(self._wires.values()):
            await server.stop()
        self._wires.clear()
        for topic in {key[0] for key in self._replicas}:
            await self.remove_replicas(topic, delete=False)
