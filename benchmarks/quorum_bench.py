"""Controller-quorum benchmark: commit latency of one metadata record, and failover time.

On one local Ray instance, with voters from actors/raft_voter.py (fsync on, data in a
temporary directory on this machine's disk):

* commit latency: ``propose`` of one ``register_broker`` record at a time, measured at the
  caller (a driver process, as the controller would be in the same process as its voter,
  this includes one actor call more than the controller will pay), with 3 voters and
  with 1 voter;
* failover: ``ray.kill`` of the leader voter, then the time until a survivor reports
  itself leader of a newer term (status polled every 10 ms), median of ``--trials``. The
  killed voter is started again on its directory and caught up before the next trial;
* start: time from creating a single voter to its being leader (the embedded default).

Run:  python benchmarks/quorum_bench.py [--records N] [--trials N] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
import time
import uuid

import ray

from rafka.actors.raft_voter import create_voter

DEADLINE_S = 30.0


def record(index: int) -> dict:
    return {"type": "register_broker", "broker_id": index, "node_id": "n", "data_dir": f"/d{index}", "host": "h"}


def statuses(handles: dict, voters) -> dict:
    result = {}
    for voter in voters:
        try:
            result[voter] = ray.get(handles[voter].status.remote(), timeout=1.0)
        except Exception:  # noqa: BLE001 - dead: no status
            pass
    return result


def wait_for_leader(handles: dict, voters, newer_than: int = 0) -> tuple[str, int]:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for voter, status in statuses(handles, voters).items():
            if status["role"] == "leader" and status["term"] > newer_than:
                return voter, status["term"]
        time.sleep(0.01)
    raise TimeoutError("no leader")


def start_quorum(directory: str, voters: list[str], namespace: str) -> dict:
    handles = {voter: create_voter(voter, voters, os.path.join(directory, voter), namespace, bootstrap=True)
               for voter in voters}
    ray.get([handle.start.remote() for handle in handles.values()])
    return handles


def commit_latency_ms(handles: dict, voters: list[str], records: int) -> dict:
    leader, _ = wait_for_leader(handles, voters)
    latencies_ms = []
    for index in range(records):
        started = time.perf_counter()
        ray.get(handles[leader].propose.remote(record(index)))
        latencies_ms.append((time.perf_counter() - started) * 1000)
    latencies_ms.sort()
    return {"records": records, "p50_ms": round(statistics.median(latencies_ms), 2),
            "p99_ms": round(latencies_ms[int(len(latencies_ms) * 0.99) - 1], 2),
            "mean_ms": round(statistics.mean(latencies_ms), 2)}


def failover_s(directory: str, namespace: str, trials: int) -> dict:
    voters = ["c0", "c1", "c2"]
    handles = start_quorum(directory, voters, namespace)
    times_s = []
    for trial in range(trials):
        leader, term = wait_for_leader(handles, voters)
        ray.get(handles[leader].propose.remote(record(1000 + trial)))
        killed = time.monotonic()
        ray.kill(handles[leader], no_restart=True)
        survivors = [voter for voter in voters if voter != leader]
        wait_for_leader(handles, survivors, newer_than=term)
        times_s.append(time.monotonic() - killed)
        deadline = time.monotonic() + DEADLINE_S
        while True:  # start it again on its directory (its name is released asynchronously)
            try:
                handles[leader] = create_voter(leader, voters, os.path.join(directory, leader), namespace)
                break
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        ray.get(handles[leader].start.remote())
        time.sleep(1.0)  # let it catch up before the next kill
    for handle in handles.values():
        ray.kill(handle, no_restart=True)
    return {"trials": [round(value, 3) for value in times_s], "median_s": round(statistics.median(times_s), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description="rafka controller-quorum benchmark")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    namespace = f"quorum-bench-{uuid.uuid4().hex[:8]}"
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", namespace=namespace)
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "cpus": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory(dir=os.getcwd()) as directory:
            started = time.perf_counter()
            single = start_quorum(os.path.join(directory, "one"), ["solo"], namespace + "-one")
            wait_for_leader(single, ["solo"])
            results["single_voter_start_to_leader_s"] = round(time.perf_counter() - started, 3)
            results["commit_latency_1_voter"] = commit_latency_ms(single, ["solo"], args.records)
            ray.kill(single["solo"], no_restart=True)
            three = start_quorum(os.path.join(directory, "three"), ["c0", "c1", "c2"], namespace + "-three")
            results["commit_latency_3_voters"] = commit_latency_ms(three, ["c0", "c1", "c2"], args.records)
            for handle in three.values():
                ray.kill(handle, no_restart=True)
            results["failover_after_ray_kill"] = failover_s(os.path.join(directory, "failover"),
                                                            namespace + "-failover", args.trials)
    finally:
        ray.shutdown()
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
