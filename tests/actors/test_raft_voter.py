"""Controller-quorum voters (actors/raft_voter.py) on the shared Ray instance: commit,
failover after the leader's actor dies, a paused leader that steps down, a voter whose
directory was wiped catching up. Three voters per test, killed at its end."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid

import pytest
import ray

from rafka.actors.raft_voter import create_voter
from rafka.errors import NotLeaderError, RequestTimeoutError

VOTERS = ["c0", "c1", "c2"]
DEADLINE_S = 20.0  # generous: the machine is shared; the numbers come from benchmarks/quorum_bench.py


def broker_record(broker_id: int) -> dict:
    return {"type": "register_broker", "broker_id": broker_id, "node_id": "n", "data_dir": f"/d{broker_id}",
            "host": "h"}


class Quorum:
    def __init__(self, directory: str, voters: list[str] = VOTERS) -> None:
        self.directory = directory
        self.voters = voters
        self.namespace = f"raft-test-{uuid.uuid4().hex[:8]}"
        self.handles = {voter: self.create(voter, bootstrap=True) for voter in voters}
        ray.get([handle.start.remote() for handle in self.handles.values()])

    def create(self, voter: str, bootstrap: bool = False):
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                return create_voter(voter, self.voters, os.path.join(self.directory, voter), self.namespace,
                                    bootstrap=bootstrap)
            except ValueError:  # a killed actor's name is released asynchronously
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def statuses(self, voters=None) -> dict:
        result = {}
        for voter in voters or self.voters:
            try:
                result[voter] = ray.get(self.handles[voter].status.remote(), timeout=1.0)
            except Exception:  # noqa: BLE001 - dead or paused: no status
                pass
        return result

    def wait_for_leader(self, among=None, newer_than: int = 0) -> tuple[str, dict]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            leaders = [(voter, status) for voter, status in self.statuses(among).items()
                       if status["role"] == "leader" and status["term"] > newer_than]
            if leaders:
                return max(leaders, key=lambda item: item[1]["term"])
            time.sleep(0.02)
        raise TimeoutError(f"no leader within {DEADLINE_S} s: {self.statuses()}")

    def propose(self, record: dict, among=None) -> dict:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            leader, _ = self.wait_for_leader(among)
            try:
                return ray.get(self.handles[leader].propose.remote(record, timeout_s=5.0))
            except (NotLeaderError, RequestTimeoutError):
                if time.monotonic() > deadline:
                    raise

    def wait_applied_everywhere(self, voters=None) -> list[dict]:
        deadline = time.monotonic() + DEADLINE_S
        voters = voters or self.voters
        while True:
            views = [ray.get(self.handles[voter].applied_metadata.remote(), timeout=5.0) for voter in voters]
            statuses = self.statuses(voters)
            if len({view["last_applied"] for view in views}) == 1 and len(statuses) == len(voters) \
                    and not any(status["recovering"] for status in statuses.values()):
                return [view["state"] for view in views]
            if time.monotonic() > deadline:
                raise TimeoutError(f"voters did not converge: {statuses}")
            time.sleep(0.05)

    def close(self) -> None:
        for handle in self.handles.values():
            ray.kill(handle, no_restart=True)


@pytest.fixture
def quorum(ray_instance, tmp_path):
    quorum = Quorum(str(tmp_path))
    yield quorum
    quorum.close()


def test_propose_commits_the_record_on_every_voter(quorum):
    result = quorum.propose(broker_record(1))
    assert result["sequence"] == 1
    states = quorum.wait_applied_everywhere()
    assert all(state == states[0] for state in states)
    assert states[0]["brokers"]["1"]["data_dir"] == "/d1"


def test_propose_on_a_follower_raises_not_leader(quorum):
    leader, _ = quorum.wait_for_leader()
    follower = next(voter for voter in VOTERS if voter != leader)
    with pytest.raises(NotLeaderError):
        ray.get(quorum.handles[follower].propose.remote(broker_record(1)))


def test_propose_of_an_unknown_record_type_raises_naming_it(quorum):
    leader, _ = quorum.wait_for_leader()
    with pytest.raises(ValueError, match="no-such-type"):
        ray.get(quorum.handles[leader].propose.remote({"type": "no-such-type"}))


def test_kill_of_the_leader_elects_another_that_keeps_every_commit(quorum):
    for broker_id in range(3):
        quorum.propose(broker_record(broker_id))
    leader, status = quorum.wait_for_leader()
    killed_s = time.monotonic()
    ray.kill(quorum.handles[leader], no_restart=True)
    survivors = [voter for voter in VOTERS if voter != leader]
    new_leader, new_status = quorum.wait_for_leader(among=survivors, newer_than=status["term"])
    print(f"failover after ray.kill of the leader: {time.monotonic() - killed_s:.2f} s")
    quorum.propose(broker_record(3), among=survivors)
    states = quorum.wait_applied_everywhere(survivors)
    assert states[0] == states[1]
    assert sorted(states[0]["brokers"]) == ["0", "1", "2", "3"]


def test_paused_leader_steps_down_and_its_stale_proposal_is_not_committed(quorum):
    quorum.propose(broker_record(1))
    leader, status = quorum.wait_for_leader()
    pid = ray.get(quorum.handles[leader].pid.remote())
    os.kill(pid, signal.SIGSTOP)
    try:
        survivors = [voter for voter in VOTERS if voter != leader]
        quorum.wait_for_leader(among=survivors, newer_than=status["term"])
        quorum.propose(broker_record(2), among=survivors)
        stale = quorum.handles[leader].propose.remote(broker_record(99), timeout_s=5.0)  # queued while paused
    finally:
        os.kill(pid, signal.SIGCONT)
    with pytest.raises((NotLeaderError, RequestTimeoutError)):
        ray.get(stale, timeout=30)
    states = quorum.wait_applied_everywhere()
    assert all(state == states[0] for state in states)
    assert sorted(states[0]["brokers"]) == ["1", "2"]
    assert quorum.statuses([leader])[leader]["role"] != "leader" or \
        quorum.statuses([leader])[leader]["term"] > status["term"]


def test_voter_with_a_wiped_directory_rejoins_empty_and_catches_up(quorum):
    for broker_id in range(3):
        quorum.propose(broker_record(broker_id))
    leader, _ = quorum.wait_for_leader()
    wiped = next(voter for voter in VOTERS if voter != leader)
    ray.kill(quorum.handles[wiped], no_restart=True)
    shutil.rmtree(os.path.join(quorum.directory, wiped))
    quorum.propose(broker_record(3))
    quorum.handles[wiped] = quorum.create(wiped)  # not bootstrap: its empty directory means a lost disk
    first = ray.get(quorum.handles[wiped].start.remote())
    assert first["recovering"] and first["last_index"] == 0
    quorum.propose(broker_record(4))
    states = quorum.wait_applied_everywhere()  # includes: no voter still recovering
    assert all(state == states[0] for state in states)
    assert sorted(states[0]["brokers"]) == ["0", "1", "2", "3", "4"]
