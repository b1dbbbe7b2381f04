"""A controller voter whose node is lost is started again on another node, so the quorum
survives losing its voters' nodes one after another (actors/controller.py, "lost
voters"; docs/controller-quorum.md).

Voters on a cluster of 3 or more nodes are pinned to their nodes; before re-homing, a
lost node's voter stayed down, and the loss of a second voter node, however much later,
left no majority: the controller stopped answering (a 30-minute soak ran into this).

The scenario needs a Ray cluster of its own (``ray.cluster_utils.Cluster``: nodes are
processes on this machine, sharing its disk), so the test runs this file as a script in
a subprocess, as test_node_join.py does, and checks the JSON line it prints:

1. rafka on 3 Ray nodes: 3 voters, one per node; a topic with replication factor 3 gets
   records with acks=all;
2. the node of a voter other than the active one is removed, and a new node joins: that
   voter runs again, on the new node, and catches up (lag 0);
3. the node of another of the first three voters is removed, and a new node joins:
   again. Two of the three original voter nodes are now gone;
4. the controller still commits: a new topic is created, and every acknowledged record
   of step 1 is read back.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest
from script_runs import print_result, run_script

NAMESPACE = "rafka-voter-rehoming"
TOPIC = "before-the-losses"
RECORDS = 300


@pytest.mark.timeout(400)
def test_voters_of_lost_nodes_are_started_again_elsewhere_and_the_quorum_survives_two_losses():
    result = run_script(os.path.abspath(__file__), timeout_s=380)
    assert sorted(result["voter_nodes_at_start"]) == ["first", "head", "second"], result
    rehomed = result["rehomed"]
    assert sorted(entry["lost"] for entry in rehomed) == ["first", "second"], result
    assert sorted(entry["now_on"] for entry in rehomed) == ["fourth", "third"], result
    assert all(entry["lag"] == 0 for entry in rehomed), result
    assert result["topic_created_after_losses"] is True, result
    assert result["read_back"] == result["acknowledged"] == RECORDS, result


def wait_for(predicate, timeout_s: float):
    """The first true value of ``predicate()`` (errors count as not yet: the quorum may
    be failing over), or TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - retried until the deadline
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(0.2)


def run_scenario() -> dict:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    import rafka

    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 200,
                     "health_check_failure_threshold": 10}
    ray_cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": system_config})
    node_names = {}
    workers = {}
    for name in ("first", "second"):
        workers[name] = ray_cluster.add_node(num_cpus=1)
        node_names[workers[name].node_id] = name
    ray_cluster.wait_for_nodes()
    ray.init(address=ray_cluster.address, namespace=NAMESPACE, logging_level="ERROR")
    node_names[ray.get_runtime_context().get_node_id()] = "head"
    data_dir = tempfile.mkdtemp(prefix="rafka-voter-rehoming-")
    cluster = rafka.Cluster.start(data_dir=data_dir, address=ray_cluster.address, namespace=NAMESPACE,
                                  node_watch_interval_s=0.5)

    def voters() -> dict[str, dict]:
        return {voter["voter_id"]: voter for voter in cluster.quorum()["voters"] if voter.get("reachable")}

    def voter_on(name: str) -> str:
        return next(v for v, status in voters().items() if node_names.get(status["ray_node_id"]) == name)

    def lose_and_replace(lost: str, replacement: str) -> dict:
        voter = voter_on(lost)
        ray_cluster.remove_node(workers.pop(lost), allow_graceful=False)
        wait_for(lambda: not any(node["Alive"] for node in ray.nodes() if node_names.get(node["NodeID"]) == lost),
                 timeout_s=60)
        workers[replacement] = ray_cluster.add_node(num_cpus=1)
        node_names[workers[replacement].node_id] = replacement

        def rehomed():
            status = voters().get(voter)
            quorum = cluster.quorum()
            if status is None or node_names.get(status["ray_node_id"]) != replacement:
                return None
            lag = (quorum.get("lag") or {}).get(voter)
            return {"lost": lost, "now_on": replacement, "lag": lag} if lag == 0 else None
        return wait_for(rehomed, timeout_s=90)

    try:
        wait_for(lambda: len(voters()) == 3 and sum(b["alive"] for b in cluster.brokers()) == 3, timeout_s=90)
        result = {"voter_nodes_at_start": [node_names.get(status["ray_node_id"]) for status in voters().values()]}
        admin = cluster.admin()
        admin.create_topic(TOPIC, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        with cluster.producer(acks="all") as producer:
            futures = [producer.send(TOPIC, b"%04d" % index) for index in range(RECORDS)]
            result["acknowledged"] = sum(1 for future in futures if future.result(timeout=60) is not None)
        active = cluster.quorum()["leader"]
        # A follower's node first (nothing but re-homing brings that voter back), then the
        # other worker's, which may hold the active controller by then (a failover too).
        order = sorted(("first", "second"), key=lambda name: voter_on(name) == active)
        result["rehomed"] = [lose_and_replace(order[0], "third"), lose_and_replace(order[1], "fourth")]
        admin.create_topic("after-the-losses", partitions=1, replication_factor=1)
        result["topic_created_after_losses"] = "after-the-losses" in admin.list_topics()
        consumer = cluster.consumer(auto_offset_reset="earliest")
        consumer.assign([rafka.TopicPartition(TOPIC, 0)])
        values: set[bytes] = set()
        deadline = time.monotonic() + 90
        while len(values) < RECORDS and time.monotonic() < deadline:
            values |= {record.value for record in consumer.poll(timeout_s=0.5)}
        consumer.close()
        result["read_back"] = len(values & {b"%04d" % index for index in range(RECORDS)})
        return result
    finally:
        cluster.shutdown()
        ray.shutdown()
        ray_cluster.shutdown()


if __name__ == "__main__":
    print_result(run_scenario)
