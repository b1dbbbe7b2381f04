"""A soak: workloads under a seeded nemesis on a multi-node Ray cluster, then a verdict.

    python -m tests.faults.soak --minutes N --seed S [--out DIR]     (from the repository root)
    python tests/faults/soak.py --minutes N --seed S [--out DIR]    (the same, as a script)
    python -m tests.faults.soak --schedule DIR/schedule.json        (rerun a saved schedule)

Starts a ``ray.cluster_utils.Cluster`` (a head and ``--workers`` worker nodes, default
three, health checks every 100 ms, as scenario.py) and a per-node rafka cluster on it
(one broker per node), then:

1. writes ``schedule.json``: the nemesis's operations for ``--minutes``, made from
   ``--seed`` alone (nemesis.generate_schedule), so the same seed and minutes give the
   same schedule; ``--schedule`` runs a saved one instead;
2. creates the topics: ``soak-log`` (2 partitions) and the compacted ``soak-compact``
   (1 partition, 1 KiB segments so the cleaner has closed segments to clean all the
   time), both with replication factor 3
   and min.insync.replicas=2, ``soak-stream-out`` (2 partitions, the same settings), and
   ``__consumer_offsets`` with one partition so the group has one coordinator;
3. runs the workloads (soak_workloads.py): two idempotent acks=all producers on
   ``soak-log``, one producer of updates and tombstones on ``soak-compact``, a group of
   ``--consumers`` (default three) committing consumers on ``soak-log`` and an observer
   of its committed offsets and grants, and a stream job (one worker actor, itself a
   nemesis target) copying ``soak-log`` to ``soak-stream-out``, while the nemesis
   carries out the schedule (with 3 or more nodes the controller quorum has 3 voters,
   and the schedule kills and pauses voters, active or not, and wipes a voter's
   directory: issue 19's controller faults);
4. heals every fault, stops the workloads, waits (bounded) until every partition has a
   leader and a full ISR, reads every topic twice from the start;
5. writes ``history.json`` and ``verdict.json`` (history_checker.check_history plus the
   run's facts: faults injected, records checked) into the output directory, prints the
   verdict's summary as one JSON line and exits 0 if the verdict is valid, 1 if not.

Data dirs live in ``DIR/data`` and are deleted after a valid run (kept with
``--keep-data``, and always after an invalid one, for post-mortems). Every fault is
healed even when the run fails (pauses are resumed in a ``finally``). The Ray cluster,
the rafka actors and their processes are this run's own (a Ray namespace per run);
nothing else on the machine is touched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import history_checker  # noqa: E402
import nemesis as nemesis_module  # noqa: E402
import soak_workloads as workloads  # noqa: E402

LOG_TOPIC = "soak-log"
COMPACT_TOPIC = "soak-compact"
STREAM_OUT_TOPIC = "soak-stream-out"  # a stream job copies LOG_TOPIC here
OFFSETS_TOPIC = "__consumer_offsets"
GROUP = "soak-group"
SETTLE_TIMEOUT_S = 120.0


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the cluster is still healing
            pass
        time.sleep(interval_s)
    return False


def unhealthy_partitions(admin, topics: list[str]) -> list[dict]:
    """The partitions of ``topics`` that lack a leader or have a replica out of their ISR."""
    found = []
    for topic in topics:
        for partition in admin.describe_topic(topic)["partitions"]:
            if partition["leader"] < 0 or sorted(partition["isr"]) != sorted(partition["replicas"]):
                found.append({"topic": topic, **{key: partition.get(key) for key in
                                                  ("partition", "leader", "isr", "replicas", "leader_epoch")}})
    return found


def healthy(admin, topics: list[str], last_seen: dict | None = None) -> bool:
    """Every partition of ``topics`` has a leader and every replica in its ISR.

    ``last_seen["unhealthy"]`` keeps the partitions found wanting by the latest look, so
    that a verdict that fails on health names them.
    """
    wanting = unhealthy_partitions(admin, topics)
    if last_seen is not None:
        last_seen["unhealthy"] = wanting
    return not wanting


def replica_statuses(namespace: str, partitions: list[dict]) -> list:
    """What each replica of ``partitions`` says of itself (role, epoch, offsets, and a
    leader's ISR bookkeeping), or why it could not say: for the verdict of a run whose
    partitions did not heal."""
    import ray

    from rafka.actors import names

    def leader_view(replica) -> dict:
        replication = replica.replication
        if replication is None:
            return {}
        return {"unconfirmed": sorted(replication._unconfirmed), "isr_change_in_flight": replication._isr_change_in_flight,
                "partition_epoch": replication.partition_epoch,
                "followers": {b: {"handshaken": f.handshaken, "log_end_offset": f.log_end_offset}
                              for b, f in replication.followers.items()}}

    statuses = []
    for partition in partitions:
        for broker_id in partition["replicas"]:
            name = names.replica(partition["topic"], partition["partition"], broker_id)
            try:
                handle = ray.get_actor(name, namespace=namespace)
                status = ray.get(handle.status.remote(), timeout=10)
                status["replication"] = ray.get(handle.__ray_call__.remote(leader_view), timeout=10)
                statuses.append(status)
            except Exception as error:  # noqa: BLE001 - a diagnostic
                statuses.append({"replica": name, "error": repr(error)[:300]})
    return statuses


def _quietly(call):
    """``call()``, or the error it raised as text: for facts gathered about a failed run."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - a diagnostic must not hide the verdict
        return repr(error)[:500]


def controller_voters(nodes: int) -> int:
    """The controller quorum's size rafka picks on ``nodes`` Ray nodes (see plan_quorum)."""
    from rafka.actors.controller_quorum import QUORUM_SIZE_MULTI_NODE

    return QUORUM_SIZE_MULTI_NODE if nodes >= QUORUM_SIZE_MULTI_NODE else 1


def run(out_dir: str, *, seed: int | None = None, minutes: float | None = None, schedule_path: str | None = None,
        records_per_s: float = 100.0, keep_data: bool = False, worker_nodes: int = 3, mean_gap_s: float = 3.0,
        without: tuple[str, ...] = (), consumers: int = 3) -> dict:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    import rafka

    os.makedirs(out_dir, exist_ok=True)
    if schedule_path:
        with open(schedule_path) as handle:
            schedule = json.load(handle)
    else:
        schedule = nemesis_module.generate_schedule(
            seed, minutes * 60, topics={LOG_TOPIC: 2, COMPACT_TOPIC: 1}, brokers=worker_nodes + 1,
            worker_nodes=worker_nodes, consumers=consumers, mean_gap_s=mean_gap_s, without=without,
            stream_workers=1, controller_voters=controller_voters(worker_nodes + 1))
    with open(os.path.join(out_dir, "schedule.json"), "w") as handle:
        json.dump(schedule, handle, indent=1)
    seed = schedule["seed"]
    worker_nodes = schedule["worker_nodes"]
    consumers = schedule["consumers"]
    brokers = worker_nodes + 1

    started_s = time.monotonic()
    history = workloads.History()
    history.data["topics"] = {LOG_TOPIC: "append", COMPACT_TOPIC: "compact", STREAM_OUT_TOPIC: "stream"}
    namespace = f"rafka-soak-{os.getpid()}"
    data_dir = os.path.join(out_dir, "data")
    system_config = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 100,
                     "health_check_failure_threshold": 5}
    ray_cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "_system_config": system_config})
    cluster = None
    chaos = None
    facts: dict = {"seed": seed, "duration_s": schedule["duration_s"], "faults_scheduled": len(schedule["ops"]),
                   "faults_by_kind": nemesis_module.fault_count(schedule)}
    try:
        workers = [ray_cluster.add_node(num_cpus=1) for _ in range(worker_nodes)]
        ray_cluster.wait_for_nodes()
        facts["nodes_up_s"] = round(time.monotonic() - started_s, 1)
        ray.init(address=ray_cluster.address, namespace=namespace, logging_level="ERROR")
        cluster = rafka.Cluster.start(data_dir=data_dir, address=ray_cluster.address, namespace=namespace,
                                      broker_session_timeout_ms=6000, replica_lag_time_max_ms=2000,
                                      leader_rebalance_interval_s=5)
        if not wait_for(lambda: sum(b["alive"] for b in cluster.brokers()) == brokers, 120):
            raise RuntimeError(f"{brokers} brokers did not come up: {cluster.brokers()}")
        facts["brokers_up_s"] = round(time.monotonic() - started_s, 1)
        admin = cluster.admin()
        admin.create_topic(OFFSETS_TOPIC, partitions=1, replication_factor=3,
                           config={"cleanup.policy": "compact", "min.insync.replicas": "2"})
        admin.create_topic(LOG_TOPIC, partitions=2, replication_factor=3, config={"min.insync.replicas": "2"})
        admin.create_topic(COMPACT_TOPIC, partitions=1, replication_factor=3,
                           config={"min.insync.replicas": "2", "cleanup.policy": "compact", "segment.bytes": "1024",
                                   "delete.retention.ms": "2000"})
        admin.create_topic(STREAM_OUT_TOPIC, partitions=2, replication_factor=3, config={"min.insync.replicas": "2"})
        topics = [OFFSETS_TOPIC, LOG_TOPIC, COMPACT_TOPIC, STREAM_OUT_TOPIC]
        if not wait_for(lambda: healthy(admin, topics), 120):
            raise RuntimeError("the topics did not get full ISRs in time")
        facts["setup_s"] = round(time.monotonic() - started_s, 1)

        producers = [workloads.ProducerWorkload(cluster, history, f"p{i}", LOG_TOPIC, keys=16,
                                                records_per_s=records_per_s, seed=seed) for i in range(2)]
        compacting = workloads.ProducerWorkload(cluster, history, "c", COMPACT_TOPIC, keys=40,
                                                records_per_s=records_per_s, tombstone_share=0.1, seed=seed)
        group = workloads.GroupWorkload(cluster, history, GROUP, LOG_TOPIC, consumers)
        stream = workloads.StreamWorkload(cluster, history, "soak-copy", LOG_TOPIC, STREAM_OUT_TOPIC)
        stream.start()
        chaos = nemesis_module.Nemesis(cluster, ray_cluster, workers, group, OFFSETS_TOPIC,
                                       lambda entry: history.append("nemesis", entry),
                                       stream=stream if schedule.get("stream_workers") else None)
        for workload in producers + [compacting, group]:
            workload.start()
        chaos.start(schedule)
        chaos.serve(schedule["duration_s"])  # node operations run here, on the main thread
        chaos.heal()
        chaos.join(timeout_s=120)
        for workload in producers + [compacting]:
            workload.stop()
        group.stop()
        stream.stop()
        facts["faults_applied"] = sum(1 for e in history.data["nemesis"] if e.get("outcome") == "done")
        facts["faults_skipped"] = sum(1 for e in history.data["nemesis"] if e.get("outcome") == "skipped")
        facts["producers_made"] = sum(w.producers_made for w in producers + [compacting])
        settle_s = time.monotonic()
        last_seen: dict = {}
        facts["healthy_at_end"] = wait_for(lambda: healthy(admin, topics, last_seen), SETTLE_TIMEOUT_S)
        facts["settle_s"] = round(time.monotonic() - settle_s, 1)
        if not facts["healthy_at_end"]:
            facts["unhealthy_at_end"] = last_seen.get("unhealthy", "the topics could not be described")
            facts["cluster_at_end"] = _quietly(admin.describe_cluster)
            facts["replicas_at_end"] = _quietly(lambda: replica_statuses(namespace, facts["unhealthy_at_end"]))
        for reader in ("reader-a", "reader-b"):
            try:
                history.data["final_reads"][reader] = workloads.read_all(cluster, [LOG_TOPIC, COMPACT_TOPIC,
                                                                                    STREAM_OUT_TOPIC])
            except Exception as error:  # noqa: BLE001 - an unreadable topic is a finding, not a crash
                history.note(f"{reader} failed: {error!r}")
                history.data["final_reads"][reader] = []
    except BaseException as error:  # noqa: BLE001 - the verdict records it; a non-Exception is re-raised below
        facts["run_error"] = repr(error)[:1000]
        raise_later = error
    else:
        raise_later = None
    finally:
        if chaos is not None:
            chaos.heal()
        if cluster is not None:
            try:
                cluster.shutdown()
            except Exception:  # noqa: BLE001 - the verdict is decided; Ray's shutdown below ends what is left
                pass
        ray.shutdown()
        ray_cluster.shutdown()
    facts["elapsed_s"] = round(time.monotonic() - started_s, 1)

    verdict = history_checker.check_history(history.data) if raise_later is None else {
        "valid": False, "failed_checks": ["run"], "checks": {}}
    if not facts.get("healthy_at_end", True):
        verdict["valid"] = False
        verdict["failed_checks"] = sorted(set(verdict["failed_checks"]) | {"healthy_at_end"})
    verdict = {**facts, **verdict}
    with open(os.path.join(out_dir, "history.json"), "w") as handle:
        json.dump(history.data, handle)
    with open(os.path.join(out_dir, "verdict.json"), "w") as handle:
        json.dump(verdict, handle, indent=1)
    if verdict["valid"] and not keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    if raise_later is not None and not isinstance(raise_later, Exception):
        raise raise_later
    return verdict


def summary(verdict: dict) -> dict:
    keys = ("valid", "failed_checks", "seed", "duration_s", "faults_scheduled", "faults_applied", "faults_skipped",
            "faults_by_kind", "sends", "records_read", "observations", "healthy_at_end", "unhealthy_at_end",
            "elapsed_s", "run_error")
    return {key: verdict[key] for key in keys if key in verdict}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="length of the fault schedule (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: from the clock)")
    parser.add_argument("--schedule", default=None, help="run this saved schedule.json instead of generating one")
    parser.add_argument("--out", default=None, help="output directory (default /tmp/rafka-soak/seed-S-<time>)")
    parser.add_argument("--records-per-s", type=float, default=100.0, help="per producer (default 100)")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dirs of a valid run")
    parser.add_argument("--workers", type=int, default=3, help="worker Ray nodes besides the head (default 3, min 2)")
    parser.add_argument("--mean-gap-s", type=float, default=3.0, help="mean time between fault starts (default 3)")
    parser.add_argument("--consumers", type=int, default=3, help="consumers in the group (default 3)")
    parser.add_argument("--without", default="", help="comma-separated operation kinds to leave out, e.g. remove_node")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    if args.consumers < 0:
        parser.error(f"--consumers must be at least 0, got {args.consumers}")
    if args.workers < 2:
        parser.error(f"--workers must be at least 2 (replication factor 3 needs three brokers), got {args.workers}")
    seed = args.seed if args.seed is not None else int(time.time())
    if args.schedule:
        with open(args.schedule) as handle:
            seed = json.load(handle)["seed"]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out_dir = args.out or os.path.join("/tmp", "rafka-soak", f"seed-{seed}-{stamp}")
    verdict = run(out_dir, seed=seed, minutes=args.minutes, schedule_path=args.schedule,
                  records_per_s=args.records_per_s, keep_data=args.keep_data, worker_nodes=args.workers,
                  mean_gap_s=args.mean_gap_s, consumers=args.consumers,
                  without=tuple(kind for kind in args.without.split(",") if kind))
    print(json.dumps({**summary(verdict), "out": out_dir}))
    return 0 if verdict["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
