"""rafka quickstart: a local cluster, one topic, 100,000 keyed records there and back.

Run:  python examples/quickstart.py  [--records N] [--data-dir DIR]

It starts an embedded Ray instance and a rafka cluster (a controller, one broker, three
partition replicas), produces N keyed records with ``send()``, reads them all back with a
consumer assigned to every partition, checks that each record arrived exactly once with
its key in the partition Kafka's partitioner chose and offsets in order, prints a short
summary with throughput, and shuts everything down.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import rafka
from rafka.client.partitioner import partition_for_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--data-dir", default=None, help="where the cluster keeps its logs (default: a temp dir)")
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rafka-quickstart-")

    started = time.perf_counter()
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1)
    try:
        print(f"cluster up in {time.perf_counter() - started:.1f} s (data in {data_dir})")
        admin = cluster.admin()
        admin.create_topic("clicks", partitions=3, config={"retention.ms": "604800000"})
        print("topics:", admin.list_topics())

        producer = cluster.producer(acks=1, linger_ms=5)
        produce_started = time.perf_counter()
        futures = [
            producer.send("clicks", value=b"click-%08d" % index, key=b"user-%d" % (index % 1000))
            for index in range(args.records)
        ]
        producer.flush()
        produce_s = time.perf_counter() - produce_started
        landed = [future.result() for future in futures]
        producer.close()

        consumer = cluster.consumer(auto_offset_reset="earliest")
        consumer.assign([rafka.TopicPartition("clicks", p) for p in range(3)])
        consume_started = time.perf_counter()
        received: dict[bytes, tuple[int, int, bytes]] = {}
        last_offset = {p: -1 for p in range(3)}
        while len(received) < args.records and time.perf_counter() - consume_started < 60:
            for record in consumer.poll(timeout_s=1.0, max_records=50_000):
                assert record.offset > last_offset[record.partition], "offsets must increase per partition"
                last_offset[record.partition] = record.offset
                assert record.value not in received, f"duplicate record {record.value!r}"
                received[record.value] = (record.partition, record.offset, record.key)
        consume_s = time.perf_counter() - consume_started
        consumer.close()

        problems = 0
        for index, metadata in enumerate(landed):
            value = b"click-%08d" % index
            key = b"user-%d" % (index % 1000)
            got = received.get(value)
            if got is None or got != (metadata.partition, metadata.offset, key) or \
                    metadata.partition != partition_for_key(key, 3):
                problems += 1
        per_partition = {p: sum(1 for m in landed if m.partition == p) for p in range(3)}
        print(f"produced {args.records:,} records in {produce_s:.2f} s ({args.records / produce_s:,.0f} records/s)")
        print(f"consumed {len(received):,} records in {consume_s:.2f} s ({len(received) / consume_s:,.0f} records/s)")
        print(f"records per partition: {per_partition}")
        if problems or len(received) != args.records:
            print(f"FAILED: {problems} records missing or misplaced")
            return 1
        print("OK: every record came back once, in its key's partition, in offset order")
        return 0
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
