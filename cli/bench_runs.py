"""The measuring half of ``rafka bench``: payloads, the three runs, and what they record.
Imported by ``rafka.cli.bench`` only once a run starts (it imports numpy, pyarrow and Ray).

What is measured (clock: ``time.perf_counter``, in this one process):

* **produce**: ``--records`` records of ``--record-size`` random value bytes, sent with
  ``send()`` one by one (``--mode send``) or as Arrow tables of about ``--batch-size``
  bytes with ``send_batch()`` (``--mode batch``). Throughput: records over the time from
  the first send to the end of ``flush()``, i.e. until every record is acknowledged.
  Latency is *ack latency*, as in kafka-producer-perf-test: from just before the send
  call of a sampled record (one in ``stride`` records, about ``LATENCY_SAMPLES`` per run,
  the last one always) or of a table, to the moment its acknowledgement reached the
  producer (the record's callback on the producer's sender thread; for tables, a watcher
  thread that looks every 1 ms). It includes blocking on a full buffer, lingering, the
  actor round trip and, with acks=all, replication. With acks=0 nothing is
  acknowledged: the "ack" is the moment the batch was handed to Ray. A failed batch is
  noticed through its sampled records and fails the run.
* **consume**: reads ``--records`` records (at most what the topic holds) from the
  beginning of the topic with ``poll()`` (``--mode poll``) or ``poll_batches()``
  (``--mode batch``); a temporary topic is first filled, untimed, with ``send_batch``.
  Throughput: records over the time from the first poll to the last record. Latency:
  the duration of each poll call that returned records.
* **e2e**: a producer thread sends ``--records`` records at ``--rate`` records/s with
  ``send()``; this thread polls batches and measures, for every record, the time the
  poll returned minus the send time the producer wrote into the first 8 bytes of the
  value (``perf_counter_ns``; the record timestamp has only millisecond resolution).
  Producer and consumer share one process and its GIL, as in
  ``benchmarks/cluster_bench.py``; with ``--producer-process`` the producer runs in a
  Ray actor of its own on this node instead (``perf_counter_ns`` reads the machine's
  monotonic clock, which both processes share).

Throughput over time (``throughput_timeline``) counts records acknowledged (produce: a
sampled record counts for the records sent since the previous sample) or received
(consume, e2e) per ``TIMELINE_INTERVAL_S``. MB/s counts value bytes only, in 10^6
bytes. Values are random bytes, so incompressible: ``--compression`` shows its CPU
cost, not its savings. A consume or e2e run fails when no record arrives for
``IDLE_TIMEOUT_S``.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

import rafka
from rafka.cli.bench import SEND_TIME_BYTES, Progress, Workload
from rafka.errors import RafkaError, RequestTimeoutError

LATENCY_SAMPLES = 10_000  # per produce run: enough for a stable p99, cheap next to the records
VALUE_POOL_BYTES = 16 * 1024 * 1024  # distinct random values to cycle through; bounds memory
CONSUME_FETCH_BYTES = 8 * 1024 * 1024  # as cluster_bench: large fetches for throughput
CONSUME_POLL_RECORDS = 100_000
IDLE_TIMEOUT_S = 30.0
TIMELINE_INTERVAL_S = 0.5
TABLE_WATCH_INTERVAL_S = 0.001


class Measurement:
    """What one run observed: when records completed, and latency samples in ms.

    ``add_sample`` may be called from other threads (the producer's sender thread, the
    table watcher); list appends are atomic, and the lists are read only after those
    threads are done."""

    def __init__(self, latency_measures: str) -> None:
        self.latency_measures = latency_measures
        self.started_s = time.perf_counter()
        self.finished_s = self.started_s
        self.completion_times_s: list[float] = []
        self.completion_counts: list[int] = []
        self.latencies_ms: list[float] = []
        self.error: BaseException | None = None

    def add_completions(self, at_s: float, count: int) -> None:
        self.completion_times_s.append(at_s)
        self.completion_counts.append(count)

    def add_sample(self, sent_s: float, count: int, error: BaseException | None = None) -> None:
        now_s = time.perf_counter()
        if error is not None:
            self.error = self.error or error
            return
        self.latencies_ms.append((now_s - sent_s) * 1000)
        self.add_completions(now_s, count)

    def callback(self, sent_s: float, count: int) -> Callable[[Any, BaseException | None], None]:
        """A ``send()`` callback that records the ack of ``count`` records sent at ``sent_s``."""
        return lambda metadata, error: self.add_sample(sent_s, count, error)

    def finish(self) -> None:
        self.finished_s = time.perf_counter()
        if self.error is not None:
            raise self.error

    def summary(self, record_size_bytes: int) -> dict[str, Any]:
        records = sum(self.completion_counts)
        duration_s = max(self.finished_s - self.started_s, 1e-9)
        latencies = np.asarray(self.latencies_ms, dtype=np.float64)
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies.size else (math.nan,) * 3
        starts_s = np.arange(0, duration_s, TIMELINE_INTERVAL_S)
        if len(starts_s) > 1 and duration_s - starts_s[-1] < TIMELINE_INTERVAL_S / 2:
            # A sliver at the end (the last few records) would show as a spike: fold it
            # into the interval before, which then runs to the end.
            starts_s = starts_s[:-1]
        edges_s = np.append(starts_s, duration_s)
        counts, _ = np.histogram(np.asarray(self.completion_times_s) - self.started_s, bins=edges_s,
                                 weights=np.asarray(self.completion_counts, dtype=np.float64))
        return {
            "records": records,
            "value_bytes": records * record_size_bytes,
            "duration_s": duration_s,
            "records_per_s": records / duration_s,
            "mb_per_s": records * record_size_bytes / duration_s / 1e6,
            "latency_ms": {"measures": self.latency_measures, "samples": int(latencies.size), "p50": float(p50),
                           "p95": float(p95), "p99": float(p99),
                           "max": float(latencies.max()) if latencies.size else math.nan,
                           "mean": float(latencies.mean()) if latencies.size else math.nan},
            # The last interval is 0.5 to 1.5 intervals wide: divide by its own width.
            "throughput_timeline": {"interval_s": TIMELINE_INTERVAL_S,
                                    "records_per_s": (counts / np.maximum(np.diff(edges_s), 1e-9)).tolist()},
        }


class TableWatcher:
    """Records the ack latency of ``send_batch`` tables: the futures have no callbacks,
    so a thread checks the pending ones every ``TABLE_WATCH_INTERVAL_S`` (the
    resolution of these latencies). Pending tables are bounded by the producer's
    ``buffer_memory``, so each check is short."""

    def __init__(self, measurement: Measurement) -> None:
        self._measurement = measurement
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rafka-bench-table-watcher", daemon=True)
        self._thread.start()

    def watch(self, sent_s: float, rows: int, future: Any) -> None:
        self._incoming.put((sent_s, rows, future))

    def stop(self, drain: bool = True) -> None:
        """Stop once every watched table is done (``drain``), or at once (a failed run)."""
        if not drain:
            self._abandoned.set()
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        pending: list = []
        while True:
            stopping = self._stopping.is_set()  # read before draining: nothing is missed
            while not self._incoming.empty():
                pending.append(self._incoming.get())
            still_pending = []
            for entry in pending:
                sent_s, rows, future = entry
                if not future.done():
                    still_pending.append(entry)
                    continue
                try:
                    future.result(timeout=0)
                except RafkaError as error:
                    self._measurement.add_sample(sent_s, rows, error)
                else:
                    self._measurement.add_sample(sent_s, rows)
            pending = still_pending
            if stopping and (not pending or self._abandoned.is_set()):
                return
            time.sleep(TABLE_WATCH_INTERVAL_S)


# -- payloads ----------------------------------------------------------------------------

def _random_values(workload: Workload) -> pa.Array:
    """Distinct random values (at most VALUE_POOL_BYTES of them) as one binary array."""
    count = max(1, min(workload.records, VALUE_POOL_BYTES // workload.record_size_bytes))
    payload = pa.py_buffer(os.urandom(count * workload.record_size_bytes))
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(workload.record_size_bytes), count, [None, payload])
    return fixed.cast(pa.binary())


def _tables(workload: Workload) -> Iterator[pa.Table]:
    """The records of ``workload`` as ``send_batch`` tables of ``table_rows()`` rows."""
    rows = workload.table_rows()
    values = _random_values(workload)
    keys = workload.key_pool()
    key_array = pa.array(keys, pa.binary()) if keys != [None] else None
    for start in range(0, workload.records, rows):
        count = min(rows, workload.records - start)
        first = start % max(1, len(values) - count + 1)  # windows that move through the pool
        columns = {"value": values.slice(first, count) if count <= len(values) else
                   values.take(pa.array(np.arange(start, start + count) % len(values)))}
        if key_array is not None:
            columns["key"] = key_array.take(pa.array(np.arange(start, start + count) % len(keys)))
        yield pa.table(columns)


# -- the three runs ----------------------------------------------------------------------

def run_produce(cluster: Any, topic: str, workload: Workload, progress: Progress) -> Measurement:
    producer = cluster.producer(**workload.producer_options())
    try:
        producer.partitions_for(topic)  # metadata before the clock starts
        if workload.mode == "batch":
            return _produce_tables(producer, topic, workload, progress)
        return _produce_records(producer, topic, workload, progress)
    finally:
        producer.close()


def _produce_records(producer: Any, topic: str, workload: Workload, progress: Progress) -> Measurement:
    values = _random_values(workload).to_pylist()
    keys = workload.key_pool()
    value_count, key_count = len(values), len(keys)
    stride = max(1, workload.records // LATENCY_SAMPLES)
    send = producer.send
    task = progress.task("producing", workload.records)
    measurement = Measurement(f"send() of one record in {stride} to its acknowledgement")
    index = 0
    while index < workload.records:
        sampled = min(index + stride, workload.records) - 1  # the stride's last record
        for number in range(index, sampled):
            send(topic, values[number % value_count], keys[number % key_count])
        sent_s = time.perf_counter()
        send(topic, values[sampled % value_count], keys[sampled % key_count],
             callback=measurement.callback(sent_s, sampled + 1 - index))
        progress.advance(task, sampled + 1 - index)
        index = sampled + 1
    producer.flush()
    measurement.finish()
    return measurement


def _produce_tables(producer: Any, topic: str, workload: Workload, progress: Progress) -> Measurement:
    tables = list(_tables(workload))  # built before the clock starts
    task = progress.task("producing", workload.records)
    measurement = Measurement(f"send_batch() of a table of {workload.table_rows():,} rows to its acknowledgement")
    watcher = TableWatcher(measurement)
    try:
        for table in tables:
            sent_s = time.perf_counter()
            watcher.watch(sent_s, table.num_rows, producer.send_batch(topic, table))
            progress.advance(task, table.num_rows)
        producer.flush()
    except BaseException:
        watcher.stop(drain=False)
        raise
    watcher.stop()  # every table is done after flush(): one more look records the last
    measurement.finish()
    return measurement


def run_consume(cluster: Any, topic: str, workload: Workload, progress: Progress, fill: bool) -> Measurement:
    if fill:
        with cluster.producer(**workload.producer_options()) as producer:
            task = progress.task("filling the topic", workload.records)
            for table in _tables(workload):
                producer.send_batch(topic, table)
                progress.advance(task, table.num_rows)
    consumer = cluster.consumer(auto_offset_reset="earliest", max_partition_fetch_bytes=CONSUME_FETCH_BYTES)
    try:
        assigned = [rafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(assigned)
        starts, ends = consumer.beginning_offsets(assigned), consumer.end_offsets(assigned)
        available = sum(ends[tp] - starts[tp] for tp in assigned)
        if available <= 0:
            raise ValueError(f"topic {topic!r} has no records to consume")
        target = min(workload.records, available)
        consumer.seek_to_beginning()
        task = progress.task("consuming", target)
        measurement = Measurement(f"duration of a {'poll()' if workload.mode == 'poll' else 'poll_batches()'} "
                                  "call that returned records")
        received, last_record_s = 0, time.perf_counter()
        # Compacted or deleted records leave gaps: stop at the end offsets, too.
        while received < target and any(consumer.position(tp) < ends[tp] for tp in assigned):
            called_s = time.perf_counter()
            if workload.mode == "poll":
                count = len(consumer.poll(timeout_s=1.0, max_records=min(CONSUME_POLL_RECORDS, target - received)))
            else:
                polled = consumer.poll_batches(timeout_s=1.0, max_records=target - received)
                count = sum(batch.num_rows for batches in polled.values() for batch in batches)
            returned_s = time.perf_counter()
            if count:
                measurement.add_sample(called_s, count)
                progress.advance(task, count)
                received, last_record_s = received + count, returned_s
            elif returned_s - last_record_s > IDLE_TIMEOUT_S:
                raise RequestTimeoutError(f"no record arrived from {topic!r} for {IDLE_TIMEOUT_S:.0f} s "
                                          f"({received:,} of {target:,} read)")
        measurement.finish()
        return measurement
    finally:
        consumer.close()


def run_e2e(cluster: Any, topic: str, workload: Workload, progress: Progress) -> Measurement:
    consumer = cluster.consumer(auto_offset_reset="latest", fetch_max_wait_ms=100)
    producer = None if workload.producer_process else cluster.producer(**workload.producer_options())
    remote = None
    try:
        assigned = [rafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(assigned)
        consumer.seek_to_end()  # only the records this run sends
        task = progress.task(f"end to end at {workload.rate_per_s:,.0f}/s", workload.records)
        measurement = Measurement("poll_batches() return minus send() call, every record")
        failures: list[BaseException] = []
        if producer is not None:
            producer.partitions_for(topic)
            sender = threading.Thread(target=_send_at_rate, name="rafka-bench-e2e-producer", daemon=True,
                                      args=(producer, topic, workload, measurement.started_s, failures))
            sender.start()
        else:
            remote = _remote_rate_producer(cluster.namespace, topic, workload)
            measurement.started_s = time.perf_counter()
            sender = remote.run.remote(measurement.started_s)
        received, last_record_s = 0, time.perf_counter()
        while received < workload.records and not failures:
            polled = consumer.poll_batches(timeout_s=0.2)
            now_ns, now_s = time.perf_counter_ns(), time.perf_counter()
            for batches in polled.values():
                for batch in batches:
                    heads = pc.binary_slice(batch.column("value"), 0, SEND_TIME_BYTES).cast(pa.binary(SEND_TIME_BYTES))
                    sent_ns = np.frombuffer(heads.buffers()[1], dtype="<i8", count=len(heads), offset=heads.offset * 8)
                    measurement.latencies_ms.extend(((now_ns - sent_ns) / 1e6).tolist())
                    measurement.add_completions(now_s, batch.num_rows)
                    received += batch.num_rows
                    progress.advance(task, batch.num_rows)
            if polled:
                last_record_s = now_s
            elif now_s - last_record_s > IDLE_TIMEOUT_S:
                raise RequestTimeoutError(f"no record arrived for {IDLE_TIMEOUT_S:.0f} s "
                                          f"({received:,} of {workload.records:,} received)")
            if remote is not None and not failures:
                done, _ = ray.wait([sender], timeout=0)
                if done:
                    failures.extend(ray.get(sender))
        if remote is None:
            sender.join()
        elif not failures:
            failures.extend(ray.get(sender))
        if failures:
            raise failures[0]
        measurement.finish()
        return measurement
    finally:
        if producer is not None:
            producer.close()
        if remote is not None:
            ray.kill(remote)
        consumer.close()


def _remote_rate_producer(namespace: str, topic: str, workload: Workload) -> Any:
    """A Ray actor on this node that sends ``workload`` at its rate (``run``)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    class RateProducer:
        def __init__(self) -> None:
            self.producer = rafka.Cluster.connect(namespace=namespace).producer(**workload.producer_options())
            self.producer.partitions_for(topic)

        def run(self, started_s: float) -> list[BaseException]:
            failures: list[BaseException] = []
            _send_at_rate(self.producer, topic, workload, started_s, failures)
            self.producer.close()
            return failures

    node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = RateProducer.options(scheduling_strategy=node).remote()
    ray.get(actor.__ray_ready__.remote())
    return actor


def _send_at_rate(producer: Any, topic: str, workload: Workload, started_s: float,
                  failures: list[BaseException]) -> None:
    """Send ``workload.records`` records, record i not before ``started_s + i / rate``.
    Records that fell behind go out at once (catching up), so the mean rate holds."""
    try:
        padding = os.urandom(workload.record_size_bytes - SEND_TIME_BYTES)
        keys = workload.key_pool()
        rate_per_s, sent = workload.rate_per_s, 0
        while sent < workload.records:
            due = min(workload.records, int((time.perf_counter() - started_s) * rate_per_s) + 1)
            for number in range(sent, due):
                producer.send(topic, time.perf_counter_ns().to_bytes(SEND_TIME_BYTES, "little") + padding,
                              keys[number % len(keys)])
            sent = max(sent, due)
            delay_s = started_s + sent / rate_per_s - time.perf_counter()
            if delay_s > 0:
                time.sleep(delay_s)
        producer.flush()
    except BaseException as error:  # noqa: BLE001 - reported by the consuming thread
        failures.append(error)
