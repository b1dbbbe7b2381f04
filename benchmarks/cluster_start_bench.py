"""Start time of the embedded default rafka cluster (1 broker, 1 controller voter).

Three measurements, each the median of ``--trials`` (a fresh data directory and namespace
each time, wire listener on a free port):

* ``start_on_running_ray_s``: ``Cluster.start(brokers=1)`` on a Ray instance already up
  (what the controller and broker actors cost);
* ``create_topics_s``: then ``--topics`` topics created one after another (1 partition,
  replication factor 1): metadata writes through the controller, one commit each;
* ``embedded_start_s``: ``Cluster.start()`` with no Ray running, as a new user's first
  call (Ray's own start included), then ``shutdown()``.

Run:  python benchmarks/cluster_start_bench.py [--trials N] [--topics N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time

import ray

import rafka


def start_on_running_ray(trials: int, topics: int) -> tuple[list[float], list[float]]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        timings, topic_timings = [], []
        for trial in range(trials):
            started_s = time.monotonic()
            cluster = rafka.Cluster.start(data_dir=tempfile.mkdtemp(prefix="rafka-start-bench-"), brokers=1,
                                          namespace=f"start-bench-{trial}", wire_port=0)
            timings.append(time.monotonic() - started_s)
            admin = cluster.admin()
            started_s = time.monotonic()
            for index in range(topics):
                admin.create_topic(f"bench-{index}", partitions=1, replication_factor=1)
            topic_timings.append(time.monotonic() - started_s)
            cluster.shutdown()
        return timings, topic_timings
    finally:
        ray.shutdown()


def embedded_start(trials: int) -> list[float]:
    timings = []
    for _ in range(trials):
        started_s = time.monotonic()
        cluster = rafka.Cluster.start(data_dir=tempfile.mkdtemp(prefix="rafka-start-bench-"), wire_port=0,
                                      num_cpus=2, include_dashboard=False)
        timings.append(time.monotonic() - started_s)
        cluster.shutdown()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--topics", type=int, default=20, help="topics created after each start on running Ray")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    running, topics = start_on_running_ray(args.trials, args.topics)
    embedded = embedded_start(max(1, args.trials // 2))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rafka": rafka.__file__,
        "start_on_running_ray_s": {"median": round(statistics.median(running), 3),
                                   "all": [round(t, 3) for t in running]},
        "topics": args.topics,
        "create_topics_s": {"median": round(statistics.median(topics), 3), "all": [round(t, 3) for t in topics]},
        "embedded_start_s": {"median": round(statistics.median(embedded), 3), "all": [round(t, 3) for t in embedded]},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
