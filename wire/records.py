"""Kafka RecordBatch v2 (the "records" of Produce and Fetch) to and from Arrow batches.

A Produce request carries, per partition, one or more Kafka record batches, each::

    base_offset int64 | batch_length int32 | partition_leader_epoch int32 | magic int8 (=2)
    | crc uint32 (CRC-32C of everything after it) | attributes int16 | last_offset_delta int32
    | first_timestamp int64 | max_timestamp int64 | producer_id int64 | producer_epoch int16
    | base_sequence int32 | record_count int32 | records (compressed together when
    attributes bits 0-2 name a codec: 1 gzip, 2 snappy, 3 lz4, 4 zstd)

``decode_produce`` checks the framing (lengths inside the buffer, magic 2, CRC-32C, no
control or transactional batches) and turns each batch into one Arrow batch of
``storage.batch.PRODUCE_SCHEMA`` (timestamp, key, value, headers), keeping the batch's
producer id, epoch and base sequence beside it. ``encode_fetch`` turns stored Arrow
batches (``RECORD_SCHEMA``, with offsets) back into Kafka batches, one per stored batch,
with the stored offsets and timestamps (CreateTime).

Decoding and encoding go through aiokafka's record codec, compiled C
(``aiokafka.record.default_records``), which also decompresses every codec Kafka has
(snappy, lz4 and zstd through ``cramjam``). Pure functions: no Ray, no I/O; callers bound
the input size (the listener's frame limit).

Not promised: a fetched batch carries producer id -1 (the replica's fetch answer holds
Arrow batches without their producer fields), and timestamps are always CreateTime.
"""

from __future__ import annotations

import dataclasses
import struct

import pyarrow as pa
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from rafka.storage.batch import HEADERS_TYPE, PRODUCE_SCHEMA

BATCH_HEADER_BYTES = 61  # up to and including record_count
LOG_OVERHEAD_BYTES = 12  # base_offset + batch_length: the part batch_length does not count
MAGIC_OFFSET = 16
ATTRIBUTE_TRANSACTIONAL = 0x10
ATTRIBUTE_CONTROL = 0x20
MAX_BATCH_BYTES_BUILT = 2**31 - 1


class CorruptRecordsError(ValueError):
    """The records of one partition are not valid RecordBatch v2 (Kafka's CORRUPT_MESSAGE)."""


class UnsupportedRecordsError(ValueError):
    """Valid records that rafka does not take: an old magic, a control or transactional
    batch (Kafka's UNSUPPORTED_FOR_MESSAGE_FORMAT / INVALID_RECORD)."""


@dataclasses.dataclass(frozen=True)
class ProducedBatch:
    """One Kafka record batch from a Produce request, as Arrow."""

    batch: pa.RecordBatch  # PRODUCE_SCHEMA
    producer_id: int
    producer_epoch: int
    base_sequence: int
    compression: int  # Kafka's codec number, 0 for none


def split_batches(records: bytes) -> list[memoryview]:
    """The Kafka record batches in ``records``, each checked for length and magic only.
    Raises CorruptRecordsError on a length that runs past the end or a short batch."""
    view = memoryview(records)
    batches, position = [], 0
    while position < len(view):
        if len(view) - position < BATCH_HEADER_BYTES:
            raise CorruptRecordsError(f"truncated batch header: {len(view) - position} bytes at {position}")
        (length,) = struct.unpack_from(">i", view, position + 8)
        end = position + LOG_OVERHEAD_BYTES + length
        if length < BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES or end > len(view):
            raise CorruptRecordsError(f"batch length {length} at {position} does not fit the {len(view)} bytes sent")
        magic = view[position + MAGIC_OFFSET]
        if magic != 2:
            raise UnsupportedRecordsError(f"record batch magic {magic}: only RecordBatch v2 (magic 2) is supported")
        batches.append(view[position:end])
        position = end
    return batches


def decode_produce(records: bytes) -> list[ProducedBatch]:
    """Every batch of one partition's produce records as Arrow, CRC-checked."""
    if not records:
        raise CorruptRecordsError("no record batch in the produce request")
    return [_decode_batch(raw) for raw in split_batches(records)]


def _decode_batch(raw: memoryview) -> ProducedBatch:
    batch = DefaultRecordBatch(bytes(raw))
    if not batch.validate_crc():
        raise CorruptRecordsError(f"record batch CRC-32C mismatch (stored {batch.crc:#010x})")
    if batch.attributes & (ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL):
        raise UnsupportedRecordsError("transactional and control batches are not supported")
    timestamps, keys, values, headers = [], [], [], []
    try:
        for record in batch:
            timestamps.append(record.timestamp)
            keys.append(record.key)
            values.append(record.value)
            record_headers = record.headers
            headers.append([(key, value) for key, value in record_headers] if record_headers else None)
    except (ValueError, UnicodeDecodeError, IndexError, struct.error, RuntimeError) as error:
        raise CorruptRecordsError(f"record batch body is malformed: {error}") from None
    except Exception as error:  # noqa: BLE001 - the C codec raises its own errors (e.g. a bad frame)
        raise CorruptRecordsError(f"record batch body does not decode: {error!r}") from None
    if not timestamps:
        raise CorruptRecordsError("record batch holds no records")
    arrow = pa.RecordBatch.from_arrays(
        [
            pa.array(timestamps, pa.int64()),
            pa.array(keys, pa.binary()),
            pa.array(values, pa.binary()),
            pa.array(headers, HEADERS_TYPE),
        ],
        schema=PRODUCE_SCHEMA,
    )
    return ProducedBatch(arrow, batch.producer_id, batch.producer_epoch, batch.base_sequence,
                         batch.compression_type)


def encode_fetch(batches: list[pa.RecordBatch], leader_epoch: int = -1) -> bytes:
    """Stored batches (``RECORD_SCHEMA``) as Kafka RecordBatch v2 bytes, one Kafka batch
    per stored batch, uncompressed."""
    out = bytearray()
    for batch in batches:
        if batch.num_rows == 0:
            continue
        offsets = batch.column(0).to_pylist()
        timestamps = batch.column(1).to_pylist()
        keys = batch.column(2).to_pylist()
        values = batch.column(3).to_pylist()
        headers = batch.column(4).to_pylist()
        base_offset = offsets[0]
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                            producer_epoch=-1, base_sequence=-1, batch_size=MAX_BATCH_BYTES_BUILT)
        for offset, timestamp, key, value, record_headers in zip(offsets, timestamps, keys, values, headers):
            builder.append(offset - base_offset, timestamp, key, value,
                           [(item["key"], item["value"]) for item in record_headers] if record_headers else [])
        built = builder.build()
        # base_offset and partition_leader_epoch are outside the CRC: set them in place.
        struct.pack_into(">q", built, 0, base_offset)
        struct.pack_into(">i", built, 12, leader_epoch)
        out += built
    return bytes(out)
