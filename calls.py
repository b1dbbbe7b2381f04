"""Calling rafka actors: waiting on Ray object refs, turning Ray's errors into rafka's,
and retrying the retriable ones.

Every call from one rafka role to another goes through here: clients (``client/``,
``connect/``, ``streams/``) and actors calling other actors (``actors/``). It sits below
both, so an actor never imports a client module (layering runs downward: cli, streams and
connect over client, client over actors, actors over storage).

Error translation (``unwrap``): a rafka error raised inside an actor comes back as
itself; a ``TypeError``/``ValueError`` too (bad arguments are the caller's bug, shown as
such); an actor that died or cannot be reached becomes ``ActorUnavailableError``
(retriable: Ray restarts it, or a new leader answers); a Ray timeout becomes
``RequestTimeoutError``; anything else raised in an actor becomes ``ClusterError``.

Retrying (``call_with_retries``, ``retriable_error``): rafka errors whose ``retriable``
flag is set are retried with ``rafka.retry``'s exponential backoff and jitter until the
caller's timeout; the rest are raised at once.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from rafka.errors import ActorUnavailableError, ClusterError, RafkaError, RequestTimeoutError
from rafka.retry import Backoff, retry

# Between retries of one actor call: 0.1 s doubling to 1 s, jittered (a restart or a
# leader election takes about that long; jitter keeps many callers out of lockstep).
CALL_BACKOFF = Backoff(initial_s=0.1, max_s=1.0)


def unwrap(error: BaseException) -> BaseException:
    """The rafka error inside a Ray error, or a rafka error describing it (see the module
    docstring); an error that is not Ray's is returned as it is."""
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


def retriable_error(error: BaseException, failures: int = 0) -> bool:
    """Whether ``error`` is a rafka error that may succeed when simply sent again."""
    return isinstance(error, RafkaError) and error.retriable


def get(refs: Any, timeout_s: float | None = None) -> Any:
    """``ray.get`` that raises rafka errors."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except RayError as error:
        raise unwrap(error) from None


def call_with_retries(method: Any, *args: Any, timeout_s: float = 60.0) -> Any:
    """``method.remote(*args)`` and wait, retrying retriable errors (an actor restarting,
    a leader moving) with ``CALL_BACKOFF`` until ``timeout_s``; then the last error."""
    return retry(lambda: get(method.remote(*args)), CALL_BACKOFF, retriable=retriable_error,
                 deadline_s=time.monotonic() + timeout_s)
