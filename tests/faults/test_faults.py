"""Fault injection on a multi-node Ray cluster: no acknowledged record is lost.

Each nemesis runs in its own process (``scenario.py``) because it needs a Ray cluster of
its own (``ray.cluster_utils.Cluster``: a head and three worker nodes with fast health
checks, one broker per node), while the other tests share one local Ray instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCENARIO = os.path.join(os.path.dirname(__file__), "scenario.py")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("nemesis", ["leader-replica", "leader-broker", "leader-node", "leader-node-returns", "controller"])
def test_acknowledged_records_survive(nemesis):
    completed = subprocess.run([sys.executable, SCENARIO, nemesis], capture_output=True, text=True, timeout=540)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(lines[-1])
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
