"""Where a record's end-to-end milliseconds go (issue 22 item 4).

``rafka bench e2e`` gives one figure, send() to poll_batches(). This script runs the same
workload (``--rate`` records/s of 100-byte values on 3 partitions, acks=1, linger_ms=0,
producer and consumer in this process, one broker) on an embedded cluster and splits
every record's latency into five stages, each from timestamps of the machine's monotonic
clock (``perf_counter_ns``, the same in every process):

1. ``send -> dispatch``: in the producer's batch until the sender thread hands the batch
   to Ray (it waits while the partition's previous batch is in flight);
2. ``dispatch -> appended``: the produce call until the leader replica appended it;
3. ``appended -> read by a fetch``: until a consumer fetch read it from the log;
4. ``read -> consumer has it``: the fetch's answer travelling back into the consumer;
5. ``consumer has it -> poll returns``: until ``poll_batches()`` hands it out.

The probes wrap ``PartitionReplica._append`` and the replica's ``Log.read`` (installed
with ``__ray_call__`` in the replica processes) and the consumer's ``_receive``: private
names, so this is a diagnostic for the engineers, not an API. It prints one line per stage
(p50, p99, mean) and writes them with ``--json``.

Run:  python benchmarks/e2e_breakdown.py [--rate 5000] [--seconds 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

import rafka
from rafka.actors import names
from rafka.client import consumer as consumer_module, producer as producer_module

PARTITIONS = 3
SEND_TIME_BYTES = 8
STAGES = ("1 send -> dispatch", "2 dispatch -> appended", "3 appended -> read by a fetch",
          "4 read -> consumer has it", "5 consumer has it -> poll returns", "total")


def install_replica_probes(self) -> bool:
    """Runs inside a replica process: note (first offset, end offset, time) of every
    append and of every log read that returned records."""
    import time as clock

    self._probe_appends, self._probe_reads = [], []
    append, read = self._append, self.log.read

    def probed_append(*args, **kwargs):
        result = append(*args, **kwargs)
        self._probe_appends.append((result[0], self.log.log_end_offset, clock.perf_counter_ns()))
        return result

    def probed_read(*args, **kwargs):
        result = read(*args, **kwargs)
        if result.record_count:
            self._probe_reads.append((result.next_offset - result.record_count, result.next_offset,
                                      clock.perf_counter_ns()))
        return result

    self._append, self.log.read = probed_append, probed_read
    return True


def stage_time(entries: list[tuple[int, int, int]], offset: int) -> int | None:
    """The time of the entry (first, end, time) whose offset range holds ``offset``."""
    firsts = [entry[0] for entry in entries]
    index = bisect.bisect_right(firsts, offset) - 1
    return entries[index][2] if index >= 0 and entries[index][0] <= offset < entries[index][1] else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5000, help="records/s (default 5000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    parser.add_argument("--json", default=None, help="write the stages here as JSON")
    args = parser.parse_args(argv)
    total_records = int(args.rate * args.seconds)

    dispatched: dict[int, list[int]] = collections.defaultdict(list)  # partition -> dispatch times
    received: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)  # partition -> (first offset, time)
    dispatch, receive = producer_module.Producer._dispatch, consumer_module.Consumer._receive

    def probed_dispatch(self, batch):
        dispatched[batch.partition].append(time.perf_counter_ns())
        return dispatch(self, batch)

    def probed_receive(self, timeout_s):
        before = {tp: len(state.buffered) for tp, state in self._partitions.items()}
        result = receive(self, timeout_s)
        now_ns = time.perf_counter_ns()
        for tp, state in self._partitions.items():
            for batches, _next_offset in list(state.buffered)[before[tp]:]:
                if batches:
                    received[tp.partition].append((batches[0].column(0)[0].as_py(), now_ns))
        return result

    producer_module.Producer._dispatch, consumer_module.Consumer._receive = probed_dispatch, probed_receive
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace="rafka-e2e-breakdown", wire_port=None,
                                      logging_level="ERROR", log_to_driver=False, include_dashboard=False)
        try:
            cluster.admin().create_topic("breakdown", partitions=PARTITIONS, replication_factor=1)
            replicas = [ray.get_actor(names.replica("breakdown", p, 0), namespace=cluster.namespace)
                        for p in range(PARTITIONS)]
            ray.get([replica.ready.remote() for replica in replicas])
            ray.get([replica.__ray_call__.remote(install_replica_probes) for replica in replicas])
            consumer = cluster.consumer(auto_offset_reset="latest", fetch_max_wait_ms=100)
            consumer.assign([rafka.TopicPartition("breakdown", p) for p in range(PARTITIONS)])
            consumer.seek_to_end()
            producer = cluster.producer(acks=1, linger_ms=0)
            producer.partitions_for("breakdown")
            padding = b"x" * (100 - SEND_TIME_BYTES)

            def send() -> None:
                started_s, sent = time.perf_counter(), 0
                while sent < total_records:
                    due = min(total_records, int((time.perf_counter() - started_s) * args.rate) + 1)
                    for _ in range(sent, due):
                        producer.send("breakdown", time.perf_counter_ns().to_bytes(SEND_TIME_BYTES, "little") + padding)
                    sent = max(sent, due)
                    delay_s = started_s + sent / args.rate - time.perf_counter()
                    if delay_s > 0:
                        time.sleep(delay_s)
                producer.flush()

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            polled_rows: list[tuple[int, int, int, int]] = []  # (partition, offset, sent ns, polled ns)
            while len(polled_rows) < total_records:
                polled = consumer.poll_batches(timeout_s=0.2)
                now_ns = time.perf_counter_ns()
                for tp, batches in polled.items():
                    for batch in batches:
                        heads = pc.binary_slice(batch.column("value"), 0, SEND_TIME_BYTES).cast(pa.binary(SEND_TIME_BYTES))
                        sent_ns = np.frombuffer(heads.buffers()[1], dtype="<i8", count=len(heads),
                                                offset=heads.offset * SEND_TIME_BYTES)
                        polled_rows += [(tp.partition, offset, sent, now_ns)
                                        for offset, sent in zip(batch.column("offset").to_pylist(), sent_ns.tolist())]
            sender.join()
            producer.close()
            consumer.close()
            appends = ray.get([replica.__ray_call__.remote(lambda self: self._probe_appends) for replica in replicas])
            reads = ray.get([replica.__ray_call__.remote(lambda self: self._probe_reads) for replica in replicas])
        finally:
            cluster.shutdown()

    stages: dict[str, list[int]] = collections.defaultdict(list)
    dispatch_times = {p: sorted(times) for p, times in dispatched.items()}
    receive_times = {p: sorted(entries) for p, entries in received.items()}
    for partition, offset, sent_ns, polled_ns in polled_rows:
        appended_ns, read_ns = stage_time(appends[partition], offset), stage_time(reads[partition], offset)
        times = dispatch_times[partition]
        index = bisect.bisect_left(times, sent_ns)  # the first dispatch after the send
        dispatched_ns = times[index] if index < len(times) else None
        entries = receive_times.get(partition, [])
        index = bisect.bisect_right([entry[0] for entry in entries], offset) - 1
        received_ns = entries[index][1] if index >= 0 else None
        if None in (appended_ns, read_ns, dispatched_ns, received_ns):
            continue
        for stage, span in zip(STAGES, (dispatched_ns - sent_ns, appended_ns - dispatched_ns, read_ns - appended_ns,
                                        received_ns - read_ns, polled_ns - received_ns, polled_ns - sent_ns)):
            stages[stage].append(span)
    result = {"rate_per_s": args.rate, "records": total_records, "stages_ms": {}}
    for stage in STAGES:
        spans_ms = np.asarray(stages[stage]) / 1e6
        figures = {"p50": round(float(np.percentile(spans_ms, 50)), 2), "p99": round(float(np.percentile(spans_ms, 99)), 2),
                   "mean": round(float(spans_ms.mean()), 2), "records": int(spans_ms.size)}
        result["stages_ms"][stage] = figures
        print(f"{stage:36s} p50 {figures['p50']:6.2f}  p99 {figures['p99']:6.2f}  mean {figures['mean']:6.2f} ms")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
