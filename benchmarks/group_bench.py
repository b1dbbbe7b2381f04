"""Consumer-group benchmark: rebalance time and ConsumerPool throughput.

Measures, on an embedded 1-broker cluster:

* **rebalance time**: a group of consumers on a 12-partition topic, each polled by its
  own thread; the time from a new member's ``subscribe()`` until every member owns its
  final share (12 partitions, each owned once, balanced) — for the 2nd, 3rd and 4th
  member, and for a member leaving (``close()``) — with Kafka's default
  ``heartbeat_interval_ms`` (3 s) and ``session_timeout_ms`` (45 s);
* **pool throughput**: ``records`` records of ``value_bytes`` bytes on 12 partitions,
  consumed by a ConsumerPool of 1 and then 2 consumer actors (fresh groups) whose
  handler sums the value lengths of each Arrow batch (pyarrow.compute); records/s from
  the moment the pool's stats first show handled records until every offset is
  committed, counting only the records handled in that interval (actor start-up and
  what was handled before the clock started are excluded; start-up is reported
  separately).

Run:  python benchmarks/group_bench.py [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

import rafka

PARTITIONS = 12


class _Polling:
    """A subscribed consumer polled by a thread of its own."""

    def __init__(self, cluster, group: str, topic: str) -> None:
        self.consumer = cluster.consumer(group_id=group, auto_offset_reset="earliest")
        self.owned: frozenset = frozenset()
        self._stop = threading.Event()
        self.consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.consumer.poll_batches(timeout_s=0.01)
            self.owned = frozenset(self.consumer.assignment())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()


def _stable(members: list[_Polling]) -> bool:
    owned = [tp for member in members for tp in member.owned]
    sizes = [len(member.owned) for member in members]
    return len(owned) == PARTITIONS == len(set(owned)) and max(sizes) - min(sizes) <= 1


def _wait_stable(members: list[_Polling], timeout_s: float = 60.0) -> float:
    started = time.perf_counter()
    while not _stable(members):
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError("the group did not settle")
        time.sleep(0.001)
    return time.perf_counter() - started


def bench_rebalance(cluster, topic: str, rounds: int) -> dict:
    joins = {2: [], 3: [], 4: []}
    leaves = []
    for round_index in range(rounds):
        group = f"rebalance-{round_index}"
        members = [_Polling(cluster, group, topic)]
        _wait_stable(members)
        for size in (2, 3, 4):
            started = time.perf_counter()
            members.append(_Polling(cluster, group, topic))
            _wait_stable(members)
            joins[size].append(time.perf_counter() - started)
        leaving = members.pop()
        started = time.perf_counter()
        leaving.close()
        _wait_stable(members)
        leaves.append(time.perf_counter() - started)
        for member in members:
            member.close()
    return {
        **{f"join_to_{size}_members_ms": round(statistics.median(values) * 1000, 1) for size, values in joins.items()},
        "leave_4_to_3_members_ms": round(statistics.median(leaves) * 1000, 1),
        "rounds": rounds,
    }


def _sum_lengths(batch, tp):
    pc.sum(pc.binary_length(batch.column("value")))


def bench_pool(cluster, topic: str, records: int, consumers: int) -> dict:
    group = f"pool-{consumers}-{time.monotonic_ns()}"
    started = time.perf_counter()
    pool = cluster.consumer_pool([topic], group, _sum_lengths, consumers=consumers, auto_offset_reset="earliest",
                                 actor_options={"num_cpus": 0})
    try:
        handled_at_start = 0
        while handled_at_start == 0:
            time.sleep(0.01)
            handled_at_start = sum(stats["records"] for stats in pool.stats())
        first_record_s = time.perf_counter()
        pool.wait_caught_up(timeout_s=600)
        done_s = time.perf_counter()
        handled = sum(stats["records"] for stats in pool.stats())
    finally:
        pool.stop()
    # The clock started once handled_at_start records were done: count only the rest
    # (at-least-once re-handling after a rebalance would count too; none is expected).
    timed = records - handled_at_start
    return {
        "consumers": consumers,
        "records": records,
        "records_handled": handled,  # at-least-once: may exceed records after a rebalance
        "records_before_clock": handled_at_start,
        "startup_s": round(first_record_s - started, 2),
        "records_per_s": round(timed / (done_s - first_record_s)),
        "seconds": round(done_s - first_record_s, 2),
    }


def produce(cluster, topic: str, records: int, value_bytes: int) -> None:
    chunk = 50_000
    values = pa.array([b"x" * value_bytes] * chunk, pa.binary())
    with cluster.producer(acks=1, linger_ms=5) as producer:
        for partition_start in range(0, records, chunk):
            count = min(chunk, records - partition_start)
            table = pa.table({"value": values.slice(0, count),
                              "key": pa.array(np.char.mod(b"k%d", np.arange(count) % 10_000).tolist(), pa.binary())})
            producer.send_batch(topic, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--rebalance-rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="Also write the results to this file.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, include_dashboard=False)
        try:
            admin = cluster.admin()
            admin.create_topic("rebalance", partitions=PARTITIONS)
            admin.create_topic("pool", partitions=PARTITIONS)
            rebalance = bench_rebalance(cluster, "rebalance", args.rebalance_rounds)
            print("rebalance:", rebalance, flush=True)
            produce(cluster, "pool", args.records, args.value_bytes)
            pools = [bench_pool(cluster, "pool", args.records, consumers) for consumers in (1, 2)]
            for result in pools:
                print("pool:", result, flush=True)
        finally:
            cluster.shutdown()
    results = {
        "benchmark": "group_bench", "partitions": PARTITIONS, "value_bytes": args.value_bytes,
        "rebalance": rebalance, "pool": pools,
        "machine": {"python": platform.python_version(), "ray": ray.__version__, "pyarrow": pa.__version__,
                    "cpus": __import__("os").cpu_count()},
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
