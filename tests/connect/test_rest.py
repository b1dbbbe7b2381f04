"""The REST API over HTTP, as curl or Kafka Connect's tools would call it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

import rafka

TOKEN: list[str] = []  # the session's Connect token, set by the base fixture


def call(base: str, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, decoded JSON or None), sent with the session's Connect token."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {TOKEN[0]}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def base(connect_runtime, connect_token):
    """The URL handed out when Connect started; a herder that Ray restarted (as
    test_runtime.py makes it) listens on the same port again."""
    TOKEN[:] = [connect_token]
    return connect_runtime.rest_url


def wait_state(base: str, name: str, state: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = call(base, "GET", f"/connectors/{name}/status")[1]
        if status["connector"]["state"] == state and status["tasks"] and all(t["state"] == state for t in status["tasks"]):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {state}: {status}")


def test_connector_lifecycle_through_rest(cluster, base, topic, tmp_path):
    cluster.admin().create_topic(topic)
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    name = f"rest-{topic}"
    config = {"connector.class": "FileSource", "file": str(source), "topic": topic}
    assert call(base, "GET", "/")[1]["version"] == rafka.__version__
    status, info = call(base, "POST", "/connectors", {"name": name, "config": config})
    assert status == 201 and info["name"] == name and info["type"] == "source"
    assert info["tasks"] == [{"connector": name, "task": 0}]
    assert name in call(base, "GET", "/connectors")[1]
    assert call(base, "GET", f"/connectors/{name}")[1]["config"]["file"] == str(source)
    assert call(base, "GET", f"/connectors/{name}/config")[1]["topic"] == topic
    wait_state(base, name, "RUNNING")
    status, info = call(base, "PUT", f"/connectors/{name}/config", {**config, "batch.size": "100"})
    assert status == 200 and info["config"]["batch.size"] == "100"
    assert call(base, "PUT", f"/connectors/{name}/pause")[0] == 202
    wait_state(base, name, "PAUSED")
    assert call(base, "PUT", f"/connectors/{name}/resume")[0] == 202
    wait_state(base, name, "RUNNING")
    worker = call(base, "GET", f"/connectors/{name}/status")[1]["tasks"][0]["worker_id"]
    assert call(base, "POST", f"/connectors/{name}/restart") == (204, None)
    # A plain restart restarts the connector instance only: the task actor keeps running.
    assert wait_state(base, name, "RUNNING")["tasks"][0]["worker_id"] == worker
    assert call(base, "POST", f"/connectors/{name}/restart?includeTasks=true")[0] == 202
    assert call(base, "POST", f"/connectors/{name}/tasks/0/restart")[0] == 204
    wait_state(base, name, "RUNNING")
    assert call(base, "GET", f"/connectors/{name}/tasks/0/status")[1]["state"] == "RUNNING"
    assert call(base, "GET", f"/connectors/{name}/tasks")[1][0]["id"] == {"connector": name, "task": 0}
    expanded = call(base, "GET", "/connectors?expand=status&expand=info")[1][name]
    assert expanded["status"]["connector"]["state"] == "RUNNING" and expanded["info"]["type"] == "source"
    deadline = time.monotonic() + 30
    while call(base, "GET", f"/connectors/{name}/offsets")[1]["offsets"] != \
            [{"partition": {"filename": str(source)}, "offset": {"position": 4}}]:
        if time.monotonic() > deadline:
            raise AssertionError(call(base, "GET", f"/connectors/{name}/offsets"))
        time.sleep(0.2)
    assert call(base, "DELETE", f"/connectors/{name}")[0] == 204
    status, error = call(base, "GET", f"/connectors/{name}")
    assert status == 404 and error["error_code"] == 404 and name in error["message"]


@pytest.mark.parametrize("body, field", [
    ({"name": "bad", "config": {"connector.class": "FileSource", "file": "/tmp/x", "topic": "t", "tasks.max": "abc"}},
     "tasks.max"),
    ({"name": "bad", "config": {"connector.class": "NoSuchThing"}}, "connector.class"),
    ({"name": "bad", "config": {"connector.class": "FileSource", "file": "/tmp/x"}}, "topic"),
    ({"name": "bad", "config": {"connector.class": "FileSink", "file": "/tmp/x"}}, "topics"),
    ({"name": "bad", "config": {"connector.class": "FileSource", "file": "/tmp/x", "topic": "t", "format": "xml"}},
     "format"),
    ({"name": "bad", "config": {"connector.class": "FileSource", "file": "/tmp/x", "topic": "t", "transforms": "a",
                                "transforms.a.type": "Filter", "transforms.a.field": "x", "transforms.a.op": "~~"}},
     "transforms.a.op"),
    ({"name": "bad", "config": {"connector.class": "FileSource", "file": "/tmp/x", "topic": "t",
                                "errors.tolerance": "maybe"}}, "errors.tolerance"),
    ({"name": "bad/name", "config": {"connector.class": "FileSource"}}, "name"),
    ({"config": {"connector.class": "FileSource"}}, "name"),
    ({"name": "bad"}, "config"),
])
def test_bad_create_is_answered_400_naming_the_field(base, body, field):
    status, error = call(base, "POST", "/connectors", body)
    assert status == 400, error
    assert error["error_code"] == 400
    if field is not None:
        assert field in error["message"]
    assert "bad" not in call(base, "GET", "/connectors")[1]


def test_malformed_requests_are_answered_with_json_errors(base, topic, tmp_path):
    assert call(base, "POST", "/connectors", raw=b"{not json")[0] == 400
    status, error = call(base, "GET", "/no-such-path")
    assert status == 404 and error["error_code"] == 404
    status, error = call(base, "DELETE", "/connectors")
    assert status == 405 and "DELETE" in error["message"]
    assert call(base, "GET", "/connectors/x/tasks/abc/status")[0] == 400
    assert call(base, "PUT", "/connectors/no-such-connector/pause")[0] == 404
    assert call(base, "GET", "/connectors?expand=everything")[0] == 400
    name = f"twice-{topic}"
    config = {"connector.class": "FileSource", "file": str(tmp_path / "in.txt"), "topic": topic}
    assert call(base, "POST", "/connectors", {"name": name, "config": config})[0] == 201
    status, error = call(base, "POST", "/connectors", {"name": name, "config": config})
    assert status == 409 and name in error["message"]
    assert call(base, "DELETE", f"/connectors/{name}")[0] == 204


def test_plugins_and_validate(base, tmp_path):
    plugins = {plugin["class"]: plugin for plugin in call(base, "GET", "/connector-plugins")[1]}
    assert {"FileSource", "FileSink", "ParquetSink", "PostgresSource", "PostgresSink"} <= set(plugins)
    assert plugins["ParquetSink"]["type"] == "sink" and plugins["PostgresSource"]["type"] == "source"
    status, answer = call(base, "PUT", "/connector-plugins/FileSource/config/validate", {"file": str(tmp_path / "x")})
    assert status == 200 and answer["error_count"] == 1 and answer["configs"][0]["value"]["name"] == "topic"
    answer = call(base, "PUT", "/connector-plugins/FileSource/config/validate", {"file": str(tmp_path / "x"), "topic": "t"})[1]
    assert answer["error_count"] == 0
