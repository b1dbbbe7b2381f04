"""Start-up planning of the controller quorum (actors/controller_quorum.py): which voters
start, whether the quorum is new, migrated or must not start. Single-node plans read the
local disk only (no Ray)."""

import os

import pytest

from rafka.actors.controller_quorum import (
    QUORUM_DIR,
    plan_quorum,
    prepare_voter_directory,
    probe,
)
from rafka.actors.metadata_store import MetadataStore
from rafka.actors.raft_log import RaftLog
from rafka.errors import ClusterError

HERE = "node-here"


def _voter_with_data(data_dir: str, voter_id: str, voters: list[str], recovering: bool = False) -> None:
    log = RaftLog(prepare_voter_directory(data_dir, voter_id, voters))
    log.set_term(3, None, recovering=recovering)
    log.close()


def test_plan_quorum_bootstraps_one_voter_when_no_data(tmp_path):
    plan = plan_quorum(str(tmp_path), [HERE], HERE)
    assert (plan.voters, plan.placements, plan.bootstrap, plan.initial_state) == (["0"], [("0", HERE)], True, None)


def test_plan_quorum_refuses_broker_data_without_quorum_data(tmp_path):
    os.makedirs(tmp_path / "broker-0")
    with pytest.raises(ClusterError, match=r"broker data exists \(\['broker-0'\]\)"):
        plan_quorum(str(tmp_path), [HERE], HERE)


def test_plan_quorum_refuses_when_fewer_than_a_majority_of_voters_have_data(tmp_path):
    voters = ["0", "1", "2"]
    _voter_with_data(str(tmp_path), "0", voters)
    _voter_with_data(str(tmp_path), "1", voters, recovering=True)  # a wiped voter that never caught up
    with pytest.raises(ClusterError) as raised:
        plan_quorum(str(tmp_path), [HERE], HERE, voter_count=3)
    message = str(raised.value)
    assert "only 1 of the 3 controller voters" in message
    assert f"voter 1 ({os.path.join(str(tmp_path), QUORUM_DIR, '1')})" in message
    assert f"voter 2 ({os.path.join(str(tmp_path), QUORUM_DIR, '2')})" in message


def test_plan_quorum_starts_a_majority_without_bootstrap(tmp_path):
    voters = ["0", "1", "2"]
    _voter_with_data(str(tmp_path), "0", voters)
    _voter_with_data(str(tmp_path), "2", voters)
    os.makedirs(tmp_path / "broker-0")
    plan = plan_quorum(str(tmp_path), [HERE], HERE, voter_count=3)
    assert (plan.voters, plan.bootstrap) == (voters, False)
    assert probe(str(tmp_path))["present"] == ["0", "2"]


def test_plan_quorum_migrates_a_single_directory_store(tmp_path):
    store = MetadataStore(str(tmp_path / "controller"))
    store.apply({"type": "allocate_producer_ids", "next_producer_id": 5000})
    store.close()
    os.makedirs(tmp_path / "broker-0")
    plan = plan_quorum(str(tmp_path), [HERE], HERE)
    assert plan.bootstrap and plan.initial_state["next_producer_id"] == 5000


def test_plan_quorum_rejects_a_bad_voter_count(tmp_path):
    with pytest.raises(ValueError, match="controller_voters must be a positive int, got 0"):
        plan_quorum(str(tmp_path), [HERE], HERE, voter_count=0)
