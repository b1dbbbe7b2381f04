"""The group coordinator as a plain class, without Ray: its state lives in a real
``storage.Log`` (``LogPartition`` below stands in for the leader replica of its
``__consumer_offsets`` partition, and can refuse or hold back writes), and every request
is an ordinary coroutine call, so races are scheduled exactly."""

from __future__ import annotations

import asyncio
import logging
import time

import msgpack
import pytest

from rafka.actors.coordinator import GroupCoordinator
from rafka.errors import (
    CommitFailedError,
    GroupNotEmptyError,
    InconsistentGroupProtocolError,
    NotEnoughReplicasError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)
from rafka.storage.batch import decode_stream, make_batch
from rafka.storage.config import LogConfig
from rafka.storage.log import Log

GROUP = "g"


class LogPartition:
    """A coordinator's partition on a ``storage.Log`` (every append is "committed" at
    once). ``refuse(entries)`` decides whether an append fails as a replica without
    enough in-sync followers would; ``gate`` (an asyncio.Event) holds appends back."""

    def __init__(self, directory: str, topics: dict[str, int]) -> None:
        self.log = Log(directory, LogConfig(cleanup_policy="compact"))
        self.topics = dict(topics)
        self.refuse = lambda entries: False
        self.gate: asyncio.Event | None = None

    async def read(self, offset: int, max_bytes: int):
        result = self.log.read(offset, max_bytes)
        return result.batches, result.next_offset, self.log.log_end_offset

    async def append(self, payload: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse(self.entries(payload)):
            raise NotEnoughReplicasError("test: this write is refused")
        for batch in decode_stream(payload):
            self.log.append(batch)

    async def topic_partition_counts(self) -> dict[str, int]:
        return dict(self.topics)

    async def log_end_offsets(self, topics) -> dict:
        return {}

    def append_raw(self, keys: list[bytes], values: list[bytes | None]) -> int:
        """Append records as any client could (no check of their contents); their first offset."""
        return self.log.append(make_batch(values, keys)).first_offset

    @staticmethod
    def entries(payload: bytes) -> list[tuple]:
        return [(msgpack.unpackb(key), None if value is None else msgpack.unpackb(value))
                for batch in decode_stream(payload)
                for key, value in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist())]

    def stored_group(self, group_id: str) -> dict | None:
        """The newest group record of ``group_id`` in the log."""
        found = None
        for batch in self.log.read(0, 1 << 30).batches:
            for key, value in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
                key = msgpack.unpackb(key)
                if key == ["g", group_id]:
                    found = None if value is None else msgpack.unpackb(value)
        return found


async def started(partition: LogPartition) -> GroupCoordinator:
    """A loaded coordinator whose sweep runs only when a test calls it."""
    coordinator = GroupCoordinator(0, "test", partition=partition)
    await coordinator._ready()
    coordinator._sweeper.cancel()
    return coordinator


def request(member_id: str = "", topics=("t",), owned=(), **extra) -> dict:
    return dict({"member_id": member_id, "topics": list(topics), "session_timeout_ms": 10_000,
                 "rebalance_timeout_ms": 10_000, "owned": None if owned is None else [list(tp) for tp in owned],
                 "wait_ms": 0}, **extra)


async def settle(coordinator: GroupCoordinator, member_id: str, topics=("t",)) -> dict:
    """Heartbeat as a consumer that applies every answer at once, until it owns its grant."""
    owned: list = []
    for _ in range(10):
        answer = await coordinator.heartbeat(GROUP, request(member_id, topics, owned))
        member_id = answer["member_id"]
        assignment = [tuple(tp) for tp in answer["assignment"]]
        if assignment == owned:
            return answer
        owned = assignment
    raise AssertionError(f"member {member_id} did not settle")


def holders(coordinator: GroupCoordinator) -> dict[tuple, list[str]]:
    found: dict[tuple, list[str]] = {}
    for member_id, member in coordinator.groups[GROUP].members.items():
        for tp in member.held():
            found.setdefault(tp, []).append(member_id)
    return found


def expire_session(coordinator: GroupCoordinator, member_id: str) -> None:
    """The member's session has run out (it stopped heartbeating, or it was paused)."""
    coordinator.groups[GROUP].members[member_id].deadline = time.monotonic() - 1


def test_join_ignores_partitions_claimed_by_the_new_member(tmp_path):
    async def scenario():
        partition = LogPartition(str(tmp_path), {"t": 2})
        coordinator = await started(partition)
        zombie = await settle(coordinator, "")
        assert len(zombie["assignment"]) == 2
        expire_session(coordinator, zombie["member_id"])
        await coordinator._sweep()
        successor = await settle(coordinator, "")
        assert sorted(map(tuple, successor["assignment"])) == [("t", 0), ("t", 1)]
        # The zombie comes back under a new id and claims what it had: it owns nothing.
        rejoined = await coordinator.heartbeat(GROUP, request(owned=[("t", 0), ("t", 1)]))
        assert all(len(ids) == 1 for ids in holders(coordinator).values()), holders(coordinator)
        assert coordinator.groups[GROUP].members[rejoined["member_id"]].owned == set()
        with pytest.raises(CommitFailedError, match="not assigned"):
            await coordinator.commit(GROUP, rejoined["member_id"], [["t", 0, 3, ""]], rejoined["epoch"])

    asyncio.run(scenario())


def test_revoked_grant_stays_held_until_the_member_acknowledges_a_later_epoch(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 2}))
        first = await coordinator.heartbeat(GROUP, request())
        assert len(first["assignment"]) == 2  # sent, and perhaps applied already
        second = await coordinator.heartbeat(GROUP, request())
        # The first member heartbeats before its consumer applied that grant: it reports
        # nothing owned as of epoch 0; the partition it is losing may still be applied.
        first = await coordinator.heartbeat(GROUP, request(first["member_id"], owned_epoch=0))
        assert len(first["assignment"]) == 1
        second = await coordinator.heartbeat(GROUP, request(second["member_id"]))
        assert second["assignment"] == [], "granted a partition its old owner may be applying"
        assert all(len(ids) == 1 for ids in holders(coordinator).values()), holders(coordinator)
        # It applied the first grant after all: its claim stands.
        first = await coordinator.heartbeat(GROUP, request(first["member_id"], owned=[("t", 0), ("t", 1)],
                                                           owned_epoch=first["epoch"] - 1))
        assert coordinator.groups[GROUP].members[first["member_id"]].owned == {("t", 0), ("t", 1)}
        # Once it reports the later epoch without the partition, the partition moves.
        kept = [tuple(tp) for tp in first["assignment"]]
        await coordinator.heartbeat(GROUP, request(first["member_id"], owned=kept, owned_epoch=first["epoch"]))
        second = await coordinator.heartbeat(GROUP, request(second["member_id"]))
        assert len(second["assignment"]) == 1 and second["assignment"] != first["assignment"]

    asyncio.run(scenario())


def test_commit_from_an_older_epoch_of_the_member_is_refused(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 2}))
        first = await settle(coordinator, "")
        old_epoch = first["epoch"]
        second = await coordinator.heartbeat(GROUP, request())
        first = await settle(coordinator, first["member_id"])  # releases one partition
        second = await settle(coordinator, second["member_id"])
        (moved,) = second["assignment"]
        await coordinator.commit(GROUP, second["member_id"], [[*moved, 50, ""]], second["epoch"])
        await coordinator.leave(GROUP, second["member_id"])
        first = await settle(coordinator, first["member_id"])  # the partition comes back
        assert len(first["assignment"]) == 2
        # A commit the first member sent before it gave the partition away arrives now.
        with pytest.raises(StaleMemberEpochError, match=f"{moved[0]}-{moved[1]}"):
            await coordinator.commit(GROUP, first["member_id"], [[*moved, 10, ""]], old_epoch)
        assert await coordinator.fetch_offsets(GROUP) == {tuple(moved): 50}
        await coordinator.commit(GROUP, first["member_id"], [[*moved, 60, ""]], first["epoch"])
        assert await coordinator.fetch_offsets(GROUP) == {tuple(moved): 60}

    asyncio.run(scenario())


def test_commit_from_an_unknown_member_is_refused(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 1}))
        member = await settle(coordinator, "")
        await coordinator.commit(GROUP, member["member_id"], [["t", 0, 5, ""]], member["epoch"])
        expire_session(coordinator, member["member_id"])
        await coordinator._sweep()
        with pytest.raises(UnknownMemberIdError, match=member["member_id"]):
            await coordinator.commit(GROUP, member["member_id"], [["t", 0, 1, ""]], member["epoch"])
        assert await coordinator.fetch_offsets(GROUP) == {("t", 0): 5}

    asyncio.run(scenario())


def test_sweep_keeps_a_member_whose_heartbeat_came_while_it_waited(tmp_path):
    async def scenario():
        partition = LogPartition(str(tmp_path), {"t": 2})
        coordinator = await started(partition)
        member = await settle(coordinator, "")
        # A newcomer's join holds the group's lock while its write waits (a slow replica).
        partition.gate = asyncio.Event()
        joining = asyncio.create_task(coordinator.heartbeat(GROUP, request()))
        await asyncio.sleep(0.05)
        expire_session(coordinator, member["member_id"])
        # The member's heartbeat arrives, then the sweep sees the (old) deadline passed.
        owned = [tuple(tp) for tp in member["assignment"]]
        heartbeat = asyncio.create_task(coordinator.heartbeat(GROUP, request(member["member_id"], owned=owned)))
        await asyncio.sleep(0.05)
        sweep = asyncio.create_task(coordinator._sweep())
        await asyncio.sleep(0.05)
        partition.gate.set()
        await asyncio.gather(joining, heartbeat, sweep)
        assert member["member_id"] in coordinator.groups[GROUP].members

    asyncio.run(scenario())


def test_failed_grant_write_leaves_the_old_grant(tmp_path):
    async def scenario():
        partition = LogPartition(str(tmp_path), {"t": 1, "u": 1})
        coordinator = await started(partition)
        member = await settle(coordinator, "", topics=["t"])
        member_id = member["member_id"]

        def grants_u(entries):
            return any(key[0] == "g" and ["u", 0] in value["members"][member_id]["held"] for key, value in entries)

        partition.refuse = grants_u
        with pytest.raises(NotEnoughReplicasError):
            await coordinator.heartbeat(GROUP, request(member_id, ["t", "u"], owned=[("t", 0)]))
        described = await coordinator.describe_group(GROUP)
        assert described["members"][0]["assignment"] == [("t", 0)]
        assert described["members"][0]["epoch"] == member["epoch"]
        partition.refuse = lambda entries: False
        answer = await coordinator.heartbeat(GROUP, request(member_id, ["t", "u"], owned=[("t", 0)]))
        assert sorted(map(tuple, answer["assignment"])) == [("t", 0), ("u", 0)]
        # What it was told it may own was written first.
        assert ["u", 0] in partition.stored_group(GROUP)["members"][member_id]["held"]

    asyncio.run(scenario())


def test_load_skips_bad_records_and_keeps_the_rest(tmp_path, caplog):
    async def scenario():
        partition = LogPartition(str(tmp_path), {"t": 2})
        coordinator = await started(partition)
        member = await settle(coordinator, "")
        partition.append_raw([msgpack.packb(["o", GROUP, "t", 0])], [msgpack.packb([7, "", 0])])
        bad_offset = partition.append_raw(
            [b"\xc1garbage", msgpack.packb(["o", GROUP, "t", 1]), msgpack.packb(["g", GROUP]), msgpack.packb([1, 2])],
            [b"x", b"\xff\xfe", msgpack.packb({"epoch": "one", "members": 5}), b"y"])
        partition.append_raw([msgpack.packb(["o", GROUP, "t", 1])], [msgpack.packb([9, "", 0])])
        with caplog.at_level(logging.WARNING, logger="rafka.actors.coordinator"):
            reloaded = await started(partition)
        assert await reloaded.fetch_offsets(GROUP) == {("t", 0): 7, ("t", 1): 9}
        assert list(reloaded.groups[GROUP].members) == [member["member_id"]]
        skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) == 4, skipped
        assert f"__consumer_offsets-0 offset {bad_offset}" in skipped[0]

    asyncio.run(scenario())


def test_restarted_coordinator_accepts_commits_at_the_newest_epoch_it_told(tmp_path):
    async def scenario():
        partition = LogPartition(str(tmp_path), {"t": 2})
        coordinator = await started(partition)
        first = await settle(coordinator, "")
        await coordinator.heartbeat(GROUP, request())
        first = await coordinator.heartbeat(GROUP, request(first["member_id"], owned=first["assignment"]))
        assert len(first["assignment"]) == 1  # its grant shrank: a new epoch
        kept = first["assignment"][0]
        reloaded = await started(partition)  # the coordinator restarts
        await reloaded.commit(GROUP, first["member_id"], [[*kept, 4, ""]], first["epoch"])
        assert await reloaded.fetch_offsets(GROUP) == {tuple(kept): 4}

    asyncio.run(scenario())


def classic_join(member_id: str = "") -> dict:
    return {"member_id": member_id, "client_id": "c", "protocol_type": "consumer", "protocols": [("range", b"m")],
            "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000, "topics": ["t"]}


def test_classic_member_commit_at_its_generation_is_stored_and_an_old_generation_is_refused(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 1}))
        joined = await coordinator.join_group(GROUP, classic_join())
        await coordinator.sync_group(GROUP, {"member_id": joined["member_id"], "generation": joined["generation"],
                                             "assignments": {joined["member_id"]: (b"a", [("t", 0)])}})
        assert await coordinator.classic_commit(GROUP, joined["member_id"], joined["generation"],
                                                [["t", 0, 7, ""]]) is None
        assert await coordinator.classic_commit(GROUP, joined["member_id"], joined["generation"] - 1,
                                                [["t", 0, 9, ""]]) == "illegal_generation"
        assert await coordinator.fetch_offsets(GROUP) == {("t", 0): 7}
        described = await coordinator.describe_group(GROUP)
        assert described["protocol"] == "classic" and described["members"][0]["assignment"] == [("t", 0)]

    asyncio.run(scenario())


def test_native_join_to_a_group_with_classic_members_is_refused(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 1}))
        await coordinator.join_group(GROUP, classic_join())
        with pytest.raises(InconsistentGroupProtocolError, match="classic"):
            await coordinator.heartbeat(GROUP, request())
        with pytest.raises(GroupNotEmptyError):
            await coordinator.commit(GROUP, None, [["t", 0, 1, ""]])

    asyncio.run(scenario())


def test_classic_join_to_a_group_with_native_members_is_inconsistent(tmp_path):
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 1}))
        await settle(coordinator, "")
        answer = await coordinator.join_group(GROUP, classic_join())
        assert answer["error"] == "inconsistent_group_protocol"
        assert not coordinator.groups[GROUP].classic.members

    asyncio.run(scenario())


def test_member_joining_under_its_own_id_again_replaces_itself_and_owns_nothing(tmp_path):
    """KIP-848 v1: the client names its member id; joining again under it (after it gave
    up its partitions) replaces the old member, and the epochs go on from the old one's
    so that a commit of the old incarnation is stale."""
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 2}))
        first = await coordinator.heartbeat(GROUP, request(join_as="client-chosen-id"))
        assert first["member_id"] == "client-chosen-id"
        settled = await settle(coordinator, "client-chosen-id")
        assert len(settled["assignment"]) == 2
        again = await coordinator.heartbeat(GROUP, request(join_as="client-chosen-id",
                                                           owned=[("t", 0), ("t", 1)]))
        members = coordinator.groups[GROUP].members
        assert list(members) == ["client-chosen-id"] and members["client-chosen-id"].owned == set()
        assert again["epoch"] >= settled["epoch"]
        with pytest.raises(StaleMemberEpochError):
            await coordinator.commit(GROUP, "client-chosen-id", [["t", 0, 7, ""]], settled["epoch"] - 1)

    asyncio.run(scenario())


def test_heartbeat_without_subscription_or_owned_keeps_both(tmp_path):
    """KIP-848 heartbeats omit what did not change: ``keep_subscription`` keeps the
    topics, ``owned`` None keeps the last report (a partition being revoked stays held)."""
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 2, "u": 1}))
        first = await settle(coordinator, "", topics=("t", "u"))
        assert len(first["assignment"]) == 3
        member_id = first["member_id"]
        quiet = await coordinator.heartbeat(GROUP, request(member_id, topics=(), owned=None, keep_subscription=True))
        assert len(quiet["assignment"]) == 3
        assert coordinator.groups[GROUP].members[member_id].topics == {"t", "u"}
        assert coordinator.groups[GROUP].members[member_id].owned == {("t", 0), ("t", 1), ("u", 0)}
        second = await coordinator.heartbeat(GROUP, request(topics=("t", "u")))
        # The first member is losing partitions but has not reported since: they stay held.
        await coordinator.heartbeat(GROUP, request(member_id, topics=(), owned=None, keep_subscription=True))
        second = await coordinator.heartbeat(GROUP, request(second["member_id"], topics=("t", "u")))
        assert second["assignment"] == []
        assert all(len(ids) == 1 for ids in holders(coordinator).values()), holders(coordinator)

    asyncio.run(scenario())


def test_commit_of_a_consumer_protocol_member_through_the_classic_path_is_fenced_by_member_epoch(tmp_path):
    """An OffsetCommit of a KIP-848 member arrives as a classic commit whose generation
    is the member epoch Kafka clients see (rafka's plus one)."""
    async def scenario():
        coordinator = await started(LogPartition(str(tmp_path), {"t": 1}))
        member = await settle(coordinator, "")
        wire_epoch = member["epoch"] + 1
        assert await coordinator.classic_commit(GROUP, member["member_id"], wire_epoch, [["t", 0, 9, ""]]) is None
        assert await coordinator.fetch_offsets(GROUP) == {("t", 0): 9}
        assert await coordinator.classic_commit(GROUP, member["member_id"], wire_epoch + 1,
                                                [["t", 0, 1, ""]]) == "stale_member_epoch"
        assert await coordinator.classic_commit(GROUP, "nobody", wire_epoch, [["t", 0, 1, ""]]) == "unknown_member_id"
        assert await coordinator.fetch_offsets(GROUP) == {("t", 0): 9}

    asyncio.run(scenario())
