"""Cluster benchmark: producer, consumer and end-to-end latency on a local rafka cluster.

Measures, with 100-byte values on a topic of 3 partitions on 1 broker with acks=1:

* ``send()`` of records with 10,000 distinct keys (records/s, MB/s of values);
* ``send_batch()`` of Arrow tables (records/s);
* ``poll_batches()`` and ``poll()`` reading everything back (records/s);
* end-to-end latency (``send()`` to ``poll()``) at a fixed rate (default 5,000 records/s):
  p50/p95/p99/max in ms;
* resident memory of each actor kind and of the whole benchmark cluster.

Targets from issue 3 (2-core machine): send() >= 500k/s, send_batch() >= 2M/s,
poll_batches() >= 3M/s, poll() >= 1M/s, latency p50 <= 5 ms and p99 <= 20 ms.

Run:  python benchmarks/cluster_bench.py [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import pyarrow as pa
import ray

import rafka

VALUE_BYTES = 100
PARTITIONS = 3


def bench_send(cluster, topic: str, records: int) -> dict:
    values = [os.urandom(VALUE_BYTES) for _ in range(1000)]
    keys = [b"key-%d" % index for index in range(10_000)]
    producer = cluster.producer(acks=1, linger_ms=5)
    started = time.perf_counter()
    send = producer.send
    for index in range(records):
        send(topic, values[index % 1000], keys[index % 10_000])
    producer.flush()
    elapsed_s = time.perf_counter() - started
    producer.close()
    return {"records": records, "seconds": elapsed_s, "records_per_s": records / elapsed_s,
            "mb_per_s": records * VALUE_BYTES / elapsed_s / 1e6}


def bench_send_batch(cluster, topic: str, records: int, rows_per_table: int = 50_000) -> dict:
    payload = np.frombuffer(os.urandom(rows_per_table * VALUE_BYTES), dtype=np.uint8)
    values = pa.FixedSizeBinaryArray.from_buffers(pa.binary(VALUE_BYTES), rows_per_table,
                                                  [None, pa.py_buffer(payload)]).cast(pa.binary())
    tables = [pa.table({"value": values}) for _ in range(max(1, records // rows_per_table))]
    producer = cluster.producer(acks=1, linger_ms=5)
    started = time.perf_counter()
    futures = [producer.send_batch(topic, table, partition=index % PARTITIONS) for index, table in enumerate(tables)]
    producer.flush()
    elapsed_s = time.perf_counter() - started
    sent = sum(batch.record_count for future in futures for batch in future.result())
    producer.close()
    return {"records": sent, "seconds": elapsed_s, "records_per_s": sent / elapsed_s,
            "mb_per_s": sent * VALUE_BYTES / elapsed_s / 1e6}


def bench_consume(cluster, topic: str, expected: int, as_records: bool) -> dict:
    consumer = cluster.consumer(auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    consumer.assign([rafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.poll(timeout_s=0.1, max_records=1)  # resolve positions before timing
    consumer.seek_to_beginning()
    received = 0
    started = time.perf_counter()
    while received < expected and time.perf_counter() - started < 120:
        if as_records:
            received += len(consumer.poll(timeout_s=1.0, max_records=100_000))
        else:
            received += sum(b.num_rows for batches in consumer.poll_batches(timeout_s=1.0).values() for b in batches)
    elapsed_s = time.perf_counter() - started
    consumer.close()
    return {"records": received, "seconds": elapsed_s, "records_per_s": received / elapsed_s,
            "mb_per_s": received * VALUE_BYTES / elapsed_s / 1e6}


def bench_latency(cluster, topic: str, rate_per_s: int, duration_s: float, linger_ms: float = 0) -> dict:
    consumer = cluster.consumer(auto_offset_reset="latest", fetch_max_wait_ms=100)
    consumer.assign([rafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    for p in range(PARTITIONS):
        consumer.position(rafka.TopicPartition(topic, p))
    latencies_ms: list[float] = []
    total = int(rate_per_s * duration_s)
    done = threading.Event()

    def produce() -> None:
        producer = cluster.producer(acks=1, linger_ms=linger_ms)
        interval_s = 1 / rate_per_s
        start = time.perf_counter()
        for index in range(total):
            target = start + index * interval_s
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.send(topic, b"%020d" % time.perf_counter_ns(), key=b"k%d" % (index % 100))
        producer.flush()
        producer.close()
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.perf_counter() + duration_s + 30
    while len(latencies_ms) < total and time.perf_counter() < deadline:
        for batches in consumer.poll_batches(timeout_s=0.2).values():
            now_ns = time.perf_counter_ns()
            for batch in batches:
                sent_ns = np.array([int(value) for value in batch.column("value").to_pylist()], dtype=np.int64)
                latencies_ms.extend(((now_ns - sent_ns) / 1e6).tolist())
    thread.join()
    consumer.close()
    values = np.array(latencies_ms)
    return {"rate_per_s": rate_per_s, "records": len(values), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max())}


def actor_memory(cluster) -> dict:
    """Resident set size (MiB) of each rafka actor process, by kind."""
    from rafka.actors import names

    handles = {"controller": [cluster.controller]}
    for broker in cluster.brokers():
        handles.setdefault("broker", []).append(ray.get_actor(names.broker(broker["broker_id"]), namespace=cluster.namespace))
    admin = cluster.admin()
    for topic in admin.list_topics():
        for partition in admin.describe_topic(topic)["partitions"]:
            for broker_id in partition["replicas"]:
                name = names.replica(topic, partition["partition"], broker_id)
                handles.setdefault("replica", []).append(ray.get_actor(name, namespace=cluster.namespace))
    out = {}
    for kind, actors in handles.items():
        pids = ray.get([actor.__ray_call__.remote(lambda self: os.getpid()) for actor in actors])
        # USS is what the process alone holds; RSS also counts shared libraries and the
        # page-cache pages of memory-mapped segments, which the kernel can drop at will.
        infos = [psutil.Process(pid).memory_full_info() for pid in pids]
        out[kind] = {"count": len(infos), "uss_mib_each": [round(i.uss / 2**20, 1) for i in infos],
                     "uss_mib_total": round(sum(i.uss for i in infos) / 2**20, 1),
                     "rss_mib_total": round(sum(i.rss for i in infos) / 2**20, 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="rafka cluster benchmark")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--latency-rate", type=int, default=5000)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument("--latency-linger-ms", type=float, default=0)
    parser.add_argument("--only-latency", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    namespace = "rafka-bench"
    data_dir = tempfile.mkdtemp(prefix="rafka-bench-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", namespace=namespace)
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace=namespace)
    results: dict = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                    "pyarrow": pa.__version__},
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    try:
        admin = cluster.admin()
        for name in ("send", "send-batch", "latency"):
            admin.create_topic(name, partitions=PARTITIONS)
        if args.only_latency:
            results["latency"] = bench_latency(cluster, "latency", args.latency_rate, args.latency_seconds,
                                               args.latency_linger_ms)
            print(results["latency"])
            return 0
        results["send"] = bench_send(cluster, "send", args.records)
        print(f"send():        {results['send']['records_per_s']:>12,.0f} records/s  {results['send']['mb_per_s']:7.1f} MB/s")
        results["send_batch"] = bench_send_batch(cluster, "send-batch", args.records * 4)
        sent = results["send_batch"]
        print(f"send_batch():  {sent['records_per_s']:>12,.0f} records/s  {sent['mb_per_s']:7.1f} MB/s")
        results["poll_batches"] = bench_consume(cluster, "send-batch", results["send_batch"]["records"], as_records=False)
        polled = results["poll_batches"]
        print(f"poll_batches():{polled['records_per_s']:>12,.0f} records/s  {polled['mb_per_s']:7.1f} MB/s")
        results["poll"] = bench_consume(cluster, "send", args.records, as_records=True)
        print(f"poll():        {results['poll']['records_per_s']:>12,.0f} records/s  {results['poll']['mb_per_s']:7.1f} MB/s")
        results["latency"] = bench_latency(cluster, "latency", args.latency_rate, args.latency_seconds, args.latency_linger_ms)
        latency = results["latency"]
        print(f"e2e latency at {latency['rate_per_s']:,}/s: p50 {latency['p50_ms']:.2f} ms  p95 {latency['p95_ms']:.2f} ms"
              f"  p99 {latency['p99_ms']:.2f} ms  max {latency['max_ms']:.2f} ms  ({latency['records']:,} records)")
        results["memory"] = actor_memory(cluster)
        for kind, memory in sorted(results["memory"].items()):
            print(f"memory {kind:<10} x{memory['count']}: {memory['uss_mib_total']:8.1f} MiB USS"
                  f" ({memory['uss_mib_total'] / memory['count']:.1f} each), {memory['rss_mib_total']:8.1f} MiB RSS")
        total = sum(memory["uss_mib_total"] for memory in results["memory"].values())
        print(f"memory total of the rafka actors: {total:.1f} MiB USS;"
              f" driver {psutil.Process().memory_full_info().uss / 2**20:.1f} MiB USS")
    finally:
        cluster.shutdown()
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
