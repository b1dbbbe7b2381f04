"""Group membership over the wire: Kafka's classic protocol (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, where the clients compute the assignment) and the group admin
requests (DescribeGroups, DeleteGroups), mapped onto rafka's group coordinator actors.

* **JoinGroup / SyncGroup / Heartbeat / LeaveGroup** -> the coordinator's
  ``join_group``, ``sync_group``, ``classic_heartbeat``, ``leave_group``; the group
  state machine is ``actors/classic_group.py``. The metadata and assignment bytes go
  through untouched; for protocol type ``consumer`` they are also decoded
  (ConsumerProtocolSubscription / ConsumerProtocolAssignment, kio's schemas) so that
  ``rafka groups describe`` shows each member's topics and partitions. Bytes that do
  not decode are still stored and handed back (the server never needs them).
* **DescribeGroups** -> the coordinator's ``wire_group``: classic members as they
  joined; a native rafka group answers protocol type ``consumer``, its assignor as the
  protocol, and each member's topics and partitions encoded as a consumer would (v0 of
  the consumer protocol), so Kafka tools describe both kinds alike.
* **DeleteGroups** -> the coordinator's ``delete_group`` (GROUP_ID_NOT_FOUND,
  NON_EMPTY_GROUP as Kafka answers).

A JoinGroup answers once the join phase ends (up to the members' rebalance timeout),
and a follower's SyncGroup once the leader sent the assignment: the connection waits,
as it does on a Kafka broker, which also answers one request per connection at a time.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
from typing import Any

from kio.serial import entity_reader, entity_writer
from ray.exceptions import RayError

from rafka.errors import GroupNotEmptyError, GroupNotFoundError
from rafka.wire import protocol
from rafka.wire.errors import cause_of, message_of

logger = logging.getLogger(__name__)

E = protocol.error_code
CONSUMER_PROTOCOL_VERSION_MAX = 3  # the newest ConsumerProtocol* schema kio has
_VERSION = struct.Struct(">h")


def _consumer_schema(kind: str, version: int) -> type:
    from importlib import import_module

    module = import_module(f"kio.schema.consumer_protocol_{kind}.v{version}.data")
    return getattr(module, f"ConsumerProtocol{kind.capitalize()}")


def decode_subscription(metadata: bytes) -> list[str]:
    """The topics of a consumer's subscription metadata ([] when it does not decode).
    A version newer than kio's is read as the newest kio has (Kafka's rule: fields are
    only ever appended)."""
    try:
        (version,) = _VERSION.unpack_from(metadata, 0)
        schema = _consumer_schema("subscription", min(max(version, 0), CONSUMER_PROTOCOL_VERSION_MAX))
        subscription, _ = entity_reader(schema)(metadata, _VERSION.size)
        return sorted(set(subscription.topics))
    except Exception:  # noqa: BLE001 - opaque to the server: kept, just not shown
        return []


def decode_assignment(assignment: bytes) -> list[tuple[str, int]]:
    """The partitions of a consumer assignment ([] when it does not decode)."""
    if not assignment:
        return []
    try:
        (version,) = _VERSION.unpack_from(assignment, 0)
        schema = _consumer_schema("assignment", min(max(version, 0), CONSUMER_PROTOCOL_VERSION_MAX))
        decoded, _ = entity_reader(schema)(assignment, _VERSION.size)
        return sorted((tp.topic, int(p)) for tp in decoded.assigned_partitions for p in tp.partitions)
    except Exception:  # noqa: BLE001
        return []


def encode_subscription(topics: list[str]) -> bytes:
    schema = _consumer_schema("subscription", 0)
    return _encode(schema, schema(topics=tuple(topics), user_data=None))


def encode_assignment(partitions: list[tuple[str, int]]) -> bytes:
    schema = _consumer_schema("assignment", 0)
    module = __import__(schema.__module__, fromlist=["TopicPartition"])
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return _encode(schema, schema(assigned_partitions=tuple(
        module.TopicPartition(topic=topic, partitions=tuple(parts)) for topic, parts in sorted(by_topic.items())),
        user_data=None))


def _encode(schema: type, value: Any) -> bytes:
    buffer = io.BytesIO()
    buffer.write(_VERSION.pack(schema.__version__))
    entity_writer(schema)(buffer, value)
    return buffer.getvalue()


def _code(answer: dict) -> int:
    return E(answer["error"]) if answer.get("error") else 0


def _ms(value: Any) -> int:
    return -1 if value is None else round(value.total_seconds() * 1000)


class _GroupAuthorizationFailed(Exception):
    """The session's principal may not use the group (GROUP_AUTHORIZATION_FAILED)."""


class MembershipApis:
    def __init__(self, apis: Any, groups: Any) -> None:
        self.apis = apis
        self.groups = groups  # wire/groups.py GroupApis: finds a group's coordinator
        self.handlers = {11: self.join_group, 14: self.sync_group, 12: self.heartbeat, 13: self.leave_group,
                         15: self.describe_groups, 42: self.delete_groups}

    async def _call(self, group_id: str, method: str, *args: Any) -> dict | list | str | None:
        coordinator = await self.groups._coordinator(group_id)
        return await getattr(coordinator, method).remote(group_id, *args)

    async def join_group(self, header: protocol.RequestHeader, request: Any) -> Any:
        protocols = [(p.name, bytes(p.metadata)) for p in request.protocols]
        if not request.group_id:
            answer = {"error": "invalid_group_id", "member_id": request.member_id}
        else:
            topics = decode_subscription(protocols[0][1]) if protocols and request.protocol_type == "consumer" else []
            answer = await self._guarded(request.group_id, "join_group", {
                "member_id": request.member_id, "instance_id": getattr(request, "group_instance_id", None),
                "client_id": header.client_id or "", "protocol_type": request.protocol_type,
                "protocols": protocols, "session_timeout_ms": _ms(request.session_timeout),
                "rebalance_timeout_ms": _ms(getattr(request, "rebalance_timeout", None)), "topics": topics,
            })
        return protocol.build(protocol.response_class(11, header.api_version), {
            "throttle_time": 0, "error_code": _code(answer), "generation_id": answer.get("generation", -1),
            "protocol_type": answer.get("protocol_type"), "protocol_name": answer.get("protocol"),
            "leader": answer.get("leader") or "", "skip_assignment": False,
            "member_id": answer.get("member_id") or request.member_id or "",
            "members": [{"member_id": mid, "group_instance_id": instance, "metadata": metadata}
                        for mid, instance, metadata in answer.get("members") or ()],
        })

    async def sync_group(self, header: protocol.RequestHeader, request: Any) -> Any:
        assignments = {a.member_id: (bytes(a.assignment), decode_assignment(bytes(a.assignment)))
                       for a in request.assignments}
        answer = await self._guarded(request.group_id, "sync_group", {
            "member_id": request.member_id, "instance_id": getattr(request, "group_instance_id", None),
            "generation": int(request.generation_id), "protocol_type": getattr(request, "protocol_type", None),
            "protocol": getattr(request, "protocol_name", None), "assignments": assignments,
        })
        return protocol.build(protocol.response_class(14, header.api_version), {
            "throttle_time": 0, "error_code": _code(answer), "protocol_type": answer.get("protocol_type"),
            "protocol_name": answer.get("protocol"), "assignment": answer.get("assignment") or b"",
        })

    async def heartbeat(self, header: protocol.RequestHeader, request: Any) -> Any:
        answer = await self._guarded(request.group_id, "classic_heartbeat", {
            "member_id": request.member_id, "instance_id": getattr(request, "group_instance_id", None),
            "generation": int(request.generation_id)})
        return protocol.build(protocol.response_class(12, header.api_version),
                              {"throttle_time": 0, "error_code": _code(answer)})

    async def leave_group(self, header: protocol.RequestHeader, request: Any) -> Any:
        if header.api_version < 3:
            leaving = [[request.member_id, None]]
        else:
            leaving = [[m.member_id, m.group_instance_id] for m in request.members]
        code, results = 0, []
        try:
            if not self.apis.security.allowed("read", "group", request.group_id):
                raise _GroupAuthorizationFailed()
            results = await self._call(request.group_id, "leave_group", leaving)
        except Exception as error:  # noqa: BLE001
            code, results = self._failure(error), [None] * len(leaving)
        if header.api_version < 3 and results and results[0]:
            code = E(results[0])
        return protocol.build(protocol.response_class(13, header.api_version), {
            "throttle_time": 0, "error_code": code,
            "members": [{"member_id": mid or "", "group_instance_id": instance, "error_code": E(result) if result else 0}
                        for (mid, instance), result in zip(leaving, results)],
        })

    async def _guarded(self, group_id: str, method: str, request: dict) -> dict:
        if not self.apis.security.allowed("read", "group", group_id):
            return {"error": "group_authorization_failed", "member_id": request.get("member_id") or ""}
        try:
            return await self._call(group_id, method, request)
        except Exception as error:  # noqa: BLE001 - every failure is an error code for the client
            return {"error": self._failure_name(error), "member_id": request.get("member_id") or ""}

    @staticmethod
    def _failure_name(error: BaseException) -> str:
        if isinstance(cause_of(error), RayError):
            # A coordinator that is gone or restarting: the client finds it again.
            logger.info("wire: group coordinator unavailable: %s", message_of(error))
            return "coordinator_not_available"
        logger.warning("wire: group request failed: %r", error)
        return "unknown_server_error"

    def _failure(self, error: BaseException) -> int:
        if isinstance(error, _GroupAuthorizationFailed):
            return E("group_authorization_failed")
        return E(self._failure_name(error))

    async def describe_groups(self, header: protocol.RequestHeader, request: Any) -> Any:
        described = await asyncio.gather(*(self._describe(header.api_version, group_id)
                                           for group_id in request.groups))
        return protocol.build(protocol.response_class(15, header.api_version),
                              {"throttle_time": 0, "groups": described})

    async def _describe(self, version: int, group_id: str) -> dict:
        entry = {"error_code": 0, "error_message": None, "group_id": group_id, "group_state": "Dead",
                 "protocol_type": "", "protocol_data": "", "members": (), "authorized_operations": -2147483648}
        if not self.apis.security.allowed("describe", "group", group_id):
            return {**entry, "error_code": E("group_authorization_failed"),
                    "error_message": f"describe on group {group_id!r} is not allowed"}
        try:
            group = await self._call(group_id, "wire_group")
        except Exception as error:  # noqa: BLE001
            return {**entry, "error_code": self._failure(error), "error_message": message_of(error)}
        if group is None:
            if version >= 6:  # KIP-1043: an unknown group is an error, not a dead group
                return {**entry, "error_code": E("group_id_not_found"),
                        "error_message": f"unknown consumer group {group_id!r}"}
            return entry
        members = []
        for member in group["members"]:
            if "metadata" in member:
                metadata, assignment = member["metadata"], member["assignment"]
            else:  # a native rafka member
                metadata = encode_subscription(member["topics"])
                assignment = encode_assignment(member["partitions"])
            members.append({"member_id": member["member_id"], "group_instance_id": member["instance_id"],
                            "client_id": member["client_id"], "client_host": member["client_host"],
                            "member_metadata": metadata, "member_assignment": assignment})
        return {**entry, "group_state": group["state"], "protocol_type": group["protocol_type"],
                "protocol_data": group["protocol"], "members": members}

    async def delete_groups(self, header: protocol.RequestHeader, request: Any) -> Any:
        async def delete(group_id: str) -> dict:
            if not self.apis.security.allowed("delete", "group", group_id):
                return {"group_id": group_id, "error_code": E("group_authorization_failed")}
            try:
                await self._call(group_id, "delete_group")
                code = 0
            except Exception as error:  # noqa: BLE001
                cause = cause_of(error)
                if isinstance(cause, GroupNotFoundError):
                    code = E("group_id_not_found")
                elif isinstance(cause, GroupNotEmptyError):
                    code = E("non_empty_group")
                else:
                    code = self._failure(error)
            return {"group_id": group_id, "error_code": code}

        results = await asyncio.gather(*(delete(group_id) for group_id in request.groups_names))
        return protocol.build(protocol.response_class(42, header.api_version), {"throttle_time": 0, "results": results})
