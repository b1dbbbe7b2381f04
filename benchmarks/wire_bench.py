"""Kafka wire-protocol benchmark: confluent-kafka through the listener vs rafka's own
client, in one run, on one local broker.

Measures, with 100-byte values and 10,000 distinct keys on topics of 3 partitions on 1
broker with acks=1:

* native ``send()`` of records (records/s, MB/s of values);
* confluent-kafka (librdkafka) ``produce()`` to the broker's Kafka listener;
* native ``poll()`` reading the native topic back;
* a confluent-kafka consumer (by assignment) reading the wire topic back.

Issue 20's targets: confluent-kafka producing reaches at least the native ``send()``
rate of the same run, and the confluent-kafka consumer at least the native ``poll()``
rate. Where a target is missed, profile the broker actor (a process of its own) with
py-spy while the benchmark runs.

Each measure also reports the CPU this process used while timed, per record
(``client_cpu_us_per_record``, every thread: librdkafka's, Ray's, Python's), and the rate
that CPU alone would allow if the client never waited on the broker
(``client_bound_records_per_s``): a client slower than a target on its own cannot meet it
whatever the broker does.

Run:  python benchmarks/wire_bench.py [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

import psutil
import ray
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import rafka

VALUE_BYTES = 100
PARTITIONS = 3
KEYS = 10_000
TIMEOUT_S = 300.0


def _values() -> list[bytes]:
    return [os.urandom(VALUE_BYTES) for _ in range(1000)]


def _cpu_s() -> float:
    """CPU seconds this process has used, every thread."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _result(records: int, elapsed_s: float, client_cpu_s: float) -> dict:
    return {"records": records, "seconds": elapsed_s, "records_per_s": records / elapsed_s,
            "mb_per_s": records * VALUE_BYTES / elapsed_s / 1e6,
            "client_cpu_us_per_record": client_cpu_s / records * 1e6,
            "client_bound_records_per_s": records / client_cpu_s if client_cpu_s > 0 else None}


def bench_native_send(cluster, topic: str, records: int) -> dict:
    values, keys = _values(), [b"key-%d" % index for index in range(KEYS)]
    producer = cluster.producer(acks=1, linger_ms=5)
    send = producer.send
    started, cpu_started = time.perf_counter(), _cpu_s()
    for index in range(records):
        send(topic, values[index % 1000], keys[index % KEYS])
    producer.flush()
    elapsed_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    producer.close()
    return _result(records, elapsed_s, cpu_s)


def bench_wire_produce(bootstrap: str, topic: str, records: int) -> dict:
    values, keys = _values(), [b"key-%d" % index for index in range(KEYS)]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000, "batch.size": 1_000_000})
    failures = []

    def report(error, _message):
        if error is not None:
            failures.append(error)

    produce, poll = producer.produce, producer.poll
    started, cpu_started = time.perf_counter(), _cpu_s()
    for index in range(records):
        while True:
            try:
                produce(topic, values[index % 1000], keys[index % KEYS], on_delivery=report)
                break
            except BufferError:
                poll(0.01)  # the local queue is full: let deliveries drain it
        if index % 10_000 == 0:
            poll(0)
    remaining = producer.flush(TIMEOUT_S)
    elapsed_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    if remaining or failures:
        raise RuntimeError(f"confluent-kafka left {remaining} records undelivered; errors: {failures[:3]}")
    return _result(records, elapsed_s, cpu_s)


def bench_native_poll(cluster, topic: str, expected: int) -> dict:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.poll(timeout_s=0.1, max_records=1)  # resolve positions before timing
    consumer.seek_to_beginning()
    received, started, cpu_started = 0, time.perf_counter(), _cpu_s()
    while received < expected:
        received += len(consumer.poll(timeout_s=1.0, max_records=100_000))
        if time.perf_counter() - started > TIMEOUT_S:
            raise RuntimeError(f"native poll() read {received} of {expected} records")
    elapsed_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    consumer.close()
    return _result(received, elapsed_s, cpu_s)


def bench_wire_consume(bootstrap: str, topic: str, expected: int) -> dict:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wire-bench-assign-only",
                         "enable.auto.commit": False, "fetch.max.bytes": 50 * 1024 * 1024,
                         "max.partition.fetch.bytes": 8 * 1024 * 1024, "queued.min.messages": 1_000_000,
                         "fetch.queue.backoff.ms": 10})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    # Untimed, as for poll(): connections, metadata and the first offsets are resolved by
    # the first record; then every partition starts again from offset 0.
    while not [m for m in consumer.consume(1, timeout=1.0) if m.error() is None]:
        pass
    for partition in range(PARTITIONS):
        consumer.seek(TopicPartition(topic, partition, 0))
    received, started, cpu_started = 0, time.perf_counter(), _cpu_s()
    while received < expected:
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error() is None:
                received += 1
        if time.perf_counter() - started > TIMEOUT_S:
            raise RuntimeError(f"confluent-kafka consumer read {received} of {expected} records")
    elapsed_s, cpu_s = time.perf_counter() - started, _cpu_s() - cpu_started
    consumer.close()
    return _result(received, elapsed_s, cpu_s)


def main() -> int:
    parser = argparse.ArgumentParser(description="rafka Kafka wire-protocol benchmark")
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    namespace = f"wire-bench-{os.getpid()}"
    data_dir = tempfile.mkdtemp(prefix="rafka-wire-bench-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", namespace=namespace)
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace=namespace, wire_port=0)
    results: dict = {"records": args.records, "value_bytes": VALUE_BYTES, "partitions": PARTITIONS, "acks": 1,
                     "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
                     "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    try:
        bootstrap = cluster.bootstrap_servers
        admin = cluster.admin()
        for topic in ("native", "wire"):
            admin.create_topic(topic, partitions=PARTITIONS)
        results["native_send"] = bench_native_send(cluster, "native", args.records)
        print(f"native send():          {results['native_send']['records_per_s']:>10,.0f} records/s")
        results["wire_produce"] = bench_wire_produce(bootstrap, "wire", args.records)
        print(f"confluent-kafka produce:{results['wire_produce']['records_per_s']:>10,.0f} records/s")
        results["native_poll"] = bench_native_poll(cluster, "native", args.records)
        print(f"native poll():          {results['native_poll']['records_per_s']:>10,.0f} records/s")
        results["wire_consume"] = bench_wire_consume(bootstrap, "wire", args.records)
        print(f"confluent-kafka consume:{results['wire_consume']['records_per_s']:>10,.0f} records/s")
        produce_ratio = results["wire_produce"]["records_per_s"] / results["native_send"]["records_per_s"]
        consume_ratio = results["wire_consume"]["records_per_s"] / results["native_poll"]["records_per_s"]
        results["targets"] = {"produce_vs_send": produce_ratio, "consume_vs_poll": consume_ratio,
                              "produce_met": produce_ratio >= 1.0, "consume_met": consume_ratio >= 1.0}
        print(f"wire/native: produce {produce_ratio:.2f}x, consume {consume_ratio:.2f}x (target >= 1.0 each)")
        for name in ("native_send", "wire_produce", "native_poll", "wire_consume"):
            figures = results[name]
            print(f"  {name}: this process {figures['client_cpu_us_per_record']:.2f} us CPU/record, "
                  f"{figures['client_bound_records_per_s']:,.0f} records/s if it never waited")
    finally:
        cluster.shutdown()
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
