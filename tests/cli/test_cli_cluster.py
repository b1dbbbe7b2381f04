"""The `rafka` command driven as a user would: up, topics, produce, consume, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

RAFKA = os.path.join(os.path.dirname(sys.executable), "rafka")


@pytest.fixture(scope="module")
def rafka_cli(tmp_path_factory):
    home = tmp_path_factory.mktemp("rafka-home")
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    environment["RAFKA_HOME"] = str(home)

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run([RAFKA, *args], input=stdin, capture_output=True, text=True, env=environment,
                                   timeout=180)
        if check and completed.returncode != 0:
            raise AssertionError(f"rafka {' '.join(args)} failed: {completed.stderr}")
        return completed

    up = run("up", "--brokers", "2", "--data-dir", str(home / "data"))
    assert "rafka is up: 2 broker(s)" in up.stdout
    yield run
    run("down", check=False)


def test_second_up_changes_nothing(rafka_cli):
    again = rafka_cli("up")
    assert "already running" in again.stdout


def test_create_produce_consume_describe(rafka_cli):
    assert "created topic lines" in rafka_cli("topics", "create", "lines", "--partitions", "2",
                                               "--replication-factor", "2", "--config", "retention.ms=600000").stdout
    produced = rafka_cli("produce", "lines", "--partition", "1", stdin="alpha\nbeta\ngamma\n")
    assert "produced 3 record(s)" in produced.stderr
    consumed = rafka_cli("consume", "lines", "--from-beginning", "--max-messages", "3")
    assert consumed.stdout.splitlines() == ["alpha", "beta", "gamma"]
    described = rafka_cli("topics", "describe", "lines").stdout
    assert "retention.ms=600000" in described and "partition 1" in described and "offsets 0..3" in described
    assert "lines" in rafka_cli("topics", "list").stdout.split()
    status = rafka_cli("status").stdout
    assert "lines" in status and "brokers" in status


def test_keys_and_json_output(rafka_cli):
    rafka_cli("topics", "create", "keyed")
    rafka_cli("produce", "keyed", "--key-separator", ":", stdin="user-1:clicked\nuser-2:scrolled\n")
    lines = rafka_cli("consume", "keyed", "--from-beginning", "--max-messages", "2", "--format", "json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["key"], r["value"], r["offset"]) for r in records] == [("user-1", "clicked", 0), ("user-2", "scrolled", 1)]


def test_json_lines_input(rafka_cli):
    rafka_cli("topics", "create", "events")
    rafka_cli("produce", "events", "--json", stdin='{"key": "k", "value": {"n": 1}, "headers": {"h": "x"}}\n')
    record = json.loads(rafka_cli("consume", "events", "--from-beginning", "--max-messages", "1", "--format", "json").stdout)
    assert record["value"] == '{"n": 1}' and record["headers"] == {"h": "x"}


def test_groups_consume_describe_reset_delete(rafka_cli):
    rafka_cli("topics", "create", "orders", "--partitions", "2")
    rafka_cli("produce", "orders", "--partition", "0", stdin="".join(f"o{i}\n" for i in range(5)))
    rafka_cli("produce", "orders", "--partition", "1", stdin="".join(f"p{i}\n" for i in range(3)))
    first = rafka_cli("consume", "orders", "--group", "billing", "--from-beginning", "--max-messages", "6")
    assert len(first.stdout.splitlines()) == 6
    # The group committed the 6 it printed; the next member reads only the other 2.
    second = rafka_cli("consume", "orders", "--group", "billing", "--from-beginning", "--max-messages", "2")
    assert len(second.stdout.splitlines()) == 2
    assert sorted(first.stdout.splitlines() + second.stdout.splitlines()) == sorted(
        [f"o{i}" for i in range(5)] + [f"p{i}" for i in range(3)])

    listed = json.loads(rafka_cli("groups", "list", "--format", "json").stdout)
    assert {"group_id": "billing", "state": "Empty", "members": 0, "assignor": None} in listed
    assert "billing" in rafka_cli("groups", "list").stdout
    described = json.loads(rafka_cli("groups", "describe", "billing", "--format", "json").stdout)
    assert [(p["partition"], p["committed_offset"], p["log_end_offset"], p["lag"]) for p in described["partitions"]] \
        == [(0, 5, 5, 0), (1, 3, 3, 0)]
    table = rafka_cli("groups", "describe", "billing").stdout
    assert "total lag 0" in table and "orders" in table

    reset = rafka_cli("groups", "reset-offsets", "billing", "--topic", "orders", "--shift-by", "-2")
    assert reset.stdout.splitlines() == ["orders 0 3", "orders 1 1"]
    described = json.loads(rafka_cli("groups", "describe", "billing", "--format", "json").stdout)
    assert described["total_lag"] == 4
    assert "deleted group billing" in rafka_cli("groups", "delete", "billing").stdout
    missing = rafka_cli("groups", "describe", "billing", check=False)
    assert missing.returncode == 1 and "unknown consumer group 'billing'" in missing.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("topics", "create", "bad name"), None, "invalid topic name 'bad name'"),
        (("topics", "create", "t", "--config", "retention.ms=soon"), None, "'retention.ms' must be an integer, got 'soon'"),
        (("topics", "create", "t", "--config", "nonsense"), None, "--config takes key=value, got 'nonsense'"),
        (("topics", "describe", "missing"), None, "unknown topic 'missing'"),
        (("produce", "missing"), "x\n", "unknown topic 'missing'"),
        (("consume", "missing", "--max-messages", "1"), None, "unknown topic 'missing'"),
        (("produce", "lines", "--json"), "not json\n", "line 1 is not JSON"),
        (("groups", "describe", "nobody"), None, "unknown consumer group 'nobody'"),
        (("groups", "delete", "nobody"), None, "unknown consumer group 'nobody'"),
        (("groups", "reset-offsets", "g", "--topic", "lines"), None, "give exactly one of --to-earliest"),
        (("groups", "reset-offsets", "g", "--topic", "missing", "--to-earliest"), None, "unknown topic 'missing'"),
        (("consume", "lines", "--group", "g", "--offset", "3"), None, "--offset needs exactly one --partition"),
    ],
)
def test_errors_are_one_line_and_exit_nonzero(rafka_cli, args, stdin, message):
    completed = rafka_cli(*args, stdin=stdin, check=False)
    assert completed.returncode == 1
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr and len(completed.stderr.strip().splitlines()) == 1


def test_existing_topic_is_reported(rafka_cli):
    rafka_cli("topics", "create", "twice")
    completed = rafka_cli("topics", "create", "twice", check=False)
    assert completed.returncode == 1 and "topic 'twice' already exists" in completed.stderr


def test_commands_without_a_cluster_say_so(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment["RAFKA_HOME"] = str(tmp_path)
    completed = subprocess.run([RAFKA, "topics", "list"], capture_output=True, text=True, env=environment, timeout=60)
    assert completed.returncode == 1
    assert "no rafka cluster is running (start one with `rafka up`)" in completed.stderr
