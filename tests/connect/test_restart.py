"""Connect across a whole cluster restart on the same data directory: the connector's
config comes back from __connect_configs, and the file source resumes at the byte
position it committed in __connect_offsets (nothing read twice, nothing skipped)."""

from __future__ import annotations

import time

import rafka
from rafka.connect import Connect

NAMESPACE = "rafka-test-connect-restart"


def read_all(cluster, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < expected and time.monotonic() < deadline:
        values += [record.value for record in consumer.poll(timeout_s=0.5)]
    time.sleep(1.0)  # anything read twice would arrive behind the expected records
    values += [record.value for record in consumer.poll(timeout_s=0.5)]
    consumer.close()
    return values


def wait_for_position(connect: Connect, name: str, position: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    offsets: list = []
    while time.monotonic() < deadline:
        offsets = connect.offsets(name)["offsets"]
        if offsets and offsets[0]["offset"] == {"position": position}:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never committed position {position}: {offsets}")


def test_file_source_resumes_after_the_cluster_restarts(ray_instance, tmp_path):
    data_dir, source = str(tmp_path / "data"), tmp_path / "in.txt"
    source.write_text("".join(f"line-{i}\n" for i in range(100)))
    config = {"connector.class": "FileSource", "file": str(source), "topic": "lines", "offset.flush.interval.ms": "200"}
    cluster = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace=NAMESPACE)
    try:
        cluster.admin().create_topic("lines", partitions=1)
        connect = Connect.start(cluster, rest_port=0, file_roots=[str(tmp_path)])
        connect.create("tail", config)
        wait_for_position(connect, "tail", source.stat().st_size)
        connect.shutdown()
    finally:
        cluster.shutdown()

    with source.open("a") as handle:  # written while nothing runs
        handle.write("".join(f"line-{i}\n" for i in range(100, 150)))
    again = rafka.Cluster.start(data_dir=data_dir, brokers=1, namespace=NAMESPACE)
    try:
        connect = Connect.start(again, rest_port=0, file_roots=[str(tmp_path)])
        assert connect.list() == ["tail"] and connect.config("tail")["file"] == str(source)
        wait_for_position(connect, "tail", source.stat().st_size)
        assert read_all(again, "lines", 150) == [b"line-%d" % i for i in range(150)]
        connect.shutdown()
    finally:
        again.shutdown()
