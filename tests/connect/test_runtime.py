"""The Connect runtime on the shared cluster: task actors, offsets, supervision, the DLQ,
pause/resume and restarts of the herder. Connectors come from connect_plugins.py."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import connect_plugins
import pytest
import ray

from rafka import TopicPartition
from rafka.connect import ConnectorConfigError, ConnectorExistsError, ConnectorNotFoundError
from rafka.connect.herder import HERDER_NAME
from rafka.connect.worker import task_actor_name


@pytest.fixture(scope="module")
def connect(connect_runtime):
    for plugin in (connect_plugins.CountingSource, connect_plugins.AppendingSink):
        connect_runtime.register_plugin(plugin)
    return connect_runtime


def read_values(cluster, topic: str, expected: int, timeout_s: float = 60.0) -> list:
    """Every value of ``topic`` (JSON-decoded), once ``expected`` distinct values arrived
    (at-least-once delivery may repeat some)."""
    consumer = cluster.consumer(auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        values: list = []
        distinct: set = set()
        deadline = time.monotonic() + timeout_s
        while len(distinct) < expected and time.monotonic() < deadline:
            for record in consumer.poll(timeout_s=0.5):
                values.append(json.loads(record.value))
                distinct.add(record.value)
        return values
    finally:
        consumer.close()


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def lines_of(path) -> list[int]:
    return [int(line) for line in open(path).read().split()] if os.path.exists(path) else []


def test_source_task_killed_mid_stream_loses_no_record(cluster, connect, topic):
    cluster.admin().create_topic(topic, partitions=3)
    name = f"count-{topic}"
    connect.create(name, {"connector.class": "CountingSource", "topic": topic, "count": 30000, "per_poll": 500,
                          "poll_sleep_ms": 20, "offset.flush.interval.ms": 200})
    connect.wait_for_state(name)
    wait_for(lambda: connect.status(name)["tasks"][0]["records"] > 5000, what="records flowing")
    ray.kill(ray.get_actor(task_actor_name(name, 0), namespace=cluster.namespace), no_restart=True)
    values = read_values(cluster, topic, 30000, timeout_s=120)
    assert {v["n"] for v in values} == set(range(30000))
    status = connect.status(name)
    assert status["tasks"][0]["restarts"] >= 1
    assert "died" in status["tasks"][0]["last_failure"]
    offsets = connect.offsets(name)["offsets"]
    assert offsets == [{"partition": {"counter": "n"}, "offset": {"next": 30000}}] or \
        wait_for(lambda: connect.offsets(name)["offsets"][0]["offset"] == {"next": 30000}, what="final offset")
    connect.delete(name)


def test_sink_task_killed_mid_stream_loses_no_record(cluster, connect, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=3)
    producer = cluster.producer()
    for n in range(20000):
        producer.send(topic, value=json.dumps({"n": n}).encode(), key=str(n).encode())
    producer.flush()
    out = tmp_path / "sink.txt"
    name = f"sink-{topic}"
    connect.create(name, {"connector.class": "AppendingSink", "topics": topic, "out": str(out), "tasks.max": 2,
                          "offset.flush.interval.ms": 200, "consumer.override.max_poll_records": 500})
    connect.wait_for_state(name)
    wait_for(lambda: len(lines_of(out)) > 2000, what="records written")
    ray.kill(ray.get_actor(task_actor_name(name, 1), namespace=cluster.namespace), no_restart=True)
    wait_for(lambda: set(lines_of(out)) == set(range(20000)), timeout_s=120, what="every record in the sink")
    connect.delete(name)


def test_failed_task_restarts_with_backoff_and_shows_its_error(cluster, connect, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=1)
    name = f"failing-{topic}"
    connect.create(name, {"connector.class": "CountingSource", "topic": topic, "count": 100,
                          "fail_once_file": str(tmp_path / "failed-once")})
    failed = wait_for(lambda: (s := connect.status(name)["tasks"][0])["state"] == "FAILED" and s, what="FAILED")
    assert "counting source failed on purpose" in failed["trace"]
    running = connect.wait_for_state(name, timeout_s=30)
    assert running["tasks"][0]["restarts"] == 1
    assert "counting source failed on purpose" in running["tasks"][0]["last_failure"]
    assert sorted(v["n"] for v in read_values(cluster, topic, 100)) == list(range(100))
    connect.delete(name)


def test_sink_record_that_fails_goes_to_the_dead_letter_queue_with_error_headers(cluster, connect, topic, tmp_path):
    cluster.admin().create_topic(topic, partitions=2)
    producer = cluster.producer()
    for n in range(1000):
        producer.send(topic, value=json.dumps({"n": n}).encode())
    producer.send(topic, value=b"not json")
    producer.flush()
    out, dlq = tmp_path / "sink.txt", f"{topic}-dlq"
    name = f"dlq-{topic}"
    connect.create(name, {"connector.class": "AppendingSink", "topics": topic, "out": str(out), "poison": "7,500",
                          "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq})
    wait_for(lambda: len(lines_of(out)) >= 998, what="good records written")
    assert sorted(lines_of(out)) == [n for n in range(1000) if n not in (7, 500)]
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([TopicPartition(dlq, 0)])
    dead = []
    deadline = time.monotonic() + 30
    while len(dead) < 3 and time.monotonic() < deadline:
        dead += consumer.poll(timeout_s=0.5)
    consumer.close()
    assert sorted(record.value for record in dead) == [b"not json", b'{"n": 500}', b'{"n": 7}']
    headers = {record.value: dict(record.headers) for record in dead}
    assert headers[b'{"n": 7}'][b"__connect.errors.stage".decode()] == b"TASK_PUT"
    assert b"poison record" in headers[b'{"n": 7}']["__connect.errors.exception.message"]
    assert headers[b'{"n": 7}']["__connect.errors.topic"] == topic.encode()
    assert headers[b"not json"]["__connect.errors.stage"] == b"VALUE_CONVERTER"
    # Status is the herder's view, refreshed by its supervision pass (every second, or
    # later while the task is too busy to answer): it catches up with the records.
    wait_for(lambda: connect.status(name)["tasks"][0].get("dead_lettered") == 3, timeout_s=30,
             what="the task's status to count the 3 dead-lettered records")
    connect.delete(name)


def test_pause_stops_delivery_and_resume_continues(cluster, connect, topic):
    cluster.admin().create_topic(topic, partitions=1)
    name = f"paused-{topic}"
    connect.create(name, {"connector.class": "CountingSource", "topic": topic, "count": 100000, "per_poll": 50,
                          "poll_sleep_ms": 50})
    connect.wait_for_state(name)
    connect.pause(name)
    connect.wait_for_state(name, "PAUSED")
    end = cluster.consumer().end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    time.sleep(1.0)
    assert cluster.consumer().end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)] == end
    connect.resume(name)
    connect.wait_for_state(name)
    wait_for(lambda: cluster.consumer().end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)] > end + 100,
             what="records after resume")
    connect.delete(name)


def test_bad_configs_are_refused_naming_the_key(connect):
    cases = [
        ({}, "connector.class"),
        ({"connector.class": "NoSuchConnector"}, "connector.class"),
        ({"connector.class": "CountingSource", "topic": "t", "tasks.max": "many"}, "tasks.max"),
        ({"connector.class": "CountingSource", "topic": "t", "count": -1}, "count"),
        ({"connector.class": "CountingSource"}, "topic"),
        ({"connector.class": "AppendingSink", "out": "/tmp/x"}, "topics"),
        ({"connector.class": "CountingSource", "topic": "t", "errors.tolerance": "some"}, "errors.tolerance"),
        ({"connector.class": "CountingSource", "topic": "t", "value.converter": "avro"}, "value.converter"),
        ({"connector.class": "CountingSource", "topic": "t", "transforms": "x"}, "transforms.x.type"),
    ]
    for config, field in cases:
        with pytest.raises(ConnectorConfigError) as caught:
            connect.create("bad", config)
        assert caught.value.field == field, (config, caught.value)
        assert field in str(caught.value) or field == "connector.class"
    assert "bad" not in connect.list()


def test_herder_restart_keeps_configs_and_adopts_running_tasks(cluster, connect, topic, connect_token):
    cluster.admin().create_topic(topic, partitions=1)
    name = f"kept-{topic}"
    connect.create(name, {"connector.class": "CountingSource", "topic": topic, "count": 10**9, "per_poll": 10,
                          "poll_sleep_ms": 100})
    before = connect.wait_for_state(name)["tasks"][0]["worker_id"]
    with pytest.raises(ConnectorExistsError):
        connect.create(name, {"connector.class": "CountingSource", "topic": topic})
    killed_pid = _herder_pid(cluster)
    ray.kill(ray.get_actor(HERDER_NAME, namespace=cluster.namespace), no_restart=False)
    # ray.kill returns before the actor dies: until it does, the old herder still answers
    # (and a call it takes then fails with "the actor was restarted").
    wait_for(lambda: _herder_pid(cluster) not in (None, killed_pid), what="a new herder process")
    again = wait_for(lambda: _attach(cluster), what="herder back")
    assert name in again.list()
    assert again.wait_for_state(name)["tasks"][0]["worker_id"] == before
    # Started on any free port, the herder is back on the same one: old URLs still work.
    assert again.rest_url == connect.rest_url
    request = urllib.request.Request(connect.rest_url + "/connectors", headers={"Authorization": f"Bearer {connect_token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert name in json.loads(response.read())
    again.delete(name)
    with pytest.raises(ConnectorNotFoundError):
        again.status(name)


def _herder_pid(cluster):
    try:
        herder = ray.get_actor(HERDER_NAME, namespace=cluster.namespace)
        return ray.get(herder.__ray_call__.remote(lambda self: os.getpid()), timeout=10)
    except Exception:  # noqa: BLE001 - dead or restarting
        return None


def _attach(cluster):
    from rafka.connect import Connect

    try:
        return Connect.attach(cluster)
    except Exception:  # noqa: BLE001 - still restarting
        return None


def test_sink_paused_and_resumed_mid_stream_delivers_every_record(cluster, connect, topic, tmp_path):
    # Records trickle in, so the sink task spends its time waiting inside a poll: a pause
    # that lands there used to make the loop drop what that poll returned (the consumer
    # had moved past them, so a later commit skipped them for good).
    import threading

    cluster.admin().create_topic(topic, partitions=2)
    total = 3000
    producing_done = threading.Event()

    def produce() -> None:
        producer = cluster.producer(linger_ms=0)
        try:
            for start in range(0, total, 20):
                for n in range(start, min(total, start + 20)):
                    producer.send(topic, value=json.dumps({"n": n}).encode(), key=str(n).encode())
                producer.flush()
                time.sleep(0.03)
        finally:
            producer.close()
            producing_done.set()

    out = tmp_path / "sink.txt"
    name = f"pause-sink-{topic}"
    connect.create(name, {"connector.class": "AppendingSink", "topics": topic, "out": str(out),
                          "offset.flush.interval.ms": 200})
    connect.wait_for_state(name)
    producer_thread = threading.Thread(target=produce, daemon=True)
    producer_thread.start()
    pauses = 0
    while not producing_done.is_set() and pauses < 8:
        wait_for(lambda: len(lines_of(out)) > 0, what="records written before the pause")
        connect.pause(name)
        connect.wait_for_state(name, "PAUSED")
        time.sleep(0.3)
        connect.resume(name)
        connect.wait_for_state(name)
        pauses += 1
        time.sleep(0.3)
    producer_thread.join(timeout=120)
    assert producing_done.is_set()
    assert pauses >= 2
    wait_for(lambda: set(lines_of(out)) == set(range(total)), timeout_s=120,
             what=f"every record in the sink (missing {sorted(set(range(total)) - set(lines_of(out)))[:20]})")
    connect.delete(name)


def test_sink_commits_no_offset_past_a_record_the_dead_letter_queue_refused(cluster, connect, topic, tmp_path):
    # The DLQ topic takes no batch over 1 KiB and a dead-lettered record carries its
    # stack trace in headers, so every DLQ write fails on the broker.
    cluster.admin().create_topic(topic, partitions=1)
    dlq = f"{topic}-dlq"
    cluster.admin().create_topic(dlq, partitions=1, config={"max.message.bytes": "1024"})
    producer = cluster.producer()
    for n in range(100):
        producer.send(topic, value=json.dumps({"n": n}).encode())
    producer.flush()
    out = tmp_path / "sink.txt"
    name = f"dlq-refused-{topic}"
    connect.create(name, {"connector.class": "AppendingSink", "topics": topic, "out": str(out), "poison": "50",
                          "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
                          "offset.flush.interval.ms": 200})
    failure = wait_for(lambda: (t := connect.status(name)["tasks"][0]).get("trace") or t.get("last_failure"),
                       what="the task failing on the DLQ write")
    assert "dead-letter queue" in failure
    assert "RecordTooLargeError" in failure
    group = cluster.consumer(group_id=f"connect-{name}")
    try:
        committed = group.committed([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
    finally:
        group.close()
    assert committed is None or committed <= 50, committed
    connect.delete(name)
