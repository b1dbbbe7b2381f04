"""``rafka connect ...`` as a user runs it: the real command in a subprocess, talking to
the session's Connect REST API. (``start``/``stop`` go through Ray, not REST, and are
not covered here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

RAFKA = os.path.join(os.path.dirname(sys.executable), "rafka")


TOKEN: list[str] = []  # the session's Connect token (set by the autouse fixture below)


@pytest.fixture(autouse=True)
def _token(connect_token):
    TOKEN[:] = [connect_token]


def rafka(*args: str, url: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command, with the token in RAFKA_CONNECT_TOKEN as a user would set it."""
    command = [RAFKA, "connect", *args] + (["--url", url] if url else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "RAFKA_CONNECT_TOKEN": TOKEN[0], **(env or {})})


def rest_url(cluster) -> str:
    """The URL the running herder answers on."""
    from rafka.connect import Connect

    return Connect.attach(cluster).rest_url


def test_cli_creates_inspects_pauses_restarts_and_deletes_a_connector(cluster, connect_runtime, topic, tmp_path):
    url = rest_url(cluster)
    cluster.admin().create_topic(topic)
    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    name = f"cli-{topic}"
    created = rafka("create", name, "-c", "connector.class=FileSource", "-c", f"file={source}", "-c", f"topic={topic}",
                    url=url)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == name
    listed = rafka("list", env={"RAFKA_CONNECT_URL": url})
    assert listed.returncode == 0 and name in listed.stdout.split()

    def state() -> str:
        status = rafka("status", name, url=url)
        assert status.returncode == 0, status.stderr
        return json.loads(status.stdout)["tasks"][0]["state"] if json.loads(status.stdout)["tasks"] else ""

    def wait_task(expected: str) -> None:
        deadline = time.monotonic() + 60
        while state() != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"task of {name} never {expected}")
            time.sleep(0.5)

    wait_task("RUNNING")
    paused = rafka("pause", name, url=url)
    assert paused.returncode == 0 and f"connector {name} paused" in paused.stdout
    wait_task("PAUSED")
    assert rafka("resume", name, url=url).returncode == 0
    wait_task("RUNNING")
    restarted = rafka("restart", name, url=url)
    assert restarted.returncode == 0 and f"connector {name} restarted" in restarted.stdout, restarted.stderr
    with_tasks = rafka("restart", name, "--include-tasks", url=url)
    assert with_tasks.returncode == 0 and json.loads(with_tasks.stdout)["name"] == name
    wait_task("RUNNING")
    deleted = rafka("delete", name, url=url)
    assert deleted.returncode == 0 and f"connector {name} deleted" in deleted.stdout


def test_cli_errors_exit_1_with_the_servers_message(cluster, connect_runtime):
    url = rest_url(cluster)
    missing = rafka("status", "no-such-connector", url=url)
    assert missing.returncode == 1
    assert "no-such-connector" in missing.stderr and "HTTP 404" in missing.stderr
    bad = rafka("create", "cli-bad", "-c", "connector.class=FileSource", "-c", "topic=t", "-c", "tasks.max=many", url=url)
    assert bad.returncode == 1 and "tasks.max" in bad.stderr and "HTTP 400" in bad.stderr
    unreachable = rafka("list", url="http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "not reachable" in unreachable.stderr


def test_cli_without_the_token_is_refused_with_a_hint(cluster, connect_runtime):
    url = rest_url(cluster)
    refused = rafka("list", url=url, env={"RAFKA_CONNECT_TOKEN": ""})
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr and "RAFKA_CONNECT_TOKEN" in refused.stderr


def test_cli_reads_the_token_from_the_file_named_in_the_environment(cluster, connect_runtime, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN[0] + "\n")
    listed = rafka("list", url=rest_url(cluster), env={"RAFKA_CONNECT_TOKEN": "", "RAFKA_CONNECT_TOKEN_FILE": str(token_file)})
    assert listed.returncode == 0, listed.stderr
