"""Footprint benchmark: what a partition replica costs (issue 22).

Every partition replica is a Ray actor (a process), so a node's reach is set by what an
idle replica costs. One run on a fresh embedded cluster measures:

* **creation**: seconds to create ``--partitions`` partitions x ``--replication-factor``
  on ``--brokers`` brokers (``create_topic`` returns once every replica is up), and when
  each partition took its first record (a producer sends one to every partition as soon
  as the topic exists): the first, the median and the last partition;
* **idle CPU**: CPU seconds each replica process used over ``--idle-s`` seconds of no
  traffic, as mCPU (thousandths of a core), beside an idle bare Ray actor (Ray's floor:
  what any actor costs doing nothing) and the brokers and controller;
* **memory**: unique set size (USS, MiB) per idle replica process, beside the bare actor;
* **Ray's cost of one actor call**: CPU microseconds in the called actor (a sync one and
  an async one, as a replica is) and in the caller, and the round trip;
* **latency** (unless ``--no-latency``): ``rafka bench e2e`` at ``--rate`` records/s on
  3 partitions, acks=1, run as a subprocess on its own embedded cluster (p50 and p99 ms),
  twice: producer and consumer in one process, and the producer in a process of its own
  (``--producer-process``).

Targets (issue 22): idle CPU per replica at most Ray's floor + 2 mCPU; USS per idle
replica at most 50 MiB; 100 partitions x RF 3 created in at most 60 s; e2e p50 <= 5 ms and
p99 <= 20 ms at 5,000 records/s. CPU is counted in CPU seconds of the processes (user +
system), so a busy machine slows the run but barely changes the figures.

Run:  python benchmarks/scale_bench.py [--partitions 30] [--replication-factor 3] [--brokers 3]
                                        [--idle-s 30] [--json FILE] [--no-latency]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import ray

import rafka
from rafka.actors import names

TARGET_REPLICA_MCPU_OVER_FLOOR = 2.0
TARGET_REPLICA_USS_MIB = 50.0
TARGET_CREATE_100X3_S = 60.0
TARGET_P50_MS, TARGET_P99_MS = 5.0, 20.0


@ray.remote(num_cpus=0)
class IdleActor:
    """Does nothing: its cost is Ray's floor for any actor."""

    def pid(self) -> int:
        return os.getpid()

    def ping(self) -> int:
        return 1


@ray.remote(num_cpus=0)
class AsyncEchoActor:
    """An async actor (as a replica is) that answers at once: Ray's floor for one call."""

    async def pid(self) -> int:
        return os.getpid()

    async def ping(self) -> int:
        return 1


def call_cost(actor, calls: int = 500) -> dict:
    """CPU microseconds one call costs the actor's process and this one, and its round
    trip: what any actor call costs on this machine before rafka does any work."""
    callee = psutil.Process(ray.get(actor.pid.remote()))
    caller = psutil.Process()
    ray.get(actor.ping.remote())

    def cpu(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    callee_before, caller_before, started = cpu(callee), cpu(caller), time.perf_counter()
    for _ in range(calls):
        ray.get(actor.ping.remote())
    return {"actor_us": round((cpu(callee) - callee_before) / calls * 1e6),
            "caller_us": round((cpu(caller) - caller_before) / calls * 1e6),
            "round_trip_ms": round((time.perf_counter() - started) / calls * 1000, 3)}


def actor_pid(handle) -> int:
    return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()))


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def uss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().uss / 2**20


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def measure_latency(rate_per_s: float, records: int, producer_process: bool) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "e2e.json")
        command = [sys.executable, "-c", "from rafka.cli.main import main; main()", "bench", "e2e", "--embedded",
                   "--rate", str(rate_per_s), "--records", str(records), "--partitions", "3", "--acks", "1", "--json", path,
                   "--quiet"] + (["--producer-process"] if producer_process else [])
        completed = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if completed.returncode != 0:
            return {"error": completed.stderr[-2000:]}
        with open(path) as handle:
            return json.load(handle)


class WritableWatch:
    """Sends one record to every partition of ``topic`` as soon as the topic exists, and
    notes when each is acknowledged (seconds after ``started_s``)."""

    def __init__(self, cluster, topic: str, partitions: int, started_s: float) -> None:
        self.cluster, self.topic, self.partitions, self.started_s = cluster, topic, partitions, started_s
        self.acked_s: dict[int, float] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        admin = self.cluster.admin()
        while True:
            try:
                admin.describe_topic(self.topic)
                break
            except rafka.TopicNotFoundError:
                time.sleep(0.05)
        producer = self.cluster.producer(acks=1, linger_ms=0, delivery_timeout_ms=600_000)
        for partition in range(self.partitions):
            producer.send(self.topic, b"first", partition=partition,
                          callback=lambda metadata, error, p=partition: self._acked(p, error))
        producer.flush()
        producer.close()

    def _acked(self, partition: int, error: BaseException | None) -> None:
        if error is None:
            self.acked_s[partition] = time.monotonic() - self.started_s

    def summary(self) -> dict:
        self.thread.join(timeout=600)
        times = sorted(self.acked_s.values())
        return {"partitions_acked": len(times), "first_s": round(times[0], 2) if times else None,
                "median_s": round(times[len(times) // 2], 2) if times else None,
                "last_s": round(times[-1], 2) if times else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle window for CPU (default 30)")
    parser.add_argument("--rate", type=float, default=5000.0, help="e2e records/s (default 5000)")
    parser.add_argument("--records", type=int, default=50_000, help="e2e records (default 50,000)")
    parser.add_argument("--no-latency", action="store_true", help="skip the e2e latency run")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    args = parser.parse_args(argv)

    result: dict = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                                "python": platform.python_version(), "ray": ray.__version__},
                    "partitions": args.partitions, "replication_factor": args.replication_factor,
                    "brokers": args.brokers}
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = rafka.Cluster.start(data_dir=data_dir, brokers=args.brokers, address="local",
                                      namespace="rafka-scale-bench", wire_port=None)
        try:
            admin = cluster.admin()
            started = time.monotonic()
            watch = WritableWatch(cluster, "scale", args.partitions, started)
            admin.create_topic("scale", partitions=args.partitions, replication_factor=args.replication_factor)
            result["create_s"] = round(time.monotonic() - started, 2)
            result["writable"] = watch.summary()
            floor = IdleActor.remote()
            floor_pid = ray.get(floor.pid.remote())
            topic = admin.describe_topic("scale")
            replica_pids, leader_pids = [], []
            for state in topic["partitions"]:
                for broker_id in state["replicas"]:
                    handle = ray.get_actor(names.replica("scale", state["partition"], broker_id),
                                           namespace=cluster.namespace)
                    replica_pids.append(actor_pid(handle))
                    if broker_id == state["leader"]:
                        leader_pids.append(replica_pids[-1])
            broker_pids = [actor_pid(ray.get_actor(names.broker(b), namespace=cluster.namespace))
                           for b in range(args.brokers)]
            controller_pid = actor_pid(cluster.controller)
            time.sleep(5.0)  # let start-up work (first metrics, handshakes) settle
            before = cpu_seconds(replica_pids + broker_pids + [controller_pid, floor_pid])
            wall_before = time.monotonic()
            time.sleep(args.idle_s)
            after = cpu_seconds(replica_pids + broker_pids + [controller_pid, floor_pid])
            wall_s = time.monotonic() - wall_before

            def mcpu(pids: list[int]) -> list[float]:
                return [1000 * (after[p] - before[p]) / wall_s for p in pids if p in before and p in after]

            replica_mcpu = mcpu(replica_pids)
            floor_mcpu = mcpu([floor_pid])[0]
            uss = [uss_mib(pid) for pid in replica_pids]
            result["idle"] = {
                "window_s": round(wall_s, 1),
                "replicas": len(replica_pids),
                "replica_mcpu_mean": round(sum(replica_mcpu) / len(replica_mcpu), 2),
                "replica_mcpu_p90": round(percentile(replica_mcpu, 0.9), 2),
                "leader_mcpu_mean": round(sum(mcpu(leader_pids)) / max(1, len(leader_pids)), 2),
                "follower_mcpu_mean": round(sum(mcpu([p for p in replica_pids if p not in leader_pids]))
                                            / max(1, len(replica_pids) - len(leader_pids)), 2),
                "replicas_total_cores": round(sum(replica_mcpu) / 1000, 3),
                "bare_actor_mcpu": round(floor_mcpu, 2),
                "broker_mcpu_mean": round(sum(mcpu(broker_pids)) / len(broker_pids), 2),
                "controller_mcpu": round(mcpu([controller_pid])[0], 2),
                "replica_uss_mib_mean": round(sum(uss) / len(uss), 1),
                "bare_actor_uss_mib": round(uss_mib(floor_pid), 1),
            }
            result["ray_call_floor"] = {"sync_actor": call_cost(floor), "async_actor": call_cost(AsyncEchoActor.remote())}
        finally:
            cluster.shutdown()
            ray.shutdown()
    if not args.no_latency:
        result["e2e"] = {"rate_per_s": args.rate}
        for label, producer_process in (("one_process", False), ("producer_process", True)):
            e2e = measure_latency(args.rate, args.records, producer_process)
            latency = e2e.get("latency_ms", e2e)
            result["e2e"][label] = ({"p50_ms": round(latency["p50"], 2), "p99_ms": round(latency["p99"], 2)}
                                    if "p50" in latency else {"raw": e2e})
    idle = result["idle"]
    result["targets"] = {
        "replica_idle_mcpu": {"target": round(idle["bare_actor_mcpu"] + TARGET_REPLICA_MCPU_OVER_FLOOR, 2),
                              "measured": idle["replica_mcpu_mean"]},
        "replica_uss_mib": {"target": TARGET_REPLICA_USS_MIB, "measured": idle["replica_uss_mib_mean"]},
        # Every partition writable, not create_topic's return: the controller answers
        # once the topic is committed even when a broker's replicas take longer than
        # its wait for them (actors/controller.py, ENSURE_REPLICAS_TIMEOUT_S).
        "create_s": {"target": round(TARGET_CREATE_100X3_S * args.partitions * args.replication_factor / 300, 1),
                     "measured": (result["writable"]["last_s"]
                                  if result["writable"]["partitions_acked"] == args.partitions else None),
                     "note": "60 s for 100 x RF 3, scaled to this run's replicas; until every partition took a record"},
    }
    for label, figures in result.get("e2e", {}).items():
        if isinstance(figures, dict) and "p50_ms" in figures:
            result["targets"][f"e2e_{label}"] = {"target": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS},
                                                 "measured": figures}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
