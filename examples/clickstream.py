"""Clickstream: per-user windowed aggregates and a stream–table enrichment join.

Starts an embedded rafka cluster with two co-partitioned topics, `users` (a table:
user id → JSON profile with a country) and `clicks` (user id → JSON click), and runs
one stream job on two task actors:

* clicks per user per minute: `clicks ─ group_by_key ─ tumbling 1 min ─ count`
  → `clicks-per-user`, emitted when each minute closes;
* clicks per country per minute: `clicks ⋈ users (enrich with the country) ─ key_by
  country ─ repartition ─ tumbling 1 min ─ count` → `clicks-per-country`.

Every window the watermark closed must be emitted, with the figure the same
computation in plain Python gives, and no open one.

Run:  python examples/clickstream.py  [--clicks N]

``--clicks``: how many clicks (default 10,000), their event times spread evenly over
five minutes whatever their number. tests/test_examples.py runs it with fewer: the
checks are the same, and the number of clicks proves nothing more.
"""

import argparse
import collections
import json
import tempfile
import time

import numpy as np

import rafka
from rafka.client.partitioner import partition_for_key
from rafka.streams import StreamsApp, TimeWindows

MINUTE_MS = 60_000
GRACE_MS = 2_000
COUNTRIES = ["fr", "de", "jp", "br", "ke"]


def read_all(cluster, topic):
    consumer = cluster.consumer(auto_offset_reset="earliest")
    partitions = [rafka.TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    records = []
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        records += consumer.poll(timeout_s=1.0)
    consumer.close()
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10_000, help="how many clicks (default 10,000)")
    args = parser.parse_args()
    if args.clicks < 100:
        parser.error(f"--clicks must be at least 100 (enough to fill every minute), got {args.clicks}")
    step_ms = 5 * MINUTE_MS // args.clicks
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1)
        try:
            admin = cluster.admin()
            admin.create_topic("users", partitions=2, config={"cleanup.policy": "compact"})
            for topic in ("clicks", "clicks-per-user", "clicks-per-country"):
                admin.create_topic(topic, partitions=2)

            rng = np.random.default_rng(7)
            users = {f"user-{i:03d}": COUNTRIES[i % len(COUNTRIES)] for i in range(200)}
            start_ms = (int(time.time() * 1000) - 6 * MINUTE_MS) // MINUTE_MS * MINUTE_MS
            clicks = [(f"user-{int(rng.integers(0, 200)):03d}", start_ms + i * step_ms) for i in range(args.clicks)]
            with cluster.producer(acks="all", linger_ms=5) as producer:
                for user, country in users.items():
                    producer.send("users", json.dumps({"name": user, "country": country}).encode(), key=user.encode())
                producer.flush()
                for user, timestamp_ms in clicks:
                    producer.send("clicks", json.dumps({"page": "/home"}).encode(), key=user.encode(),
                                  timestamp_ms=timestamp_ms)

            app = StreamsApp("clickstream")
            profiles = app.table("users", key_format="utf8", value_format="json", name="profiles")
            click_stream = app.source("clicks", key_format="utf8", value_format="json", name="clicks")
            per_minute = TimeWindows.tumbling(MINUTE_MS, grace_ms=GRACE_MS)
            click_stream.group_by_key().window(per_minute).count(name="per-user", emit="final") \
                .to_stream().to("clicks-per-user")
            click_stream.join(profiles, lambda click, profile: profile["country"], name="enrich") \
                .key_by(lambda user, country: country, name="by-country") \
                .group_by_key().window(per_minute).count(name="per-country", emit="final") \
                .to_stream().to("clicks-per-country")
            started = time.perf_counter()
            job = app.start(cluster, workers=2)
            try:
                job.wait_caught_up(timeout_s=300)
            finally:
                job.stop()
            elapsed_s = time.perf_counter() - started

            def window_of(record):
                return int(dict(record.headers)["window_start"])

            per_user = {(r.key.decode(), window_of(r)): int(r.value) for r in read_all(cluster, "clicks-per-user")}
            per_country = {(r.key.decode(), window_of(r)): int(r.value) for r in read_all(cluster, "clicks-per-country")}
            expected_user = collections.Counter((user, ts - ts % MINUTE_MS) for user, ts in clicks)
            expected_country = collections.Counter((users[user], ts - ts % MINUTE_MS) for user, ts in clicks)
            assert all(expected_user[g] == n for g, n in per_user.items()), "per-user counts differ"
            assert all(expected_country[g] == n for g, n in per_country.items()), "per-country counts differ"
            # Every window the watermark closed must be there. Per user (no repartition) the
            # watermark is the newest click of the user's partition; per country (behind a
            # repartition) it is the slowest click partition's newest while both are busy,
            # the newest of all once both are idle.
            newest = {}
            for user, timestamp_ms in clicks:
                partition = partition_for_key(user.encode(), 2)
                newest[partition] = max(newest.get(partition, timestamp_ms), timestamp_ms)

            def closed_by(watermark_ms, start_ms):
                return start_ms + MINUTE_MS + GRACE_MS <= watermark_ms

            closed_user = {g for g in expected_user if closed_by(newest[partition_for_key(g[0].encode(), 2)], g[1])}
            assert closed_user and per_user.keys() == closed_user, \
                f"per-user windows missing {sorted(closed_user - per_user.keys())[:5]}, " \
                f"open ones emitted {sorted(per_user.keys() - closed_user)[:5]}"
            must = {g for g in expected_country if closed_by(min(newest.values()), g[1])}
            may = {g for g in expected_country if closed_by(max(newest.values()), g[1])}
            assert must and must <= per_country.keys() <= may, \
                f"per-country windows missing {sorted(must - per_country.keys())[:5]}, " \
                f"open ones emitted {sorted(per_country.keys() - may)[:5]}"
            windows = sorted({w for _, w in per_country})
            print(f"{len(clicks)} clicks of {len(users)} users: {len(per_user)} per-user and {len(per_country)} "
                  f"per-country minute counts in {len(windows)} closed minutes: every closed window, equal to the "
                  f"reference; job ran {elapsed_s:.1f} s")
            last = {country: n for (country, w), n in per_country.items() if w == windows[-1]}
            print("clicks per country in the last closed minute:", dict(sorted(last.items())))
            print("OK")
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
