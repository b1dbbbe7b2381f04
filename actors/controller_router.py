"""The controller's well-known name: a stateless actor named ``names.CONTROLLER`` that
forwards every controller call to the active controller (the controller quorum's leader,
docs/controller-quorum.md), so brokers, replicas, clients and the Kafka listener keep
addressing one name while the active controller moves between voters. A quorum of one
voter has no router: that voter carries the controller's name itself (see
actors/controller.py, "A lone voter"), which saves a process and a hop.

Routing: the router asks every voter's ``status`` (each within ``STATUS_TIMEOUT_S``) and
forwards to the first that says it is active; it
keeps that handle until a call fails with ``NotControllerError`` (the voter was deposed)
or an actor error (it died), then finds the leader again, retrying until
``ROUTE_TIMEOUT_S`` has passed. A call pending for longer than ``SUPERSEDED_CHECK_S`` is
given up and sent again when another voter has become active meanwhile (the one called
may be SIGSTOPped or cut off and never answer). Errors the controller raises on purpose (a topic that
exists, a bad config) pass through unchanged.

Not promised: a call retried after the active controller died mid-call may have taken
effect (delete_topic then answers TopicNotFoundError, for instance); exactly-once admin
operations are not. ``create_topic`` is the exception: every call gets one topic id for
all its attempts, and a controller that finds the topic with that id answers as the
first attempt would have. The router holds no state, so Ray restarting it (``max_restarts=-1``)
loses nothing. It costs one actor hop per controller call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from rafka.actors import names
from rafka.actors.controller_methods import CONTROLLER_METHODS
from rafka.actors.process import tune_actor_process
from rafka.errors import NotControllerError, RequestTimeoutError

STATUS_TIMEOUT_S = 1.0
ROUTE_TIMEOUT_S = 30.0
RETRY_INTERVAL_S = 0.05
SUPERSEDED_CHECK_S = 0.5


class ControllerRouter:
    def __init__(self, namespace: str, voters: list[str]) -> None:
        tune_actor_process()
        self.namespace = namespace
        self.voters = list(voters)
        self._active: Any = None
        self._handles: dict[str, Any] = {}

    def _voter(self, voter_id: str):
        handle = self._handles.get(voter_id)
        if handle is None:
            handle = self._handles[voter_id] = ray.get_actor(names.raft_voter(voter_id), namespace=self.namespace)
        return handle

    async def _status(self, voter_id: str) -> dict:
        try:
            return await asyncio.wait_for(self._voter(voter_id).status.remote(), STATUS_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - dead, paused, restarting: reported as unreachable
            self._handles.pop(voter_id, None)
            return {"voter_id": voter_id, "reachable": False, "error": repr(error)}

    async def voter_statuses(self) -> list[dict]:
        """Every voter's status (role, term, leader, commit and applied index; the
        leader's ``lag`` per voter), or ``reachable: False`` with the error."""
        statuses = await asyncio.gather(*(self._status(voter_id) for voter_id in self.voters))
        return [dict(status, reachable=status.get("reachable", True)) for status in statuses]

    async def describe_quorum(self) -> dict:
        """The voters, the active controller (leader), its epoch and each voter's lag in
        entries behind the leader's log (None when unknown)."""
        return summarize_quorum(self.voters, await self.voter_statuses())

    async def _find_active(self, deadline_s: float):
        while True:
            # The first voter that says it is active wins: a dead or paused voter's
            # status takes STATUS_TIMEOUT_S, which routing must not wait for. (An active
            # voter that was deposed meanwhile answers NotControllerError, and routing
            # starts over.)
            statuses = []
            for next_status in asyncio.as_completed([self._status(voter_id) for voter_id in self.voters]):
                status = await next_status
                statuses.append(status)
                if status.get("active"):
                    return status["voter_id"], self._voter(status["voter_id"]), status["controller_epoch"]
            if time.monotonic() > deadline_s:
                raise RequestTimeoutError(
                    f"no active rafka controller among voters {self.voters} of namespace {self.namespace!r} within "
                    f"{ROUTE_TIMEOUT_S} s: " + "; ".join(
                        f"{s['voter_id']}: " + (f"{s.get('role')} of term {s.get('term')}" if s.get("reachable", True)
                                                else s["error"]) for s in statuses))
            await asyncio.sleep(RETRY_INTERVAL_S)

    async def _forward(self, method: str, args: tuple, kwargs: dict) -> Any:
        deadline_s = time.monotonic() + ROUTE_TIMEOUT_S
        if method == "create_topic" and len(args) < 5 and kwargs.get("topic_id") is None:
            # One topic id for every attempt of this call: an attempt that committed before
            # a failover is then recognised by the next controller (see Controller.create_topic).
            kwargs = dict(kwargs, topic_id=uuid.uuid4().hex)
        while True:
            active = self._active
            if active is None:
                active = self._active = await self._find_active(deadline_s)
            try:
                return await self._call(active, method, args, kwargs)
            except (NotControllerError, RayError) as error:
                if isinstance(error, RayTaskError) and not isinstance(error, NotControllerError):
                    raise  # the controller's own answer (TopicExistsError, ...): not a routing problem
                # The voter is deposed, dead, restarting or unschedulable (its node is gone).
                if self._active is active:
                    self._active = None
                if time.monotonic() > deadline_s:
                    raise
                await asyncio.sleep(RETRY_INTERVAL_S)

    async def _call(self, active: tuple[str, Any, int], method: str, args: tuple, kwargs: dict) -> Any:
        """Call ``method`` on ``active``; while it is pending, look every
        ``SUPERSEDED_CHECK_S`` whether another voter has become the active controller at
        a later epoch (the one called may be paused or cut off, and would never answer):
        then give the call up with ``NotControllerError`` (if it runs later, its commits
        and pushes are refused by epoch) so that it is sent to the new one."""
        called, handle, epoch = active
        call = asyncio.ensure_future(getattr(handle, method).remote(*args, **kwargs))
        while True:
            done, _ = await asyncio.wait({call}, timeout=SUPERSEDED_CHECK_S)
            if done:
                return call.result()
            # The first newer active voter to answer wins: a voter whose node is gone
            # answers nothing until STATUS_TIMEOUT_S, which rerouting must not wait for.
            for next_status in asyncio.as_completed([self._status(voter_id) for voter_id in self.voters]):
                status = await next_status
                if status.get("active") and status["voter_id"] != called and status["controller_epoch"] > epoch:
                    call.cancel()
                    raise NotControllerError(f"voter {status['voter_id']} became the active controller at epoch "
                                             f"{status['controller_epoch']} while {method} was pending elsewhere")
                if call.done():
                    break


def summarize_quorum(voters: list[str], statuses: list[dict]) -> dict:
    """``describe_quorum``'s answer from every voter's status (``reachable`` set): the
    voters, the active controller (leader), its epoch and each voter's lag in entries
    behind the leader's log (None when unknown)."""
    active = [status for status in statuses if status.get("active")]
    leader = max(active, key=lambda status: status["controller_epoch"]) if active else None
    lag = {voter: (0 if leader is not None and voter == leader["voter_id"] else
                   (leader["lag"].get(voter) if leader is not None else None)) for voter in voters}
    return {"voters": statuses, "leader": leader["voter_id"] if leader else None,
            "epoch": leader["controller_epoch"] if leader else None, "lag": lag}


def _forwarder(method: str):
    async def forward(self, *args: Any, **kwargs: Any) -> Any:
        return await self._forward(method, args, kwargs)

    forward.__name__ = forward.__qualname__ = method
    forward.__doc__ = f"``Controller.{method}`` on the active controller (see actors/controller.py)."
    return forward


for _method in CONTROLLER_METHODS:
    setattr(ControllerRouter, _method, _forwarder(_method))
