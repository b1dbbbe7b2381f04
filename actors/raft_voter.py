"""A controller-quorum voter: the Raft core (actors/raft.py) hosted in a Ray actor, its
peers reached by actor calls. The design is in docs/controller-quorum.md.

Each voter is an async actor named ``names.raft_voter(voter_id)`` in the cluster's
namespace, with ``num_cpus=0``, optionally pinned to one Ray node; its directory holds a
``RaftLog``. Peers call each other's ``request`` (RequestVote, AppendEntries and
InstallSnapshot are one method: the message's ``type`` says which) with a timeout of
``election_timeout_s[1]`` (a slow reply still counts; the core resends after its
``request_timeout_s``); a call that fails or times out is dropped, and the core resends on
its own timers. No port besides Ray's is opened.

The replicated state machine is the controller's metadata (``MetadataStateMachine``): the
same records and ``apply_record`` as actors/metadata_store.py, so wiring the controller
onto the quorum changes where records are made durable, not what they mean.

``propose(record, timeout_s)`` on the leader returns once the record is committed (on a
majority's disks) and applied here, with the applied metadata sequence. It raises
``NotLeaderError`` (retriable) on a voter that is not the leader or when the entry was
replaced by a later leader's (it was never committed), ``RequestTimeoutError`` when
neither happened within ``timeout_s`` (the outcome is then unknown: the record may still
commit), and the record's own error (ValueError, KeyError, IndexError) when the committed
record does not apply, which every voter sees alike. Pending proposals are bounded by
``MAX_PENDING_PROPOSALS``.

Concurrency: Ray runs the actor's calls on one event loop; the core is only touched from
it, so calls interleave only at awaits. Disk writes (fsync) run on the loop: a metadata
record is small and a voter has nothing else to do meanwhile. The loop ticks every
``tick_interval_s`` (idle cost: a heartbeat per peer every ``heartbeat_interval_s`` on the
leader, one timer wake-up per tick on each voter).

Not promised: membership changes, linearizable reads from followers (``applied_metadata()`` is the
voter's applied state, which may lag the leader's).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import random
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors import names
from rafka.actors.metadata_store import INITIAL_STATE, RECORD_TYPES, apply_record
from rafka.actors.process import tune_actor_process
from rafka.actors.raft import RaftCore
from rafka.actors.raft_log import RaftLog
from rafka.errors import NotLeaderError, RequestTimeoutError

MAX_PENDING_PROPOSALS = 1000
DEFAULT_ELECTION_TIMEOUT_S = (0.6, 1.2)
DEFAULT_HEARTBEAT_INTERVAL_S = 0.1
logger = logging.getLogger(__name__)


class MetadataStateMachine:
    """The controller's metadata (see actors/metadata_store.py) as a Raft state machine.

    Each applied record gets the next ``sequence``, as ``MetadataStore.apply`` gives it, so
    every voter numbers records alike."""

    def __init__(self) -> None:
        self.state: dict = copy.deepcopy(INITIAL_STATE)

    def apply(self, record: dict) -> int:
        record = dict(record, sequence=self.state["sequence"] + 1)
        apply_record(self.state, record)  # looks everything up before changing anything
        return self.state["sequence"]

    def snapshot(self) -> dict:
        return copy.deepcopy(self.state)

    def restore(self, state: dict | None) -> None:
        self.state = {**copy.deepcopy(INITIAL_STATE), **copy.deepcopy(state or {})}


class RaftVoter:
    """One voter; a plain class that ``create_voter`` turns into an actor."""

    def __init__(self, voter_id: str, voters: list[str], directory: str, namespace: str, *, bootstrap: bool = False,
                 election_timeout_s: tuple[float, float] = DEFAULT_ELECTION_TIMEOUT_S,
                 heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S, snapshot_every: int = 1000,
                 initial_state: dict | None = None) -> None:
        tune_actor_process()
        self.voter_id = voter_id
        self.namespace = namespace
        self.machine = MetadataStateMachine()
        log = RaftLog(directory)
        if initial_state is not None and bootstrap and log.fresh:
            # A new quorum taking over an older store's metadata (a single-directory
            # controller store): every voter starts from the same snapshot at index 1.
            log.save_snapshot(1, 0, initial_state)
        self.core = RaftCore(voter_id, voters, log, self.machine, clock=time.monotonic,
                             rng=random.Random(), election_timeout_s=tuple(election_timeout_s),
                             heartbeat_interval_s=heartbeat_interval_s, snapshot_every=snapshot_every,
                             bootstrap=bootstrap, on_apply=self._on_apply)
        self.tick_interval_s = heartbeat_interval_s / 2
        self._handles: dict[str, Any] = {}
        self._waiting: dict[int, tuple[int, asyncio.Future]] = {}
        self._loop_task: asyncio.Task | None = None

    # -- the loop ----------------------------------------------------------------------

    def _ensure_running(self) -> None:
        # Started by the first call: __init__ runs outside the actor's event loop.
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last_tick_s = time.monotonic()
        while True:
            now_s = time.monotonic()
            if now_s - last_tick_s > self.core.election_timeout_s[0]:
                # Worth an operator's eye: a voter that does not run for an election
                # timeout makes its followers stand (or, leading, looks dead to them).
                logger.warning("raft voter %s: its event loop did not run for %.2f s (process paused, starved of "
                               "CPU, or a blocking call on the loop)", self.voter_id, now_s - last_tick_s)
            last_tick_s = now_s
            try:
                self._send(self.core.tick())
                self._after_tick()
            except Exception as error:  # noqa: BLE001 - a failed disk shows in status; keep answering
                logger.error("raft voter %s: tick failed: %r", self.voter_id, error)
            await asyncio.sleep(self.tick_interval_s)

    def _after_tick(self) -> None:
        """Called on the loop after every tick; a host (the controller) follows the
        core's role changes here."""

    def _send(self, requests: list[dict]) -> None:
        loop = asyncio.get_running_loop()
        for request in requests:
            loop.create_task(self._call(request))

    async def _call(self, request: dict) -> None:
        # The reply is awaited for a whole election timeout, not the core's resend
        # interval: on a loaded machine a round trip can take longer than 0.3 s, and a
        # reply dropped for that made the leader step down (check-quorum) and candidates
        # lose elections they had won, one election timeout per round (seen as churning
        # terms at start and 4 s failovers). A late reply is still valid: the core
        # checks its term and only moves indexes forward.
        try:
            peer = self._handles.get(request["to"])
            if peer is None:  # a GCS round trip, off the loop that ticks the core
                peer = self._handles[request["to"]] = await asyncio.to_thread(
                    ray.get_actor, names.raft_voter(request["to"]), namespace=self.namespace)
            reply = await asyncio.wait_for(peer.request.remote(request),
                                           timeout=max(self.core.request_timeout_s, self.core.election_timeout_s[1]))
        except Exception:  # noqa: BLE001 - dead, restarting, paused or slow: the core resends on its timers
            self._handles.pop(request["to"], None)
            return
        self._send(self.core.handle_reply(reply))

    def _on_apply(self, index: int, term: int, result: Any) -> None:
        waiting = self._waiting.pop(index, None)
        if waiting is None:
            return
        proposed_term, future = waiting
        if future.done():
            return
        if term != proposed_term:
            future.set_exception(NotLeaderError(
                f"voter {self.voter_id}: the entry proposed at index {index} in term {proposed_term} was replaced "
                f"by term {term}'s; it was not committed"))
        elif isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)

    # -- calls -------------------------------------------------------------------------

    async def start(self) -> dict:
        self._ensure_running()
        return self.core.status()

    async def request(self, message: dict) -> dict:
        """A peer's RequestVote / AppendEntries / InstallSnapshot; answered after fsync."""
        self._ensure_running()
        reply = self.core.handle(message)
        self._send(self.core.take_outbox())
        return reply

    async def propose(self, record: dict, timeout_s: float = 5.0) -> dict:
        """Commit ``record`` through the quorum (see the module docstring)."""
        self._ensure_running()
        if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
            raise ValueError(f"not a metadata record (a dict whose type is one of {sorted(RECORD_TYPES)}): {record!r}")
        if len(self._waiting) >= MAX_PENDING_PROPOSALS:
            raise RequestTimeoutError(f"voter {self.voter_id} has {len(self._waiting)} proposals pending; retry later")
        # Registered before proposing: a single voter commits and applies inside propose().
        future = asyncio.get_running_loop().create_future()
        index = self.core.log.last_index + 1
        self._waiting[index] = (self.core.term, future)
        try:
            term, proposed_index = self.core.propose(record)
        except BaseException:
            self._waiting.pop(index, None)
            raise
        assert proposed_index == index, (proposed_index, index)
        self._send(self.core.take_outbox())
        try:
            sequence = await asyncio.wait_for(asyncio.shield(future), timeout=timeout_s)
        except asyncio.TimeoutError:
            self._waiting.pop(index, None)
            raise RequestTimeoutError(f"voter {self.voter_id}: index {index} of term {term} was not committed "
                                      f"within {timeout_s} s; it may still be") from None
        return {"term": term, "index": index, "sequence": sequence}

    async def status(self) -> dict:
        self._ensure_running()
        return self.core.status()

    async def applied_metadata(self) -> dict:
        """This voter's applied metadata and the last index applied to it."""
        self._ensure_running()
        return {"last_applied": self.core.last_applied, "state": self.machine.state}

    async def pid(self) -> int:
        return os.getpid()


def create_voter(voter_id: str, voters: list[str], directory: str, namespace: str, *, bootstrap: bool = False,
                 node_id: str | None = None, **options: Any):
    """Start voter ``voter_id`` as a named async actor (``num_cpus=0``), on Ray node
    ``node_id`` when given. ``bootstrap=True`` only when every voter of a new quorum is
    created for the first time: a voter that finds its directory empty without it is
    treated as one whose disk was lost (see actors/raft.py)."""
    actor_options: dict[str, Any] = {"name": names.raft_voter(voter_id), "namespace": namespace, "num_cpus": 0,
                                     "max_concurrency": 100}
    if node_id is not None:
        actor_options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    return ray.remote(RaftVoter).options(**actor_options).remote(
        voter_id, voters, directory, namespace, bootstrap=bootstrap, **options)
