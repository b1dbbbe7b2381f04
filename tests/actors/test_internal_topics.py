"""Internal topics are written only by rafka's own actors (issue 21): a client's produce
to ``__consumer_offsets``, ``__connect_*`` or a stream job's changelog and repartition
topics is refused with ``TopicAuthorizationError`` and leaves the log as it was."""

from __future__ import annotations

import pytest

import rafka
from rafka.client.records import TopicPartition


def _end_offset(cluster, topic: str, partition: int = 0) -> int:
    consumer = cluster.consumer(enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, partition)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


def _produce(cluster, topic: str, **producer_options):
    producer = cluster.producer(acks="all", linger_ms=0, **producer_options)
    try:
        return producer.send(topic, key=b"k", value=b"not what the owner wrote", partition=0).result(60)
    finally:
        producer.close()


def test_client_produce_to_consumer_offsets_is_refused(cluster):
    from rafka.actors.coordinator import offsets_topic_partitions

    offsets_topic_partitions(cluster.controller)  # created on the first group use
    before = _end_offset(cluster, "__consumer_offsets")
    with pytest.raises(rafka.TopicAuthorizationError) as caught:
        _produce(cluster, "__consumer_offsets")
    assert "__consumer_offsets" in str(caught.value)
    assert _end_offset(cluster, "__consumer_offsets") == before


def test_client_produce_to_a_connect_topic_is_refused(cluster, topic):
    internal = f"__connect_{topic}"
    cluster.admin().create_topic(internal)
    try:
        with pytest.raises(rafka.TopicAuthorizationError):
            _produce(cluster, internal)
        assert _end_offset(cluster, internal) == 0
    finally:
        cluster.admin().delete_topic(internal)


def test_client_produce_to_a_stream_changelog_is_refused(cluster, topic):
    from rafka.streams.runtime import INTERNAL_TOPIC_CONFIG

    changelog = f"{topic}-counts-changelog"
    cluster.admin().create_topic(changelog, config={"cleanup.policy": "compact", **INTERNAL_TOPIC_CONFIG})
    with pytest.raises(rafka.TopicAuthorizationError):
        _produce(cluster, changelog)
    assert _end_offset(cluster, changelog) == 0


def test_a_user_topic_named_like_a_changelog_stays_writable(cluster, topic):
    name = f"{topic}-orders-changelog"
    cluster.admin().create_topic(name)
    assert _produce(cluster, name).offset == 0
