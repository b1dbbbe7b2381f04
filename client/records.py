"""The values clients hand to users: TopicPartition, Record, RecordMetadata."""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    """One consumed record. ``headers`` is a list of (str, bytes) or None."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list | None = None


class RecordMetadata(NamedTuple):
    """Where a produced record landed. ``offset`` is -1 with acks=0 (nobody waited)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
