"""Replication benchmark: the cost of acks=all with replication factor 3, and failover time.

In one run on one local cluster of 3 brokers:

* producer throughput (``send()`` of 100-byte values, 10,000 keys, 3 partitions) with
  acks=1 on a topic of replication factor 1, then acks=all on replication factor 3
  (min.insync.replicas=2); target: RF 3 at >= 40% of RF 1 (Kafka's ratio is about 50%);
* failover time: from killing the leader (its replica actor, then in a second trial its
  broker's whole failure as seen by the controller) to the first successful acks=all
  write; target <= 3 s for a killed actor or broker.

Run:  python benchmarks/replication_bench.py [--records N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
import time

import ray

import rafka
from rafka.actors import names

PARTITIONS = 3


def produce(cluster, topic: str, records: int, acks) -> dict:
    values = [os.urandom(100) for _ in range(1000)]
    keys = [b"key-%d" % i for i in range(10_000)]
    producer = cluster.producer(acks=acks, linger_ms=5)
    started = time.perf_counter()
    for index in range(records):
        producer.send(topic, values[index % 1000], keys[index % 10_000])
    producer.flush()
    elapsed_s = time.perf_counter() - started
    producer.close()
    return {"records": records, "seconds": elapsed_s, "records_per_s": records / elapsed_s,
            "mb_per_s": records * 100 / elapsed_s / 1e6}


def failover(cluster, topic: str, kill) -> float:
    """Seconds from ``kill()`` to the first acknowledged acks=all write to partition 0."""
    with cluster.producer(acks="all", linger_ms=0, request_timeout_ms=2000, delivery_timeout_ms=60_000) as producer:
        producer.send(topic, b"warm-up", partition=0).result(timeout=30)
        killed_at = time.perf_counter()
        kill()
        while True:
            try:
                producer.send(topic, b"probe", partition=0).result(timeout=60)
                return time.perf_counter() - killed_at
            except rafka.RafkaError:
                time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description="rafka replication benchmark")
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--json")
    args = parser.parse_args()
    namespace = "rafka-replication-bench"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", namespace=namespace)
    cluster = rafka.Cluster.start(data_dir=tempfile.mkdtemp(prefix="rafka-repl-bench-"), brokers=3,
                                  namespace=namespace, broker_session_timeout_ms=2000,
                                  replica_lag_time_max_ms=10_000)
    results: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count()}
    try:
        admin = cluster.admin()
        admin.create_topic("rf1", partitions=PARTITIONS, replication_factor=1)
        admin.create_topic("rf3", partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
        results["acks1_rf1"] = produce(cluster, "rf1", args.records, 1)
        results["acks_all_rf3"] = produce(cluster, "rf3", args.records, "all")
        ratio = results["acks_all_rf3"]["records_per_s"] / results["acks1_rf1"]["records_per_s"]
        results["rf3_over_rf1"] = ratio
        print(f"acks=1   RF 1: {results['acks1_rf1']['records_per_s']:>10,.0f} records/s")
        print(f"acks=all RF 3: {results['acks_all_rf3']['records_per_s']:>10,.0f} records/s ({ratio:.0%} of RF 1)")

        admin.create_topic("failover", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})

        def leader_of(topic: str) -> int:
            return admin.describe_topic(topic)["partitions"][0]["leader"]

        leader = leader_of("failover")
        results["failover_replica_actor_s"] = failover(cluster, "failover", lambda: ray.kill(
            ray.get_actor(names.replica("failover", 0, leader), namespace=namespace), no_restart=False))
        print(f"failover after killing the leader replica actor: {results['failover_replica_actor_s']:.2f} s")

        admin.create_topic("failover-broker", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        leader = leader_of("failover-broker")

        def kill_broker_and_its_replicas() -> None:
            # What a lost broker looks like: its actor and every replica on it gone.
            for topic in admin.list_topics():
                for partition in admin.describe_topic(topic)["partitions"]:
                    if leader in partition["replicas"]:
                        try:
                            ray.kill(ray.get_actor(names.replica(topic, partition["partition"], leader),
                                                   namespace=namespace), no_restart=True)
                        except ValueError:
                            pass
            ray.kill(ray.get_actor(names.broker(leader), namespace=namespace), no_restart=True)

        results["failover_broker_s"] = failover(cluster, "failover-broker", kill_broker_and_its_replicas)
        print(f"failover after losing the leader's broker (session timeout 2 s): {results['failover_broker_s']:.2f} s")
    finally:
        cluster.shutdown()
        ray.shutdown()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
