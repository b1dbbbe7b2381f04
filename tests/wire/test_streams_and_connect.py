"""Both worlds agree (issue 20 item 4) beyond the plain consumer: records a Kafka client
wrote through the listener feed a stream job and a Connect sink unchanged, and what a
stream job or a Connect source wrote is read by a Kafka client unchanged."""

from __future__ import annotations

import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from ray import cloudpickle

from rafka.streams import StreamsApp

cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEADLINE_S = 120.0
JOB = {"actor_options": {"num_cpus": 0}, "session_timeout_ms": 4000, "heartbeat_interval_ms": 500}


def upper_values(table: pa.Table) -> pa.Table:
    return table.set_column(table.schema.get_field_index("value"), "value", pc.utf8_upper(table.column("value")))


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int]], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    failed: list = []
    for index, (key, value, timestamp_ms) in enumerate(records):
        producer.produce(topic, key=key, value=value, timestamp=timestamp_ms, partition=index % partitions,
                         on_delivery=lambda error, message: error and failed.append(error))
    assert producer.flush(DEADLINE_S) == 0 and not failed, failed[:3]


def consume_all(bootstrap: str, topic: str, partitions: list[int], count: int) -> list:
    """Read ``count`` records (a stream job or a connector may take a while under load:
    ``DEADLINE_S``, longer than test_confluent_kafka's ``consume`` waits)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {len(messages)} of {count} records of {topic}")
            for message in consumer.consume(count - len(messages), timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                messages.append(message)
    finally:
        consumer.close()
    return messages


def test_stream_job_reads_wire_records_and_a_kafka_client_reads_its_output(cluster, bootstrap, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=2)
    admin.create_topic(topic + "-upper", partitions=2)
    start_ms = int(time.time() * 1000) - 10_000
    records = [(b"k%04d" % i, b"value %04d" % i, start_ms + i) for i in range(600)]
    produce(bootstrap, topic, records, partitions=2)
    app = StreamsApp("wire-upper-" + topic, commit_interval_ms=100)
    app.source(topic, value_format="utf8").map_batches(upper_values, name="upper").to(topic + "-upper")
    job = app.start(cluster, workers=1, **JOB)
    try:
        job.wait_caught_up(timeout_s=DEADLINE_S)
    finally:
        job.stop()
    out = consume_all(bootstrap, topic + "-upper", [0, 1], len(records))
    got = {message.key(): (message.value(), message.timestamp()[1]) for message in out}
    assert len(out) == len(records) == len(got)
    assert got == {key: (value.upper(), timestamp_ms) for key, value, timestamp_ms in records}


def test_connect_sink_reads_wire_records_and_a_kafka_client_reads_a_connect_source(cluster, bootstrap, topic,
                                                                                    connect_runtime, tmp_path):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1)
    lines = [f"line {i} é" for i in range(300)]
    produce(bootstrap, topic, [(None, line.encode(), int(time.time() * 1000)) for line in lines], partitions=1)
    sink_file = tmp_path / "sink.txt"
    connect_runtime.create(f"wire-sink-{topic}", {"connector.class": "FileSink", "topics": topic,
                                                  "file": str(sink_file)})
    deadline = time.monotonic() + DEADLINE_S
    while not sink_file.exists() or sink_file.read_text(encoding="utf-8").splitlines() != lines:
        if time.monotonic() > deadline:
            raise TimeoutError(sink_file.read_text(encoding="utf-8")[-500:] if sink_file.exists() else "no sink file")
        time.sleep(0.2)
    connect_runtime.delete(f"wire-sink-{topic}")

    # The reverse: a Connect source writes a file's lines, a Kafka client reads them.
    admin.create_topic(topic + "-from-file", partitions=1)
    source_file = tmp_path / "source.txt"
    source_file.write_text("".join(f"source {i}\n" for i in range(200)), encoding="utf-8")
    connect_runtime.create(f"wire-source-{topic}", {"connector.class": "FileSource", "file": str(source_file),
                                                    "topic": topic + "-from-file"})
    try:
        out = consume_all(bootstrap, topic + "-from-file", [0], 200)
    finally:
        connect_runtime.delete(f"wire-source-{topic}")
    assert [message.value() for message in out] == [b"source %d" % i for i in range(200)]
    assert [message.offset() for message in out] == list(range(200))
