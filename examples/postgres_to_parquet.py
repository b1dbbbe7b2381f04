"""PostgreSQL table → topic → stream job → Parquet dataset, checked row by row.

Run:  python examples/postgres_to_parquet.py  [--rows N] [--data-dir DIR]

It starts an embedded rafka cluster with Connect, and a throwaway PostgreSQL server
from the machine's own binaries (tests/connect/postgres_server.py: a fresh cluster in
a temp dir, stopped and removed at the end). Then:

    table orders ─ PostgresSource (incrementing id) ─ topic pg.orders ─
        stream job: drop cancelled orders, add total_cents (vectorized, map_batches) ─
        topic orders-enriched ─ ParquetSink ─ dataset topic=orders-enriched/partition=<p>/

It reads the dataset back with pyarrow and checks that every order that is not
cancelled is there exactly once with the right total, and that no cancelled one is;
prints the throughput of the whole pipeline; exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

try:
    import psycopg
except ImportError:
    sys.exit("this example needs psycopg: pip install 'rafka[postgres]'")

import rafka
from rafka.connect import Connect
from rafka.streams import StreamsApp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "connect"))
from postgres_server import PostgresServer  # noqa: E402 - the test suite's throwaway server

SOURCE_TOPIC = "pg.orders"
ENRICHED_TOPIC = "orders-enriched"
PARTITIONS = 2
CUSTOMERS = 500
PIPELINE_TIMEOUT_S = 300


def expected_orders(rows: int) -> list[tuple]:
    """(id, customer, quantity, unit_price_cents, status) of the rows inserted; ids are
    1..rows (a fresh serial column)."""
    return [(n, f"customer-{n % CUSTOMERS:03d}", 1 + n % 7, 100 + (n * 37) % 9_900,
             "cancelled" if n % 10 == 0 else "placed")
            for n in range(1, rows + 1)]


def fill_table(url: str, orders: list[tuple]) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, "
                           "quantity int NOT NULL, unit_price_cents int NOT NULL, status text NOT NULL, "
                           "created_at timestamptz NOT NULL DEFAULT now())")
        with connection.cursor().copy("COPY orders (customer, quantity, unit_price_cents, status) FROM STDIN") as copy:
            for _, customer, quantity, price, status in orders:
                copy.write_row((customer, quantity, price, status))


def enrich(table: pa.Table) -> pa.Table:
    """Drop cancelled orders and add total_cents; whole Arrow tables, no per-row Python."""
    table = table.filter(pc.not_equal(pc.struct_field(table.column("value"), "status"), "cancelled"))
    value = table.column("value").combine_chunks()
    names = ["id", "customer", "quantity", "unit_price_cents"]
    total = pc.multiply(pc.struct_field(value, "quantity"), pc.struct_field(value, "unit_price_cents"))
    enriched = pa.StructArray.from_arrays([pc.struct_field(value, name) for name in names] + [total],
                                          names=[*names, "total_cents"])
    return pa.table({"key": table.column("key"), "value": enriched, "timestamp": table.column("timestamp")})


def dataset_rows(path: str) -> pa.Table | None:
    if not os.path.isdir(path):
        return None
    return ds.dataset(path, format="parquet", partitioning="hive").to_table()


def wait_until(what: str, predicate, deadline: float) -> float:
    """Wait for ``predicate()``; return when it held (perf_counter), or raise."""
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)
    return time.perf_counter()


def topic_size(consumer, topic: str) -> int:
    partitions = [rafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
    return sum(consumer.end_offsets(partitions).values())


def check(orders: list[tuple], table: pa.Table) -> list[str]:
    """What is wrong with the dataset (empty when every check passed)."""
    problems = []
    wanted = {n: (customer, quantity, quantity * price) for n, customer, quantity, price, status in orders
              if status != "cancelled"}
    cancelled = {n for n, *_, status in orders if status == "cancelled"}
    ids = table.column("id").to_pylist()
    got = dict(zip(ids, zip(table.column("customer").to_pylist(), table.column("quantity").to_pylist(),
                            table.column("total_cents").to_pylist())))
    missing = sorted(set(wanted) - set(got))
    if missing:
        problems.append(f"{len(missing)} orders missing from the dataset, e.g. {missing[:10]}")
    wrong = sorted(n for n in set(wanted) & set(got) if got[n] != wanted[n])
    if wrong:
        problems.append(f"{len(wrong)} orders with wrong values, e.g. id {wrong[0]}: {got[wrong[0]]} != {wanted[wrong[0]]}")
    leaked = sorted(set(got) & cancelled)
    if leaked:
        problems.append(f"{len(leaked)} cancelled orders in the dataset, e.g. {leaked[:10]}")
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} duplicate rows (the dataset writes each offset once)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows inserted into the table")
    parser.add_argument("--data-dir", default=None, help="where the cluster and the dataset go (default: a temp dir)")
    args = parser.parse_args()
    if args.rows < 1:
        parser.error(f"--rows must be at least 1, got {args.rows}")
    own_dir = args.data_dir is None
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rafka-pg-parquet-")
    dataset_path = os.path.join(data_dir, "dataset")
    orders = expected_orders(args.rows)
    kept = sum(1 for order in orders if order[4] != "cancelled")

    postgres = PostgresServer()
    cluster = connect = job = None
    try:
        url = postgres.start()
        fill_table(url, orders)
        print(f"PostgreSQL up ({postgres.bin_dir}); table orders has {args.rows:,} rows")
        cluster = rafka.Cluster.start(data_dir=os.path.join(data_dir, "cluster"), brokers=1)
        connect = Connect.start(cluster, rest_port=0, file_roots=[data_dir])  # the dataset lives under it
        print(f"rafka cluster up; Connect REST API at {connect.rest_url}")
        admin = cluster.admin()
        for topic in (SOURCE_TOPIC, ENRICHED_TOPIC):
            admin.create_topic(topic, partitions=PARTITIONS)

        app = StreamsApp("orders-enrich")
        (app.source(SOURCE_TOPIC, value_format="json")
            .map_batches(enrich, name="enrich")
            .to(ENRICHED_TOPIC))
        job = app.start(cluster, workers=1)
        connect.create("orders-parquet", {
            "connector.class": "ParquetSink", "topics": ENRICHED_TOPIC, "path": dataset_path,
            "flush.size": 5_000, "rotate.interval.ms": 1_000, "offset.flush.interval.ms": 1_000,
        })
        started = time.perf_counter()
        connect.create("orders-source", {
            "connector.class": "PostgresSource", "connection.url": url, "table.whitelist": "orders",
            "mode": "incrementing", "incrementing.column.name": "id", "topic.prefix": "pg.",
            "poll.interval.ms": 200,
        })

        deadline = time.monotonic() + PIPELINE_TIMEOUT_S
        probe = cluster.consumer()
        in_topic = wait_until(f"{args.rows} rows in {SOURCE_TOPIC}",
                              lambda: topic_size(probe, SOURCE_TOPIC) >= args.rows, deadline)
        enriched = wait_until(f"{kept} rows in {ENRICHED_TOPIC}",
                              lambda: topic_size(probe, ENRICHED_TOPIC) >= kept, deadline)
        probe.close()
        in_parquet = wait_until(f"{kept} rows in the Parquet dataset",
                                lambda: (rows := dataset_rows(dataset_path)) is not None and rows.num_rows >= kept,
                                deadline)
        table = dataset_rows(dataset_path)
        files = len(ds.dataset(dataset_path, format="parquet", partitioning="hive").files)

        total_s = in_parquet - started
        print(f"table → {SOURCE_TOPIC}: {args.rows:,} rows after {in_topic - started:.1f} s")
        print(f"stream job → {ENRICHED_TOPIC}: {kept:,} rows (cancelled ones dropped) after {enriched - started:.1f} s")
        print(f"ParquetSink → {dataset_path}: {table.num_rows:,} rows in {files} files after {total_s:.1f} s")
        print(f"throughput, table to Parquet: {args.rows / total_s:,.0f} rows/s (from creating the source connector, "
              "so it includes starting its task actor)")
        problems = check(orders, table)
        for problem in problems:
            print("FAILED:", problem)
        if problems:
            return 1
        print(f"OK: all {kept:,} orders that are not cancelled are in the dataset once, with the right totals")
        return 0
    finally:
        if job is not None:
            job.stop()
        if connect is not None:
            connect.shutdown()
        if cluster is not None:
            cluster.shutdown()
        postgres.stop()
        if own_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
