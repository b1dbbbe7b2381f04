"""The nemesis's schedules, without Ray: reproducible from the seed, bounded in time,
healed by the end, overlapping, and with at most one Ray node out at a time."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nemesis  # noqa: E402

TOPICS = {"soak-log": 2, "soak-compact": 1}


def schedule(seed: int, duration_s: float = 600.0) -> dict:
    return nemesis.generate_schedule(seed, duration_s, topics=TOPICS, brokers=4, worker_nodes=3, consumers=2)


def _end_s(op: dict) -> float:
    return op["at_s"] + op.get("duration_s", 0.0)


def test_generate_schedule_is_the_same_for_the_same_seed():
    assert json.dumps(schedule(7)) == json.dumps(schedule(7))
    assert schedule(7)["ops"] != schedule(8)["ops"]


def test_generate_schedule_survives_a_json_round_trip():
    made = schedule(3)
    assert json.loads(json.dumps(made)) == made


@pytest.mark.parametrize("seed", range(20))
def test_generate_schedule_heals_every_fault_inside_the_window(seed):
    made = schedule(seed)
    assert made["ops"], made
    for op in made["ops"]:
        assert 0 < op["at_s"] and _end_s(op) <= made["duration_s"], op
        if op["op"] not in ("rebalance", "kill"):
            assert _end_s(op) <= made["fault_window_s"] + 3.0, op  # the combo's rebalance may trail by 3 s


@pytest.mark.parametrize("seed", range(20))
def test_generate_schedule_removes_one_node_at_a_time(seed):
    removals = [op for op in schedule(seed, 1800.0)["ops"] if op["op"] == "remove_node"]
    for first, second in zip(removals, removals[1:]):
        assert second["at_s"] >= _end_s(first) + nemesis.NODE_GAP_S, (first, second)


def test_generate_schedule_overlaps_faults_and_uses_every_kind():
    made = schedule(11, 1800.0)
    kinds = {op["op"] for op in made["ops"]}
    assert kinds == {"kill", "pause", "slow", "remove_node", "rebalance", "consumer_rejoin", "consumer_stall"}
    targets = {op["target"]["kind"] for op in made["ops"] if "target" in op}
    assert targets == {"replica", "broker", "coordinator", "controller"}
    spans = sorted((op["at_s"], _end_s(op)) for op in made["ops"] if op.get("duration_s"))
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:])), "no two faults overlap"
    # The combination Kafka's ISR rules exist for: a follower paused while its leader is killed.
    pauses = [op for op in made["ops"] if op["op"] == "pause" and op["target"].get("role") == "follower"]
    kills = [op for op in made["ops"] if op["op"] == "kill" and op["target"].get("role") == "leader"]
    assert any(p["target"]["topic"] == k["target"]["topic"] and p["target"]["partition"] == k["target"]["partition"]
               and p["at_s"] <= k["at_s"] <= _end_s(p) for p in pauses for k in kills)


def test_generate_schedule_refuses_a_non_positive_duration():
    with pytest.raises(ValueError, match="-1"):
        schedule(1, -1)
