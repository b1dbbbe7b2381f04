"""Raft, as a plain deterministic class: the consensus core of the controller quorum.

``RaftCore`` is one voter. It owns a ``RaftLog`` (actors/raft_log.py: term, vote, log and
snapshot on disk) and a state machine, and knows nothing of Ray, sockets, threads or the
wall clock: time comes from an injected ``clock`` (seconds, monotonic), randomness from an
injected ``random.Random``, and messages leave as plain dicts that the caller carries.
The Ray transport is actors/raft_voter.py; the deterministic simulation in
tests/actors/test_raft_simulation.py drives the same class over a lossy network. The
design and the choice of Raft over Ray actor calls are in docs/controller-quorum.md.

Driving it::

    outbox = core.tick()                 # timers: elections, heartbeats, check-quorum
    reply = core.handle(request)         # a peer's "vote" / "append" / "snapshot" request
    outbox = core.handle_reply(reply)    # the answer to a request this voter sent
    term, index = core.propose(data)     # leader only; data must be msgpack-able
    outbox = core.take_outbox()          # requests that propose/handle queued

Every request and reply is a dict with ``type``, ``term``, ``from`` and ``to``. Requests
may be lost, duplicated, delayed and reordered; the core retries on its own timers.

Rules kept (Raft, Ongaro's thesis chapter 3, with its sections 4.2.3 and 6.2):

- Term, vote and entries are durable before any reply or vote that depends on them
  (``RaftLog`` fsyncs before returning).
- Elections: randomized timeouts in ``election_timeout_s``; a vote goes to a candidate
  whose log is at least as up to date; one vote per term.
- Pre-vote (the thesis's section 9.6): a voter whose election timeout passes first asks
  its peers whether they would vote for it at the next term, without changing any term;
  a peer says yes only if its log is no newer and it has not heard from a leader within
  ``election_timeout_s[0]``. Only with a majority of yeses does it raise its term and
  stand. A voter that was paused, starved of CPU or cut off therefore cannot depose a
  healthy leader by coming back with a higher term (without pre-vote it did: its higher
  term in an append reply made the leader step down, a churn seen on loaded machines).
  Two voters asking at once for the same term would split the vote; the one with the
  lower id yields when the other's question reaches it (it waits a fresh timeout).
- A leader appends a no-op entry at the start of its term and commits an entry only when
  a majority holds it and it is of the leader's term (earlier entries commit with it).
- Only committed entries reach ``state_machine.apply``, in index order, once each.
- Check-quorum: a leader that has not heard from a majority for ``election_timeout_s[1]``
  steps down, so a paused (SIGSTOPped) or partitioned leader stops acting as one. A
  follower that heard from a leader within ``election_timeout_s[0]`` ignores vote requests
  (leader stickiness), so a voter coming back from a partition cannot depose a healthy
  leader.
- Time a voter did not run is not its peers' silence: after a gap between two ticks
  longer than ``election_timeout_s[0]`` (its process was stopped or starved of CPU, so it
  could read no message) a leader gives its peers ``election_timeout_s[0]`` more to
  answer the heartbeats it sends at once, and a follower that knew a leader waits a new
  election timeout and refuses pre-votes and votes for ``election_timeout_s[0]``, as if
  it had just heard from it. Without this, a machine that stalled every voter at once (CI
  on two loaded cores) woke to a leader stepping down and followers standing, an
  election each time. A leader deposed meanwhile steps down on the first reply (it
  carries the newer term); leading a little longer is safe, since Raft's safety never
  depends on check-quorum and a deposed leader can commit nothing.
- Snapshots: after ``snapshot_every`` applied entries the state machine's snapshot
  replaces them; a follower that needs a compacted entry gets the snapshot instead
  (InstallSnapshot, one message: metadata snapshots are small).
- A voter whose directory is gone: when it starts with no meta file and ``bootstrap`` is
  false, it is *recovering*: it accepts entries and snapshots (its acknowledgements count
  toward commit, because it holds what it acknowledges durably from then on) but it never
  votes or stands, because it forgot its votes and the entries it had acknowledged.
  Leaders elected without it still hold every committed entry (any majority of the other
  voters intersects every commit quorum minus one voter). The leader re-admits it as a
  voter (``promote`` in an append) once it has caught up to the commit index and a
  majority of the *other* voters has acknowledged the leader's term after the recovering
  voter first answered, which proves no later term had a majority at that point.
  Not covered: a majority of disks lost at once (two of 3, or the one of a quorum of one),
  which no quorum survives: those voters stay recovering and nobody is elected.

Not promised: membership changes (the voter set is fixed at construction),
reads (the controller reads its own applied state after a commit), fairness between
candidates. Not thread-safe: the caller serializes calls (one event loop).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Protocol

import msgpack

from rafka.actors.raft_log import RaftLog
from rafka.errors import NotLeaderError

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


class StateMachine(Protocol):
    """What the core replicates. ``apply`` must be deterministic and, when it raises,
    leave the state unchanged (every voter then raises the same error at that index)."""

    def apply(self, data: Any) -> Any: ...

    def snapshot(self) -> Any: ...  # a msgpack-able copy of the whole state

    def restore(self, state: Any) -> None: ...  # replace the whole state (state may be None: initial)


def _validate_number(name: str, value: object, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > minimum:
        raise ValueError(f"{name} must be a number above {minimum}, got {value!r}")
    return float(value)


class RaftCore:
    """One Raft voter (see the module docstring for the contract)."""

    def __init__(self, node_id: str, voters: list[str], log: RaftLog, state_machine: StateMachine,
                 clock: Callable[[], float], rng: random.Random, *,
                 election_timeout_s: tuple[float, float] = (0.5, 1.0), heartbeat_interval_s: float = 0.1,
                 request_timeout_s: float | None = None, snapshot_every: int = 1000,
                 max_entries_per_request: int = 512, bootstrap: bool = False,
                 on_apply: Callable[[int, int, Any], None] | None = None) -> None:
        if node_id not in voters or len(set(voters)) != len(voters):
            raise ValueError(f"voters must be distinct and include {node_id!r}, got {voters!r}")
        low, high = election_timeout_s
        _validate_number("election_timeout_s[0]", low)
        if not high > low:
            raise ValueError(f"election_timeout_s must be (low, high) with high > low, got {election_timeout_s!r}")
        self.heartbeat_interval_s = _validate_number("heartbeat_interval_s", heartbeat_interval_s)
        if not self.heartbeat_interval_s < low:
            raise ValueError(f"heartbeat_interval_s {heartbeat_interval_s} must be below the election timeout {low}")
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ValueError(f"snapshot_every must be an int of at least 1, got {snapshot_every!r}")
        if isinstance(max_entries_per_request, bool) or not isinstance(max_entries_per_request, int) \
                or max_entries_per_request < 1:
            raise ValueError(f"max_entries_per_request must be an int of at least 1, got {max_entries_per_request!r}")
        self.node_id = node_id
        self.voters = list(voters)
        self.peers = [voter for voter in voters if voter != node_id]
        self.majority = len(voters) // 2 + 1
        self.log = log
        self.state_machine = state_machine
        self.clock = clock
        self.rng = rng
        self.election_timeout_s = (float(low), float(high))
        self.request_timeout_s = request_timeout_s or 3 * self.heartbeat_interval_s
        self.snapshot_every = snapshot_every
        self.max_entries_per_request = max_entries_per_request
        self.on_apply = on_apply
        if log.fresh:
            # No meta file: a new voter (bootstrap) or one whose disk was replaced.
            # A lone voter without bootstrap also stays recovering: it has nobody to catch up
            # from, and leading with an empty log would be the silent loss of every topic.
            log.set_term(log.term, None, recovering=not bootstrap)
        self.role = FOLLOWER
        self.leader_id: str | None = None
        self.commit_index = log.snapshot_index
        self.last_applied = log.snapshot_index
        state_machine.restore(log.snapshot_state)
        self._outbox: list[dict] = []
        now = clock()
        # A quorum of one has nobody to wait for: it elects itself on its first tick.
        self._election_deadline_s = now if not self.peers else now + self._random_timeout_s()
        self._last_leader_contact_s: float | None = None
        self._votes: set[str] = set()
        self._pre_votes: set[str] | None = None  # while asking for pre-votes for term + 1
        # Leader state.
        self._next_index: dict[str, int] = {}
        self._match_index: dict[str, int] = {}
        self._pending_since_s: dict[str, float] = {}  # one request in flight per peer
        self._last_ack_s: dict[str, float] = {}
        self._acked_round: dict[str, int] = {}
        self._round = 0
        self._last_tick_s = now
        self._next_heartbeat_s = now
        self._recovering_since_round: dict[str, int] = {}
        self._promote: set[str] = set()

    # -- views -------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.log.term

    @property
    def recovering(self) -> bool:
        return self.log.recovering

    def status(self) -> dict:
        status = {"node_id": self.node_id, "role": self.role, "term": self.term, "leader_id": self.leader_id,
                  "commit_index": self.commit_index, "last_applied": self.last_applied,
                  "last_index": self.log.last_index, "snapshot_index": self.log.snapshot_index,
                  "recovering": self.recovering}
        if self.role == LEADER:
            status["lag"] = {peer: self.log.last_index - self._match_index[peer] for peer in self.peers}
        return status

    def take_outbox(self) -> list[dict]:
        outbox, self._outbox = self._outbox, []
        return outbox

    # -- timers ------------------------------------------------------------------------

    def _random_timeout_s(self) -> float:
        low, high = self.election_timeout_s
        return self.rng.uniform(low, high)

    def tick(self) -> list[dict]:
        now = self.clock()
        if now - self._last_tick_s > self.election_timeout_s[0]:
            self._forgive_stall(now)
        self._last_tick_s = now
        if self.role == LEADER:
            acked = 1 + sum(1 for peer in self.peers
                            if now - self._last_ack_s[peer] < self.election_timeout_s[1])
            if acked < self.majority:
                self._become_follower(self.term, leader_id=None)  # check-quorum: a deposed or cut-off leader
            elif now >= self._next_heartbeat_s:
                self._round += 1
                self._next_heartbeat_s = now + self.heartbeat_interval_s
                for peer in self.peers:
                    self._send_append(peer, now)
        elif now >= self._election_deadline_s and not self.recovering:
            self._start_pre_vote(now)
        elif now >= self._election_deadline_s:
            self._election_deadline_s = now + self._random_timeout_s()
        self._apply_committed()
        return self.take_outbox()

    def _forgive_stall(self, now: float) -> None:
        """This voter did not run for a while: that is not silence of its peers (see the
        module docstring)."""
        low, high = self.election_timeout_s
        if self.role == LEADER:
            for peer in self.peers:
                self._last_ack_s[peer] = max(self._last_ack_s[peer], now - high + low)
        elif self.leader_id is not None:
            self._election_deadline_s = max(self._election_deadline_s, now + self._random_timeout_s())
            self._last_leader_contact_s = now

    def next_deadline_s(self) -> float:
        """When ``tick`` next has something to do (a transport may sleep until then)."""
        if self.role == LEADER:
            return self._next_heartbeat_s
        return self._election_deadline_s

    # -- elections ---------------------------------------------------------------------

    def _start_pre_vote(self, now: float) -> None:
        """Ask the peers whether they would elect us at term + 1 (see the module
        docstring); the election starts once a majority says yes."""
        self._election_deadline_s = now + self._random_timeout_s()
        self._pre_votes = {self.node_id}
        if len(self._pre_votes) >= self.majority:
            self._start_election(now)
            return
        for peer in self.peers:
            self._outbox.append({"type": "pre_vote", "term": self.term + 1, "from": self.node_id, "to": peer,
                                 "last_log_index": self.log.last_index, "last_log_term": self.log.last_term})

    def _start_election(self, now: float) -> None:
        self._pre_votes = None
        self.log.set_term(self.term + 1, self.node_id)
        self.role = CANDIDATE
        self.leader_id = None
        self._votes = {self.node_id}
        self._election_deadline_s = now + self._random_timeout_s()
        if len(self._votes) >= self.majority:
            self._become_leader(now)
            return
        for peer in self.peers:
            self._outbox.append({"type": "vote", "term": self.term, "from": self.node_id, "to": peer,
                                 "last_log_index": self.log.last_index, "last_log_term": self.log.last_term})

    def _become_follower(self, term: int, leader_id: str | None) -> None:
        if term > self.term:
            self.log.set_term(term, None)
        if self.role != FOLLOWER:
            self._election_deadline_s = self.clock() + self._random_timeout_s()
        self.role = FOLLOWER
        self.leader_id = leader_id
        if leader_id is not None:
            self._pre_votes = None
        self._pending_since_s.clear()
        self._promote.clear()
        self._recovering_since_round.clear()

    def _become_leader(self, now: float) -> None:
        self.role = LEADER
        self._pre_votes = None
        self.leader_id = self.node_id
        self._next_index = {peer: self.log.last_index + 1 for peer in self.peers}
        self._match_index = {peer: 0 for peer in self.peers}
        self._pending_since_s.clear()
        self._last_ack_s = {peer: now for peer in self.peers}  # a grace period before check-quorum
        self._acked_round = {peer: 0 for peer in self.peers}
        self._recovering_since_round.clear()
        self._promote.clear()
        self.log.append([(self.term, None)])  # the no-op that commits the earlier terms' entries
        self._advance_commit()
        self._round += 1
        self._next_heartbeat_s = now + self.heartbeat_interval_s
        for peer in self.peers:
            self._send_append(peer, now)

    # -- proposals ---------------------------------------------------------------------

    def propose(self, data: Any) -> tuple[int, int]:
        """Append ``data`` as a new entry; return (term, index). It is committed when
        ``on_apply`` reports that index with that term; a different term there means it
        was dropped. Raises NotLeaderError on a voter that is not the leader."""
        term, first, _ = self.propose_batch([data])
        return term, first

    def propose_batch(self, items: list[Any]) -> tuple[int, int, int]:
        """Append every item (one fsync); return (term, first index, last index)."""
        if self.role != LEADER:
            raise NotLeaderError(f"voter {self.node_id} is not the leader of term {self.term} "
                                 f"(leader: {self.leader_id})")
        if not items or any(item is None for item in items):
            raise ValueError(f"propose_batch needs items that are not None (None is the leader's no-op), got {items!r}")
        # What a follower decodes is what the leader applies (tuples become lists).
        entries = [(self.term, msgpack.unpackb(msgpack.packb(item), strict_map_key=False)) for item in items]
        first = self.log.last_index + 1
        self.log.append(entries)
        self._advance_commit()
        now = self.clock()
        for peer in self.peers:
            if peer not in self._pending_since_s:
                self._send_append(peer, now)
        self._apply_committed()
        return self.term, first, self.log.last_index

    # -- leader to followers -----------------------------------------------------------

    def _send_append(self, peer: str, now: float) -> None:
        sent_s = self._pending_since_s.get(peer)
        if sent_s is not None and now - sent_s < self.request_timeout_s:
            return  # one request in flight per peer; a lost one is resent after request_timeout_s
        next_index = self._next_index[peer]
        request = {"term": self.term, "from": self.node_id, "to": peer, "round": self._round}
        if next_index <= self.log.snapshot_index:
            request.update(type="snapshot", index=self.log.snapshot_index, index_term=self.log.snapshot_term,
                           state=self.log.snapshot_state, leader_commit=self.commit_index,
                           promote=peer in self._promote)
        else:
            prev_index = next_index - 1
            entries = self.log.slice(next_index, self.max_entries_per_request)
            request.update(type="append", prev_index=prev_index, prev_term=self.log.term_at(prev_index),
                           entries=[[term, data] for term, data in entries], leader_commit=self.commit_index,
                           promote=peer in self._promote)
        self._pending_since_s[peer] = now
        self._outbox.append(request)

    def _advance_commit(self) -> None:
        matches = sorted([self.log.last_index] + [self._match_index[peer] for peer in self.peers], reverse=True)
        candidate = matches[self.majority - 1]  # the highest index a majority holds
        if candidate > self.commit_index and self.log.term_at(candidate) == self.term:
            self.commit_index = candidate

    def _consider_promotions(self) -> None:
        """Re-admit caught-up recovering voters as voters (see the module docstring)."""
        if self.log.term_at(self.commit_index) != self.term:
            return
        for peer, since_round in self._recovering_since_round.items():
            if peer in self._promote or self._match_index[peer] < self.commit_index:
                continue
            confirmed = 1 + sum(1 for other in self.peers
                                if other != peer and self._acked_round[other] >= since_round)
            if confirmed >= self.majority:
                self._promote.add(peer)

    # -- requests from peers -----------------------------------------------------------

    def handle(self, request: dict) -> dict:
        """Answer a peer's request; everything the answer depends on is durable first."""
        kind = request["type"]
        if kind == "pre_vote":
            return self._handle_pre_vote(request)  # changes nothing
        if kind == "vote":
            reply = self._handle_vote(request)
        elif kind in ("append", "snapshot"):
            reply = self._handle_append(request)
        else:
            raise ValueError(f"unknown raft request type {kind!r}")
        self._apply_committed()
        return reply

    def _heard_from_leader(self, now: float) -> bool:
        """Whether a leader is known to be alive: we lead, or one reached us within
        ``election_timeout_s[0]``."""
        return self.role == LEADER or (
            self._last_leader_contact_s is not None and self.leader_id is not None
            and now - self._last_leader_contact_s < self.election_timeout_s[0])

    def _handle_pre_vote(self, request: dict) -> dict:
        """Would we vote for the sender at ``request["term"]``? Nothing is changed or
        written: a pre-vote is a question."""
        up_to_date = (request["last_log_term"], request["last_log_index"]) >= (self.log.last_term, self.log.last_index)
        now = self.clock()
        granted = (request["term"] > self.term and not self.recovering and up_to_date
                   and not self._heard_from_leader(now))
        if granted and self._pre_votes is not None and request["term"] == self.term + 1 \
                and request["from"] > self.node_id:
            # Both of us timed out together and ask for the same term: were both to go
            # on, each would vote for itself and neither win (a split vote costs another
            # election timeout; with two voters left of three, about one failover in
            # three did). The lower id yields: it drops its own question and waits a
            # fresh timeout, in which the other is elected with its vote. Safe: a
            # pre-vote changes nothing, and waiting longer is always allowed.
            self._pre_votes = None
            self._election_deadline_s = now + self._random_timeout_s()
        return {"type": "pre_vote_reply", "from": self.node_id, "to": request["from"], "term": self.term,
                "pre_term": request["term"], "granted": granted}

    def _handle_vote(self, request: dict) -> dict:
        now = self.clock()
        reply = {"type": "vote_reply", "from": self.node_id, "to": request["from"], "granted": False}
        heard_from_leader = self._heard_from_leader(now)
        if heard_from_leader and request["term"] > self.term:
            return dict(reply, term=self.term)  # leader stickiness: no term change, no vote
        if request["term"] > self.term:
            self._become_follower(request["term"], leader_id=None)
        up_to_date = (request["last_log_term"], request["last_log_index"]) >= (self.log.last_term, self.log.last_index)
        if (request["term"] == self.term and not self.recovering and self.log.voted_for in (None, request["from"])
                and up_to_date):
            self.log.set_term(self.term, request["from"])
            self._election_deadline_s = now + self._random_timeout_s()
            reply["granted"] = True
        return dict(reply, term=self.term)

    def _handle_append(self, request: dict) -> dict:
        now = self.clock()
        reply = {"type": request["type"] + "_reply", "from": self.node_id, "to": request["from"],
                 "round": request["round"], "success": False}
        if request["term"] < self.term:
            return dict(reply, term=self.term, recovering=self.recovering)
        assert not (self.role == LEADER and request["term"] == self.term), "two leaders in one term"
        if request["term"] > self.term or self.role != FOLLOWER:
            self._become_follower(request["term"], leader_id=request["from"])
        self.leader_id = request["from"]
        self._pre_votes = None
        self._last_leader_contact_s = now
        self._election_deadline_s = now + self._random_timeout_s()
        if request["type"] == "snapshot":
            match_index = self._install_snapshot(request)
        else:
            match_index = self._append_entries(request)
            if match_index is None:
                return dict(reply, term=self.term, recovering=self.recovering, hint=self._conflict_hint(request))
        if request.get("promote") and self.recovering and self.log.last_index >= request["leader_commit"] \
                and match_index >= request["leader_commit"]:
            # The leader of this term re-admits us; our vote of this term is theirs.
            self.log.set_term(self.term, request["from"], recovering=False)
        return dict(reply, term=self.term, success=True, match_index=match_index, recovering=self.recovering)

    def _append_entries(self, request: dict) -> int | None:
        prev_index, prev_term, entries = request["prev_index"], request["prev_term"], request["entries"]
        if prev_index < self.log.snapshot_index:
            # Entries up to our snapshot are committed, hence the same as the leader's: skip them.
            skip = self.log.snapshot_index - prev_index
            if skip >= len(entries):
                return prev_index + len(entries)
            prev_index, prev_term, entries = self.log.snapshot_index, self.log.snapshot_term, entries[skip:]
        elif self.log.term_at(prev_index) != prev_term:
            return None
        new: list[tuple[int, Any]] = []
        for offset, (term, _data) in enumerate(entries):
            index = prev_index + 1 + offset
            existing = self.log.term_at(index)
            if existing == term:
                continue
            if existing is not None:
                assert index > self.commit_index, (index, self.commit_index)  # a committed entry never changes
                self.log.truncate_after(index - 1)
            new = [(entry_term, entry_data) for entry_term, entry_data in entries[offset:]]
            break
        self.log.append(new)
        match_index = prev_index + len(entries)
        self.commit_index = max(self.commit_index, min(request["leader_commit"], match_index))
        return match_index

    def _conflict_hint(self, request: dict) -> int:
        """Where the leader should retry: past our end, or the first index of the term that conflicts."""
        prev_index = request["prev_index"]
        if prev_index > self.log.last_index:
            return self.log.last_index + 1
        conflict_term = self.log.term_at(prev_index)
        index = prev_index
        while index - 1 > self.log.snapshot_index and self.log.term_at(index - 1) == conflict_term:
            index -= 1
        return max(index, self.log.snapshot_index + 1)

    def _install_snapshot(self, request: dict) -> int:
        index = request["index"]
        if index <= self.last_applied:
            return index  # we already have all of it (applied entries are committed)
        self.log.save_snapshot(index, request["index_term"], request["state"])
        self.state_machine.restore(request["state"])
        self.last_applied = index
        self.commit_index = max(self.commit_index, index)
        return index

    # -- replies to our requests -------------------------------------------------------

    def handle_reply(self, reply: dict) -> list[dict]:
        if reply["term"] > self.term:
            self._become_follower(reply["term"], leader_id=None)
        elif reply["type"] == "pre_vote_reply":
            self._handle_pre_vote_reply(reply)  # from a peer at our term or an older one
        elif reply["term"] == self.term:
            if reply["type"] == "vote_reply":
                self._handle_vote_reply(reply)
            elif self.role == LEADER:
                self._handle_append_reply(reply)
        self._apply_committed()
        return self.take_outbox()

    def _handle_vote_reply(self, reply: dict) -> None:
        if self.role != CANDIDATE or not reply["granted"]:
            return
        self._votes.add(reply["from"])
        if len(self._votes) >= self.majority:
            self._become_leader(self.clock())

    def _handle_pre_vote_reply(self, reply: dict) -> None:
        if self._pre_votes is None or self.role == LEADER or reply["pre_term"] != self.term + 1 \
                or not reply["granted"]:
            return
        self._pre_votes.add(reply["from"])
        if len(self._pre_votes) >= self.majority:
            self._start_election(self.clock())

    def _handle_append_reply(self, reply: dict) -> None:
        now = self.clock()
        peer = reply["from"]
        if peer not in self._next_index:
            return
        self._pending_since_s.pop(peer, None)
        self._last_ack_s[peer] = now
        self._acked_round[peer] = max(self._acked_round[peer], reply["round"])
        if reply["recovering"]:
            self._recovering_since_round.setdefault(peer, self._round + 1)
        else:
            self._recovering_since_round.pop(peer, None)
            self._promote.discard(peer)
        if reply["success"]:
            if reply["recovering"]:
                # A wiped voter holds what it says, not what it acknowledged before the wipe.
                self._match_index[peer] = reply["match_index"]
                self._next_index[peer] = reply["match_index"] + 1
            else:
                self._match_index[peer] = max(self._match_index[peer], reply["match_index"])
                self._next_index[peer] = max(self._next_index[peer], self._match_index[peer] + 1)
            self._advance_commit()
        else:
            if reply["recovering"]:
                self._match_index[peer] = min(self._match_index[peer], reply["hint"] - 1)
            self._next_index[peer] = max(self._match_index[peer] + 1, min(reply["hint"], self._next_index[peer]))
        self._consider_promotions()
        if self._next_index[peer] <= self.log.last_index or (peer in self._promote and reply["recovering"]):
            self._send_append(peer, now)

    # -- applying ----------------------------------------------------------------------

    def _apply_committed(self) -> None:
        while self.last_applied < self.commit_index:
            index = self.last_applied + 1
            term, data = self.log.entry(index)
            result: Any = None
            if data is not None:
                try:
                    result = self.state_machine.apply(data)
                except Exception as error:  # noqa: BLE001 - deterministic: every voter fails alike
                    result = error
            self.last_applied = index
            if self.on_apply is not None:
                self.on_apply(index, term, result)
        if self.last_applied - self.log.snapshot_index >= self.snapshot_every:
            self.log.save_snapshot(self.last_applied, self.log.term_at(self.last_applied),
                                   self.state_machine.snapshot())


__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "RaftCore", "StateMachine"]
