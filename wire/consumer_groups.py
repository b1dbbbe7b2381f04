"""Kafka's consumer group protocol (KIP-848, ``group.protocol=consumer``) over the wire:
ConsumerGroupHeartbeat, mapped onto rafka's group coordinator, which already assigns on
the server (actors/coordinator.py).

Mapping:

* **Join** (member epoch 0): the coordinator's ``heartbeat`` with no member id (v0: the
  coordinator names the member) or ``join_as`` the id the client chose (v1, KIP-1082:
  a UUID; a member of that id still in the group is replaced, since a client rejoins
  only after giving up its partitions). A joining member owns nothing, whatever it says.
* **Heartbeat** (epoch > 0): ``topic_partitions`` (what the member owns, by topic id) is
  its report, as of its epoch; null means "unchanged since my last heartbeat", and so do
  null ``subscribed_topic_names`` / ``subscribed_topic_regex`` (``keep_subscription``).
  The response carries the member's assignment (its grant: a partition moving from
  another member is granted only once that member reports it released, so no partition
  has two owners) whenever its epoch changed or the member sent its full state.
* **Leave** (epoch -1): the coordinator's ``leave``; its partitions move at once. A
  static member's temporary leave (epoch -2) keeps them until its session times out.

Epochs. KIP-848 reserves member epoch 0 for "join", and rafka's members start at epoch
0 before their first grant, so the wire epoch is rafka's plus one
(``WIRE_EPOCH_OFFSET``); an OffsetCommit from such a member carries the wire epoch and
is fenced as a rafka consumer's commit is (``GroupCoordinator.classic_commit`` hands it
to ``commit``). A heartbeat claiming an epoch newer than the member's is
FENCED_MEMBER_EPOCH: the client rejoins.

Authorization (docs/security.md): Read on the group, Describe on each subscribed topic.

Assignors: KIP-848's ``uniform`` (the default) is rafka's ``sticky``; ``range`` is
``range``; any other name is UNSUPPORTED_ASSIGNOR. The session timeout is the broker's
(Kafka's ``group.consumer.session.timeout.ms``, 45 s); the heartbeat interval it tells
clients is ``HEARTBEAT_INTERVAL_MS``. The regex subscription (v1) is matched with
Python's ``re`` (``fullmatch``), which agrees with RE2 on ordinary patterns.
"""

from __future__ import annotations

import logging
from typing import Any

from rafka.actors.coordinator import WIRE_MEMBER_EPOCH_OFFSET as WIRE_EPOCH_OFFSET
from rafka.errors import (
    FencedInstanceIdError,
    InconsistentGroupProtocolError,
    InvalidConfigError,
    UnknownMemberIdError,
)
from rafka.wire import protocol
from rafka.wire.errors import cause_of, error_code_of, message_of

logger = logging.getLogger(__name__)

E = protocol.error_code
API_KEY = 68
LEAVE_EPOCH, STATIC_LEAVE_EPOCH, JOIN_EPOCH = -1, -2, 0
SESSION_TIMEOUT_MS = 45_000
HEARTBEAT_INTERVAL_MS = 2_000
DEFAULT_REBALANCE_TIMEOUT_MS = 300_000
ASSIGNORS = {None: "sticky", "": "sticky", "uniform": "sticky", "range": "range"}


class ConsumerGroupApis:
    def __init__(self, apis: Any, groups: Any) -> None:
        self.apis = apis
        self.groups = groups
        self.handlers = {API_KEY: self.consumer_group_heartbeat}

    async def consumer_group_heartbeat(self, header: protocol.RequestHeader, request: Any) -> Any:
        epoch = int(request.member_epoch)
        member_id = request.member_id or ""
        security = self.apis.security
        if not security.allowed("read", "group", request.group_id):
            return self._response(header, E("group_authorization_failed"), f"no Read on group {request.group_id!r}",
                                  member_id, epoch, None)
        denied = [name for name in request.subscribed_topic_names or () if not security.allowed("describe", "topic", name)]
        if denied:
            return self._response(header, E("topic_authorization_failed"), f"no Describe on topic {denied[0]!r}",
                                  member_id, epoch, None)
        try:
            coordinator = await self.groups._coordinator(request.group_id)
            if epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
                if member_id and (epoch == LEAVE_EPOCH or not request.instance_id):
                    await coordinator.leave.remote(request.group_id, member_id)
                return self._response(header, 0, None, member_id, epoch, None)
            assignor = ASSIGNORS.get(request.server_assignor)
            if assignor is None:
                return self._response(header, E("unsupported_assignor"),
                                      f"assignor {request.server_assignor!r} is not one of uniform, range",
                                      member_id, epoch, None)
            body = await self._request_body(header, request, epoch, member_id, assignor)
            answer = await coordinator.heartbeat.remote(request.group_id, body)
        except Exception as error:  # noqa: BLE001 - every failure is an error code for the client
            code = _error_code(error)
            if code == E("unknown_server_error"):
                logger.warning("ConsumerGroupHeartbeat of group %r failed: %r", request.group_id, error)
            return self._response(header, code, message_of(error), member_id, epoch, None)
        wire_epoch = answer["epoch"] + WIRE_EPOCH_OFFSET
        if epoch > wire_epoch:
            return self._response(header, E("fenced_member_epoch"),
                                  f"member {answer['member_id']} is at epoch {wire_epoch}, not {epoch}: rejoin",
                                  answer["member_id"], epoch, None)
        full_state = epoch == JOIN_EPOCH or request.topic_partitions is not None
        assignment = None
        if full_state or wire_epoch != epoch:
            assignment = await self._assignment(answer["assignment"])
        return self._response(header, 0, None, answer["member_id"], wire_epoch, assignment)

    async def _request_body(self, header: protocol.RequestHeader, request: Any, epoch: int, member_id: str,
                            assignor: str) -> dict:
        rebalance_timeout_ms = round(request.rebalance_timeout.total_seconds() * 1000)
        body: dict[str, Any] = {
            "instance_id": request.instance_id, "client_id": header.client_id or "", "assignor": assignor,
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "rebalance_timeout_ms": rebalance_timeout_ms if rebalance_timeout_ms > 0 else DEFAULT_REBALANCE_TIMEOUT_MS,
            "wait_ms": 0,
        }
        names = request.subscribed_topic_names
        regex = getattr(request, "subscribed_topic_regex", None)
        if epoch == JOIN_EPOCH:
            body.update(member_id="", owned=[], join_as=member_id or None)
            if names is None and regex is None:
                raise InvalidConfigError("a joining member must name its subscription (subscribed_topic_names "
                                         "or subscribed_topic_regex)")
        else:
            body.update(member_id=member_id, owned_epoch=epoch - WIRE_EPOCH_OFFSET,
                        owned=await self._owned(request.topic_partitions))
        if names is None and regex is None:
            body["keep_subscription"] = True
        elif regex:
            body.update(topics=[], pattern=regex)
        else:
            body.update(topics=sorted(names or ()), pattern=None)
        return body

    async def _owned(self, topic_partitions: Any) -> list[list] | None:
        if topic_partitions is None:
            return None
        names = await self._names_by_id([tp.topic_id.hex for tp in topic_partitions])
        # A topic id the cluster no longer has (deleted): the member owns nothing there.
        return [[names[tp.topic_id.hex], int(p)] for tp in topic_partitions if tp.topic_id.hex in names
                for p in tp.partitions]

    async def _names_by_id(self, topic_ids: list[str]) -> dict[str, str]:
        await self.apis._refresh()
        names = self.apis.topic_names_by_id()
        if any(topic_id not in names for topic_id in topic_ids):
            await self.apis._refresh(force=True)
            names = self.apis.topic_names_by_id()
        return names

    async def _assignment(self, assigned: list) -> dict:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in assigned:
            by_topic.setdefault(topic, []).append(partition)
        ids = {name: topic_id for topic_id, name in (await self._names_by_id([])).items()}
        if any(topic not in ids for topic in by_topic):
            await self.apis._refresh(force=True)
            ids = {name: topic_id for topic_id, name in self.apis.topic_names_by_id().items()}
        return {"topic_partitions": [{"topic_id": ids[topic], "partitions": sorted(partitions)}
                                     for topic, partitions in sorted(by_topic.items()) if topic in ids]}

    @staticmethod
    def _response(header: protocol.RequestHeader, code: int, message: str | None, member_id: str, epoch: int,
                  assignment: dict | None) -> Any:
        return protocol.build(protocol.response_class(API_KEY, header.api_version), {
            "throttle_time": 0, "error_code": code, "error_message": message, "member_id": member_id or None,
            "member_epoch": epoch, "heartbeat_interval": HEARTBEAT_INTERVAL_MS, "assignment": assignment,
        })


def _error_code(error: BaseException) -> int:
    cause = cause_of(error)
    if isinstance(cause, UnknownMemberIdError):
        return E("unknown_member_id")
    if isinstance(cause, FencedInstanceIdError):
        return E("fenced_instance_id")
    if isinstance(cause, InconsistentGroupProtocolError):
        return E("inconsistent_group_protocol")
    if isinstance(cause, InvalidConfigError):
        return E("invalid_request")
    code = error_code_of(error)
    if code == E("not_leader_or_follower"):  # the coordinator actor is restarting or gone
        return E("coordinator_not_available")
    return code
