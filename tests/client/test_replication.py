"""Replication on one machine: three brokers, replicas on distinct brokers, ISR, acks=all,
leader failover and fencing. (Whole Ray nodes are killed in tests/faults.)"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import ray

import rafka
from rafka.actors import names

TP = rafka.TopicPartition


@pytest.fixture(scope="module")
def replicated(ray_instance, tmp_path_factory):
    # The default 6 s broker session: under CI load a broker can miss a 3 s one, and a
    # spurious election in the middle of a test moves the leader it is watching.
    cluster = rafka.Cluster.start(data_dir=str(tmp_path_factory.mktemp("replicated")), brokers=3,
                                  namespace="rafka-test-replication", broker_session_timeout_ms=6000,
                                  replica_lag_time_max_ms=2000, leader_rebalance_interval_s=2)
    yield cluster
    cluster.shutdown()


def replica(cluster, topic: str, partition: int, broker_id: int):
    return ray.get_actor(names.replica(topic, partition, broker_id), namespace=cluster.namespace)


def partition_state(cluster, topic: str, partition: int = 0) -> dict:
    return cluster.admin().describe_topic(topic)["partitions"][partition]


def wait_until(predicate, timeout_s: float = 30.0, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def consume_values(cluster, topic: str, partitions: int, expected: int, timeout_s: float = 60) -> list[bytes]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TP(topic, p) for p in range(partitions)])
    values, deadline = [], time.monotonic() + timeout_s
    while len(values) < expected and time.monotonic() < deadline:
        values += [record.value for record in consumer.poll(timeout_s=0.5, max_records=100_000)]
    consumer.close()
    return values


def test_replicas_of_a_partition_live_on_distinct_brokers(replicated, topic):
    description = replicated.admin().create_topic(topic, partitions=6, replication_factor=3)
    for partition in description["partitions"]:
        assert sorted(partition["replicas"]) == [0, 1, 2]
        assert partition["leader"] == partition["replicas"][0]
    assert len({p["leader"] for p in description["partitions"]}) == 3
    # Every replica is in sync once its process runs. Not asserted at creation: this
    # fixture's replica_lag_time_max_ms is 2 s, and on a loaded machine a follower whose
    # process took longer to start has already left the ISR (then it rejoins).
    wait_until(lambda: all(sorted(p["isr"]) == [0, 1, 2]
                           for p in replicated.admin().describe_topic(topic)["partitions"]), timeout_s=60)


def test_acks_all_reaches_every_in_sync_replica(replicated, topic):
    replicated.admin().create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    with replicated.producer(acks="all") as producer:
        offsets = [producer.send(topic, b"r%d" % i).result(timeout=30).offset for i in range(300)]
    assert offsets == list(range(300))
    for broker_id in (0, 1, 2):
        status = ray.get(replica(replicated, topic, 0, broker_id).status.remote())
        assert status["log_end_offset"] == 300, status
    wait_until(lambda: all(ray.get(replica(replicated, topic, 0, b).status.remote())["high_watermark"] == 300
                           for b in (0, 1, 2)))
    assert consume_values(replicated, topic, 1, 300) == [b"r%d" % i for i in range(300)]


def test_lagging_follower_leaves_the_isr_and_min_insync_refuses_acks_all(replicated, topic):
    admin = replicated.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2, config={"min.insync.replicas": "2"})
    state = partition_state(replicated, topic)
    follower = [b for b in state["replicas"] if b != state["leader"]][0]
    ray.kill(replica(replicated, topic, 0, follower), no_restart=True)
    wait_until(lambda: partition_state(replicated, topic)["isr"] == [state["leader"]])
    # The leader too: until the controller's answer or push reaches it, it still counts
    # the follower and appends an acks=all batch before refusing it (after the append).
    wait_until(lambda: ray.get(replica(replicated, topic, 0, state["leader"]).status.remote())["isr"]
               == [state["leader"]])
    with replicated.producer(acks="all", delivery_timeout_ms=2000, request_timeout_ms=1000) as producer:
        with pytest.raises(rafka.NotEnoughReplicasError, match="min.insync.replicas=2"):
            producer.send(topic, b"refused").result(timeout=30)
    with replicated.producer(acks=1) as producer:
        assert producer.send(topic, b"acks-1 is fine").result(timeout=30).offset == 0
    # Restarting the broker hands it its replicas again; the new follower catches up
    # from the leader and rejoins the ISR.
    ray.kill(ray.get_actor(names.broker(follower), namespace=replicated.namespace), no_restart=False)
    wait_until(lambda: sorted(partition_state(replicated, topic)["isr"]) == sorted(state["replicas"]), timeout_s=60)
    with replicated.producer(acks="all") as producer:
        assert producer.send(topic, b"accepted again").result(timeout=30).offset == 1
    status = ray.get(replica(replicated, topic, 0, follower).status.remote())
    assert status["log_end_offset"] == 2


def test_killed_leader_loses_no_acknowledged_record_and_duplicates_none(replicated, topic):
    replicated.admin().create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    first_leader = partition_state(replicated, topic)["leader"]
    acknowledged: list[bytes] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        with replicated.producer(acks="all", linger_ms=1, delivery_timeout_ms=60_000) as producer:
            index = 0
            while not stop.is_set() and index < 20_000:
                value = b"seq-%06d" % index
                producer.send(topic, value,
                              callback=lambda m, e, v=value: acknowledged.append(v) if e is None else failures.append(e))
                index += 1
                if index % 200 == 0:
                    time.sleep(0.01)

    thread = threading.Thread(target=produce)
    thread.start()
    wait_until(lambda: len(acknowledged) > 1000)
    ray.kill(replica(replicated, topic, 0, first_leader), no_restart=False)  # Ray restarts it
    wait_until(lambda: partition_state(replicated, topic)["leader_epoch"] >= 1)
    time.sleep(1.0)
    stop.set()
    thread.join(timeout=120)
    assert not failures, failures[:3]
    values = consume_values(replicated, topic, 1, len(acknowledged))
    assert len(values) == len(set(values)), "a record was duplicated"
    assert set(acknowledged) <= set(values), "an acknowledged record was lost"
    assert values == sorted(values), "records were reordered"


def test_stale_leader_is_fenced_by_epoch(replicated, topic):
    replicated.admin().create_topic(topic, partitions=1, replication_factor=2)
    state = partition_state(replicated, topic)
    leader = replica(replicated, topic, 0, state["leader"])
    with pytest.raises(rafka.NotLeaderError, match="epoch 7"):
        try:
            ray.get(leader.produce.remote(b"", "uncompressed", 7))
        except ray.exceptions.RayTaskError as error:
            raise error.cause from None
    follower_id = [b for b in state["replicas"] if b != state["leader"]][0]
    follower = replica(replicated, topic, 0, follower_id)
    with pytest.raises(rafka.NotLeaderError, match="is follower"):
        try:
            ray.get(follower.fetch.remote(0))
        except ray.exceptions.RayTaskError as error:
            raise error.cause from None


def test_controller_restart_keeps_the_cluster_serving(replicated, topic):
    admin = replicated.admin()
    admin.create_topic(topic, partitions=2, replication_factor=2)
    with replicated.producer(acks="all") as producer:
        producer.send(topic, b"before", partition=0).result(timeout=30)
        ray.kill(replicated.controller, no_restart=False)
        producer.send(topic, b"during", partition=0).result(timeout=30)  # leaders need no controller
    wait_until(lambda: topic in admin.list_topics())
    assert partition_state(replicated, topic)["isr"]
    admin.create_topic(topic + "-after", partitions=1, replication_factor=3)
    with replicated.producer(acks="all") as producer:
        assert producer.send(topic + "-after", b"after").result(timeout=30).offset == 0
    assert consume_values(replicated, topic, 2, 2) == [b"before", b"during"]


def test_follower_with_a_divergent_tail_truncates_it_when_it_returns(replicated, topic):
    """KIP-101: records only the old leader had (acks=1) are dropped when it comes back as
    follower of a leader elected without them, instead of surviving as a forked log."""
    admin = replicated.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2,
                       config={"unclean.leader.election.enable": "true"})
    state = partition_state(replicated, topic)
    old_leader, follower = state["leader"], [b for b in state["replicas"] if b != state["leader"]][0]
    with replicated.producer(acks="all") as producer:
        for i in range(10):
            producer.send(topic, b"common-%d" % i)
    ray.kill(replica(replicated, topic, 0, follower), no_restart=True)
    with replicated.producer(acks=1) as producer:
        for i in range(5):
            producer.send(topic, b"divergent-%d" % i)  # only the old leader has these
    wait_until(lambda: partition_state(replicated, topic)["isr"] == [old_leader])
    # The old leader's broker dies; the follower's broker restarts and, the ISR being
    # gone, is elected uncleanly with only the common records.
    old_broker_node = next(b["node_id"] for b in replicated.brokers() if b["broker_id"] == old_leader)
    ray.kill(replica(replicated, topic, 0, old_leader), no_restart=True)
    ray.kill(ray.get_actor(names.broker(old_leader), namespace=replicated.namespace), no_restart=True)
    ray.kill(ray.get_actor(names.broker(follower), namespace=replicated.namespace), no_restart=False)
    wait_until(lambda: partition_state(replicated, topic)["leader"] == follower, timeout_s=60)
    with replicated.producer(acks=1) as producer:
        for i in range(3):
            producer.send(topic, b"new-%d" % i).result(timeout=60)
    # The old leader's broker comes back: its replica truncates the divergent tail,
    # catches up, rejoins the ISR, and (preferred) leads again.
    replicated.add_broker(old_broker_node, broker_id=old_leader)
    wait_until(lambda: partition_state(replicated, topic)["leader"] == old_leader, timeout_s=90)
    values = consume_values(replicated, topic, 1, 13)
    assert values == [b"common-%d" % i for i in range(10)] + [b"new-%d" % i for i in range(3)]


def actor_pid(handle) -> int:
    return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=30)


def test_follower_rejoining_the_isr_counts_for_the_high_watermark_at_once(replicated, topic):
    """KIP-497's maximal ISR: from the moment the leader asks the controller to add a
    caught-up follower to the ISR, that follower counts toward the high watermark. Before,
    a write acknowledged while the request was pending was missing on the follower the
    controller then had in its ISR, and electing that follower lost it."""
    admin = replicated.admin()
    admin.create_topic(topic, partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    state = partition_state(replicated, topic)
    leader = state["leader"]
    # The follower that rejoins comes first among the survivors, so it is the one elected.
    rejoining, other = [b for b in state["replicas"] if b != leader]
    acknowledged: list[bytes] = []

    def send(producer, prefix: bytes, count: int) -> list:
        return [(b"%s-%03d" % (prefix, i), producer.send(topic, b"%s-%03d" % (prefix, i))) for i in range(count)]

    def collect(futures) -> None:
        for value, future in futures:
            try:
                future.result(timeout=60)
                acknowledged.append(value)
            except rafka.RafkaError:
                pass

    patient = replicated.producer(acks="all", linger_ms=1)
    # Made now: a producer started while the controller is frozen could not get metadata.
    hasty = replicated.producer(acks="all", linger_ms=1, delivery_timeout_ms=1500, request_timeout_ms=1000)
    collect(send(patient, b"all-in-sync", 100))
    collect(send(hasty, b"hasty-primed", 1))
    follower_pid = actor_pid(replica(replicated, topic, 0, rejoining))
    controller_pid = actor_pid(replicated.controller)
    os.kill(follower_pid, signal.SIGSTOP)
    try:
        collect(send(patient, b"follower-out", 100))  # acknowledged once the follower leaves the ISR
        wait_until(lambda: sorted(partition_state(replicated, topic)["isr"]) == sorted([leader, other]))
        leader_end = ray.get(replica(replicated, topic, 0, leader).status.remote())["log_end_offset"]
        # The controller stops answering: the leader's request to add the follower back
        # stays unanswered while the follower catches up, then stops again.
        os.kill(controller_pid, signal.SIGSTOP)
        try:
            os.kill(follower_pid, signal.SIGCONT)
            wait_until(lambda: ray.get(replica(replicated, topic, 0, rejoining).status.remote())["log_end_offset"]
                       >= leader_end, timeout_s=10, interval_s=0.05)
            time.sleep(0.3)  # the leader has the follower's answer and asks to add it
            os.kill(follower_pid, signal.SIGSTOP)
            pending = send(hasty, b"pending-rejoin", 20)
            time.sleep(1.0)  # acknowledged by now, if the leader does not count the follower
            # The leader dies while the controller still holds both requests: it adds the
            # follower to the ISR, then elects it (it comes first among the survivors).
            ray.kill(replica(replicated, topic, 0, leader), no_restart=True)
        finally:
            os.kill(controller_pid, signal.SIGCONT)
        wait_until(lambda: partition_state(replicated, topic)["leader"] == rejoining, timeout_s=30)
    finally:
        os.kill(follower_pid, signal.SIGCONT)
    collect(pending)
    patient.close()
    hasty.close()
    assert len([v for v in acknowledged if v.startswith(b"all-in-sync")]) == 100
    values = consume_values(replicated, topic, 1, len(acknowledged), timeout_s=30)
    lost = [v for v in acknowledged if v not in set(values)]
    assert not lost, f"{len(lost)} acknowledged records lost, the first {lost[:3]}"


def test_a_follower_is_not_dropped_from_the_isr_at_the_first_append_after_a_long_idle(replicated, topic):
    """An idle leader's ISR check sleeps until an append (actors/replication.py). A
    follower that holds the whole log counts as caught up until that append, however
    long the idle spell (as before, when the check ran every 250 ms throughout), so it
    leaves the ISR replica_lag_time_max_ms (2 s here) after the append, not at the first
    check after it. Frozen from the start of the idle spell, it answers no heartbeat
    that could make its last answer look recent."""
    replicated.admin().create_topic(topic, partitions=1, replication_factor=2)
    wait_until(lambda: len(partition_state(replicated, topic)["isr"]) == 2, timeout_s=60)
    state = partition_state(replicated, topic)
    leader = state["leader"]
    follower = [b for b in state["replicas"] if b != leader][0]
    with replicated.producer(acks="all") as producer:
        producer.send(topic, b"before the idle spell").result(timeout=30)
    wait_until(lambda: ray.get(replica(replicated, topic, 0, follower).status.remote())["high_watermark"] == 1)
    follower_pid = actor_pid(replica(replicated, topic, 0, follower))
    os.kill(follower_pid, signal.SIGSTOP)
    try:
        time.sleep(3.0)  # idle for longer than the 2 s lag time: the ISR check sleeps
        with replicated.producer(acks=1) as producer:
            producer.send(topic, b"after the idle spell").result(timeout=30)
        time.sleep(1.0)  # half the lag time: the follower is behind, but not lagging yet
        assert sorted(partition_state(replicated, topic)["isr"]) == sorted([leader, follower])
        wait_until(lambda: partition_state(replicated, topic)["isr"] == [leader])  # it lags from 2 s on
    finally:
        os.kill(follower_pid, signal.SIGCONT)
    wait_until(lambda: len(partition_state(replicated, topic)["isr"]) == 2, timeout_s=60)
    assert consume_values(replicated, topic, 1, 2) == [b"before the idle spell", b"after the idle spell"]


def test_frozen_replica_does_not_hold_up_elections_of_other_partitions(replicated, topic):
    """The controller never waits on one replica while holding its lock: with a follower
    of one partition frozen (SIGSTOP) while the controller tells it of a new leader,
    another partition whose leader dies still gets a new one."""
    admin = replicated.admin()
    admin.create_topic(topic + "-a", partitions=1, replication_factor=3)
    admin.create_topic(topic + "-b", partitions=1, replication_factor=2)
    state_a, state_b = partition_state(replicated, topic + "-a"), partition_state(replicated, topic + "-b")
    frozen = [b for b in state_a["replicas"] if b != state_a["leader"]][-1]
    frozen_pid = actor_pid(replica(replicated, topic + "-a", 0, frozen))
    os.kill(frozen_pid, signal.SIGSTOP)
    try:
        # The new leader of -a is pushed to every replica of -a, the frozen one included.
        ray.kill(replica(replicated, topic + "-a", 0, state_a["leader"]), no_restart=True)
        wait_until(lambda: partition_state(replicated, topic + "-a")["leader_epoch"] > state_a["leader_epoch"])
        ray.kill(replica(replicated, topic + "-b", 0, state_b["leader"]), no_restart=True)
        moved = wait_until(lambda: (lambda s: s if s["leader_epoch"] > state_b["leader_epoch"] else None)(
            partition_state(replicated, topic + "-b")), timeout_s=20)
        assert moved["leader"] != state_b["leader"]
        with replicated.producer(acks=1) as producer:
            assert producer.send(topic + "-b", b"still served").result(timeout=30).partition == 0
    finally:
        os.kill(frozen_pid, signal.SIGCONT)


def produce_acknowledged(cluster, topic: str, prefix: bytes, count: int) -> list[bytes]:
    values = [b"%s-%03d" % (prefix, i) for i in range(count)]
    with cluster.producer(acks="all", linger_ms=1) as producer:
        futures = [producer.send(topic, value) for value in values]
        for future in futures:
            future.result(timeout=60)
    return values


def lose_unflushed_tail_with_its_broker(cluster, handle, broker_id: int, flushed_bytes: int) -> None:
    """A power loss of a broker's machine, as far as one replica can tell: the broker and
    the replica die at once, and of the replica's active segment only what was fsynced is
    left (the page cache that held the rest is gone). Ray starts the broker again at once,
    on the same data dir, before the controller's session timeout notices anything."""
    pid = actor_pid(handle)
    segment = ray.get(handle.__ray_call__.remote(lambda self: self.log.segments()[-1].log_path), timeout=30)
    os.kill(pid, signal.SIGSTOP)  # nothing more reaches the file
    os.truncate(segment, flushed_bytes)
    ray.kill(ray.get_actor(names.broker(broker_id), namespace=cluster.namespace), no_restart=False)
    os.kill(pid, signal.SIGKILL)


def test_leader_back_from_an_unclean_shutdown_does_not_lead_with_a_log_that_lost_its_tail(replicated, topic):
    """Item 7 of the guarantees issue (KIP-966's concern): a leader's broker whose machine
    lost unflushed records comes back at once, before the controller noticed anything, and
    its replica used to lead again at the same epoch; the follower then truncated the
    acknowledged records it alone still had. Now the replica reports its unclean shutdown
    before taking a role, another in-sync replica leads, and it catches up from there."""
    replicated.admin().create_topic(topic, partitions=1, replication_factor=2, config={"min.insync.replicas": "2"})
    state = partition_state(replicated, topic)
    leader = state["leader"]
    handle = replica(replicated, topic, 0, leader)
    acknowledged = produce_acknowledged(replicated, topic, b"flushed", 50)
    segment_path = ray.get(handle.__ray_call__.remote(lambda self: (self.log.flush(), self.log.segments()[-1].log_path)[1]),
                           timeout=30)
    flushed_bytes = os.path.getsize(segment_path)
    acknowledged += produce_acknowledged(replicated, topic, b"unflushed", 50)  # both replicas have these
    lose_unflushed_tail_with_its_broker(replicated, handle, leader, flushed_bytes)
    # The restarted replica catches up from whoever leads and everyone is in sync again.
    def back_in_sync() -> bool:
        try:
            role = ray.get(replica(replicated, topic, 0, leader).status.remote(), timeout=10)["role"]
        except (ValueError, ray.exceptions.RayError):
            return False  # still being started again
        return role != "unknown" and sorted(partition_state(replicated, topic)["isr"]) == sorted(state["replicas"])

    wait_until(back_in_sync, timeout_s=90)
    values = consume_values(replicated, topic, 1, len(acknowledged), timeout_s=30)
    assert values == acknowledged, f"{len(set(acknowledged) - set(values))} acknowledged records lost"


def test_topic_deleted_while_a_broker_is_down_then_created_again_shows_no_old_record(replicated, topic):
    """Item 6 of the guarantees issue (KIP-516): a broker that is down when a topic is
    deleted keeps its replicas of it (detached actors and directories, all named by the
    topic's name). When the topic is created again under that name, the returning broker
    used to serve the old incarnation's log. Now the ids differ: the old replicas are
    replaced, their data moved aside and then removed, and only new records are read."""
    admin = replicated.admin()
    admin.create_topic(topic, partitions=3, replication_factor=3)  # every broker leads one
    produce_acknowledged(replicated, topic, b"old", 30)
    down = partition_state(replicated, topic, 1)["leader"]
    broker = next(b for b in replicated.brokers() if b["broker_id"] == down)
    ray.kill(ray.get_actor(names.broker(down), namespace=replicated.namespace), no_restart=True)
    wait_until(lambda: not next(b for b in replicated.brokers() if b["broker_id"] == down)["alive"], timeout_s=30)
    admin.delete_topic(topic)  # its replicas on the dead broker keep running, with their data
    replicated.add_broker(broker["node_id"], broker_id=down)
    wait_until(lambda: next(b for b in replicated.brokers() if b["broker_id"] == down)["alive"], timeout_s=60)
    admin.create_topic(topic, partitions=3, replication_factor=3)
    wait_until(lambda: all(len(p["isr"]) == 3 and p["leader"] >= 0
                           for p in admin.describe_topic(topic)["partitions"]), timeout_s=60)
    new = produce_acknowledged(replicated, topic, b"new", 30)
    values = consume_values(replicated, topic, 3, len(new) + 1, timeout_s=10)
    assert sorted(values) == sorted(new), f"old records came back: {sorted(set(values) - set(new))[:5]}"
    # The old incarnation's data is gone from the returning broker's data dir.
    new_id = admin.describe_topic(topic)["topic_id"]
    directories = [name for name in os.listdir(broker["data_dir"]) if name.startswith(topic + "-")]
    assert directories and all(stored_topic_id(os.path.join(broker["data_dir"], name)) == new_id
                               for name in directories), directories


def stored_topic_id(directory: str) -> str | None:
    """The topic id a replica directory holds (its partition.metadata; actors/replica.py)."""
    try:
        with open(os.path.join(directory, "partition.metadata")) as handle:
            return json.load(handle)["topic_id"]
    except FileNotFoundError:
        return None


def test_offline_partition_keeps_its_last_in_sync_replica_and_elects_it_when_it_returns(replicated, topic):
    """The partition's only in-sync replica's broker is frozen past its session: the
    partition goes offline with that replica still in its ISR. A report that the replica
    failed, arriving meanwhile (as from a broker whose replica died while it started its
    replicas again), must not empty the ISR: before, it did, and the partition stayed
    leaderless for good when the broker came back, with every acknowledged record on it
    (the soak, seed 48213, ended so)."""
    admin = replicated.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2)
    state = partition_state(replicated, topic)
    leader, follower = state["leader"], [b for b in state["replicas"] if b != state["leader"]][0]
    ray.kill(replica(replicated, topic, 0, follower), no_restart=True)
    wait_until(lambda: partition_state(replicated, topic)["isr"] == [leader])
    with replicated.producer(acks="all") as producer:
        for index in range(10):
            producer.send(topic, b"acked-%d" % index).result(timeout=30)
    broker_pid = actor_pid(ray.get_actor(names.broker(leader), namespace=replicated.namespace))
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        wait_until(lambda: partition_state(replicated, topic)["leader"] == -1, timeout_s=60)
        assert partition_state(replicated, topic)["isr"] == [leader]
        ray.get(replicated.controller.replica_failed.remote(topic, 0, leader))
        assert partition_state(replicated, topic)["isr"] == [leader], "the last in-sync replica left the ISR"
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    wait_until(lambda: partition_state(replicated, topic)["leader"] == leader, timeout_s=60)
    assert consume_values(replicated, topic, 1, 10) == [b"acked-%d" % index for index in range(10)]
