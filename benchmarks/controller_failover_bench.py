"""Failover of the active controller: how long after ``ray.kill`` of the active
controller's voter (its process dies; Ray knows at once, it killed it) another voter is
the active controller at a later epoch.

A rafka cluster on a local Ray instance with 3 controller voters (sharing this node:
``controller_voters=3``) and 1 broker; each trial kills the active voter (Ray restarts
it), polls every voter's ``status`` (in parallel, every 10 ms) until another one says
it is active at a higher epoch, then waits for the killed voter to be back before the next trial.

Run:  python benchmarks/controller_failover_bench.py [--trials N] [--json FILE]
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
from rafka.actors import names

VOTERS = ["0", "1", "2"]
DEADLINE_S = 30.0


def active(namespace: str) -> tuple[str, int] | None:
    """The voter that says it is active and its epoch, asking every voter at once (a
    restarting voter's call may hang: it is given 0.2 s, the others are not held up)."""
    refs = {}
    for voter_id in VOTERS:
        try:
            refs[ray.get_actor(names.raft_voter(voter_id), namespace=namespace).status.remote()] = voter_id
        except Exception:  # noqa: BLE001 - the killed one, restarting
            continue
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.2)
    for ref in ready:
        try:
            status = ray.get(ref)
        except Exception:  # noqa: BLE001 - the killed one
            continue
        if status["active"]:
            return refs[ref], status["controller_epoch"]
    return None


def wait_for(condition, what: str):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {DEADLINE_S} s")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    namespace = "failover-bench"
    cluster = rafka.Cluster.start(data_dir=tempfile.mkdtemp(prefix="rafka-failover-bench-"), brokers=1,
                                  namespace=namespace, controller_voters=3, wire_port=None)
    timings = []
    try:
        for _ in range(args.trials):
            leader, epoch = wait_for(lambda: active(namespace), "an active controller")
            handle = ray.get_actor(names.raft_voter(leader), namespace=namespace)
            killed_s = time.monotonic()
            ray.kill(handle, no_restart=False)
            wait_for(lambda leader=leader, epoch=epoch: (found := active(namespace)) and found[0] != leader
                     and found[1] > epoch, "another active controller")
            timings.append(time.monotonic() - killed_s)
            wait_for(lambda: all(s["reachable"] for s in cluster.quorum()["voters"]), "the killed voter back")
            cluster.admin().list_topics()  # the router reaches the new one
    finally:
        cluster.shutdown()
        ray.shutdown()
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "failover_after_kill_s": {"median": round(statistics.median(timings), 3),
                                        "max": round(max(timings), 3), "all": [round(t, 3) for t in timings]}}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
