"""The client side of consumer groups: reaching a group's coordinator, and the
heartbeat thread that keeps a subscribed consumer in its group.

``GroupMembership`` runs one daemon thread per subscribed consumer. The thread calls
the coordinator's long-polling ``heartbeat`` (see actors/coordinator.py), reporting the
partitions the consumer owns, and hands each new assignment to the consumer's own
thread, which applies it inside ``poll()`` (rebalance listeners run there, never on the
heartbeat thread). When the consumer has applied an assignment, the thread reports it
at once, so a revoked partition is released to its next owner without waiting for a
heartbeat interval.

The thread leaves the group when the user has not called ``poll()`` for
``max_poll_interval_ms`` (the partitions move to live members); the next ``poll()``
reports them lost and joins again. A member the coordinator no longer knows (its session
expired, or a commit was fenced) gets the same treatment.

Fencing (KIP-848's epoch-0 rule). A consumer that rejoins under a new member id owns
nothing: the thread sends the join only after the consumer has dropped, as lost and
without committing, every partition it held under the old id (its commits would be
refused anyway), and the join claims no partitions. Until then the consumer has no
member id, and ``commit_generation()`` refuses commits. Commits carry the member id and
epoch the consumer holds its partitions under; the coordinator refuses those from a
member it no longer knows or from an epoch older than a partition's assignment.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

from rafka.actors.coordinator import coordinator_handle, coordinator_index, offsets_topic_partitions
from rafka.client import rpc
from rafka.client.records import TopicPartition
from rafka.errors import FencedInstanceIdError, RafkaError, UnknownMemberIdError

logger = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.1


class ConsumerRebalanceListener:
    """Callbacks a subscribed consumer runs inside ``poll()`` when its partitions change.

    ``on_partitions_revoked`` runs before a partition moves to another member, while
    this consumer still holds it (commit here what you processed; with auto-commit the
    consumer has already committed its positions). ``on_partitions_lost`` runs instead
    when the partitions may already belong to someone else (this consumer's session
    expired): committing them is refused. ``on_partitions_assigned`` runs after new
    partitions arrive, with positions at their committed offsets."""

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.on_partitions_revoked(lost)


class CoordinatorClient:
    """Calls to one group's coordinator, following it when Ray restarts it."""

    def __init__(self, controller: Any, namespace: str, group_id: str, request_timeout_ms: int) -> None:
        self.group_id = group_id
        self._controller = controller
        self._namespace = namespace
        self._timeout_s = request_timeout_ms / 1000
        self._handle = None

    def handle(self):
        if self._handle is None:
            count = offsets_topic_partitions(self._controller)
            self._handle = coordinator_handle(self._namespace, coordinator_index(self.group_id, count))
        return self._handle

    def call(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """``coordinator.method(group_id, *args)``, retrying retriable errors."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self._timeout_s)
        while True:
            try:
                return rpc.get(getattr(self.handle(), method).remote(self.group_id, *args),
                               timeout_s=max(0.1, deadline - time.monotonic()))
            except RafkaError as error:
                if not error.retriable or time.monotonic() + RETRY_BACKOFF_S > deadline:
                    raise
                self.forget()
            time.sleep(RETRY_BACKOFF_S)

    def forget(self) -> None:
        """Look the coordinator up again on the next call (it may have restarted)."""
        self._handle = None

    def send(self, method: str, *args: Any):
        """``coordinator.method(group_id, *args)`` without waiting: the object ref."""
        return getattr(self.handle(), method).remote(self.group_id, *args)


class GroupMembership:
    """Membership of one consumer in its group (see the module docstring)."""

    def __init__(self, coordinator: CoordinatorClient, config: Any) -> None:
        self.coordinator = coordinator
        self.config = config
        self.member_id = ""
        self.epoch = 0
        self._fenced_member_id = ""  # fenced by a refused commit: leave before rejoining
        self._topics: list[str] = []
        self._pattern: str | None = None
        self._lock = threading.Lock()
        self._assignment: frozenset[TopicPartition] | None = None  # newest, not yet applied
        self._owned: frozenset[TopicPartition] = frozenset()
        # The epoch of the assignment the consumer applied last (``_owned`` is what it
        # owns as of it), and of the one it is applying (taken, not yet applied).
        self._owned_epoch = 0
        self._taken_epoch = 0
        self._lost = False
        self._error: BaseException | None = None
        self._applied = threading.Event()
        self._resume = threading.Event()
        self._stopping = threading.Event()
        self._last_poll_s = time.monotonic()
        self._thread: threading.Thread | None = None

    # -- called from the consumer's thread ---------------------------------------------

    def subscribe(self, topics: Iterable[str], pattern: str | None) -> None:
        with self._lock:
            self._topics, self._pattern = sorted(topics), pattern
        self._last_poll_s = time.monotonic()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"rafka-heartbeat-{self.coordinator.group_id}",
                                            daemon=True)
            self._thread.start()
        self._applied.set()  # report the new subscription now

    def polled(self) -> None:
        self._last_poll_s = time.monotonic()
        self._resume.set()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def take_update(self) -> tuple[bool, frozenset[TopicPartition]] | None:
        """(lost, assignment) when something changed since the last call, else None."""
        with self._lock:
            if not self._lost and (self._assignment is None or self._assignment == self._owned):
                if self._assignment is not None:
                    # Nothing to apply, and nothing being applied (this is the consumer's
                    # thread): what it owns is as of the newest epoch.
                    self._owned_epoch = self.epoch
                return None
            self._taken_epoch = self.epoch
            lost, self._lost = self._lost, False
            assignment = self._assignment if self._assignment is not None else frozenset()
            if lost:
                self._owned = frozenset()
            return lost, assignment

    def commit_generation(self) -> tuple[str, int]:
        """(member id, epoch) to commit the consumer's partitions under; "" while the
        consumer is between member ids (fenced, rejoining)."""
        with self._lock:
            if self._lost:
                return "", self.epoch
            return self.member_id, self.epoch

    def lost_pending(self) -> bool:
        """Whether the consumer's partitions were lost and it has not dropped them yet."""
        with self._lock:
            return self._lost

    def fence(self, member_id: str, epoch: int | None = None) -> None:
        """A commit made as ``member_id`` (at ``epoch``) was refused by fencing: unless
        that was an older member id or epoch, the consumer's partitions are lost; it
        drops them in its next ``poll()`` and joins again."""
        with self._lock:
            if not member_id or self.member_id != member_id or (epoch is not None and epoch != self.epoch):
                return  # made under an older id or epoch: nothing held now is lost
            self.member_id, self._lost, self._assignment = "", True, frozenset()
            self._fenced_member_id = member_id
        logger.warning("group %r: a commit of member %s was fenced; its partitions are lost, joining again",
                       self.coordinator.group_id, member_id)
        self._applied.set()

    def applied(self, owned: Iterable[TopicPartition]) -> None:
        """The consumer now owns exactly ``owned``: tell the coordinator right away."""
        with self._lock:
            self._owned = frozenset(owned)
            self._owned_epoch = self._taken_epoch
        self._applied.set()

    def close(self, leave: bool) -> None:
        self._stopping.set()
        self._applied.set()
        self._resume.set()
        # Leave first: the heartbeat thread may be in a long poll, which the leave ends.
        if leave and self.member_id:
            try:
                self.coordinator.call("leave", self.member_id, timeout_s=5.0)
            except RafkaError as error:
                logger.warning("group %r: leaving failed (the session timeout will remove this member): %s",
                               self.coordinator.group_id, error)
        if self._thread is not None and leave:
            # (A static member does not wait: its long poll ends by itself, and the
            # thread drops the answer because it is stopping.)
            self._thread.join(timeout=self.config.request_timeout_ms / 1000)
        self.member_id = ""

    # -- the heartbeat thread ----------------------------------------------------------

    def _run(self) -> None:
        config = self.config
        while not self._stopping.is_set():
            if time.monotonic() - self._last_poll_s > config.max_poll_interval_ms / 1000:
                self._leave_for_slow_poll()
                continue
            with self._lock:
                # Between member ids with partitions the consumer has not dropped yet:
                # a new member owns nothing, so do not join before it drops them.
                dropping = not self.member_id and (self._lost or bool(self._owned))
                pending = self._assignment is not None and self._assignment != self._owned
                fenced_member_id, self._fenced_member_id = self._fenced_member_id, ""
            if fenced_member_id:
                self._leave(fenced_member_id)
            if dropping:
                self._applied.wait(min(1.0, config.heartbeat_interval_ms / 1000))
                self._applied.clear()
                continue
            if pending:
                # The consumer has not applied the last assignment yet: heartbeat when it
                # has (or when the interval runs out, to stay alive), without long-polling.
                self._applied.wait(config.heartbeat_interval_ms / 1000)
            self._applied.clear()
            if self._stopping.is_set():
                return
            with self._lock:
                request = {
                    "member_id": self.member_id, "instance_id": config.group_instance_id,
                    "client_id": config.client_id, "topics": self._topics, "pattern": self._pattern,
                    "assignor": config.partition_assignment_strategy,
                    "session_timeout_ms": config.session_timeout_ms,
                    "rebalance_timeout_ms": config.max_poll_interval_ms,
                    # A join claims nothing (module docstring).
                    "owned": sorted(self._owned) if self.member_id else [],
                    # ... as of this epoch: a partition the coordinator revoked meanwhile
                    # stays this member's until it reports a later epoch without it.
                    "owned_epoch": self._owned_epoch if self.member_id else 0,
                    "wait_ms": 0 if pending else config.heartbeat_interval_ms,
                    "group_initial_rebalance_delay_ms": config.group_initial_rebalance_delay_ms,
                    "group_initial_members": config.group_initial_members,
                }
            try:
                response = self.coordinator.call("heartbeat", request,
                                                 timeout_s=request["wait_ms"] / 1000 + config.request_timeout_ms / 1000)
            except UnknownMemberIdError as error:
                if self._stopping.is_set():
                    return  # the answer to our own leave
                with self._lock:
                    if self.member_id != request["member_id"]:
                        continue  # fenced meanwhile (a refused commit): already handled
                    self.member_id, self._lost, self._assignment = "", True, frozenset()
                logger.warning("group %r: %s; dropping its partitions, then joining again",
                               self.coordinator.group_id, error)
                continue
            except FencedInstanceIdError as error:
                self._error = error
                return
            except RafkaError as error:
                # Not retriable by the client's rules (or retried until the timeout): keep
                # trying, the coordinator or its partition may come back; surface it too.
                logger.warning("group %r: heartbeat failed: %s", self.coordinator.group_id, error)
                if not error.retriable:
                    self._error = error
                time.sleep(RETRY_BACKOFF_S)
                continue
            with self._lock:
                if self._stopping.is_set():
                    return
                if self.member_id != request["member_id"]:
                    continue  # fenced while the call was out: the answer is for a member gone
                if response["member_id"] != self.member_id:  # joined: epochs start again
                    self._owned_epoch = self._taken_epoch = 0
                self.member_id, self.epoch = response["member_id"], response["epoch"]
                self._assignment = frozenset(TopicPartition(t, p) for t, p in response["assignment"])

    def _leave_for_slow_poll(self) -> None:
        logger.warning(
            "group %r: poll() was not called for more than max_poll_interval_ms=%d; leaving the group so its "
            "partitions move (the next poll() joins again)", self.coordinator.group_id, self.config.max_poll_interval_ms)
        member_id = self.member_id
        with self._lock:
            self.member_id, self._lost, self._assignment = "", True, frozenset()
        if member_id:
            self._leave(member_id)
        self._resume.clear()
        while not self._stopping.is_set() and time.monotonic() - self._last_poll_s > self.config.max_poll_interval_ms / 1000:
            self._resume.wait(1.0)
            self._resume.clear()

    def _leave(self, member_id: str) -> None:
        try:
            self.coordinator.call("leave", member_id)
        except RafkaError as error:
            logger.warning("group %r: leaving failed (the session timeout will remove member %s): %s",
                           self.coordinator.group_id, member_id, error)
