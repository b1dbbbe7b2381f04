"""The herder as a plain class (no Ray): requests made while it loads its configs."""

import threading

import pytest

from rafka.connect.errors import ConnectError
from rafka.connect.herder import Herder


def loading_herder() -> Herder:
    """A herder whose config loading has not finished (its loader thread not started)."""
    herder = Herder.__new__(Herder)
    herder.connectors, herder.plugins = {}, {}
    herder._lock = threading.RLock()
    herder._ready = threading.Event()
    herder._init_error = None
    herder.rest_url = "http://127.0.0.1:8083"
    return herder


def test_request_during_config_loading_waits_for_the_loaded_configs():
    herder = loading_herder()
    answers = []
    request = threading.Thread(target=lambda: answers.append(herder.list_connectors()))
    request.start()
    request.join(0.5)
    assert request.is_alive() and not answers  # still waiting: an empty list would be wrong
    herder.connectors["loaded"] = object()
    herder._ready.set()
    request.join(30)
    assert answers == [["loaded"]]


def test_request_after_a_failed_start_raises_the_start_error():
    herder = loading_herder()
    herder._init_error = RuntimeError("cannot read __connect_configs")
    herder._ready.set()
    with pytest.raises(ConnectError, match="cannot read __connect_configs"):
        herder.status("any")
