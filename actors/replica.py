"""PartitionReplica: one replica of one partition, owning one ``storage.Log``.

Roles, set by the controller (``become_leader``, ``set_leader``) and by the leader's
handshake (``become_follower``), always with a leader epoch that only grows:

* **leader** — appends produced batches (assigning offsets), replicates them to the
  followers (``replication.LeaderReplication``), advances the high watermark to the
  minimum log end offset of the in-sync replicas, answers acks=all produces once the high
  watermark passes them, and serves consumer fetches and offset lookups below it;
* **follower** — appends what its leader sends (``replicate``), after truncating to
  where its history and the leader's diverge; it serves no clients (``NotLeaderError``);
* **unknown** — after Ray restarted the actor, or when its log was not closed cleanly,
  until the controller says which.

Unclean restarts (KIP-966's concern): a log that was not closed (``Log.last_recovery
.clean_shutdown`` False: the process was killed or its machine lost power) may lack
records it had acknowledged. Such a replica ignores the state it was created with and
takes no role from the controller's pushes until it has reported itself through
``Controller.replica_restarted(..., clean=False)``: the controller then takes it out of
the ISR and, if it led, elects another in-sync replica at a new epoch, so a follower that
holds those records never truncates them to the shorter log. Only when no other in-sync
replica is alive does it lead again (at a new epoch; the controller logs the risk).

Requests carry the leader epoch the sender believes in; a stale one is refused, which
fences a deposed leader.

Concurrency: the actor is async (a long-polling fetch never blocks a produce) and runs
every coroutine on one event-loop thread. Log calls are synchronous and never split by an
``await``, so offset assignment is atomic: the event loop is the per-partition lock.
Order within a producer comes from its sequence numbers (``producer_state``).

Topic identity (KIP-516, docs/topic-ids.md): the replica's directory holds
``partition.metadata`` with the id of the topic it belongs to. A replica given another id
(the topic was deleted while this broker was down, then created again under the same name)
never reads that data: it moves the directory aside as ``<dir>.stray-<old id>`` and
starts empty; the broker removes stray and deleted data when the controller names the ids
it deleted.

Metrics (``metrics.PartitionMetrics``): produce and fetch add to local counters and
observe a latency; the maintenance loop publishes them about once a second while there
is traffic, and wakes only every ``MAINTENANCE_INTERVAL_S`` while there is none.

Errors raised here are ``rafka`` errors; the client unwraps them from Ray's wrapper.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import time
import warnings

import pyarrow as pa
import ray

from rafka.actors import names
from rafka.actors.metrics import PartitionMetrics
from rafka.actors.process import tune_actor_process
from rafka.actors.producer_state import ProducerStates
from rafka.actors.replication import FollowerEpochError, LeaderReplication, truncation_offset
from rafka.errors import (
    InvalidConfigError,
    LeaderNotAvailableError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderError,
    OffsetOutOfRangeError,
    RequestTimeoutError,
    StaleControllerEpochError,
    TopicAuthorizationError,
)
from rafka.storage import Log, LogConfig
from rafka.storage.batch import NO_PRODUCER_ID, check_frame, decode_stream, encode_stream
from rafka.storage.checkpoint import write_atomically

CONFIG_FILE = "topic-config.json"
PARTITION_METADATA_FILE = "partition.metadata"
STRAY_SUFFIX = ".stray-"
MAINTENANCE_INTERVAL_S = 5.0
METRICS_FLUSH_INTERVAL_S = 1.0
EARLIEST = -2
LATEST = -1
LEADER, FOLLOWER, UNKNOWN = "leader", "follower", "unknown"
ACKS = (0, 1, -1)  # a produce's acks: after the leader's append (0, 1) or the ISR's (-1)
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FetchResponse:
    """One fetch: the records as an Arrow IPC stream, and the partition's offsets."""

    records: bytes | None
    record_count: int
    next_offset: int
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


class PartitionReplica:
    def __init__(self, topic: str, partition: int, broker_id: int, directory: str, config: dict[str, str],
                 state: dict, namespace: str, replica_lag_time_max_ms: int = 30_000,
                 sequence_wait_s: float = 30.0, topic_id: str | None = None) -> None:
        tune_actor_process()
        self.topic, self.partition, self.broker_id = topic, partition, broker_id
        self.directory = directory
        self.namespace = namespace
        self.lag_time_max_s = replica_lag_time_max_ms / 1000
        self.topic_id = claim_directory(directory, topic_id, self.describe())
        # After a restart by Ray the constructor arguments are the original ones; the
        # config on disk is the latest the controller sent.
        stored = _read_config(directory)
        config = stored if stored is not None else config
        _write_config(directory, config)
        self.log = Log(directory, LogConfig.from_dict(config))
        self.producers = ProducerStates(self.describe(), sequence_wait_s, self.log.config.producer_id_expiration_ms)
        self.producers.rebuild(self.log)
        self.role, self.leader_epoch, self.leader_id = UNKNOWN, -1, -1
        # The highest controller epoch seen (docs/controller-quorum.md): a state pushed
        # by an older (deposed) controller is refused.
        self.controller_epoch = -1
        self.replication: LeaderReplication | None = None
        self._appended = asyncio.Event()
        self._high_watermark_moved = asyncio.Event()
        self._background: asyncio.Task | None = None
        self._handshaken_epoch = -1
        self.metrics = PartitionMetrics(topic, partition, broker_id)
        with warnings.catch_warnings():  # Ray warns about its own use of a deprecated API here
            warnings.simplefilter("ignore")
            reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        # A restarted actor's constructor state is stale, and a log not closed cleanly may
        # have lost acknowledged records: either way it reports to the controller and takes
        # no role before its answer (module docstring).
        self._clean_start = self.log.last_recovery.clean_shutdown and not reconstructed
        self._report_pending = not self._clean_start
        self._initial_state = state if self._clean_start else None
        if not self.log.last_recovery.clean_shutdown:
            logger.warning("%s: log was not closed cleanly (log end offset %s after recovery, %s bytes cut); "
                           "reporting to the controller before taking a role", self.describe(),
                           self.log.log_end_offset, self.log.last_recovery.bytes_dropped)

    def describe(self) -> str:
        return f"{self.topic}-{self.partition}@broker-{self.broker_id}"

    async def _ensure_started(self) -> None:
        if self._background is not None:
            return
        self._background = asyncio.get_running_loop().create_task(self._maintain())
        if self._initial_state is not None:
            await self.apply_state(self._initial_state)
        else:
            asyncio.get_running_loop().create_task(self._ask_controller())

    async def _ask_controller(self) -> None:
        """After a restart or an unclean shutdown: report it, and take the role the
        controller answers with (it is at least as new as any push refused meanwhile)."""
        while self._report_pending:
            try:
                controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
                state = await controller.replica_restarted.remote(self.topic, self.partition, self.broker_id,
                                                                  self.log.last_recovery.clean_shutdown)
                self._report_pending = False
                if state is not None:
                    await self.apply_state(state)
                return
            except Exception as error:  # noqa: BLE001 - the controller may be restarting too
                logger.warning("%s: asking the controller for its role failed: %r", self.describe(), error)
                await asyncio.sleep(0.5)

    async def watch(self) -> None:
        """Never returns while the replica lives: the broker keeps one call pending so that
        it learns of the actor's death (the call fails) at once."""
        await asyncio.Event().wait()

    async def ready(self) -> dict:
        await self._ensure_started()
        return self.status()

    def status(self) -> dict:
        return {
            "topic": self.topic, "topic_id": self.topic_id, "partition": self.partition, "broker_id": self.broker_id,
            "role": self.role, "leader_epoch": self.leader_epoch, "leader_id": self.leader_id,
            "isr": sorted(self.replication.isr) if self.replication else None,
            "log_start_offset": self.log.log_start_offset, "log_end_offset": self.log.log_end_offset,
            "high_watermark": self.log.high_watermark, "size_bytes": self.log.size_bytes,
            "segments": self.log.segment_count, "recovery": dataclasses.asdict(self.log.last_recovery),
        }

    # -- roles ---------------------------------------------------------------------

    async def apply_state(self, state: dict) -> None:
        """Take the role the controller assigned: {leader, leader_epoch, replicas, isr,
        partition_epoch, controller_epoch}. Raises StaleControllerEpochError, changing
        nothing, when the controller epoch is older than one seen before."""
        controller_epoch = state.get("controller_epoch")
        if controller_epoch is not None:
            if controller_epoch < self.controller_epoch:
                raise StaleControllerEpochError(
                    f"{self.describe()}: state from controller epoch {controller_epoch} refused; epoch "
                    f"{self.controller_epoch} is newer (that controller was deposed)")
            self.controller_epoch = controller_epoch
        if self._report_pending:
            # Refused, not dropped: the controller's sender retries it after our report.
            raise LeaderNotAvailableError(f"{self.describe()} restarted and has not reported to the controller yet")
        if state["leader_epoch"] < self.leader_epoch:
            return
        if state["leader"] == self.broker_id:
            await self.become_leader(state["leader_epoch"], state["replicas"], state["isr"],
                                     state.get("partition_epoch", 0))
        else:
            await self.set_leader(state["leader_epoch"], state["leader"])

    async def become_leader(self, epoch: int, replicas: list[int], isr: list[int], partition_epoch: int = 0) -> None:
        if epoch < self.leader_epoch:
            return
        if epoch == self.leader_epoch and self.role == LEADER and self.replication is not None:
            # The controller changed the ISR (it removed a dead broker): adopt it.
            if self.replication.adopt(set(isr) | {self.broker_id}, partition_epoch):
                self.replication.update_high_watermark()
                self._signal_high_watermark()
            return
        self._stop_leading()
        self.role, self.leader_epoch, self.leader_id = LEADER, epoch, self.broker_id
        # A new epoch starts at the current log end; followers truncate against this.
        self.log.leader_epochs.assign(epoch, self.log.log_end_offset)
        self.producers.rebuild(self.log)
        self.replication = LeaderReplication(self, epoch, replicas, isr, self.lag_time_max_s, self._signal_high_watermark,
                                             partition_epoch)
        self.replication.start()
        self.replication.update_high_watermark()
        logger.info("%s: leader at epoch %s, ISR %s", self.describe(), epoch, isr)

    async def set_leader(self, epoch: int, leader_id: int) -> None:
        """The controller's word that ``leader_id`` leads at ``epoch``: stop serving
        clients and wait for the leader's handshake."""
        if epoch < self.leader_epoch or (epoch == self.leader_epoch and self.role == FOLLOWER):
            return
        self._stop_leading()
        self.role, self.leader_epoch, self.leader_id = FOLLOWER, epoch, leader_id
        self._handshaken_epoch = -1

    async def become_follower(self, epoch: int, leader_id: int, leader_epochs: list, leader_end_offset: int,
                              leader_start_offset: int) -> int:
        """The leader's handshake: truncate to where our histories diverge (KIP-101),
        follow ``leader_id`` at ``epoch``, and return our log end offset."""
        await self._ensure_started()
        if epoch < self.leader_epoch:
            raise NotLeaderError(f"{self.describe()} knows leader epoch {self.leader_epoch}; {epoch} is stale")
        self._stop_leading()
        self.role, self.leader_epoch, self.leader_id = FOLLOWER, epoch, leader_id
        target = truncation_offset(self.log.leader_epochs, self.log.log_end_offset, leader_epochs, leader_end_offset)
        if target < self.log.log_end_offset:
            logger.warning("%s: truncating from %s to %s for leader %s epoch %s", self.describe(),
                           self.log.log_end_offset, target, leader_id, epoch)
            self.log.truncate_to(target)
        if self.log.log_end_offset < leader_start_offset or self.log.log_start_offset > leader_end_offset:
            self.log.truncate_fully_and_start_at(leader_start_offset)
        self._handshaken_epoch = epoch
        return self.log.log_end_offset

    async def replicate(self, frames, epoch: int, leader_id: int, leader_high_watermark: int,
                        leader_log_start_offset: int = 0) -> tuple[int, int]:
        """Append the leader's frames (bytes, or an object ref to them, resolved by Ray),
        take its high watermark, and move our log start offset up to the leader's (its
        DeleteRecords; never past our own high watermark). Return our log end offset and
        log start offset."""
        if epoch < self.leader_epoch:
            raise NotLeaderError(f"{self.describe()} knows leader epoch {self.leader_epoch}; {epoch} is stale")
        if self.role != FOLLOWER or epoch != self.leader_epoch or getattr(self, "_handshaken_epoch", -1) != epoch:
            raise FollowerEpochError(f"{self.describe()} has not accepted leader {leader_id} at epoch {epoch}")
        if frames:
            self._append_new_frames(frames)
        self.log.set_high_watermark(min(leader_high_watermark, self.log.log_end_offset))
        start = min(leader_log_start_offset, self.log.high_watermark)
        if start > self.log.log_start_offset:
            self.log.delete_records_before(start)
        return self.log.log_end_offset, self.log.log_start_offset

    def _append_new_frames(self, frames: bytes) -> None:
        # A resend of frames we already hold (the answer to the last call was lost) is
        # skipped up to our log end offset.
        buffer = pa.py_buffer(frames)
        position, end_offset = 0, self.log.log_end_offset
        while position < buffer.size:
            header, reason = check_frame(buffer, position, buffer.size, verify_crc=False)
            if header is None or header.next_offset > end_offset:
                break
            position += header.frame_bytes
        if position < buffer.size:
            self.log.append_frames(buffer.slice(position))

    def _stop_leading(self) -> None:
        if self.replication is not None:
            self.replication.stop()
            self.replication = None

    def _signal_high_watermark(self) -> None:
        self._high_watermark_moved.set()
        self._high_watermark_moved = asyncio.Event()
        self._appended.set()
        self._appended = asyncio.Event()

    # -- produce -------------------------------------------------------------------

    async def produce(self, payload: bytes, codec: str = "uncompressed", leader_epoch: int = -1,
                      producer_id: int = NO_PRODUCER_ID, producer_epoch: int = -1, base_sequence: int = -1,
                      acks: int = 1, timeout_ms: int = 30_000, internal: bool = False) -> tuple[int, int]:
        """Append the batch in ``payload`` (an IPC stream from the producer); return
        (base offset, log append time or -1) once ``acks`` are satisfied: 0 or 1 after
        the leader's append, -1 ("all") once every in-sync replica has it; any other
        ``acks`` is refused (``InvalidConfigError``). Every batch of the payload is
        validated before any is appended (all or nothing).

        An internal topic (``__...`` or ``rafka.internal=true``) takes a produce only
        with ``internal=True``, which rafka's own writers pass and no client API does
        (a flag, not a secret: members of the Ray cluster are trusted; docs/security.md)."""
        started_s = time.perf_counter()
        if acks not in ACKS or isinstance(acks, bool):
            # Before anything is appended: any other value (2, "all") was taken as acks=1,
            # answering before the followers had the records a caller meant to wait for.
            raise InvalidConfigError(f"{self.describe()}: acks must be 0, 1 or -1 (all), got {acks!r}")
        if internal is not True and (self.topic.startswith("__") or self.log.config.internal):
            raise TopicAuthorizationError(
                f"topic {self.topic!r} is internal: only rafka's own actors write to it, a client produce is refused")
        await self._ensure_started()
        self._check_leader(leader_epoch)
        if acks == -1:
            self._check_enough_replicas()
        record_count = 0  # stays 0 for an idempotent retry of records already stored
        if producer_id == NO_PRODUCER_ID:
            batches = decode_stream(payload)
            record_count = sum(batch.num_rows for batch in batches)
            result = self._append(batches, codec, producer_id, producer_epoch, base_sequence)
            end_offset = self.log.log_end_offset
        else:
            duplicate = await self.producers.wait_for_turn(producer_id, producer_epoch, base_sequence)
            self._check_leader(leader_epoch)  # leadership may have moved while waiting
            end_offset = self.log.log_end_offset  # for a duplicate: everything up to now
            if duplicate is not None:
                result = duplicate
            else:
                batches = decode_stream(payload)
                record_count = sum(batch.num_rows for batch in batches)
                try:
                    result = self._append(batches, codec, producer_id, producer_epoch, base_sequence)
                    end_offset = self.log.log_end_offset
                except Exception:
                    # Rejected for good: later sequences must not wait on this one.
                    self.producers.record(producer_id, producer_epoch, base_sequence, record_count, -1, -1)
                    raise
                finally:
                    await self.producers.notify()
                self.producers.record(producer_id, producer_epoch, base_sequence, record_count, *result)
        if acks == -1:
            await self._wait_for_replication(end_offset, leader_epoch, timeout_ms)
        self.metrics.produced(record_count, len(payload) if record_count else 0, time.perf_counter() - started_s, acks)
        return result

    def _append(self, batches, codec, producer_id, producer_epoch, base_sequence) -> tuple[int, int]:
        first_offset, append_time = -1, -1
        for info in self.log.append_many(batches, leader_epoch=self.leader_epoch, producer_id=producer_id,
                                         producer_epoch=producer_epoch, base_sequence=base_sequence,
                                         producer_codec=codec):
            if first_offset < 0:
                first_offset, append_time = info.first_offset, info.log_append_time_ms
        if self.replication is not None:
            self.replication.appended()
            self.replication.update_high_watermark()
        return first_offset, append_time

    async def _wait_for_replication(self, target: int, leader_epoch: int, timeout_ms: int) -> None:
        """Wait until the high watermark reaches ``target`` (the end of the batch)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while self.log.high_watermark < target:
            self._check_leader(leader_epoch)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeoutError(
                    f"{self.describe()}: not replicated to the ISR within {timeout_ms} ms (high watermark "
                    f"{self.log.high_watermark}, needed {target})"
                )
            moved = self._high_watermark_moved
            try:
                await asyncio.wait_for(moved.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        self._check_leader(leader_epoch)
        self._check_enough_replicas(after_append=True)

    def _check_enough_replicas(self, after_append: bool = False) -> None:
        isr = self.replication.isr if self.replication else {self.broker_id}
        if len(isr) < self.log.config.min_insync_replicas:
            # After the append the batch may stay in the log: a distinct error, so the
            # producer knows not to re-send it under a new sequence.
            raise (NotEnoughReplicasAfterAppendError if after_append else NotEnoughReplicasError)(
                f"{self.describe()}: in-sync replicas {sorted(isr)} are fewer than min.insync.replicas="
                f"{self.log.config.min_insync_replicas}" + (" (after the append)" if after_append else "")
            )

    def _check_leader(self, leader_epoch: int) -> None:
        if self.role != LEADER or (leader_epoch >= 0 and leader_epoch != self.leader_epoch):
            raise NotLeaderError(
                f"broker {self.broker_id} is not the leader of {self.topic}-{self.partition} at epoch "
                f"{leader_epoch} (it is {self.role} at epoch {self.leader_epoch})"
            )

    # -- fetch ---------------------------------------------------------------------

    async def fetch(self, offset: int, max_bytes: int = 1024 * 1024, max_wait_ms: int = 500,
                    min_bytes: int = 1) -> FetchResponse:
        """Records from ``offset`` below the high watermark: waits up to ``max_wait_ms``
        for at least ``min_bytes`` of them. ``OffsetOutOfRangeError`` if ``offset`` is
        outside [log start, log end]."""
        started_s = time.perf_counter()
        await self._ensure_started()
        self._check_leader(-1)
        deadline = time.monotonic() + max_wait_ms / 1000
        waited_s = 0.0  # the long poll, left out of the fetch latency metric
        while True:
            appended = self._appended
            result = self.log.read(offset, max_bytes=max_bytes, max_offset=self.log.high_watermark)
            size = sum(header.frame_bytes for header in result.headers)
            remaining = deadline - time.monotonic()
            if size >= min_bytes or remaining <= 0:
                break
            wait_started_s = time.perf_counter()
            try:
                await asyncio.wait_for(appended.wait(), remaining)
            except asyncio.TimeoutError:
                pass
            waited_s += time.perf_counter() - wait_started_s
            self._check_leader(-1)
        records = encode_stream(result.batches) if result.batches else None
        self.metrics.fetched(result.record_count, len(records) if records is not None else 0,
                             time.perf_counter() - started_s - waited_s)
        return FetchResponse(
            records=records,
            record_count=result.record_count,
            next_offset=result.next_offset,
            high_watermark=self.log.high_watermark,
            log_start_offset=self.log.log_start_offset,
            log_end_offset=self.log.log_end_offset,
        )

    async def list_offset(self, timestamp_ms: int) -> tuple[int, int]:
        """(offset, timestamp) for ``EARLIEST`` (-2), ``LATEST`` (-1), or the first record
        at or after ``timestamp_ms``; (-1, -1) when no record is that recent."""
        await self._ensure_started()
        self._check_leader(-1)
        if timestamp_ms == EARLIEST:
            return self.log.log_start_offset, -1
        if timestamp_ms == LATEST:
            return self.log.high_watermark, -1
        found = self.log.offsets_for_times(timestamp_ms)
        if found is None or found[0] >= self.log.high_watermark:
            return -1, -1
        return found

    async def end_offset_for_epoch(self, leader_epoch: int, current_leader_epoch: int = -1) -> tuple[int, int]:
        """(the largest epoch <= ``leader_epoch`` in this leader's epoch history, the
        offset where it ended; the log end offset for the latest epoch), or (-1, -1)
        when ``leader_epoch`` predates the history: Kafka's OffsetForLeaderEpoch, with
        which a consumer detects a log truncated under its position (KIP-320). Read
        only. ``NotLeaderError`` unless this replica leads at ``current_leader_epoch``
        (-1: at any epoch)."""
        await self._ensure_started()
        self._check_leader(current_leader_epoch)
        return self.log.leader_epochs.end_offset_for(leader_epoch, self.log.log_end_offset)

    # -- administration --------------------------------------------------------------

    async def delete_records(self, offset: int, leader_epoch: int = -1, timeout_ms: int = 30_000) -> int:
        """Kafka's DeleteRecords on the leader: move the log start offset up to ``offset``
        (-1: the high watermark), deleting the records before it, on this replica and
        then on every in-sync follower (the offset travels with replication). Returns the
        low watermark, the lowest log start offset over the leader and its in-sync
        followers, once it reaches ``offset`` (or ``RequestTimeoutError`` after
        ``timeout_ms``). ``OffsetOutOfRangeError`` for an offset past the high
        watermark: records not yet replicated are never deleted."""
        await self._ensure_started()
        self._check_leader(leader_epoch)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < -1:
            raise OffsetOutOfRangeError(f"{self.describe()}: cannot delete records before offset {offset!r}")
        if offset == -1:
            offset = self.log.high_watermark
        self.log.delete_records_before(offset)
        if self.replication is not None:
            self.replication.log_start_moved()
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            replication = self.replication
            low = replication.low_watermark() if replication is not None else self.log.log_start_offset
            if low >= offset:
                return low
            self._check_leader(leader_epoch)
            if time.monotonic() > deadline:
                raise RequestTimeoutError(f"{self.describe()}: the in-sync replicas did not delete the records "
                                          f"before {offset} within {timeout_ms} ms (low watermark {low})")
            await asyncio.sleep(0.02)

    async def update_config(self, config: dict[str, str]) -> None:
        self.log.update_config(LogConfig.from_dict(config))
        self.producers.producer_id_expiration_ms = self.log.config.producer_id_expiration_ms
        _write_config(self.directory, config)

    async def close(self, delete: bool = False) -> None:
        self._flush_metrics()
        self._stop_leading()
        if self._background is not None:
            self._background.cancel()
        if not delete:
            try:
                self.producers.snapshot_at_close(self.log)
            except Exception as error:  # noqa: BLE001 - without it the next open replays more, nothing worse
                logger.warning("%s: producer-state snapshot at close failed: %r", self.describe(), error)
        self.log.close()
        if delete:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def _maintain(self) -> None:
        """Metrics about every second while the partition has traffic; retention,
        compaction and time-based flush every few seconds. An idle replica wakes only
        every ``MAINTENANCE_INTERVAL_S`` (its gauge is re-set then: Ray drops a gauge
        series not set for two of its report intervals, 10 s each by default)."""
        log_maintenance_due_s = time.monotonic() + MAINTENANCE_INTERVAL_S
        busy = True
        while True:
            await asyncio.sleep(METRICS_FLUSH_INTERVAL_S if busy else max(
                METRICS_FLUSH_INTERVAL_S, log_maintenance_due_s - time.monotonic()))
            busy = self._flush_metrics()
            if time.monotonic() < log_maintenance_due_s:
                continue
            log_maintenance_due_s = time.monotonic() + MAINTENANCE_INTERVAL_S
            try:
                self.log.flush_if_due()
                self.log.enforce_retention()
                # The pass reads and rewrites segments in a worker thread; this loop
                # keeps serving produce and fetch meanwhile (see Log.compact_async).
                await self.log.compact_async()
                self.log.checkpoint()
                self.producers.maintain_snapshots(self.log)
            except Exception as error:  # noqa: BLE001 - maintenance must not kill the replica
                logger.error("%s: maintenance failed: %r", self.describe(), error)

    def _flush_metrics(self) -> bool:
        """Publish the metrics; True if the partition had traffic since the last time."""
        replication = self.replication
        under_replicated = (self.role == LEADER and replication is not None
                            and len(replication.isr) < len(replication.replicas))
        try:
            return self.metrics.flush(under_replicated)
        except Exception as error:  # noqa: BLE001 - metrics must never take the replica down
            logger.warning("%s: publishing metrics failed: %r", self.describe(), error)
            return True


def read_topic_id(directory: str) -> str | None:
    """The topic id in ``directory``'s partition.metadata; None if it has none."""
    try:
        with open(os.path.join(directory, PARTITION_METADATA_FILE)) as handle:
            return json.load(handle).get("topic_id")
    except (FileNotFoundError, ValueError, AttributeError):
        return None


def claim_directory(directory: str, topic_id: str | None, describe: str) -> str | None:
    """Make ``directory`` the data of topic ``topic_id``; returns the id it holds.

    Data of another id is moved aside to ``<directory>.stray-<id>`` (never read again;
    the broker deletes it once the controller confirms the delete). A directory without
    partition.metadata (a new one, or one written before topic ids) takes ``topic_id``."""
    stored = read_topic_id(directory)
    if topic_id is not None and stored is not None and stored != topic_id:
        stray = f"{directory}{STRAY_SUFFIX}{stored}"
        logger.warning("%s: %s holds data of topic id %s, a deleted incarnation of this topic (this one is %s); "
                       "moved aside to %s", describe, directory, stored, topic_id, stray)
        shutil.rmtree(stray, ignore_errors=True)
        os.rename(directory, stray)
        stored = None
    os.makedirs(directory, exist_ok=True)
    if stored is None and topic_id is not None:
        write_atomically(os.path.join(directory, PARTITION_METADATA_FILE), json.dumps({"version": 0, "topic_id": topic_id}))
        stored = topic_id
    return stored


def _read_config(directory: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(directory, CONFIG_FILE)) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def _write_config(directory: str, config: dict[str, str]) -> None:
    write_atomically(os.path.join(directory, CONFIG_FILE), json.dumps(config, sort_keys=True))
