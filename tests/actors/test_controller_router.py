"""The controller router (actors/controller_router.py) carries the controller's name, so
every method of the controller role must be reachable through it. No Ray needed: the
router's methods are made when the module is imported."""

import inspect

from rafka.actors.controller import CONTROLLER_METHODS, Controller
from rafka.actors.controller_router import ControllerRouter
from rafka.actors.raft_voter import RaftVoter

# What the router answers itself, about the quorum, and a lone voter (which carries the
# controller's name without a router) answers too, active or not.
QUORUM_METHODS = {"describe_quorum"}


def _controller_role_methods() -> set[str]:
    """Public methods of Controller (its mixins included) that are not the voter's."""
    voter_methods = {name for name, _ in inspect.getmembers(RaftVoter, inspect.isfunction)}
    return {name for name, _ in inspect.getmembers(Controller, inspect.isfunction)
            if not name.startswith("_") and name not in voter_methods and name not in QUORUM_METHODS}


def test_a_lone_voter_answers_what_the_router_answers_about_the_quorum():
    assert all(hasattr(ControllerRouter, name) and hasattr(Controller, name) for name in QUORUM_METHODS)


def test_router_forwards_every_controller_method():
    missing = sorted(name for name in _controller_role_methods() if not hasattr(ControllerRouter, name))
    assert missing == []


def test_controller_methods_refuse_calls_off_the_active_controller():
    # Every method of the role is wrapped (_active_only) so that a voter that is not the
    # active controller answers NotControllerError rather than its possibly stale state.
    unguarded = sorted(name for name in _controller_role_methods()
                       if name not in CONTROLLER_METHODS or not hasattr(getattr(Controller, name), "__wrapped__"))
    assert unguarded == []
