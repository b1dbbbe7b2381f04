"""How Ray's errors become rafka's (client/rpc.py ``unwrap``): what a caller may retry."""

import ray.exceptions

import rafka
from rafka.client import rpc


def test_a_ray_error_an_actor_raised_from_its_own_call_stays_retriable():
    """A coordinator whose call to its partition's leader failed because that actor was
    restarting answers with Ray's ActorUnavailableError inside a RayTaskError; before,
    it became a ClusterError nobody retried, and a stream job's heartbeat thread gave up
    on it (found by the soak, seed 31007)."""
    inner = ray.exceptions.ActorUnavailableError("The actor is restarting.", None)
    outer = ray.exceptions.RayTaskError("GroupCoordinator.heartbeat", "traceback", inner)
    error = rpc.unwrap(outer)
    assert isinstance(error, rafka.RafkaError) and error.retriable, error
    assert "restarting" in str(error)


def test_a_rafka_error_inside_a_task_error_is_itself_and_other_failures_are_cluster_errors():
    refused = rafka.NotLeaderError("broker 1 does not lead t-0")
    assert rpc.unwrap(ray.exceptions.RayTaskError("Replica.produce", "tb", refused)) is refused
    crashed = rpc.unwrap(ray.exceptions.RayTaskError("Replica.produce", "tb", RuntimeError("bug")))
    assert isinstance(crashed, rafka.ClusterError) and not crashed.retriable
