"""rafka's metrics reach Ray's Prometheus export: produce, consume and commit on the
shared cluster, then scrape every node's metrics agent until the numbers show up.

Ray's exporter prefixes every application metric with ``ray_``. Workers report every
five seconds in this test session (see conftest.py); each check polls up to
``EXPORT_TIMEOUT_S`` because reports, the replica's metric flush (1 s) and the
coordinator's lag round (5 s) are all periodic."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest
import ray

import rafka
from rafka.actors import names

EXPORT_TIMEOUT_S = 60.0
RECORDS = 500
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape() -> str:
    """The Prometheus text of every live node's metrics agent, concatenated."""
    texts = []
    for node in ray.nodes():
        if node["Alive"]:
            url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                texts.append(response.read().decode())
    return "\n".join(texts)


def samples(text: str, name: str, **labels: str) -> list[float]:
    """Values of the series of ``name`` whose labels include ``labels``."""
    values = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"] == name:
            found = dict(LABEL.findall(match["labels"]))
            if all(found.get(key) == value for key, value in labels.items()):
                values.append(float(match["value"]))
    return values


def total(text: str, name: str, **labels: str) -> float:
    return sum(samples(text, name, **labels))


def scrape_until(condition) -> str:
    """Scrape until ``condition(text)`` holds; fail with rafka's lines if it never does."""
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while True:
        text = scrape()
        if condition(text):
            return text
        if time.monotonic() > deadline:
            rafka_lines = "\n".join(line for line in text.splitlines() if line.startswith("ray_rafka_"))
            raise AssertionError(f"metrics not exported within {EXPORT_TIMEOUT_S} s; rafka series:\n{rafka_lines}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def fast_isr(ray_instance, tmp_path_factory):
    """A cluster of its own whose followers leave the ISR after 2 s of lag (30 s by
    default), so that ISR changes happen within a test."""
    cluster = rafka.Cluster.start(data_dir=str(tmp_path_factory.mktemp("metrics")), brokers=2,
                                  namespace="rafka-test-metrics", replica_lag_time_max_ms=2000)
    yield cluster
    cluster.shutdown()


def produce(cluster, topic: str, count: int, first: int = 0) -> None:
    with cluster.producer(acks="all") as producer:
        for index in range(first, first + count):
            producer.send(topic, b"value-%04d" % index, key=b"key-%d" % index)


def test_produce_and_fetch_counts_reach_the_prometheus_export(cluster, topic):
    cluster.admin().create_topic(topic, partitions=2, replication_factor=2)
    produce(cluster, topic, RECORDS)
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, p) for p in range(2)])
    received, deadline = 0, time.monotonic() + EXPORT_TIMEOUT_S
    while received < RECORDS and time.monotonic() < deadline:
        received += len(consumer.poll(timeout_s=0.5))
    consumer.close()
    assert received == RECORDS, f"read {received} of {RECORDS} records in {EXPORT_TIMEOUT_S} s"

    text = scrape_until(lambda text: total(text, "ray_rafka_records_in_total", topic=topic) >= RECORDS
                        and total(text, "ray_rafka_records_out_total", topic=topic) >= RECORDS)
    value_bytes = RECORDS * len(b"value-0000")
    assert total(text, "ray_rafka_bytes_in_total", topic=topic) >= value_bytes
    assert total(text, "ray_rafka_bytes_out_total", topic=topic) >= value_bytes
    assert total(text, "ray_rafka_produce_latency_seconds_count", topic=topic, acks="all") >= 1
    assert total(text, "ray_rafka_fetch_latency_seconds_count", topic=topic) >= 1
    assert total(text, "ray_rafka_broker_replicas") >= 4  # this topic alone has 2 x 2


def test_healthy_partitions_report_zero_under_replicated(cluster, topic):
    cluster.admin().create_topic(topic, partitions=2, replication_factor=2)
    # One series per replica (2 partitions x 2 brokers), each 0 while the ISR is full.
    text = scrape_until(lambda text: len(samples(text, "ray_rafka_under_replicated_partitions", topic=topic)) == 4)
    assert samples(text, "ray_rafka_under_replicated_partitions", topic=topic) == [0.0] * 4


def test_isr_shrink_and_expand_are_counted_and_flag_the_partition(fast_isr, topic):
    fast_isr.admin().create_topic(topic, partitions=1, replication_factor=2)
    state = fast_isr.admin().describe_topic(topic)["partitions"][0]
    follower = [b for b in state["replicas"] if b != state["leader"]][0]
    leader_tags = {"topic": topic, "broker": str(state["leader"])}
    ray.kill(ray.get_actor(names.replica(topic, 0, follower), namespace=fast_isr.namespace), no_restart=True)
    scrape_until(lambda text: samples(text, "ray_rafka_under_replicated_partitions", **leader_tags) == [1.0]
                 and total(text, "ray_rafka_isr_shrinks_total", **leader_tags) >= 1)
    # A restarted broker gets its replica back; it catches up and rejoins the ISR.
    ray.kill(ray.get_actor(names.broker(follower), namespace=fast_isr.namespace), no_restart=False)
    scrape_until(lambda text: samples(text, "ray_rafka_under_replicated_partitions", **leader_tags) == [0.0]
                 and total(text, "ray_rafka_isr_expands_total", **leader_tags) >= 1)


def test_group_lag_members_and_rebalances_reach_the_prometheus_export(cluster, topic):
    group = "metrics-" + topic
    cluster.admin().create_topic(topic, partitions=2)
    produce(cluster, topic, 100)
    consumer = cluster.consumer(group_id=group, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.subscribe([topic])
        received, deadline = 0, time.monotonic() + EXPORT_TIMEOUT_S
        while received < 100 and time.monotonic() < deadline:
            received += len(consumer.poll(timeout_s=0.5))
        assert received == 100, f"the group's consumer read {received} of 100 records in {EXPORT_TIMEOUT_S} s"
        consumer.commit()
        produce(cluster, topic, 30, first=100)  # committed 100 of 130: lag 30
        text = scrape_until(lambda text: samples(text, "ray_rafka_group_lag_records", group=group, topic=topic) == [30.0]
                            and samples(text, "ray_rafka_group_members", group=group) == [1.0])
        assert total(text, "ray_rafka_group_rebalances_total", group=group) >= 1
    finally:
        consumer.close()
