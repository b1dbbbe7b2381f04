"""Kafka RecordBatch v2 <-> Arrow (rafka.wire.records), without Ray: batches built with
aiokafka's producer-side builder, as a Kafka client would send them."""

import struct

import pyarrow as pa
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from rafka.storage.batch import make_batch
from rafka.wire.records import CorruptRecordsError, UnsupportedRecordsError, decode_produce, encode_fetch

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
