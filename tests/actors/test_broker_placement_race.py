"""broker_placement.start when two placements race (a deposed controller's placement
still in flight while the new active controller places): the fence stops the old one
before it kills or creates anything, and a name taken between freeing it and creating
the broker is a retriable error, never Ray's ActorAlreadyExistsError."""

import asyncio

import pytest
import ray

from rafka.actors import broker_placement, names
from rafka.errors import ActorUnavailableError, NotControllerError

NAMESPACE = "rafka-test-placement-race"


@ray.remote(num_cpus=0)
class NameHolder:
    """Stands for a broker another placement created under the same name."""

    def who(self) -> str:
        return "holder"


def _hold(broker_id: int):
    return NameHolder.options(name=names.broker(broker_id), namespace=NAMESPACE, lifetime="detached").remote()


def _kill(broker_id: int) -> None:
    try:
        ray.kill(ray.get_actor(names.broker(broker_id), namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass


@pytest.fixture
def node_id(ray_instance):
    return ray.get_runtime_context().get_node_id()


def test_a_name_taken_by_a_racing_placement_is_a_retriable_error_naming_the_broker(node_id, tmp_path):
    calls = []

    def fence():
        calls.append(1)
        if len(calls) == 2:  # after the name was freed, just before the creation: the other placement wins
            _hold(7)

    try:
        with pytest.raises(ActorUnavailableError, match="broker-7") as raised:
            asyncio.run(broker_placement.start([(7, node_id)], str(tmp_path), NAMESPACE, fence))
        assert raised.value.retriable
        # The other placement's actor is untouched: the loser neither killed nor replaced it.
        assert ray.get(ray.get_actor(names.broker(7), namespace=NAMESPACE).who.remote(), timeout=30) == "holder"
    finally:
        _kill(7)


def test_a_fenced_placement_kills_and_creates_nothing(node_id, tmp_path):
    holder = _hold(8)
    ray.get(holder.who.remote(), timeout=30)

    def fence():
        raise NotControllerError("epoch 3 ended")

    try:
        with pytest.raises(NotControllerError):
            asyncio.run(broker_placement.start([(8, node_id), (9, node_id)], str(tmp_path), NAMESPACE, fence))
        assert ray.get(ray.get_actor(names.broker(8), namespace=NAMESPACE).who.remote(), timeout=30) == "holder"
        with pytest.raises(ValueError):
            ray.get_actor(names.broker(9), namespace=NAMESPACE)
    finally:
        _kill(8)
