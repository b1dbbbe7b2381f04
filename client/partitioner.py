"""Kafka's default partitioner, reproduced exactly.

* A record with a key goes to ``toPositive(murmur2(key)) % partitions``, with murmur2 as in
  Kafka's ``Utils.murmur2`` (seed 0x9747b28c, 32-bit Java int arithmetic), so a key lands
  in the partition a Java, librdkafka (``murmur2_random``) or kafka-python client would
  choose for the same partition count.
* A record without a key goes to the topic's current *sticky* partition (KIP-480), which
  changes to another random partition when the producer closes a batch for it. Kafka 3.3+
  also weighs partitions by broker load (KIP-794); rafka does not.

The hash of a key is cached (bounded) because producers send the same keys over and over
and the pure-Python hash costs microseconds; the cache holds hashes, not partitions, so a
topic may grow without invalidating it. Not thread-safe: the producer calls it under its
lock.
"""

from __future__ import annotations

import random

SEED = 0x9747B28C
M = 0x5BD1E995
MASK_32 = 0xFFFFFFFF
HASH_CACHE_ENTRIES_MAX = 100_000


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` as a signed 32-bit int (what Java returns)."""
    length = len(data)
    h = (SEED ^ length) & MASK_32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * M) & MASK_32
        k ^= k >> 24
        k = (k * M) & MASK_32
        h = ((h * M) & MASK_32) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * M) & MASK_32
    h ^= h >> 13
    h = (h * M) & MASK_32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``)."""
    return number & 0x7FFFFFFF


def partition_for_key(key: bytes, partition_count: int) -> int:
    return to_positive(murmur2(key)) % partition_count


class Partitioner:
    def __init__(self, seed: int | None = None) -> None:
        # key -> positive murmur2 hash; the producer reads it directly on its hot path.
        self.key_hashes: dict[bytes, int] = {}
        self._sticky: dict[str, int] = {}
        self._random = random.Random(seed)

    def partition(self, topic: str, key: bytes | None, partition_count: int) -> int:
        if key is None:
            sticky = self._sticky.get(topic)
            if sticky is None or sticky >= partition_count:
                sticky = self._sticky[topic] = self._random.randrange(partition_count)
            return sticky
        positive_hash = self.key_hashes.get(key)
        if positive_hash is None:
            if len(self.key_hashes) >= HASH_CACHE_ENTRIES_MAX:
                self.key_hashes.clear()  # cheap, and a working set that large misses anyway
            positive_hash = self.key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return positive_hash % partition_count

    def on_new_batch(self, topic: str, partition_count: int, previous_partition: int) -> None:
        """The sticky partition's batch was closed: pick a different one for null keys."""
        if self._sticky.get(topic) != previous_partition:
            return
        if partition_count <= 1:
            self._sticky[topic] = 0
            return
        choice = self._random.randrange(partition_count - 1)
        self._sticky[topic] = choice if choice < previous_partition else choice + 1
