"""Streams benchmark: a 1-minute tumbling-window count, topic to topic.

``--events`` events (default 1,000,000) with ``--keys`` distinct keys (default 10,000)
and event times spread over ``--minutes`` minutes are produced to a topic of
``--partitions`` partitions (keyed, so no repartition is needed). A stream job
(``source → group_by_key → window(tumbling 60 s) → count(emit=final) → to``) on
``--workers`` task actors reads them and writes one count per (key, closed window) to
an output topic. Three measurements, each checked:

* **preloaded** (the headline): the events are in the topic before the job starts; the
  job's events/s from the moment its workers got their tasks until every input offset
  is committed — consuming, aggregating, writing the output and committing inside the
  measured time; producing is timed on its own and actor start-up is reported
  separately. This is what "a job reading a topic and writing a topic" does.
* **live**: the job already running on the empty topic, its tasks assigned; from the
  start of production (sending Arrow tables built beforehand) until every input offset
  is committed — the producer, the brokers and the job sharing the machine.
* **per-record** (preloaded): ``reduce`` with a Python lambda instead of the vectorized
  ``count``, for contrast.

The output is checked against a count done with numpy: every window the job had to
close, and no other.

Run:  python benchmarks/streams_bench.py [--events N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import pyarrow as pa
import ray

import rafka
from rafka.client.partitioner import partition_for_key
from rafka.streams import StreamsApp, TimeWindows


def make_events(events: int, keys: int, minutes: int, start_ms: int) -> tuple[list[pa.Table], np.ndarray]:
    """The input as Arrow tables of 100,000 rows, built before the clock starts (numpy to
    Arrow conversion is the test's, not the platform's), and [key ids, timestamps]."""
    rng = np.random.default_rng(7)
    key_ids = rng.integers(0, keys, events)
    timestamps = start_ms + np.sort(rng.integers(0, minutes * 60_000, events))
    key_names = np.array([b"key-%05d" % k for k in range(keys)], dtype=object)
    chunk = 100_000
    tables = []
    for begin in range(0, events, chunk):
        ids = key_ids[begin:begin + chunk]
        tables.append(pa.table({"key": pa.array(key_names[ids].tolist(), pa.binary()),
                                "value": pa.array([b"1"] * len(ids), pa.binary()),
                                "timestamp": pa.array(timestamps[begin:begin + chunk], pa.int64())}))
    return tables, np.stack([key_ids, timestamps])


def produce(cluster, topic: str, tables: list[pa.Table], produced: np.ndarray) -> np.ndarray:
    """Send the tables (timed: producing is part of the measurement)."""
    with cluster.producer(acks=1, linger_ms=5) as producer:
        for table in tables:
            producer.send_batch(topic, table)
    return produced


def build_app(source: str, sink: str, variant: str, commit_interval_ms: int | None) -> StreamsApp:
    options = {} if commit_interval_ms is None else {"commit_interval_ms": commit_interval_ms}
    app = StreamsApp(f"bench-{variant}-{time.monotonic_ns()}", **options)
    windowed = app.source(source, value_format="int").group_by_key().window(TimeWindows.tumbling(60_000))
    if variant == "per-record":
        table = windowed.reduce(lambda total, value: total + value, name="counts", emit="final")
    else:
        table = windowed.count(name="counts", emit="final")
    table.to_stream().to(sink)
    return app


def run(cluster, source: str, sink: str, variant: str, mode: str, workers: int, produce_events,
        commit_interval_ms: int | None) -> tuple[dict, np.ndarray]:
    """One measurement; ``mode`` says what falls inside the timed interval.

    ``preloaded``: the events are in the source topic before the job starts (production
    is timed on its own); timed from the moment the first worker got its tasks (the
    workers report the time) until the job has committed every input offset. The
    coordinator holds the partitions back until every worker has joined, so the job
    runs on all of them from the start.

    ``live``: the job starts on the empty topic; once every worker owns its tasks, the
    events are produced and the clock runs until the job has committed all of them —
    producer, brokers and job sharing the machine."""
    app = build_app(source, sink, variant, commit_interval_ms)
    produced, producing_s = None, None
    if mode == "preloaded":
        began = time.perf_counter()
        produced = produce_events()
        producing_s = time.perf_counter() - began
    started = time.perf_counter()
    job = app.start(cluster, workers=workers, actor_options={"num_cpus": 0})
    try:
        partitions = cluster.metadata.partition_count(source)
        while True:
            before = job.stats()
            owned = [len(s["tasks"]) for s in before]
            if sum(owned) == partitions and min(owned) > 0:
                break
            # Rarely: the clock's ends come from the workers (their first assignment and
            # last commit), and every stats call takes CPU from them.
            time.sleep(0.1)
        if mode == "preloaded":
            ready_unix_s = min(s["first_assigned_unix_s"] for s in before)
            ready_s = time.perf_counter() - (time.time() - ready_unix_s)
        else:
            ready_s = time.perf_counter()
            produced = produce_events()
            producing_s = time.perf_counter() - ready_s
        job.wait_caught_up(timeout_s=1800, poll_interval_s=0.25)  # the coordinator holds every input offset
        stats = job.stats()
        # The end: when the last worker's last commit returned (reported by the workers;
        # wait_caught_up only polls the coordinator for it).
        done_s = time.perf_counter() - (time.time() - max(s["last_commit_unix_s"] for s in stats))
        records = sum(s["records"] for s in stats)
        # Per worker, during the measurement: wall and thread-CPU seconds in poll /
        # process / commit, polls that brought records, and the actor process's CPU
        # seconds (from when the bench saw the tasks assigned, for the preloaded mode).
        loops = [{"records": new["records"] - old["records"],
                  "loop_s": {phase: round(seconds - old["loop_s"][phase], 2) for phase, seconds in new["loop_s"].items()},
                  "loop_cpu_s": {phase: round(seconds - old["loop_cpu_s"][phase], 2)
                                 for phase, seconds in new["loop_cpu_s"].items()},
                  "polls_with_records": new["polls_with_records"] - old["polls_with_records"],
                  "cpu_s": round(new["process_cpu_s"] - old["process_cpu_s"], 2)}
                 for old, new in zip(before, stats)]
    finally:
        job.stop()
    return {"variant": variant, "mode": mode, "workers": workers, "events": records,
            "startup_s": round(ready_s - started, 2), "seconds": round(done_s - ready_s, 3),
            "producing_s": round(producing_s, 2), "producing_events_per_s": round(records / producing_s),
            "events_per_s": round(records / (done_s - ready_s)), "workers_loop": loops}, produced


def check_output(cluster, sink: str, produced: np.ndarray, partitions: int) -> int:
    """Every window the job had to close was emitted, with numpy's count, and no other;
    returns how many were emitted.

    The source is keyed and the job does not repartition, so each task's stream time is
    the newest event of its partition, and a window is closed once its end is at or
    before it (no grace)."""
    key_ids, timestamps = produced
    key_names = [b"key-%05d" % key_id for key_id in range(int(key_ids.max()) + 1)]
    partition_of_key = np.array([partition_for_key(name, partitions) for name in key_names])
    partition = partition_of_key[key_ids]
    newest = np.full(partitions, np.iinfo(np.int64).min)
    np.maximum.at(newest, partition, timestamps)
    windows = timestamps - timestamps % 60_000
    pairs, counts = np.unique(np.stack([key_ids, windows]), axis=1, return_counts=True)
    closed = pairs[1] + 60_000 <= newest[partition_of_key[pairs[0]]]
    reference = {(key_names[key_id], window): count
                 for (key_id, window), count in zip(pairs[:, closed].T.tolist(), counts[closed].tolist())}
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(sink, p) for p in consumer.partitions_for_topic(sink)])
    ends = consumer.end_offsets(consumer.assignment())
    emitted: dict[tuple[bytes, int], int] = {}
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for record in consumer.poll(timeout_s=0.5, max_records=100_000):
            group = (record.key, int(dict(record.headers)["window_start"]))
            assert group in reference, f"window {group} is still open but was emitted"
            assert int(record.value) == reference[group], (record, reference[group])
            emitted[group] = int(record.value)
    consumer.close()
    missing = reference.keys() - emitted.keys()
    assert not missing, f"{len(missing)} closed windows were not emitted, e.g. {sorted(missing)[:5]}"
    return len(emitted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slow-events", type=int, default=200_000, help="Events for the per-record variant.")
    parser.add_argument("--commit-interval-ms", type=int, default=None,
                        help="The job's commit interval (default: StreamsApp's). The job also commits when "
                             "its input is drained; that last commit ends each measurement.")
    parser.add_argument("--modes", default="preloaded,live",
                        help="Which vectorized measurements to run (comma-separated: preloaded, live).")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"benchmark": "streams_bench", "keys": args.keys, "partitions": args.partitions,
               "machine": {"python": platform.python_version(), "ray": ray.__version__, "pyarrow": pa.__version__,
                           "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, include_dashboard=False)
        try:
            admin = cluster.admin()
            start_ms = (int(time.time() * 1000) - args.minutes * 60_000) // 60_000 * 60_000
            runs = []
            plan = [("vectorized", "preloaded", args.events), ("vectorized", "live", args.events),
                    ("per-record", "preloaded", args.slow_events)]
            for variant, mode, events in plan:
                if events <= 0 or (variant == "vectorized" and mode not in args.modes.split(",")):
                    continue
                source, sink = f"events-{variant}-{mode}", f"counts-{variant}-{mode}"
                admin.create_topic(source, partitions=args.partitions)
                admin.create_topic(sink, partitions=args.partitions)
                tables, events_made = make_events(events, args.keys, args.minutes, start_ms)
                result, produced = run(cluster, source, sink, variant, mode, args.workers,
                                       lambda: produce(cluster, source, tables, events_made),  # noqa: B023 - run() calls it now
                                       args.commit_interval_ms)
                result["windows_emitted_and_checked"] = check_output(cluster, sink, produced, args.partitions)
                print(result, flush=True)
                runs.append(result)
            results["runs"] = runs
        finally:
            cluster.shutdown()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
