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


def voter_schedule(seed: int, controller_voters: int = 3, duration_s: float = 1800.0) -> dict:
    return nemesis.generate_schedule(seed, duration_s, topics=TOPICS, brokers=4, worker_nodes=3, consumers=2,
                                     controller_voters=controller_voters)


def test_generate_schedule_strikes_controller_voters_on_a_quorum_of_three():
    ops = voter_schedule(11)["ops"]
    assert any(op["op"] == "wipe_voter" for op in ops)
    assert {op["target"]["kind"] for op in ops if "target" in op} >= {"controller", "voter"}


@pytest.mark.parametrize("controller_voters", [0, 1])
def test_generate_schedule_leaves_voters_alone_below_three_voters(controller_voters):
    made = voter_schedule(11, controller_voters)
    assert made["ops"] == schedule(11, 1800.0)["ops"]  # the same as before voters were targets
    assert not any(op["op"] == "wipe_voter" or op.get("target", {}).get("kind") == "voter" for op in made["ops"])


@pytest.mark.parametrize("seed", range(20))
def test_generate_schedule_wipes_one_voter_or_removes_one_node_at_a_time(seed):
    # Two voters without their data at once would be a lost majority of a 3-voter quorum.
    spans = sorted((op["at_s"], _end_s(op)) for op in voter_schedule(seed)["ops"]
                   if op["op"] in ("wipe_voter", "remove_node"))
    for (_, first_end), (second_start, _) in zip(spans, spans[1:]):
        assert second_start >= first_end + nemesis.NODE_GAP_S, spans
