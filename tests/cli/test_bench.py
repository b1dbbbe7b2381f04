"""`rafka bench` driven as a user would: small runs, the JSON and PNG they write, and
bad input. One test runs on a throwaway embedded cluster (``--embedded``); the others
share one ``rafka up`` cluster for the module, since every cluster start costs a Ray
start (tens of seconds on a loaded 2-core machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RAFKA = os.path.join(os.path.dirname(sys.executable), "rafka")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Small runs: the tests check behaviour and consistent figures, which hold for any count;
# the batch test needs a multiple of 2,000 rows (one latency sample per table).
RECORDS = 6_000


def runner(home: Path, cwd: Path):
    """``rafka ARGS`` in a subprocess with its own RAFKA_HOME (its own ``rafka up`` state)."""
    # No RAY_ADDRESS: without --embedded or a `rafka up` in this home there is no cluster.
    environment = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    environment["RAFKA_HOME"] = str(home)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run([RAFKA, *args], capture_output=True, text=True, env=environment, timeout=300,
                                   cwd=cwd)
        if check and completed.returncode != 0:
            raise AssertionError(f"rafka {' '.join(args)} failed: {completed.stderr}")
        return completed

    return run


@pytest.fixture
def bench(tmp_path):
    """`rafka` with an empty RAFKA_HOME: no cluster unless the command embeds one."""
    return runner(tmp_path / "rafka-home", tmp_path)


@pytest.fixture(scope="module")
def running_home(tmp_path_factory):
    """A RAFKA_HOME whose `rafka up` cluster the module's tests share."""
    home = tmp_path_factory.mktemp("bench-running")
    up = runner(home / "rafka-home", home)
    up("up", "--data-dir", str(home / "data"))
    yield home / "rafka-home"
    up("down", check=False)


@pytest.fixture
def on_cluster(running_home, tmp_path):
    """`rafka` talking to the module's running cluster, writing files under tmp_path."""
    return runner(running_home, tmp_path)


def assert_sensible(result: dict, command: str, records: int) -> None:
    assert result["command"] == command
    assert result["records"] == result["records_requested"] == records
    assert result["records_per_s"] > 0 and result["mb_per_s"] > 0 and result["duration_s"] > 0
    assert result["value_bytes"] == records * result["config"]["record_size_bytes"]
    latency = result["latency_ms"]
    assert latency["samples"] > 0 and latency["measures"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert result["throughput_timeline"]["records_per_s"] and result["throughput_timeline"]["interval_s"] == 0.5
    assert {"cpus", "python", "ray", "pyarrow", "rafka"} <= set(result["machine"])


def test_timeline_counts_per_interval_and_folds_a_sliver_at_the_end_into_the_one_before():
    from rafka.cli.bench_runs import Measurement

    measurement = Measurement("test")
    measurement.started_s, measurement.finished_s = 0.0, 2.05
    for at_s in (0.1, 0.6, 1.1, 1.55, 1.6, 2.02):
        measurement.add_completions(at_s, 100)
    measurement.latencies_ms.extend([1.0, 2.0, 3.0])
    summary = measurement.summary(record_size_bytes=10)
    # [0, 0.5), [0.5, 1), [1, 1.5), then [1.5, 2.05]: 300 records in 0.55 s, not a spike.
    assert summary["throughput_timeline"]["records_per_s"] == pytest.approx([200, 200, 200, 300 / 0.55])
    assert summary["records"] == 600 and summary["value_bytes"] == 6000
    assert summary["latency_ms"]["p50"] == 2.0 and summary["latency_ms"]["max"] == 3.0


def test_produce_send_writes_json_and_png(bench, tmp_path):
    bench("bench", "produce", "--embedded", "--records", str(RECORDS), "--keys", "100",
          "--json", "produce.json", "--plot", "produce.png")
    result = json.loads((tmp_path / "produce.json").read_text())
    assert_sensible(result, "produce", RECORDS)
    assert result["cluster"]["embedded"] is True
    assert result["config"]["mode"] == "send" and result["config"]["keys"] == 100
    assert result["config"]["partitions"] == 3 and result["config"]["temporary_topic"] is True
    assert (tmp_path / "produce.png").read_bytes()[:8] == PNG_SIGNATURE


def test_produce_batch_prints_json_on_stdout_and_the_table_on_stderr(on_cluster):
    completed = on_cluster("bench", "produce", "--records", str(RECORDS), "--mode", "batch",
                      "--batch-size", "200000", "--partitions", "2", "--json", "-", "--quiet")
    result = json.loads(completed.stdout)
    assert_sensible(result, "produce", RECORDS)
    assert result["config"]["mode"] == "batch" and result["config"]["partitions"] == 2
    # 200,000-byte tables of 100-byte values: one latency sample per table of 2,000 rows.
    assert result["latency_ms"]["samples"] == RECORDS // 2000
    assert "records/s" in completed.stderr and "latency p99" in completed.stderr


def test_consume_reads_back_a_filled_topic(on_cluster, tmp_path):
    completed = on_cluster("bench", "consume", "--records", str(RECORDS), "--mode", "batch",
                      "--json", "consume.json")
    assert_sensible(json.loads((tmp_path / "consume.json").read_text()), "consume", RECORDS)
    assert "records/s" in completed.stdout


def test_e2e_times_every_record_and_reports_consistent_figures(on_cluster, tmp_path):
    # Behaviour only: how fast a loaded machine holds the rate is for `rafka bench` to
    # measure, not for a test to assert.
    on_cluster("bench", "e2e", "--records", "3000", "--rate", "4000", "--json", "e2e.json",
          "--plot", "e2e.png")
    result = json.loads((tmp_path / "e2e.json").read_text())
    assert_sensible(result, "e2e", 3000)
    assert result["config"]["rate_per_s"] == 4000
    latency = result["latency_ms"]
    assert latency["samples"] == 3000
    assert 0 <= latency["mean"] <= latency["max"]
    assert result["records_per_s"] == pytest.approx(result["records"] / result["duration_s"])
    assert result["mb_per_s"] == pytest.approx(result["value_bytes"] / result["duration_s"] / 1e6)
    timeline = result["throughput_timeline"]["records_per_s"]
    assert all(rate >= 0 for rate in timeline) and sum(timeline) > 0
    assert (tmp_path / "e2e.png").read_bytes()[:8] == PNG_SIGNATURE


def test_e2e_with_the_producer_in_a_process_of_its_own_times_every_record(on_cluster, tmp_path):
    on_cluster("bench", "e2e", "--records", "2000", "--rate", "4000", "--producer-process", "--json", "e2e.json")
    result = json.loads((tmp_path / "e2e.json").read_text())
    assert_sensible(result, "e2e", 2000)
    assert result["config"]["producer_process"] is True
    latency = result["latency_ms"]
    # Send times come from the producer's process: the shared monotonic clock makes
    # every latency a positive, finite span.
    assert latency["samples"] == 2000 and 0 < latency["p50"] <= latency["max"] < 60_000


def test_on_a_running_cluster_a_temporary_topic_goes_and_a_named_one_stays(on_cluster):
    result = json.loads(on_cluster("bench", "produce", "--records", "5000", "--json", "-", "-q").stdout)
    assert_sensible(result, "produce", 5000)
    assert result["cluster"]["embedded"] is False and result["config"]["temporary_topic"] is True
    on_cluster("topics", "create", "bench-target", "--partitions", "2")
    try:
        named = json.loads(on_cluster("bench", "produce", "--topic", "bench-target", "--records", "3000",
                                      "--json", "-").stdout)
        assert named["config"]["topic"] == "bench-target" and named["config"]["temporary_topic"] is False
        # Every bench run of the module (this one's and the others') removed its temporary topic.
        assert on_cluster("topics", "list").stdout.split() == ["bench-target"]
        # Asked for more than the topic holds, consume reads what there is.
        consumed = json.loads(on_cluster("bench", "consume", "--topic", "bench-target", "--json", "-").stdout)
        assert consumed["records"] == 3000 and consumed["records_requested"] == 1_000_000
    finally:
        on_cluster("topics", "delete", "bench-target", check=False)


def test_consume_of_an_unknown_topic_fails_in_one_line(on_cluster):
    completed = on_cluster("bench", "consume", "--topic", "missing", check=False)
    assert completed.returncode == 1
    assert completed.stderr.strip().splitlines()[-1] == "rafka: error: unknown topic 'missing' (TopicNotFoundError)"
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("produce", "--record-size", "0"), "--record-size must be at least 1, got 0"),
        (("e2e", "--record-size", "4"), "--record-size must be at least 8 for e2e"),
        (("e2e", "--rate", "0"), "--rate must be a positive number of records/s, got 0"),
        (("produce", "--plot", "chart.jpg"), "--plot writes a PNG"),
        (("produce", "--brokers", "2"), "--brokers goes with --embedded"),
        (("produce", "--topic", "t", "--partitions", "2"), "they cannot go with --topic"),
        (("produce", "--embedded", "--replication-factor", "3", "--brokers", "2"), "needs at least as many --brokers"),
        (("produce",), "no rafka cluster is running"),
    ],
)
def test_bad_input_fails_in_one_line_before_any_work(bench, args, message):
    completed = bench("bench", *args, check=False)
    assert completed.returncode == 1
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rafka: error: ") and message in lines[0], completed.stderr
