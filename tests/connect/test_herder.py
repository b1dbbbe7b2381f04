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


def test_monitor_logs_a_failed_supervision_pass_and_keeps_supervising(caplog):
    herder = loading_herder()
    herder._stopped = threading.Event()
    passes = []

    def check_all():
        passes.append(1)
        if len(passes) == 2:
            herder._stopped.set()
        raise KeyError("a supervision bug")

    herder._check_all = check_all
    with caplog.at_level("ERROR", logger="rafka.connect.herder"):
        herder._monitor()
    assert len(passes) == 2  # the first failure did not end supervision
    failures = [record for record in caplog.records if record.name == "rafka.connect.herder"]
    assert len(failures) == 2 and "supervision pass failed" in failures[0].getMessage()
    assert failures[0].exc_info[0] is KeyError


def test_stop_logs_a_connector_whose_stop_raises(caplog):
    from rafka.connect.herder import _Connector

    class FailingStop:
        def stop(self):
            raise RuntimeError("stop failed in plugin code")

    herder = loading_herder()
    connector = _Connector("failing", {}, "RUNNING")
    connector.instance = FailingStop()
    with caplog.at_level("ERROR", logger="rafka.connect.herder"):
        herder._stop(connector)
    assert connector.state == "UNASSIGNED"
    [record] = [record for record in caplog.records if record.name == "rafka.connect.herder"]
    assert "'failing'" in record.getMessage() and record.exc_info[0] is RuntimeError


def test_status_write_that_fails_is_logged(caplog):
    from rafka.connect.herder import _Connector

    class UnwritableStore:
        def put_many(self, values):
            raise ConnectionError("__connect_status has no leader")

    herder = loading_herder()
    herder.statuses = UnwritableStore()
    with caplog.at_level("WARNING", logger="rafka.connect.herder"):
        herder._write_status(_Connector("quiet", {}, "RUNNING"))
    [record] = [record for record in caplog.records if record.name == "rafka.connect.herder"]
    assert "'quiet'" in record.getMessage() and "has no leader" in record.getMessage()
