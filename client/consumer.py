"""Consumer: reads assigned partitions from their leaders, with fetches pipelined.

For each assigned, unpaused partition the consumer keeps one fetch in flight to the
leader replica (a long poll bounded by ``fetch_max_wait_ms``) and at most
``buffered_fetches_per_partition`` answered fetches waiting to be handed out, so memory
stays bounded by about ``(1 + buffered) * max_partition_fetch_bytes`` per partition.
``poll()`` turns records into ``Record`` tuples; ``poll_batches()`` hands out the Arrow
batches themselves, which is the fast path.

Positions: a partition's position is the offset of the next record ``poll`` will return.
It starts where ``seek`` puts it, or per ``auto_offset_reset`` (earliest, latest, or
"none" → ``NoOffsetForPartitionError``); the same policy applies when the position falls
out of the log's range (retention deleted it). With a ``group_id`` a new partition starts
at the group's committed offset when there is one.

Consumer groups: ``subscribe(topics or pattern=...)`` joins ``group_id``; the group's
coordinator assigns partitions (see actors/coordinator.py) and the assignment changes
inside ``poll()``, where rebalance listeners run. ``commit()`` (synchronous, replicated
before it returns), ``commit_async()`` (callbacks run inside a later ``poll()``) and
auto-commit (``enable_auto_commit``, every ``auto_commit_interval_ms``, inside ``poll()``,
of the positions already returned, and again before partitions are revoked and on
``close()``) store offsets in ``__consumer_offsets``. Auto-commit gives at-least-once
delivery when records are processed before the next ``poll()``: what was returned but
not processed when the consumer dies is read again by the partition's next owner.
Commits are fenced (see client/group.py): one refused because this member is no longer
in the group, or because its epoch is stale, loses the consumer its partitions (the next
``poll()`` reports them lost and joins again); committed offsets of a partition that has
moved are never overwritten by its old owner.

Not thread-safe: one thread uses a consumer, as with Kafka's.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import logging
import re
import time
from itertools import repeat
from typing import Any, Iterable

import pyarrow as pa
import ray

from rafka.actors.assignors import ASSIGNORS
from rafka.actors.replica import EARLIEST, LATEST
from rafka.client import rpc
from rafka.client.group import ConsumerRebalanceListener, CoordinatorClient, GroupMembership
from rafka.client.records import Record, TopicPartition
from rafka.config import ConfigDef, ConfigField
from rafka.errors import (
    CommitFailedError,
    InvalidConfigError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RafkaError,
    RequestTimeoutError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)
from rafka.storage.batch import decode_stream

RESETS = ("earliest", "latest", "none")
_new_record = functools.partial(tuple.__new__, Record)  # Record(*row) without Python-level __new__
RETRY_BACKOFF_S = 0.1
MAX_PENDING_ASYNC_COMMITS = 64
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ConsumerConfig:
    group_id: str | None = None
    auto_offset_reset: str = "latest"
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    max_poll_records: int = 500
    buffered_fetches_per_partition: int = 2
    request_timeout_ms: int = 30_000
    # Consumer groups (Kafka's names and defaults).
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5_000
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    group_instance_id: str | None = None
    partition_assignment_strategy: str = "sticky"
    client_id: str = ""
    # Asked of the coordinator when this consumer joins an empty group (Kafka's broker
    # setting group.initial.rebalance.delay.ms; see actors/coordinator.py): no partitions
    # for this long while more members join, or until the group has group_initial_members.
    group_initial_rebalance_delay_ms: int = 0
    group_initial_members: int = 0

    @classmethod
    def build(cls, **options: Any) -> "ConsumerConfig":
        """The options given, checked (``InvalidConfigError`` naming the bad one), over
        these defaults."""
        config = CONSUMER_OPTIONS.build(cls, options)
        if config.group_id is not None and not config.heartbeat_interval_ms < config.session_timeout_ms:
            raise InvalidConfigError(
                f"heartbeat_interval_ms ({config.heartbeat_interval_ms}) must be less than session_timeout_ms "
                f"({config.session_timeout_ms})")
        return config


def _non_empty(value: str | None) -> str | None:
    return "must not be empty (None for no value)" if value == "" else None


def _count(name: str, doc: str) -> ConfigField:
    return ConfigField(name, "int", doc=doc, min=0)


CONSUMER_OPTIONS = ConfigDef([
    ConfigField("group_id", "str", doc="the consumer group; None: partitions are assigned by hand", nullable=True,
                validator=_non_empty),
    ConfigField("auto_offset_reset", "str", doc="where to start without a committed offset", choices=RESETS),
    _count("fetch_min_bytes", "the least bytes a fetch waits for"),
    _count("fetch_max_wait_ms", "the longest a fetch waits for fetch_min_bytes"),
    _count("max_partition_fetch_bytes", "the most bytes one fetch returns per partition"),
    _count("max_poll_records", "the most records one poll() returns"),
    _count("buffered_fetches_per_partition", "fetched batches held per partition ahead of poll()"),
    _count("request_timeout_ms", "how long one request may take"),
    ConfigField("enable_auto_commit", "bool", doc="commit polled positions every auto_commit_interval_ms"),
    _count("auto_commit_interval_ms", "how often positions are committed automatically"),
    _count("session_timeout_ms", "how long the coordinator waits for a heartbeat before removing the member"),
    _count("heartbeat_interval_ms", "how often the member heartbeats (below session_timeout_ms)"),
    _count("max_poll_interval_ms", "the longest time between two poll() calls before the member leaves"),
    ConfigField("group_instance_id", "str", doc="a static member's id (KIP-345)", nullable=True,
                validator=_non_empty),
    ConfigField("partition_assignment_strategy", "str", doc="how the coordinator assigns partitions",
                choices=tuple(ASSIGNORS)),
    ConfigField("client_id", "str", doc="a name for logs and metrics"),
    _count("group_initial_rebalance_delay_ms", "asked of the coordinator when this member joins an empty group"),
    _count("group_initial_members", "members the coordinator waits for when this member joins an empty group"),
], subject="consumer option", from_strings=False, strict=True).with_defaults_of(ConsumerConfig)


class _PartitionState:
    __slots__ = ("position", "generation", "in_flight", "buffered", "paused", "retry_at", "high_watermark")

    def __init__(self) -> None:
        self.position: int | None = None
        self.high_watermark: int | None = None  # from the latest fetch answer (current_lag)
        self.generation = 0  # bumped by seek: answers to older fetches are dropped
        self.in_flight = False
        self.buffered: collections.deque = collections.deque()  # [batches, next_offset]
        self.paused = False
        self.retry_at = 0.0

    def move_to(self, offset: int) -> None:
        """Read from ``offset`` next: answers to fetches sent before are dropped."""
        self.position = offset
        self.generation += 1
        self.buffered.clear()
        self.in_flight = False


@dataclasses.dataclass
class _Lookup:
    """A request for positions that poll() does not wait for: its object ref, the
    partitions (and their states, so an answer for a partition assigned again meanwhile
    is not taken) it asks about, and when it was sent."""

    ref: ray.ObjectRef
    states: dict[TopicPartition, _PartitionState]
    sent_s: float


class Consumer:
    def __init__(self, cluster: Any, **options: Any) -> None:
        self.config = ConsumerConfig.build(**options)
        self._metadata = cluster.metadata
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        self._fetches: dict[ray.ObjectRef, tuple[TopicPartition, int, int]] = {}
        self._fetch_sent_s: dict[ray.ObjectRef, float] = {}
        # poll's position lookups (_look_up_positions): the committed offsets asked of the
        # coordinator for partitions without a position, and the offset resets asked of
        # leaders for those with no committed offset. Each waits across polls.
        self._committed_lookup: _Lookup | None = None
        self._needs_reset: dict[TopicPartition, _PartitionState] = {}  # no committed offset: reset these
        self._reset_lookups: dict[TopicPartition, _Lookup] = {}
        self._closed = False
        config = self.config
        self._coordinator = (CoordinatorClient(cluster.controller, cluster.namespace, config.group_id,
                                               config.request_timeout_ms) if config.group_id else None)
        self._membership: GroupMembership | None = None
        self._listener: Any = ConsumerRebalanceListener()
        self._async_commits: collections.deque = collections.deque()  # (ref, offsets, callback, member_id, epoch)
        self._next_auto_commit_s = time.monotonic() + config.auto_commit_interval_ms / 1000

    # -- assignment and positions ----------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any earlier assignment)."""
        if self._membership is not None:
            raise RafkaError("this consumer is subscribed; assign() and subscribe() exclude each other (unsubscribe first)")
        wanted = [_topic_partition(tp) for tp in partitions]
        for tp in wanted:
            if not 0 <= tp.partition < self._metadata.partition_count(tp.topic):
                raise OffsetOutOfRangeError(f"topic {tp.topic!r} has no partition {tp.partition}")
        self._partitions = {tp: self._partitions.get(tp) or _PartitionState() for tp in wanted}
        self._fetches = {ref: f for ref, f in self._fetches.items() if f[0] in self._partitions}
        self._fetch_sent_s = {ref: t for ref, t in self._fetch_sent_s.items() if ref in self._fetches}

    def assignment(self) -> set[TopicPartition]:
        return set(self._partitions)

    # -- consumer groups ---------------------------------------------------------------

    def subscribe(self, topics: Iterable[str] | None = None, pattern: str | re.Pattern | None = None,
                  listener: ConsumerRebalanceListener | None = None) -> None:
        """Join ``group_id`` to consume ``topics`` (a list of names) or every topic whose
        whole name matches the regular expression ``pattern``. Partitions arrive inside
        ``poll()``; ``listener`` (a ``ConsumerRebalanceListener``) is told of each change."""
        self._check_open()
        if self._coordinator is None:
            raise InvalidConfigError("subscribe() needs a group_id: cluster.consumer(group_id=...)")
        if (topics is None) == (pattern is None):
            raise ValueError("subscribe() takes either topics or pattern")
        if topics is not None:
            if isinstance(topics, str) or not all(isinstance(t, str) for t in topics):
                raise TypeError(f"topics must be a list of topic names, got {topics!r}")
            topics = sorted(set(topics))
            for topic in topics:
                self._metadata.partition_count(topic)  # TopicNotFoundError names an unknown one
        else:
            pattern = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
            if not isinstance(pattern, str):
                raise TypeError(f"pattern must be a regular expression string, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}") from None
        if self._membership is None and self._partitions:
            raise RafkaError("this consumer has assigned partitions; assign() and subscribe() exclude each other")
        if listener is not None:
            self._listener = listener
        if self._membership is None:
            self._membership = GroupMembership(self._coordinator, self.config)
        self._membership.subscribe(topics or [], pattern)

    def subscription(self) -> set[str] | str:
        """The subscribed topic names (or the pattern); empty when not subscribed."""
        if self._membership is None:
            return set()
        return self._membership._pattern or set(self._membership._topics)

    def unsubscribe(self) -> None:
        """Leave the group; partitions move at once. They are revoked (committed first
        with auto-commit), or lost when this consumer's session is already gone."""
        if self._membership is None:
            return
        self._revoke(set(self._partitions), lost=self._membership.lost_pending())
        self._membership.close(leave=True)
        self._membership = None

    @property
    def member_id(self) -> str:
        """This consumer's member id in its group ("" when not a member)."""
        return self._membership.member_id if self._membership is not None else ""

    def _group_work(self) -> None:
        """Group duties done inside poll(): apply a new assignment, auto-commit, run the
        callbacks of finished async commits."""
        self._finish_async_commits(block=False)
        if self._membership is not None:
            self._membership.polled()
            self._reconcile()
        if self.config.enable_auto_commit and self._coordinator is not None and time.monotonic() >= self._next_auto_commit_s:
            self._next_auto_commit_s = time.monotonic() + self.config.auto_commit_interval_ms / 1000
            positions = self._positions()
            if positions:
                self.commit_async(positions, callback=_log_failed_auto_commit)

    def _reconcile(self) -> None:
        update = self._membership.take_update()
        if update is None:
            return
        lost, assignment = update
        current = set(self._partitions)
        if lost:
            self._revoke(current, lost=True)
            current = set()
        revoked = current - assignment
        added = assignment - current
        if revoked:
            self._revoke(revoked, lost=False)
            if self._membership.lost_pending():
                # The commit before revocation was fenced: everything goes at the next poll.
                self._membership.applied(self._partitions)
                return
        if added:
            for tp in added:
                self._partitions[tp] = _PartitionState()
            # Their positions are looked up by poll's bounded lookups (_look_up_positions),
            # after the listener, which may seek (as in Kafka).
        self._membership.applied(self._partitions)
        if added:
            self._listener.on_partitions_assigned(set(added))

    def _revoke(self, partitions: set[TopicPartition], lost: bool) -> None:
        if not partitions:
            return
        try:
            if lost:
                self._listener.on_partitions_lost(set(partitions))
            else:
                if self.config.enable_auto_commit:
                    positions = {tp: offset for tp, offset in self._positions().items() if tp in partitions}
                    try:
                        self.commit(positions)
                    except (CommitFailedError, UnknownMemberIdError) as error:
                        logger.warning("auto-commit before revocation failed: %s", error)
                self._listener.on_partitions_revoked(set(partitions))
        finally:
            for tp in partitions:
                self._partitions.pop(tp, None)
            self._fetches = {ref: f for ref, f in self._fetches.items() if f[0] in self._partitions}
            self._fetch_sent_s = {ref: t for ref, t in self._fetch_sent_s.items() if ref in self._fetches}

    def _positions(self) -> dict[TopicPartition, int]:
        return {tp: state.position for tp, state in self._partitions.items() if state.position is not None}

    def _offsets_to_commit(self, offsets: dict | None) -> list[list]:
        if self._coordinator is None:
            raise InvalidConfigError("committing offsets needs a group_id: cluster.consumer(group_id=...)")
        if offsets is None:
            offsets = self._positions()
        if not isinstance(offsets, dict):
            raise TypeError(f"offsets must be a dict of TopicPartition to offset, got {offsets!r}")
        entries = []
        for tp, offset in offsets.items():
            tp = _topic_partition(tp)
            metadata = ""
            if isinstance(offset, tuple):
                offset, metadata = offset
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise ValueError(f"offset to commit for {tp.topic}-{tp.partition} must be a non-negative int, got {offset!r}")
            entries.append([tp.topic, tp.partition, offset, metadata])
        return entries

    def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (default: the position of every assigned partition, i.e.
        everything ``poll`` has returned) for the group, and wait until the commit is
        replicated. Raises ``CommitFailedError`` for a partition this member no longer
        holds. An offset is the next one to read, as in Kafka."""
        entries = self._offsets_to_commit(offsets)
        if entries:
            member_id, epoch = self._commit_generation()
            try:
                self._coordinator.call("commit", member_id, entries, epoch)
            except (UnknownMemberIdError, StaleMemberEpochError) as error:
                self._fenced(member_id, epoch, error)
                raise

    def _commit_generation(self) -> tuple[str | None, int | None]:
        """Who commits: (member id, epoch) of this member, or (None, None) for a consumer
        outside the group (assign mode). A subscribed consumer between member ids
        (fenced, rejoining) cannot commit: its partitions may have moved."""
        if self._membership is None:
            return None, None
        member_id, epoch = self._membership.commit_generation()
        if not member_id:
            raise CommitFailedError(f"group {self.config.group_id!r}: this consumer is rejoining the group "
                                    "(it was fenced or its session ended); its partitions may have moved, "
                                    "the commit was refused")
        return member_id, epoch

    def _fenced(self, member_id: str | None, epoch: int | None, error: RafkaError) -> None:
        """A commit was refused by fencing: the partitions are lost (client/group.py),
        unless it was a stale commit of an older epoch (the member itself is gone when
        its id is unknown, whatever the epoch)."""
        if self._membership is not None and member_id is not None:
            self._membership.fence(member_id, epoch if isinstance(error, StaleMemberEpochError) else None)

    def commit_async(self, offsets: dict[TopicPartition, int] | None = None, callback: Any = None) -> None:
        """Send a commit without waiting; ``callback(offsets, error_or_None)`` runs inside
        a later ``poll()`` (or ``close()``), in commit order."""
        entries = self._offsets_to_commit(offsets)
        if not entries:
            return
        while len(self._async_commits) >= MAX_PENDING_ASYNC_COMMITS:
            self._finish_async_commits(block=True, count=1)
        member_id, epoch = self._commit_generation()
        ref = self._coordinator.send("commit", member_id, entries, epoch)
        committed = {TopicPartition(t, p): o for t, p, o, _ in entries}
        self._async_commits.append((ref, committed, callback, member_id, epoch))

    def _finish_async_commits(self, block: bool, count: int | None = None) -> None:
        finished = 0
        while self._async_commits and (count is None or finished < count):
            ref, offsets, callback, member_id, epoch = self._async_commits[0]
            if not block:
                ready, _ = ray.wait([ref], timeout=0)
                if not ready:
                    return
            self._async_commits.popleft()
            finished += 1
            error = None
            try:
                rpc.get(ref, timeout_s=self.config.request_timeout_ms / 1000)
            except RafkaError as failure:
                error = failure
                if failure.retriable:
                    self._coordinator.forget()
                if isinstance(failure, (UnknownMemberIdError, StaleMemberEpochError)):
                    self._fenced(member_id, epoch, failure)
            if callback is not None:
                callback(offsets, error)
            elif error is not None:
                logger.warning("async commit of %s failed: %s", offsets, error)

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each partition (None where there is none)."""
        if self._coordinator is None:
            raise InvalidConfigError("committed offsets need a group_id: cluster.consumer(group_id=...)")
        wanted = [_topic_partition(tp) for tp in partitions]
        found = self._coordinator.call("fetch_offsets", [list(tp) for tp in wanted])
        return {tp: found.get((tp.topic, tp.partition)) for tp in wanted}

    def partitions_for_topic(self, topic: str) -> list[int]:
        return list(range(self._metadata.partition_count(topic)))

    def _state(self, tp: TopicPartition) -> _PartitionState:
        state = self._partitions.get(_topic_partition(tp))
        if state is None:
            raise ValueError(f"partition {tp} is not assigned to this consumer")
        return state

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Make ``offset`` the next offset ``poll`` returns from ``tp``."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {offset!r}")
        self._state(tp).move_to(offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions or list(self._partitions):
            self.seek(tp, self._list_offset(_topic_partition(tp), EARLIEST))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in partitions or list(self._partitions):
            self.seek(tp, self._list_offset(_topic_partition(tp), LATEST))

    def position(self, tp: TopicPartition) -> int:
        """The offset of the next record ``poll`` returns from ``tp``."""
        state = self._state(tp)
        if state.position is None:
            self._init_positions()
        return state.position

    def current_lag(self, tp: TopicPartition) -> int | None:
        """Records of ``tp`` between the position and the high watermark the leader
        reported with its latest fetch answer (Kafka's ``currentLag``, KIP-695): no call
        to the leader, so it may be behind; None before a fetch has been answered."""
        state = self._state(tp)
        if state.high_watermark is None or state.position is None:
            return None
        return max(0, state.high_watermark - state.position)

    def _init_positions(self) -> None:
        """Give every partition without a position one: the group's committed offset
        (one call for all of them), else per ``auto_offset_reset``."""
        missing = [tp for tp, state in self._partitions.items() if state.position is None]
        if not missing:
            return
        committed = {}
        if self._coordinator is not None:
            committed = self._coordinator.call("fetch_offsets", [list(tp) for tp in missing])
        for tp in missing:
            state = self._partitions[tp]
            offset = committed.get((tp.topic, tp.partition))
            if offset is not None:
                state.move_to(offset)
            else:
                self._reset_position(tp, state)

    def _look_up_positions(self) -> None:
        """poll()'s way to give partitions positions, never waiting: the committed
        offsets of every partition without a position (one request to the coordinator),
        then for those without one an offset reset per ``auto_offset_reset`` (a
        ``list_offset`` request to each leader). A request is sent once and checked on
        every poll; its answer, whenever it comes, is taken (``_receive`` wakes up for it),
        and one unanswered for ``request_timeout_ms`` is sent again. A frozen coordinator
        or leader so never holds poll() past its timeout, and partitions with positions
        are fetched meanwhile."""
        missing = {tp: state for tp, state in self._partitions.items() if state.position is None}
        if not missing:
            self._committed_lookup = None
            self._needs_reset.clear()
            self._reset_lookups.clear()
            return
        now = time.monotonic()
        timeout_s = self.config.request_timeout_ms / 1000
        if self._coordinator is None:
            self._needs_reset.update(missing)
        else:
            self._take_committed_offsets(missing, now, timeout_s)
        for tp, state in list(self._needs_reset.items()):
            if missing.get(tp) is not state:  # unassigned, assigned again, or sought meanwhile
                del self._needs_reset[tp]
                self._reset_lookups.pop(tp, None)
                continue
            lookup = self._reset_lookups.get(tp)
            if lookup is not None and lookup.states[tp] is state and now - lookup.sent_s <= timeout_s:
                continue
            spec = self._reset_spec(tp)
            try:
                leader, _ = self._metadata.leader(tp.topic, tp.partition, timeout_s=0.0)
            except RequestTimeoutError:
                continue  # the lookup stays pending in Metadata; asked again next poll
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                continue
            self._reset_lookups[tp] = _Lookup(leader.list_offset.remote(spec), {tp: missing[tp]}, now)
        self._take_offset_resets()

    def _take_committed_offsets(self, missing: dict[TopicPartition, _PartitionState], now: float,
                                timeout_s: float) -> None:
        lookup = self._committed_lookup
        if lookup is not None:
            ready, _ = ray.wait([lookup.ref], timeout=0)
            if ready:
                self._committed_lookup = None
                try:
                    committed = rpc.get(lookup.ref)
                except RafkaError as error:
                    if not error.retriable:
                        raise
                    self._coordinator.forget()
                else:
                    for tp, state in lookup.states.items():
                        if self._partitions.get(tp) is not state or state.position is not None:
                            continue  # unassigned, assigned again, or sought meanwhile
                        offset = committed.get((tp.topic, tp.partition))
                        if offset is None:
                            self._needs_reset[tp] = state
                        else:
                            state.move_to(offset)
            elif now - lookup.sent_s > timeout_s:
                self._committed_lookup = None
                self._coordinator.forget()  # it may have moved or restarted
        asked = self._committed_lookup.states if self._committed_lookup is not None else {}
        wanted = {tp: state for tp, state in missing.items()
                  if self._needs_reset.get(tp) is not state and asked.get(tp) is not state}
        if wanted and self._committed_lookup is None:
            self._committed_lookup = _Lookup(self._coordinator.send("fetch_offsets", [list(tp) for tp in wanted]),
                                             wanted, now)

    def _take_offset_resets(self) -> None:
        if not self._reset_lookups:
            return
        refs = [lookup.ref for lookup in self._reset_lookups.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ready = set(ready)
        for tp, lookup in list(self._reset_lookups.items()):
            if lookup.ref not in ready:
                continue
            del self._reset_lookups[tp]
            state = lookup.states[tp]
            try:
                offset = rpc.get(lookup.ref)[0]
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                continue
            if self._partitions.get(tp) is state and state.position is None:
                self._needs_reset.pop(tp, None)
                state.move_to(offset)

    def _pending_lookup_refs(self) -> list:
        refs = [lookup.ref for lookup in self._reset_lookups.values()]
        if self._committed_lookup is not None:
            refs.append(self._committed_lookup.ref)
        return refs

    def offsets_for_times(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, tuple[int, int] | None]:
        """Per partition, (offset, timestamp) of the first record at or after the given
        timestamp (ms), or None when there is none."""
        answers = {}
        for tp, timestamp_ms in timestamps.items():
            if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int) or timestamp_ms < 0:
                raise ValueError(f"timestamp for {tp} must be a non-negative int (ms), got {timestamp_ms!r}")
            tp = _topic_partition(tp)
            leader, _ = self._metadata.leader(tp.topic, tp.partition)
            offset, timestamp = rpc.get(leader.list_offset.remote(timestamp_ms))
            answers[tp] = None if offset < 0 else (offset, timestamp)
        return answers

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_topic_partition(tp): self._list_offset(_topic_partition(tp), EARLIEST) for tp in partitions}

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {_topic_partition(tp): self._list_offset(_topic_partition(tp), LATEST) for tp in partitions}

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(tp).paused = False

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._partitions.items() if state.paused}

    def _list_offset(self, tp: TopicPartition, spec: int) -> int:
        deadline = time.monotonic() + self.config.request_timeout_ms / 1000
        while True:
            try:
                leader, _ = self._metadata.leader(tp.topic, tp.partition)
                return rpc.get(leader.list_offset.remote(spec), timeout_s=self.config.request_timeout_ms / 1000)[0]
            except RafkaError as error:
                if not error.retriable or time.monotonic() > deadline:
                    raise
                self._metadata.invalidate(tp.topic)
                time.sleep(RETRY_BACKOFF_S)

    def _reset_spec(self, tp: TopicPartition) -> int:
        """The ``list_offset`` spec ``auto_offset_reset`` asks for (EARLIEST or LATEST);
        ``NoOffsetForPartitionError`` when it is "none"."""
        policy = self.config.auto_offset_reset
        if policy == "none":
            raise NoOffsetForPartitionError(f"no position for {tp.topic}-{tp.partition} and auto_offset_reset='none'")
        return EARLIEST if policy == "earliest" else LATEST

    def _reset_position(self, tp: TopicPartition, state: _PartitionState) -> None:
        state.move_to(self._list_offset(tp, self._reset_spec(tp)))

    # -- polling ---------------------------------------------------------------------

    def poll_batches(self, timeout_s: float = 1.0, max_records: int | None = None) -> dict[TopicPartition, list[pa.RecordBatch]]:
        """Arrow batches of records at each partition's position, waiting up to
        ``timeout_s`` for the first; positions move past what is returned."""
        self._check_open()
        limit = max_records if max_records is not None else 1 << 62
        deadline = time.monotonic() + timeout_s
        out: dict[TopicPartition, list[pa.RecordBatch]] = {}
        grouped = self._coordinator is not None
        while True:
            if grouped:
                self._group_work()
            self._send_fetches(deadline)
            taken = self._drain(out, limit)
            if taken or time.monotonic() >= deadline:
                return out
            self._receive(max(0.0, deadline - time.monotonic()))

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[Record]:
        """Up to ``max_records`` (default ``max_poll_records``) records, waiting up to
        ``timeout_s`` for the first."""
        limit = max_records if max_records is not None else self.config.max_poll_records
        records: list[Record] = []
        # Building many tuples triggers the cyclic garbage collector over and over, which
        # costs more than the tuples themselves; records hold no cycles, so pause it.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for (topic, partition), batches in self.poll_batches(timeout_s, limit).items():
                for batch in batches:
                    count = batch.num_rows
                    columns = [batch.column(name).to_pylist() for name in ("offset", "timestamp", "key", "value")]
                    headers = batch.column("headers")
                    headers = [None if h is None else [(e["key"], e["value"]) for e in h] for h in headers.to_pylist()] \
                        if headers.null_count != count else repeat(None, count)
                    records.extend(map(_new_record, zip(repeat(topic, count), repeat(partition, count), *columns, headers)))
        finally:
            if collecting:
                gc.enable()
        return records

    def _drain(self, out: dict, limit: int) -> int:
        taken = 0
        for tp, state in self._partitions.items():
            while state.buffered and taken < limit and not state.paused:
                entry = state.buffered[0]
                batches, next_offset = entry
                while batches and taken < limit:
                    batch = batches[0]
                    if batch.num_rows <= limit - taken:
                        batches.pop(0)
                    else:
                        batch, batches[0] = batch.slice(0, limit - taken), batch.slice(limit - taken)
                    out.setdefault(tp, []).append(batch)
                    taken += batch.num_rows
                    state.position = batch.column(0)[-1].as_py() + 1
                if not batches:
                    state.buffered.popleft()
                    state.position = max(state.position, next_offset)
        return taken

    def _send_fetches(self, deadline_s: float) -> None:
        self._look_up_positions()
        now = time.monotonic()
        for tp, state in self._partitions.items():
            if state.paused or state.in_flight or state.retry_at > now or state.position is None:
                continue
            if len(state.buffered) >= self.config.buffered_fetches_per_partition:
                continue
            fetch_offset = state.buffered[-1][1] if state.buffered else state.position
            try:
                # A leader lookup that must ask the controller waits at most until the
                # poll's deadline; its request stays pending for the next poll.
                leader, _ = self._metadata.leader(tp.topic, tp.partition, timeout_s=deadline_s - time.monotonic())
            except RequestTimeoutError:
                state.retry_at = now + RETRY_BACKOFF_S
                continue
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                state.retry_at = now + RETRY_BACKOFF_S
                continue
            ref = leader.fetch.remote(fetch_offset, self.config.max_partition_fetch_bytes,
                                      self.config.fetch_max_wait_ms, self.config.fetch_min_bytes)
            self._fetches[ref] = (tp, state.generation, fetch_offset)
            self._fetch_sent_s[ref] = now
            state.in_flight = True

    def _receive(self, timeout_s: float) -> None:
        lookups = self._pending_lookup_refs()
        if not self._fetches and not lookups:
            time.sleep(min(timeout_s, RETRY_BACKOFF_S))
            return
        # A position lookup's answer wakes us too (the next round takes it and fetches);
        # one not answered for long is re-sent by _look_up_positions.
        ready, _ = ray.wait(list(self._fetches) + lookups, num_returns=1,
                            timeout=min(timeout_s, RETRY_BACKOFF_S) if lookups and not self._fetches else timeout_s)
        # Every time, not only when nothing answered: the other partitions' long polls
        # answer every fetch_max_wait_ms, and a fetch stuck behind them must still expire.
        self._expire_fetches()
        if ready and self._fetches:
            ready, _ = ray.wait(list(self._fetches), num_returns=len(self._fetches), timeout=0)
        else:
            ready = []
        for ref in ready:
            tp, generation, fetch_offset = self._fetches.pop(ref)
            self._fetch_sent_s.pop(ref, None)
            state = self._partitions.get(tp)
            if state is None or generation != state.generation:
                continue  # unassigned or moved by seek meanwhile
            state.in_flight = False
            try:
                response = rpc.get(ref)
            except OffsetOutOfRangeError:
                if self.config.auto_offset_reset == "none":
                    raise
                self._reset_position(tp, state)
                continue
            except RafkaError as error:
                if not error.retriable:
                    raise
                self._metadata.invalidate(tp.topic)
                state.retry_at = time.monotonic() + RETRY_BACKOFF_S
                continue
            state.high_watermark = response.high_watermark
            if response.records is not None:
                state.buffered.append([decode_stream(response.records), response.next_offset])
            elif response.next_offset > fetch_offset:
                state.buffered.append([[], response.next_offset])

    def _expire_fetches(self) -> None:
        """Forget fetches unanswered for far longer than their long poll (the leader's
        node may have died) so the partition is fetched again, from the new leader."""
        limit_s = (self.config.fetch_max_wait_ms + self.config.request_timeout_ms) / 1000
        now = time.monotonic()
        for ref, sent_s in list(self._fetch_sent_s.items()):
            if now - sent_s > limit_s:
                del self._fetch_sent_s[ref]
                entry = self._fetches.pop(ref, None)
                if entry is None:
                    continue
                tp = entry[0]
                state = self._partitions.get(tp)
                if state is not None:
                    state.in_flight = False
                self._metadata.invalidate(tp.topic)

    def close(self) -> None:
        """Leave the group (a static member keeps its place for ``session_timeout_ms``)
        and stop. A subscribed consumer hands its partitions back as Kafka's does: while
        it is still a member they are revoked (committed first with auto-commit, then
        ``on_partitions_revoked``); when its session is already gone they are lost
        (``on_partitions_lost``, nothing committed), since another member may own them.
        A consumer with assigned partitions and a group commits them with auto-commit."""
        if self._closed:
            return
        try:
            if self._membership is not None and self._partitions:
                try:
                    self._revoke(set(self._partitions), lost=self._membership.lost_pending())
                except RafkaError as error:
                    logger.warning("handing back the partitions on close failed: %s", error)
            elif self._coordinator is not None and self.config.enable_auto_commit and self._partitions:
                try:
                    self.commit()
                except RafkaError as error:
                    logger.warning("auto-commit on close failed: %s", error)
            self._finish_async_commits(block=True)
        finally:
            if self._membership is not None:
                self._membership.close(leave=self.config.group_instance_id is None)
                self._membership = None
            self._closed = True
            self._fetches.clear()
            self._partitions.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RafkaError("consumer is closed")

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _log_failed_auto_commit(offsets: dict, error: BaseException | None) -> None:
    if error is not None:
        logger.warning("auto-commit of %d partitions failed: %s", len(offsets), error)


def _topic_partition(tp: TopicPartition | tuple[str, int]) -> TopicPartition:
    if isinstance(tp, TopicPartition):
        return tp
    if isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str) and isinstance(tp[1], int):
        return TopicPartition(*tp)
    raise TypeError(f"expected a TopicPartition(topic, partition), got {tp!r}")
