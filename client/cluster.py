"""Cluster: start, connect to, and shut down a rafka cluster on Ray.

``Cluster.start(data_dir=..., brokers=N)`` uses the Ray instance this process is
connected to, or starts an embedded local one when there is none (and then owns it).
``Cluster.start(address="auto")`` connects to a running Ray cluster and runs one broker on
every Ray node, including nodes that join later (the controller watches Ray's node list).
``Cluster.connect()`` attaches to a rafka cluster someone else started. Every rafka actor
is a named, detached actor in one Ray namespace.

Every broker serves Kafka's wire protocol (``rafka.wire``); ``bootstrap_servers`` is the
"host:port,..." list any Kafka client takes (see docs/wire.md).

``shutdown()`` stops what this handle started — the rafka actors when it started them,
and Ray when it started Ray — and otherwise only disconnects.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors import broker_placement, names
from rafka.actors.controller import NODE_WATCH_INTERVAL_S, start_voter
from rafka.actors.controller_quorum import plan_quorum
from rafka.actors.controller_router import ControllerRouter
from rafka.client import rpc
from rafka.client.metadata import Metadata
from rafka.errors import ClusterError, RafkaError
from rafka.wire import config as wire_config

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".rafka", "data")
# How long Cluster.start waits for the controller quorum to elect an active controller
# and take its first calls (voters are processes Ray starts; slow on a loaded machine).
START_TIMEOUT_S = 300.0


class Cluster:
    def __init__(self, namespace: str, controller: ray.actor.ActorHandle, owns_actors: bool, owns_ray: bool) -> None:
        self.namespace = namespace
        self.controller = controller
        self._owns_actors = owns_actors
        self._owns_ray = owns_ray
        self._metadata: Metadata | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    def start(cls, data_dir: str | None = None, brokers: int | None = None, address: str | None = None,
              namespace: str = names.DEFAULT_NAMESPACE, *, broker_session_timeout_ms: int = 6000,
              replica_lag_time_max_ms: int = 30_000, leader_rebalance_interval_s: float = 10.0,
              node_watch_interval_s: float = NODE_WATCH_INTERVAL_S, wire_port: int | None = wire_config.DEFAULT_PORT,
              wire_host: str | None = None, wire_advertised_host: str | None = None,
              controller_voters: int | None = None, quorum_options: dict[str, Any] | None = None,
              wire_listeners: list[str] | str | None = None, wire_security: dict | None = None,
              **ray_init_kwargs: Any) -> "Cluster":
        """Start a rafka cluster: a controller and ``brokers`` brokers on this node
        (default 1), or with ``address`` one broker per alive Ray node of that cluster,
        including nodes that join later (or, given ``brokers``, that many spread over
        the nodes alive now). Broker i keeps its data in ``data_dir/broker-i`` on its node.

        ``broker_session_timeout_ms``: how long a broker may miss heartbeats before its
        leaderships move. ``replica_lag_time_max_ms``: how long a follower may lag before
        it leaves the ISR. ``leader_rebalance_interval_s``: how often preferred leaders
        are restored. ``node_watch_interval_s``: how often the controller looks for Ray
        nodes without a broker (per-node mode only).

        ``wire_port``: broker i serves Kafka's wire protocol on ``wire_port + i``, or the
        next free port after it (0: any free port; None: no listener). ``wire_host``: the
        address to bind (default 127.0.0.1: the listener has no authentication yet, so
        reaching it from other machines is something to ask for, with ``"0.0.0.0"`` or
        the node's address, on a network where every client is trusted);
        ``wire_advertised_host``: the one clients are told to connect to
        (default: the bind address, or the node's IP when binding 0.0.0.0).

        The controller runs as a quorum of voters (docs/controller-quorum.md): 3, each on
        its own node, when ``address`` is given and the Ray cluster has 3 or more alive
        nodes, else 1; each keeps its Raft log in ``data_dir/quorum/<voter id>`` on its
        node. Over existing data, start refuses (``ClusterError``, naming what is missing)
        when fewer than a majority of the voters' directories survive, or when broker data
        exists without any controller data. ``controller_voters`` sets the voter count of
        a new quorum (more voters than nodes share nodes: that survives a voter's process
        but not its node). ``quorum_options``: Raft timing for the voters
        (``election_timeout_s``, ``heartbeat_interval_s``, ``snapshot_every``).
        ``wire_listeners``: Kafka-style listeners instead of the one above, e.g.
        ``["SASL_SSL://0.0.0.0:9093", "PLAINTEXT://127.0.0.1:9092"]``; ``wire_security``:
        their settings (``ssl_certfile``, ``ssl_keyfile``, ``sasl_mechanisms``,
        ``authorizer``, ``super_users``, ``allow_everyone_if_no_acl_found``), see
        docs/security.md."""
        unknown = set(wire_security or {}) - {"ssl_certfile", "ssl_keyfile", "sasl_mechanisms", "authorizer",
                                              "super_users", "allow_everyone_if_no_acl_found"}
        if unknown:
            raise ValueError(f"unknown wire_security settings {sorted(unknown)}")
        listener = wire_config.ListenerConfig(
            enabled=wire_port is not None or bool(wire_listeners),
            port=wire_port if wire_port is not None else wire_config.DEFAULT_PORT,
            host=wire_host or "127.0.0.1", advertised_host=wire_advertised_host, listeners=wire_listeners or (),
            **(wire_security or {}))
        if brokers is not None and (isinstance(brokers, bool) or not isinstance(brokers, int) or brokers < 1):
            raise ValueError(f"brokers must be a positive int, got {brokers!r}")
        data_dir = os.path.abspath(data_dir or DEFAULT_DATA_DIR)
        owns_ray = _ensure_ray(address, namespace, ray_init_kwargs)
        try:
            ray.get_actor(names.CONTROLLER, namespace=namespace)
        except ValueError:
            pass
        else:
            if owns_ray:
                ray.shutdown()
            raise ClusterError(
                f"a rafka cluster is already running in Ray namespace {namespace!r}; use rafka.Cluster.connect()"
            )
        head_node = ray.get_runtime_context().get_node_id()
        try:
            nodes = [head_node] if address is None else broker_placement.alive_node_ids()
            plan = plan_quorum(data_dir, nodes, head_node, controller_voters)
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise
        wire_config.store(namespace, listener)
        # The controller quorum: one controller voter per node of the plan (3 on 3 or more
        # nodes, else 1), and the router that carries the controller's name. A lone voter
        # carries that name itself: one process fewer to start, one hop fewer per call.
        lone = len(plan.voters) == 1
        for voter_id, node_id in plan.placements:
            voter = start_voter(
                names.CONTROLLER if lone else names.raft_voter(voter_id), namespace, node_id, not plan.multi_node,
                data_dir, namespace, broker_session_timeout_ms, replica_lag_time_max_ms, leader_rebalance_interval_s,
                node_watch_interval_s, voter_id=voter_id, voters=plan.voters, bootstrap=plan.bootstrap,
                initial_state=plan.initial_state, **(quorum_options or {}))
        controller = voter if lone else (
            ray.remote(ControllerRouter)
            .options(name=names.CONTROLLER, namespace=namespace, lifetime="detached", num_cpus=0,
                     max_restarts=-1, max_concurrency=1000,
                     scheduling_strategy=NodeAffinitySchedulingStrategy(head_node, soft=True))
            .remote(namespace, plan.voters)
        )
        cluster = cls(namespace, controller, owns_actors=True, owns_ray=owns_ray)
        try:
            # Per-node mode: the controller starts a broker on every node now and on every
            # node that joins later. Otherwise a fixed set, placed here.
            # Both calls are idempotent (brokers by id: one already running on its node is
            # left alone), so they are retried: on a new quorum, leadership may move while
            # they are pending, and the router then answers NotControllerError; and the
            # router gives up a call after 30 s without an active voter, which a loaded
            # machine can take to start the voters' processes and elect one.
            per_node = address is not None and brokers is None
            rpc.call_with_retries(controller.set_broker_per_node, per_node, timeout_s=START_TIMEOUT_S)
            if not per_node:
                nodes = [head_node] if address is None else broker_placement.alive_node_ids()
                rpc.call_with_retries(controller.start_brokers,
                                      [(index, nodes[index % len(nodes)]) for index in range(brokers or 1)],
                                      timeout_s=START_TIMEOUT_S)
        except BaseException:
            cluster.shutdown()
            raise
        return cluster

    def add_broker(self, node_id: str, broker_id: int | None = None) -> int:
        """Start a broker on Ray node ``node_id`` and return its id: a new id by default,
        or ``broker_id`` to take over the broker of a lost node (it uses its data dir on
        ``node_id``). Does nothing if that broker already runs there — in per-node mode
        the controller itself starts a broker on every node that joins, and gives it a
        lost broker's id when the node holds that broker's data dir."""
        return rpc.get(self.controller.start_brokers.remote([(broker_id, node_id)]))[0]

    @classmethod
    def connect(cls, address: str | None = None, namespace: str = names.DEFAULT_NAMESPACE) -> "Cluster":
        """Attach to a running rafka cluster (on this process's Ray, or ``address``)."""
        owns_ray = _ensure_ray(address or "auto" if not ray.is_initialized() else None, namespace, {})
        try:
            controller = ray.get_actor(names.CONTROLLER, namespace=namespace)
        except ValueError:
            if owns_ray:
                ray.shutdown()
            raise ClusterError(f"no rafka cluster is running in Ray namespace {namespace!r}") from None
        return cls(namespace, controller, owns_actors=False, owns_ray=owns_ray)

    def shutdown(self, stop_cluster: bool | None = None) -> None:
        """Flush and stop the rafka actors if this handle started them (or if
        ``stop_cluster`` is true: ``rafka down`` stops a cluster it connected to), then Ray
        if this handle started Ray. Data stays in the data directory for the next start."""
        if self._closed:
            return
        self._closed = True
        if self._owns_actors if stop_cluster is None else stop_cluster:
            # Group coordinators first: they write to replicas that are about to stop.
            for index in range(self._coordinator_count_if_reachable()):
                _kill(names.group_coordinator(index), self.namespace)
            try:
                rpc.get(self.controller.shutdown.remote(), timeout_s=60)
            except Exception:  # noqa: BLE001 - shutting down what is left matters more
                pass
            for broker_id in self._broker_ids_if_reachable():
                _kill(names.broker(broker_id), self.namespace)
            _kill(names.CONTROLLER, self.namespace)
            # Replicas of a broker that died before shutdown (a killed broker does not
            # take its detached replicas with it) and anything else named in this
            # namespace would otherwise outlive the cluster and keep calling a controller
            # that is gone.
            for actor in ray.util.list_named_actors(all_namespaces=True):
                if actor["namespace"] == self.namespace:
                    _kill(actor["name"], self.namespace)
        if self._owns_ray:
            ray.shutdown()

    def _coordinator_count_if_reachable(self) -> int:
        try:
            partitions = rpc.get(self.controller.metadata.remote([names.OFFSETS_TOPIC]), timeout_s=10)
            return len(partitions[names.OFFSETS_TOPIC] or ())
        except Exception:  # noqa: BLE001 - no controller to ask: no coordinators are known to stop
            return 0

    def _broker_ids_if_reachable(self) -> list[int]:
        try:
            return [broker["broker_id"] for broker in rpc.get(self.controller.brokers.remote(), timeout_s=10)]
        except Exception:  # noqa: BLE001
            return []

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- clients ---------------------------------------------------------------------

    @property
    def metadata(self) -> Metadata:
        if self._metadata is None:
            self._metadata = Metadata(self.controller, self.namespace)
        return self._metadata

    def admin(self):
        from rafka.client.admin import Admin

        return Admin(self)

    def producer(self, **config: Any):
        from rafka.client.producer import Producer

        return Producer(self, **config)

    def consumer(self, **config: Any):
        from rafka.client.consumer import Consumer

        return Consumer(self, **config)

    def consumer_pool(self, topics: Any = None, group_id: str = "", handler: Any = None, **options: Any):
        """Consumer actors in group ``group_id`` running ``handler`` (see client/pool.py)."""
        from rafka.client.pool import ConsumerPool

        return ConsumerPool(self, topics, group_id, handler, **options)

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka listeners of the alive brokers as "host:port,...", for any Kafka
        client's ``bootstrap.servers``; "" when no broker has a listener. With several
        listeners, the first one's (``bootstrap_servers_of`` names one)."""
        return self.bootstrap_servers_of(None)

    def bootstrap_servers_of(self, listener: str | None) -> str:
        """As ``bootstrap_servers``, for the listener named ``listener`` (its protocol:
        ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``)."""
        addresses = []
        for broker in self.brokers():
            if not broker.get("alive", True):
                continue
            try:
                handle = ray.get_actor(names.broker(broker["broker_id"]), namespace=self.namespace)
                found = rpc.get(handle.wire_addresses.remote(), timeout_s=30)
            except (ValueError, RafkaError):
                continue  # a broker that is restarting or gone has no listener to offer
            address = found.get(listener) if listener is not None else next(iter(found.values()), None)
            if address:
                addresses.append(f"{address[0]}:{address[1]}")
        return ",".join(addresses)

    def brokers(self) -> list[dict]:
        """Each broker's id, node, data dir and whether it answers heartbeats."""
        return rpc.call_with_retries(self.controller.brokers)

    def quorum(self) -> dict:
        """The controller quorum: ``voters`` (each voter's status: role, term, leader,
        commit and applied index, or ``reachable: False``), ``leader`` (the active
        controller's voter id), ``epoch`` (its controller epoch) and ``lag`` (entries each
        voter is behind the leader's log; None when there is no leader)."""
        return rpc.call_with_retries(self.controller.describe_quorum)


def _ensure_ray(address: str | None, namespace: str, init_kwargs: dict) -> bool:
    """Connect to Ray (or start a local instance); True if this call started it."""
    if ray.is_initialized():
        return False
    init_kwargs.setdefault("logging_level", "WARNING")
    init_kwargs.setdefault("log_to_driver", True)
    # "local" starts a fresh instance even when another Ray runs on this machine (plain
    # ray.init() would join that one).
    ray.init(address=address or "local", namespace=namespace, **init_kwargs)
    return address is None


def _kill(name: str, namespace: str) -> None:
    try:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    except ValueError:
        pass
