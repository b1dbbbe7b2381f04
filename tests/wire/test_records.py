"""Kafka RecordBatch v2 <-> Arrow (rafka.wire.records), without Ray: batches built with
aiokafka's producer-side builder, as a Kafka client would send them."""

import struct

import pyarrow as pa
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given, settings, strategies as st

from rafka.storage.batch import make_batch
from rafka.wire.records import (
    COLUMNWISE_MIN_RECORDS,
    CorruptRecordsError,
    UnsupportedRecordsError,
    decode_produce,
    encode_batch,
    encode_fetch,
)

RECORDS = [
    (b"k0", b"v0", 1_700_000_000_000, [("h", b"x"), ("empty", b"")]),
    (None, b"v1", 1_700_000_000_005, []),
    (b"k2", None, 1_700_000_000_001, [("trace", b"\x00\xff")]),
]


def kafka_batch(codec: int = 0, producer: tuple[int, int, int] = (-1, -1, -1)) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=0, producer_id=producer[0],
                                        producer_epoch=producer[1], base_sequence=producer[2], batch_size=1 << 20)
    for index, (key, value, timestamp, headers) in enumerate(RECORDS):
        builder.append(index, timestamp, key, value, headers)
    return bytes(builder.build())


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4], ids=["none", "gzip", "snappy", "lz4", "zstd"])
def test_decode_produce_keeps_keys_values_headers_timestamps_for_every_codec(codec):
    [produced] = decode_produce(kafka_batch(codec))
    rows = produced.batch.to_pylist()
    assert [(r["key"], r["value"], r["timestamp"]) for r in rows] == [(k, v, t) for k, v, t, _ in RECORDS]
    assert [[(h["key"], h["value"]) for h in r["headers"] or []] for r in rows] == [h for *_, h in RECORDS]
    assert produced.compression == codec


def test_decode_produce_keeps_producer_id_epoch_and_sequence():
    [produced] = decode_produce(kafka_batch(producer=(42, 3, 17)))
    assert (produced.producer_id, produced.producer_epoch, produced.base_sequence) == (42, 3, 17)


def test_decode_produce_reads_several_batches_in_one_partition():
    produced = decode_produce(kafka_batch() + kafka_batch(4))
    assert [p.batch.num_rows for p in produced] == [3, 3]


def test_decode_produce_rejects_a_flipped_bit_by_crc():
    data = bytearray(kafka_batch())
    data[-3] ^= 0x01
    with pytest.raises(CorruptRecordsError, match="CRC"):
        decode_produce(bytes(data))


def test_decode_produce_rejects_a_truncated_batch():
    data = kafka_batch()
    with pytest.raises(CorruptRecordsError, match="does not fit"):
        decode_produce(data[:-5])
    with pytest.raises(CorruptRecordsError, match="truncated"):
        decode_produce(data[:20])


def test_decode_produce_rejects_an_old_magic():
    data = bytearray(kafka_batch())
    data[16] = 1
    with pytest.raises(UnsupportedRecordsError, match="magic 1"):
        decode_produce(bytes(data))


def test_decode_produce_rejects_a_transactional_batch():
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=1, producer_id=1,
                                        producer_epoch=0, base_sequence=0, batch_size=1 << 20)
    builder.append(0, 1, b"k", b"v", [])
    with pytest.raises(UnsupportedRecordsError, match="transactional"):
        decode_produce(bytes(builder.build()))


def test_decode_produce_rejects_an_empty_record_set():
    with pytest.raises(CorruptRecordsError, match="no record batch"):
        decode_produce(b"")


def test_encode_fetch_writes_stored_offsets_timestamps_and_headers():
    stored = make_batch([b"a", None, b"c"], keys=[b"1", b"2", None], timestamps_ms=[5, 7, 6],
                        headers=[[("h", b"v")], None, []], offsets=[100, 101, 103])
    data = encode_fetch([stored], leader_epoch=4)
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.base_offset == 100
    assert struct.unpack_from(">i", data, 12)[0] == 4
    records = list(batch)
    assert [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in records] == [
        (100, 5, b"1", b"a", [("h", b"v")]), (101, 7, b"2", None, []), (103, 6, None, b"c", [])]


def test_encode_fetch_writes_one_kafka_batch_per_stored_batch():
    first = make_batch([b"a"], offsets=[0])
    second = make_batch([b"b", b"c"], offsets=[1, 2])
    data = encode_fetch([first, second])
    length = struct.unpack_from(">i", data, 8)[0]
    assert DefaultRecordBatch(data[:12 + length]).base_offset == 0
    assert [r.offset for r in DefaultRecordBatch(data[12 + length:])] == [1, 2]


def test_decode_produce_of_encode_fetch_is_the_same_records():
    stored = make_batch([b"x" * 100] * 5, keys=[b"k"] * 5, timestamps_ms=[1, 2, 3, 4, 5])
    [produced] = decode_produce(encode_fetch([stored]))
    assert produced.batch.equals(pa.RecordBatch.from_arrays(stored.columns[1:], schema=produced.batch.schema))


def builder_reference(stored: pa.RecordBatch, leader_epoch: int) -> bytes:
    """What aiokafka's record builder (C) writes for a stored batch: the reference the
    column-wise encoder must match byte for byte."""
    rows = stored.to_pylist()
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=2**31 - 1)
    base = rows[0]["offset"]
    for row in rows:
        builder.append(row["offset"] - base, row["timestamp"], row["key"], row["value"],
                       [(item["key"], item["value"]) for item in row["headers"] or []])
    built = builder.build()
    struct.pack_into(">q", built, 0, base)
    struct.pack_into(">i", built, 12, leader_epoch)
    return bytes(built)


optional_bytes = st.one_of(st.none(), st.binary(max_size=300))
stored_records = st.lists(
    st.tuples(optional_bytes, optional_bytes, st.integers(-(2**40), 2**41),
              st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))),
                                            max_size=3))),
    min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(records=stored_records, first_offset=st.integers(0, 2**40), gaps=st.lists(st.integers(1, 2**20), min_size=40,
                                                                                    max_size=40),
       leader_epoch=st.integers(-1, 2**31 - 1))
def test_column_wise_encoding_writes_the_bytes_aiokafkas_builder_writes(records, first_offset, gaps, leader_epoch):
    offsets = [first_offset]
    for gap in gaps[:len(records) - 1]:
        offsets.append(offsets[-1] + gap)
    stored = make_batch([r[1] for r in records], keys=[r[0] for r in records], timestamps_ms=[r[2] for r in records],
                        headers=[None if r[3] is None else [(k, v) for k, v in r[3]] for r in records], offsets=offsets)
    data = b"".join(encode_batch(stored, leader_epoch, columnwise=True))
    assert data == builder_reference(stored, leader_epoch)
    assert DefaultRecordBatch(data).validate_crc()
    assert b"".join(encode_batch(stored, leader_epoch, columnwise=False)) == data


def test_encode_fetch_encodes_a_large_batch_column_wise_and_a_small_one_by_record():
    large = make_batch([b"v%d" % n for n in range(COLUMNWISE_MIN_RECORDS)], keys=[b"k"] * COLUMNWISE_MIN_RECORDS,
                       offsets=list(range(COLUMNWISE_MIN_RECORDS)))
    small = make_batch([b"x"], offsets=[COLUMNWISE_MIN_RECORDS])
    assert len(encode_batch(large)) == 3 and len(encode_batch(small)) == 1  # the column-wise parts, the builder's bytes
    data = encode_fetch([large, small], leader_epoch=2)
    assert data == builder_reference(large, 2) + builder_reference(small, 2)
