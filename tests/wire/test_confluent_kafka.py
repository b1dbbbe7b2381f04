"""Real librdkafka (confluent-kafka) against rafka's Kafka listener: produce, consume by
assignment, acks, compression, offsets, and records crossing between the Kafka clients
and rafka's own Producer and Consumer unchanged."""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

import rafka

DEADLINE_S = 60.0


def produce(bootstrap: str, topic: str, records: list[dict], **config) -> list:
    """Send ``records`` (dicts of Producer.produce kwargs); return the delivered messages."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    delivered, failed = [], []

    def report(error, message):
        (failed if error else delivered).append(error or message)

    for record in records:
        producer.produce(topic, on_delivery=report, **record)
    remaining = producer.flush(DEADLINE_S)
    assert remaining == 0 and not failed, f"undelivered {remaining}, errors {failed}"
    return delivered


def consume(bootstrap: str, topic: str, partitions: list[int], count: int, **config) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                         "enable.auto.commit": False, **config})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while len(messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {len(messages)} of {count} records of {topic}")
            for message in consumer.consume(count - len(messages), timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                messages.append(message)
    finally:
        consumer.close()
    return messages


def native_records(cluster, topic: str, partitions: list[int], count: int) -> list:
    consumer = cluster.consumer(auto_offset_reset="earliest")
    consumer.assign([rafka.TopicPartition(topic, p) for p in partitions])
    records, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while len(records) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"native consumer read {len(records)} of {count} records of {topic}")
            records.extend(consumer.poll(timeout_s=1.0))
    finally:
        consumer.close()
    return records


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_then_consume_by_assignment_with_each_acks(cluster, bootstrap, topic, acks):
    cluster.admin().create_topic(topic, partitions=1, replication_factor=2)
    values = [f"value-{i}".encode() for i in range(50)]
    produce(bootstrap, topic, [{"value": v, "key": b"k", "partition": 0} for v in values], acks=acks)
    messages = consume(bootstrap, topic, [0], len(values))
    assert [m.value() for m in messages] == values
    assert [m.offset() for m in messages] == list(range(len(values)))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_produce_with_each_compression_codec(cluster, bootstrap, topic, codec):
    cluster.admin().create_topic(topic, partitions=1)
    values = [b"compressible " * 20 + str(i).encode() for i in range(200)]
    produce(bootstrap, topic, [{"value": v, "partition": 0} for v in values], **{"compression.type": codec})
    assert [m.value() for m in consume(bootstrap, topic, [0], len(values))] == values


def test_wire_records_read_by_native_consumer_unchanged(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=3)
    sent = [{"key": f"key-{i}".encode(), "value": None if i % 7 == 0 else f"v{i}".encode(),
             "headers": [("h", f"{i}".encode()), ("dup", b"a"), ("dup", b"b")], "timestamp": 1_700_000_000_000 + i}
            for i in range(60)]
    delivered = produce(bootstrap, topic, sent)
    where = {m.key(): (m.partition(), m.offset()) for m in delivered}
    records = native_records(cluster, topic, [0, 1, 2], len(sent))
    got = {r.key: r for r in records}
    for record in sent:
        native = got[record["key"]]
        assert (native.partition, native.offset) == where[record["key"]]
        assert native.value == record["value"]
        assert native.timestamp == record["timestamp"]
        assert [tuple(h) for h in native.headers] == record["headers"]


def test_native_records_read_by_wire_consumer_unchanged(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    producer = cluster.producer()
    futures = [producer.send(topic, key=f"key-{i}".encode(), value=f"v{i}".encode() if i % 5 else None,
                             headers=[("n", f"{i}".encode())] if i % 2 else None, timestamp_ms=1_600_000_000_000 + i)
               for i in range(40)]
    producer.flush()
    metadata = {f"key-{i}".encode(): future.result() for i, future in enumerate(futures)}
    producer.close()
    messages = consume(bootstrap, topic, [0, 1], len(futures))
    for message in messages:
        i = int(message.key()[4:])
        assert (message.partition(), message.offset()) == (metadata[message.key()].partition, metadata[message.key()].offset)
        assert message.value() == (f"v{i}".encode() if i % 5 else None)
        assert message.timestamp()[1] == 1_600_000_000_000 + i
        assert (message.headers() or []) == ([("n", f"{i}".encode())] if i % 2 else [])


def test_watermarks_and_offsets_for_times(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    produce(bootstrap, topic, [{"value": b"x", "partition": 0, "timestamp": 1_000 * (i + 1)} for i in range(10)])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-offsets"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=DEADLINE_S) == (0, 10)
        [found] = consumer.offsets_for_times([TopicPartition(topic, 0, 4_500)], timeout=DEADLINE_S)
        assert found.offset == 4
    finally:
        consumer.close()


def test_consumer_waits_in_a_long_poll_for_records_produced_later(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-long-poll",
                         "fetch.wait.max.ms": 5000})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        assert consumer.poll(1.0) is None
        produce(bootstrap, topic, [{"value": b"late", "partition": 0}])
        deadline = time.monotonic() + DEADLINE_S
        message = None
        while message is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the record produced after the poll started never arrived")
            message = consumer.poll(1.0)
        assert message.error() is None and message.value() == b"late"
    finally:
        consumer.close()


def test_produce_to_an_unknown_topic_fails_with_unknown_topic(bootstrap):
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 3000,
                         "allow.auto.create.topics": False})
    errors = []
    producer.produce("no-such-topic-wire", value=b"x", on_delivery=lambda error, _m: errors.append(error))
    producer.flush(DEADLINE_S)
    assert errors and errors[0] is not None


def test_produce_to_an_internal_topic_fails_with_topic_authorization_failed(cluster, bootstrap, topic):
    """Only rafka's own actors write to internal topics (a stream job's changelog here;
    docs/security.md): a wire client gets Kafka's TOPIC_AUTHORIZATION_FAILED, as a native
    client gets TopicAuthorizationError."""
    from confluent_kafka import KafkaError

    cluster.admin().create_topic(topic, partitions=1, config={"rafka.internal": "true"})
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 5000, "retries": 0})
    errors = []
    producer.produce(topic, value=b"forged", partition=0, on_delivery=lambda error, _m: errors.append(error))
    producer.flush(DEADLINE_S)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
