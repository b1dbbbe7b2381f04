"""Consumer groups on the shared cluster: membership and assignment, commits, static
membership, coordinator restarts, and the admin view (lag, delete, reset)."""

from __future__ import annotations

import time

import pytest
import ray

import rafka
from rafka.actors import names
from rafka.actors.coordinator import coordinator_handle, coordinator_index, find_coordinator
from rafka.client import rpc

FAST = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300, "auto_offset_reset": "earliest"}


def produce(cluster, topic, per_partition, partitions):
    with cluster.producer(acks="all") as producer:
        for partition in range(partitions):
            for index in range(per_partition):
                producer.send(topic, b"v%d" % index, partition=partition)


def poll_until(consumers, condition, timeout_s=60.0, records=None):
    """Poll every consumer in turn until ``condition()``; checks on every round that no
    partition is owned by two consumers at once. The deadline is generous (the machine
    may be loaded): it only bounds a test that would otherwise hang."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for consumer in consumers:
            got = consumer.poll(timeout_s=0.02)
            if records is not None:
                records.extend(got)
        owned = [tp for consumer in consumers for tp in consumer.assignment()]
        assert len(owned) == len(set(owned)), f"a partition has two owners: {sorted(owned)}"
        if condition():
            return
    raise AssertionError("condition not reached in time")


def covers(consumers, topic, partitions):
    owned = [tp for consumer in consumers for tp in consumer.assignment()]
    return sorted(owned) == [rafka.TopicPartition(topic, p) for p in range(partitions)]


def joined(cluster, group, members):
    try:
        return len(cluster.admin().describe_group(group)["members"]) == members
    except rafka.GroupNotFoundError:
        return False


def balanced(consumers):
    sizes = [len(consumer.assignment()) for consumer in consumers]
    return max(sizes) - min(sizes) <= 1


@pytest.fixture
def group(topic):
    return "group-" + topic


def test_membership_changes_keep_exactly_one_owner_per_partition(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=6)
    produce(cluster, topic, 50, 6)
    consumers = [cluster.consumer(group_id=group, **FAST)]
    consumers[0].subscribe([topic])
    records = []
    poll_until(consumers, lambda: covers(consumers, topic, 6), records=records)
    for _ in range(2):  # two more members join, one at a time
        consumers.append(cluster.consumer(group_id=group, **FAST))
        consumers[-1].subscribe([topic])
        poll_until(consumers, lambda: covers(consumers, topic, 6) and balanced(consumers), records=records)
    assert sorted(len(c.assignment()) for c in consumers) == [2, 2, 2]
    leaving = consumers.pop(1)
    leaving.close()
    poll_until(consumers, lambda: covers(consumers, topic, 6) and balanced(consumers), records=records)
    poll_until(consumers, lambda: len({(r.partition, r.offset) for r in records}) == 300, records=records)
    for consumer in consumers:
        consumer.close()
    description = cluster.admin().describe_group(group)
    assert description["state"] == "Empty" and description["total_lag"] == 0


def test_range_assignor_and_pattern_subscription(cluster, topic, group):
    admin = cluster.admin()
    admin.create_topic(topic + "-a", partitions=3)
    admin.create_topic(topic + "-b", partitions=3)
    options = dict(FAST, partition_assignment_strategy="range")
    consumers = [cluster.consumer(group_id=group, **options) for _ in range(2)]
    for consumer in consumers:
        consumer.subscribe(pattern=topic.replace(".", r"\.") + "-[ab]")
    poll_until(consumers, lambda: sorted(len(c.assignment()) for c in consumers) == [2, 4])
    first, second = sorted(consumers, key=lambda c: c.member_id)
    # Range: per topic, the first member by id takes partitions 0-1, the second 2.
    assert {tp.partition for tp in first.assignment()} == {0, 1}
    assert {tp.partition for tp in second.assignment()} == {2}
    mixed = cluster.consumer(group_id=group, **dict(FAST, partition_assignment_strategy="sticky"))
    mixed.subscribe([topic + "-a"])
    with pytest.raises(rafka.InconsistentGroupProtocolError, match="'range'"):
        poll_until([mixed], lambda: False, timeout_s=5)
    mixed.close()
    for consumer in consumers:
        consumer.close()


def test_commits_resume_the_next_member_where_the_last_stopped(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 100, 2)
    tps = [rafka.TopicPartition(topic, p) for p in range(2)]
    first = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    first.subscribe([topic])
    records = []
    poll_until([first], lambda: len(records) >= 200, records=records)
    first.commit({tps[0]: 40, tps[1]: 70})
    assert first.committed(tps) == {tps[0]: 40, tps[1]: 70}
    first.close()  # no auto-commit: positions (100, 100) are not committed

    second = cluster.consumer(group_id=group, **FAST)
    second.subscribe([topic])
    again = []
    poll_until([second], lambda: len(again) >= 90, records=again)
    assert sorted((r.partition, r.offset) for r in again) == [(0, o) for o in range(40, 100)] + [(1, o) for o in range(70, 100)]
    second.close()  # auto-commit on close
    assert cluster.consumer(group_id=group).committed(tps) == {tps[0]: 100, tps[1]: 100}


def test_async_and_auto_commit(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=1)
    produce(cluster, topic, 30, 1)
    tp = rafka.TopicPartition(topic, 0)
    consumer = cluster.consumer(group_id=group, auto_commit_interval_ms=200, **FAST)
    consumer.subscribe([topic])
    poll_until([consumer], lambda: consumer.assignment() and consumer.position(tp) == 30)
    # Auto-commit runs inside poll() once the interval has passed.
    poll_until([consumer], lambda: consumer.committed([tp])[tp] == 30)
    done = []
    consumer.commit_async({tp: 12}, callback=lambda offsets, error: done.append((offsets, error)))
    poll_until([consumer], lambda: done)
    assert done == [({tp: 12}, None)]
    assert consumer.committed([tp])[tp] == 12
    consumer.close()


def test_no_committed_offset_and_reset_none(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=1)
    consumer = cluster.consumer(group_id=group, **dict(FAST, auto_offset_reset="none"))
    consumer.subscribe([topic])
    with pytest.raises(rafka.NoOffsetForPartitionError, match=topic):
        poll_until([consumer], lambda: False, timeout_s=10)
    consumer.close()


def test_revoked_partitions_cannot_be_committed(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    first = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    first.subscribe([topic])
    poll_until([first], lambda: len(first.assignment()) == 2)
    second = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    second.subscribe([topic])
    # Once the second member owns a partition, the first has released it (a partition
    # is granted only after its old owner reports it gone): committing it is refused.
    poll_until([first, second], lambda: len(first.assignment()) == len(second.assignment()) == 1)
    (revoked,) = second.assignment()
    with pytest.raises(rafka.CommitFailedError, match="not assigned"):
        first.commit({revoked: 5})
    (kept,) = first.assignment()
    first.commit({kept: 0})  # what it still owns, it may commit
    outsider = cluster.consumer(group_id=group)
    outsider.assign([rafka.TopicPartition(topic, 0)])
    with pytest.raises(rafka.GroupNotEmptyError, match="active members"):
        outsider.commit({rafka.TopicPartition(topic, 0): 1})
    first.close()
    second.close()


def test_a_member_that_stops_polling_is_replaced(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    options = dict(FAST, max_poll_interval_ms=1500)
    slow, fast = cluster.consumer(group_id=group, **options), cluster.consumer(group_id=group, **options)
    slow.subscribe([topic])
    fast.subscribe([topic])
    poll_until([slow, fast], lambda: len(slow.assignment()) == len(fast.assignment()) == 1)
    lost = []

    class Listener(rafka.ConsumerRebalanceListener):
        def on_partitions_lost(self, partitions):
            lost.extend(partitions)

    slow.subscribe([topic], listener=Listener())
    # slow does not poll; its heartbeat thread keeps its session alive, so only the
    # max_poll_interval_ms check can move its partition to fast.
    poll_until([fast], lambda: len(fast.assignment()) == 2)
    assert [m["member_id"] for m in cluster.admin().describe_group(group)["members"]] == [fast.member_id]
    slow.poll(timeout_s=0.1)  # its partition was lost; it joins again
    assert len(lost) == 1
    poll_until([slow, fast], lambda: len(slow.assignment()) == len(fast.assignment()) == 1)
    slow.close()
    fast.close()


def test_rebalance_listener_sees_revocations_before_assignments_elsewhere(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=4)
    events = []

    class Listener(rafka.ConsumerRebalanceListener):
        def __init__(self, name):
            self.name = name

        def on_partitions_revoked(self, partitions):
            events.append((self.name, "revoked", sorted(p.partition for p in partitions)))

        def on_partitions_assigned(self, partitions):
            events.append((self.name, "assigned", sorted(p.partition for p in partitions)))

    a, b = cluster.consumer(group_id=group, **FAST), cluster.consumer(group_id=group, **FAST)
    a.subscribe([topic], listener=Listener("a"))
    poll_until([a], lambda: len(a.assignment()) == 4)
    b.subscribe([topic], listener=Listener("b"))
    poll_until([a, b], lambda: len(a.assignment()) == len(b.assignment()) == 2)
    assert events[0] == ("a", "assigned", [0, 1, 2, 3])
    revoked = next(e for e in events if e[1] == "revoked")
    given = next(e for e in events if e[0] == "b")
    assert events.index(revoked) < events.index(given) and revoked[2] == given[2]
    a.close()
    b.close()


def test_static_member_restart_causes_no_rebalance(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=4)
    options = dict(FAST, session_timeout_ms=10_000)
    steady = cluster.consumer(group_id=group, group_instance_id="steady", **options)
    restarting = cluster.consumer(group_id=group, group_instance_id="restarting", **options)
    steady.subscribe([topic])
    restarting.subscribe([topic])
    poll_until([steady, restarting], lambda: len(steady.assignment()) == len(restarting.assignment()) == 2)
    before = cluster.admin().describe_group(group)
    kept, theirs = steady.assignment(), restarting.assignment()
    restarting.close()  # a static member does not leave the group
    time.sleep(1.0)
    poll_until([steady], lambda: True)
    assert steady.assignment() == kept
    replacement = cluster.consumer(group_id=group, group_instance_id="restarting", **options)
    replacement.subscribe([topic])
    poll_until([steady, replacement], lambda: replacement.assignment() == theirs)
    after = cluster.admin().describe_group(group)
    assert after["epoch"] == before["epoch"], "a static member's return must not start a rebalance"
    assert steady.assignment() == kept
    steady.close()
    replacement.close()


def test_a_restarted_coordinator_keeps_commits_and_members(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=3)
    produce(cluster, topic, 20, 3)
    tps = [rafka.TopicPartition(topic, p) for p in range(3)]
    consumer = cluster.consumer(group_id=group, enable_auto_commit=False, **dict(FAST, session_timeout_ms=10_000))
    consumer.subscribe([topic])
    poll_until([consumer], lambda: len(consumer.assignment()) == 3)
    consumer.commit({tps[0]: 5, tps[1]: 10, tps[2]: 20})
    count = len(rpc.call_with_retries(cluster.controller.metadata, [names.OFFSETS_TOPIC])[names.OFFSETS_TOPIC])
    coordinator = coordinator_handle(cluster.namespace, coordinator_index(group, count))
    ray.kill(coordinator, no_restart=False)  # Ray restarts it; it reloads __consumer_offsets
    assert cluster.consumer(group_id=group).committed(tps) == {tps[0]: 5, tps[1]: 10, tps[2]: 20}
    description = cluster.admin().describe_group(group)
    assert [m["member_id"] for m in description["members"]] == [consumer.member_id]
    consumer.commit({tps[0]: 6})  # the member is still known: no rejoin needed
    poll_until([consumer], lambda: len(consumer.assignment()) == 3)
    assert consumer.committed([tps[0]])[tps[0]] == 6
    consumer.close()
    # The member left: a second restart must not bring it back from the log.
    assert cluster.admin().describe_group(group)["members"] == []
    ray.kill(coordinator, no_restart=False)
    assert cluster.admin().describe_group(group)["members"] == []
    assert cluster.consumer(group_id=group).committed([tps[0]])[tps[0]] == 6


def test_admin_lists_describes_resets_and_deletes_groups(cluster, topic, group):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    produce(cluster, topic, 50, 2)
    tps = [rafka.TopicPartition(topic, p) for p in range(2)]
    consumer = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    consumer.subscribe([topic])
    poll_until([consumer], lambda: len(consumer.assignment()) == 2)
    consumer.commit({tps[0]: 10, tps[1]: 45})

    assert {"group_id": group, "state": "Stable", "members": 1, "assignor": "sticky", "protocol": "consumer"} \
        in admin.list_groups()
    description = admin.describe_group(group)
    lag = {(p["topic"], p["partition"]): (p["committed_offset"], p["log_end_offset"], p["lag"])
           for p in description["partitions"]}
    assert lag == {(topic, 0): (10, 50, 40), (topic, 1): (45, 50, 5)}
    assert description["total_lag"] == 45
    assert description["members"][0]["assignment"] == [[topic, 0], [topic, 1]] or \
        sorted(map(tuple, description["members"][0]["assignment"])) == [(topic, 0), (topic, 1)]

    with pytest.raises(rafka.GroupNotEmptyError, match=group):
        admin.reset_offsets(group, topic, to="earliest")
    with pytest.raises(rafka.GroupNotEmptyError, match=group):
        admin.delete_group(group)
    consumer.close()

    assert admin.reset_offsets(group, topic, shift_by=-5, dry_run=True) == {0: 5, 1: 40}
    assert admin.reset_offsets(group, topic, shift_by=-5) == {0: 5, 1: 40}
    assert admin.reset_offsets(group, topic, to="latest", partitions=[1]) == {1: 50}
    assert admin.reset_offsets(group, topic, shift_by=1000) == {0: 50, 1: 50}  # clamped to the log end
    assert admin.reset_offsets(group, topic, timestamp_ms=0) == {0: 0, 1: 0}
    with pytest.raises(ValueError, match="exactly one"):
        admin.reset_offsets(group, topic, to="earliest", shift_by=1)
    with pytest.raises(ValueError, match="no partition 7"):
        admin.reset_offsets(group, topic, to="earliest", partitions=[7])
    assert cluster.consumer(group_id=group).committed(tps) == {tps[0]: 0, tps[1]: 0}

    admin.delete_group(group)
    assert group not in {g["group_id"] for g in admin.list_groups()}
    with pytest.raises(rafka.GroupNotFoundError, match=group):
        admin.describe_group(group)
    assert cluster.consumer(group_id=group).committed(tps) == {tps[0]: None, tps[1]: None}


def test_rejected_requests_do_not_create_a_group(cluster, topic, group):
    coordinator = find_coordinator(cluster.controller, cluster.namespace, group)
    request = {"member_id": "stray", "topics": [topic], "session_timeout_ms": 3000, "rebalance_timeout_ms": 3000}
    with pytest.raises(rafka.UnknownMemberIdError, match="stray"):
        rpc.get(coordinator.heartbeat.remote(group, request))
    with pytest.raises(rafka.UnknownMemberIdError, match="stray"):
        rpc.get(coordinator.commit.remote(group, "stray", [[topic, 0, 1, ""]]))
    assert group not in {g["group_id"] for g in cluster.admin().list_groups()}
    with pytest.raises(rafka.GroupNotFoundError, match=group):
        cluster.admin().describe_group(group)


def test_initial_rebalance_delay_holds_partitions_until_the_expected_members_join(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=4)
    options = dict(FAST, group_id=group, group_initial_rebalance_delay_ms=60_000, group_initial_members=2)
    first = cluster.consumer(**options)
    second = cluster.consumer(**options)
    revoked = []
    listener = type("Recorder", (rafka.ConsumerRebalanceListener,), {
        "on_partitions_revoked": lambda self, tps: revoked.extend(tps)})()
    try:
        first.subscribe([topic], listener=listener)
        poll_until([first], lambda: joined(cluster, group, 1))
        joined_s = time.monotonic()
        while time.monotonic() - joined_s < 1.0:  # several heartbeats: still nothing granted
            first.poll(timeout_s=0.05)
            assert not first.assignment()
        assert cluster.admin().describe_group(group)["state"] == "PreparingRebalance"
        second.subscribe([topic])
        # The second member ends the delay (long before its 60 s): the first one never
        # took every partition, so each gets its share at once, none moving.
        poll_until([first, second], lambda: covers([first, second], topic, 4) and balanced([first, second]))
        assert not revoked
    finally:
        first.close()
        second.close()


def test_initial_rebalance_delay_ends_after_its_time_without_the_expected_members(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    consumer = cluster.consumer(**dict(FAST, group_id=group, group_initial_rebalance_delay_ms=3000,
                                       group_initial_members=5))
    try:
        consumer.subscribe([topic])
        poll_until([consumer], lambda: joined(cluster, group, 1) or covers([consumer], topic, 2))
        assert not consumer.assignment()  # joined, and held back
        poll_until([consumer], lambda: covers([consumer], topic, 2))  # the delay ran out: all its own
    finally:
        consumer.close()
    # A group that is empty again delays its next first member too; one that is not
    # empty does not delay a newcomer (checked in streams: a scaled-out worker).
    with pytest.raises(rafka.InvalidConfigError, match="group_initial_rebalance_delay_ms"):
        cluster.consumer(group_id=group, group_initial_rebalance_delay_ms=-1)


def test_current_lag_comes_from_the_last_fetch(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1)
    produce(cluster, topic, 10, 1)
    tp = rafka.TopicPartition(topic, 0)
    with cluster.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        assert consumer.current_lag(tp) is None  # nothing fetched yet
        records = []
        while len(records) < 4:
            records += consumer.poll(timeout_s=1.0, max_records=4 - len(records))
        assert consumer.current_lag(tp) == 6
        while len(records) < 10:
            records += consumer.poll(timeout_s=1.0)
        assert consumer.current_lag(tp) == 0


def test_bad_group_input_is_named(cluster, topic):
    with pytest.raises(rafka.InvalidConfigError, match="group_id"):
        cluster.consumer().subscribe(["x"])
    with pytest.raises(rafka.TopicNotFoundError, match="no-such-topic"):
        cluster.consumer(group_id="g").subscribe(["no-such-topic"])
    with pytest.raises(rafka.InvalidConfigError, match="'roundrobin'"):
        cluster.consumer(group_id="g", partition_assignment_strategy="roundrobin")
    with pytest.raises(rafka.InvalidConfigError, match="heartbeat_interval_ms"):
        cluster.consumer(group_id="g", session_timeout_ms=1000, heartbeat_interval_ms=2000)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        cluster.consumer(group_id="g").subscribe(pattern="([")
    with pytest.raises(rafka.GroupNotFoundError, match="never-used"):
        cluster.admin().describe_group("never-used-" + topic)


def wait_for(condition, what, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in time")
        time.sleep(0.05)


def test_a_fenced_consumer_drops_its_partitions_before_it_rejoins(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 50, 2)
    tps = [rafka.TopicPartition(topic, p) for p in range(2)]
    lost = []
    listener = type("Recorder", (rafka.ConsumerRebalanceListener,), {
        "on_partitions_lost": lambda self, partitions: lost.extend(partitions)})()
    consumer = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    try:
        consumer.subscribe([topic], listener=listener)
        records = []
        poll_until([consumer], lambda: len(records) >= 100, records=records)
        consumer.commit({tps[0]: 20, tps[1]: 20})
        fenced_id = consumer.member_id
        # The coordinator forgets the member (as when its session ran out while it was
        # paused); its heartbeat thread learns it at once (the long poll ends).
        coordinator = find_coordinator(cluster.controller, cluster.namespace, group)
        rpc.get(coordinator.leave.remote(group, fenced_id))
        wait_for(lambda: consumer.member_id != fenced_id, "the consumer learns it was fenced")
        # Until poll() drops its partitions it must not join again (a new member owns
        # nothing), and what it commits is refused: its positions (50) never land.
        watched_until = time.monotonic() + 3.0  # ten heartbeat intervals
        while time.monotonic() < watched_until:
            assert cluster.admin().describe_group(group)["members"] == [], "rejoined before dropping its partitions"
            time.sleep(0.1)
        with pytest.raises(rafka.CommitFailedError, match="rejoining"):
            consumer.commit()
        assert consumer.committed(tps) == {tps[0]: 20, tps[1]: 20}
        again = []
        poll_until([consumer], lambda: covers([consumer], topic, 2) and len(again) >= 60, records=again)
        assert sorted(lost) == tps
        assert consumer.member_id not in ("", fenced_id)
        assert min(r.offset for r in again) == 20  # resumed from the group's commits
    finally:
        consumer.close()


def test_close_hands_partitions_back_as_revoked_while_a_member_and_as_lost_once_fenced(cluster, topic, group):
    # As Kafka's consumer: a member that closes revokes its partitions; one whose session
    # is already gone (fenced while it did not poll) reports them lost, since another
    # member may own them by then. A soak counted such a consumer as owner until close.
    cluster.admin().create_topic(topic, partitions=2)
    events = []

    class Recorder(rafka.ConsumerRebalanceListener):
        def on_partitions_revoked(self, partitions):
            events.append(("revoked", sorted(p.partition for p in partitions)))

        def on_partitions_lost(self, partitions):
            events.append(("lost", sorted(p.partition for p in partitions)))

    member = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    member.subscribe([topic], listener=Recorder())
    poll_until([member], lambda: covers([member], topic, 2))
    member.close()
    assert events == [("revoked", [0, 1])]

    fenced = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    fenced.subscribe([topic], listener=Recorder())
    poll_until([fenced], lambda: covers([fenced], topic, 2))
    fenced_id = fenced.member_id
    coordinator = find_coordinator(cluster.controller, cluster.namespace, group)
    rpc.get(coordinator.leave.remote(group, fenced_id))
    wait_for(lambda: fenced.member_id != fenced_id, "the consumer learns it was fenced")
    fenced.close()
    assert events == [("revoked", [0, 1]), ("lost", [0, 1])]


def test_a_zombie_members_commits_are_refused_after_its_partitions_moved(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 100, 2)
    tps = [rafka.TopicPartition(topic, p) for p in range(2)]
    coordinator = find_coordinator(cluster.controller, cluster.namespace, group)

    def heartbeat(member_id, owned):
        return rpc.get(coordinator.heartbeat.remote(group, {
            "member_id": member_id, "topics": [topic], "session_timeout_ms": 2000, "rebalance_timeout_ms": 2000,
            "owned": owned, "wait_ms": 0}))

    # The zombie: a member driven by hand that takes both partitions, then stops
    # heartbeating (paused past its session timeout) while a consumer takes over.
    zombie = heartbeat("", [])
    while sorted(map(tuple, zombie["assignment"])) != [(topic, 0), (topic, 1)]:
        zombie = heartbeat(zombie["member_id"], zombie["assignment"])
    zombie = heartbeat(zombie["member_id"], zombie["assignment"])
    successor = cluster.consumer(group_id=group, enable_auto_commit=False, **FAST)
    try:
        successor.subscribe([topic])
        records = []
        poll_until([successor], lambda: len(records) >= 200, records=records)
        successor.commit()
        assert successor.committed(tps) == {tps[0]: 100, tps[1]: 100}
        # The zombie wakes: it commits under its old id, then rejoins claiming what it
        # had and commits again. Both are refused; the successor's commits stand.
        with pytest.raises(rafka.UnknownMemberIdError, match=zombie["member_id"]):
            rpc.get(coordinator.commit.remote(group, zombie["member_id"], [[topic, 0, 10, ""]], zombie["epoch"]))
        rejoined = heartbeat("", [[topic, 0], [topic, 1]])
        with pytest.raises(rafka.CommitFailedError, match="not assigned"):
            rpc.get(coordinator.commit.remote(group, rejoined["member_id"], [[topic, 0, 10, ""]], rejoined["epoch"]))
        assert successor.committed(tps) == {tps[0]: 100, tps[1]: 100}
        # The successor keeps its partitions until the group moves one, never sharing it.
        poll_until([successor], lambda: len(successor.assignment()) == 1)
        successor.commit()
        rpc.get(coordinator.leave.remote(group, rejoined["member_id"]))
    finally:
        successor.close()
    assert cluster.consumer(group_id=group).committed(tps) == {tps[0]: 100, tps[1]: 100}


def test_a_garbage_record_in_the_offsets_topic_is_skipped_when_the_coordinator_loads(cluster, topic, group):
    cluster.admin().create_topic(topic, partitions=1)
    tp = rafka.TopicPartition(topic, 0)
    outsider = cluster.consumer(group_id=group)
    outsider.assign([tp])
    outsider.commit({tp: 5})
    count = len(rpc.call_with_retries(cluster.controller.metadata, [names.OFFSETS_TOPIC])[names.OFFSETS_TOPIC])
    index = coordinator_index(group, count)
    from rafka.client.producer import internal_producer

    # A bad record written past the client check (clients are refused since issue 21;
    # an older version or a bug in rafka's own writers could still leave one).
    with internal_producer(cluster, acks="all") as producer:
        producer.send(names.OFFSETS_TOPIC, key=b"\xc1 not msgpack", value=b"garbage", partition=index).result()
    outsider.commit({tp: 6})
    ray.kill(coordinator_handle(cluster.namespace, index), no_restart=False)  # it reloads its partition
    assert cluster.consumer(group_id=group).committed([tp]) == {tp: 6}
    outsider.commit({tp: 7})
    assert cluster.consumer(group_id=group).committed([tp]) == {tp: 7}
