"""The `rafka` command driven as a user would: up, topics, produce, consume, users,
ACLs, down. The module's cluster has one Kafka listener, SASL_PLAINTEXT (so the
authorizer is on), which a real client (confluent-kafka) uses with the users and ACLs
the commands made."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading

import psutil
import pytest

RAFKA = os.path.join(os.path.dirname(sys.executable), "rafka")
NAMESPACE = "rafka-cli-test"  # not the default: plain commands must find it through `up`'s state


@pytest.fixture(scope="module")
def rafka_cli(tmp_path_factory):
    home = tmp_path_factory.mktemp("rafka-home")
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    environment["RAFKA_HOME"] = str(home)
    environment["COLUMNS"] = "200"  # rich tables: no wrapped headers when stdout is a pipe

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run([RAFKA, *args], input=stdin, capture_output=True, text=True, env=environment,
                                   timeout=180)
        if check and completed.returncode != 0:
            raise AssertionError(f"rafka {' '.join(args)} failed: {completed.stderr}")
        return completed

    run.state_path = home / "cli.json"
    up = run("up", "--brokers", "2", "--data-dir", str(home / "data"), "--namespace", NAMESPACE,
             "--listener", "SASL_PLAINTEXT://127.0.0.1:0", "--super-user", "User:admin")
    assert "rafka is up: 2 broker(s)" in up.stdout
    run.up_stdout = up.stdout
    state = json.loads(run.state_path.read_text())
    yield run
    # `down` is checked here, once, so no test has to run last.
    down = run("down", check=False)
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"rafka is down (2 broker(s) stopped); stopped the Ray head at {state['address']}"
    assert not run.state_path.exists()
    assert not _processes_with(state["ray_temp_dir"])


def _processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.fixture(scope="module")
def existing_topic(rafka_cli) -> str:
    """A topic for error cases that need one to exist (made here, not by another test)."""
    created = rafka_cli("topics", "create", "errors-target", check=False)
    assert created.returncode == 0 or "already exists" in created.stderr, created.stderr
    return "errors-target"


def _brokers_section(status: str) -> str:
    return status.split("partitions")[0]


def test_second_up_changes_nothing(rafka_cli):
    state_before = rafka_cli.state_path.read_text()
    brokers_before = _brokers_section(rafka_cli("status").stdout)
    again = rafka_cli("up")
    assert "already running" in again.stdout and f"(namespace {NAMESPACE})" in again.stdout
    assert rafka_cli.state_path.read_text() == state_before
    assert _brokers_section(rafka_cli("status").stdout) == brokers_before


def test_status_shows_the_controller_quorum_with_leader_epoch_and_lag(rafka_cli):
    status = rafka_cli("status").stdout
    # One Ray node: one voter, "0", which leads its quorum of one (docs/controller-quorum.md).
    assert re.search(r"controller quorum \(leader: voter 0, epoch \d+\)", status), status
    # rich draws the header row with "┃" and the body rows with "│".
    rows = [[cell.strip() for cell in re.split("[│┃]", line.strip())[1:-1]] for line in status.splitlines()
            if len(re.findall("[│┃]", line)) >= 7]
    start = next(index for index, row in enumerate(rows) if row[0] == "voter")
    assert rows[start] == ["voter", "role", "term", "commit index", "lag", "reachable"], rows[start]
    voter = rows[start + 1]
    assert voter[0] == "0", voter
    assert voter[1] == "leader" and voter[4] == "0" and voter[5] == "yes", voter


def test_up_and_status_print_the_kafka_bootstrap_servers(rafka_cli):
    printed = [line for line in rafka_cli.up_stdout.splitlines() if line.startswith("Kafka bootstrap servers: ")]
    assert len(printed) == 1
    servers = printed[0].split(": ", 1)[1].split(",")
    assert len(servers) == 2 and all(server.startswith("127.0.0.1:") for server in servers)
    assert printed[0] in rafka_cli("status").stdout


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
    header = next(line for line in status.splitlines() if "partition" in line and "leader" in line)
    assert ["topic", "partition", "leader", "epoch", "replicas", "isr", "under-replicated"] == \
        [cell.strip() for cell in header.strip("┃ ").split("┃")]
    rows = [line for line in status.splitlines() if line.lstrip("│ ").startswith("lines ")]
    assert len(rows) == 2 and not any("YES" in row for row in rows)  # both replicas in sync


def test_alter_shows_in_describe_and_delete_removes_the_topic(rafka_cli):
    rafka_cli("topics", "create", "altered", "--config", "retention.ms=600000")
    altered = rafka_cli("topics", "alter", "altered", "--config", "retention.ms=1000", "--config",
                        "segment.bytes=1048576", "--partitions", "3")
    assert altered.stdout.strip() == ("altered topic altered: retention.ms=1000, segment.bytes=1048576, "
                                      "partitions 1 -> 3")
    described = rafka_cli("topics", "describe", "altered").stdout
    assert "partitions 3" in described and "retention.ms=1000" in described and "segment.bytes=1048576" in described
    assert "partition 2" in described
    rafka_cli("topics", "alter", "altered", "--config", "retention.ms=")  # KEY= resets to the default
    assert "retention.ms" not in rafka_cli("topics", "describe", "altered").stdout
    assert rafka_cli("topics", "delete", "altered").stdout.strip() == "deleted topic altered"
    assert "altered" not in rafka_cli("topics", "list").stdout.split()


def test_produce_a_file_and_consume_a_partition_from_an_offset(rafka_cli, tmp_path):
    rafka_cli("topics", "create", "from-file", "--partitions", "2")
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line-{i}\n" for i in range(5)))
    produced = rafka_cli("produce", "from-file", "--file", str(lines), "--partition", "1")
    assert "produced 5 record(s) to from-file" in produced.stderr
    consumed = rafka_cli("consume", "from-file", "--partition", "1", "--offset", "3", "--max-messages", "2",
                         "--format", "json")
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [(r["partition"], r["offset"], r["value"]) for r in records] == [(1, 3, "line-3"), (1, 4, "line-4")]


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
    assert {"group_id": "billing", "state": "Empty", "members": 0, "assignor": None, "protocol": "consumer"} in listed
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
        (("consume", "missing", "--partition", "0", "--max-messages", "1"), None, "unknown topic 'missing'"),
        (("produce", "{topic}", "--json"), "not json\n", "line 1 is not JSON"),
        (("groups", "describe", "nobody"), None, "unknown consumer group 'nobody'"),
        (("groups", "delete", "nobody"), None, "unknown consumer group 'nobody'"),
        (("groups", "reset-offsets", "g", "--topic", "{topic}"), None, "give exactly one of --to-earliest"),
        (("groups", "reset-offsets", "g", "--topic", "missing", "--to-earliest"), None, "unknown topic 'missing'"),
        (("consume", "{topic}", "--group", "g", "--offset", "3"), None, "--offset needs exactly one --partition"),
        (("topics", "alter", "missing", "--config", "retention.ms=1"), None, "unknown topic 'missing'"),
        (("topics", "alter", "missing"), None, "unknown topic 'missing'"),
        (("topics", "alter", "{topic}"), None, "nothing to alter on topic errors-target"),
        (("topics", "alter", "{topic}", "--config", "retention.ms=soon"), None,
         "'retention.ms' must be an integer, got 'soon'"),
        (("topics", "alter", "{topic}", "--partitions", "1"), None, "a new count must be more, got 1"),
        (("topics", "delete", "missing"), None, "unknown topic 'missing'"),
    ],
)
def test_errors_are_one_line_and_exit_nonzero(rafka_cli, existing_topic, args, stdin, message):
    completed = rafka_cli(*(arg.format(topic=existing_topic) for arg in args), stdin=stdin, check=False)
    assert completed.returncode == 1
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr and len(completed.stderr.strip().splitlines()) == 1


def test_existing_topic_is_reported(rafka_cli):
    rafka_cli("topics", "create", "twice")
    completed = rafka_cli("topics", "create", "twice", check=False)
    assert completed.returncode == 1 and "topic 'twice' already exists" in completed.stderr


def test_a_bad_address_fails_at_once(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment["RAFKA_HOME"] = str(tmp_path)
    address = f"127.0.0.1:{_closed_port()}"
    completed = subprocess.run([RAFKA, "topics", "list", "--address", address], capture_output=True, text=True,
                               env=environment, timeout=60)
    assert completed.returncode == 1
    assert completed.stderr.startswith(f"rafka: error: cannot reach Ray at {address}")
    assert len(completed.stderr.strip().splitlines()) == 1


@pytest.fixture
def standin_head(tmp_path):
    """A state file naming a Ray head `up` started, at an address nobody listens on, and a
    process standing in for that head (found, like a real one, by its temp dir)."""
    marker = str(tmp_path / "rafka-ray-standin")
    head = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker])
    # Reap it as soon as it dies: `down` waits for a zombie as for a live process.
    reaper = threading.Thread(target=head.wait, daemon=True)
    reaper.start()
    address = f"127.0.0.1:{_closed_port()}"
    (tmp_path / "cli.json").write_text(json.dumps({"address": address, "started_ray": True, "ray_temp_dir": marker,
                                                   "namespace": "rafka"}))
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment["RAFKA_HOME"] = str(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([RAFKA, *args], capture_output=True, text=True, env=environment, timeout=60)

    run.address, run.head, run.reaper, run.state_path = address, head, reaper, tmp_path / "cli.json"
    yield run
    head.kill()


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listened on, then released
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_down_stops_the_head_up_started_when_the_rafka_actors_are_gone(standin_head):
    # `down` finds no cluster at the recorded address, and must still stop the head's
    # processes and forget the state.
    completed = standin_head("down")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("rafka was already gone: cannot reach Ray at")
    assert completed.stdout.strip().endswith(f"; stopped the Ray head at {standin_head.address}")
    standin_head.reaper.join(timeout=30)
    assert standin_head.head.returncode is not None
    assert not standin_head.state_path.exists()


def test_up_elsewhere_keeps_the_record_of_a_running_head_it_started(standin_head):
    state = standin_head.state_path.read_text()
    completed = standin_head("up", "--address", f"127.0.0.1:{_closed_port()}")
    assert completed.returncode == 1
    assert f"`rafka up` started a Ray head at {standin_head.address} that still runs" in completed.stderr
    assert standin_head.state_path.read_text() == state and psutil.pid_exists(standin_head.head.pid)


def test_commands_without_a_cluster_say_so(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    environment["RAFKA_HOME"] = str(tmp_path)
    completed = subprocess.run([RAFKA, "topics", "list"], capture_output=True, text=True, env=environment, timeout=60)
    assert completed.returncode == 1
    assert "no rafka cluster is running (start one with `rafka up`)" in completed.stderr


def test_acls_add_list_and_remove(rafka_cli):
    added = rafka_cli("acls", "add", "--principal", "User:alice", "--topic", "acl-orders", "--operation", "read",
                      "--operation", "write")
    assert added.stdout.count("added allow User:alice") == 2
    listed = json.loads(rafka_cli("acls", "list", "--principal", "User:alice", "-o", "json").stdout)
    assert sorted(b["operation"] for b in listed) == ["read", "write"]
    removed = rafka_cli("acls", "remove", "--principal", "User:alice", "--topic", "acl-orders", "--operation", "write")
    assert "removed allow User:alice write on topic 'acl-orders'" in removed.stdout
    assert [b["operation"] for b in json.loads(rafka_cli("acls", "list", "-o", "json").stdout)] == ["read"]
    refused = rafka_cli("acls", "remove", check=False)
    assert refused.returncode == 2 and "would remove every ACL" in refused.stderr
    bad = rafka_cli("acls", "add", "--principal", "alice", "--topic", "t", "--operation", "read", check=False)
    assert bad.returncode == 1 and "'alice'" in bad.stderr


def test_users_set_list_and_delete(rafka_cli, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")
    rafka_cli("users", "set", "bob", "--password-file", str(password_file), "--mechanism", "SCRAM-SHA-512")
    assert "SCRAM-SHA-512" in rafka_cli("users", "list").stdout
    deleted = rafka_cli("users", "delete", "bob")
    assert deleted.stdout.strip() == "deleted SCRAM-SHA-512 credential of bob"
    assert "bob" not in rafka_cli("users", "list").stdout


def test_a_kafka_client_gets_what_the_users_and_acls_commands_allow(rafka_cli, tmp_path):
    from confluent_kafka import KafkaError, Producer

    bootstrap = [line for line in rafka_cli.up_stdout.splitlines()
                 if line.startswith("Kafka bootstrap servers: ")][0].split(": ", 1)[1]
    password_file = tmp_path / "carol-password"
    password_file.write_text("carol-secret\n")
    rafka_cli("users", "set", "carol", "--password-file", str(password_file), "--mechanism", "SCRAM-SHA-256")
    rafka_cli("topics", "create", "acl-allowed")
    rafka_cli("topics", "create", "acl-refused")
    rafka_cli("acls", "add", "--principal", "User:carol", "--topic", "acl-allowed", "--operation", "write")

    def produce_as(password: str, topic: str):
        reports: list = []
        producer = Producer({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "carol", "sasl.password": password,
                             "message.timeout.ms": 20000, "retries": 0})
        producer.produce(topic, value=b"from carol", partition=0, on_delivery=lambda error, _m: reports.append(error))
        producer.flush(60)
        return reports

    assert produce_as("carol-secret", "acl-allowed") == [None]
    [refused] = produce_as("carol-secret", "acl-refused")
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, refused
    [wrong] = produce_as("not-her-password", "acl-allowed")
    assert wrong.code() in (KafkaError._AUTHENTICATION, KafkaError._MSG_TIMED_OUT), wrong
    consumed = rafka_cli("consume", "acl-allowed", "--from-beginning", "--max-messages", "1")
    assert consumed.stdout.strip() == "from carol"
