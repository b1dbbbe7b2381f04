"""Kafka's default partitioner: murmur2 against Kafka's own values, keyed and sticky partitions.

Every expected value below was produced by Kafka's Java ``Utils.murmur2`` (or a verbatim Java
copy of it) and is quoted from the repository and file named above it.
"""

import random

import pytest

from rafka.client import partitioner as partitioner_module
from rafka.client.partitioner import Partitioner, murmur2, partition_for_key, to_positive

# apache/kafka: clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# akka/akka: akka-cluster-sharding-typed/src/test/scala/akka/cluster/sharding/typed/internal/
# Murmur2Spec.scala ("expected correct hash values from the kafka murmur2 impl"); lengths 1-5
# cover every tail length (1, 2, 3, none) and one whole word plus a tail.
KAFKA_TAIL_VECTORS = [
    (b"1", -1993445489),
    (b"12", 126087238),
    (b"123", -267702483),
    (b"1234", -1614185708),
    (b"12345", -1188365604),
]

# tulios/kafkajs: src/producer/partitioners/defaultJava/murmur2.spec.js, "Generated with
# src/producer/partitioners/defaultJava/Test.java" (a copy of Kafka's Utils.murmur2).
KAFKAJS_JAVA_VECTORS = [
    (b"0", 971027396),
    (b"128", -326012175),
    (b"2187", -1508407203),
    (b"16384", -325739742),
    (b"279936", 1462227128),
    (b"823543", -2014198330),
    (b"10000000", -1830336757),
    (b"105413504", -381294639),
    (b"170859375", -1658323481),
    (b"100:48069", 1009543857),
]

# dpkp/kafka-python: test/test_partitioner.py, test_murmur2_java_compatibility ("compare with
# output from Kafka's org.apache.kafka.clients.producer.Partitioner"), 1000 partitions.
KAFKA_PYTHON_PARTITIONS_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]


def _java_murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2, line by line, with Java int wraparound made explicit."""

    def to_int(value: int) -> int:  # Java int: wrap to signed 32 bits
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    def unsigned_shift(value: int, bits: int) -> int:  # Java >>>
        return (value & 0xFFFFFFFF) >> bits

    length = len(data)
    seed = to_int(0x9747B28C)
    m = 0x5BD1E995
    r = 24
    h = to_int(seed ^ length)
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = to_int((data[i4 + 0] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8)
                   + ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24))
        k = to_int(k * m)
        k = to_int(k ^ unsigned_shift(k, r))
        k = to_int(k * m)
        h = to_int(h * m)
        h = to_int(h ^ k)
    remainder = length % 4
    if remainder == 3:
        h = to_int(h ^ ((data[(length & ~3) + 2] & 0xFF) << 16))
    if remainder >= 2:
        h = to_int(h ^ ((data[(length & ~3) + 1] & 0xFF) << 8))
    if remainder >= 1:
        h = to_int(h ^ (data[length & ~3] & 0xFF))
        h = to_int(h * m)
    h = to_int(h ^ unsigned_shift(h, 13))
    h = to_int(h * m)
    h = to_int(h ^ unsigned_shift(h, 15))
    return h


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST_VECTORS)
def test_murmur2_matches_kafka_utils_test_vectors(key, expected):
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_TAIL_VECTORS)
def test_murmur2_matches_kafka_for_every_tail_length(key, expected):
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKAJS_JAVA_VECTORS)
def test_murmur2_matches_java_generated_kafkajs_vectors(key, expected):
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_PYTHON_PARTITIONS_OF_1000)
def test_partition_for_key_matches_kafka_python_with_1000_partitions(key, expected):
    assert partition_for_key(key, 1000) == expected


def test_murmur2_matches_literal_java_translation_for_random_bytes():
    rng = random.Random(480)
    samples = [bytes(rng.randrange(256) for _ in range(length)) for length in range(70) for _ in range(5)]
    samples += [b"\xff" * length for length in range(12)]  # high bytes: sign extension traps
    assert [murmur2(data) for data in samples] == [_java_murmur2(data) for data in samples]


def test_to_positive_clears_sign_bit_instead_of_negating():
    assert [to_positive(n) for n in (0, 5, -1, -2**31, 2**31 - 1)] == [0, 5, 2**31 - 1, 0, 2**31 - 1]


def test_partition_for_key_masks_sign_bit_when_hash_is_negative():
    # murmur2(b"21") = -973932308; & 0x7fffffff = 1173551340, % 7 = 3 (abs() would give 5).
    assert partition_for_key(b"21", 7) == 3


def test_partition_for_key_is_stable_and_in_range_when_called_repeatedly():
    for count in (1, 2, 3, 7, 100):
        for index in range(300):
            key = b"user-%d" % index
            chosen = partition_for_key(key, count)
            assert 0 <= chosen < count and partition_for_key(key, count) == chosen


def test_partition_agrees_with_partition_for_key_when_cached_and_uncached():
    partitioner = Partitioner(seed=1)
    keys = [b"user-%d" % index for index in range(300)] + [key for key, _ in KAFKA_UTILS_TEST_VECTORS]
    uncached = [partitioner.partition("t", key, 6) for key in keys]
    cached = [partitioner.partition("t", key, 6) for key in keys]
    assert uncached == cached == [partition_for_key(key, 6) for key in keys]


def test_partition_follows_partition_count_when_topic_grows():
    partitioner = Partitioner(seed=1)
    keys = [b"order-%d" % index for index in range(200)]
    for key in keys:
        partitioner.partition("t", key, 3)
    assert [partitioner.partition("t", key, 8) for key in keys] == [partition_for_key(key, 8) for key in keys]


def test_partition_keeps_sticky_partition_when_key_is_null():
    partitioner = Partitioner(seed=2)
    first = partitioner.partition("t", None, 4)
    assert 0 <= first < 4
    assert {partitioner.partition("t", None, 4) for _ in range(100)} == {first}


def test_on_new_batch_moves_sticky_partition_when_batch_closes():
    partitioner = Partitioner(seed=3)
    current = partitioner.partition("t", None, 5)
    visited = {current}
    for _ in range(200):
        partitioner.on_new_batch("t", 5, current)
        moved = partitioner.partition("t", None, 5)
        assert moved != current and 0 <= moved < 5
        assert partitioner.partition("t", None, 5) == moved  # sticky again until the next batch
        visited.add(moved)
        current = moved
    assert visited == set(range(5))


def test_on_new_batch_keeps_sticky_partition_when_previous_partition_is_stale():
    partitioner = Partitioner(seed=4)
    current = partitioner.partition("t", None, 4)
    partitioner.on_new_batch("t", 4, (current + 1) % 4)
    assert partitioner.partition("t", None, 4) == current


def test_on_new_batch_keeps_other_topics_sticky_partition_when_one_topic_moves():
    partitioner = Partitioner(seed=5)
    other = partitioner.partition("b", None, 4)
    for _ in range(20):
        partitioner.on_new_batch("a", 4, partitioner.partition("a", None, 4))
    assert partitioner.partition("b", None, 4) == other


def test_partition_returns_zero_when_topic_has_one_partition():
    partitioner = Partitioner(seed=6)
    assert partitioner.partition("t", None, 1) == 0
    partitioner.on_new_batch("t", 1, 0)
    assert partitioner.partition("t", None, 1) == 0
    assert {partitioner.partition("t", b"key-%d" % index, 1) for index in range(50)} == {0}


def test_partition_bounds_hash_cache_when_distinct_keys_exceed_limit(monkeypatch):
    monkeypatch.setattr(partitioner_module, "HASH_CACHE_ENTRIES_MAX", 50)
    partitioner = Partitioner(seed=7)
    cache = partitioner.key_hashes
    keys = [b"id-%d" % index for index in range(500)]
    sizes = []
    for key in keys:
        assert partitioner.partition("t", key, 9) == partition_for_key(key, 9)
        sizes.append(len(partitioner.key_hashes))
    assert max(sizes) == 50
    assert partitioner.key_hashes is cache  # cleared in place: the producer holds this dict
