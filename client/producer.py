"""Producer: records in, Arrow batches out, one actor call per batch.

``send()`` validates one record, picks its partition (Kafka's murmur2 of the key, sticky
for null keys) and appends it to that partition's open batch under a lock; it does no
I/O. A sender thread closes batches when they reach ``batch_size`` bytes or have waited
``linger_ms``, builds each one as an Arrow record batch in a single call, and sends it to
the partition's leader replica. Results come back per batch and resolve the futures of
all its records at once.

Guarantees (with ``enable_idempotence=True``, the default):
* Order within a partition is the order of ``send()`` calls, even with ``max_in_flight``
  batches outstanding and retries: every batch carries this producer's id, an epoch and
  a per-partition sequence number (31-bit, wrapping to 0 as Kafka's), and the leader
  appends sequences in order and answers a retried duplicate from memory instead of
  appending it again. The leader remembers 5 batches per producer, so ``max_in_flight``
  may be at most 5 (as Kafka's client requires).
* A batch that fails for good (it expired after ``delivery_timeout_ms``, or was refused)
  leaves a hole in its partition's sequences. The producer then bumps its epoch for that
  partition (Kafka's KIP-360): once the partition's outstanding batches have answered, the
  batches not yet written are numbered again from sequence 0 under the new epoch, which
  the leader accepts, so later sends succeed. A queued batch whose earlier attempt may
  have been written (no answer, or a refusal after the leader's append) is failed then
  instead of re-sent, since under a new epoch the leader could not recognise it. Records
  acknowledged before stay exactly once.

With ``enable_idempotence=False`` batches carry no producer id or sequence and the leader
appends each one it receives: a retry after a lost answer may duplicate records, and
batches in flight together (``max_in_flight`` > 1, any value allowed) may land out of
order, both on a retry and because Ray may run concurrent calls out of order. Use
``max_in_flight=1`` for order without idempotence.

Other guarantees:
* Memory is bounded: records waiting or in flight hold at most ``buffer_memory`` bytes;
  ``send()`` blocks when the buffer is full and raises ``RequestTimeoutError`` after
  ``max_block_ms``.
* Retriable errors (a moved leader, a restarting replica) are retried until
  ``delivery_timeout_ms``; others fail the batch's futures at once.

Not promised: with ``acks=0`` nothing is confirmed (offsets are -1). Callbacks run on the
sender thread and must not block; one that raises is logged (``rafka.client.producer``) and
the other records' callbacks still run.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from time import monotonic, time_ns
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import ray

from rafka.actors.producer_state import RECENT_BATCHES_PER_PRODUCER, add_sequence
from rafka.client import rpc
from rafka.client.partitioner import Partitioner
from rafka.client.records import RecordMetadata
from rafka.config import ConfigDef, ConfigField
from rafka.errors import (
    DuplicateSequenceError,
    InvalidConfigError,
    InvalidProducerEpochError,
    InvalidRecordError,
    LeaderNotAvailableError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderError,
    OutOfOrderSequenceError,
    RafkaError,
    RecordError,
    RecordTooLargeError,
    RequestTimeoutError,
    TopicNotFoundError,
)
from rafka.storage.batch import HEADERS_TYPE, NO_PRODUCER_ID, PRODUCE_SCHEMA, encode_stream

RECORD_OVERHEAD_BYTES = 32  # offset, timestamp, two list offsets and validity bits
ACKS = {0: 0, 1: 1, -1: -1, "0": 0, "1": 1, "all": -1, "-1": -1}
COMPRESSION = {"none": "uncompressed", None: "uncompressed", "lz4": "lz4", "zstd": "zstd"}
logger = logging.getLogger(__name__)
SENDER_IDLE_WAIT_S = 0.05
MAX_PRODUCER_EPOCH = 2**15 - 1  # the batch header's int16; past it the partition gets a new producer id


@dataclasses.dataclass(frozen=True)
class ProducerConfig:
    acks: int = 1
    linger_ms: float = 5
    batch_size: int = 1024 * 1024
    buffer_memory: int = 64 * 1024 * 1024
    max_block_ms: int = 60_000
    max_in_flight: int = 5
    delivery_timeout_ms: int = 120_000
    request_timeout_ms: int = 30_000
    retry_backoff_ms: int = 100
    compression_type: str = "uncompressed"
    max_request_size: int = 8 * 1024 * 1024
    enable_idempotence: bool = True

    @classmethod
    def build(cls, **options: Any) -> "ProducerConfig":
        """The options given, checked (``InvalidConfigError`` naming the bad one), over
        these defaults."""
        values = PRODUCER_OPTIONS.parse_given(options)
        if "acks" in values:
            values["acks"] = ACKS[values["acks"]]
        if "compression_type" in values:
            values["compression_type"] = COMPRESSION[values["compression_type"]]
        idempotent = values.get("enable_idempotence", cls.enable_idempotence)
        max_in_flight = values.get("max_in_flight", cls.max_in_flight)
        if idempotent and max_in_flight > RECENT_BATCHES_PER_PRODUCER:
            raise InvalidConfigError(
                f"max_in_flight={max_in_flight} is more than {RECENT_BATCHES_PER_PRODUCER}, the most an idempotent "
                f"producer may have outstanding per partition (the leader remembers {RECENT_BATCHES_PER_PRODUCER} "
                "batches per producer to recognise retries); lower it, or set enable_idempotence=False"
            )
        return cls(**values)


def _acks_problem(value: Any) -> str | None:
    return None if not isinstance(value, bool) and value in ACKS else "must be 0, 1 or 'all'"


def _compression_problem(value: Any) -> str | None:
    return None if value in COMPRESSION else "must be one of none, lz4, zstd"


PRODUCER_OPTIONS = ConfigDef([
    ConfigField("acks", "any", doc="replicas that must have a record before it is acknowledged: 0, 1 or 'all'",
                validator=_acks_problem),
    ConfigField("linger_ms", "number", doc="how long a partition's batch waits for more records", min=0),
    ConfigField("batch_size", "number", doc="the bytes at which a partition's batch is sent", min=1),
    ConfigField("buffer_memory", "number", doc="bytes of unacknowledged records held before send() blocks", min=1),
    ConfigField("max_block_ms", "number", doc="how long send() blocks on a full buffer or unknown metadata", min=0),
    ConfigField("max_in_flight", "number", doc="batches outstanding per partition (at most 5 when idempotent)",
                min=1),
    ConfigField("delivery_timeout_ms", "number", doc="how long a record may take to be acknowledged, retries "
                "included", min=0),
    ConfigField("request_timeout_ms", "number", doc="how long one produce request may take", min=0),
    ConfigField("retry_backoff_ms", "number", doc="the wait before a batch is sent again", min=0),
    ConfigField("compression_type", "any", doc="none, lz4 or zstd", validator=_compression_problem),
    ConfigField("max_request_size", "number", doc="the largest batch sent in one request", min=0),
    ConfigField("enable_idempotence", "bool", doc="the leader drops a retried batch it already has (KIP-98)"),
], subject="producer option", from_strings=False, strict=True).with_defaults_of(ProducerConfig)


class _Batch:
    """Records for one partition: open (accumulating), then sent, then done."""

    __slots__ = ("topic", "partition", "values", "keys", "timestamps", "headers", "size_bytes", "created_s",
                 "table", "callbacks", "done", "base_offset", "log_append_time", "error", "sequence",
                 "deadline_s", "attempts", "record_count", "sent_s", "producer_id", "producer_epoch",
                 "maybe_appended", "order", "last_error")

    def __init__(self, topic: str, partition: int, created_s: float, table: pa.RecordBatch | None = None) -> None:
        self.topic, self.partition = topic, partition
        self.values: list = []
        self.keys: list = []
        self.timestamps: list = []
        self.headers: list | None = None
        self.size_bytes = 0
        self.created_s = created_s
        self.table = table
        self.callbacks: list | None = None
        self.done = threading.Event()
        self.base_offset = -1
        self.log_append_time = -1
        self.error: BaseException | None = None
        self.sequence = -1
        self.deadline_s = 0.0
        self.attempts = 0
        self.sent_s = 0.0
        self.record_count = 0 if table is None else table.num_rows
        self.producer_id, self.producer_epoch = NO_PRODUCER_ID, -1
        self.maybe_appended = False  # an attempt ended without saying whether it was written
        self.order = -1  # when the batch was first numbered: re-numbering keeps this order
        self.last_error: BaseException | None = None

    def to_arrow(self) -> pa.RecordBatch:
        if self.table is not None:
            return self.table
        count = len(self.values)
        headers = pa.array(self.headers, HEADERS_TYPE) if self.headers is not None else pa.nulls(count, HEADERS_TYPE)
        return pa.RecordBatch.from_arrays(
            [pa.array(np.array(self.timestamps, dtype=np.int64)), pa.array(self.keys, pa.binary()),
             pa.array(self.values, pa.binary()), headers],
            schema=PRODUCE_SCHEMA,
        )


class FutureRecordMetadata:
    """The eventual ``RecordMetadata`` of one sent record."""

    __slots__ = ("_batch", "_index", "_timestamp")

    def __init__(self, batch: _Batch, index: int, timestamp: int) -> None:
        self._batch, self._index, self._timestamp = batch, index, timestamp

    def done(self) -> bool:
        return self._batch.done.is_set()

    def result(self, timeout: float | None = None) -> RecordMetadata:
        batch = self._batch
        if not batch.done.wait(timeout):
            raise RequestTimeoutError(f"record for {batch.topic}-{batch.partition} not acknowledged within {timeout} s")
        if batch.error is not None:
            raise batch.error
        offset = batch.base_offset + self._index if batch.base_offset >= 0 else -1
        timestamp = batch.log_append_time if batch.log_append_time >= 0 else self._timestamp
        return RecordMetadata(batch.topic, batch.partition, offset, timestamp)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._batch.done.wait(timeout)
        return self._batch.error


@dataclasses.dataclass(frozen=True)
class BatchMetadata:
    """Where one Arrow batch of ``send_batch`` landed: offsets [base_offset, base_offset + record_count)."""

    topic: str
    partition: int
    base_offset: int
    record_count: int


class FutureBatchMetadata:
    """The eventual ``BatchMetadata`` list of one ``send_batch`` call."""

    def __init__(self, batches: list[_Batch]) -> None:
        self._batches = batches

    def done(self) -> bool:
        return all(batch.done.is_set() for batch in self._batches)

    def result(self, timeout: float | None = None) -> list[BatchMetadata]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for batch in self._batches:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not batch.done.wait(remaining):
                raise RequestTimeoutError(f"batch for {batch.topic}-{batch.partition} not acknowledged within {timeout} s")
            if batch.error is not None:
                raise batch.error
            out.append(BatchMetadata(batch.topic, batch.partition, batch.base_offset, batch.record_count))
        return out


class Producer:
    def __init__(self, cluster: Any, **options: Any) -> None:
        self.config = ProducerConfig.build(**options)
        # True only through internal_producer(): rafka's own writers of internal topics.
        self._internal_writer = False
        self._metadata = cluster.metadata
        self._controller = cluster.controller
        self._idempotent = self.config.enable_idempotence
        self._producer_id = (rpc.call_with_retries(self._controller.allocate_producer_id) if self._idempotent
                             else NO_PRODUCER_ID)
        # (producer id, epoch) per partition: an epoch bump after a sequence hole is the
        # partition's own business (the leader keeps producer state per partition), so
        # it never stalls the producer's other partitions.
        self._identity: dict[tuple[str, int], tuple[int, int]] = {}
        self._bump_pending: set[tuple[str, int]] = set()
        self._doomed: list[_Batch] = []  # failed at a bump; completed outside the lock
        self._numbered = 0
        self._partitioner = Partitioner()
        self._key_hashes = self._partitioner.key_hashes
        self._batch_size = self.config.batch_size
        self._buffer_memory = self.config.buffer_memory
        self._max_request_size = self.config.max_request_size
        self._partition_counts: dict[str, int] = {}
        self._open: dict[tuple[str, int], _Batch] = {}
        self._ready: collections.deque[_Batch] = collections.deque()
        self._retry: list[tuple[float, _Batch]] = []
        self._next_sequence: dict[tuple[str, int], int] = collections.defaultdict(int)
        self._in_flight: dict[ray.ObjectRef, _Batch] = {}
        self._in_flight_per_partition: dict[tuple[str, int], int] = collections.defaultdict(int)
        self._pending: dict[tuple[str, int], int] = collections.defaultdict(int)  # ready or in flight
        self._buffered_bytes = 0
        self._unfinished = 0  # batches created and not yet done
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        self._closing = False
        self._flush_requested = 0
        self._linger_s = self.config.linger_ms / 1000
        self._sender = threading.Thread(target=self._run_sender, name="rafka-producer-sender", daemon=True)
        self._sender.start()

    # -- sending -------------------------------------------------------------------

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: Iterable[tuple[str, bytes]] | None = None, timestamp_ms: int | None = None,
             partition: int | None = None,
             callback: Callable[[RecordMetadata | None, BaseException | None], None] | None = None) -> FutureRecordMetadata:
        """Queue one record; returns a future of its ``RecordMetadata``."""
        if value is not None and type(value) is not bytes:
            value = _as_bytes("value", value)
        if key is not None and type(key) is not bytes:
            key = _as_bytes("key", key)
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._load_topic(topic)
        if partition is None:
            if key is not None:
                # The partitioner's hash cache, inlined: this line runs once per record.
                positive_hash = self._key_hashes.get(key)
                partition = (positive_hash if positive_hash is not None
                             else self._partitioner.partition(topic, key, count)) % count
            else:
                partition = self._partitioner.partition(topic, None, count)
        elif isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < count:
            raise TopicNotFoundError(f"topic {topic!r} has no partition {partition!r} (it has {count})")
        if timestamp_ms is None:
            timestamp_ms = time_ns() // 1_000_000
        elif isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
            raise TypeError(f"timestamp_ms must be an int (ms since the epoch), got {timestamp_ms!r}")
        size = RECORD_OVERHEAD_BYTES + (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if headers is not None:
            headers = _check_headers(headers)
            size += sum(len(name) + len(data or b"") for name, data in headers)
        if size > self._max_request_size:
            raise RecordTooLargeError(
                f"record of {size} bytes for {topic!r} is over max_request_size={self._max_request_size}"
            )
        with self._lock:
            if self._buffered_bytes + size > self._buffer_memory:
                self._wait_for_space(size)
            tp = (topic, partition)
            batch = self._open.get(tp)
            if batch is None or batch.size_bytes + size > self._batch_size:
                if batch is not None:
                    self._close_batch(tp, batch)
                batch = self._open[tp] = _Batch(topic, partition, monotonic())
                self._unfinished += 1
                if len(self._open) == 1:
                    self._wake.notify()
            index = batch.record_count
            batch.values.append(value)
            batch.keys.append(key)
            batch.timestamps.append(timestamp_ms)
            if headers is not None or batch.headers is not None:
                if batch.headers is None:
                    batch.headers = [None] * index
                batch.headers.append(headers)
            batch.size_bytes += size
            batch.record_count = index + 1
            self._buffered_bytes += size
            if callback is not None:
                if batch.callbacks is None:
                    batch.callbacks = []
                batch.callbacks.append((index, timestamp_ms, callback))
            if batch.size_bytes >= self._batch_size:
                self._close_batch(tp, batch)
        return FutureRecordMetadata(batch, index, timestamp_ms)

    def send_batch(self, topic: str, table: pa.Table | pa.RecordBatch, partition: int | None = None) -> FutureBatchMetadata:
        """Send an Arrow table of records: a ``value`` column (binary), optionally
        ``key`` (binary), ``timestamp`` (int64 ms) and ``headers``. Rows are partitioned
        by key (Kafka's partitioner) or all go to ``partition``; rows without a key go to
        one sticky partition. No per-record Python work unless keys must be hashed."""
        table = _produce_table(table)
        count = self._partition_counts.get(topic) or self._load_topic(topic)
        if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)
                                      or not 0 <= partition < count):
            raise TopicNotFoundError(f"topic {topic!r} has no partition {partition!r} (it has {count})")
        if partition is not None or count == 1:
            parts = [(partition or 0, table)]
        elif table.column("key").null_count == table.num_rows:
            parts = [(self._partitioner.partition(topic, None, count), table)]
            self._partitioner.on_new_batch(topic, count, parts[0][0])
        else:
            partitions = self._partitions_of_keys(topic, table.column("key"), count)
            parts = [(int(p), table.take(pa.array(np.flatnonzero(partitions == p)))) for p in np.unique(partitions)]
        batches = []
        for target, part in parts:
            for chunk in _chunks(part, self.config.max_request_size):
                batches.append(self._enqueue_table(topic, target, chunk))
        return FutureBatchMetadata(batches)

    def _partitions_of_keys(self, topic: str, keys: pa.ChunkedArray, count: int) -> np.ndarray:
        """Kafka's partition for each key, hashing each distinct key once (keyed tables
        repeat keys: 1M rows of 10k keys cost 10k murmur2 calls, not 1M)."""
        encoded = keys.combine_chunks().dictionary_encode()
        per_distinct = [self._partitioner.partition(topic, key, count) for key in encoded.dictionary.to_pylist()]
        per_distinct.append(self._partitioner.partition(topic, None, count))  # rows with a null key
        indices = encoded.indices.fill_null(len(per_distinct) - 1).to_numpy(zero_copy_only=False)
        return np.asarray(per_distinct, dtype=np.int32)[indices]

    def _enqueue_table(self, topic: str, partition: int, table: pa.Table) -> _Batch:
        record_batch = table.combine_chunks().to_batches()[0]
        size = record_batch.nbytes
        with self._lock:
            if self._buffered_bytes + size > self.config.buffer_memory:
                self._wait_for_space(size)
            tp = (topic, partition)
            if tp in self._open:  # keep order with records already accumulating
                self._close_batch(tp, self._open[tp])
            batch = _Batch(topic, partition, time.monotonic(), record_batch)
            batch.size_bytes = size
            self._unfinished += 1
            self._buffered_bytes += size
            self._pending[tp] += 1
            self._ready.append(batch)
            self._wake.notify()
        return batch

    def _close_batch(self, tp: tuple[str, int], batch: _Batch) -> None:
        """Move ``batch`` from open to ready (caller holds the lock)."""
        del self._open[tp]
        self._pending[tp] += 1
        self._ready.append(batch)
        if batch.keys and batch.keys[0] is None:
            self._partitioner.on_new_batch(tp[0], self._partition_counts[tp[0]], tp[1])
        self._wake.notify()

    def _wait_for_space(self, size: int) -> None:
        deadline = time.monotonic() + self.config.max_block_ms / 1000
        if size > self.config.buffer_memory:
            raise RecordTooLargeError(f"{size} bytes is more than buffer_memory={self.config.buffer_memory}")
        while self._buffered_bytes + size > self.config.buffer_memory:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeoutError(
                    f"producer buffer ({self.config.buffer_memory} bytes) stayed full for max_block_ms="
                    f"{self.config.max_block_ms}"
                )
            self._wake.notify()
            self._space.wait(remaining)

    def _load_topic(self, topic: str) -> int:
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, got {topic!r}")
        count = self._metadata.partition_count(topic)
        self._partition_counts[topic] = count
        return count

    def partitions_for(self, topic: str) -> list[int]:
        return list(range(self._load_topic(topic)))

    def flush(self, timeout_s: float | None = None) -> None:
        """Send everything queued and wait until each batch is acknowledged or failed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            for tp, batch in list(self._open.items()):
                self._close_batch(tp, batch)
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise RequestTimeoutError(f"flush did not finish within {timeout_s} s ({self._unfinished} batches left)")
                self._all_done.wait(remaining)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then stop the sender thread. Sending after close raises."""
        if self._closing:
            return
        try:
            self.flush(timeout_s)
        finally:
            with self._lock:
                self._closing = True
                self._wake.notify()
            self._sender.join(timeout=10)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the sender thread ---------------------------------------------------------

    def _run_sender(self) -> None:
        while True:
            to_send = self._collect()
            if to_send is None:
                return
            doomed, self._doomed = self._doomed, []
            for batch in doomed:
                self._fail_unresendable(batch)
            for batch in to_send:
                self._dispatch(batch)
            self._reap()

    def _collect(self) -> list[_Batch] | None:
        """Batches that may be sent now; waits while there is nothing to do."""
        with self._lock:
            while True:
                now = time.monotonic()
                for tp, batch in list(self._open.items()):
                    # A batch that lingered long enough goes out only when its partition
                    # has nothing outstanding; until then it keeps filling. Batches thus
                    # grow with load instead of queueing up as tiny actor calls, which
                    # cost ~0.6 ms of actor time each (measured: at 5,000 records/s this
                    # cut end-to-end p50 from ~40 ms to ~12 ms). Full batches pipeline
                    # up to max_in_flight.
                    if now - batch.created_s >= self._linger_s and self._pending[tp] == 0:
                        self._close_batch(tp, batch)
                if self._retry:
                    due = [batch for at, batch in self._retry if at <= now]
                    self._retry = [(at, batch) for at, batch in self._retry if at > now]
                    for batch in reversed(due):
                        self._ready.appendleft(batch)
                for tp in list(self._bump_pending):
                    if self._in_flight_per_partition[tp] == 0:
                        self._bump_epoch(tp)
                sendable, waiting = [], collections.deque()
                while self._ready:
                    batch = self._ready.popleft()
                    tp = (batch.topic, batch.partition)
                    if tp not in self._bump_pending and self._in_flight_per_partition[tp] < self.config.max_in_flight:
                        self._in_flight_per_partition[tp] += 1
                        sendable.append(batch)
                    else:
                        waiting.append(batch)
                self._ready = waiting
                if sendable or self._in_flight or self._doomed:
                    return sendable
                if self._closing and not self._open and not self._ready and not self._retry:
                    return None
                timeout = SENDER_IDLE_WAIT_S
                if self._open:
                    oldest = min(batch.created_s for batch in self._open.values())
                    timeout = max(0.0, min(timeout, oldest + self._linger_s - now))
                self._wake.wait(timeout)

    def _dispatch(self, batch: _Batch) -> None:
        try:
            if not batch.deadline_s:  # the first attempt
                batch.deadline_s = time.monotonic() + self.config.delivery_timeout_ms / 1000
                arrow = batch.to_arrow()
                batch.table = arrow
                batch.values = batch.keys = batch.timestamps = []
                batch.headers = None
            if self._idempotent and batch.sequence < 0:
                tp = (batch.topic, batch.partition)
                batch.producer_id, batch.producer_epoch = self._identity.get(tp, (self._producer_id, 0))
                batch.sequence = self._next_sequence[tp]
                self._next_sequence[tp] = add_sequence(batch.sequence, batch.record_count)
                if batch.order < 0:
                    batch.order, self._numbered = self._numbered, self._numbered + 1
            payload = encode_stream([batch.table], PRODUCE_SCHEMA, self.config.compression_type)
            leader, epoch = self._metadata.leader(batch.topic, batch.partition)
            ref = leader.produce.remote(payload, self.config.compression_type, epoch, batch.producer_id,
                                        batch.producer_epoch, batch.sequence, self.config.acks,
                                        self.config.request_timeout_ms, self._internal_writer)
        except Exception as error:  # noqa: BLE001 - delivered to the batch's futures
            self._finish_attempt(batch, error, sent=False)
            return
        batch.attempts += 1
        batch.sent_s = time.monotonic()
        self._in_flight[ref] = batch
        if self.config.acks == 0:
            self._complete(batch, -1, -1, None)

    def _reap(self) -> None:
        if not self._in_flight:
            return
        ready, _ = ray.wait(list(self._in_flight), num_returns=len(self._in_flight), timeout=0)
        if not ready:
            ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=min(self._linger_s, SENDER_IDLE_WAIT_S) or 0.001)
        if not ready:
            # A call to an actor on a node that died may never answer: give up on it
            # after request_timeout_ms and retry (the sequence number makes that safe).
            now = time.monotonic()
            timeout_s = self.config.request_timeout_ms / 1000 + 1
            for ref, batch in list(self._in_flight.items()):
                if now - batch.sent_s > timeout_s:
                    del self._in_flight[ref]
                    self._finish_attempt(batch, RequestTimeoutError(
                        f"produce to {batch.topic}-{batch.partition} got no answer in {timeout_s:.0f} s"))
            return
        for ref in ready:
            batch = self._in_flight.pop(ref)
            try:
                base_offset, append_time = ray.get(ref)
            except Exception as error:  # noqa: BLE001
                self._finish_attempt(batch, rpc.unwrap(error))
                continue
            self._finish_attempt(batch, None, base_offset, append_time)

    def _finish_attempt(self, batch: _Batch, error: BaseException | None, base_offset: int = -1,
                        append_time: int = -1, sent: bool = True) -> None:
        tp = (batch.topic, batch.partition)
        with self._lock:
            self._in_flight_per_partition[tp] -= 1
        if error is not None and batch.sequence >= 0:
            batch.last_error = error
            if sent and not _refused_before_append(error, self.config.acks):
                batch.maybe_appended = True
            if isinstance(error, OutOfOrderSequenceError):
                # Not written (an earlier attempt would have made this a duplicate): a
                # batch before it is missing for good. Numbered again under a new epoch
                # once the partition's outstanding batches have answered.
                batch.maybe_appended = False
                with self._lock:
                    self._bump_pending.add(tp)
                    if time.monotonic() < batch.deadline_s:
                        self._retry.append((time.monotonic() + self.config.retry_backoff_ms / 1000, batch))
                        return
        if error is not None and getattr(error, "retriable", False) and time.monotonic() < batch.deadline_s:
            self._metadata.invalidate(batch.topic)
            with self._lock:
                self._retry.append((time.monotonic() + self.config.retry_backoff_ms / 1000, batch))
            return
        if error is not None and batch.sequence >= 0 and not (sent and isinstance(error, _RECORDED_BY_LEADER)):
            # Failed for good: its sequences may be a hole the leader waits on forever.
            with self._lock:
                self._bump_pending.add(tp)
        if error is not None and not isinstance(error, RafkaError):
            error = InvalidRecordError(f"produce to {batch.topic}-{batch.partition} failed: {error!r}")
        if self.config.acks != 0:
            self._complete(batch, base_offset, append_time, error)
        self._release(batch)

    def _bump_epoch(self, tp: tuple[str, int]) -> None:
        """Start ``tp`` afresh under a new epoch at sequence 0 (caller holds the lock; no
        batch of ``tp`` is in flight). Batches numbered before and not yet acknowledged are
        numbered again in their order, except those that may already be written."""
        self._bump_pending.discard(tp)
        producer_id, epoch = self._identity.get(tp, (self._producer_id, 0))
        if epoch >= MAX_PRODUCER_EPOCH:
            producer_id, epoch = rpc.call_with_retries(self._controller.allocate_producer_id), -1
        self._identity[tp] = (producer_id, epoch + 1)
        self._next_sequence[tp] = 0
        numbered = [batch for _at, batch in self._retry if (batch.topic, batch.partition) == tp]
        self._retry = [(at, batch) for at, batch in self._retry if (batch.topic, batch.partition) != tp]
        numbered += [batch for batch in self._ready if (batch.topic, batch.partition) == tp and batch.sequence >= 0]
        others = [batch for batch in self._ready if not ((batch.topic, batch.partition) == tp and batch.sequence >= 0)]
        numbered.sort(key=lambda batch: batch.order)
        resend = []
        for batch in numbered:
            if batch.maybe_appended:
                self._doomed.append(batch)
            else:
                batch.sequence = -1
                resend.append(batch)
        self._ready = collections.deque(resend + others)

    def _fail_unresendable(self, batch: _Batch) -> None:
        """Fail a batch that may be in the log but cannot be retried under the new epoch."""
        cause = batch.last_error
        error = RequestTimeoutError(
            f"produce to {batch.topic}-{batch.partition} not retried: an earlier attempt may have been written "
            f"({cause!r}), and after a failed batch left a hole in the partition's sequences the producer started "
            "a new epoch, under which a resend could not be recognised as a duplicate"
        )
        error.retriable = False
        if self.config.acks != 0:
            self._complete(batch, -1, -1, error)
        self._release(batch)

    def _complete(self, batch: _Batch, base_offset: int, append_time: int, error: BaseException | None) -> None:
        batch.base_offset, batch.log_append_time, batch.error = base_offset, append_time, error
        batch.done.set()
        if batch.callbacks:
            failed_callbacks = 0
            for index, timestamp, callback in batch.callbacks:
                try:
                    if error is None:
                        offset = base_offset + index if base_offset >= 0 else -1
                        callback(RecordMetadata(batch.topic, batch.partition, offset,
                                                append_time if append_time >= 0 else timestamp), None)
                    else:
                        callback(None, error)
                except Exception:  # noqa: BLE001 - a user callback must not kill the sender
                    # Logged as Kafka's producer does; the first of a batch with its
                    # traceback, the rest counted, so one bad callback cannot flood the log.
                    if not failed_callbacks:
                        logger.exception("producer callback raised, for a record of %s-%d", batch.topic,
                                         batch.partition)
                    failed_callbacks += 1
            if failed_callbacks > 1:
                logger.error("%d more producer callbacks raised in the same batch of %s-%d", failed_callbacks - 1,
                             batch.topic, batch.partition)

    def _release(self, batch: _Batch) -> None:
        with self._lock:
            self._pending[(batch.topic, batch.partition)] -= 1
            self._buffered_bytes -= batch.size_bytes
            self._unfinished -= 1
            batch.table = None
            self._space.notify_all()
            if not self._unfinished:
                self._all_done.notify_all()


# Refusals after which the leader's state already counts the batch's sequences (its log
# refused the batch and it noted that, or it holds the batch): no hole, no epoch bump
# needed. Any other failure bumps, which costs a short pause of the partition at worst.
_RECORDED_BY_LEADER = (RecordTooLargeError, DuplicateSequenceError)


def internal_producer(cluster: Any, **options: Any) -> Producer:
    """A producer for rafka's own writers of internal topics (Connect's ``__connect_*``
    stores, a stream job's changelog and repartition topics). Not public API: a client
    produce to an internal topic is refused with ``TopicAuthorizationError``. Within the
    Ray cluster this is a convention, not a barrier (docs/security.md)."""
    producer = Producer(cluster, **options)
    producer._internal_writer = True
    return producer


def _refused_before_append(error: BaseException, acks: int) -> bool:
    """Whether the leader's answer ``error`` says the batch was not written."""
    if isinstance(error, NotEnoughReplicasAfterAppendError):
        return False
    if isinstance(error, NotLeaderError):
        return acks != -1  # with acks=all it may come while waiting for replication
    return isinstance(error, (OutOfOrderSequenceError, InvalidProducerEpochError, NotEnoughReplicasError,
                              LeaderNotAvailableError, RecordError, TopicNotFoundError))


def _as_bytes(name: str, data: Any) -> bytes:
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{name} must be bytes or None, got {type(data).__name__}: {data!r:.60}")


def _check_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    checked = []
    for entry in headers:
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], (bytes, type(None)))):
            raise TypeError(f"headers must be (str, bytes) pairs, got {entry!r:.60}")
        checked.append(entry)
    return checked


def _produce_table(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """``table`` with exactly the producer's columns, or a TypeError naming what is wrong."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(f"send_batch takes a pyarrow Table or RecordBatch, got {type(table).__name__}")
    if "value" not in table.column_names:
        raise InvalidRecordError(f"send_batch needs a 'value' column; got columns {table.column_names}")
    count = table.num_rows
    columns = []
    for field in PRODUCE_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name)
            if not column.type.equals(field.type):
                try:
                    column = column.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise InvalidRecordError(
                        f"send_batch column {field.name!r} has type {column.type}, expected {field.type}"
                    ) from None
            columns.append(column)
        elif field.name == "timestamp":
            columns.append(pa.chunked_array([pa.array(np.full(count, time.time_ns() // 1_000_000, dtype=np.int64))]))
        else:
            columns.append(pa.chunked_array([pa.nulls(count, field.type)]))
    return pa.Table.from_arrays(columns, schema=PRODUCE_SCHEMA)


def _chunks(table: pa.Table, max_bytes: int) -> list[pa.Table]:
    """Split ``table`` into row ranges of at most about ``max_bytes`` each."""
    if table.nbytes <= max_bytes or table.num_rows <= 1:
        return [table]
    rows_per_chunk = max(1, int(table.num_rows * (max_bytes * 0.9) / table.nbytes))
    return [table.slice(start, rows_per_chunk) for start in range(0, table.num_rows, rows_per_chunk)]
