"""Replication between the replicas of one partition (Kafka's ISR protocol, pushed).

Leader side (``LeaderReplication``): one loop per follower keeps exactly one call in
flight to it — first a ``become_follower`` handshake at the current leader epoch, then
``replicate`` calls carrying the stored frames from the follower's log end offset (so a
lagging or restarted follower catches up by the same path) and the leader's high
watermark. A caught-up follower gets a call only when there is something to tell it:
new frames, or a high watermark it has not been sent (the leader's loop waits on an
event, with a heartbeat every ``IDLE_HEARTBEAT_S``), so an idle partition costs almost
nothing. Frames for the same range are ``ray.put`` once and shared by the followers;
each follower writes its own copy before answering. The answers give each follower's log
end offset, from which the leader advances the high watermark to the minimum over the
in-sync replicas (ISR) and decides ISR changes:

* a follower that has not caught up with the leader's log end offset for
  ``replica_lag_time_max_ms`` leaves the ISR (counted from when it fell behind: a
  follower that holds everything the leader has is caught up, however long ago it last
  answered, as in Kafka). The check runs every ``ISR_CHECK_INTERVAL_S`` only while a
  follower is behind, unhandshaken, or an ISR change is unsettled; while every follower
  holds the leader's whole log it sleeps until an append (or a follower's failure) wakes
  it, so an idle leader has no timer;
* a follower outside the ISR whose log end offset reaches the high watermark rejoins.

ISR changes go through the controller (which persists them, checking the leader epoch and
the partition epoch, the version of the partition's state), and the high watermark is
computed over the *maximal* ISR (KIP-497): the committed ISR plus every member the leader
has asked to add and has no answer for yet. A member being added counts at once, because
the controller may already have it in its ISR (and may elect it) before the answer
arrives; a member being removed keeps counting until the controller confirms. So the ISR
the controller would elect from never holds a replica that misses an acknowledged write.
A request whose outcome is unknown (the call failed) keeps its members counted until the
controller's next answer or pushed state, which is authoritative: any older request still
in transit carries an older partition epoch and will be refused.

Follower side (``truncation_offset``): on a handshake the follower compares its leader
epoch history with the leader's and truncates to where they diverge (KIP-101/KIP-279),
never blindly to its own high watermark.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Callable

import ray

from rafka.actors import names
from rafka.errors import NotLeaderError, RafkaError
from rafka.storage.checkpoint import UNDEFINED_EPOCH, LeaderEpochCache

if TYPE_CHECKING:
    from rafka.actors.replica import PartitionReplica

REPLICA_FETCH_MAX_BYTES = 8 * 1024 * 1024
IDLE_HEARTBEAT_S = 5.0  # an idle, caught-up follower hears from its leader this often
RETRY_BACKOFF_S = 0.2
ISR_CHECK_INTERVAL_S = 0.25
logger = logging.getLogger(__name__)


class FollowerEpochError(RafkaError):
    """The follower has not yet accepted this leader at this epoch: handshake first."""

    retriable = True


def truncation_offset(local: LeaderEpochCache, local_end_offset: int, leader_entries: list[tuple[int, int]],
                      leader_end_offset: int) -> int:
    """Where a follower with history ``local`` must truncate to agree with a leader whose
    history is ``leader_entries`` (KIP-279: the end of the last epoch both share)."""
    latest = local.latest_epoch
    if latest == UNDEFINED_EPOCH or local_end_offset == 0:
        return local_end_offset
    leader = LeaderEpochCache(None, leader_entries)
    epoch, end_offset = leader.end_offset_for(latest, leader_end_offset)
    if epoch == UNDEFINED_EPOCH:
        return 0  # nothing of ours is in the leader's history
    if epoch != latest:
        # The leader never had our latest epoch: keep only what precedes our first
        # epoch after the one we share.
        local_epoch, local_end = local.end_offset_for(epoch, local_end_offset)
        if local_epoch == UNDEFINED_EPOCH:
            # Our history starts after the shared epoch (our log began later, say after
            # truncate_fully_and_start_at): what precedes our first epoch is shared.
            local_end = local.first_start_offset
        end_offset = min(end_offset, local_end)
    return min(end_offset, local_end_offset)


@dataclasses.dataclass
class FollowerState:
    broker_id: int
    log_end_offset: int = -1
    last_caught_up_s: float = 0.0
    handshaken: bool = False
    high_watermark_sent: int = -1  # the last high watermark the follower answered a call with
    log_start_offset: int = 0  # the follower's, as its last answer said
    log_start_sent: int = -1  # the last leader log start offset the follower answered a call with


class LeaderReplication:
    """The leader's view of its followers, for one leader epoch."""

    def __init__(self, replica: "PartitionReplica", epoch: int, replicas: list[int], isr: list[int],
                 lag_time_max_s: float, on_high_watermark: Callable[[], None], partition_epoch: int = 0) -> None:
        self.replica = replica
        self.epoch = epoch
        self.replicas = list(replicas)
        self.isr = set(isr)  # committed: as the controller last confirmed it
        self.partition_epoch = partition_epoch
        # Members asked for (to add) with no answer yet: they count toward the high
        # watermark until an answer or a pushed state settles the ISR (see the docstring).
        self._unconfirmed: set[int] = set()
        self.lag_time_max_s = lag_time_max_s
        self.on_high_watermark = on_high_watermark
        now = time.monotonic()
        self.followers = {b: FollowerState(b, last_caught_up_s=now) for b in replicas if b != replica.broker_id}
        self._tasks: list[asyncio.Task] = []
        self._data = asyncio.Event()
        self._shared_frames: tuple[int, int, ray.ObjectRef] | None = None
        self._isr_change_in_flight = False
        # Wakes the ISR check from its idle sleep (_watch_isr): set on an append, a
        # follower's failure, an ISR request or answer.
        self._isr_check_wake = asyncio.Event()
        self.stopped = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(state)) for state in self.followers.values()]
        self._tasks.append(loop.create_task(self._watch_isr()))

    def stop(self) -> None:
        self.stopped = True
        for task in self._tasks:
            task.cancel()

    def appended(self) -> None:
        """New records in the leader's log: wake the follower loops and the ISR check."""
        self._data.set()
        self._isr_check_wake.set()

    def log_start_moved(self) -> None:
        """The leader's log start offset moved up (DeleteRecords): tell the followers."""
        self._data.set()

    def low_watermark(self) -> int:
        """The lowest log start offset over the leader and its in-sync followers."""
        log = self.replica.log
        return min([log.log_start_offset] + [self.followers[b].log_start_offset for b in self.isr if b in self.followers])

    # -- follower loops ------------------------------------------------------------

    async def _follow(self, state: FollowerState) -> None:
        replica = self.replica
        name = names.replica(replica.topic, replica.partition, state.broker_id)
        handle = None
        while not self.stopped:
            try:
                if handle is None:
                    handle = ray.get_actor(name, namespace=replica.namespace)
                log = replica.log
                if not state.handshaken:
                    state.log_end_offset = await handle.become_follower.remote(
                        self.epoch, replica.broker_id, log.leader_epochs.entries(), log.log_end_offset,
                        log.log_start_offset)
                    state.handshaken = True
                    state.high_watermark_sent = state.log_start_sent = -1  # a new follower process knows none of it
                    self._progress(state, log.log_end_offset)
                    continue
                leader_end = log.log_end_offset
                frames = None
                if state.log_end_offset < leader_end:
                    frames = self._frames_from(state.log_end_offset)
                elif state.high_watermark_sent >= log.high_watermark and state.log_start_sent >= log.log_start_offset:
                    # Caught up and told the high watermark: nothing to send until an
                    # append or a high watermark move wakes us (no polling; the idle
                    # heartbeat only re-checks that the follower is there).
                    self._data.clear()
                    try:
                        await asyncio.wait_for(self._data.wait(), IDLE_HEARTBEAT_S)
                        continue
                    except asyncio.TimeoutError:
                        pass
                high_watermark, log_start = log.high_watermark, log.log_start_offset
                state.log_end_offset, state.log_start_offset = await handle.replicate.remote(
                    frames, self.epoch, replica.broker_id, high_watermark, log_start)
                state.high_watermark_sent, state.log_start_sent = high_watermark, log_start
                self._progress(state, leader_end)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a follower's trouble must not stop the leader
                cause = getattr(error, "cause", error)
                if isinstance(cause, FollowerEpochError):
                    state.handshaken = False
                    continue
                if isinstance(cause, NotLeaderError):
                    # The follower knows a newer epoch: this leader is stale.
                    logger.warning("%s: follower %s fenced leader epoch %s", replica.describe(), state.broker_id, self.epoch)
                    self.stopped = True
                    return
                handle = None
                state.handshaken = False
                self._isr_check_wake.set()  # it may lag from now on: the check must run
                await asyncio.sleep(RETRY_BACKOFF_S)

    def _frames_from(self, offset: int) -> ray.ObjectRef | bytes:
        shared = self._shared_frames
        if shared is not None and shared[0] == offset:
            return shared[2]
        buffer, next_offset = self.replica.log.read_frames(offset, max_bytes=REPLICA_FETCH_MAX_BYTES)
        # Put once, send the reference to every follower at the same offset.
        ref = ray.put(buffer.to_pybytes())
        self._shared_frames = (offset, next_offset, ref)
        return ref

    def _progress(self, state: FollowerState, leader_end_at_send: int) -> None:
        if state.log_end_offset >= leader_end_at_send:
            state.last_caught_up_s = time.monotonic()
        self.update_high_watermark()
        # Rejoin once caught up to the high watermark and into this leader's epoch.
        log = self.replica.log
        epoch_start = dict(log.leader_epochs.entries()).get(self.epoch, log.log_end_offset)
        if state.broker_id not in self.isr and state.log_end_offset >= max(log.high_watermark, epoch_start):
            self._request_isr(self.isr | {state.broker_id})

    # -- high watermark and ISR ------------------------------------------------------

    @property
    def maximal_isr(self) -> set[int]:
        """The committed ISR plus the members whose addition is unconfirmed (KIP-497)."""
        return self.isr | self._unconfirmed

    def adopt(self, isr: set[int], partition_epoch: int) -> bool:
        """Take the controller's word on the ISR (an answer or a pushed state); False if
        it is older than what this leader already knows."""
        if partition_epoch < self.partition_epoch:
            return False
        self.replica.metrics.isr_changed(self.isr, isr)
        self.isr, self.partition_epoch, self._unconfirmed = set(isr), partition_epoch, set()
        return True

    def update_high_watermark(self) -> None:
        log = self.replica.log
        ends = [log.log_end_offset] + [
            self.followers[b].log_end_offset for b in self.maximal_isr if b in self.followers
        ]
        high_watermark = min(ends)
        if high_watermark > log.high_watermark:
            log.set_high_watermark(high_watermark)
            self.on_high_watermark()
            self._data.set()  # the followers learn the new high watermark now

    async def _watch_isr(self) -> None:
        while not self.stopped:
            await asyncio.sleep(ISR_CHECK_INTERVAL_S)
            self._check_isr(time.monotonic())
            leader_end = self.replica.log.log_end_offset
            if self._quiet(leader_end):
                # Nothing can start lagging before an append or a follower's failure:
                # sleep until one wakes us, then count every follower caught up until
                # that moment (they held the leader's whole log all along).
                self._isr_check_wake.clear()
                await self._isr_check_wake.wait()
                now = time.monotonic()
                for state in self.followers.values():
                    if state.log_end_offset >= leader_end:
                        state.last_caught_up_s = now

    def _quiet(self, leader_end: int) -> bool:
        """True when no follower can be lagging and no ISR change is unsettled."""
        return (not self._unconfirmed and not self._isr_change_in_flight
                and all(state.handshaken and state.log_end_offset >= leader_end for state in self.followers.values()))

    def _check_isr(self, now: float) -> None:
        leader_end = self.replica.log.log_end_offset
        for state in self.followers.values():
            # Caught up as of now (nothing was appended that it lacks): it lags only
            # once it has not caught up for lag_time_max_s after falling behind
            # (Kafka's rule), however long the partition was idle before.
            if state.handshaken and state.log_end_offset >= leader_end:
                state.last_caught_up_s = now
        lagging = {b for b in self.maximal_isr if b in self.followers
                   and now - self.followers[b].last_caught_up_s > self.lag_time_max_s}
        if lagging:
            self._request_isr(self.isr - lagging)
        elif self._unconfirmed:
            self._request_isr(self.isr | self._unconfirmed)  # retry a request that failed

    def _request_isr(self, isr: set[int]) -> None:
        # The same ISR again is asked for only to settle unconfirmed members.
        if self._isr_change_in_flight or self.stopped or (isr == self.isr and not self._unconfirmed - isr):
            return
        self._isr_change_in_flight = True
        self._unconfirmed |= isr - self.isr  # counted from now on, before the controller answers
        asyncio.get_running_loop().create_task(self._alter_isr(isr))

    async def _alter_isr(self, isr: set[int]) -> None:
        replica = self.replica
        try:
            controller = ray.get_actor(names.CONTROLLER, namespace=replica.namespace)
            answer = await controller.alter_isr.remote(replica.topic, replica.partition, replica.broker_id,
                                                       self.epoch, sorted(isr), self.partition_epoch)
            # None: this leader was deposed; its unconfirmed members stay counted.
            if answer is not None and not self.stopped and self.adopt(set(answer["isr"]), answer["partition_epoch"]):
                if not answer["accepted"]:
                    logger.info("%s: ISR change to %s refused (based on an old partition state); ISR is %s",
                                replica.describe(), sorted(isr), answer["isr"])
                self.update_high_watermark()
                self.on_high_watermark()  # acks=all waiters re-check the ISR size
        except Exception as error:  # noqa: BLE001 - retried on the next check; unconfirmed members stay counted
            logger.warning("%s: ISR change to %s failed: %r", replica.describe(), sorted(isr), error)
        finally:
            self._isr_change_in_flight = False
            self._isr_check_wake.set()
