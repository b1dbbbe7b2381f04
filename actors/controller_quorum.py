"""The controller quorum's placement, start-up checks and the controller's store over it
(docs/controller-quorum.md).

- ``QuorumStore``: the controller's metadata store interface (``state``, ``apply``) over
  its Raft voter: ``apply`` commits the record through the quorum (a majority's disks)
  and returns once it is applied here, so the controller only acts on committed metadata.
  It refuses (``NotControllerError``) unless the voter is the active controller of the
  epoch it acts under, so an operation begun in an earlier term never commits in a later.
- Directories: voter ``v`` keeps its Raft log in ``<data_dir>/quorum/<v>`` on its node,
  with ``voters.json`` naming the quorum's voter set (a restart must use the same set).
- ``plan_quorum``: which voters to start where, and whether the quorum is new
  (``bootstrap``), migrated from a single-directory store, or must not start:

  * no voter data anywhere and no broker directories: a new quorum (bootstrap);
  * no voter data but an old ``<data_dir>/controller`` store: a new quorum whose first
    snapshot is that store's state (migration, once);
  * no voter data but broker directories: refused (``ClusterError``): the metadata is
    lost, and an empty controller over old broker data would reuse it wrongly;
  * data for fewer than a majority of the voter set: refused, naming the voters and
    directories that are missing;
  * otherwise the voters start where their data is; a voter without data starts
    recovering (actors/raft.py) and catches up from the leader.

  Count: 3 voters when the Ray cluster has 3 or more alive nodes (each on its own node),
  else 1. On a restart the stored voter set wins.

Probing a node is a ``num_cpus=0`` Ray task pinned to it (skipped for the node the caller
runs on), so the embedded single-node start reads its own disk and starts no task.
Not promised: membership changes (the voter set is fixed when the quorum is created; a
voter whose node is lost is started again elsewhere under its id, by the active
controller: actors/controller.py, "lost voters").
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rafka.actors.framing import frames
from rafka.actors.metadata_store import LOG_FILE as STORE_LOG_FILE, SNAPSHOT_FILE as STORE_SNAPSHOT_FILE, MetadataStore
from rafka.errors import ClusterError, NotControllerError

QUORUM_DIR = "quorum"
VOTERS_FILE = "voters.json"
RAFT_META_FILE = "raft.meta"
LEGACY_STORE_DIR = "controller"
QUORUM_SIZE_MULTI_NODE = 3


class QuorumStore:
    """The controller's store: ``state`` is the applied metadata; ``apply`` commits."""

    def __init__(self, voter: Any, commit_timeout_s: float) -> None:
        self._voter = voter
        self.commit_timeout_s = commit_timeout_s

    @property
    def state(self) -> dict:
        return self._voter.machine.state

    async def apply(self, record: dict) -> None:
        """Commit ``record`` (a majority has it durably) and apply it; raises
        ``NotControllerError`` off the active controller, ``NotLeaderError`` or
        ``RequestTimeoutError`` (outcome unknown) from the quorum, and the record's own
        error when it does not apply (nothing changed then)."""
        voter, epoch = self._voter, self._voter.epoch
        if epoch is None or voter.core.term != epoch:
            raise NotControllerError(f"controller voter {voter.voter_id} is not the active controller "
                                     f"(term {voter.core.term}; leader: {voter.core.leader_id})")
        result = await voter.propose(record, self.commit_timeout_s)
        if result["term"] != epoch:
            raise NotControllerError(f"controller voter {voter.voter_id}: epoch {epoch} ended while committing")


def quorum_directory(data_dir: str, voter_id: str) -> str:
    return os.path.join(data_dir, QUORUM_DIR, voter_id)


def prepare_voter_directory(data_dir: str, voter_id: str, voters: list[str]) -> str:
    """Make voter ``voter_id``'s directory and record the voter set in it; returns it."""
    directory = quorum_directory(data_dir, voter_id)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, VOTERS_FILE)
    if not os.path.exists(path):
        temporary = path + ".tmp"
        with open(temporary, "w") as handle:
            json.dump(list(voters), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    return directory


def probe(data_dir: str) -> dict:
    """What this node's disk holds under ``data_dir``: voters with data (a Raft meta file
    that is not a recovering voter's), recorded voter sets, an old single-directory
    store, broker directories."""
    quorum = os.path.join(data_dir, QUORUM_DIR)
    present, voter_sets = [], {}
    for voter_id in sorted(os.listdir(quorum)) if os.path.isdir(quorum) else []:
        directory = os.path.join(quorum, voter_id)
        try:
            with open(os.path.join(directory, VOTERS_FILE)) as handle:
                voter_sets[voter_id] = json.load(handle)
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(directory, RAFT_META_FILE), "rb") as handle:
                meta = [value for _, value in frames(handle.read())]
        except OSError:
            continue
        if meta and isinstance(meta[0], dict) and not meta[0].get("recovering"):
            present.append(voter_id)
    legacy = os.path.join(data_dir, LEGACY_STORE_DIR)
    has_legacy = any(os.path.exists(os.path.join(legacy, name)) for name in (STORE_SNAPSHOT_FILE, STORE_LOG_FILE))
    brokers = sorted(name for name in os.listdir(data_dir) if name.startswith("broker-")) \
        if os.path.isdir(data_dir) else []
    return {"present": present, "voter_sets": voter_sets, "legacy": has_legacy, "brokers": brokers}


def read_legacy_state(data_dir: str) -> dict:
    """The state of the single-directory store a quorum is migrated from."""
    store = MetadataStore(os.path.join(data_dir, LEGACY_STORE_DIR))
    try:
        return store.state
    finally:
        store.close()


@dataclasses.dataclass
class QuorumPlan:
    voters: list[str]
    placements: list[tuple[str, str]]  # (voter id, node id)
    bootstrap: bool
    initial_state: dict | None
    multi_node: bool


def plan_quorum(data_dir: str, node_ids: list[str], here: str, voter_count: int | None = None) -> QuorumPlan:
    """Decide the quorum for a start over ``data_dir`` on alive Ray nodes ``node_ids``
    (``here``: the caller's node, first choice for a single voter); see the module
    docstring. ``voter_count`` overrides the count of a new quorum; more voters than
    nodes share nodes (that survives a voter's process, not its node: for tests and
    trials). Raises ``ClusterError`` when the metadata is lost or too little of it
    survives."""
    if voter_count is not None and (isinstance(voter_count, bool) or not isinstance(voter_count, int)
                                    or voter_count < 1):
        raise ValueError(f"controller_voters must be a positive int, got {voter_count!r}")
    multi_node = len(node_ids) >= QUORUM_SIZE_MULTI_NODE
    nodes = sorted(node_ids, key=lambda node: node != here)
    probed_nodes = nodes if multi_node else [here]
    probes = dict(zip(probed_nodes, _probe_nodes(data_dir, probed_nodes, here)))
    voter_sets = [tuple(voters) for result in probes.values() for voters in result["voter_sets"].values()]
    if voter_sets:
        voters = list(max(set(voter_sets), key=voter_sets.count))
    else:
        count = voter_count if voter_count is not None else QUORUM_SIZE_MULTI_NODE if multi_node else 1
        voters = [str(index) for index in range(count)]
    shared_nodes = len(voters) > len(nodes)
    holders = {voter: [node for node, result in probes.items() if voter in result["present"]] for voter in voters}
    present = [voter for voter in voters if holders[voter]]
    placements: dict[str, str] = {}
    if shared_nodes:
        # More voters than nodes (asked for, or a quorum whose nodes were lost): round robin.
        placements = {voter: (holders[voter] or nodes)[index % len(holders[voter] or nodes)]
                      for index, voter in enumerate(voters)}
    for voter in sorted(voters, key=lambda v: len(holders[v])):  # the voters with fewest candidate nodes first
        choice = next((node for node in holders[voter] if node not in placements.values()), None)
        if choice is not None and voter not in placements:
            placements[voter] = choice
    for voter in voters:
        if voter not in placements:
            placements[voter] = next(node for node in nodes if node not in placements.values())
    majority = len(voters) // 2 + 1
    directories = {voter: quorum_directory(data_dir, voter) for voter in voters}
    initial_state = None
    if not present:
        legacy = [node for node, result in probes.items() if result["legacy"]]
        brokers = sorted({name for result in probes.values() for name in result["brokers"]})
        if legacy:
            initial_state = _read_legacy_on(data_dir, legacy[0], here)
        elif brokers or voter_sets:
            raise ClusterError(
                f"refusing to start: no controller quorum data under {os.path.join(data_dir, QUORUM_DIR)} on any "
                f"alive node (missing: {sorted(directories.values())}), but broker data exists ({brokers}) "
                f"and the voter set {voters} was recorded. The cluster's metadata (topics, partitions) is lost; "
                f"restore a majority of the voters' directories, or move the broker directories away to start "
                f"an empty cluster")
        return QuorumPlan(voters, [(voter, placements[voter]) for voter in voters], True, initial_state,
                          multi_node and not shared_nodes)
    if len(present) < majority:
        missing = [voter for voter in voters if voter not in present]
        raise ClusterError(
            f"refusing to start: only {len(present)} of the {len(voters)} controller voters have their data "
            f"({[directories[v] for v in present]}); a majority ({majority}) is needed. Missing: "
            + ", ".join(f"voter {voter} ({directories[voter]})" for voter in missing)
            + ". Bring back the nodes or disks that hold them")
    if shared_nodes and voter_count is None and len(nodes) < len(voters):
        raise ClusterError(f"the controller quorum has {len(voters)} voters ({voters}) but only {len(nodes)} Ray "
                           f"nodes are alive; each voter needs a node of its own (the nodes holding their data)")
    return QuorumPlan(voters, [(voter, placements[voter]) for voter in voters], False, None,
                      multi_node and not shared_nodes)


def _pinned(function, node_id: str):
    return ray.remote(function).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))


def _probe_nodes(data_dir: str, node_ids: list[str], here: str) -> list[dict]:
    refs = {node: _pinned(probe, node).remote(data_dir) for node in node_ids if node != here}
    results = ray.get(list(refs.values()), timeout=60) if refs else []
    by_node = dict(zip(refs, results))
    return [probe(data_dir) if node == here else by_node[node] for node in node_ids]


def _read_legacy_on(data_dir: str, node_id: str, here: str) -> dict:
    if node_id == here:
        return read_legacy_state(data_dir)
    return ray.get(_pinned(read_legacy_state, node_id).remote(data_dir), timeout=60)
