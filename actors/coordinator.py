"""GroupCoordinator: consumer-group membership, server-side assignment, committed offsets.

Placement. The internal topic ``__consumer_offsets`` has N partitions (fixed when it is
first created: min(3, live brokers)); coordinator ``i`` is a named, detached async actor
that owns partition ``i`` and every group with ``crc32(group_id) % N == i``. Coordinators
are created on first use (``find_coordinator``) and restarted by Ray when they die
(``max_restarts=-1``); a restarted coordinator reloads its partition before answering.

Membership protocol (incremental, in the spirit of Kafka's KIP-848). A consumer calls
``heartbeat`` in a loop, reporting the partitions it *owns* (has applied and not yet
released). The coordinator keeps, per member:

* ``target``: where the group's assignor wants partitions (recomputed whenever the
  membership, a subscription, or a subscribed topic's partition count changes);
* ``granted``: what it has told the member it may own, ``(granted ∩ target)`` plus any
  target partition that no other member holds;
* ``owned``: what the member last reported, of what it held: a report never adds a
  partition the member was not granted. So a member that joins afresh (no member id:
  KIP-848's epoch 0) owns nothing, whatever it claims; a consumer back under a new id
  after its session ended may still report its old partitions, which by then may be
  another member's.

* ``revoking``: what left its grant at epoch e while the member may still own or be
  applying it: held until the member reports what it owns as of epoch e or later
  (``owned_epoch``, the epoch of the grant its consumer applied last). Without it, a
  heartbeat sent before the consumer applied a grant would release a partition the
  consumer is about to use.

A member *holds* ``granted ∪ owned ∪ revoking``. A partition is granted to a member only when no
other member holds it, so no partition ever has two owners: a moving partition is first
revoked (dropped from the old owner's grant), then released (the old owner reports it
no longer owns it, after committing), and only then granted to its new owner. The
assignor choice ("range" or "sticky") decides only the targets.

Fencing. Every change of a member's grant bumps its member ``epoch``, and each held
partition remembers the epoch it was granted at (KIP-1251's assignment epochs; it keeps
it while the member never gave the partition up). A commit names the member and the
epoch its consumer holds the partitions under, and is refused when the member is gone
(``UnknownMemberIdError``: its session ended, it left), when it does not hold the
partition (``CommitFailedError``), or when its epoch is older than the partition's
(``StaleMemberEpochError``: the partition moved away and back since the commit was
made, and another owner may have committed further). So an old owner (a zombie back
from a pause) never moves a committed offset behind its new owner's.

``heartbeat`` is a long poll: when the member already owns exactly its grant, the call
waits up to ``wait_ms`` for the group to change, so a rebalance reaches members at once
instead of at their next heartbeat interval.

Initial rebalance delay (Kafka's ``group.initial.rebalance.delay.ms``, KIP-134, asked
for by the consumer that joins an empty group: ``group_initial_rebalance_delay_ms``).
When several consumers start together, the first to join would otherwise get every
partition and start reading, only to hand most of them over a moment later. So a group
that a member joins while it is empty grants nothing for the delay; every member that
joins meanwhile extends it by the delay again (never past the first member's rebalance
timeout), and it ends at once when the group has ``group_initial_members`` members (a
launcher that starts N consumers at once, such as a stream job, knows N). Targets are
computed as usual meanwhile; grants start when it ends. A coordinator that restarts
during the delay forgets it (members then get partitions at once).

Liveness. A member whose heartbeat has not arrived for ``session_timeout_ms`` is
removed (its partitions are free again); so is one that was asked to release a
partition and has not within ``rebalance_timeout_ms`` (the consumer's
``max_poll_interval_ms``). A static member (``group_instance_id``) that rejoins within
its session timeout takes over its predecessor's grant and target: no other member's
assignment changes. The consumer client also leaves the group itself when its user has
not polled for ``max_poll_interval_ms``.

Durability. Offset commits and group state are records in the coordinator's partition
of ``__consumer_offsets`` (compacted; keys below), written with acks=all before the call
returns. The group record is written whenever membership changes and before any change
of a member's grant is told, so a restarted coordinator never grants a partition that a
member may still be consuming, and never gives out a member epoch twice. A change (new targets, a grant, a
commit) is applied in memory only once its record is written: a write that fails
leaves the state as it was, and the request raises. Loaded members get a fresh session
timeout to heartbeat again. Committed offsets survive coordinator crashes; a commit
that raised may or may not have been stored. Any client can write to the topic: a
record that is not one of the coordinator's (bytes that do not decode, a key or value
of the wrong shape) is logged with its partition and offset and skipped when loading;
everything else loads.

Concurrency. One asyncio lock per group orders its requests and the sweep; the sweep
decides which members expired again once it holds the lock, so a heartbeat that was
waiting for the lock meanwhile saves its member.

Metrics (``metrics.py``). Every ``METRICS_INTERVAL_S`` the sweep publishes each group's
member count and, for groups with members or a commit in the last
``LAG_RECENT_COMMIT_S``, its lag per topic (``group_lag.py``), in a task of its own so
that asking the leaders for their offsets never delays the sweep; every rebalance is
counted.

Kafka's classic protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, assignment computed
by the clients) runs beside this in ``actors/classic_group.py``: each group keeps a
``ClassicGroup``, and a group has classic members or native members, never both (a
join of the other kind is refused with ``InconsistentGroupProtocolError`` or Kafka's
INCONSISTENT_GROUP_PROTOCOL). Both kinds share the group id, its committed offsets,
``list_groups``, ``describe_group`` and ``delete_group``. Classic membership is in
memory only (a restarted coordinator makes classic members join again; docs/wire.md).

Record keys (msgpack): ``["o", group, topic, partition]`` → ``[offset, metadata,
commit_time_ms]``; ``["g", group]`` → the group state; a None value is a tombstone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
import zlib
from typing import Any

import msgpack
import ray

from rafka import calls
from rafka.actors import metrics, names
from rafka.actors.assignors import ASSIGNORS, assign
from rafka.actors.classic_group import ClassicGroup
from rafka.actors.group_lag import lag_by_topic
from rafka.actors.offsets_partition import ReplicaOffsetsPartition
from rafka.actors.process import tune_actor_process
from rafka.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InconsistentGroupProtocolError,
    InvalidConfigError,
    StaleMemberEpochError,
    TopicExistsError,
    UnknownMemberIdError,
)
from rafka.storage.batch import encode_stream, make_batch

logger = logging.getLogger(__name__)
# Kafka clients of the consumer protocol (KIP-848) see a member epoch one above
# rafka's: KIP-848 reserves epoch 0 for "join", and a rafka member is at epoch 0 until
# its first grant (wire/consumer_groups.py).
WIRE_MEMBER_EPOCH_OFFSET = 1

TopicPartition = tuple[str, int]
MAX_COORDINATORS = 3
SWEEP_INTERVAL_S = 0.1
METADATA_REFRESH_S = 3.0
READ_CHUNK_BYTES = 4 * 1024 * 1024
METRICS_INTERVAL_S = 5.0
LAG_RECENT_COMMIT_S = 600.0


def coordinator_index(group_id: str, coordinators: int) -> int:
    return zlib.crc32(group_id.encode("utf-8")) % coordinators


def offsets_topic_partitions(controller: Any) -> int:
    """N, the partition count of ``__consumer_offsets``, creating the topic if needed."""
    partitions = calls.call_with_retries(controller.metadata, [names.OFFSETS_TOPIC])[names.OFFSETS_TOPIC]
    if partitions is not None:
        return len(partitions)
    alive = sum(1 for broker in calls.call_with_retries(controller.brokers) if broker.get("alive", True))
    replication = max(1, min(MAX_COORDINATORS, alive))
    config = {"cleanup.policy": "compact", "min.insync.replicas": str(2 if replication >= 3 else 1)}
    try:
        calls.call_with_retries(controller.create_topic, names.OFFSETS_TOPIC, replication, replication, config)
    except TopicExistsError:
        pass  # another client created it first
    return len(calls.call_with_retries(controller.metadata, [names.OFFSETS_TOPIC])[names.OFFSETS_TOPIC])


def find_coordinator(controller: Any, namespace: str, group_id: str, coordinators: int | None = None):
    """Handle of the coordinator of ``group_id`` (started if it is not running)."""
    count = coordinators or offsets_topic_partitions(controller)
    return coordinator_handle(namespace, coordinator_index(group_id, count))


def coordinator_handle(namespace: str, index: int, create: bool = True):
    name = names.group_coordinator(index)
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        if not create:
            return None
    return (
        ray.remote(GroupCoordinator)
        .options(name=name, namespace=namespace, lifetime="detached", get_if_exists=True, num_cpus=0,
                 max_restarts=-1, max_concurrency=10_000, scheduling_strategy="SPREAD")
        .remote(index, namespace)
    )


class _Member:
    __slots__ = ("member_id", "instance_id", "client_id", "topics", "pattern", "assignor", "session_timeout_ms",
                 "rebalance_timeout_ms", "target", "granted", "owned", "revoking", "epoch", "assigned_epochs",
                 "deadline", "release_deadline")

    def __init__(self, member_id: str, request: dict) -> None:
        self.member_id = member_id
        self.instance_id: str | None = request.get("instance_id")
        self.client_id: str = request.get("client_id") or ""
        self.topics: frozenset[str] = frozenset(request.get("topics") or ())
        self.pattern: str | None = request.get("pattern")
        self.assignor: str = request.get("assignor") or "sticky"
        self.session_timeout_ms: int = request["session_timeout_ms"]
        self.rebalance_timeout_ms: int = request["rebalance_timeout_ms"]
        self.target: set[TopicPartition] = set()
        self.granted: set[TopicPartition] = set()
        self.owned: set[TopicPartition] = set()
        # Dropped from the grant at epoch e while the member may still own or apply it
        # (it has not reported what it owns as of epoch e or later): still held.
        self.revoking: dict[TopicPartition, int] = {}
        self.epoch = 0
        # Per held partition, the member epoch at which it was granted (KIP-1251's
        # assignment epochs): a commit from an older epoch of this member is stale.
        self.assigned_epochs: dict[TopicPartition, int] = {}
        self.deadline = time.monotonic() + self.session_timeout_ms / 1000
        self.release_deadline: float | None = None

    def held(self) -> set[TopicPartition]:
        return self.granted | self.owned | self.revoking.keys()

    def report(self, reported: set[TopicPartition], owned_epoch: int) -> set[TopicPartition]:
        """Take the member's report that it owns ``reported`` as of (having applied)
        its grant of ``owned_epoch``; returns what it released. A report never adds
        a partition it does not hold (a new member owns nothing), and a partition it is
        losing stays held until it reports an epoch at or after the one that dropped it."""
        before = self.held()
        self.owned = reported & before
        self.revoking = {tp: epoch for tp, epoch in self.revoking.items() if tp in self.owned or owned_epoch < epoch}
        held = self.held()
        self.assigned_epochs = {tp: e for tp, e in self.assigned_epochs.items() if tp in held}
        if self.release_deadline is not None and not (held - self.granted):
            self.release_deadline = None
        return before - held

    def to_record(self, change: "_Grant | None" = None, target: set[TopicPartition] | None = None) -> dict:
        """The member as stored; ``change`` and ``target`` are proposed, not yet applied."""
        granted, epoch, assigned = (self.granted, self.epoch, self.assigned_epochs) if change is None else change
        target = self.target if target is None else target
        return {
            "instance_id": self.instance_id, "client_id": self.client_id, "topics": sorted(self.topics),
            "pattern": self.pattern, "assignor": self.assignor, "session_timeout_ms": self.session_timeout_ms,
            "rebalance_timeout_ms": self.rebalance_timeout_ms, "epoch": epoch,
            # (What a proposed grant drops stays held: it is revoking.)
            "target": sorted(target), "held": sorted(granted | self.held()),
            "assigned_epochs": sorted([tp[0], tp[1], e] for tp, e in assigned.items()),
        }

    @classmethod
    def from_record(cls, member_id: str, record: dict) -> "_Member":
        """The member a group record stores; ValueError (or TypeError, KeyError) when
        the record is not one this coordinator wrote."""
        member = cls(member_id, record)
        for name in ("session_timeout_ms", "rebalance_timeout_ms", "epoch"):
            if isinstance(record[name], bool) or not isinstance(record[name], int):
                raise ValueError(f"member {member_id}: {name} is {record[name]!r}, not an int")
        member.epoch = record["epoch"]
        member.target = {_topic_partition(tp) for tp in record["target"]}
        # Whatever it held may still be in use: keep it granted until it reports in.
        member.granted = {_topic_partition(tp) for tp in record["held"]}
        assigned = {_topic_partition(entry[:2]): entry[2] for entry in record.get("assigned_epochs") or ()}
        member.assigned_epochs = {tp: assigned.get(tp, 0) for tp in member.granted}
        return member


# A proposed grant of one member: (granted, epoch, assigned_epochs).
_Grant = tuple[set[TopicPartition], int, dict[TopicPartition, int]]


def _topic_partition(value: Any) -> TopicPartition:
    topic, partition = value
    if not isinstance(topic, str) or isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ValueError(f"not a topic partition: {value!r}")
    return topic, partition


class _Group:
    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.epoch = 0
        self.assignor: str | None = None
        self.members: dict[str, _Member] = {}
        self.instances: dict[str, str] = {}  # group_instance_id -> member id
        self.offsets: dict[TopicPartition, tuple[int, str, int]] = {}
        self.partition_counts: dict[str, int] = {}
        self.last_commit_s = float("-inf")  # monotonic; commits loaded from the log are not recent
        # Whether the log holds a membership record of this group: once it does, every
        # change (the last member leaving too) must be written, or a restart would bring
        # back members that left.
        self.membership_logged = False
        self.lock = asyncio.Lock()
        self.changed = asyncio.Event()
        # The initial rebalance delay (module docstring): grants wait until
        # initial_until (monotonic s), or until initial_members have joined.
        self.initial_until: float | None = None
        self.initial_cap_s = 0.0  # the first member's join + its rebalance timeout
        self.initial_delay_s = 0.0
        self.initial_members = 0
        # Members of Kafka's classic protocol (JoinGroup/SyncGroup, client-side
        # assignment; actors/classic_group.py): a group has these or native members.
        self.classic = ClassicGroup(group_id)

    def notify(self) -> None:
        """Wake every long-polling heartbeat of this group."""
        self.changed.set()
        self.changed = asyncio.Event()

    def holder(self, tp: TopicPartition, other_than: str) -> str | None:
        for member_id, member in self.members.items():
            if member_id != other_than and tp in member.held():
                return member_id
        return None

    def start_initial_delay(self, request: dict) -> None:
        """The first member of an empty group joined: start the delay it asks for."""
        delay_ms = request.get("group_initial_rebalance_delay_ms") or 0
        if delay_ms <= 0:
            self.initial_until = None
            return
        now = time.monotonic()
        self.initial_delay_s = delay_ms / 1000
        self.initial_cap_s = now + request["rebalance_timeout_ms"] / 1000
        self.initial_members = request.get("group_initial_members") or 0
        self.initial_until = min(now + self.initial_delay_s, self.initial_cap_s)
        self._wake_at_end_of_delay()

    def extend_initial_delay(self) -> None:
        """Another member joined during the delay: it starts again (up to the cap)."""
        if self.in_initial_delay():
            self.initial_until = min(time.monotonic() + self.initial_delay_s, self.initial_cap_s)
            self._wake_at_end_of_delay()

    def in_initial_delay(self) -> bool:
        if self.initial_until is None:
            return False
        if time.monotonic() >= self.initial_until or (
                self.initial_members and len(self.members) >= self.initial_members):
            self.initial_until = None  # over for good
            return False
        return True

    def _wake_at_end_of_delay(self) -> None:
        # Members long-poll while they hold nothing; wake them when grants may start.
        # (A wake-up for a delay that was extended meanwhile is harmless: they poll again.)
        delay_s = max(0.0, self.initial_until - time.monotonic()) + 0.001
        asyncio.get_running_loop().call_later(delay_s, self.notify)

    def state(self) -> str:
        if self.classic.members:
            return self.classic.state
        if not self.members:
            return "Empty"
        if self.in_initial_delay():
            return "PreparingRebalance"  # Kafka's name for a group waiting for members to join
        stable = all(m.granted == m.target == m.owned for m in self.members.values())
        return "Stable" if stable else "Reconciling"


class GroupCoordinator:
    """The coordinator of every group whose id hashes to ``index`` (module docstring).

    ``partition`` is where it keeps its state (actors/offsets_partition.py); by default
    partition ``index`` of ``__consumer_offsets`` through Ray, as in the actor. Tests
    pass one on a ``storage.Log`` to run the protocol as a plain class."""

    def __init__(self, index: int, namespace: str, partition: Any = None) -> None:
        if partition is None:  # the actor: Ray runs it in a process of its own
            tune_actor_process()
            partition = ReplicaOffsetsPartition(index, namespace)
        self.index = index
        self.namespace = namespace
        self._partition = partition
        self.groups: dict[str, _Group] = {}
        self._loaded: asyncio.Event | None = None
        self._load_error: BaseException | None = None
        self._topic_counts: dict[str, int] = {}
        self._topics_refreshed_s = 0.0
        self._sweeper: asyncio.Task | None = None
        self._metrics_task: asyncio.Task | None = None
        self._metrics_published_s = float("-inf")

    # -- startup: reload this coordinator's partition ----------------------------------

    async def _ready(self) -> None:
        if self._loaded is None:
            self._loaded = asyncio.Event()
            asyncio.get_running_loop().create_task(self._load())
        await self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error

    async def _load(self) -> None:
        try:
            offset = 0
            records = skipped = 0
            while True:
                batches, next_offset, high_watermark = await self._partition.read(offset, READ_CHUNK_BYTES)
                for batch in batches:
                    for record_offset, key, value in zip(batch.column("offset").to_pylist(),
                                                         batch.column("key").to_pylist(),
                                                         batch.column("value").to_pylist()):
                        try:
                            self._apply(key, value)
                            records += 1
                        except Exception as error:  # noqa: BLE001 - any client can write any bytes here
                            # One bad record must not keep the coordinator (and every
                            # group on it) from loading: it is skipped, and said so.
                            skipped += 1
                            logger.warning("group coordinator %d: skipped the record at %s-%d offset %d, which is "
                                           "not one of its records (%s: %s); key=%r", self.index, names.OFFSETS_TOPIC,
                                           self.index, record_offset, type(error).__name__, error, key[:64] if key else key)
                offset = max(offset, next_offset)
                if offset >= high_watermark:
                    break
            logger.info("group coordinator %d loaded %d records (%d skipped), %d groups", self.index, records, skipped,
                        len(self.groups))
        except BaseException as error:  # noqa: BLE001 - reported to every caller
            self._load_error = error
            self._loaded.set()
            self._loaded = None  # the next call tries again
            return
        self._load_error = None
        self._loaded.set()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    def _apply(self, key_bytes: bytes | None, value_bytes: bytes | None) -> None:
        """Apply one record of the partition (keys in the module docstring). Raises
        (ValueError, or msgpack's and Python's errors on malformed bytes) before changing
        anything when the record is not one this coordinator writes."""
        if key_bytes is None:
            raise ValueError("the record has no key")
        key = msgpack.unpackb(key_bytes)
        value = None if value_bytes is None else msgpack.unpackb(value_bytes)
        if not isinstance(key, list) or len(key) < 2 or not isinstance(key[1], str):
            raise ValueError(f"unknown key {key!r}")
        kind, group_id = key[0], key[1]
        if kind == "o" and len(key) == 4:
            tp = _topic_partition(key[2:])
            if value is None:
                group = self.groups.get(group_id)
                if group is not None:
                    group.offsets.pop(tp, None)
                return
            if not (isinstance(value, list) and len(value) == 3 and _is_offset(value[0])
                    and isinstance(value[1], str) and isinstance(value[2], int)):
                raise ValueError(f"offset commit of group {group_id!r} for {tp[0]}-{tp[1]} is {value!r}")
            self._group(group_id).offsets[tp] = (value[0], value[1], value[2])
        elif kind == "g" and len(key) == 2:
            if value is None:
                self.groups.pop(group_id, None)
                return
            if not isinstance(value, dict) or not isinstance(value.get("members"), dict):
                raise ValueError(f"group record of {group_id!r} is {value!r}")
            epoch, assignor = value["epoch"], value["assignor"]
            if isinstance(epoch, bool) or not isinstance(epoch, int) or assignor not in (None, *ASSIGNORS):
                raise ValueError(f"group record of {group_id!r} has epoch {epoch!r}, assignor {assignor!r}")
            members = {}
            for member_id, record in value["members"].items():
                if not isinstance(member_id, str) or not isinstance(record, dict):
                    raise ValueError(f"group record of {group_id!r} has member {member_id!r}: {record!r}")
                members[member_id] = _Member.from_record(member_id, record)
            group = self._group(group_id)
            group.epoch, group.assignor, group.members = epoch, assignor, members
            group.instances = {m.instance_id: mid for mid, m in group.members.items() if m.instance_id}
            group.membership_logged = True
        else:
            raise ValueError(f"unknown key {key!r}")

    def _group(self, group_id: str) -> _Group:
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = _Group(group_id)
        return group

    # -- the offsets partition ---------------------------------------------------------

    async def _write(self, entries: list[tuple[list, Any]]) -> None:
        """Append (key, value) records with acks=all; returns once they are committed."""
        keys = [msgpack.packb(key) for key, _ in entries]
        values = [None if value is None else msgpack.packb(value) for _, value in entries]
        payload = encode_stream([make_batch(values, keys)])
        await self._partition.append(payload)

    async def _write_group(self, group: _Group, epoch: int | None = None,
                           targets: dict[str, set[TopicPartition]] | None = None,
                           grants: dict[str, _Grant] | None = None) -> None:
        """Persist the group's membership, with a proposed group ``epoch``, member
        ``targets`` and ``grants`` in place of the current ones: the caller applies them
        only once this returns, so a failed write leaves the state as it was."""
        if not group.members and group.assignor is None and not group.membership_logged:
            return  # never had members: nothing to record
        targets, grants = targets or {}, grants or {}
        await self._write([(["g", group.group_id], {
            "epoch": group.epoch if epoch is None else epoch, "assignor": group.assignor,
            "members": {mid: member.to_record(grants.get(mid), targets.get(mid))
                        for mid, member in group.members.items()},
        })])
        group.membership_logged = True

    # -- membership --------------------------------------------------------------------

    async def heartbeat(self, group_id: str, request: dict) -> dict:
        """Join (``member_id`` empty), stay in, or report progress in ``group_id``.

        ``request``: member_id, instance_id, client_id, topics or pattern, assignor,
        session_timeout_ms, rebalance_timeout_ms, owned (list of [topic, partition])
        and owned_epoch (the epoch of the grant the consumer last applied; default:
        the member's current epoch), wait_ms. Returns member_id, epoch, and ``assignment``: the partitions the member
        may own now. Raises ``UnknownMemberIdError`` (join again) or
        ``FencedInstanceIdError``.

        For Kafka's ConsumerGroupHeartbeat (KIP-848, wire/consumer_groups.py):
        ``join_as`` joins under a member id the client chose (a member of that id
        already in the group is replaced: a client joins afresh only after giving up
        every partition, and the new member's epochs continue the old one's);
        ``keep_subscription`` leaves the topics or pattern as they were (the request
        omitted them: unchanged); ``owned`` None means the member's report is
        unchanged since its last heartbeat."""
        await self._ready()
        _validate_request(request)
        report = request.get("owned", ()) is not None
        reported = {_topic_partition(tp) for tp in request.get("owned") or ()}
        group = self.groups.get(group_id)
        if group is None:
            if request.get("member_id"):
                # Refused: no entry for a group nobody has joined (it would never go).
                raise UnknownMemberIdError(f"group {group_id!r} has no member {request['member_id']!r}")
            group = self._group(group_id)
        async with group.lock:
            member = await self._admit(group, request)
            member.deadline = time.monotonic() + member.session_timeout_ms / 1000
            # A member owns only what it was granted (KIP-848): a member that joins
            # afresh owns nothing, whatever it claims (a consumer back under a new id
            # after its session ended may still report its old partitions).
            if reported - member.held():
                logger.warning("group %r: member %s claims %s, which it was not granted; ignored", group_id,
                               member.member_id, sorted(reported - member.held()))
            released = member.report(reported, request.get("owned_epoch", member.epoch)) if report else set()
            topics_changed = not request.get("keep_subscription") and self._update_subscription(member, request)
            if topics_changed:
                await self._rebalance(group)
            if released:
                group.notify()  # a waiting member may now get what was released
            response = await self._respond(group, member)
        if _settled(member) and request.get("wait_ms", 0) > 0:
            waited = group.changed
            try:
                await asyncio.wait_for(waited.wait(), request["wait_ms"] / 1000)
            except asyncio.TimeoutError:
                pass
            async with group.lock:
                if group.members.get(member.member_id) is not member:
                    raise UnknownMemberIdError(f"member {member.member_id} left group {group_id!r} while waiting")
                response = await self._respond(group, member)
        return response

    async def _admit(self, group: _Group, request: dict) -> _Member:
        member_id = request.get("member_id") or ""
        instance_id = request.get("instance_id")
        assignor = request.get("assignor") or "sticky"
        if member_id:
            member = group.members.get(member_id)
            if member is None:
                if instance_id and instance_id in group.instances:
                    raise FencedInstanceIdError(
                        f"group {group.group_id!r}: instance {instance_id!r} is now member "
                        f"{group.instances[instance_id]}, not {member_id}")
                raise UnknownMemberIdError(f"group {group.group_id!r} has no member {member_id!r}")
            return member
        if group.classic.members:
            raise InconsistentGroupProtocolError(
                f"group {group.group_id!r} has {len(group.classic.members)} members of Kafka's classic protocol "
                "(JoinGroup); a rafka consumer cannot join it until they leave")
        if group.members and group.assignor not in (None, assignor):
            raise InconsistentGroupProtocolError(
                f"group {group.group_id!r} uses the {group.assignor!r} assignor; this member asked for {assignor!r}")
        chosen_id = request.get("join_as")
        member = _Member(chosen_id or uuid.uuid4().hex, request)
        rejoining = group.members.get(chosen_id) if chosen_id else None
        if rejoining is not None:
            # The same client again (its id is a random UUID it chose), having dropped
            # its partitions to rejoin: the old member goes; the new one's epochs
            # continue from it, so a commit of the old incarnation is never newer.
            self._remove(group, rejoining)
            member.epoch = rejoining.epoch
        previous_id = group.instances.get(instance_id) if instance_id else None
        if previous_id is not None:
            # Static member back (a restart): it takes its predecessor's place and
            # partitions; nobody else's assignment changes.
            previous = group.members.pop(previous_id)
            member.target, member.granted, member.epoch = previous.target, previous.granted, previous.epoch
            member.assigned_epochs = dict(previous.assigned_epochs)
            member.revoking = dict(previous.revoking)
            group.members[member.member_id] = member
            group.instances[instance_id] = member.member_id
            self._update_subscription(member, request)
            try:
                if member.topics != previous.topics or member.pattern != previous.pattern:
                    await self._rebalance(group)
                else:
                    await self._write_group(group)
            except BaseException:
                # Not written: the predecessor keeps its place (the join failed).
                del group.members[member.member_id]
                group.members[previous_id] = previous
                group.instances[instance_id] = previous_id
                raise
            return member
        was_empty = not group.members
        previous_assignor = group.assignor
        group.members[member.member_id] = member
        if instance_id:
            group.instances[instance_id] = member.member_id
        group.assignor = assignor
        if was_empty:
            group.start_initial_delay(request)
        else:
            group.extend_initial_delay()
        self._update_subscription(member, request)
        try:
            await self._rebalance(group)
        except BaseException:
            # Not written: the join failed, so the member must not linger (holding a
            # target nobody else gets) until its session runs out.
            self._remove(group, member)
            group.assignor = previous_assignor
            raise
        return member

    def _update_subscription(self, member: _Member, request: dict) -> bool:
        topics = frozenset(request.get("topics") or ())
        pattern = request.get("pattern")
        if topics == member.topics and pattern == member.pattern:
            return False
        member.topics, member.pattern = topics, pattern
        return True

    async def leave(self, group_id: str, member_id: str) -> None:
        """A member leaves for good (a dynamic member's close): its partitions move now."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return
        async with group.lock:
            member = group.members.get(member_id)
            if member is not None:
                self._remove(group, member)
                await self._rebalance(group)

    def _remove(self, group: _Group, member: _Member) -> None:
        group.members.pop(member.member_id, None)
        if member.instance_id and group.instances.get(member.instance_id) == member.member_id:
            del group.instances[member.instance_id]
        if not group.members:
            group.assignor = None

    async def _rebalance(self, group: _Group) -> None:
        """Recompute every member's target (a new group epoch), persist, then apply and
        wake members (a failed write changes no target)."""
        await self._refresh_topics(force=True)
        partition_counts = self._subscribed_counts(group)
        targets: dict[str, set[TopicPartition]] = {}
        if group.members:
            topics_by_member = {mid: self._member_topics(m) for mid, m in group.members.items()}
            sort_keys = {mid: m.instance_id or mid for mid, m in group.members.items()}
            previous = {mid: set(m.target) for mid, m in group.members.items()}
            targets = assign(group.assignor or "sticky", topics_by_member, sort_keys, partition_counts, previous)
        await self._write_group(group, epoch=group.epoch + 1, targets=targets)
        group.epoch += 1
        group.partition_counts = partition_counts
        for mid, target in targets.items():
            if mid in group.members:  # (the lock is held: nobody left meanwhile)
                group.members[mid].target = target
        metrics.count_group_rebalance(group.group_id)
        group.notify()

    def _member_topics(self, member: _Member) -> frozenset[str]:
        if member.pattern is None:
            return frozenset(t for t in member.topics if t in self._topic_counts)
        matcher = re.compile(member.pattern)
        return frozenset(t for t in self._topic_counts if matcher.fullmatch(t))

    def _subscribed_counts(self, group: _Group) -> dict[str, int]:
        topics = set().union(*(self._member_topics(m) for m in group.members.values())) if group.members else set()
        return {topic: self._topic_counts[topic] for topic in topics}

    async def _refresh_topics(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._topics_refreshed_s < METADATA_REFRESH_S:
            return
        self._topic_counts = await self._partition.topic_partition_counts()
        self._topics_refreshed_s = now

    async def _respond(self, group: _Group, member: _Member) -> dict:
        """Compute what ``member`` may own now; persist a change before applying it."""
        if group.in_initial_delay():
            return {"member_id": member.member_id, "epoch": member.epoch, "group_epoch": group.epoch,
                    "assignment": sorted(member.granted)}
        keep = member.granted & member.target
        grants = {tp for tp in member.target - member.granted if group.holder(tp, member.member_id) is None}
        new_grant = keep | grants
        if new_grant != member.granted:
            epoch = member.epoch + 1
            # A partition it still owns keeps the epoch it was first granted at: the
            # member never gave it up, so its commits of it stay valid.
            held = member.held()
            assigned = {tp: member.assigned_epochs.get(tp, epoch) if tp in held else epoch
                        for tp in new_grant | held}
            # Written before it is applied or told: a restarted coordinator must know
            # every partition a member may use, and an epoch at least as new as any
            # the member has seen (or it would refuse the member's commits as stale,
            # and could give an epoch number out twice).
            await self._write_group(group, grants={member.member_id: (new_grant, epoch, assigned)})
            # What leaves the grant stays held until the member reports this epoch.
            revoking = {tp: e for tp, e in member.revoking.items() if tp not in new_grant}
            revoking.update((tp, epoch) for tp in member.granted - new_grant)
            member.granted, member.epoch, member.assigned_epochs, member.revoking = new_grant, epoch, assigned, revoking
            if member.held() - new_grant and member.release_deadline is None:
                member.release_deadline = time.monotonic() + member.rebalance_timeout_ms / 1000
        return {"member_id": member.member_id, "epoch": member.epoch, "group_epoch": group.epoch,
                "assignment": sorted(member.granted)}

    # -- liveness ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self._sweep()
            except Exception as error:  # noqa: BLE001 - keep sweeping
                logger.warning("group coordinator %d: sweep failed: %r", self.index, error)

    async def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._metrics_published_s >= METRICS_INTERVAL_S and (
                self._metrics_task is None or self._metrics_task.done()):
            self._metrics_published_s = now
            self._metrics_task = asyncio.get_running_loop().create_task(self._publish_metrics())
        for group in list(self.groups.values()):
            for member_id in group.classic.expire(now) if group.classic.members else ():
                logger.info("group %r: removing classic member %s (session timeout or no rejoin)",
                            group.group_id, member_id)
            if not any(_expired(m, now) for m in group.members.values()):
                continue
            async with group.lock:
                # Decide again under the lock: a heartbeat that was waiting for it
                # meanwhile has moved its member's deadline, and saves it.
                now = time.monotonic()
                expired = [m for m in group.members.values() if _expired(m, now)]
                for member in expired:
                    logger.info("group %r: removing member %s (%s)", group.group_id, member.member_id,
                                "session timeout" if member.deadline < now else "did not release in time")
                    self._remove(group, member)
                if expired:
                    await self._rebalance(group)
        if any(g.members for g in self.groups.values()) and now - self._topics_refreshed_s >= METADATA_REFRESH_S:
            await self._refresh_topics()
            for group in list(self.groups.values()):
                if group.members and self._subscribed_counts(group) != group.partition_counts:
                    async with group.lock:
                        await self._rebalance(group)

    async def _publish_metrics(self) -> None:
        """Members of every group; lag of the active ones (see the module docstring)."""
        try:
            now = time.monotonic()
            for group in list(self.groups.values()):
                metrics.set_group_members(group.group_id, len(group.members) + len(group.classic.members))
            active = [group for group in self.groups.values()
                      if group.offsets and (group.members or group.classic.members
                                            or now - group.last_commit_s < LAG_RECENT_COMMIT_S)]
            ends = await self._partition.log_end_offsets({tp[0] for group in active for tp in group.offsets})
            for group in active:
                committed = {tp: entry[0] for tp, entry in group.offsets.items()}
                for topic, lag in lag_by_topic(committed, ends).items():
                    metrics.set_group_lag(group.group_id, topic, lag)
        except Exception as error:  # noqa: BLE001 - metrics must not disturb the coordinator
            logger.warning("group coordinator %d: publishing metrics failed: %r", self.index, error)

    # -- Kafka's classic protocol (actors/classic_group.py) -----------------------------

    async def join_group(self, group_id: str, request: dict) -> dict:
        """A classic JoinGroup (``ClassicGroup.join``); waits for the join phase to end.
        Answers {error: None or a Kafka error name, ...}; a group with native members
        answers inconsistent_group_protocol."""
        await self._ready()
        group = self._group(group_id)
        if group.members:
            return {"error": "inconsistent_group_protocol", "member_id": request.get("member_id") or "",
                    "message": f"group {group_id!r} has {len(group.members)} rafka consumers (server-side "
                               "assignment); a classic member cannot join it until they leave"}
        answer = group.classic.join(request)
        if isinstance(answer, asyncio.Future):
            # The sweep ends the join phase by the rebalance timeout: this bound only
            # keeps a lost wake-up from holding the call forever.
            bound_s = 2 * max(request.get("rebalance_timeout_ms", 0), request.get("session_timeout_ms", 0)) / 1000
            try:
                answer = await asyncio.wait_for(asyncio.shield(answer), bound_s + 10)
            except asyncio.TimeoutError:
                answer = {"error": "rebalance_in_progress", "member_id": request.get("member_id") or ""}
        return answer

    async def sync_group(self, group_id: str, request: dict) -> dict:
        """A classic SyncGroup (``ClassicGroup.sync``); a follower waits for the leader."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return {"error": "unknown_member_id"}
        answer = group.classic.sync(request)
        if isinstance(answer, asyncio.Future):
            member = group.classic.members.get(request.get("member_id") or "")
            bound_s = 2 * (member.rebalance_timeout_ms if member else 0) / 1000
            try:
                answer = await asyncio.wait_for(asyncio.shield(answer), bound_s + 10)
            except asyncio.TimeoutError:
                answer = {"error": "rebalance_in_progress"}
        return answer

    async def classic_heartbeat(self, group_id: str, request: dict) -> dict:
        """A classic Heartbeat: {error}; rebalance_in_progress asks the member to rejoin."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return {"error": "unknown_member_id"}
        return group.classic.heartbeat(request)

    async def leave_group(self, group_id: str, members: list[list]) -> list:
        """A classic LeaveGroup of [member_id, instance_id] pairs: the error name (or
        None) of each."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return ["unknown_member_id" for _ in members]
        return [group.classic.leave(member_id or "", instance_id or None) for member_id, instance_id in members]

    async def classic_commit(self, group_id: str, member_id: str, generation: int, offsets: list[list]) -> str | None:
        """An OffsetCommit of a classic member at ``generation`` (Kafka's rules, in
        ``ClassicGroup.commit_error``): None once stored (acks=all), else the Kafka
        error name and nothing is stored."""
        await self._ready()
        entries = _validate_offsets(offsets)
        group = self.groups.get(group_id)
        if group is None:
            return "unknown_member_id"
        if member_id in group.members:
            # A member of the consumer protocol (KIP-848's ConsumerGroupHeartbeat): the
            # generation is its member epoch as Kafka clients see it, fenced as a rafka
            # consumer's commit is.
            try:
                await self.commit(group_id, member_id, offsets, generation - WIRE_MEMBER_EPOCH_OFFSET)
            except UnknownMemberIdError:
                return "unknown_member_id"
            except StaleMemberEpochError:
                return "stale_member_epoch"
            except CommitFailedError:
                return "stale_member_epoch"  # the partition left its grant: it learns so in its next heartbeat
            return None
        async with group.lock:
            refused = group.classic.commit_error(member_id, generation)
            if refused is not None:
                return refused
            await self._store_offsets(group, entries)
        return None

    async def wire_group(self, group_id: str) -> dict | None:
        """What DescribeGroups answers: state, protocol type and name, and the members
        with their metadata and assignment bytes (classic members as they sent them;
        native members as topics and partitions, encoded by the caller). None for an
        unknown group."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return None
        if group.classic.members:
            return {"state": group.state(), "protocol_type": group.classic.protocol_type or "",
                    "protocol": group.classic.protocol or "", "members": group.classic.wire_members()}
        return {"state": group.state(), "protocol_type": "consumer" if group.members else "",
                "protocol": group.assignor or "",
                "members": [{"member_id": mid, "instance_id": m.instance_id, "client_id": m.client_id,
                             "client_host": "", "topics": sorted(m.topics), "partitions": sorted(m.granted)}
                            for mid, m in group.members.items()]}

    # -- offsets -----------------------------------------------------------------------

    async def commit(self, group_id: str, member_id: str | None, offsets: list[list],
                     member_epoch: int | None = None) -> None:
        """Store ``[topic, partition, offset, metadata]`` entries for ``group_id``.

        Fencing: a member commits as ``member_id`` at ``member_epoch`` (the epoch its
        consumer holds the partitions under), and only partitions it holds; a member
        the group no longer has gets ``UnknownMemberIdError``, a partition it does not
        hold ``CommitFailedError``, an epoch older than the one the partition was
        granted at ``StaleMemberEpochError`` (the partition moved away and back since:
        another owner's commits may be newer). ``member_id`` None (a consumer that
        assigns partitions itself, or an admin reset) may commit only while the group
        has no members. Returns once the commit is replicated (acks=all)."""
        await self._ready()
        entries = _validate_offsets(offsets)
        group = self.groups.get(group_id)
        if group is None:
            if member_id is not None:
                # Refused: no entry for a group nobody has joined (it would never go).
                raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}; the commit was refused")
            group = self._group(group_id)
        async with group.lock:
            if member_id is None:
                if group.members or group.classic.members:
                    raise GroupNotEmptyError(
                        f"group {group_id!r} has {len(group.members) + len(group.classic.members)} active members; "
                        "only they may commit (stop them first to reset offsets)")
            else:
                member = group.members.get(member_id)
                if member is None:
                    raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}; the commit was refused")
                if isinstance(member_epoch, bool) or not isinstance(member_epoch, int):
                    raise TypeError(f"a commit of member {member_id!r} needs its member_epoch (an int), "
                                    f"got {member_epoch!r}")
                foreign = [tp for tp in entries if tp not in member.held()]
                if foreign:
                    topic, partition = foreign[0]
                    raise CommitFailedError(
                        f"group {group_id!r}: {topic}-{partition} is not assigned to member {member_id} "
                        "(it was revoked); the commit was refused")
                if member_epoch > member.epoch:
                    raise StaleMemberEpochError(
                        f"group {group_id!r}: member {member_id} is at epoch {member.epoch}, the commit claims "
                        f"epoch {member_epoch}; the commit was refused")
                stale = [tp for tp in entries if member_epoch < member.assigned_epochs.get(tp, 0)]
                if stale:
                    topic, partition = stale[0]
                    raise StaleMemberEpochError(
                        f"group {group_id!r}: {topic}-{partition} was granted to member {member_id} at epoch "
                        f"{member.assigned_epochs[stale[0]]}, after the commit's epoch {member_epoch} (the partition "
                        "moved away and back since); the commit was refused")
            await self._store_offsets(group, entries)

    async def _store_offsets(self, group: _Group, entries: dict[TopicPartition, tuple[int, str]]) -> None:
        now_ms = time.time_ns() // 1_000_000
        await self._write([(["o", group.group_id, tp[0], tp[1]], [offset, metadata, now_ms])
                           for tp, (offset, metadata) in entries.items()])
        for tp, (offset, metadata) in entries.items():
            group.offsets[tp] = (offset, metadata, now_ms)
        group.last_commit_s = time.monotonic()

    async def fetch_offsets(self, group_id: str, partitions: list[list] | None = None) -> dict:
        """{(topic, partition): offset} committed by ``group_id`` (all, or these)."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            return {}
        if partitions is None:
            return {tp: entry[0] for tp, entry in group.offsets.items()}
        wanted = [tuple(tp) for tp in partitions]
        return {tp: group.offsets[tp][0] for tp in wanted if tp in group.offsets}

    # -- admin -------------------------------------------------------------------------

    async def list_groups(self) -> list[dict]:
        await self._ready()
        return [{"group_id": g.group_id, "state": g.state(), "members": len(g.members) + len(g.classic.members),
                 "assignor": g.classic.protocol if g.classic.members else g.assignor,
                 "protocol": "classic" if g.classic.members else "consumer"}
                for g in sorted(self.groups.values(), key=lambda g: g.group_id)]

    async def describe_group(self, group_id: str) -> dict:
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            raise GroupNotFoundError(f"unknown consumer group {group_id!r}")
        if group.classic.members:
            classic = group.classic
            return {"group_id": group_id, "state": group.state(), "assignor": classic.protocol,
                    "epoch": classic.generation, "coordinator": self.index, "protocol": "classic",
                    "members": classic.describe_members(),
                    "offsets": {tp: {"offset": o, "metadata": meta, "commit_time_ms": t}
                                for tp, (o, meta, t) in sorted(group.offsets.items())}}
        return {
            "group_id": group_id, "state": group.state(), "assignor": group.assignor, "epoch": group.epoch,
            "coordinator": self.index, "protocol": "consumer",
            "members": [
                {"member_id": mid, "instance_id": m.instance_id, "client_id": m.client_id,
                 "topics": sorted(m.topics), "pattern": m.pattern, "epoch": m.epoch,
                 "assignment": sorted(m.granted), "target": sorted(m.target)}
                for mid, m in sorted(group.members.items(), key=lambda item: (item[1].instance_id or item[0]))
            ],
            "offsets": {tp: {"offset": o, "metadata": meta, "commit_time_ms": t}
                        for tp, (o, meta, t) in sorted(group.offsets.items())},
        }

    async def delete_group(self, group_id: str) -> None:
        """Forget ``group_id`` and its committed offsets (tombstones in the log)."""
        await self._ready()
        group = self.groups.get(group_id)
        if group is None:
            raise GroupNotFoundError(f"unknown consumer group {group_id!r}")
        async with group.lock:
            if group.members or group.classic.members:
                raise GroupNotEmptyError(
                    f"group {group_id!r} has {len(group.members) + len(group.classic.members)} active members; "
                    "stop them before deleting it")
            tombstones = [(["o", group_id, tp[0], tp[1]], None) for tp in group.offsets]
            await self._write(tombstones + [(["g", group_id], None)])
            self.groups.pop(group_id, None)


def _expired(member: _Member, now: float) -> bool:
    return member.deadline < now or (member.release_deadline is not None and member.release_deadline < now)


def _settled(member: _Member) -> bool:
    return member.owned == member.granted


def _validate_request(request: dict) -> None:
    if not isinstance(request, dict):
        raise TypeError(f"heartbeat request must be a dict, got {request!r}")
    assignor = request.get("assignor") or "sticky"
    if assignor not in ASSIGNORS:
        raise InvalidConfigError(f"unknown partition assignor {assignor!r}; known: {', '.join(ASSIGNORS)}")
    for name in ("session_timeout_ms", "rebalance_timeout_ms"):
        value = request.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidConfigError(f"{name} must be a positive int, got {value!r}")
    for name in ("group_initial_rebalance_delay_ms", "group_initial_members", "owned_epoch"):
        value = request.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidConfigError(f"{name} must be a non-negative int, got {value!r}")


def _is_offset(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def _validate_offsets(offsets: list[list]) -> dict[TopicPartition, tuple[int, str]]:
    entries = {}
    for entry in offsets:
        topic, partition, offset, metadata = entry
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"committed offset for {topic}-{partition} must be a non-negative int, got {offset!r}")
        if not isinstance(metadata, str):
            raise TypeError(f"commit metadata for {topic}-{partition} must be a str, got {metadata!r}")
        entries[(topic, partition)] = (offset, metadata)
    return entries
