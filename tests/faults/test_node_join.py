"""Brokers follow Ray's nodes: a node that joins a per-node rafka cluster gets a broker.

The scenario needs a Ray cluster of its own (``ray.cluster_utils.Cluster``: nodes are
processes on this machine, sharing its disk), so the test runs this file as a script in
a subprocess, as test_faults.py does with scenario.py, and checks the JSON line it prints:

1. a rafka cluster started with ``address`` on a one-node Ray cluster has one broker;
   one started without ``address`` (embedded) in another namespace has one too;
2. a node joins: the per-node cluster starts a broker on it, the embedded one does not;
3. a topic with replication factor 2 has a replica on each broker, and records produced
   with acks=all come back;
4. the controller is killed (Ray restarts it) and another node joins: the restarted
   controller still gives it a broker;
5. that node is removed and a new one joins: it takes over the lost broker's id, because
   the lost broker's data dir is on its (shared) disk, rather than starting a new one.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import pytest
from script_runs import print_result, run_script

TOPIC = "joined"
NAMESPACE = "rafka-node-join"
RECORDS = 200


@pytest.mark.timeout(300)
def test_node_that_joins_later_gets_a_working_broker():
    result = run_script(os.path.abspath(__file__), timeout_s=280)
    assert result["brokers_at_start"] == [[0, "head"]], result
    assert result["brokers_after_join"] == [[0, "head"], [1, "first"]], result
    assert result["embedded_brokers_after_join"] == [[0, "head"]], result
    assert result["replica_sets"] == [[0, 1], [0, 1]], result
    assert result["consumed"] == result["acknowledged"] == RECORDS, result
    assert result["brokers_after_controller_restart"] == [[0, "head"], [1, "first"], [2, "second"]], result
    assert result["brokers_after_replacement"] == [[0, "head"], [1, "first"], [2, "replacement"]], result


def run_scenario() -> dict:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    import rafka

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from scenario import wait_for

    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 100,
                     "health_check_failure_threshold": 5}
    ray_cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": system_config})
    ray.init(address=ray_cluster.address, namespace=NAMESPACE, logging_level="ERROR")
    node_names = {ray.get_runtime_context().get_node_id(): "head"}
    data_dir = tempfile.mkdtemp(prefix="rafka-node-join-")
    cluster = rafka.Cluster.start(data_dir=os.path.join(data_dir, "per-node"), address=ray_cluster.address,
                                  namespace=NAMESPACE, node_watch_interval_s=0.5)
    embedded = rafka.Cluster.start(data_dir=os.path.join(data_dir, "embedded"), namespace=NAMESPACE + "-embedded",
                                   node_watch_interval_s=0.5)

    def placed(of=cluster) -> list[list]:
        return [[b["broker_id"], node_names.get(b["node_id"], b["node_id"])] for b in of.brokers() if b["alive"]]

    def join(name: str):
        node = ray_cluster.add_node(num_cpus=1)
        node_names[node.node_id] = name
        wait_for(lambda: any(b["node_id"] == node.node_id and b["alive"] for b in cluster.brokers()))
        return node

    try:
        result = {"brokers_at_start": placed()}
        join("first")
        time.sleep(1.0)  # several node-watch rounds: the embedded cluster had its chance to misbehave
        result["brokers_after_join"] = placed()
        result["embedded_brokers_after_join"] = placed(embedded)

        admin = cluster.admin()
        admin.create_topic(TOPIC, partitions=2, replication_factor=2, config={"min.insync.replicas": "2"})
        result["replica_sets"] = [sorted(p["replicas"]) for p in admin.describe_topic(TOPIC)["partitions"]]
        with cluster.producer(acks="all") as producer:
            futures = [producer.send(TOPIC, b"%04d" % index, key=b"k%d" % (index % 8)) for index in range(RECORDS)]
            result["acknowledged"] = sum(1 for future in futures if future.result(timeout=60) is not None)
        consumer = cluster.consumer(auto_offset_reset="earliest")
        consumer.assign([rafka.TopicPartition(TOPIC, p) for p in range(2)])
        values: set[bytes] = set()
        deadline = time.monotonic() + 60
        while len(values) < RECORDS and time.monotonic() < deadline:
            values |= {record.value for record in consumer.poll(timeout_s=0.5)}
        consumer.close()
        result["consumed"] = len(values & {b"%04d" % index for index in range(RECORDS)})

        ray.kill(cluster.controller, no_restart=False)
        second = join("second")
        result["brokers_after_controller_restart"] = placed()

        ray_cluster.remove_node(second, allow_graceful=False)
        # Until Ray declares the node dead, its broker's id is not free to take over.
        wait_for(lambda: not any(node["Alive"] for node in ray.nodes() if node["NodeID"] == second.node_id))
        join("replacement")
        result["brokers_after_replacement"] = placed()
        return result
    finally:
        embedded.shutdown()
        cluster.shutdown()
        ray.shutdown()
        ray_cluster.shutdown()


if __name__ == "__main__":
    print_result(run_scenario)
