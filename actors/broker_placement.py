"""Where brokers run: the one place that starts a broker actor on a Ray node, and the
choice of broker ids for nodes that have none.

``launch`` is the only code that creates broker actors. The controller calls it for
``Cluster.start``, ``Cluster.add_broker`` and, in per-node mode, for every Ray node that
joins later, so every broker gets the same options: named ``broker-<id>`` in the
cluster's namespace, detached (it outlives the driver that started it), pinned to its
node with a *hard* node-affinity strategy (its data dir is on that node's disk, so it
must never run elsewhere), restarted by Ray after a crash (``max_restarts=-1``), and
``num_cpus=0`` (a broker mostly waits; a CPU each would let a 2-core node hold only two
actors).

Broker identity follows Kafka's (``broker.id`` kept next to the data): broker ``i`` keeps
its data in ``<data_dir>/broker-<i>``, whose ``meta.json`` names ``i``. A node that
joins without a broker takes over a broker whose Ray node is gone only if that broker's
data dir is on the joining node's disk (the machine came back, or the data dir is on
shared storage); otherwise it gets a new id. It never takes an old id without the data:
an empty broker under an id an ISR still names could be elected leader and lose
acknowledged records.

Nothing here holds state; the controller serializes its own calls (one placement at a
time). Two controllers may still place at once: a deposed one whose placement was in
flight when it lost the quorum, or the same voter across a lost and regained leadership.
``start`` therefore takes a ``fence`` that the controller raises from once it is no longer
the active controller of the epoch the placement began in (checked before each broker is
killed or created), and an actor of a broker's name that appears between freeing the
name and creating the broker fails the call with a retriable ``ActorUnavailableError``
(the caller's retry finds the brokers as they are then; every placement is idempotent).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors import names
from rafka.actors.broker import META_FILE, Broker
from rafka.errors import ActorUnavailableError

BROKER_DIRECTORY_PREFIX = "broker-"
# Bounds on starting brokers: a node may first have to start a worker process, which
# takes seconds on a busy machine; past these the attempt fails (and the controller's
# node watch tries again).
BROKER_START_TIMEOUT_S = 120.0
NODE_PROBE_TIMEOUT_S = 60.0
NAME_RELEASE_TIMEOUT_S = 10.0


def broker_directory(data_dir: str, broker_id: int) -> str:
    """Where broker ``broker_id`` of a cluster with data dir ``data_dir`` keeps its logs
    (the same path on every node)."""
    return os.path.join(data_dir, f"{BROKER_DIRECTORY_PREFIX}{broker_id}")


def launch(broker_id: int, node_id: str, data_dir: str, namespace: str) -> ray.actor.ActorHandle:
    """Create broker ``broker_id`` on Ray node ``node_id`` (keeping its data in
    ``broker_directory(data_dir, broker_id)``). Returns at once; the broker is up when a
    call to it answers. Raises ValueError if an actor of that name exists."""
    return (
        ray.remote(Broker)
        .options(name=names.broker(broker_id), namespace=namespace, lifetime="detached", num_cpus=0,
                 max_restarts=-1, max_concurrency=1000,
                 scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        .remote(broker_id, broker_directory(data_dir, broker_id), namespace)
    )


def alive_node_ids() -> list[str]:
    """The ids of the Ray nodes alive now, sorted (one GCS call, well under 1 ms on a
    small cluster)."""
    return sorted(node["NodeID"] for node in ray.nodes() if node["Alive"])


def stored_broker_ids(data_dir: str) -> list[int]:
    """The broker ids whose data dir is under ``data_dir`` on this machine: directories
    ``broker-<i>`` whose ``meta.json`` says ``i``. Unreadable ones do not count."""
    try:
        entries = os.listdir(data_dir)
    except OSError:
        return []
    found = []
    for entry in entries:
        suffix = entry[len(BROKER_DIRECTORY_PREFIX):]
        if not entry.startswith(BROKER_DIRECTORY_PREFIX) or not suffix.isdigit():
            continue
        try:
            with open(os.path.join(data_dir, entry, META_FILE)) as handle:
                stored_id = json.load(handle)["broker_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stored_id == int(suffix):
            found.append(stored_id)
    return sorted(found)


def probe_stored_broker_ids(node_id: str, data_dir: str) -> ray.ObjectRef:
    """``stored_broker_ids(data_dir)`` run on node ``node_id`` (its disk, not ours)."""
    return (
        ray.remote(stored_broker_ids)
        .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        .remote(data_dir)
    )


def choose_broker_ids(nodes_without_broker: list[str], orphaned_ids: list[int],
                      stored_ids_by_node: dict[str, list[int]], next_id: int) -> list[tuple[int, str]]:
    """One ``(broker_id, node_id)`` placement per node in ``nodes_without_broker``, in
    that order. A node takes the lowest id of ``orphaned_ids`` (brokers whose Ray node
    is gone) that ``stored_ids_by_node[node]`` says it holds the data of and that no
    earlier node took; otherwise the next new id counting up from ``next_id``."""
    available = sorted(orphaned_ids)
    placements = []
    for node_id in nodes_without_broker:
        stored = set(stored_ids_by_node.get(node_id, ()))
        claim = next((broker_id for broker_id in available if broker_id in stored), None)
        if claim is None:
            claim, next_id = next_id, next_id + 1
        else:
            available.remove(claim)
        placements.append((claim, node_id))
    return placements


async def plan_per_node(registered: dict[int, str], data_dir: str, namespace: str) -> list[tuple[int, str]]:
    """The ``(broker_id, node_id)`` placements that give every alive Ray node a running
    broker, given ``registered`` (broker id -> the node it was registered on):

    * a registered broker whose node is alive but whose actor is gone for good (``rafka
      down``, a kill without restart) is started again there, under its id;
    * a node with no registered broker takes an orphaned id whose data it holds, or a
      new one (see ``choose_broker_ids``). A node that cannot be probed waits for the
      next plan rather than risk a new id for data it holds.

    Brokers Ray is restarting count as running. Empty when nothing is missing."""
    # GCS calls: off the event loop, so a slow GCS never delays the controller's heartbeats.
    alive_nodes = await asyncio.to_thread(alive_node_ids)
    running = await asyncio.to_thread(running_brokers, namespace)
    alive = set(alive_nodes)
    restarts = [(broker_id, node_id) for broker_id, node_id in sorted(registered.items())
                if node_id in alive and broker_id not in running]
    covered = {node_id for node_id in registered.values() if node_id in alive}
    missing = [node_id for node_id in alive_nodes if node_id not in covered]
    orphaned = sorted(broker_id for broker_id, node_id in registered.items() if node_id not in alive)
    stored_ids_by_node: dict[str, list[int]] = {}
    if missing and orphaned:
        probes = [_wait(probe_stored_broker_ids(node_id, data_dir), NODE_PROBE_TIMEOUT_S) for node_id in missing]
        results = await asyncio.gather(*probes, return_exceptions=True)
        stored_ids_by_node = {node_id: result for node_id, result in zip(missing, results)
                              if not isinstance(result, BaseException)}
        missing = [node_id for node_id in missing if node_id in stored_ids_by_node]
    next_id = max(registered, default=-1) + 1
    return restarts + choose_broker_ids(missing, orphaned, stored_ids_by_node, next_id)


async def start(placements: list[tuple[int, str]], data_dir: str, namespace: str,
                fence: Callable[[], None] = lambda: None) -> list[tuple[dict, str]]:
    """Start the brokers at ``placements`` and wait until each answers; return each one's
    ``(info, incarnation)`` for the controller to register. An actor already holding a
    broker's name (a leftover of an attempt that failed, or one pinned to a node that is
    gone) is killed first. If any broker fails to come up, the ones started here are
    killed and the error raised: nothing half-started is left running.

    ``fence()`` is called before each kill and each creation and raises when the caller
    may no longer place brokers; a broker's name taken by another actor between freeing
    it and creating the broker (another placement racing this one) raises a retriable
    ``ActorUnavailableError`` naming the broker."""
    for broker_id, _ in placements:
        fence()
        await _release_name(names.broker(broker_id), namespace)
    handles = []
    try:
        for broker_id, node_id in placements:
            fence()
            try:
                # Creating a named actor is a GCS round trip: off the caller's loop (the
                # controller's also runs the Raft core, which must keep ticking).
                handles.append(await asyncio.to_thread(launch, broker_id, node_id, data_dir, namespace))
            except ValueError as error:  # ray.exceptions.ActorAlreadyExistsError
                raise ActorUnavailableError(
                    f"{names.broker(broker_id)} was created by another placement while this one started it "
                    f"(two controllers placing brokers at once); retry: placement is idempotent") from error
        infos = await asyncio.gather(*(_wait(handle.info.remote(), BROKER_START_TIMEOUT_S) for handle in handles))
        incarnations = await asyncio.gather(*(_wait(handle.heartbeat.remote(), BROKER_START_TIMEOUT_S)
                                              for handle in handles))
    except BaseException:
        for handle in handles:
            ray.kill(handle, no_restart=True)
        raise
    return list(zip(infos, incarnations))


async def _wait(ref: ray.ObjectRef, timeout_s: float):
    async def result():
        return await ref

    return await asyncio.wait_for(result(), timeout_s)


def running_brokers(namespace: str) -> set[int]:
    """The ids of the broker actors of ``namespace`` that exist (alive, or being
    restarted by Ray): one GCS call for the whole cluster."""
    return {names.broker_id_of(actor["name"]) for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["namespace"] == namespace and names.broker_id_of(actor["name"]) is not None}


async def _release_name(name: str, namespace: str) -> None:
    """Kill the actor called ``name`` if there is one, and wait until the name is free
    (Ray frees it asynchronously; creating the new actor sooner would fail)."""
    try:
        handle = await asyncio.to_thread(ray.get_actor, name, namespace=namespace)
    except ValueError:
        return
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + NAME_RELEASE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(ray.get_actor, name, namespace=namespace)
        except ValueError:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"actor {name!r} in namespace {namespace!r} still holds its name "
                       f"{NAME_RELEASE_TIMEOUT_S} s after being killed")
