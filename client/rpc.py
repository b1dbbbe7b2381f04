"""Calling rafka actors: waiting on Ray object refs and turning Ray's errors into
rafka's. Every client call to an actor goes through ``get``."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from rafka.errors import ClusterError, RafkaError, RequestTimeoutError


class ActorUnavailableError(ClusterError):
    """An actor died or cannot be reached (retriable: its restart or a new leader may
    answer)."""

    retriable = True


def unwrap(error: BaseException) -> BaseException:
    """The rafka error inside a Ray error, or a ClusterError describing it."""
    if isinstance(error, RayTaskError):
        cause = getattr(error, "cause", None)
        if isinstance(cause, RafkaError):
            return cause
        if isinstance(cause, (TypeError, ValueError)):
            return cause
        if isinstance(cause, RayError) and not isinstance(cause, RayTaskError):
            # The actor answered with a Ray error of its own call to another actor
            # (a coordinator whose partition's leader is restarting, say): as transient
            # as if we had called that actor ourselves.
            return unwrap(cause)
        return ClusterError(f"rafka actor failed: {cause!r}")
    if isinstance(error, RayActorError):
        return ActorUnavailableError(f"a rafka actor is unavailable: {error}")
    if isinstance(error, GetTimeoutError):
        return RequestTimeoutError(f"no answer in time: {error}")
    if isinstance(error, RayError):
        # Unschedulable (its node is gone), owner died, and the like: another actor —
        # a newly elected leader, a restarted controller — may answer instead.
        return ActorUnavailableError(f"a rafka actor is unavailable: {error}")
    return error


def call_with_retries(method: Any, *args: Any, timeout_s: float = 60.0) -> Any:
    """``method.remote(*args)`` and wait, retrying retriable errors (an actor restarting,
    a leader moving) with backoff until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    backoff_s = 0.1
    while True:
        try:
            return get(method.remote(*args))
        except RafkaError as error:
            if not error.retriable or time.monotonic() + backoff_s > deadline:
                raise
        time.sleep(backoff_s)
        backoff_s = min(backoff_s * 2, 1.0)


def get(refs: Any, timeout_s: float | None = None) -> Any:
    """``ray.get`` that raises rafka errors."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except RayError as error:
        raise unwrap(error) from None
