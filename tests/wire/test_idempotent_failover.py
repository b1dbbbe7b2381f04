"""An idempotent confluent-kafka producer across a leader failover (issue 20 item 5).

librdkafka's idempotent producer (``enable.idempotence=true``: acks=all, up to five
requests in flight per partition, retries) keeps sending while the partition's leader
replica is killed: the new leader carries the producer's sequence state (it is in the
replicated log), so retried batches that were already written are answered as
duplicates, not written twice, and no batch is written out of order. The partition is
read back whole and checked: every acknowledged record once, in the order sent."""

from __future__ import annotations

import threading
import time

import ray
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from rafka.actors import names

DEADLINE_S = 90.0
# Records handed to the client and not yet answered. Bounded: an unbounded loop fills
# librdkafka's local queue (100,000 records) faster than a loaded 2-core machine
# acknowledges them, and records that wait there past message.timeout.ms fail with
# _MSG_TIMED_OUT without the cluster doing anything wrong (a CI run did exactly that).
MAX_UNANSWERED = 500


def wait_until(predicate, timeout_s: float = DEADLINE_S, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


def test_idempotent_producer_keeps_order_without_duplicates_across_a_leader_failover(cluster, bootstrap, topic):
    admin = cluster.admin()
    admin.create_topic(topic, partitions=1, replication_factor=2)
    wait_until(lambda: len(admin.describe_topic(topic)["partitions"][0]["isr"]) == 2)
    first = admin.describe_topic(topic)["partitions"][0]

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2,
                         "batch.num.messages": 50, "message.timeout.ms": int(DEADLINE_S * 1000),
                         "retry.backoff.ms": 50, "topic.metadata.refresh.interval.ms": 1000})
    acknowledged, failures, stop = [], [], threading.Event()

    def report(error, message):
        if error is None:
            acknowledged.append(message.value())
        else:
            failures.append(error)

    def produce() -> None:
        index = 0
        while not stop.is_set():
            if index - len(acknowledged) - len(failures) < MAX_UNANSWERED:
                producer.produce(topic, value=b"seq-%07d" % index, partition=0, on_delivery=report)
                index += 1
            producer.poll(0.001 if index % 100 else 0.01)
        producer.flush(DEADLINE_S)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(acknowledged) > 2000 or failures)
        assert not failures, failures[:3]
        # Kill the leader replica mid-stream; Ray restarts it, it comes back from an
        # unclean shutdown, and the controller moves leadership to the other replica.
        leader = ray.get_actor(names.replica(topic, 0, first["leader"]), namespace=cluster.namespace)
        ray.kill(leader, no_restart=False)
        wait_until(lambda: admin.describe_topic(topic)["partitions"][0]["leader_epoch"] > first["leader_epoch"])
        acknowledged_at_failover = len(acknowledged)
        wait_until(lambda: len(acknowledged) > acknowledged_at_failover + 2000 or failures)
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_S + 30)
    assert not thread.is_alive(), "the producer did not finish flushing"
    assert not failures, failures[:3]

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while len(values) < len(acknowledged):
            if time.monotonic() > deadline:  # a bound on waiting, not a speed check
                raise TimeoutError(f"read {len(values)} of {len(acknowledged)} acknowledged records")
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error():
                    raise KafkaException(message.error())
                values.append(message.value())
        # Anything written past the acknowledged ones (a batch whose answer was lost)
        # must still be in order and not repeated: read to the end of the log.
        for message in consumer.consume(10_000, timeout=2.0):
            if message.error():
                raise KafkaException(message.error())
            values.append(message.value())
    finally:
        consumer.close()
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} records written twice"
    assert values == sorted(values), "records were written out of the order they were sent"
    assert set(acknowledged) <= set(values), "an acknowledged record is missing"
