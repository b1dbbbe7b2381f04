"""The controller quorum on the session's Ray (docs/controller-quorum.md): a rafka cluster
of its own with three controller voters (sharing this one node) and two brokers. One
active controller, the Raft leader; its epoch fences a deposed one; a killed one is
replaced and partition leader elections go on; a wiped voter rejoins and catches up.
After each, every voter's committed metadata is the same. The multi-node scenarios
(voters on distinct nodes, a lost node, a lost controller directory) are in
tests/faults/controller_quorum_nodes_scenario.py."""

import asyncio
import os
import shutil
import signal
import sys
import time
import uuid

import pytest
import ray

import rafka
from rafka.actors import names
from rafka.actors.controller import Controller
from rafka.client import rpc
from rafka.errors import NotControllerError, StaleControllerEpochError, TopicExistsError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "faults"))
import nemesis  # noqa: E402  (the fault harness's nemesis: its controller faults are run here)

NAMESPACE = "rafka-test-quorum"
VOTERS = ["0", "1", "2"]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def quorum_cluster(ray_instance, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("quorum"))
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=2, namespace=NAMESPACE, controller_voters=3,
                                  wire_port=None, broker_session_timeout_ms=10_000)
    cluster.data_dir = data_dir
    yield cluster
    cluster.shutdown()


def voter(voter_id: str):
    return ray.get_actor(names.raft_voter(voter_id), namespace=NAMESPACE)


def active_quorum(cluster, newer_than: int = -1) -> dict:
    def active():
        quorum = cluster.quorum()
        return quorum if quorum["leader"] is not None and quorum["epoch"] > newer_than else None
    return wait_for(active, 30, f"an active controller at an epoch above {newer_than}")


def assert_voters_agree() -> None:
    """Every voter has applied the same committed metadata (once they caught up)."""
    def views():
        seen = [ray.get(voter(v).applied_metadata.remote(), timeout=10) for v in VOTERS]
        return seen if len({view["last_applied"] for view in seen}) == 1 else None
    seen = wait_for(views, 30, "every voter to apply the same index")
    assert seen[0]["state"] == seen[1]["state"] == seen[2]["state"]


def test_quorum_has_one_active_controller_and_all_voters(quorum_cluster):
    quorum = active_quorum(quorum_cluster)
    assert [status["voter_id"] for status in quorum["voters"]] == VOTERS
    assert [status["voter_id"] for status in quorum["voters"] if status.get("active")] == [quorum["leader"]]
    assert quorum["epoch"] == next(s["term"] for s in quorum["voters"] if s["voter_id"] == quorum["leader"])
    assert set(quorum["lag"]) == set(VOTERS)
    described = quorum_cluster.admin().describe_cluster()
    assert described["controller"]["leader"] == quorum["leader"] and len(described["brokers"]) == 2


def test_paused_active_controller_steps_down_and_is_fenced_by_epoch(quorum_cluster, topic):
    old = active_quorum(quorum_cluster)
    old_leader, old_epoch = old["leader"], old["epoch"]
    pid = ray.get(voter(old_leader).pid.remote(), timeout=10)
    os.kill(pid, signal.SIGSTOP)
    try:
        new = active_quorum(quorum_cluster, newer_than=old_epoch)
        # The new controller creates the topic: brokers and replicas see the new epoch.
        quorum_cluster.admin().create_topic(topic, partitions=1, replication_factor=2)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert new["leader"] != old_leader
    deposed = voter(old_leader)
    wait_for(lambda: not ray.get(deposed.status.remote(), timeout=10)["active"], 30, "the resumed voter to step down")
    with pytest.raises(NotControllerError, match=f"controller voter {old_leader} is not the active controller"):
        ray.get(deposed.list_topics.remote(), timeout=10)
    # Requests carrying the deposed controller's epoch are refused by brokers and replicas.
    partition = quorum_cluster.admin().describe_topic(topic)["partitions"][0]
    view = {key: partition[key] for key in ("leader", "leader_epoch", "replicas", "isr")}
    broker_id = partition["replicas"][1]
    spec = {"topic": topic, "partition": 0, "config": {}, "state": dict(view, controller_epoch=old_epoch),
            "replica_lag_time_max_ms": 30_000, "controller_epoch": old_epoch}
    broker = ray.get_actor(names.broker(broker_id), namespace=NAMESPACE)
    with pytest.raises(StaleControllerEpochError, match=f"controller epoch {old_epoch} refused"):
        ray.get(broker.ensure_replicas.remote([spec]), timeout=30)
    replica = ray.get_actor(names.replica(topic, 0, broker_id), namespace=NAMESPACE)
    stale = dict(view, leader=broker_id, leader_epoch=partition["leader_epoch"] + 1, controller_epoch=old_epoch)
    with pytest.raises(StaleControllerEpochError, match=f"controller epoch {old_epoch} refused"):
        ray.get(replica.apply_state.remote(stale), timeout=30)
    status = ray.get(replica.status.remote(), timeout=30)
    assert (status["leader_id"], status["leader_epoch"]) == (partition["leader"], partition["leader_epoch"])
    assert_voters_agree()


def test_killed_active_controller_is_replaced_and_partition_elections_continue(quorum_cluster, topic):
    admin = quorum_cluster.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2)
    producer = quorum_cluster.producer(acks="all")
    for index in range(20):
        producer.send(topic, value=f"before-{index}".encode())
    producer.flush()
    old = active_quorum(quorum_cluster)
    ray.kill(voter(old["leader"]), no_restart=False)  # Ray restarts it; another voter leads meanwhile
    active_quorum(quorum_cluster, newer_than=old["epoch"])
    # A partition leader election under the new controller: the leader replica dies.
    before = admin.describe_topic(topic)["partitions"][0]
    ray.kill(ray.get_actor(names.replica(topic, 0, before["leader"]), namespace=NAMESPACE), no_restart=False)

    def moved():
        partition = admin.describe_topic(topic)["partitions"][0]
        return partition if partition["leader_epoch"] > before["leader_epoch"] else None
    after = wait_for(moved, 60, "a new partition leader epoch")
    assert after["leader"] >= 0
    for index in range(20):
        producer.send(topic, value=f"after-{index}".encode())
    producer.flush()
    producer.close()
    consumer = quorum_cluster.consumer(group_id=f"{topic}-g", auto_offset_reset="earliest")
    consumer.subscribe([topic])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 40 and time.monotonic() < deadline:
        for record in consumer.poll(timeout_s=1.0):
            values.append(record.value)
    consumer.close()
    assert sorted(values) == sorted([f"before-{i}".encode() for i in range(20)] + [f"after-{i}".encode() for i in range(20)])
    assert_voters_agree()


def test_wiped_voter_rejoins_empty_and_catches_up(quorum_cluster, topic):
    quorum = active_quorum(quorum_cluster)
    follower = next(v for v in VOTERS if v != quorum["leader"])
    ray.kill(voter(follower), no_restart=True)
    shutil.rmtree(os.path.join(quorum_cluster.data_dir, "quorum", follower))
    quorum_cluster.admin().create_topic(topic, partitions=1, replication_factor=1)  # committed by the other two
    ray.remote(Controller).options(name=names.raft_voter(follower), namespace=NAMESPACE, lifetime="detached",
                                   num_cpus=0, max_restarts=-1, max_concurrency=1000).remote(
        quorum_cluster.data_dir, NAMESPACE, voter_id=follower, voters=VOTERS)

    def caught_up():
        status = ray.get(voter(follower).status.remote(), timeout=10)
        lag = quorum_cluster.quorum()["lag"].get(follower)
        return not status["recovering"] and lag == 0
    wait_for(caught_up, 60, f"wiped voter {follower} to catch up and be re-admitted")
    view = ray.get(voter(follower).applied_metadata.remote(), timeout=10)
    assert topic in view["state"]["topics"]
    assert_voters_agree()


def test_unclean_follower_report_commits_its_isr_removal_before_answering(quorum_cluster, topic):
    """``replica_restarted(..., clean=False)`` for an in-sync follower takes it out of the
    ISR through the quorum: the answer already shows the committed change (a new partition
    epoch, the follower out of the ISR) and every voter has it."""
    admin = quorum_cluster.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2)
    before = wait_for(lambda: (lambda p: p if len(p["isr"]) == 2 else None)(admin.describe_topic(topic)["partitions"][0]),
                      60, "both replicas in the ISR")
    follower = next(b for b in before["replicas"] if b != before["leader"])
    controller = ray.get_actor(names.CONTROLLER, namespace=NAMESPACE)
    view = ray.get(controller.replica_restarted.remote(topic, 0, follower, False), timeout=60)
    assert follower not in view["isr"] and view["partition_epoch"] > before["partition_epoch"]
    assert view["controller_epoch"] == active_quorum(quorum_cluster)["epoch"]
    assert_voters_agree()


def _active_voter(cluster):
    return voter(active_quorum(cluster)["leader"])


def _on_loop(self, function, *args):
    """Run ``function(self, *args)`` on the actor's event loop (``__ray_call__`` runs in
    another thread)."""
    async def call():
        return function(self, *args)
    return asyncio.run_coroutine_threadsafe(call(), self._heartbeats.get_loop()).result(timeout=10)


def _senders(handle) -> dict:
    return ray.get(handle.__ray_call__.remote(
        lambda self: {"senders": [list(k) for k in self._state_senders],
                      "views": [list(k) for k in self._undelivered_views]}), timeout=10)


def test_state_sender_stops_when_the_replica_answers_a_newer_controller_epoch(quorum_cluster, topic):
    """A view a replica refuses with StaleControllerEpochError is never delivered (a newer
    controller has spoken): its sender gives up instead of retrying it forever."""
    quorum_cluster.admin().create_topic(topic, partitions=1, replication_factor=1)
    partition = quorum_cluster.admin().describe_topic(topic)["partitions"][0]
    active = _active_voter(quorum_cluster)
    stale = {key: partition[key] for key in ("leader", "leader_epoch", "replicas", "isr", "partition_epoch")}
    stale["controller_epoch"] = 0  # older than any active controller's epoch (terms start at 1)

    def send(self, topic, broker_id, view):
        self._send_state(topic, 0, broker_id, view)
        return True
    assert ray.get(active.__ray_call__.remote(_on_loop, send, topic, partition["leader"], stale), timeout=10)
    key = [topic, 0, partition["leader"]]
    wait_for(lambda: key not in _senders(active)["senders"], 20, "the sender of the refused view to stop")
    assert key not in _senders(active)["views"]


def test_voter_that_stops_being_active_drops_its_undelivered_views(quorum_cluster, topic):
    """A deposed controller's pending state pushes are cancelled at once: they carry its old
    epoch and a successor pushes its own."""
    quorum_cluster.admin().create_topic(topic, partitions=1, replication_factor=1)
    partition = quorum_cluster.admin().describe_topic(topic)["partitions"][0]
    old = active_quorum(quorum_cluster)
    handle = voter(old["leader"])
    view = {key: partition[key] for key in ("leader", "leader_epoch", "replicas", "isr", "partition_epoch")}

    def send(self, topic, view):
        # A replica that does not exist: its sender keeps retrying for STATE_PUSH_MISSING_ACTOR_S.
        self._send_state(topic, 7, 99, dict(view, controller_epoch=self.epoch))
        return True
    assert ray.get(handle.__ray_call__.remote(_on_loop, send, topic, view), timeout=10)
    assert [topic, 7, 99] in _senders(handle)["senders"]
    pid = ray.get(handle.pid.remote(), timeout=10)
    os.kill(pid, signal.SIGSTOP)
    try:
        active_quorum(quorum_cluster, newer_than=old["epoch"])
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not ray.get(handle.status.remote(), timeout=10)["active"], 30, "the resumed voter to step down")
    pending = _senders(handle)
    assert pending == {"senders": [], "views": []}


def test_create_topic_sent_again_with_its_topic_id_answers_as_the_first_attempt(quorum_cluster, topic):
    """A create_topic attempt that committed before a failover is sent again to the next
    active controller (by the router, or by a client retrying): with the same topic id it
    gets the topic's description, not TopicExistsError; another id still gets that error."""
    controller = ray.get_actor(names.CONTROLLER, namespace=NAMESPACE)
    topic_id = uuid.uuid4().hex
    first = rpc.get(controller.create_topic.remote(topic, 1, 1, {}, topic_id), timeout_s=60)
    again = rpc.get(controller.create_topic.remote(topic, 1, 1, {}, topic_id), timeout_s=60)
    assert first["topic_id"] == again["topic_id"] == topic_id
    with pytest.raises(TopicExistsError):
        rpc.get(controller.create_topic.remote(topic, 1, 1, {}, uuid.uuid4().hex), timeout_s=60)


def test_create_topic_with_a_malformed_topic_id_raises_naming_it(quorum_cluster, topic):
    controller = ray.get_actor(names.CONTROLLER, namespace=NAMESPACE)
    with pytest.raises(ValueError, match="not-hex"):
        rpc.get(controller.create_topic.remote(topic, 1, 1, {}, "not-hex"), timeout_s=60)
    assert topic not in rpc.get(controller.list_topics.remote(), timeout_s=60)


# -- the randomized nemesis's controller faults (tests/faults/nemesis.py), on this quorum ----


def _nemesis(cluster) -> tuple[nemesis.Nemesis, list[dict]]:
    records: list[dict] = []
    return nemesis.Nemesis(cluster, None, [], None, names.OFFSETS_TOPIC, records.append), records


def test_nemesis_rebalance_runs_on_the_active_controller(quorum_cluster):
    chaos, _ = _nemesis(quorum_cluster)
    quorum = active_quorum(quorum_cluster)
    # Every controller method starts the background loops; the rebalance runs on theirs.
    quorum_cluster.admin().list_topics()
    outcome = chaos._op_rebalance({"op": "rebalance"})
    assert outcome["voter"] == quorum["leader"] and outcome["rebalance"] in (
        "done", "the controller has not started its loop yet"), outcome


def test_nemesis_wipe_voter_leaves_a_voter_that_rejoins_and_catches_up(quorum_cluster, topic):
    chaos, _ = _nemesis(quorum_cluster)
    active_quorum(quorum_cluster)
    quorum_cluster.admin().create_topic(topic, partitions=1, replication_factor=1)
    outcome = chaos._op_wipe_voter({"op": "wipe_voter", "role": "follower", "pick": 0})
    wiped = outcome["voter"]
    assert not outcome["was_leader"] and outcome["directory"].endswith(os.path.join("quorum", wiped))

    def caught_up():
        quorum = quorum_cluster.quorum()
        status = next(s for s in quorum["voters"] if s["voter_id"] == wiped)
        return status["reachable"] and status["recovering"] is False and quorum["lag"].get(wiped) == 0
    wait_for(caught_up, 90, f"wiped voter {wiped} to restart, catch up and be re-admitted")
    view = ray.get(voter(wiped).applied_metadata.remote(), timeout=10)
    assert topic in view["state"]["topics"]
    assert_voters_agree()


def test_nemesis_refuses_to_wipe_a_voter_while_another_is_unreachable(quorum_cluster, monkeypatch):
    monkeypatch.setattr(nemesis, "WIPE_WAIT_S", 2.0)
    chaos, _ = _nemesis(quorum_cluster)
    quorum = active_quorum(quorum_cluster)
    follower = next(v for v in VOTERS if v != quorum["leader"])
    pid = ray.get(voter(follower).pid.remote(), timeout=10)
    os.kill(pid, signal.SIGSTOP)  # unreachable: a second wipe could leave one voter with data
    try:
        wait_for(lambda: not next(s for s in quorum_cluster.quorum()["voters"] if s["voter_id"] == follower)[
            "reachable"], 30, f"voter {follower} to be unreachable")
        with pytest.raises(LookupError, match=follower):
            chaos._op_wipe_voter({"op": "wipe_voter", "role": "leader", "pick": 0})
    finally:
        os.kill(pid, signal.SIGCONT)
    assert_voters_agree()
