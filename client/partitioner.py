"""Kafka's default partitioner, reproduced exactly.

What is reproduced (Java client, ``DefaultPartitioner`` / ``BuiltInPartitioner``):

* A record with a key goes to ``toPositive(murmur2(key)) % partitions``, with murmur2 as in
  Kafka's ``Utils.murmur2`` (seed 0x9747b28c, m 0x5bd1e995, r 24, little-endian 4-byte
  words, 32-bit Java ``int`` arithmetic) and ``toPositive`` clearing the sign bit (not
  ``abs``). So a key lands in the partition a Java, kafka-python or librdkafka
  ``murmur2_random`` client chooses for the same partition count.
* A record without a key goes to the topic's current *sticky* partition (KIP-480, the
  ``StickyPartitionCache`` of Kafka 2.4-3.2): one partition per topic, chosen at random,
  kept until the producer reports (``on_new_batch``) that a batch for it was closed; then
  another partition, different from it when the topic has more than one, is chosen.

Not promised: the same *random* choices as a Java client (the sticky partition is random in
Kafka too); Kafka 3.3+'s load-aware choice for null keys (KIP-794) or skipping partitions
without a leader (``availablePartitionsForTopic``); thread safety (the producer calls
``partition`` and ``on_new_batch`` under its lock).

The positive hash of a key is cached (bounded) because producers send the same keys over and
over and the pure-Python hash costs about a microsecond; the cache holds hashes, not
partitions, so a topic may grow without invalidating it.
"""

from __future__ import annotations

import random
import struct

SEED = 0x9747B28C
M = 0x5BD1E995
MASK_32 = 0xFFFFFFFF
HASH_CACHE_ENTRIES_MAX = 100_000

_unpack_from = struct.unpack_from


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` of ``data`` as a signed 32-bit int (what Java returns).

    Python ints do not wrap, so every product is masked to 32 bits; Java's ``>>>`` is a plain
    ``>>`` on the unsigned value. ``k *= m`` twice and ``h = h * m ^ k`` are folded into one
    line per word; the result is the same.
    """
    length = len(data)
    h = SEED ^ length
    words = length >> 2
    if words:
        for k in _unpack_from("<%dI" % words, data):  # all whole little-endian words at once
            k = (k * M) & MASK_32
            k ^= k >> 24
            h = ((h * M) & MASK_32) ^ ((k * M) & MASK_32)
    tail = length & 3
    if tail:  # Java's fall-through switch on length % 4
        end = length - tail
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * M) & MASK_32
    h ^= h >> 13
    h = (h * M) & MASK_32
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def to_positive(number: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``)."""
    return number & 0x7FFFFFFF


def partition_for_key(key: bytes, partition_count: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partition_count``."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


class Partitioner:
    """Kafka's default partitioning for one producer: keys by murmur2, null keys sticky."""

    def __init__(self, seed: int | None = None) -> None:
        # key -> positive murmur2 hash. The producer binds this dict once and reads it
        # directly on its per-record path, so it is only ever cleared in place, never replaced.
        self.key_hashes: dict[bytes, int] = {}
        self._sticky: dict[str, int] = {}  # topic -> current sticky partition for null keys
        self._random = random.Random(seed)

    def partition(self, topic: str, key: bytes | None, partition_count: int) -> int:
        if key is not None:
            key_hashes = self.key_hashes
            positive_hash = key_hashes.get(key)
            if positive_hash is None:
                if len(key_hashes) >= HASH_CACHE_ENTRIES_MAX:
                    # Bounded so a stream of distinct keys (ids, timestamps) cannot grow the
                    # producer's memory without limit; each entry also pins its key. Clearing
                    # all costs one O(n) pass per 100,000 misses, i.e. O(1) per miss, and keeps
                    # hits free, whereas an LRU would add bookkeeping to every hit; a working
                    # set bigger than the cache would miss under an LRU anyway.
                    key_hashes.clear()
                positive_hash = key_hashes[key] = murmur2(key) & 0x7FFFFFFF
            return positive_hash % partition_count
        sticky = self._sticky.get(topic)
        if sticky is None or sticky >= partition_count:
            sticky = self._sticky[topic] = self._random.randrange(partition_count)
        return sticky

    def on_new_batch(self, topic: str, partition_count: int, previous_partition: int) -> None:
        """A batch for ``previous_partition`` was closed: null keys move to another partition.

        As Kafka's ``StickyPartitionCache.nextPartition``, this only acts when
        ``previous_partition`` is still the topic's sticky partition (a late report about an
        older partition changes nothing), and picks uniformly among the *other* partitions.
        """
        if self._sticky.get(topic) != previous_partition:
            return
        if partition_count <= 1:
            self._sticky[topic] = 0
            return
        choice = self._random.randrange(partition_count - 1)
        self._sticky[topic] = choice if choice < previous_partition else choice + 1
