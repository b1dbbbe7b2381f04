"""Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), where
the clients compute the assignment: the state of one group, as a plain class.

The group coordinator (actors/coordinator.py) keeps one ``ClassicGroup`` beside each
group's native members. A group has classic members or native members, never both at
once (a join of the other kind is refused with INCONSISTENT_GROUP_PROTOCOL), but it is
one rafka group: one id, one set of committed offsets, one entry in ``list_groups`` and
``describe_group``. See docs/wire.md ("Classic groups").

States, as Kafka's (``GroupCoordinator`` in the classic protocol):

* ``Empty``: no members.
* ``PreparingRebalance``: a member joined, left, changed its subscription, or the
  leader rejoined; every member must send JoinGroup again. The phase ends when every
  member has, or after the largest rebalance timeout of the members (those that did not
  rejoin are removed). Then the generation is bumped, a protocol (assignor) chosen that
  every member supports (each member votes for the first of its list that all support),
  and every JoinGroup answered: the leader gets every member's metadata, the others an
  empty list.
* ``CompletingRebalance``: waiting for the leader's SyncGroup with the assignment;
  followers' SyncGroup calls wait for it.
* ``Stable``: every member has its assignment bytes.

The server never reads the assignment to decide anything: it stores the leader's bytes
and hands each member its own (range, roundrobin and cooperative-sticky are the
clients' business, cooperative-sticky by rejoining once more after revoking). The
caller may pass decoded topics and partitions along, which are kept for
``describe_group`` and lag only.

Liveness: a member whose heartbeat (Heartbeat, JoinGroup, SyncGroup) has not arrived for
its session timeout is removed, except while it waits in JoinGroup or SyncGroup (as in
Kafka). Static members (``group.instance.id``): a member joining under an instance id
that another member holds replaces it (the old member id is fenced) and triggers a
rebalance; Kafka's rebalance-free static rejoin is not implemented.

Not promised: classic membership is kept in memory only. A coordinator that restarts
has no classic members; they get UNKNOWN_MEMBER_ID on their next request and join
again (committed offsets are durable as always). Concurrency: every method is plain
synchronous code run on the coordinator's event loop, so no two interleave; waiting
happens on the futures ``join`` and ``sync`` return.
"""

from __future__ import annotations

import asyncio
import time
import uuid

EMPTY, PREPARING, COMPLETING, STABLE = "Empty", "PreparingRebalance", "CompletingRebalance", "Stable"
SESSION_TIMEOUT_MS_MIN = 1_000
SESSION_TIMEOUT_MS_MAX = 1_800_000  # Kafka's group.max.session.timeout.ms default

TopicPartition = tuple[str, int]


class ClassicMember:
    __slots__ = ("member_id", "instance_id", "client_id", "client_host", "protocol_type", "protocols",
                 "session_timeout_ms", "rebalance_timeout_ms", "topics", "assignment", "partitions", "deadline",
                 "join_waiter", "sync_waiter")

    def __init__(self, member_id: str, request: dict) -> None:
        self.member_id = member_id
        self.instance_id: str | None = request.get("instance_id") or None
        self.client_id: str = request.get("client_id") or ""
        self.client_host: str = request.get("client_host") or ""
        self.assignment = b""
        self.partitions: list[TopicPartition] = []
        self.join_waiter: asyncio.Future | None = None
        self.sync_waiter: asyncio.Future | None = None
        self.update(request)

    def update(self, request: dict) -> None:
        self.protocol_type: str = request["protocol_type"]
        self.protocols: list[tuple[str, bytes]] = [(name, bytes(meta)) for name, meta in request["protocols"]]
        self.session_timeout_ms: int = request["session_timeout_ms"]
        self.rebalance_timeout_ms: int = request["rebalance_timeout_ms"]
        self.topics: list[str] = sorted(request.get("topics") or ())
        self.touch()

    def touch(self) -> None:
        self.deadline = time.monotonic() + self.session_timeout_ms / 1000

    def metadata(self, protocol: str) -> bytes:
        return next(meta for name, meta in self.protocols if name == protocol)

    def waiting(self) -> bool:
        return self.join_waiter is not None or self.sync_waiter is not None


def _answer(waiter: asyncio.Future | None, value: dict) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(value)


class ClassicGroup:
    """The classic-protocol membership of one group (module docstring)."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol: str | None = None
        self.leader: str | None = None
        self.members: dict[str, ClassicMember] = {}
        self.instances: dict[str, str] = {}  # group.instance.id -> member id
        self.rebalance_deadline: float | None = None  # monotonic s: the join phase ends then at the latest

    # -- JoinGroup ---------------------------------------------------------------------

    def join(self, request: dict) -> dict | asyncio.Future:
        """A JoinGroup. Returns an answer (a dict with ``error``, a Kafka error name) at
        once, or a future of it, answered when the join phase completes.

        ``request``: member_id ('' to join afresh), instance_id, client_id, client_host,
        protocol_type, protocols (list of (name, metadata bytes)), session_timeout_ms,
        rebalance_timeout_ms, topics (decoded from the metadata; for describe only)."""
        session_timeout_ms = request.get("session_timeout_ms")
        if not isinstance(session_timeout_ms, int) or not (
                SESSION_TIMEOUT_MS_MIN <= session_timeout_ms <= SESSION_TIMEOUT_MS_MAX):
            return _error("invalid_session_timeout", request,
                          f"session timeout {session_timeout_ms!r} ms is outside "
                          f"[{SESSION_TIMEOUT_MS_MIN}, {SESSION_TIMEOUT_MS_MAX}]")
        if request.get("rebalance_timeout_ms", -1) <= 0:  # JoinGroup v0 has none: the session timeout
            request = {**request, "rebalance_timeout_ms": session_timeout_ms}
        if not request.get("protocol_type") or not request.get("protocols"):
            return _error("inconsistent_group_protocol", request, "a join needs a protocol type and protocols")
        if self.members and (request["protocol_type"] != self.protocol_type
                             or not self._candidates() & {name for name, _ in request["protocols"]}):
            return _error("inconsistent_group_protocol", request,
                          f"group {self.group_id!r} uses protocol type {self.protocol_type!r} with "
                          f"{sorted(self._candidates())}; this member offered {request['protocol_type']!r} with "
                          f"{[name for name, _ in request['protocols']]}")
        member_id = request.get("member_id") or ""
        instance_id = request.get("instance_id") or None
        if not member_id:
            member = ClassicMember(f"{request.get('client_id') or 'consumer'}-{uuid.uuid4()}", request)
            previous_id = self.instances.get(instance_id) if instance_id else None
            if previous_id is not None:
                self._remove(self.members[previous_id], "fenced_instance_id")
            self.members[member.member_id] = member
            if instance_id:
                self.instances[instance_id] = member.member_id
            if self.protocol_type is None:
                self.protocol_type = member.protocol_type
            self._prepare_rebalance()
            return self._await_join(member)
        member = self.members.get(member_id)
        if member is None:
            if instance_id and instance_id in self.instances:
                return _error("fenced_instance_id", request,
                              f"instance {instance_id!r} is now member {self.instances[instance_id]}")
            return _error("unknown_member_id", request, f"group {self.group_id!r} has no member {member_id!r}")
        if instance_id and self.instances.get(instance_id) != member_id:
            return _error("fenced_instance_id", request, f"instance {instance_id!r} is not member {member_id}")
        changed = member.protocols != [(name, bytes(meta)) for name, meta in request["protocols"]]
        member.update(request)
        if self.state == PREPARING:
            return self._await_join(member)
        if self.state in (COMPLETING, STABLE) and not changed and (self.state == COMPLETING or member_id != self.leader):
            # A follower that lost the answer and asks again: the current generation.
            return self._join_answer(member)
        self._prepare_rebalance()
        return self._await_join(member)

    def _await_join(self, member: ClassicMember) -> asyncio.Future:
        _answer(member.join_waiter, _error("unknown_member_id", {"member_id": member.member_id},
                                           "a newer JoinGroup of this member replaced this one"))
        member.join_waiter = asyncio.get_running_loop().create_future()
        waiter = member.join_waiter
        self._maybe_complete_join()
        return waiter

    def _candidates(self) -> set[str]:
        names = None
        for member in self.members.values():
            offered = {name for name, _ in member.protocols}
            names = offered if names is None else names & offered
        return names or set()

    def _prepare_rebalance(self) -> None:
        if self.state == COMPLETING:
            for member in self.members.values():
                _answer(member.sync_waiter, {"error": "rebalance_in_progress"})
                member.sync_waiter = None
        if self.state != PREPARING:
            self.state = PREPARING
            timeout_ms = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
            self.rebalance_deadline = time.monotonic() + timeout_ms / 1000

    def _maybe_complete_join(self, force: bool = False) -> None:
        if self.state != PREPARING:
            return
        if not force and any(m.join_waiter is None for m in self.members.values()):
            return
        for member in [m for m in self.members.values() if m.join_waiter is None]:
            self._remove(member, None)  # did not rejoin within the rebalance timeout
        self.generation += 1
        self.rebalance_deadline = None
        if not self.members:
            self.state, self.protocol, self.protocol_type, self.leader = EMPTY, None, None, None
            return
        self.protocol = self._choose_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self.state = COMPLETING
        for member in self.members.values():
            member.assignment, member.partitions = b"", []
            member.touch()
            waiter, member.join_waiter = member.join_waiter, None
            _answer(waiter, self._join_answer(member))

    def _choose_protocol(self) -> str:
        candidates = self._candidates()
        votes: dict[str, int] = {}
        for member in self.members.values():
            vote = next(name for name, _ in member.protocols if name in candidates)
            votes[vote] = votes.get(vote, 0) + 1
        # Most votes; ties go to the leader's (or first member's) preference.
        first = self.members.get(self.leader) or next(iter(self.members.values()))
        order = [name for name, _ in first.protocols]
        return max(votes, key=lambda name: (votes[name], -order.index(name) if name in order else -len(order)))

    def _join_answer(self, member: ClassicMember) -> dict:
        members = []
        if member.member_id == self.leader:
            members = [(m.member_id, m.instance_id, m.metadata(self.protocol)) for m in self.members.values()]
        return {"error": None, "generation": self.generation, "protocol_type": self.protocol_type,
                "protocol": self.protocol, "leader": self.leader, "member_id": member.member_id,
                "members": members}

    # -- SyncGroup ---------------------------------------------------------------------

    def sync(self, request: dict) -> dict | asyncio.Future:
        """A SyncGroup: member_id, instance_id, generation, protocol_type, protocol
        (None when the client's version has none), assignments (from the leader:
        {member id: (bytes, [(topic, partition)])}). Returns {error, assignment,
        protocol_type, protocol} or a future of it (followers wait for the leader)."""
        member, error = self._check_member(request)
        if error is not None:
            return error
        for name, ours in (("protocol_type", self.protocol_type), ("protocol", self.protocol)):
            if request.get(name) not in (None, ours):
                return _error("inconsistent_group_protocol", request,
                              f"group {self.group_id!r} runs {ours!r}, the sync names {request[name]!r}")
        if self.state == PREPARING:
            return {"error": "rebalance_in_progress"}
        member.touch()
        if self.state == STABLE:
            return self._sync_answer(member)
        _answer(member.sync_waiter, {"error": "rebalance_in_progress"})
        member.sync_waiter = asyncio.get_running_loop().create_future()
        waiter = member.sync_waiter
        if member.member_id == self.leader:
            assignments = request.get("assignments") or {}
            for other in self.members.values():
                other.assignment, other.partitions = assignments.get(other.member_id, (b"", []))
                other.partitions = sorted(tuple(tp) for tp in other.partitions)
            self.state = STABLE
            for other in self.members.values():
                pending, other.sync_waiter = other.sync_waiter, None
                _answer(pending, self._sync_answer(other))
        return waiter

    def _sync_answer(self, member: ClassicMember) -> dict:
        return {"error": None, "assignment": member.assignment, "protocol_type": self.protocol_type,
                "protocol": self.protocol}

    # -- Heartbeat, LeaveGroup, commits ------------------------------------------------

    def heartbeat(self, request: dict) -> dict:
        """A Heartbeat: member_id, instance_id, generation. Returns {error}."""
        member, error = self._check_member(request)
        if error is not None:
            return error
        member.touch()
        if self.state == PREPARING:
            return {"error": "rebalance_in_progress"}
        return {"error": None}

    def _check_member(self, request: dict) -> tuple[ClassicMember | None, dict | None]:
        member_id, instance_id = request.get("member_id") or "", request.get("instance_id") or None
        member = self.members.get(member_id)
        if member is None:
            if instance_id and instance_id in self.instances:
                return None, _error("fenced_instance_id", request, f"instance {instance_id!r} is another member now")
            return None, _error("unknown_member_id", request, f"group {self.group_id!r} has no member {member_id!r}")
        if instance_id and self.instances.get(instance_id) != member_id:
            return None, _error("fenced_instance_id", request, f"instance {instance_id!r} is not member {member_id}")
        if request.get("generation") != self.generation:
            return None, _error("illegal_generation", request,
                                f"group {self.group_id!r} is at generation {self.generation}, "
                                f"not {request.get('generation')}")
        return member, None

    def leave(self, member_id: str, instance_id: str | None) -> str | None:
        """One member of a LeaveGroup (by member id, or by instance id alone). Returns
        None, or the Kafka error name for this member."""
        if not member_id and instance_id:
            member_id = self.instances.get(instance_id, "")
        member = self.members.get(member_id)
        if member is None:
            return "unknown_member_id"
        if instance_id and member.instance_id != instance_id:
            return "fenced_instance_id"
        self._remove(member, "unknown_member_id")
        self._after_departure()
        return None

    def commit_error(self, member_id: str, generation: int) -> str | None:
        """Whether a commit by ``member_id`` at ``generation`` is allowed (Kafka's rules:
        a known member of the current generation, not while the leader's assignment is
        pending). Returns None or the Kafka error name."""
        if self.state == COMPLETING and member_id in self.members:
            return "rebalance_in_progress"
        if member_id not in self.members:
            return "unknown_member_id"
        if generation != self.generation:
            return "illegal_generation"
        return None

    # -- liveness ----------------------------------------------------------------------

    def expire(self, now: float) -> list[str]:
        """Remove members whose session ran out, end a join phase past its deadline;
        returns the ids of members removed."""
        expired = [m for m in self.members.values() if not m.waiting() and m.deadline < now]
        for member in expired:
            self._remove(member, None)
        if expired:
            self._after_departure()
        if self.state == PREPARING and self.rebalance_deadline is not None and self.rebalance_deadline < now:
            self._maybe_complete_join(force=True)
        return [m.member_id for m in expired]

    def _after_departure(self) -> None:
        if self.state == PREPARING:
            self._maybe_complete_join()
        elif self.state in (COMPLETING, STABLE):
            self._prepare_rebalance()
            self._maybe_complete_join()

    def _remove(self, member: ClassicMember, error: str | None) -> None:
        self.members.pop(member.member_id, None)
        if member.instance_id and self.instances.get(member.instance_id) == member.member_id:
            del self.instances[member.instance_id]
        answer = {"error": error or "unknown_member_id"}
        _answer(member.join_waiter, answer)
        _answer(member.sync_waiter, answer)
        member.join_waiter = member.sync_waiter = None
        if self.leader == member.member_id:
            self.leader = None

    # -- views -------------------------------------------------------------------------

    def describe_members(self) -> list[dict]:
        return [{"member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                 "topics": list(m.topics), "pattern": None, "epoch": self.generation,
                 "assignment": list(m.partitions), "target": list(m.partitions), "protocol": "classic"}
                for m in sorted(self.members.values(), key=lambda m: m.instance_id or m.member_id)]

    def wire_members(self) -> list[dict]:
        """Members with their metadata (of the chosen protocol) and assignment bytes."""
        return [{"member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                 "client_host": m.client_host,
                 "metadata": m.metadata(self.protocol) if self.protocol in {n for n, _ in m.protocols} else b"",
                 "assignment": m.assignment}
                for m in self.members.values()]


def _error(name: str, request: dict, message: str) -> dict:
    return {"error": name, "message": message, "member_id": request.get("member_id") or ""}

