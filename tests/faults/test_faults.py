"""Fault injection on a multi-node Ray cluster: no acknowledged record is lost.

The nemeses run in a process of their own (``scenario.py``) because they need a Ray
cluster of their own (``ray.cluster_utils.Cluster``: a head and three worker nodes with
fast health checks), while the other tests share one local Ray instance. One process
runs every nemesis in turn on one such Ray cluster, each on a fresh rafka cluster (one
broker per node, its own namespace and data dir; a removed node is replaced before the
next), and prints one JSON line per nemesis: starting the Ray cluster once instead of
five times saves minutes. Each test checks its own nemesis's line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCENARIO = os.path.join(os.path.dirname(__file__), "scenario.py")
NEMESES = ["leader-replica", "leader-broker", "leader-node", "leader-node-returns", "controller"]


@pytest.fixture(scope="module")
def results() -> dict:
    """Every nemesis's JSON line, by nemesis, from one scenario.py run; on a failed run,
    its output (each test then fails with it)."""
    completed = subprocess.run([sys.executable, SCENARIO, *NEMESES], capture_output=True, text=True,
                               timeout=540 * len(NEMESES))
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    by_nemesis = {line["nemesis"]: line for line in lines}
    if completed.returncode != 0:
        by_nemesis["output"] = completed.stdout[-3000:] + completed.stderr[-3000:]
    return by_nemesis


# The timeout covers the module fixture, which the first test runs for all five.
@pytest.mark.timeout(600 * len(NEMESES))
@pytest.mark.parametrize("nemesis", NEMESES)
def test_acknowledged_records_survive(results, nemesis):
    assert nemesis in results and "output" not in results, results.get("output", results)
    result = results[nemesis]
    assert "error" not in result, result["error"]
    assert result["acknowledged"] > result["struck_after_acks"] > 0, result
    assert result["lost"] == [], result
    assert result["duplicates"] == 0, result
    assert result["reads_agree"] and result["offsets_monotonic"] and result["order_preserved"], result
    assert result["read"] >= result["acknowledged"], result
    if nemesis == "leader-node":
        assert result["leader_after"] != result["leader_before"] and result["epoch_after"] >= 1, result
        assert result["leader_before"] not in result["isr_after"], result
    if nemesis == "leader-node-returns":
        assert result["leader_after"] == result["leader_before"] and result["epoch_after"] >= 2, result
        assert len(result["isr_after"]) == 3, result
