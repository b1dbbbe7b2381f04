"""A seeded, randomized nemesis for a rafka cluster on a ``ray.cluster_utils.Cluster``.

Two halves:

* ``generate_schedule(seed, duration_s, ...)`` is pure: from a seed it makes a schedule,
  a JSON-able dict of timed fault operations, the same for the same arguments on any
  machine (``random.Random(seed)``, nothing else). ``soak.py`` writes it to
  ``schedule.json`` before running, and reruns a given schedule file unchanged.
* ``Nemesis(...).run(schedule)`` carries the operations out on a live cluster, each in
  its own thread at its time, so faults overlap; it records what each one resolved to
  (which broker led, which pid was stopped) and how it went.

Operations (``op``):

``kill``            ``ray.kill(actor, no_restart=False)``: the process dies at once, Ray
                    restarts it.
``pause``           SIGSTOP the actor's process, SIGCONT it ``duration_s`` later (a process
                    that stops answering: a GC pause, a hung disk, a frozen VM).
``slow``            SIGSTOP/SIGCONT in bursts (``stop_ms`` stopped, ``run_ms`` running)
                    for ``duration_s``: a slow disk or a starved event loop.
``remove_node``     remove a worker Ray node (``allow_graceful=False``: every process on
                    it dies), and ``duration_s`` later bring a new node up; it takes the
                    lost broker's id and data dir (they are on this machine's disk).
``rebalance``       run the controller's preferred-leader rebalance now.
``consumer_rejoin`` a group consumer closes and a new one joins in its place.
``consumer_stall``  a group consumer stops polling for ``duration_s`` (past its
                    ``max_poll_interval_ms`` it leaves the group and rejoins).
``wipe_voter``      a controller voter (``role`` leader, or follower with ``pick``) loses
                    its disk: its process is stopped, its quorum directory removed, the
                    process killed; Ray restarts it over the empty directory, where it
                    rejoins recovering and catches up from the leader (issue 19). Done only
                    when every voter is reachable and none is recovering (waited for up
                    to ``WIPE_WAIT_S``), so a majority always keeps its data; skipped
                    (and recorded) otherwise.

Targets of kill/pause/slow: a ``replica`` (``topic``, ``partition``, ``role`` leader or
follower, ``pick`` choosing among followers), a ``broker`` (``broker`` id, or the
``leader_of`` [topic, partition]), the group ``coordinator``, the ``controller`` (the
active one: the controller quorum's leader voter), a ``voter`` (a controller voter that
is not the active one, ``pick`` choosing among them; when the schedule has
``controller_voters`` of 3 or more), and the ``stream_worker`` of the soak's stream job
(when the schedule has ``stream_workers``). ``rebalance`` runs on the active voter.
Roles are resolved when the operation runs (the leader then), so a rerun of a schedule
strikes the same roles at the same times; what they resolved to is in the record.

Bounds: every operation starts inside ``fault_window_s`` (the schedule's first 75%) and
heals by its end: a pause ends with SIGCONT, a removed node comes back, a kill heals
itself through Ray's restart, a wiped voter catches up. At most one node is removed or
one voter wiped at a time, ``NODE_GAP_S`` apart (replication factor
3 keeps a quorum of nodes; the harness never removes the head, where the driver and the
controller run). ``heal()`` undoes whatever is still in effect, and the process
identity of every signalled pid is checked first (pid and start time from /proc), so a
pid reused by another process on this shared machine is never signalled.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import threading
import time
import traceback
from typing import Any, Callable

FAULT_WINDOW_FRACTION = 0.75
OP_WEIGHTS = {
    "kill": 3, "pause": 4, "slow": 2, "remove_node": 1, "rebalance": 2, "consumer_rejoin": 1, "consumer_stall": 1,
    "follower_pause_leader_kill": 2, "wipe_voter": 1,
}
# Kinds only scheduled on a controller quorum of 3 or more voters (``controller_voters``):
# left out otherwise, so a schedule without them is what it was before they existed.
VOTER_OP_KINDS = ("wipe_voter",)
VOTER_FAULTS_MIN_VOTERS = 3
STREAM_WORKER = "stream-worker"  # the target name of the stream job's worker
NODE_RETURN_MIN_S = 4.0
NODE_GAP_S = 20.0  # between one node's return and the next removal: time for a broker to start
RESOLVE_TIMEOUT_S = 5.0
WIPE_WAIT_S = 20.0  # how long a wipe_voter waits for every voter to be up and caught up
MAIN_THREAD_WAIT_S = 180.0


def generate_schedule(seed: int, duration_s: float, *, topics: dict[str, int], brokers: int, worker_nodes: int,
                      consumers: int, mean_gap_s: float = 3.0, without: tuple[str, ...] = (),
                      stream_workers: int = 0, controller_voters: int = 0) -> dict:
    """A reproducible schedule (see the module docstring) for a run of ``duration_s``.

    ``topics``: {topic: partition count} of the topics faults may target; ``brokers``:
    broker ids 0..brokers-1; ``worker_nodes``: removable Ray nodes; ``consumers``:
    group consumers of the workload; ``mean_gap_s``: mean time between fault starts;
    ``without``: operation kinds (keys of OP_WEIGHTS) to leave out; ``stream_workers``:
    whether a stream job's worker is a target (0: never, and the schedule is what it was
    before stream workers were targets); ``controller_voters``: the size of the
    controller quorum: with 3 or more, voters are targets (a non-active voter killed or
    paused, a voter's directory wiped); below, never, and the schedule is what it was
    before voters were targets."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s!r}")
    unknown = sorted(set(without) - set(OP_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown operation kinds {unknown}; known: {sorted(OP_WEIGHTS)}")
    rng = random.Random(seed)
    window_s = duration_s * FAULT_WINDOW_FRACTION
    voter_faults = controller_voters >= VOTER_FAULTS_MIN_VOTERS
    kinds = [kind for kind in OP_WEIGHTS if kind not in without and (voter_faults or kind not in VOTER_OP_KINDS)]
    if not kinds:
        raise ValueError("every operation kind was left out")
    weights = [OP_WEIGHTS[kind] for kind in kinds]
    ops: list[dict] = []
    node_free_at_s = 0.0
    at_s = rng.uniform(1.0, 1.0 + mean_gap_s)
    while at_s < window_s:
        kind = rng.choices(kinds, weights)[0]
        room_s = max(0.5, window_s - at_s)  # every fault heals inside the window
        if kind == "remove_node":
            if worker_nodes < 1 or at_s < node_free_at_s or room_s < NODE_RETURN_MIN_S + 1:
                kind = "pause"
            else:
                duration = round(rng.uniform(NODE_RETURN_MIN_S, min(20.0, room_s)), 2)
                ops.append({"at_s": round(at_s, 2), "op": "remove_node", "node": rng.randrange(worker_nodes),
                            "duration_s": duration})
                node_free_at_s = at_s + duration + NODE_GAP_S
        if kind == "wipe_voter":
            # One voter wiped or one node removed at a time: two voters without their data
            # at once would be a lost majority, which no quorum survives (docs/controller-quorum.md).
            if at_s < node_free_at_s:
                kind = "pause"
            else:
                ops.append({"at_s": round(at_s, 2), "op": "wipe_voter", "role": rng.choice(["leader", "follower"]),
                            "pick": rng.randrange(2)})
                node_free_at_s = at_s + NODE_GAP_S
        if kind in ("consumer_rejoin", "consumer_stall") and consumers < 1:
            kind = "kill"
        if kind == "kill":
            ops.append({"at_s": round(at_s, 2), "op": "kill",
                        "target": _target(rng, topics, brokers, stream_workers, voter_faults)})
        elif kind == "pause":
            ops.append({"at_s": round(at_s, 2), "op": "pause",
                        "target": _target(rng, topics, brokers, stream_workers, voter_faults),
                        "duration_s": round(rng.uniform(0.3, min(10.0, room_s)), 2)})
        elif kind == "slow":
            ops.append({"at_s": round(at_s, 2), "op": "slow",
                        "target": _replica(rng, topics, rng.choice(["leader", "follower"])),
                        "duration_s": round(rng.uniform(1.0, min(15.0, room_s)), 2),
                        "stop_ms": rng.choice([50, 100, 200, 400]), "run_ms": rng.choice([50, 100, 200])})
        elif kind == "rebalance":
            ops.append({"at_s": round(at_s, 2), "op": "rebalance"})
        elif kind == "consumer_rejoin":
            ops.append({"at_s": round(at_s, 2), "op": "consumer_rejoin", "consumer": rng.randrange(consumers)})
        elif kind == "consumer_stall":
            ops.append({"at_s": round(at_s, 2), "op": "consumer_stall", "consumer": rng.randrange(consumers),
                        "duration_s": round(rng.uniform(1.0, min(12.0, room_s)), 2)})
        elif kind == "follower_pause_leader_kill":
            # The overlap Kafka's ISR rules exist for: a follower frozen (so it may
            # leave the ISR) while the leader dies, then a rebalance.
            topic = rng.choice(sorted(topics))
            partition = rng.randrange(topics[topic])
            pause_s = round(rng.uniform(1.0, min(8.0, room_s)), 2)
            ops.append({"at_s": round(at_s, 2), "op": "pause", "duration_s": pause_s,
                        "target": {"kind": "replica", "topic": topic, "partition": partition, "role": "follower",
                                   "pick": rng.randrange(2)}})
            ops.append({"at_s": round(at_s + rng.uniform(0.1, pause_s), 2), "op": "kill",
                        "target": {"kind": "replica", "topic": topic, "partition": partition, "role": "leader"}})
            ops.append({"at_s": round(at_s + pause_s + rng.uniform(0.0, 3.0), 2), "op": "rebalance"})
        at_s += rng.expovariate(1.0 / mean_gap_s)
    ops.sort(key=lambda op: op["at_s"])
    return {"seed": seed, "duration_s": duration_s, "fault_window_s": round(window_s, 2), "topics": topics,
            "brokers": brokers, "worker_nodes": worker_nodes, "consumers": consumers, "mean_gap_s": mean_gap_s,
            "without": sorted(without), "stream_workers": stream_workers, "controller_voters": controller_voters,
            "ops": ops}


def _replica(rng: random.Random, topics: dict[str, int], role: str) -> dict:
    topic = rng.choice(sorted(topics))
    return {"kind": "replica", "topic": topic, "partition": rng.randrange(topics[topic]), "role": role,
            "pick": rng.randrange(2)}


def _target(rng: random.Random, topics: dict[str, int], brokers: int, stream_workers: int = 0,
            voter_faults: bool = False) -> dict:
    kinds, weights = ["replica", "broker", "coordinator", "controller"], [6, 3, 2, 1]
    if stream_workers:
        kinds, weights = kinds + ["stream_worker"], weights + [2]
    if voter_faults:
        kinds, weights = kinds + ["voter"], weights + [1]
    kind = rng.choices(kinds, weights)[0]
    if kind == "voter":
        return {"kind": "voter", "pick": rng.randrange(2)}
    if kind == "replica":
        return _replica(rng, topics, rng.choice(["leader", "leader", "follower"]))
    if kind == "broker":
        if rng.random() < 0.5:
            topic = rng.choice(sorted(topics))
            return {"kind": "broker", "leader_of": [topic, rng.randrange(topics[topic])]}
        return {"kind": "broker", "broker": rng.randrange(brokers)}
    return {"kind": kind}


def fault_count(schedule: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in schedule["ops"]:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return counts


# -- carrying a schedule out ---------------------------------------------------------


def _process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # Field 22; the command name (field 2) may contain spaces, so split after it.
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Nemesis:
    """Carries out a schedule on a live cluster (see the module docstring).

    ``cluster``: the rafka ``Cluster`` handle; ``ray_cluster``: the
    ``ray.cluster_utils.Cluster``; ``workers``: its removable worker nodes (a list this
    object updates as nodes go and come); ``consumers``: an object with ``rejoin(i)``
    and ``stall(i, duration_s)`` (the group workload), or None. ``record`` receives one
    dict per operation step, with ``t_s`` relative to the run's start."""

    def __init__(self, cluster: Any, ray_cluster: Any, workers: list, consumers: Any, offsets_topic: str,
                 record: Callable[[dict], None], stream: Any = None) -> None:
        self.cluster = cluster
        self.stream = stream  # an object with worker() -> its actor handle, or None
        self.ray_cluster = ray_cluster
        self.workers = workers
        self.consumers = consumers
        self.offsets_topic = offsets_topic
        self._record = record
        self._paused: dict[tuple[int, int], str] = {}  # (pid, start time) -> what it is
        self._paused_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._start_s = 0.0
        self._node_lock = threading.Lock()
        self._main_calls: queue.Queue = queue.Queue()

    # -- running -------------------------------------------------------------------

    def start(self, schedule: dict) -> None:
        """Start every operation's thread; each sleeps until its time."""
        self._start_s = time.monotonic()
        for number, op in enumerate(schedule["ops"]):
            thread = threading.Thread(target=self._run_op, args=(number, op), name=f"nemesis-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def serve(self, duration_s: float) -> None:
        """Run, on the calling (main) thread, the node operations the op threads ask
        for, for ``duration_s``. Starting a Ray node installs signal handlers, which
        Python allows only on the main thread, so the main thread must sit here while
        the schedule runs."""
        deadline = time.monotonic() + duration_s
        while True:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return
            try:
                call, done, box = self._main_calls.get(timeout=min(remaining_s, 0.2))
            except queue.Empty:
                continue
            try:
                box["result"] = call()
            except BaseException as error:  # noqa: BLE001 - handed back to the asking thread
                box["error"] = error
            done.set()

    def _on_main_thread(self, call: Callable[[], Any]) -> Any:
        done, box = threading.Event(), {}
        self._main_calls.put((call, done, box))
        if not done.wait(MAIN_THREAD_WAIT_S):
            raise TimeoutError(f"the main thread did not serve a node operation in {MAIN_THREAD_WAIT_S} s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def join(self, timeout_s: float) -> None:
        """Wait (serving node operations) until every op thread has finished."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(thread.is_alive() for thread in self._threads):
            self.serve(0.5)

    def heal(self) -> None:
        """Stop scheduling, resume every paused process (the op threads bring back
        their nodes themselves; ``join`` waits for them)."""
        self._stop.set()
        with self._paused_lock:
            paused = list(self._paused.items())
            self._paused.clear()
        for (pid, started), what in paused:
            self._signal(pid, started, signal.SIGCONT)
            self._log({"op": "heal", "resumed": what, "pid": pid})

    def _now_s(self) -> float:
        return round(time.monotonic() - self._start_s, 3)

    def _log(self, entry: dict) -> None:
        self._record({"t_s": self._now_s(), **entry})

    def _sleep_until(self, at_s: float) -> bool:
        """Sleep until ``at_s`` into the run; False if the nemesis was stopped."""
        delay_s = self._start_s + at_s - time.monotonic()
        return not self._stop.wait(delay_s) if delay_s > 0 else not self._stop.is_set()

    def _run_op(self, number: int, op: dict) -> None:
        if not self._sleep_until(op["at_s"]):
            self._log({"number": number, "op": op["op"], "outcome": "not run (stopped)"})
            return
        try:
            details = getattr(self, "_op_" + op["op"])(op) or {}
            self._log({"number": number, "op": op["op"], "outcome": "done", "scheduled_s": op["at_s"], **details})
        except Exception as error:  # noqa: BLE001 - a fault that could not be applied is recorded, not fatal
            self._log({"number": number, "op": op["op"], "outcome": "skipped", "scheduled_s": op["at_s"],
                       "error": repr(error)[:300], "where": traceback.format_exc(limit=2)[-300:]})

    # -- targets -------------------------------------------------------------------

    def _partition_state(self, topic: str, partition: int) -> dict:
        import ray

        ref = self.cluster.controller.metadata.remote([topic])
        state = ray.get(ref, timeout=RESOLVE_TIMEOUT_S)[topic][partition]
        return state

    def _resolve(self, target: dict) -> tuple[str, dict]:
        """The actor name a target means now, and what it resolved to."""
        from rafka.actors import names

        kind = target["kind"]
        if kind == "controller":
            # The active controller: the controller quorum's leader voter (the actor named
            # names.CONTROLLER only forwards to it). No leader now: the router.
            leader = self.cluster.quorum()["leader"]
            if leader is None:
                return names.CONTROLLER, {}
            return names.raft_voter(leader), {"voter": leader}
        if kind == "voter":
            quorum = self.cluster.quorum()
            others = sorted(s["voter_id"] for s in quorum["voters"] if s["voter_id"] != quorum["leader"])
            if not others:
                raise LookupError("the controller quorum has no voter besides the active one")
            chosen = others[target.get("pick", 0) % len(others)]
            return names.raft_voter(chosen), {"voter": chosen, "leader": quorum["leader"]}
        if kind == "coordinator":
            return names.group_coordinator(0), {}
        if kind == "stream_worker":
            if self.stream is None:
                raise LookupError("this run has no stream job")
            return STREAM_WORKER, {}
        if kind == "broker":
            if "broker" in target:
                return names.broker(target["broker"]), {"broker": target["broker"]}
            state = self._partition_state(*target["leader_of"])
            if state["leader"] < 0:
                raise LookupError(f"{target['leader_of']} has no leader now")
            return names.broker(state["leader"]), {"broker": state["leader"], "leader_epoch": state["leader_epoch"]}
        state = self._partition_state(target["topic"], target["partition"])
        if target["role"] == "leader":
            broker = state["leader"]
            if broker < 0:
                raise LookupError(f"{target['topic']}-{target['partition']} has no leader now")
        else:
            followers = sorted(b for b in state["replicas"] if b != state["leader"])
            broker = followers[target.get("pick", 0) % len(followers)]
        return names.replica(target["topic"], target["partition"], broker), {
            "broker": broker, "leader": state["leader"], "leader_epoch": state["leader_epoch"], "isr": state["isr"]}

    def _actor(self, name: str):
        import ray

        if name == STREAM_WORKER:
            return self.stream.worker()  # not a named actor
        return ray.get_actor(name, namespace=self.cluster.namespace)

    def _pid_of(self, name: str) -> tuple[int, int]:
        import ray

        actor = self._actor(name)
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=RESOLVE_TIMEOUT_S)
        started = _process_start_time(pid)
        if started is None:
            raise LookupError(f"{name}'s process {pid} is gone")
        return pid, started

    def _signal(self, pid: int, started: int, signum: int) -> bool:
        """Send ``signum`` only if ``pid`` is still the process we looked up."""
        if _process_start_time(pid) != started:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    # -- operations ----------------------------------------------------------------

    def _op_kill(self, op: dict) -> dict:
        import ray

        name, resolved = self._resolve(op["target"])
        ray.kill(self._actor(name), no_restart=False)
        return {"actor": name, **resolved}

    def _op_pause(self, op: dict) -> dict:
        name, resolved = self._resolve(op["target"])
        pid, started = self._pid_of(name)
        key = (pid, started)
        with self._paused_lock:
            if key in self._paused:
                return {"actor": name, "pid": pid, "note": "already paused by another operation", **resolved}
            self._paused[key] = name
        self._signal(pid, started, signal.SIGSTOP)
        self._stop.wait(op["duration_s"])
        with self._paused_lock:
            still_mine = self._paused.pop(key, None) is not None
        if still_mine:
            self._signal(pid, started, signal.SIGCONT)
        return {"actor": name, "pid": pid, "resumed_s": self._now_s(), **resolved}

    def _op_slow(self, op: dict) -> dict:
        name, resolved = self._resolve(op["target"])
        pid, started = self._pid_of(name)
        key = (pid, started)
        with self._paused_lock:
            if key in self._paused:
                return {"actor": name, "pid": pid, "note": "already paused by another operation", **resolved}
        end_s = time.monotonic() + op["duration_s"]
        bursts = 0
        while time.monotonic() < end_s and not self._stop.is_set():
            with self._paused_lock:
                if key in self._paused:
                    break  # a pause took it over
                self._paused[key] = name
            self._signal(pid, started, signal.SIGSTOP)
            time.sleep(op["stop_ms"] / 1000)
            with self._paused_lock:
                mine = self._paused.pop(key, None) is not None
            if mine:
                self._signal(pid, started, signal.SIGCONT)
            bursts += 1
            time.sleep(op["run_ms"] / 1000)
        return {"actor": name, "pid": pid, "bursts": bursts, **resolved}

    def _op_rebalance(self, op: dict) -> dict:
        import ray

        def trigger(controller):
            # Runs inside the controller's process, on a thread of its own (not the
            # actor's event loop): hand the rebalance to the loop its liveness task runs
            # on, as the periodic rebalance would run, and wait for it.
            import asyncio

            if controller._heartbeats is None:
                return "the controller has not started its loop yet"
            future = asyncio.run_coroutine_threadsafe(controller._rebalance_preferred_leaders(),
                                                      controller._heartbeats.get_loop())
            future.result(timeout=20)
            return "done"

        # On the active controller itself: the actor named names.CONTROLLER is its router,
        # which holds no controller state.
        name, resolved = self._resolve({"kind": "controller"})
        outcome = ray.get(self._actor(name).__ray_call__.remote(trigger), timeout=30)
        return {"rebalance": outcome, **resolved}

    def _op_wipe_voter(self, op: dict) -> dict:
        import shutil

        import ray

        from rafka.actors import names

        # Wiping a voter while another is down or recovering could leave fewer than a
        # majority with their data: wait (bounded) for the quorum to be whole, else skip.
        deadline_s = time.monotonic() + WIPE_WAIT_S
        while True:
            quorum = self.cluster.quorum()
            unavailable = [s["voter_id"] for s in quorum["voters"] if not s["reachable"] or s.get("recovering")]
            if quorum["leader"] is not None and not unavailable:
                break
            if time.monotonic() > deadline_s or self._stop.is_set():
                raise LookupError(f"voters {unavailable} are unreachable or recovering (leader: {quorum['leader']})")
            time.sleep(0.5)
        if op["role"] == "leader":
            chosen = quorum["leader"]
        else:
            others = sorted(s["voter_id"] for s in quorum["voters"] if s["voter_id"] != quorum["leader"])
            chosen = others[op.get("pick", 0) % len(others)]
        actor = ray.get_actor(names.raft_voter(chosen), namespace=self.cluster.namespace)

        def where(voter):
            from rafka.actors.controller_quorum import quorum_directory

            return os.getpid(), quorum_directory(voter.data_dir, voter.voter_id)

        pid, directory = ray.get(actor.__ray_call__.remote(where), timeout=RESOLVE_TIMEOUT_S)
        started = _process_start_time(pid)
        if started is None:
            raise LookupError(f"voter {chosen}'s process {pid} is gone")
        # Stopped while its directory goes, so it writes nothing more; then killed, and
        # Ray restarts it over the empty directory.
        if not self._signal(pid, started, signal.SIGSTOP):
            raise LookupError(f"voter {chosen}'s process {pid} is gone")
        shutil.rmtree(directory, ignore_errors=True)
        self._signal(pid, started, signal.SIGKILL)
        return {"voter": chosen, "was_leader": chosen == quorum["leader"], "pid": pid, "directory": directory}

    def _op_consumer_rejoin(self, op: dict) -> dict:
        if self.consumers is None:
            raise LookupError("no group workload")
        self.consumers.rejoin(op["consumer"])
        return {"consumer": op["consumer"]}

    def _op_consumer_stall(self, op: dict) -> dict:
        if self.consumers is None:
            raise LookupError("no group workload")
        self.consumers.stall(op["consumer"], op["duration_s"])
        return {"consumer": op["consumer"]}

    def _op_remove_node(self, op: dict) -> dict:
        import ray

        with self._node_lock:
            if not self.workers:
                raise LookupError("no worker node to remove")
            node = self.workers[op["node"] % len(self.workers)]
            brokers = [b["broker_id"] for b in self.cluster.brokers() if b["node_id"] == node.node_id]
            self._on_main_thread(lambda: self.ray_cluster.remove_node(node, allow_graceful=False))
            self.workers.remove(node)
            self._log({"op": "remove_node", "step": "removed", "node_id": node.node_id, "brokers": brokers})
            # The node is back no earlier than its duration and not before Ray has
            # declared it dead (until then its broker's id is not free to take over).
            self._stop.wait(op["duration_s"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and any(
                    n["Alive"] for n in ray.nodes() if n["NodeID"] == node.node_id):
                time.sleep(0.2)

            def add_node():
                added = self.ray_cluster.add_node(num_cpus=1)
                self.ray_cluster.wait_for_nodes()
                return added

            for attempt in range(3):
                try:
                    replacement = self._on_main_thread(add_node)
                    break
                except Exception as error:  # noqa: BLE001 - a node must come back: try again
                    self._log({"op": "remove_node", "step": f"add_node attempt {attempt} failed",
                               "error": repr(error)[:300]})
                    if attempt == 2:
                        raise
            self.workers.append(replacement)
            restarted = []
            for broker_id in brokers:
                try:
                    restarted.append(self.cluster.add_broker(replacement.node_id, broker_id=broker_id))
                except Exception as error:  # noqa: BLE001 - the node watch may have done it already
                    restarted.append(repr(error)[:200])
        return {"node_id": node.node_id, "brokers": brokers, "replacement": replacement.node_id,
                "restarted": restarted, "back_s": self._now_s()}
