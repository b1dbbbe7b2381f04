"""The Controller actor's own contract (actors/controller.py), called directly on Ray
through its public methods: topics created, described and deleted; bad requests refused
naming the bad value, with nothing created; a new leader from the ISR at a higher epoch
when a broker is lost; ISR changes checked against the leader epoch and the partition
epoch; topic configs altered and sent to the replicas.

One rafka cluster of this module's own (two brokers, in a namespace of its own, started
by ``rafka.Cluster.start``, so a test that loses a broker disturbs no other module);
every test makes its own topics and deletes them (the ``topic`` fixture). A broker is
"lost" by freezing its process past its session, as a paused or partitioned broker is
lost to the controller; it is thawed before the test ends, and the test waits until the
controller counts it alive again. The client's view (an admin, producers) is
tests/client/test_admin.py and tests/client/test_replication.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest
import ray

import rafka
from rafka.actors import names
from rafka.calls import call_with_retries, get

CALL_TIMEOUT_S = 120
BROKER_SESSION_TIMEOUT_MS = 6_000
# Long, so that no leader asks to shrink its ISR by itself on a loaded machine (a slow
# follower start) while a test changes or checks the ISR through the controller.
REPLICA_LAG_TIME_MAX_MS = 300_000


@pytest.fixture(scope="module")
def own_cluster(ray_instance, tmp_path_factory):
    cluster = rafka.Cluster.start(data_dir=str(tmp_path_factory.mktemp("controller-actor")), brokers=2,
                                  namespace="rafka-test-controller-actor", wire_port=None,
                                  broker_session_timeout_ms=BROKER_SESSION_TIMEOUT_MS,
                                  replica_lag_time_max_ms=REPLICA_LAG_TIME_MAX_MS)
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def controller(own_cluster):
    return own_cluster.controller


def call(controller, method: str, *args, timeout_s: float = CALL_TIMEOUT_S):
    return get(getattr(controller, method).remote(*args), timeout_s=timeout_s)


def create(controller, topic: str, partitions: int = 1, replication_factor: int = 2, config=None) -> dict:
    return call(controller, "create_topic", topic, partitions, replication_factor, config)


def wait_until(condition, what: str, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def partition(controller, topic: str, index: int = 0) -> dict:
    return call(controller, "describe_topic", topic)["partitions"][index]


def replica(cluster, topic: str, index: int, broker_id: int):
    return ray.get_actor(names.replica(topic, index, broker_id), namespace=cluster.namespace)


def actor_pid(handle) -> int:
    return get(handle.__ray_call__.remote(lambda actor: os.getpid()), timeout_s=CALL_TIMEOUT_S)


def alive_brokers(controller) -> list[int]:
    return [broker["broker_id"] for broker in call(controller, "brokers") if broker["alive"]]


# -- create, describe, delete ------------------------------------------------------------


def test_create_topic_answers_its_description(controller, topic):
    created = create(controller, topic, partitions=2, replication_factor=2, config={"retention.ms": "3600000"})
    assert created == call(controller, "describe_topic", topic)
    assert created["topic"] == topic and len(created["topic_id"]) == 32
    assert created["config"] == {"retention.ms": "3600000"}
    for index, described in enumerate(created["partitions"]):
        assert described["partition"] == index
        assert sorted(described["replicas"]) == [0, 1]  # on distinct brokers
        # The preferred (first) replica leads, at epoch 0, with every replica in sync.
        assert (described["leader"], described["leader_epoch"]) == (described["replicas"][0], 0)
        assert described["isr"] == described["replicas"]
    assert {p["leader"] for p in created["partitions"]} == {0, 1}  # leaders spread
    assert topic in call(controller, "list_topics")


def test_created_topic_replicas_run_with_the_roles_it_describes(own_cluster, controller, topic):
    described = create(controller, topic)["partitions"][0]
    leader, (follower,) = described["leader"], [b for b in described["replicas"] if b != described["leader"]]

    def role_of(broker_id: int):
        status = get(replica(own_cluster, topic, 0, broker_id).status.remote(), timeout_s=CALL_TIMEOUT_S)
        return status["role"], status["leader_epoch"]

    wait_until(lambda: role_of(leader) == ("leader", 0), "the leader to take its role")
    wait_until(lambda: role_of(follower) == ("follower", 0), "the follower to take its role")


def test_metadata_routes_each_partition_to_its_leader_and_unknown_topics_to_none(controller, topic):
    created = create(controller, topic, partitions=2)
    metadata = call(controller, "metadata", [topic, topic + "-unknown"])
    assert metadata[topic + "-unknown"] is None
    assert [(p["partition"], p["leader"], p["leader_epoch"], p["topic_id"]) for p in metadata[topic]] == [
        (p["partition"], p["leader"], p["leader_epoch"], created["topic_id"]) for p in created["partitions"]]


def test_delete_topic_forgets_it_and_stops_its_replicas(own_cluster, controller, topic):
    described = create(controller, topic)["partitions"][0]
    call(controller, "delete_topic", topic)
    assert topic not in call(controller, "list_topics")
    with pytest.raises(rafka.TopicNotFoundError, match=topic):
        call(controller, "describe_topic", topic)

    def replicas_left() -> list[int]:
        left = []
        for broker_id in described["replicas"]:
            try:
                replica(own_cluster, topic, 0, broker_id)
                left.append(broker_id)
            except ValueError:  # Ray's "no such actor"
                pass
        return left

    wait_until(lambda: not replicas_left(), "the topic's replica actors to stop")


def test_topic_created_again_after_a_delete_gets_a_new_topic_id(controller, topic):
    first = create(controller, topic)["topic_id"]
    call(controller, "delete_topic", topic)
    assert create(controller, topic)["topic_id"] != first


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "partitions", "replication_factor", "config", "error", "message"),
    [
        ("bad name!", 1, 1, None, rafka.InvalidTopicError, "'bad name!'"),
        ("a:b", 1, 1, None, rafka.InvalidTopicError, "'a:b'"),
        ("ok", 0, 1, None, rafka.InvalidTopicError, "partitions must be at least 1, got 0"),
        ("ok", True, 1, None, rafka.InvalidTopicError, "partitions must be an int, got True"),
        ("ok", 1, 0, None, rafka.InvalidTopicError, "replication_factor must be at least 1, got 0"),
        ("ok", 1, 3, None, rafka.InvalidTopicError, "replication_factor 3 is more than the 2 live brokers"),
        ("ok", 1, 1, {"retention.ms": "forever"}, rafka.InvalidConfigError, "'retention.ms' must be an integer, got 'forever'"),
        ("ok", 1, 1, {"no.such.config": "1"}, rafka.InvalidConfigError, "unknown topic config 'no.such.config'"),
    ],
)
def test_create_topic_refuses_a_bad_request_naming_the_value(controller, topic, name, partitions, replication_factor,
                                                              config, error, message):
    name = name.replace("ok", topic)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        create(controller, name, partitions, replication_factor, config)
    assert name not in call(controller, "list_topics")


def test_create_existing_topic_is_refused_naming_it_and_keeps_the_first(controller, topic):
    first = create(controller, topic)
    with pytest.raises(rafka.TopicExistsError, match=f"topic '{topic}' already exists"):
        create(controller, topic, partitions=3)
    assert call(controller, "describe_topic", topic) == first


@pytest.mark.parametrize("method", ["describe_topic", "describe_configs", "delete_topic"])
def test_unknown_topic_is_refused_naming_it(controller, method):
    with pytest.raises(rafka.TopicNotFoundError, match="unknown topic 'no-such-topic-here'"):
        call(controller, method, "no-such-topic-here")


def test_create_partitions_with_fewer_is_refused_naming_the_counts(controller, topic):
    create(controller, topic, partitions=2)
    with pytest.raises(rafka.InvalidTopicError, match="has 2 partitions; a new count must be more, got 1"):
        call(controller, "create_partitions", topic, 1)
    assert len(call(controller, "describe_topic", topic)["partitions"]) == 2


# -- leaders and the ISR ---------------------------------------------------------------------


def test_broker_loss_moves_its_leaderships_to_an_in_sync_replica_at_a_higher_epoch(own_cluster, controller, topic):
    before = create(controller, topic)["partitions"][0]
    lost, (survivor,) = before["leader"], [b for b in before["replicas"] if b != before["leader"]]
    wait_until(lambda: get(replica(own_cluster, topic, 0, survivor).status.remote(),
                           timeout_s=CALL_TIMEOUT_S)["role"] == "follower", "the follower to take its role")
    pid = actor_pid(ray.get_actor(names.broker(lost), namespace=own_cluster.namespace))
    os.kill(pid, signal.SIGSTOP)
    try:
        after = wait_until(lambda: (lambda p: p if p["leader"] != lost else None)(partition(controller, topic)),
                           "a new leader", timeout_s=BROKER_SESSION_TIMEOUT_MS / 1000 + 90)
        assert (after["leader"], after["leader_epoch"], after["isr"]) == (survivor, before["leader_epoch"] + 1,
                                                                          [survivor])
        assert lost not in alive_brokers(controller)
    finally:
        os.kill(pid, signal.SIGCONT)
    # Back before the next test: it heartbeats again, and its replica rejoins the ISR.
    wait_until(lambda: sorted(alive_brokers(controller)) == [0, 1], "the lost broker to be alive again")
    wait_until(lambda: sorted(partition(controller, topic)["isr"]) == [0, 1], "the lost broker's replica to rejoin")


def _commit_without_pushing(controller_actor, record: dict) -> None:
    """Run on the controller (``__ray_call__``): commit ``record`` through its metadata
    store on its event loop and push nothing, as a controller that dies between a commit
    and its push leaves things."""
    async def commit() -> None:
        await controller_actor.store.apply(record)
    asyncio.run_coroutine_threadsafe(commit(), controller_actor._heartbeats.get_loop()).result(timeout=30)


def test_a_state_change_committed_but_never_pushed_reaches_the_replicas_after_a_controller_restart(
        own_cluster, controller, topic):
    """A controller commits a partition state change and dies before its push goes out
    (the fixed-seed soak: a voter wiped just after it shrank ISRs on a broker's loss, and
    another just after it elected a new leader). The replicas, running all along, hold
    what they last heard: here the leader keeps counting the dropped follower, asks for no
    change, and the committed ISR stays short for good, unless the restarted controller
    sends every replica its committed state when the brokers check in. The death between
    commit and push is a moment no outside signal hits reliably, so the test commits
    through the controller's own store on its loop, pushes nothing, and restarts it."""
    leader = create(controller, topic)["partitions"][0]["leader"]
    wait_until(lambda: sorted(partition(controller, topic)["isr"]) == [0, 1], "the full ISR")
    get(controller.__ray_call__.remote(_commit_without_pushing, {"type": "change_isr", "topic": topic,
                                                                 "partition": 0, "isr": [leader]}),
        timeout_s=CALL_TIMEOUT_S)
    assert partition(controller, topic)["isr"] == [leader]
    assert get(replica(own_cluster, topic, 0, leader).status.remote(), timeout_s=CALL_TIMEOUT_S)["isr"] == [0, 1]
    ray.kill(controller, no_restart=False)

    def isr() -> list[int]:  # retried while Ray restarts the controller
        return sorted(call_with_retries(controller.describe_topic, topic)["partitions"][0]["isr"])

    # The leader learns its ISR is [leader], sees its follower caught up, and asks to add it back.
    wait_until(lambda: isr() == [0, 1], "the follower to be back in the committed ISR", timeout_s=60)
    status = get(replica(own_cluster, topic, 0, leader).status.remote(), timeout_s=CALL_TIMEOUT_S)
    assert status["isr"] == [0, 1], status


def test_alter_isr_from_the_leader_changes_the_isr_and_bumps_the_partition_epoch(controller, topic):
    described = create(controller, topic)["partitions"][0]
    leader, epoch, version = described["leader"], described["leader_epoch"], described["partition_epoch"]
    answer = call(controller, "alter_isr", topic, 0, leader, epoch, [leader], version)
    assert answer == {"isr": [leader], "partition_epoch": version + 1, "accepted": True}
    assert partition(controller, topic)["isr"] == [leader]


def test_alter_isr_based_on_an_old_partition_epoch_is_refused_with_the_current_state(controller, topic):
    described = create(controller, topic)["partitions"][0]
    leader, epoch, version = described["leader"], described["leader_epoch"], described["partition_epoch"]
    call(controller, "alter_isr", topic, 0, leader, epoch, [leader], version)
    # A request delayed in transit, based on the state before that change: it must not
    # put back the member the change removed.
    answer = call(controller, "alter_isr", topic, 0, leader, epoch, described["replicas"], version)
    assert answer == {"isr": [leader], "partition_epoch": version + 1, "accepted": False}
    assert partition(controller, topic)["isr"] == [leader]


@pytest.mark.parametrize("deposed", ["other broker", "older epoch"])
def test_alter_isr_from_a_deposed_leader_gets_none_and_changes_nothing(controller, topic, deposed):
    described = create(controller, topic)["partitions"][0]
    leader, epoch = described["leader"], described["leader_epoch"]
    (other,) = [b for b in described["replicas"] if b != leader]
    sender, sender_epoch = (other, epoch) if deposed == "other broker" else (leader, epoch - 1)
    assert call(controller, "alter_isr", topic, 0, sender, sender_epoch, [sender], None) is None
    assert partition(controller, topic) == described


def test_alter_isr_keeps_the_leader_and_drops_brokers_outside_the_replicas(controller, topic):
    described = create(controller, topic, replication_factor=1)["partitions"][0]
    leader = described["leader"]
    (outsider,) = {0, 1} - {leader}
    answer = call(controller, "alter_isr", topic, 0, leader, described["leader_epoch"], [outsider, 7],
                  described["partition_epoch"])
    assert (answer["accepted"], answer["isr"]) == (True, [leader])


# -- configs -----------------------------------------------------------------------------------


def test_alter_configs_sets_resets_and_reaches_every_replica(own_cluster, controller, topic):
    described = create(controller, topic)["partitions"][0]
    configs = call(controller, "alter_configs", topic, {"retention.ms": "60000", "cleanup.policy": "compact"})
    assert (configs["retention.ms"], configs["cleanup.policy"]) == ("60000", "compact")
    assert call(controller, "describe_topic", topic)["config"] == {"retention.ms": "60000", "cleanup.policy": "compact"}
    for broker_id in described["replicas"]:
        held = get(replica(own_cluster, topic, 0, broker_id).__ray_call__.remote(
            lambda actor: (actor.log.config.retention_ms, actor.log.config.cleanup_policy)), timeout_s=CALL_TIMEOUT_S)
        assert held == (60_000, "compact"), broker_id
    reset = call(controller, "alter_configs", topic, {"cleanup.policy": None})
    assert reset["cleanup.policy"] == "delete" and reset["retention.ms"] == "60000"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retention.ms": "soon"}, "'retention.ms' must be an integer, got 'soon'"),
        ({"no.such.config": "1"}, "unknown topic config 'no.such.config'"),
        (["retention.ms", "1"], "config changes must be a dict, got ['retention.ms', '1']"),
    ],
)
def test_alter_configs_refuses_a_bad_change_naming_it_and_keeps_the_config(controller, topic, changes, message):
    create(controller, topic, config={"retention.ms": "3600000"})
    with pytest.raises(rafka.InvalidConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(controller, "alter_configs", topic, changes)
    assert call(controller, "describe_topic", topic)["config"] == {"retention.ms": "3600000"}


def test_a_topic_created_while_a_placed_broker_is_gone_is_created_and_its_leaders_move(ray_instance, tmp_path):
    """A controller that has just taken over counts every registered broker alive for one
    session, so it may place a new topic's replicas on a broker whose node is gone. The
    creation is committed; it must be answered as such (the broker gets its replicas if
    it returns, its leaderships move when its session runs out), not with the ValueError
    of looking up the missing broker actor (seen in controller_quorum_nodes_scenario.py's
    step 4, after a node loss)."""
    cluster = rafka.Cluster.start(data_dir=str(tmp_path), brokers=2, namespace="rafka-test-controller-missing-broker",
                                  wire_port=None, broker_session_timeout_ms=10_000)
    # (A session long enough that the restarted controller, on a loaded machine, still
    # counts broker 1 alive when the topic is placed; it moves the leaderships after.)
    try:
        ray.kill(ray.get_actor(names.broker(1), namespace=cluster.namespace), no_restart=True)
        ray.kill(cluster.controller, no_restart=False)  # Ray restarts it: every broker counts as alive again
        # Retried across the restart, with one topic id so that a retry of an attempt that
        # committed is answered as that attempt (as the router and Admin do).
        described = call_with_retries(cluster.controller.create_topic, "placed", 2, 2, None, uuid.uuid4().hex)
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1]
        # Placed on the missing broker too (its leaderships may have moved by the answer).
        assert all(sorted(p["replicas"]) == [0, 1] for p in described["partitions"])
        wait_until(lambda: all(p["leader"] == 0 for p in cluster.admin().describe_topic("placed")["partitions"]),
                   "broker 0 to lead both partitions once broker 1's session ran out")
        with cluster.producer(acks="all") as producer:
            offsets = [producer.send("placed", b"x", partition=p).result(timeout=60).offset for p in (0, 1)]
        assert offsets == [0, 0]
    finally:
        cluster.shutdown()
