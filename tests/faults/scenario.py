"""Fault-injection runs on a multi-node Ray cluster on this machine.

    python tests/faults/scenario.py NEMESIS [NEMESIS ...]

Starts a ``ray.cluster_utils.Cluster`` (a head and three worker nodes, health checks
every 100 ms) once, then for each nemesis in turn: a fresh rafka cluster (its own Ray
namespace and data dir) with one broker per node, and a topic with replication factor 3
and min.insync.replicas=2. A producer (acks=all, idempotent) writes a known sequence
while the nemesis strikes once, then the run reads the whole topic back, prints one JSON
line (what was acknowledged, what was read, and the checks below; or ``error`` with the
traceback when the run raised), and stops that rafka cluster. A node a nemesis removed
is replaced by a fresh one before the next nemesis, so each starts on a head and three
workers, as a run of its own would; the Ray cluster is shared only because starting it
costs more than a nemesis.

Nemeses: ``leader-replica`` (kill the leader replica actor; Ray restarts it),
``leader-broker`` (kill the leader's broker actor), ``leader-node`` (remove the leader's
whole Ray node), ``leader-node-returns`` (remove it, then bring a new node up with the same broker id
and data dir: its replicas catch up, rejoin the ISR and it becomes preferred leader
again), ``controller`` (kill the controller actor; Ray restarts it).

Checks (Jepsen's): no acknowledged record lost; no record duplicated; one value per
offset (two reads agree); offsets increase monotonically for the consumer; each
producer's order preserved.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import traceback

import ray
from ray.cluster_utils import Cluster as RayCluster

import rafka
from rafka.actors import names

TOPIC = "jepsen"
PARTITIONS = 2
RECORDS = 6000
NEMESES = ("leader-replica", "leader-broker", "leader-node", "leader-node-returns", "controller")
WORKERS = 3


def main(nemeses: list[str]) -> None:
    """Run each nemesis on one shared Ray cluster; print one JSON line per nemesis."""
    if not nemeses:
        raise SystemExit(f"usage: scenario.py NEMESIS [NEMESIS ...]; nemeses: {', '.join(NEMESES)}")
    for nemesis in nemeses:
        if nemesis not in NEMESES:
            raise SystemExit(f"unknown nemesis {nemesis!r}; one of {', '.join(NEMESES)}")
    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 100,
                     "health_check_failure_threshold": 5}
    ray_cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": system_config})
    workers = [ray_cluster.add_node(num_cpus=1) for _ in range(WORKERS)]
    ray_cluster.wait_for_nodes()
    ray.init(address=ray_cluster.address, namespace="rafka-faults", logging_level="ERROR")
    try:
        for nemesis in nemeses:
            try:
                result = run(nemesis, ray_cluster, workers)
            except Exception:  # noqa: BLE001 - reported on its line; the next nemesis still runs
                result = {"nemesis": nemesis, "error": traceback.format_exc()}
            print(json.dumps(result), flush=True)
            # A nemesis that removed a node leaves the next one a full cluster again.
            while len(workers) < WORKERS:
                workers.append(ray_cluster.add_node(num_cpus=1))
            ray_cluster.wait_for_nodes()
    finally:
        ray.shutdown()
        ray_cluster.shutdown()


def run(nemesis: str, ray_cluster: RayCluster, workers: list) -> dict:
    """One nemesis on a fresh rafka cluster in its own namespace; ``workers`` (the worker
    nodes) loses a node the nemesis removes and gains one it adds."""
    namespace = f"rafka-faults-{nemesis}"
    head_node = ray.get_runtime_context().get_node_id()
    cluster = rafka.Cluster.start(data_dir=tempfile.mkdtemp(prefix="rafka-faults-"), address=ray_cluster.address,
                                  namespace=namespace, broker_session_timeout_ms=6000,
                                  replica_lag_time_max_ms=2000,
                                  leader_rebalance_interval_s=2 if nemesis == "leader-node-returns" else 3600)
    try:
        brokers = {b["broker_id"]: b["node_id"] for b in cluster.brokers()}
        admin = cluster.admin()
        admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
        # Strike the leader of a partition whose leader is not on the head node (the
        # driver lives there). On a loaded machine a broker may miss its session while
        # the topic's replicas start, and its leaderships move: wait for one off the head.
        deadline = time.monotonic() + 60
        while True:
            description = admin.describe_topic(TOPIC)
            candidates = [p for p in description["partitions"]
                          if p["leader"] >= 0 and brokers[p["leader"]] != head_node and len(p["isr"]) == 3]
            if candidates or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        target = candidates[0]
        leader = target["leader"]

        acknowledged: list[bytes] = []
        failed: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            with cluster.producer(acks="all", linger_ms=2, delivery_timeout_ms=120_000, request_timeout_ms=5000) as producer:
                for index in range(RECORDS):
                    if stop.is_set():
                        break
                    value = b"%06d" % index
                    producer.send(TOPIC, value, key=b"k%d" % (index % 16),
                                  callback=lambda m, e, v=value: acknowledged.append(v) if e is None else failed.append(repr(e)))
                    if index % 100 == 99:
                        time.sleep(0.05)

        thread = threading.Thread(target=produce)
        thread.start()
        while len(acknowledged) < RECORDS // 4:
            time.sleep(0.05)
        struck_at = len(acknowledged)
        if nemesis == "leader-replica":
            ray.kill(ray.get_actor(names.replica(TOPIC, target["partition"], leader), namespace=namespace),
                     no_restart=False)
        elif nemesis == "leader-broker":
            ray.kill(ray.get_actor(names.broker(leader), namespace=namespace), no_restart=False)
        elif nemesis == "leader-node":
            node = next(w for w in workers if w.node_id == brokers[leader])
            ray_cluster.remove_node(node, allow_graceful=False)
            workers.remove(node)
        elif nemesis == "leader-node-returns":
            node = next(w for w in workers if w.node_id == brokers[leader])
            ray_cluster.remove_node(node, allow_graceful=False)
            workers.remove(node)
            wait_for(lambda: admin.describe_topic(TOPIC)["partitions"][target["partition"]]["leader"] != leader)
            # The machine comes back: a new Ray node, the same broker id and data dir.
            replacement = ray_cluster.add_node(num_cpus=1)
            workers.append(replacement)
            ray_cluster.wait_for_nodes()
            cluster.add_broker(replacement.node_id, broker_id=leader)
        elif nemesis == "controller":
            ray.kill(cluster.controller, no_restart=False)
        else:
            raise SystemExit(f"unknown nemesis {nemesis!r}")
        thread.join(timeout=240)
        stop.set()
        if nemesis == "leader-node-returns":
            # Its replicas catch up, rejoin the ISR, and it is preferred leader again.
            wait_for(lambda: admin.describe_topic(TOPIC)["partitions"][target["partition"]]["leader"] == leader,
                     timeout_s=120)

        after = admin.describe_topic(TOPIC)["partitions"][target["partition"]]
        reads = [read_all(cluster), read_all(cluster)]
        values = [value for _, _, value in reads[0]]
        offsets_by_partition: dict[int, list[int]] = {}
        for partition, offset, _ in reads[0]:
            offsets_by_partition.setdefault(partition, []).append(offset)
        by_key_order_ok = all(
            [v for p, _, v in reads[0] if p == partition] == sorted(v for p, _, v in reads[0] if p == partition)
            for partition in range(PARTITIONS)
        )
        return {
            "nemesis": nemesis,
            "struck_after_acks": struck_at,
            "acknowledged": len(acknowledged),
            "failed": len(failed),
            "failures": failed[:3],
            "read": len(values),
            "lost": sorted(set(v.decode() for v in acknowledged) - set(v.decode() for v in values))[:10],
            "duplicates": len(values) - len(set(values)),
            "reads_agree": reads[0] == reads[1],
            "offsets_monotonic": all(o == sorted(set(o)) for o in offsets_by_partition.values()),
            "order_preserved": by_key_order_ok,
            "leader_before": leader,
            "leader_after": after["leader"],
            "epoch_after": after["leader_epoch"],
            "isr_after": after["isr"],
        }
    finally:
        cluster.shutdown()  # every actor named in its namespace, replicas of dead brokers too


def wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def read_all(cluster) -> list[tuple[int, int, bytes]]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    ends = consumer.end_offsets([rafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    out, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        out += [(r.partition, r.offset, r.value) for r in consumer.poll(timeout_s=0.5, max_records=100_000)]
        if all(consumer.position(tp) >= end for tp, end in ends.items()):
            break
    consumer.close()
    return sorted(out)


if __name__ == "__main__":
    main(sys.argv[1:])
