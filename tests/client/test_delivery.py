"""CheckedProducer: a send that failed for good fails the next flush (or send), so a
pipeline that commits after flushing never commits past a lost output."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

import rafka
from rafka.client.delivery import CheckedProducer


def test_flush_raises_when_a_batch_was_refused_and_passes_after(cluster, topic):
    # The broker refuses any batch over 1 KiB for this topic: a real, permanent failure.
    cluster.admin().create_topic(topic, partitions=1, config={"max.message.bytes": "1024"})
    producer = CheckedProducer(cluster.producer(acks="all", linger_ms=0, delivery_timeout_ms=5000))
    try:
        producer.send_batch(topic, pa.table({"value": pa.array([b"x" * 4096], pa.binary())}))
        with pytest.raises(rafka.RecordTooLargeError):
            producer.flush()
        # The failure is reported once; what is sent after it is checked afresh.
        producer.send(topic, b"small")
        producer.flush()
    finally:
        producer.close()


def test_a_failure_already_known_is_raised_at_the_next_send(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1, config={"max.message.bytes": "1024"})
    producer = CheckedProducer(cluster.producer(acks="all", linger_ms=0, delivery_timeout_ms=5000))
    try:
        refused = producer.send(topic, b"x" * 4096)
        with pytest.raises(rafka.RecordTooLargeError):
            refused.result(timeout=30)
        with pytest.raises(rafka.RecordTooLargeError):
            producer.send(topic, b"small")
        producer.flush()
    finally:
        producer.close()
    # Nothing was sent after the failure was known.
    assert cluster.consumer().end_offsets([rafka.TopicPartition(topic, 0)]) == {rafka.TopicPartition(topic, 0): 0}


def test_a_checkpoint_settles_once_its_sends_are_acknowledged_and_raises_their_failure(cluster, topic):
    cluster.admin().create_topic(topic, partitions=1, config={"max.message.bytes": "1024"})
    producer = CheckedProducer(cluster.producer(acks="all", linger_ms=0, delivery_timeout_ms=5000))
    try:
        sent = [producer.send(topic, b"small-%d" % index) for index in range(3)]
        checkpoint = producer.checkpoint()
        later = producer.send(topic, b"after the checkpoint")
        while not producer.settled(checkpoint):
            time.sleep(0.01)
        assert all(future.done() and future.exception(0) is None for future in sent)
        later.result(timeout=30)
        # A refused send fails the checkpoint holding it: when it settles, or at once
        # if the refusal is already known when the checkpoint is taken.
        producer.send(topic, b"x" * 4096)
        with pytest.raises(rafka.RecordTooLargeError):
            refused = producer.checkpoint()
            while not producer.settled(refused):
                time.sleep(0.01)
    finally:
        producer.close()
