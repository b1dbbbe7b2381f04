"""The classic group state machine (actors/classic_group.py) as a plain class: joins
complete when every member rejoined, the leader's assignment reaches every member,
heartbeats ask for a rejoin, generations fence commits, departures rebalance."""

import asyncio
import time

import pytest

from rafka.actors.classic_group import COMPLETING, EMPTY, PREPARING, STABLE, ClassicGroup


def join_request(member_id: str = "", protocols=(("range", b"r"), ("roundrobin", b"rr")), **extra) -> dict:
    return {"member_id": member_id, "client_id": "c", "protocol_type": "consumer", "protocols": list(protocols),
            "session_timeout_ms": 10_000, "rebalance_timeout_ms": 30_000, **extra}


def run(coroutine):
    return asyncio.run(coroutine)


async def _answer(value):
    return await value if isinstance(value, asyncio.Future) else value


def test_join_of_a_first_member_completes_at_once_as_leader():
    async def scenario():
        group = ClassicGroup("g")
        answer = await _answer(group.join(join_request()))
        assert answer["error"] is None and answer["leader"] == answer["member_id"]
        assert answer["generation"] == 1 and answer["protocol"] == "range"
        assert answer["members"] == [(answer["member_id"], None, b"r")]
        assert group.state == COMPLETING
    run(scenario())


def test_sync_of_the_leader_hands_each_member_its_assignment():
    async def scenario():
        group = ClassicGroup("g")
        first = await _answer(group.join(join_request()))
        group.sync({"member_id": first["member_id"], "generation": 1, "assignments": {first["member_id"]: (b"a1", [])}})
        second_join = group.join(join_request())
        heartbeat = group.heartbeat({"member_id": first["member_id"], "generation": 1})
        assert heartbeat["error"] == "rebalance_in_progress" and group.state == PREPARING
        rejoin = group.join(join_request(first["member_id"]))
        first, second = await _answer(rejoin), await _answer(second_join)
        assert first["generation"] == second["generation"] == 2
        leader, follower = (first, second) if first["members"] else (second, first)
        assert len(leader["members"]) == 2 and follower["members"] == []
        waiting = group.sync({"member_id": follower["member_id"], "generation": 2})
        assert isinstance(waiting, asyncio.Future) and not waiting.done()
        group.sync({"member_id": leader["member_id"], "generation": 2, "assignments": {
            leader["member_id"]: (b"L", [("t", 0)]), follower["member_id"]: (b"F", [("t", 1)])}})
        assert (await waiting)["assignment"] == b"F" and group.state == STABLE
    run(scenario())


def test_join_with_no_common_protocol_is_inconsistent():
    async def scenario():
        group = ClassicGroup("g")
        await _answer(group.join(join_request()))
        answer = group.join(join_request(protocols=[("cooperative-sticky", b"")]))
        assert answer["error"] == "inconsistent_group_protocol" and "cooperative-sticky" in answer["message"]
    run(scenario())


def test_commit_from_an_old_generation_is_an_illegal_generation():
    async def scenario():
        group = ClassicGroup("g")
        first = await _answer(group.join(join_request()))
        group.sync({"member_id": first["member_id"], "generation": 1, "assignments": {}})
        assert group.commit_error(first["member_id"], 1) is None
        assert group.commit_error(first["member_id"], 0) == "illegal_generation"
        assert group.commit_error("someone", 1) == "unknown_member_id"
    run(scenario())


def test_leave_of_the_last_member_empties_the_group():
    async def scenario():
        group = ClassicGroup("g")
        first = await _answer(group.join(join_request()))
        assert group.leave(first["member_id"], None) is None
        assert group.state == EMPTY and not group.members
        assert group.leave(first["member_id"], None) == "unknown_member_id"
    run(scenario())


def test_expire_removes_a_member_that_stopped_heartbeating_and_rebalances():
    async def scenario():
        group = ClassicGroup("g")
        first = await _answer(group.join(join_request()))
        second_join = group.join(join_request())
        await _answer(group.join(join_request(first["member_id"])))
        second = await second_join
        for answer in (first, second):
            group.sync({"member_id": answer["member_id"], "generation": 2, "assignments": {}})
        assert group.state == STABLE
        group.members[second["member_id"]].deadline = time.monotonic() - 1
        assert group.expire(time.monotonic()) == [second["member_id"]]
        assert group.state == PREPARING
        assert group.heartbeat({"member_id": first["member_id"], "generation": 2})["error"] == "rebalance_in_progress"
    run(scenario())


@pytest.mark.parametrize("timeout_ms", [0, 999, 1_800_001])
def test_join_with_a_session_timeout_out_of_bounds_is_refused_naming_it(timeout_ms):
    answer = ClassicGroup("g").join(join_request(session_timeout_ms=timeout_ms))
    assert answer["error"] == "invalid_session_timeout" and str(timeout_ms) in answer["message"]
