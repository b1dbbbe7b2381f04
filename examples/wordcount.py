"""Windowed word count: lines in, a count per word per minute out.

Starts an embedded rafka cluster, writes 20,000 lines (``--lines N``) with event times
spread evenly over the last five minutes to the topic `lines`, and runs a stream job on
two task actors:

    lines ─ split into words (vectorized, map_batches) ─ repartition by word ─
        tumbling 1-minute windows ─ count (emitted when a window closes) ─ word-counts

then reads `word-counts` back and checks that every window the watermark closed was
emitted, with the count done in plain Python, and no open one.

Run:  python examples/wordcount.py  [--lines N]

(tests/test_examples.py runs it with fewer lines: the checks are the same, and the
number of lines proves nothing more.)
"""

import argparse
import collections
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import rafka
from rafka.client.partitioner import partition_for_key
from rafka.streams import StreamsApp, TimeWindows

WORDS = "the quick brown fox jumps over the lazy dog while ray actors stream arrow batches".split()
MINUTE_MS = 60_000
GRACE_MS = 5_000


def split_words(table: pa.Table) -> pa.Table:
    """One record per word, keyed by the word; runs on whole Arrow tables."""
    words = pc.split_pattern(pc.utf8_lower(table.column("value")), " ")
    parents = pc.list_parent_indices(words)
    flat = pc.list_flatten(words)
    return pa.table({"key": flat, "value": pa.array(np.ones(len(flat), np.int64)),
                     "timestamp": table.column("timestamp").take(parents)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="how many lines to count (default 20,000)")
    args = parser.parse_args()
    if args.lines < 100:
        parser.error(f"--lines must be at least 100 (enough to fill every minute), got {args.lines}")
    # The lines' event times span the same five minutes whatever their number.
    step_ms = 5 * MINUTE_MS // args.lines
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1)
        try:
            admin = cluster.admin()
            admin.create_topic("lines", partitions=2)
            admin.create_topic("word-counts", partitions=2)

            rng = np.random.default_rng(42)
            start_ms = (int(time.time() * 1000) - 5 * MINUTE_MS) // MINUTE_MS * MINUTE_MS
            lines = [(" ".join(rng.choice(WORDS, size=rng.integers(3, 9))), start_ms + i * step_ms) for i in range(args.lines)]
            with cluster.producer(acks="all", linger_ms=5) as producer:
                for index, (text, timestamp_ms) in enumerate(lines):
                    producer.send("lines", text.encode(), key=str(index).encode(), timestamp_ms=timestamp_ms)

            app = StreamsApp("wordcount")
            (app.source("lines", value_format="utf8")
                .map_batches(split_words, name="split")
                .group_by_key()
                .window(TimeWindows.tumbling(MINUTE_MS, grace_ms=GRACE_MS))
                .count(name="per-minute", emit="final")
                .to_stream()
                .to("word-counts"))
            started = time.perf_counter()
            job = app.start(cluster, workers=2)
            try:
                job.wait_caught_up(timeout_s=300)
            finally:
                job.stop()
            elapsed_s = time.perf_counter() - started

            expected = collections.Counter((word, ts - ts % MINUTE_MS) for text, ts in lines for word in text.split())
            consumer = cluster.consumer(auto_offset_reset="earliest")
            partitions = [rafka.TopicPartition("word-counts", p) for p in range(2)]
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            emitted = {}
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                for record in consumer.poll(timeout_s=1.0):
                    window = int(dict(record.headers)["window_start"])
                    emitted[(record.key.decode(), window)] = int(record.value)
            consumer.close()
            wrong = {group: count for group, count in emitted.items() if expected[group] != count}
            assert not wrong, f"counts differ from the reference: {wrong}"
            # Every window the watermark closed must be there. The counting tasks' watermark
            # is the slowest line partition's newest event time while both are busy, the
            # newest of all once both are idle: a window closed by the first must be
            # emitted, one not closed by the second must not be.
            newest = {}
            for index, (_, timestamp_ms) in enumerate(lines):
                partition = partition_for_key(str(index).encode(), 2)
                newest[partition] = max(newest.get(partition, timestamp_ms), timestamp_ms)
            must = {g for g in expected if g[1] + MINUTE_MS + GRACE_MS <= min(newest.values())}
            may = {g for g in expected if g[1] + MINUTE_MS + GRACE_MS <= max(newest.values())}
            missing = must - emitted.keys()
            assert must and not missing, f"windows that closed were not emitted: {sorted(missing)[:10]}"
            assert emitted.keys() <= may, f"open windows were emitted: {sorted(emitted.keys() - may)[:10]}"
            windows = sorted({window for _, window in emitted})
            print(f"{len(lines)} lines, {sum(expected.values())} words: {len(emitted)} (word, minute) counts in "
                  f"{len(windows)} closed windows, every closed window emitted and equal to the reference; "
                  f"job ran {elapsed_s:.1f} s")
            last = windows[-1]
            top = sorted(((c, w) for (w, start), c in emitted.items() if start == last), reverse=True)[:3]
            print("busiest words of the last closed minute:", ", ".join(f"{w} {c}" for c, w in top))
            print("OK")
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
