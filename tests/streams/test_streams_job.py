"""Stream jobs on task actors: results equal a Python reference, a killed worker loses
no input and its state comes back from the changelog, and a restarted application
resumes from its committed offsets."""

from __future__ import annotations

import sys
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray import cloudpickle

import rafka
from rafka.client.partitioner import partition_for_key
from rafka.streams import StreamsApp, TimeWindows

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORDS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "yuzu"]
JOB = {"actor_options": {"num_cpus": 0}, "session_timeout_ms": 4000, "heartbeat_interval_ms": 500}


def split_words(table: pa.Table) -> pa.Table:
    """One record per word of each line (vectorized), keyed by the word."""
    words = pc.split_pattern(table.column("value"), " ")
    parents = pc.list_parent_indices(words)
    flat = pc.list_flatten(words)
    return pa.table({"key": flat, "value": pa.array(np.ones(len(flat), np.int64)),
                     "timestamp": table.column("timestamp").take(parents)})


def lines(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(count)]


def produce_lines(cluster, topic, texts, start_ms):
    with cluster.producer(acks="all", linger_ms=5) as producer:
        for index, text in enumerate(texts):
            producer.send(topic, text.encode(), key=str(index).encode(), timestamp_ms=start_ms + index)


def latest_per_key(cluster, topic, value_format="int"):
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    ends = consumer.end_offsets(consumer.assignment())
    latest = {}
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        for record in consumer.poll(timeout_s=0.5, max_records=100_000):
            latest[record.key.decode()] = int(record.value) if value_format == "int" else record.value
    consumer.close()
    return latest


def wordcount_app(app_id, source, sink):
    app = StreamsApp(app_id, commit_interval_ms=100)
    app.source(source, value_format="utf8").map_batches(split_words, name="split") \
        .group_by_key().count(name="counts").to_stream().to(sink)
    return app


def test_wordcount_survives_a_killed_worker_and_an_application_restart(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    admin.create_topic(topic + "-counts", partitions=2)
    now_ms = int(time.time() * 1000)
    first, second, third = lines(2000, 1), lines(2000, 2), lines(500, 3)
    produce_lines(cluster, topic, first, now_ms)
    app = wordcount_app("wc-" + topic, topic, topic + "-counts")
    job = app.start(cluster, workers=2, **JOB)
    try:
        job.wait_caught_up(timeout_s=120)
        assert latest_per_key(cluster, topic + "-counts") == Counter(w for line in first for w in line.split())

        # Kill a worker for good while new input arrives; the job replaces it, the new
        # worker restores the counts from the changelog, and no input is lost.
        victim = job._workers[0]
        produce_lines(cluster, topic, second, now_ms + 10_000)
        ray.kill(victim, no_restart=True)
        job.wait_caught_up(timeout_s=120)
        expected = Counter(w for line in first + second for w in line.split())
        counts = latest_per_key(cluster, topic + "-counts")
        assert set(counts) == set(expected)
        # At-least-once: a record processed after the last commit may count twice.
        assert all(counts[word] >= expected[word] for word in expected), (counts, expected)
        assert sum(s["restored_records"] for s in job.stats()) > 0
    finally:
        job.stop()
    overcount = {w: counts[w] - expected[w] for w in expected}

    # The whole application again: it resumes from the committed offsets and state.
    produce_lines(cluster, topic, third, now_ms + 20_000)
    job = app.start(cluster, workers=1, **JOB)
    try:
        job.wait_caught_up(timeout_s=120)
        # Nothing read twice: the new lines, and the words they were split into.
        assert sum(s["records"] for s in job.stats()) == len(third) + sum(len(line.split()) for line in third)
    finally:
        job.stop()
    final = latest_per_key(cluster, topic + "-counts")
    expected = Counter(w for line in first + second + third for w in line.split())
    assert {w: final[w] - expected[w] for w in expected} == overcount


def test_windowed_count_with_final_emission_on_actors(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    admin.create_topic(topic + "-out", partitions=1)
    base = (int(time.time()) - 600) * 1000 // 60_000 * 60_000
    events = [(f"k{i % 5}", base + i * 1000) for i in range(200)]  # 200 s of events, 1 per second
    with cluster.producer(acks="all") as producer:
        for key, ts in events:
            producer.send(topic, b"x", key=key.encode(), timestamp_ms=ts)
    app = StreamsApp("windows-" + topic, commit_interval_ms=100)
    app.source(topic, key_format="utf8").group_by_key().window(TimeWindows.tumbling(60_000, grace_ms=5_000)) \
        .count(name="per-minute", emit="final").to_stream().to(topic + "-out")
    job = app.start(cluster, workers=1, **JOB)
    try:
        job.wait_caught_up(timeout_s=120)
    finally:
        job.stop()
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic + "-out", 0)])
    out = []
    while consumer.position(rafka.TopicPartition(topic + "-out", 0)) < consumer.end_offsets(consumer.assignment())[
            rafka.TopicPartition(topic + "-out", 0)]:
        out += consumer.poll(timeout_s=0.5)
    got = {(r.key.decode(), int(dict(r.headers)["window_start"])): int(r.value) for r in out}
    assert len(got) == len(out), "each window is emitted once"
    # Each partition's stream time (its newest event) closes the windows that end at
    # least 5 s before it: every one of those is emitted, with the reference count, and
    # no other.
    newest = {}
    for key, ts in events:
        partition = partition_for_key(key.encode(), 2)
        newest[partition] = max(newest.get(partition, ts), ts)
    reference = Counter((key, ts - ts % 60_000) for key, ts in events)
    closed = {(key, start): count for (key, start), count in reference.items()
              if start + 60_000 + 5_000 <= newest[partition_for_key(key.encode(), 2)]}
    assert len(closed) >= 15  # 5 keys, 3 closed minutes at least
    assert got == closed


def test_a_drained_input_is_committed_without_waiting_out_the_commit_interval(cluster, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    admin.create_topic(topic + "-out", partitions=1)
    with cluster.producer(acks="all") as producer:
        for index in range(50):
            producer.send(topic, b"x", key=f"k{index % 5}".encode())
    app = StreamsApp("drained-" + topic, commit_interval_ms=600_000)  # the interval alone would take 10 minutes
    app.source(topic, key_format="utf8").group_by_key().count(name="counts").to_stream().to(topic + "-out")
    job = app.start(cluster, workers=1, **JOB)
    try:
        job.wait_caught_up(timeout_s=60)
    finally:
        job.stop()
    assert latest_per_key(cluster, topic + "-out") == {f"k{index}": 10 for index in range(5)}


def test_scaling_out_mid_stream_with_commits_in_flight_counts_every_word_once(cluster, topic):
    # A 50 ms commit interval keeps a pipelined commit in flight most of the time, so the
    # rebalance that scaling out causes finds one. Without a failure the counts are
    # exact: the revoked partitions are committed synchronously, with the state behind
    # them, and their new owner starts from there.
    admin = cluster.admin()
    admin.create_topic(topic, partitions=4)
    admin.create_topic(topic + "-out", partitions=2)
    app = StreamsApp("scale-" + topic, commit_interval_ms=50)
    app.source(topic, value_format="utf8").map_batches(split_words, name="split") \
        .group_by_key().count(name="counts").to_stream().to(topic + "-out")
    texts = lines(3000, seed=11)
    now_ms = int(time.time() * 1000)  # (timestamps older than retention.ms would be deleted)
    job = app.start(cluster, workers=1, **JOB)
    try:
        produce_lines(cluster, topic, texts[:1500], now_ms)
        job.scale(2)
        # Slowly, so the second worker joins (and the first is revoked) mid-stream.
        for begin in range(1500, 3000, 150):
            produce_lines(cluster, topic, texts[begin:begin + 150], now_ms + begin)
            time.sleep(0.5)
        job.wait_caught_up(timeout_s=120)
        stats = job.stats()
        assert sum(len(s["tasks"]) for s in stats) >= 4
        assert all(s["records"] > 0 for s in stats), stats  # both workers took part
    finally:
        job.stop()
    reference = Counter(word for text in texts for word in text.split())
    assert latest_per_key(cluster, topic + "-out") == dict(reference)
