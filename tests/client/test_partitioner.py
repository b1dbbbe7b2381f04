"""Kafka's default partitioner: murmur2 vectors from Kafka's own tests, sticky null keys."""

import pytest

from rafka.client.partitioner import HASH_CACHE_ENTRIES_MAX, Partitioner, murmur2, partition_for_key

# Kafka's clients/src/test/.../common/utils/UtilsTest.java (testMurmur2), as quoted by
# kafkabr's murmur2 test, and the values the Akka/Pekko Murmur2Spec took from Kafka's
# Utils.murmur2 for keys of length 1-5 (every tail length).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize(("key", "expected"), sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka(key, expected):
    assert murmur2(key) == expected


def test_partition_for_key_masks_the_sign_bit_like_kafka():
    # -973932308 & 0x7fffffff = 1173551340; % 7 = 3 (not abs(), which would give 5)
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7 == 3


def test_partitioner_is_stable_and_in_range():
    partitioner = Partitioner(seed=1)
    for index in range(500):
        key = b"user-%d" % index
        chosen = partitioner.partition("t", key, 6)
        assert 0 <= chosen < 6 and chosen == partition_for_key(key, 6) == partitioner.partition("t", key, 6)


def test_null_keys_stick_until_a_batch_closes_then_move():
    partitioner = Partitioner(seed=2)
    first = partitioner.partition("t", None, 4)
    assert all(partitioner.partition("t", None, 4) == first for _ in range(100))
    partitioner.on_new_batch("t", 4, first)
    second = partitioner.partition("t", None, 4)
    assert second != first and 0 <= second < 4


def test_single_partition_topic_always_gets_partition_zero():
    partitioner = Partitioner(seed=3)
    partitioner.on_new_batch("t", 1, 0)
    assert partitioner.partition("t", None, 1) == 0 and partitioner.partition("t", b"k", 1) == 0


def test_hash_cache_is_bounded():
    partitioner = Partitioner()
    for index in range(HASH_CACHE_ENTRIES_MAX + 10):
        partitioner.partition("t", b"%d" % index, 3)
    assert len(partitioner.key_hashes) <= HASH_CACHE_ENTRIES_MAX
