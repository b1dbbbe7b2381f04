"""Controller: the cluster's metadata — brokers, topics, partition placement, leaders and
leader epochs — and the one place that changes it.

Every controller is a voter of the controller quorum (docs/controller-quorum.md): it hosts
the Raft core (it is a ``RaftVoter``, named ``names.raft_voter(voter_id)``, its directory
``<data_dir>/quorum/<voter_id>`` on its node). Only the quorum's leader is the *active*
controller; every other voter answers its methods with a retriable ``NotControllerError``
naming the leader it knows (``names.CONTROLLER`` is a router that forwards to the active
one: actors/controller_router.py). A quorum of one voter has no router: the voter itself
is named ``names.CONTROLLER`` and holds early calls until it is active. The active controller's ``controller_epoch`` is its
Raft term; it becomes active once its term's first entry is applied (it then holds every
committed record) and stops at once when the core leaves that term's leadership.

Every change is first committed through the quorum (``QuorumStore.apply``: on a majority
of voters' disks, then applied here), then pushed to the brokers it concerns, then
acknowledged: only committed metadata is acted on. Every push (``ensure_replicas``,
``apply_state``) carries the controller epoch; brokers and replicas refuse an older one
(``StaleControllerEpochError``), so a deposed controller that was paused mid-operation
cannot undo its successor's decisions. On becoming active a controller forgets every
volatile view (heartbeats, incarnations, the dead set) as a restarted one does: brokers
check in within a heartbeat and are handed their replicas at the new epoch, and every
replica of a broker that checks in (after a failover, or back from being counted dead) is
sent its partition's committed state, so a view the last controller committed but never
delivered still arrives.

Each voter actor runs with ``max_restarts=-1``: after a crash Ray restarts it on its node
and it rebuilds its state from its Raft log; meanwhile another voter leads (one election
timeout, 0.6–1.2 s). Brokers and replicas keep running meanwhile, and clients keep using
the leaders they know.

Placement follows Kafka's: partition p's replicas are on consecutive brokers starting at
a random offset, so replicas of one partition are always on distinct brokers and leaders
spread evenly. The first replica is the preferred leader.

Liveness: brokers heartbeat the controller (``broker_heartbeat``); a broker silent for
``broker_session_timeout_ms`` is dead. Its partitions get a new leader from the ISR (never
outside it unless ``unclean.leader.election.enable``) with the leader epoch bumped, and
it leaves every ISR. A broker that heartbeats with a new incarnation (Ray restarted it, or
it came back) is handed its replicas again; they rejoin as followers, catch up and
re-enter the ISR, and the preferred (first) replica is made leader again once it is in
sync. Leaders change the ISR only through ``alter_isr``, checked against their leader epoch
and the partition epoch (the version of the partition's state).

Never waiting on one slow member: the mutex that orders metadata changes is never held
across a call to a broker or replica. A state change is pushed to each replica by a
per-replica sender task that keeps only the newest view and retries it with a timeout
until that replica has it (replicas ignore views older than what they know, by leader
epoch and partition epoch); starting a topic's or a returning broker's replicas is awaited
after the mutex is released. The mutex is held across a quorum commit (the next decision
must see the last one committed), which waits for a majority of voters, never for one.
A sender stops when its replica answers ``StaleControllerEpochError`` (a newer controller
has spoken), and every sender is cancelled and every undelivered view dropped when this
voter becomes or stops being the active controller (the views carry an epoch that is over).

Brokers: the controller starts them all (``start_brokers``, through
broker_placement.launch). In per-node mode (``set_broker_per_node(True)``, the mode of
``Cluster.start(address=...)``, kept in the metadata store so a restarted controller
keeps it) it also looks at Ray's node list every ``node_watch_interval_s`` and starts a
broker on every alive node without one; otherwise the set of brokers is what
``start_brokers`` was given.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import random
import time
import uuid
import warnings
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors import broker_placement, names
from rafka.actors.controller_methods import CONTROLLER_METHODS
from rafka.actors.controller_quorum import QuorumStore, prepare_voter_directory
from rafka.actors.controller_router import ROUTE_TIMEOUT_S, summarize_quorum
from rafka.actors.process import tune_actor_process
from rafka.actors.raft import LEADER
from rafka.actors.raft_voter import DEFAULT_ELECTION_TIMEOUT_S, DEFAULT_HEARTBEAT_INTERVAL_S, RaftVoter
from rafka.actors.security_metadata import SecurityMetadata
from rafka.errors import (
    ActorUnavailableError,
    ClusterError,
    InvalidConfigError,
    InvalidTopicError,
    NotControllerError,
    StaleControllerEpochError,
    TopicExistsError,
    TopicNotFoundError,
)
from rafka.storage import LogConfig
from rafka.validation import validate_config, validate_count, validate_topic_name  # noqa: F401 - re-exported

PRODUCER_ID_BLOCK = 1000
LIVENESS_CHECK_INTERVAL_S = 0.5
NODE_WATCH_INTERVAL_S = 2.0
# Bounds on every call the controller makes to a broker or replica: a frozen or slow one
# (a long log recovery, a paused process) must never hold up elections elsewhere.
STATE_PUSH_TIMEOUT_S = 5.0
STATE_PUSH_RETRY_S = 0.5
BROKER_CALL_TIMEOUT_S = 30.0
# The broker bounds each replica's start by broker.READY_TIMEOUT_S and one replacement;
# this outer bound only covers a broker that is itself frozen. Awaited without the mutex.
ENSURE_REPLICAS_TIMEOUT_S = 180.0
# A replica the broker is still creating gets its state this long before we give up (the
# broker creates it with the state current at that time).
STATE_PUSH_MISSING_ACTOR_S = 30.0
# A lone voter (named as the controller, no router) holds calls that arrive before it is
# active for as long as the router would, checking every ACTIVATION_POLL_S.
LONE_VOTER_ACTIVATION_WAIT_S = ROUTE_TIMEOUT_S
ACTIVATION_POLL_S = 0.01
# A voter whose actor Ray no longer has (its node is gone) for this long is started
# again on another node (_rehome_lost_voters); the wait lets a kill during shutdown, or a
# name Ray is still re-registering, pass.
VOTER_REHOME_AFTER_S = 5.0
VOTER_STATUS_TIMEOUT_S = 2.0
logger = logging.getLogger(__name__)


# SecurityMetadata: SCRAM credentials and ACLs (wire security), committed through the quorum.
class Controller(SecurityMetadata, RaftVoter):
    def __init__(self, data_dir: str, namespace: str, broker_session_timeout_ms: int = 6000,
                 replica_lag_time_max_ms: int = 30_000, leader_rebalance_interval_s: float = 10.0,
                 node_watch_interval_s: float = NODE_WATCH_INTERVAL_S, *, voter_id: str = "0",
                 voters: list[str] | None = None, bootstrap: bool = False, initial_state: dict | None = None,
                 election_timeout_s: tuple[float, float] = DEFAULT_ELECTION_TIMEOUT_S,
                 heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S, snapshot_every: int = 1000,
                 commit_timeout_s: float = 10.0) -> None:
        if isinstance(node_watch_interval_s, bool) or not isinstance(node_watch_interval_s, (int, float)) \
                or not node_watch_interval_s > 0:
            raise ValueError(f"node_watch_interval_s must be a positive number, got {node_watch_interval_s!r}")
        tune_actor_process()
        self.data_dir = os.path.abspath(data_dir)
        voters = list(voters) if voters is not None else [voter_id]
        if bootstrap and _reconstructed():
            # Ray restarts an actor with its first arguments: a voter created for a new
            # quorum and restarted over a lost directory must recover, not bootstrap.
            bootstrap, initial_state = False, None
        RaftVoter.__init__(self, voter_id, voters, prepare_voter_directory(self.data_dir, voter_id, voters), namespace,
                           bootstrap=bootstrap, initial_state=initial_state, election_timeout_s=election_timeout_s,
                           heartbeat_interval_s=heartbeat_interval_s, snapshot_every=snapshot_every)
        # The controller epoch this voter acts under while it is the active controller
        # (its Raft term); None while it is not.
        self.epoch: int | None = None
        self.store = QuorumStore(self, commit_timeout_s)
        self.session_timeout_s = broker_session_timeout_ms / 1000
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.leader_rebalance_interval_s = leader_rebalance_interval_s
        self.node_watch_interval_s = float(node_watch_interval_s)
        # What a voter started again elsewhere (_rehome_lost_voters) is configured with.
        self._voter_options = dict(
            broker_session_timeout_ms=broker_session_timeout_ms, replica_lag_time_max_ms=replica_lag_time_max_ms,
            leader_rebalance_interval_s=leader_rebalance_interval_s, node_watch_interval_s=node_watch_interval_s,
            election_timeout_s=election_timeout_s, heartbeat_interval_s=heartbeat_interval_s,
            snapshot_every=snapshot_every, commit_timeout_s=commit_timeout_s)
        self._voters_missing_since_s: dict[str, float] = {}
        self._broker_handles: dict[int, ray.actor.ActorHandle] = {}
        self._incarnations: dict[int, str] = {}
        # Time of each broker's last heartbeat; brokers start alive for one session
        # after a (re)start of the controller so they can check in.
        self._last_heartbeat_s: dict[int, float] = {int(b): time.monotonic() for b in self.state["brokers"]}
        self._dead: set[int] = set()
        self._producer_ids: list[int] = []
        self._heartbeats: asyncio.Task | None = None
        self._node_watch: asyncio.Task | None = None
        self._stopped = False
        self._lock: asyncio.Lock | None = None
        self._placement_lock: asyncio.Lock | None = None
        self._producer_id_lock: asyncio.Lock | None = None
        # (topic, partition, broker_id) -> the newest view not yet delivered to that
        # replica; each key has at most one sender task (_state_senders).
        self._undelivered_views: dict[tuple[str, int, int], dict] = {}
        self._state_senders: dict[tuple[str, int, int], asyncio.Task] = {}

    @property
    def state(self) -> dict:
        return self.store.state

    # -- the quorum: becoming and leaving the active controller -------------------------

    def _after_tick(self) -> None:
        core = self.core
        if self.epoch is not None and (core.role != LEADER or core.term != self.epoch):
            self._deactivate()
        if self.epoch is None and not self._stopped and core.role == LEADER \
                and core.log.term_at(core.last_applied) == core.term:
            # This term's no-op is applied: every committed record is in ``state``.
            self._activate(core.term)

    def _activate(self, epoch: int) -> None:
        """Take over as the active controller: forget every volatile view, as a restarted
        controller does (brokers check in within a heartbeat and get their replicas at
        this epoch), and start the background loops."""
        self.epoch = epoch
        now = time.monotonic()
        self._broker_handles = {}
        self._incarnations = {}
        self._last_heartbeat_s = {int(b): now for b in self.state["brokers"]}
        self._dead = set()
        self._voters_missing_since_s = {}
        self._producer_ids = []
        self._producer_id_lock = None
        # Operations of an earlier term still hold the old locks; they fail at their next
        # commit (QuorumStore checks the epoch), so they must not block this term's.
        self._lock = None
        self._placement_lock = None
        self._drop_state_senders()
        logger.warning("controller %s: active controller at epoch %s", self.voter_id, epoch)
        self._start_background_tasks()

    def _deactivate(self) -> None:
        logger.warning("controller %s: no longer the active controller (epoch %s; now %s of term %s, leader %s)",
                       self.voter_id, self.epoch, self.core.role, self.core.term, self.core.leader_id)
        self.epoch = None
        for task in (self._heartbeats, self._node_watch):
            if task is not None:
                task.cancel()
        self._heartbeats = self._node_watch = None
        self._drop_state_senders()

    def _drop_state_senders(self) -> None:
        """Cancel every pending state push: its views carry an epoch that is over (a
        deposed controller must not keep pushing; a new one pushes its own)."""
        for task in self._state_senders.values():
            task.cancel()
        self._state_senders.clear()
        self._undelivered_views.clear()

    def _require_active(self) -> None:
        self._ensure_running()
        if self.epoch is None:
            raise NotControllerError(
                f"controller voter {self.voter_id} is not the active controller ({self.core.role} of term "
                f"{self.core.term}; leader: {self.core.leader_id})")

    async def status(self) -> dict:
        """This voter's Raft status plus whether it is the active controller and its epoch."""
        status = await RaftVoter.status(self)
        return dict(status, voter_id=self.voter_id, active=self.epoch is not None, controller_epoch=self.epoch,
                    ray_node_id=ray.get_runtime_context().get_node_id())

    # -- a lone voter: the controller's name without a router -------------------------
    # A quorum of one voter has nobody to route between, so that voter is started under
    # ``names.CONTROLLER`` itself (client/cluster.py) and answers what the router would:
    # the quorum's description, and controller calls that arrive before it is active
    # (it elects itself on its first tick) wait for that, as the router waits for one.

    async def describe_quorum(self) -> dict:
        """The router's ``describe_quorum``, answered by a lone voter about itself."""
        if self.core.peers:
            raise NotControllerError(f"controller voter {self.voter_id} is one of {len(self.core.voters)} voters: "
                                     f"the router named {names.CONTROLLER!r} describes their quorum")
        return summarize_quorum(self.core.voters, [dict(await self.status(), reachable=True)])

    async def _await_active(self) -> None:
        """For a lone voter: wait (up to ``LONE_VOTER_ACTIVATION_WAIT_S``) until it is the
        active controller. Then, for any voter, ``NotControllerError`` unless it is."""
        self._ensure_running()
        if not self.core.peers and self.epoch is None and not self._stopped:
            deadline_s = time.monotonic() + LONE_VOTER_ACTIVATION_WAIT_S
            while self.epoch is None and time.monotonic() < deadline_s:
                await asyncio.sleep(ACTIVATION_POLL_S)
        self._require_active()

    def _mutex(self) -> asyncio.Lock:
        # Admin operations await brokers midway; one at a time keeps them from interleaving.
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _start_background_tasks(self) -> None:
        # Started by the first call rather than in __init__, which runs outside the
        # actor's event loop; brokers call every HEARTBEAT_INTERVAL_S, so a restarted
        # controller resumes its checks within a heartbeat.
        if self._stopped or self.epoch is None:
            return
        if self._heartbeats is None:
            self._heartbeats = asyncio.get_running_loop().create_task(self._heartbeat_loop())
        if self._node_watch is None:
            self._node_watch = asyncio.get_running_loop().create_task(self._node_watch_loop())

    # -- brokers ---------------------------------------------------------------------

    async def add_broker(self, broker_id: int, info: dict, incarnation: str) -> None:
        """Register (or re-register) a broker and start the replicas placed on it."""
        self._start_background_tasks()
        async with self._mutex():
            known = self.state["brokers"].get(str(broker_id))
            record = {"type": "register_broker", "broker_id": broker_id, "node_id": info["node_id"],
                      "data_dir": info["data_dir"], "host": info["host"]}
            if known is None or any(known.get(key) != record[key] for key in ("node_id", "data_dir", "host")):
                await self.store.apply(record)
            self._incarnations[broker_id] = incarnation
            self._last_heartbeat_s[broker_id] = time.monotonic()
            self._dead.discard(broker_id)
            # A broker started again under its id is a new actor: a handle cached for
            # the old one (which _nudge may have looked up while Ray was still trying
            # to restart it on its lost node) would only ever answer "unschedulable".
            self._broker_handles.pop(broker_id, None)
        await self._ensure_on_broker(broker_id)

    def _broker(self, broker_id: int) -> ray.actor.ActorHandle:
        """The broker's actor handle; ``ActorUnavailableError`` when no such actor runs
        (its node is gone, or it was never started)."""
        handle = self._broker_handles.get(broker_id)
        if handle is None:
            try:
                handle = ray.get_actor(names.broker(broker_id), namespace=self.namespace)
            except ValueError:
                raise ActorUnavailableError(f"broker {broker_id} is not running (no actor "
                                            f"{names.broker(broker_id)!r})") from None
            self._broker_handles[broker_id] = handle
        return handle

    def _specs_for(self, broker_id: int, topic: str | None = None) -> list[dict]:
        specs = []
        for name, topic_state in self.state["topics"].items():
            if topic is not None and name != topic:
                continue
            for partition, partition_state in enumerate(topic_state["partitions"]):
                if broker_id in partition_state["replicas"]:
                    specs.append({"topic": name, "topic_id": topic_state.get("topic_id"), "partition": partition,
                                  "config": topic_state["config"],
                                  "state": self._partition_view(partition_state),
                                  "replica_lag_time_max_ms": self.replica_lag_time_max_ms,
                                  "controller_epoch": self.epoch})
        return specs

    async def _ensure_on_broker(self, broker_id: int, topic: str | None = None) -> None:
        """Have the broker start its replicas (of ``topic``, or all); called without the
        mutex, since starting many replicas takes long."""
        specs = self._specs_for(broker_id, topic)
        if specs:
            await self._call_broker(broker_id, "ensure_replicas", specs, timeout_s=ENSURE_REPLICAS_TIMEOUT_S)

    async def _call_broker(self, broker_id: int, method: str, *args, timeout_s: float = BROKER_CALL_TIMEOUT_S):
        """One call to a broker, bounded by ``timeout_s`` (a frozen broker raises
        ``asyncio.TimeoutError``; a missing one ``ActorUnavailableError``)."""
        return await asyncio.wait_for(_await(getattr(self._broker(broker_id), method).remote(*args)), timeout_s)

    def brokers(self) -> list[dict]:
        return [
            {**info, "broker_id": int(broker_id), "alive": int(broker_id) not in self._dead}
            for broker_id, info in sorted(self.state["brokers"].items(), key=lambda item: int(item[0]))
        ]

    def _alive(self) -> list[int]:
        return [b["broker_id"] for b in self.brokers() if b["alive"]]

    async def broker_heartbeat(self, broker_id: int, incarnation: str) -> None:
        """A broker's periodic sign of life. A new incarnation (Ray restarted the broker,
        or it is back after being declared dead) gets its replicas handed out again."""
        self._start_background_tasks()
        if str(broker_id) not in self.state["brokers"]:
            return
        self._last_heartbeat_s[broker_id] = time.monotonic()
        if self._incarnations.get(broker_id) != incarnation or broker_id in self._dead:
            async with self._mutex():
                if self._incarnations.get(broker_id) == incarnation and broker_id not in self._dead:
                    return  # another heartbeat of this incarnation got here first
                self._incarnations[broker_id] = incarnation
                self._dead.discard(broker_id)
                self._broker_handles.pop(broker_id, None)  # it may be a new actor (see add_broker)
                logger.info("controller: broker %s is (back) up", broker_id)
            # In the background: the broker's next heartbeat must not wait for its replicas.
            asyncio.get_running_loop().create_task(self._broker_returned(broker_id, incarnation))

    async def _broker_returned(self, broker_id: int, incarnation: str) -> None:
        """Hand a (re)started broker its replicas, then elect leaders for partitions that
        had none and can have one again."""
        try:
            await self._ensure_on_broker(broker_id)
            # Deletes that could not reach it while it was down: finished now.
            await self._call_broker(broker_id, "remove_deleted", list(self.state.get("deleted_topic_ids", [])))
        except Exception as error:  # noqa: BLE001 - retried on its next heartbeat
            logger.warning("controller: starting the replicas of returning broker %s failed: %r", broker_id, error)
            if self._incarnations.get(broker_id) == incarnation:
                self._incarnations.pop(broker_id, None)
            return
        async with self._mutex():
            for topic, topic_state in list(self.state["topics"].items()):
                for partition, partition_state in enumerate(topic_state["partitions"]):
                    if broker_id not in partition_state["replicas"]:
                        continue
                    if partition_state["leader"] < 0:
                        await self._elect(topic, partition)  # pushes the new state itself
                    else:
                        # Replicas that lived on while their broker was out, or through a
                        # controller failover, hold what they last heard: a view pushed
                        # while the broker counted dead, or by a controller that died
                        # before delivering it, never reached them, and nothing else
                        # would tell them (a leader that thinks its ISR full asks for no
                        # change). So every replica of a broker that (re)joins this
                        # controller, which every broker does after a failover, gets its
                        # partition's committed state, as Kafka's controller sends
                        # LeaderAndIsr for all partitions on failover and to a broker
                        # that comes back.
                        self._send_state(topic, partition, broker_id, self._partition_view(partition_state))

    async def _heartbeat_loop(self) -> None:
        last_rebalance_s = time.monotonic()
        while True:
            await asyncio.sleep(LIVENESS_CHECK_INTERVAL_S)
            try:
                now = time.monotonic()
                for broker_id in [int(key) for key in self.state["brokers"]]:
                    silent_s = now - self._last_heartbeat_s.get(broker_id, now)
                    if silent_s > 2 * LIVENESS_CHECK_INTERVAL_S:
                        self._nudge(broker_id)
                    if broker_id not in self._dead and silent_s > self.session_timeout_s:
                        await self._fail_broker(broker_id)
                if now - last_rebalance_s >= self.leader_rebalance_interval_s:
                    last_rebalance_s = now
                    await self._rebalance_preferred_leaders()
            except Exception as error:  # noqa: BLE001 - the loop must survive anything
                logger.error("controller: liveness check failed: %r", error)

    def _nudge(self, broker_id: int) -> None:
        """Poke a silent broker: a broker Ray restarted starts heartbeating on any call."""
        try:
            self._broker(broker_id).heartbeat.remote()
        except Exception:  # noqa: BLE001 - no such actor (yet): nothing to nudge
            self._broker_handles.pop(broker_id, None)

    async def _fail_broker(self, broker_id: int) -> None:
        """Declare ``broker_id`` dead: move its leaderships and drop it from every ISR."""
        async with self._mutex():
            self._dead.add(broker_id)
            self._incarnations.pop(broker_id, None)
            self._broker_handles.pop(broker_id, None)
            logger.warning("controller: broker %s missed its session; electing new leaders", broker_id)
            for topic, topic_state in list(self.state["topics"].items()):
                for partition, partition_state in enumerate(topic_state["partitions"]):
                    if broker_id == partition_state["leader"]:
                        await self._elect(topic, partition, exclude={broker_id})
                    elif self._can_leave_isr(partition_state, broker_id):
                        isr = [b for b in partition_state["isr"] if b != broker_id]
                        await self.store.apply({"type": "change_isr", "topic": topic, "partition": partition, "isr": isr})
                        await self._push_state(topic, partition)

    @staticmethod
    def _can_leave_isr(partition_state: dict, broker_id: int) -> bool:
        """Whether a failed ``broker_id`` may be dropped from the partition's ISR: not if
        it is the last member. An offline partition (no leader) keeps its last in-sync
        replica in the ISR, as Kafka keeps the last leader there, so that replica — the
        only one known to hold every acknowledged record — is elected when it returns.
        An empty ISR could never elect anyone again (without unclean election)."""
        isr = partition_state["isr"]
        return broker_id in isr and len(isr) > 1

    async def _elect(self, topic: str, partition: int, exclude: set[int] = frozenset(),
                     preferred: int | None = None) -> None:
        """Choose a leader for ``topic``/``partition`` and bump its epoch (caller holds
        the mutex). Candidates are alive ISR members; outside the ISR only with
        unclean.leader.election.enable. No candidate: the partition goes offline."""
        topic_state = self.state["topics"][topic]
        partition_state = topic_state["partitions"][partition]
        alive = set(self._alive()) - set(exclude)
        isr = [b for b in partition_state["isr"] if b in alive]
        candidates = isr
        if not candidates and LogConfig.from_dict(topic_state["config"]).unclean_leader_election_enable:
            candidates = [b for b in partition_state["replicas"] if b in alive]
            isr = candidates[:1]
        if preferred is not None and preferred in candidates:
            leader = preferred
        else:
            leader = next((b for b in partition_state["replicas"] if b in candidates), -1)
        await self.store.apply({"type": "change_leader", "topic": topic, "partition": partition, "leader": leader,
                          "leader_epoch": partition_state["leader_epoch"] + 1, "isr": isr or partition_state["isr"]})
        logger.warning("controller: %s-%s leader is now %s at epoch %s", topic, partition, leader,
                       partition_state["leader_epoch"])
        await self._push_state(topic, partition)

    async def _push_state(self, topic: str, partition: int) -> None:
        """Send every alive replica of the partition its leader, epoch and ISR. Returns at
        once: each replica's sender task delivers the view (or a newer one) with retries,
        so a frozen replica holds up nothing (see the module docstring)."""
        partition_state = self.state["topics"][topic]["partitions"][partition]
        view = self._partition_view(partition_state)
        for broker_id in partition_state["replicas"]:
            if broker_id not in self._dead:
                self._send_state(topic, partition, broker_id, view)

    def _send_state(self, topic: str, partition: int, broker_id: int, view: dict) -> None:
        key = (topic, partition, broker_id)
        self._undelivered_views[key] = view
        if key not in self._state_senders:
            self._state_senders[key] = asyncio.get_running_loop().create_task(self._deliver_states(key))

    async def _deliver_states(self, key: tuple[str, int, int]) -> None:
        """Deliver the newest undelivered view to one replica until it has it, the broker
        is declared dead (its replicas learn their state when it returns) or the topic is
        gone."""
        topic, partition, broker_id = key
        missing_since_s = None
        try:
            while not self._stopped and key in self._undelivered_views:
                view = self._undelivered_views[key]
                if broker_id in self._dead or topic not in self.state["topics"]:
                    self._undelivered_views.pop(key, None)
                    return
                try:
                    # A GCS round trip: off the loop, which also runs the Raft core (a
                    # topic's creation pushes one view per replica; on the loop, their
                    # lookups stalled it past an election timeout).
                    handle = await asyncio.to_thread(ray.get_actor, names.replica(topic, partition, broker_id),
                                                     namespace=self.namespace)
                    await asyncio.wait_for(_await(handle.apply_state.remote(view)), STATE_PUSH_TIMEOUT_S)
                except ValueError:
                    # No such actor (yet): its broker may be creating it from a state
                    # read before this change, so keep trying for a while.
                    missing_since_s = missing_since_s or time.monotonic()
                    if time.monotonic() - missing_since_s > STATE_PUSH_MISSING_ACTOR_S:
                        self._undelivered_views.pop(key, None)
                        return
                    await asyncio.sleep(STATE_PUSH_RETRY_S)
                    continue
                except StaleControllerEpochError as error:
                    # A newer controller has spoken to this replica: this view is void, and
                    # so is every later one of this epoch (see _after_tick: we step down).
                    logger.warning("controller %s: %s-%s@broker-%s refused epoch %s: %s", self.voter_id, topic,
                                   partition, broker_id, view.get("controller_epoch"), error)
                    self._undelivered_views.pop(key, None)
                    return
                except Exception as error:  # noqa: BLE001 - a frozen or restarting replica: retry
                    logger.warning("controller: telling %s-%s@broker-%s its state failed (retrying): %r",
                                   topic, partition, broker_id, error)
                    await asyncio.sleep(STATE_PUSH_RETRY_S)
                    continue
                if self._undelivered_views.get(key) is view:
                    del self._undelivered_views[key]
        finally:
            if self._state_senders.get(key) is asyncio.current_task():
                del self._state_senders[key]

    def _partition_view(self, partition_state: dict) -> dict:
        """A partition's state as sent to its replicas, stamped with this controller's
        epoch so that a replica refuses it once a newer controller has spoken."""
        view = {key: partition_state[key] for key in ("leader", "leader_epoch", "replicas", "isr")}
        view["partition_epoch"] = partition_state.get("partition_epoch", 0)
        view["controller_epoch"] = self.epoch
        return view

    async def _rebalance_preferred_leaders(self) -> None:
        """Make each partition's first replica its leader again once it is in sync."""
        async with self._mutex():
            alive = set(self._alive())
            for topic, topic_state in list(self.state["topics"].items()):
                for partition, partition_state in enumerate(topic_state["partitions"]):
                    preferred = partition_state["replicas"][0]
                    if (partition_state["leader"] != preferred and preferred in partition_state["isr"]
                            and preferred in alive):
                        await self._elect(topic, partition, preferred=preferred)

    async def alter_isr(self, topic: str, partition: int, leader_id: int, leader_epoch: int,
                        isr: list[int], partition_epoch: int | None = None) -> dict | None:
        """A leader's request to change its ISR (Kafka's AlterPartition). None if it is
        not the current leader at that epoch (it has been deposed). Otherwise the
        partition's ISR and partition epoch as they now stand, with ``accepted``.

        ``partition_epoch`` is the version of the partition state the leader based its
        request on; every ISR or leader change bumps it. A request based on an older
        version is refused (``accepted`` False) and answered with the current state, so a
        request delayed in transit (its answer lost, or overtaken by a newer one) can
        never put back a member a later change removed. An accepted request always bumps
        the version, even when the ISR is unchanged, for the same reason."""
        async with self._mutex():
            topic_state = self.state["topics"].get(topic)
            if topic_state is None or partition >= len(topic_state["partitions"]):
                return None
            partition_state = topic_state["partitions"][partition]
            if partition_state["leader"] != leader_id or partition_state["leader_epoch"] != leader_epoch:
                return None
            current_epoch = partition_state.get("partition_epoch", 0)
            accepted = partition_epoch is None or partition_epoch == current_epoch
            if accepted:
                # Only live replicas may join: a dead broker's replica must not be counted on.
                isr = sorted({b for b in isr if b in partition_state["replicas"] and b not in self._dead} | {leader_id})
                await self.store.apply({"type": "change_isr", "topic": topic, "partition": partition, "isr": isr})
                if isr != sorted(partition_state["isr"]):
                    logger.info("controller: %s-%s ISR is now %s", topic, partition, isr)
            partition_state = self.state["topics"][topic]["partitions"][partition]
            return {"isr": list(partition_state["isr"]), "partition_epoch": partition_state.get("partition_epoch", 0),
                    "accepted": accepted}

    async def replica_failed(self, topic: str, partition: int, broker_id: int) -> None:
        """A broker saw one of its replica actors die. A dead leader is replaced by another
        in-sync replica at once (Ray restarting it takes seconds); a dead follower leaves
        the ISR so acks=all does not wait for the lag timeout."""
        async with self._mutex():
            topic_state = self.state["topics"].get(topic)
            if topic_state is None or partition >= len(topic_state["partitions"]):
                return
            partition_state = topic_state["partitions"][partition]
            others = [b for b in partition_state["isr"] if b != broker_id and b not in self._dead]
            if partition_state["leader"] == broker_id and others:
                await self._elect(topic, partition, exclude={broker_id})
            elif partition_state["leader"] != broker_id and self._can_leave_isr(partition_state, broker_id):
                isr = [b for b in partition_state["isr"] if b != broker_id]
                await self.store.apply({"type": "change_isr", "topic": topic, "partition": partition, "isr": isr})
                await self._push_state(topic, partition)

    async def replica_restarted(self, topic: str, partition: int, broker_id: int, clean: bool = True) -> dict | None:
        """A replica that restarted asks for its role (it takes none before the answer).

        ``clean`` False: its log was not closed cleanly and may lack records it had
        acknowledged (KIP-966's unclean shutdown). It leaves the ISR, and if it led,
        another alive in-sync replica is elected at a new epoch, so no follower truncates
        acknowledged records to its shorter log; it rejoins the ISR once caught up. Only
        if no other in-sync replica is alive is it elected again (the best there is).

        ``clean`` True (Ray restarted an actor whose log was intact): a restarted leader
        is re-elected at a new epoch (so everyone re-synchronises against it), preferring
        itself."""
        self._start_background_tasks()
        async with self._mutex():
            topic_state = self.state["topics"].get(topic)
            if topic_state is None or partition >= len(topic_state["partitions"]):
                return None
            partition_state = topic_state["partitions"][partition]
            led = partition_state["leader"] == broker_id or partition_state["leader"] < 0
            others_in_sync = [b for b in partition_state["isr"] if b != broker_id and b in self._alive()]
            if clean or not others_in_sync:
                if not clean:
                    logger.warning("controller: %s-%s@broker-%s restarted uncleanly and no other in-sync replica is "
                                   "alive; it leads again, and records it had not flushed may be lost", topic,
                                   partition, broker_id)
                if led:
                    await self._elect(topic, partition, preferred=broker_id)
            elif led:
                logger.warning("controller: %s-%s leader broker-%s restarted uncleanly; electing another in-sync "
                               "replica", topic, partition, broker_id)
                await self._elect(topic, partition, exclude={broker_id})
            elif self._can_leave_isr(partition_state, broker_id):
                logger.warning("controller: %s-%s@broker-%s restarted uncleanly; out of the ISR until it catches up",
                               topic, partition, broker_id)
                await self.store.apply({"type": "change_isr", "topic": topic, "partition": partition,
                                        "isr": [b for b in partition_state["isr"] if b != broker_id]})
                await self._push_state(topic, partition)
            return self._partition_view(topic_state["partitions"][partition])

    # -- broker placement ------------------------------------------------------------

    def _placement(self) -> asyncio.Lock:
        # One placement at a time, so the node watch and start_brokers never start two
        # brokers under one id or two for one new node. Separate from _mutex, which
        # add_broker takes while registering.
        if self._placement_lock is None:
            self._placement_lock = asyncio.Lock()
        return self._placement_lock

    async def start_brokers(self, placements: list[tuple[int | None, str]]) -> list[int]:
        """Start a broker at each ``(broker_id, node_id)`` of ``placements`` and register
        it; a None id means a new one. A broker already registered on that node and
        running is left alone; an id registered elsewhere (a node that was lost) moves to
        the new node and takes over the data dir there. Returns the ids, in order."""
        self._start_background_tasks()
        async with self._placement():
            next_id = max((int(b) for b in self.state["brokers"]), default=-1) + 1
            resolved = []
            for broker_id, node_id in placements:
                if broker_id is None:
                    broker_id, next_id = next_id, next_id + 1
                elif isinstance(broker_id, bool) or not isinstance(broker_id, int) or broker_id < 0:
                    raise ValueError(f"broker_id must be a non-negative int or None, got {broker_id!r}")
                resolved.append((broker_id, node_id))
            running = await asyncio.to_thread(broker_placement.running_brokers, self.namespace)
            wanted = [(broker_id, node_id) for broker_id, node_id in resolved
                      if broker_id not in running
                      or self.state["brokers"].get(str(broker_id), {}).get("node_id") != node_id]
            await self._start_and_register(wanted)
            return [broker_id for broker_id, _ in resolved]

    async def set_broker_per_node(self, enabled: bool) -> None:
        """Turn per-node mode on or off, durably (a restarted controller keeps it). On,
        every alive Ray node has a running broker when this returns, and a node that
        joins later gets one within ``node_watch_interval_s`` (see
        broker_placement.plan_per_node for which id it gets)."""
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {enabled!r}")
        self._start_background_tasks()
        if self.state["broker_per_node"] != enabled:
            await self.store.apply({"type": "set_broker_per_node", "enabled": enabled})
        if enabled:
            await self._place_broker_per_node()

    async def _place_broker_per_node(self) -> None:
        async with self._placement():
            registered = {int(b): info["node_id"] for b, info in self.state["brokers"].items()}
            placements = await broker_placement.plan_per_node(registered, self.data_dir, self.namespace)
            if placements:
                logger.info("controller: starting brokers (id, node) %s", placements)
                await self._start_and_register(placements)

    async def _start_and_register(self, placements: list[tuple[int, str]]) -> None:
        """Start the brokers (caller holds the placement lock) and register them."""
        if self._stopped:
            raise ClusterError(f"the rafka controller of namespace {self.namespace!r} is shut down")
        if not placements:
            return
        epoch = self.epoch

        def fence() -> None:
            # A placement of an epoch that is over must not kill or create brokers: the
            # active controller of the new epoch places its own (broker_placement.start).
            if self.epoch is None or self.epoch != epoch:
                raise NotControllerError(f"controller voter {self.voter_id}: epoch {epoch} ended while placing "
                                         f"brokers {placements}")

        started = await broker_placement.start(placements, self.data_dir, self.namespace, fence)
        await asyncio.gather(*(self.add_broker(info["broker_id"], info, incarnation) for info, incarnation in started))

    async def _node_watch_loop(self) -> None:
        """Every ``node_watch_interval_s``: start lost voters again elsewhere, and in
        per-node mode give every Ray node that has no broker one."""
        while True:
            await asyncio.sleep(self.node_watch_interval_s)
            try:
                await self._rehome_lost_voters()
            except Exception as error:  # noqa: BLE001 - the loop must survive; next round retries
                logger.warning("controller: starting a lost voter again failed (retrying): %r", error)
            if not self.state["broker_per_node"]:
                continue
            try:
                await self._place_broker_per_node()
            except Exception as error:  # noqa: BLE001 - the loop must survive; next round retries
                # Expected now and then: a node that dies while its broker starts.
                logger.warning("controller: starting brokers on new nodes failed (retrying): %r", error)

    # -- lost voters -----------------------------------------------------------------
    # A voter on a cluster of 3 or more nodes is pinned to the node that holds its
    # directory, so Ray does not restart it elsewhere when that node is lost: its actor
    # dies and its name is free. Left so, the quorum survives that loss but not a second
    # one later (a soak lost two nodes over minutes and the controller stopped). So the
    # active controller starts such a voter again, under its id and name, on an alive
    # node that has no voter. It comes up as a voter whose disk is gone does (or with
    # its directory, where nodes share a disk): recovering, catching up from the leader,
    # voting only once re-admitted (actors/raft.py), which keeps elections safe. No new
    # voter id and no membership change: the voter set stays the one recorded.

    async def _rehome_lost_voters(self) -> None:
        peers = [voter for voter in self.core.voters if voter != self.voter_id]
        if not peers or self._stopped:
            return
        now = time.monotonic()
        lost = []
        for voter in peers:
            try:
                await asyncio.to_thread(ray.get_actor, names.raft_voter(voter), namespace=self.namespace)
            except ValueError:  # no such actor: dead for good, not restarting
                since_s = self._voters_missing_since_s.setdefault(voter, now)
                if now - since_s >= VOTER_REHOME_AFTER_S:
                    lost.append(voter)
            else:
                self._voters_missing_since_s.pop(voter, None)
        if not lost:
            return
        occupied = {ray.get_runtime_context().get_node_id()}
        for voter in peers:
            if voter not in lost:
                try:
                    handle = await asyncio.to_thread(ray.get_actor, names.raft_voter(voter), namespace=self.namespace)
                    status = await asyncio.wait_for(_await(handle.status.remote()), VOTER_STATUS_TIMEOUT_S)
                    occupied.add(status["ray_node_id"])
                except Exception:  # noqa: BLE001 - paused or restarting: its node stays unknown this round
                    pass
        free = [node for node in await asyncio.to_thread(broker_placement.alive_node_ids) if node not in occupied]
        for voter in lost:
            if not free:
                logger.warning("controller %s: voter %s is lost and every alive Ray node has a voter; it is started "
                               "again when a node joins", self.voter_id, voter)
                return
            node = free.pop(0)
            logger.warning("controller %s: voter %s is lost (no actor for %.0f s: its node is gone); starting it "
                           "again on node %s", self.voter_id, voter, now - self._voters_missing_since_s[voter], node)
            start_voter(names.raft_voter(voter), self.namespace, node, False, self.data_dir, self.namespace,
                        voter_id=voter, voters=list(self.core.voters), bootstrap=False, **self._voter_options)
            self._voters_missing_since_s.pop(voter, None)

    # -- topics ----------------------------------------------------------------------

    async def create_topic(self, topic: str, partitions: int, replication_factor: int,
                           config: dict[str, str] | None, topic_id: str | None = None) -> dict:
        """Create ``topic`` and start its replicas; returns its description.

        ``topic_id`` (32 hex digits, default a new one) makes the call safe to retry: a
        call whose first attempt committed before a failover (the router or a client
        then sends it again, to the next active controller) finds its own topic id and
        answers as the first attempt would have, instead of ``TopicExistsError``. The
        router gives every create_topic call one (actors/controller_router.py)."""
        self._start_background_tasks()
        validate_topic_name(topic)
        validate_count("partitions", partitions)
        validate_count("replication_factor", replication_factor)
        config = validate_config(config)
        if topic_id is not None and not (isinstance(topic_id, str) and len(topic_id) == 32
                                         and all(c in "0123456789abcdef" for c in topic_id)):
            raise ValueError(f"topic_id must be 32 lowercase hex digits, got {topic_id!r}")
        async with self._mutex():
            existing = self.state["topics"].get(topic)
            if existing is None:
                broker_ids = self._alive()
                if replication_factor > len(broker_ids):
                    raise InvalidTopicError(
                        f"replication_factor {replication_factor} is more than the {len(broker_ids)} live brokers"
                    )
                assignments = _assign(broker_ids, 0, partitions, replication_factor)
                await self.store.apply({
                    "type": "create_topic", "topic": topic, "topic_id": topic_id or uuid.uuid4().hex,
                    "config": config, "assignments": assignments, "leaders": [replicas[0] for replicas in assignments],
                    "leader_epochs": [0] * partitions, "isr": assignments,
                })
            elif topic_id is None or existing.get("topic_id") != topic_id:
                raise TopicExistsError(f"topic {topic!r} already exists")
            # else: this very call, committed by an earlier attempt; its replicas are ensured below.
        await self._ensure_topic(topic)
        return self.describe_topic(topic)

    async def _ensure_topic(self, topic: str) -> None:
        if topic not in self.state["topics"]:
            return  # deleted meanwhile (this runs without the mutex)
        brokers = sorted({b for p in self.state["topics"][topic]["partitions"] for b in p["replicas"]})
        results = await asyncio.gather(*(self._ensure_on_broker(broker_id, topic) for broker_id in brokers),
                                       return_exceptions=True)
        for broker_id, result in zip(brokers, results):
            if isinstance(result, (ActorUnavailableError, RayActorError, asyncio.TimeoutError)):
                # The topic is committed. A broker that cannot be reached now (its node
                # is gone, it is frozen or restarting; a controller that just took over
                # counts every broker alive for a session) gets its replicas when it
                # heartbeats again (_broker_returned), or is declared dead after its
                # session and its leaderships move. Failing the call here answered a
                # committed creation with an error (ValueError from the actor lookup).
                logger.warning("controller: %s's replicas on broker %s are not started yet: %r", topic, broker_id,
                               result)
            elif isinstance(result, BaseException):
                raise result

    def _topic(self, topic: str) -> dict:
        topic_state = self.state["topics"].get(topic)
        if topic_state is None:
            raise TopicNotFoundError(f"unknown topic {topic!r}")
        return topic_state

    async def delete_topic(self, topic: str) -> None:
        async with self._mutex():
            topic_state = self._topic(topic)
            brokers = {b for p in topic_state["partitions"] for b in p["replicas"]}
            topic_id = topic_state.get("topic_id")
            await self.store.apply({"type": "delete_topic", "topic": topic, "topic_id": topic_id})
            # A view of the deleted topic still being retried must never reach a replica of
            # a topic created again under the same name.
            for key in [key for key in self._undelivered_views if key[0] == topic]:
                del self._undelivered_views[key]
        # By id: a call that reaches a broker late (it was frozen) must not remove the
        # replicas of a topic created again under the same name meanwhile. A broker that
        # is down finishes the delete when it returns (_broker_returned).
        await asyncio.gather(*(self._call_broker(b, "remove_replicas", topic, True, topic_id) for b in brokers),
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
            await self.store.apply({"type": "alter_config", "topic": topic, "config": config})
            brokers = {b for p in topic_state["partitions"] for b in p["replicas"]}
        await asyncio.gather(*(self._call_broker(b, "update_config", topic, config) for b in brokers))
        return self.describe_configs(topic)

    async def create_partitions(self, topic: str, total: int) -> dict:
        """Grow ``topic`` to ``total`` partitions (Kafka never shrinks a topic)."""
        async with self._mutex():
            topic_state = self._topic(topic)
            current = len(topic_state["partitions"])
            validate_count("partitions", total)
            if total <= current:
                raise InvalidTopicError(f"topic {topic!r} has {current} partitions; a new count must be more, got {total}")
            broker_ids = self._alive()
            replication_factor = len(topic_state["partitions"][0]["replicas"])
            if replication_factor > len(broker_ids):
                raise ClusterError(f"only {len(broker_ids)} live brokers for replication factor {replication_factor}")
            assignments = _assign(broker_ids, current, total - current, replication_factor)
            await self.store.apply({
                "type": "add_partitions", "topic": topic, "assignments": assignments,
                "leaders": [replicas[0] for replicas in assignments], "leader_epochs": [0] * len(assignments),
                "isr": assignments,
            })
        await self._ensure_topic(topic)
        return self.describe_topic(topic)

    def metadata(self, topics: list[str] | None = None) -> dict:
        """What clients need to route requests: per topic, per partition, the leader
        broker, its epoch and the replica set (and the topic's id, docs/topic-ids.md).
        Unknown topics map to None."""
        wanted = topics if topics is not None else self.list_topics()
        return {
            topic: (
                [dict(partition=index, topic_id=self.state["topics"][topic].get("topic_id"), **partition)
                 for index, partition in enumerate(self.state["topics"][topic]["partitions"])]
                if topic in self.state["topics"] else None
            )
            for topic in wanted
        }

    async def allocate_producer_id(self) -> int:
        """A producer id never handed out before, even across controller restarts and
        failovers (a block is committed before any id of it is handed out)."""
        if self._producer_id_lock is None:
            self._producer_id_lock = asyncio.Lock()
        async with self._producer_id_lock:  # two callers must not both claim one block
            if not self._producer_ids:
                start = self.state["next_producer_id"]
                await self.store.apply({"type": "allocate_producer_ids", "next_producer_id": start + PRODUCER_ID_BLOCK})
                self._producer_ids = list(range(start + PRODUCER_ID_BLOCK - 1, start - 1, -1))
            return self._producer_ids.pop()

    async def shutdown(self) -> None:
        """Stop every broker's replicas (flushing their logs); the caller then kills actors.
        Brokers are no longer started after this, so none outlives the caller's kills."""
        self._stopped = True
        for task in (self._heartbeats, self._node_watch):
            if task is not None:
                task.cancel()
        async with self._placement():
            pass  # a start_brokers call in flight has registered (or killed) its brokers
        await asyncio.gather(*(self._call_broker(int(b), "stop", timeout_s=ENSURE_REPLICAS_TIMEOUT_S)
                               for b in self.state["brokers"]), return_exceptions=True)


def _reconstructed() -> bool:
    """Whether this process is an actor Ray restarted (False outside an actor)."""
    try:
        with warnings.catch_warnings():  # Ray warns about its own use of a deprecated API here
            warnings.simplefilter("ignore")
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - not in an actor (a plain test)
        return False


def _active_only(method):
    """Wrap a public method so that only the active controller runs it."""
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def active_only(self, *args, **kwargs):
            await self._await_active()
            return await method(self, *args, **kwargs)
    else:
        @functools.wraps(method)
        def active_only(self, *args, **kwargs):
            self._require_active()
            return method(self, *args, **kwargs)
    return active_only


for _name in CONTROLLER_METHODS:
    setattr(Controller, _name, _active_only(getattr(Controller, _name)))


async def _await(ref):
    return await ref


def _assign(broker_ids: list[int], first_partition: int, count: int, replication_factor: int) -> list[list[int]]:
    ordered = sorted(broker_ids)
    start = random.randrange(len(ordered))
    return [
        [ordered[(start + partition + replica) % len(ordered)] for replica in range(replication_factor)]
        for partition in range(first_partition, first_partition + count)
    ]


def start_voter(name: str, namespace: str, node_id: str, soft: bool, *args: Any, **kwargs: Any) -> ray.actor.ActorHandle:
    """Start a controller voter actor named ``name`` on ``node_id`` (soft: anywhere if that
    node cannot take it), with the options every voter has: detached, restarted by Ray
    without limit, many calls at once. ``args`` and ``kwargs`` go to ``Controller``."""
    return ray.remote(Controller).options(
        name=name, namespace=namespace, lifetime="detached", num_cpus=0, max_restarts=-1, max_concurrency=1000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=soft),
    ).remote(*args, **kwargs)
