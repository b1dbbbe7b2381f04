"""Group requests for consumers that assign partitions themselves, mapped onto rafka's
group coordinator actors (actors/coordinator.py).

* **FindCoordinator** (groups only): the broker that was asked answers "me" — any broker
  reaches every coordinator actor, so no request is ever sent to a "wrong" coordinator.
  Transaction coordinators (key type 1) get COORDINATOR_NOT_AVAILABLE.
* **OffsetCommit** -> ``GroupCoordinator.commit``: a commit without a member id (a
  consumer using ``assign``, generation -1) is the coordinator's "no member" commit,
  accepted while the group has no active members, as Kafka's simple consumers are; a
  commit with a member id and generation is a classic member's
  (``GroupCoordinator.classic_commit``: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or
  REBALANCE_IN_PROGRESS as Kafka answers; wire/membership.py has the rest of the
  classic protocol). The offsets are the same records rafka's own consumers commit, so
  ``rafka groups describe`` shows them and a native consumer of the group resumes there.
* **OffsetFetch** -> ``GroupCoordinator.fetch_offsets``; a partition with no commit
  answers offset -1.
* **ListGroups** -> every coordinator's ``list_groups``.

The coordinator handle is found (and the coordinator started, with ``__consumer_offsets``
created on first use) on a worker thread: that lookup blocks, and the broker's event loop
must not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rafka.actors import names
from rafka.actors.coordinator import coordinator_handle, find_coordinator
from rafka.errors import GroupNotEmptyError
from rafka.security.acl import CLUSTER_NAME
from rafka.wire import protocol
from rafka.wire.errors import cause_of, error_code_of

E = protocol.error_code
KEY_TYPE_GROUP = 0


class _Refused(Exception):
    """A request the session's principal may not make; ``name`` is Kafka's error."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class GroupApis:
    def __init__(self, apis: Any) -> None:
        self.apis = apis
        self.handlers = {10: self.find_coordinator, 8: self.offset_commit, 9: self.offset_fetch,
                         16: self.list_groups}

    async def _coordinator(self, group_id: str):
        return await asyncio.to_thread(find_coordinator, self.apis._controller(), self.apis.broker.namespace, group_id)

    async def find_coordinator(self, header: protocol.RequestHeader, request: Any) -> Any:
        keys = list(request.coordinator_keys) if header.api_version >= 4 else [request.key]
        address = self.apis.own_address()
        coordinators = []
        for key in keys:
            if request.key_type == KEY_TYPE_GROUP and not self.apis.security.allowed("describe", "group", key):
                coordinators.append({"key": key, "node_id": -1, "host": "", "port": -1,
                                     "error_code": E("group_authorization_failed"),
                                     "error_message": f"describe on group {key!r} is not allowed"})
            elif request.key_type != KEY_TYPE_GROUP or address is None:
                coordinators.append({"key": key, "node_id": -1, "host": "", "port": -1,
                                     "error_code": E("coordinator_not_available"),
                                     "error_message": "only consumer-group coordinators are served"})
            else:
                coordinators.append({"key": key, "node_id": self.apis.broker.broker_id, "host": address[0],
                                     "port": address[1], "error_code": 0, "error_message": None})
        first = coordinators[0] if coordinators else {"node_id": -1, "host": "", "port": -1, "error_code": 0,
                                                      "error_message": None}
        return protocol.build(protocol.response_class(10, header.api_version), {
            "throttle_time": 0, "coordinators": coordinators, **{k: v for k, v in first.items() if k != "key"}})

    async def offset_commit(self, header: protocol.RequestHeader, request: Any) -> Any:
        security = self.apis.security
        denied_topics = {topic.name for topic in request.topics if not security.allowed("read", "topic", topic.name)}
        entries = [[topic.name, part.partition_index, int(part.committed_offset), part.committed_metadata or ""]
                   for topic in request.topics if topic.name not in denied_topics for part in topic.partitions]
        code = 0
        generation = int(getattr(request, "generation_id_or_member_epoch", getattr(request, "generation_id", -1)))
        try:
            if not security.allowed("read", "group", request.group_id):
                raise _Refused("group_authorization_failed")
            coordinator = await self._coordinator(request.group_id)
            if request.member_id or generation >= 0:
                # A member of a classic group, at its generation.
                refused = await coordinator.classic_commit.remote(request.group_id, request.member_id or "",
                                                                  generation, entries)
                code = E(refused) if refused else 0
            else:
                await coordinator.commit.remote(request.group_id, None, entries)
        except _Refused as refused:
            code = E(refused.name)
        except Exception as error:  # noqa: BLE001 - every partition answers the failure
            code = error_code_of(error)
            if isinstance(cause_of(error), GroupNotEmptyError):
                code = E("unknown_member_id")
        topic_refused = E("topic_authorization_failed")
        return protocol.build(protocol.response_class(8, header.api_version), {
            "throttle_time": 0,
            "topics": [{"name": topic.name, "partitions": [
                {"partition_index": part.partition_index,
                 "error_code": topic_refused if topic.name in denied_topics and code == 0 else code}
                for part in topic.partitions]} for topic in request.topics],
        })

    async def offset_fetch(self, header: protocol.RequestHeader, request: Any) -> Any:
        wanted = None if request.topics is None else [
            [topic.name, index] for topic in request.topics for index in topic.partition_indexes]
        security = self.apis.security
        try:
            if not security.allowed("describe", "group", request.group_id):
                raise _Refused("group_authorization_failed")
            coordinator = await self._coordinator(request.group_id)
            committed = await coordinator.fetch_offsets.remote(request.group_id, wanted)
            code = 0
        except _Refused as refused:
            committed, code = {}, E(refused.name)
        except Exception as error:  # noqa: BLE001
            committed, code = {}, error_code_of(error)
        if wanted is None:  # all the group's offsets: only those of topics the principal may describe
            wanted = [list(tp) for tp in sorted(committed) if security.allowed("describe", "topic", tp[0])]
        topics: dict[str, list] = {}
        for topic, partition in wanted:
            refused = not security.allowed("describe", "topic", topic)
            topics.setdefault(topic, []).append({
                "partition_index": partition,
                "committed_offset": -1 if refused else committed.get((topic, partition), -1),
                "committed_leader_epoch": -1, "metadata": "",
                "error_code": E("topic_authorization_failed") if refused else 0})
        return protocol.build(protocol.response_class(9, header.api_version), {
            "throttle_time": 0, "error_code": code,
            "topics": [{"name": name, "partitions": parts} for name, parts in topics.items()]})

    async def list_groups(self, header: protocol.RequestHeader, request: Any) -> Any:
        code, groups = 0, []
        try:
            partitions = (await self.apis._controller().metadata.remote([names.OFFSETS_TOPIC]))[names.OFFSETS_TOPIC]
            handles = await asyncio.to_thread(lambda: [
                coordinator_handle(self.apis.broker.namespace, index, create=False)
                for index in range(len(partitions or ()))])
            for listed in await asyncio.gather(*(h.list_groups.remote() for h in handles if h is not None)):
                groups.extend(listed)
        except Exception as error:  # noqa: BLE001
            code = error_code_of(error)
        states = set(getattr(request, "states_filter", ()) or ())
        security = self.apis.security
        if not security.allowed("describe", "cluster", CLUSTER_NAME):
            # Kafka lists only the groups the principal may describe.
            groups = [g for g in groups if security.allowed("describe", "group", g["group_id"])]
        return protocol.build(protocol.response_class(16, header.api_version), {
            "throttle_time": 0, "error_code": code,
            "groups": [{"group_id": g["group_id"], "protocol_type": "consumer", "group_state": g["state"],
                        "group_type": "consumer"} for g in groups if not states or g["state"] in states]})
