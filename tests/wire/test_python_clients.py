"""kafka-python and aiokafka (pure-Python Kafka clients with their own protocol code)
produce and consume by assignment through the listener, and commit offsets."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition as KafkaTopicPartition

TIMEOUT_S = 60


def test_kafka_python_produces_and_consumes_by_assignment(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=5)
    futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2,
                             headers=[("n", f"{i}".encode())]) for i in range(40)]
    producer.flush(TIMEOUT_S)
    offsets = [future.get(timeout=TIMEOUT_S).offset for future in futures]
    producer.close()
    assert offsets == [i // 2 for i in range(40)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    consumer.assign([KafkaTopicPartition(topic, 0), KafkaTopicPartition(topic, 1)])
    received, deadline = [], time.monotonic() + TIMEOUT_S
    try:
        while len(received) < 40:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kafka-python read {len(received)} of 40 records")
            for records in consumer.poll(timeout_ms=1000).values():
                received.extend(records)
    finally:
        consumer.close()
    assert sorted((r.key, r.value, list(r.headers)) for r in received) == sorted(
        (f"k{i}".encode(), f"v{i}".encode(), [("n", f"{i}".encode())]) for i in range(40))


def test_kafka_python_commits_and_reads_committed_offsets(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)
    group = f"kafka-python-{topic}"[:100]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=group, enable_auto_commit=False)
    partition = KafkaTopicPartition(topic, 0)
    consumer.assign([partition])
    try:
        consumer.commit({partition: OffsetAndMetadata(7, "", -1)})
        assert consumer.committed(partition) == 7
    finally:
        consumer.close()
    assert [p["committed_offset"] for p in cluster.admin().describe_group(group)["partitions"]] == [7]


def test_aiokafka_produces_and_consumes_by_assignment(cluster, bootstrap, topic):
    cluster.admin().create_topic(topic, partitions=1)

    async def run() -> list:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
        await producer.start()
        try:
            batch = [await producer.send(topic, value=f"a{i}".encode(), key=b"k", partition=0) for i in range(30)]
            sent = [await future for future in batch]
        finally:
            await producer.stop()
        assert [meta.offset for meta in sent] == list(range(30))
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([AioTopicPartition(topic, 0)])
            received = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(received) < 30:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"aiokafka read {len(received)} of 30 records")
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    received.extend(records)
            return received
        finally:
            await consumer.stop()

    received = asyncio.run(run())
    assert [(r.offset, r.value) for r in received] == [(i, f"a{i}".encode()) for i in range(30)]
