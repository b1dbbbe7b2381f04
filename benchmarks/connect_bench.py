"""Connect benchmark: FileSource → topic and topic → ParquetSink, in records/s.

Measures, on an embedded 1-broker cluster with Connect (each connector task a Ray
actor, as deployed):

* **file source**: ``records`` JSON lines (about ``value_bytes`` each) in one file, read
  by a ``FileSource`` task (``format=json``) into a topic of ``partitions`` partitions;
  records/s from the first look that finds records in the topic until the last one is
  there, over the records that arrived in between (the time to start the connector and
  its task actor is reported separately as ``startup_s``);
* **parquet sink**: a ``ParquetSink`` task reading that topic into a Parquet dataset;
  records/s from the first look at the task's status that shows converted records
  until the dataset holds every row, over the records converted in between (files of ``flush.size`` rows; the last one rolled by
  ``rotate.interval.ms``); the dataset is then read back and checked: one row per
  offset, every offset once.

Run:  python benchmarks/connect_bench.py [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import ray

import rafka
from rafka.connect import Connect

POLL_S = 0.05
TIMEOUT_S = 900


def write_lines(path: str, records: int, value_bytes: int) -> int:
    """``records`` JSON lines of about ``value_bytes`` each; returns the file's size."""
    padding = "x" * max(0, value_bytes - 60)
    with open(path, "w") as out:
        for start in range(0, records, 10_000):
            out.write("".join(f'{{"id": {n}, "user": "user-{n % 1000:03d}", "amount": {n % 977 / 10}, '
                              f'"pad": "{padding}"}}\n' for n in range(start, min(records, start + 10_000))))
    return os.path.getsize(path)


def wait_for(what: str, predicate, deadline: float) -> float:
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_S)
    return time.perf_counter()


def wait_for_first(what: str, count, deadline: float) -> tuple[float, int]:
    """(when ``count()`` was first above 0, its value then): the rate is taken over the
    records after it, since a whole batch may be there at the first look."""
    while (seen := count()) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(POLL_S)
    return time.perf_counter(), seen


def rate(records: int, first_count: int, first: float, done: float) -> int:
    return round((records - first_count) / max(done - first, 1e-9))


def bench_file_source(cluster, connect, path: str, topic: str, partitions: int, records: int) -> dict:
    consumer = cluster.consumer()
    tps = [rafka.TopicPartition(topic, p) for p in range(partitions)]
    in_topic = lambda: sum(consumer.end_offsets(tps).values())  # noqa: E731
    deadline = time.monotonic() + TIMEOUT_S
    started = time.perf_counter()
    connect.create("bench-file-source", {"connector.class": "FileSource", "file": path, "topic": topic,
                                         "format": "json", "batch.size": 10_000})
    first, first_count = wait_for_first("the first record in the topic", in_topic, deadline)
    done = wait_for(f"{records} records in the topic", lambda: in_topic() >= records, deadline)
    count = in_topic()
    connect.delete("bench-file-source")
    consumer.close()
    return {"records": records, "records_in_topic": count, "startup_s": round(first - started, 2),
            "records_at_first_look": first_count, "seconds": round(done - first, 2),
            "records_per_s": rate(records, first_count, first, done)}


def dataset_rows(path: str) -> int:
    if not os.path.isdir(path):
        return 0
    return ds.dataset(path, format="parquet", partitioning="hive").count_rows()


def bench_parquet_sink(connect, topic: str, dataset_path: str, records: int, flush_size: int) -> dict:
    name = "bench-parquet-sink"
    deadline = time.monotonic() + TIMEOUT_S
    started = time.perf_counter()
    connect.create(name, {"connector.class": "ParquetSink", "topics": topic, "path": dataset_path,
                          "flush.size": flush_size, "rotate.interval.ms": 1_000})
    converted = lambda: sum(task.get("records", 0) for task in connect.status(name)["tasks"])  # noqa: E731
    first, first_count = wait_for_first("the sink's first record", converted, deadline)
    done = wait_for(f"{records} rows in the dataset", lambda: dataset_rows(dataset_path) >= records, deadline)
    connect.delete(name)
    table = ds.dataset(dataset_path, format="parquet", partitioning="hive").to_table(columns=["_partition", "_offset"])
    distinct = pc.count_distinct(pc.binary_join_element_wise(
        table.column("_partition").cast(pa.string()), table.column("_offset").cast(pa.string()), ":")).as_py()
    files = len(ds.dataset(dataset_path, format="parquet", partitioning="hive").files)
    return {"records": records, "rows_in_dataset": table.num_rows, "distinct_offsets": distinct, "files": files,
            "flush_size": flush_size, "startup_s": round(first - started, 2), "records_at_first_look": first_count,
            "seconds": round(done - first, 2), "records_per_s": rate(records, first_count, first, done)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--value-bytes", type=int, default=100, help="about this many bytes per JSON line")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--flush-size", type=int, default=100_000, help="ParquetSink rows per file")
    parser.add_argument("--json", default=None, help="Also write the results to this file.")
    args = parser.parse_args()
    if args.records < 1:
        parser.error(f"--records must be at least 1, got {args.records}")

    with tempfile.TemporaryDirectory() as data_dir:
        path = os.path.join(data_dir, "input.jsonl")
        file_bytes = write_lines(path, args.records, args.value_bytes)
        cluster = rafka.Cluster.start(data_dir=os.path.join(data_dir, "cluster"), brokers=1, include_dashboard=False)
        try:
            connect = Connect.start(cluster, rest_port=0, file_roots=[data_dir])
            try:
                cluster.admin().create_topic("bench-connect", partitions=args.partitions)
                source = bench_file_source(cluster, connect, path, "bench-connect", args.partitions, args.records)
                source["file_bytes"] = file_bytes
                source["mb_per_s"] = round(source["records_per_s"] * file_bytes / args.records / 1e6, 1)
                print("file source → topic:", source, flush=True)
                sink = bench_parquet_sink(connect, "bench-connect", os.path.join(data_dir, "dataset"), args.records,
                                          args.flush_size)
                print("topic → parquet sink:", sink, flush=True)
            finally:
                connect.shutdown()
        finally:
            cluster.shutdown()
    ok = source["records_in_topic"] == args.records and sink["rows_in_dataset"] == sink["distinct_offsets"] == args.records
    results = {
        "benchmark": "connect_bench", "partitions": args.partitions, "value_bytes": args.value_bytes,
        "file_source": source, "parquet_sink": sink, "checks_passed": ok,
        "machine": {"python": platform.python_version(), "ray": ray.__version__, "pyarrow": pa.__version__,
                    "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    if not ok:
        print("FAILED: the topic or the dataset does not hold each record exactly once")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
