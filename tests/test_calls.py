"""rafka.calls: Ray's errors become rafka's at the boundary (no cluster needed)."""

from __future__ import annotations

from ray.exceptions import ActorDiedError, GetTimeoutError

from rafka.calls import retriable_error, unwrap
from rafka.errors import ActorUnavailableError, ClusterError, NotLeaderError, RequestTimeoutError, TopicNotFoundError


def test_unwrap_turns_a_dead_actor_into_a_retriable_actor_unavailable_error():
    error = unwrap(ActorDiedError())
    assert isinstance(error, ActorUnavailableError) and isinstance(error, ClusterError)
    assert retriable_error(error)


def test_unwrap_turns_a_ray_timeout_into_a_request_timeout():
    error = unwrap(GetTimeoutError("get timed out after 5 s"))
    assert isinstance(error, RequestTimeoutError) and "5 s" in str(error) and retriable_error(error)


def test_unwrap_returns_an_error_that_is_not_rays_unchanged():
    original = TopicNotFoundError("unknown topic 'missing'")
    assert unwrap(original) is original
    assert not retriable_error(original) and retriable_error(NotLeaderError("moved"))
    assert not retriable_error(RuntimeError("not a rafka error"))
