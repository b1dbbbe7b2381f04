"""A compacted topic is cleaned by its replicas' maintenance loop (Log.compact_async)."""

from __future__ import annotations

import time

import rafka

TP = rafka.TopicPartition
KEYS = [b"key-%d" % i for i in range(50)]


def read_from_start(cluster, topic: str) -> list[rafka.Record]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, 0)])
    records: list[rafka.Record] = []
    try:
        while True:
            polled = consumer.poll(timeout_s=0.5, max_records=100_000)
            if not polled:
                return records
            records += polled
    finally:
        consumer.close()


def test_compacted_topic_is_cleaned_in_the_background_up_to_the_active_segment(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1, replication_factor=2, config={
        "cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0"})
    with cluster.producer(acks="all", linger_ms=5) as producer:
        # Each round is its own batch; each batch outgrows a 1 KiB segment, so it rolls
        # one: rounds 0 and 1 sit in closed segments, round 2 in the active one.
        for round_number in range(3):
            for key in KEYS:
                producer.send(topic, b"round-%d" % round_number, key=key)
            producer.flush()
    deadline_s = time.monotonic() + 90
    while True:
        records = read_from_start(cluster, topic)
        if len(records) == 2 * len(KEYS):  # round 0 is gone: superseded and committed
            break
        if time.monotonic() > deadline_s:
            raise AssertionError(f"round 0 was not cleaned within 90 s: {len(records)} records remain")
        time.sleep(1)
    assert [record.value for record in records] == [b"round-1"] * len(KEYS) + [b"round-2"] * len(KEYS)
    assert [record.key for record in records] == KEYS + KEYS
