"""Record batches: the Arrow schema of a record, batch metadata, and the on-disk frame.

A *record* is (offset, timestamp, key, value, headers); a *batch* is an Arrow
``RecordBatch`` of records with ``RECORD_SCHEMA``. Producers hand the log batches of
``PRODUCE_SCHEMA`` (no offset column) or of ``RECORD_SCHEMA`` (offsets ignored); the log
assigns offsets.

On disk each batch is one *frame*, little-endian::

    0   length            uint32   bytes after this field (crc + header + body)
    4   crc               uint32   CRC-32C of every byte after this field
    8   magic             uint8    FRAME_MAGIC
    9   attributes        uint8    bits 0-2 codec (0 none, 1 lz4, 2 zstd); bit 3 LogAppendTime
    10  base_offset       int64    offset of the first record the batch was written with
    18  last_offset_delta int32    last offset - base_offset (kept when compaction removes records)
    22  record_count      int32    rows in the Arrow body (may be fewer than last_offset_delta + 1
                                   after compaction: offsets then have gaps)
    26  max_timestamp     int64    largest record timestamp (ms)
    34  producer_id       int64    -1 without an idempotent producer
    42  producer_epoch    int16
    44  base_sequence     int32
    48  leader_epoch      int32    epoch of the leader that appended the batch
    52  delete_horizon_ms int64    set by compaction on batches holding tombstones; -1 unset
    60  reserved          int32    zero; pads the header to 64 bytes
    64  body                       one Arrow IPC record-batch message (no schema message)

Frames start at multiples of 8 (Arrow bodies are padded to 8 bytes), so every body is
8-byte aligned in the memory-mapped file, as Arrow requires for zero-copy reads.

A frame is valid when its length fits the file, the magic matches, the CRC matches and the
body decodes to ``record_count`` rows. A torn write or a flipped bit fails one of these.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from typing import Any, Iterable, Sequence

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from rafka.errors import InvalidRecordError

HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
RECORD_SCHEMA = pa.schema(
    [
        ("offset", pa.int64(), False),
        ("timestamp", pa.int64(), False),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("headers", HEADERS_TYPE),
    ]
)
PRODUCE_SCHEMA = pa.schema([RECORD_SCHEMA.field(i) for i in range(1, len(RECORD_SCHEMA))])

FRAME_MAGIC = 1
FRAME_HEADER = struct.Struct("<IIBBqiiqqhiiqi")
FRAME_HEADER_BYTES = FRAME_HEADER.size  # 64: keeps the Arrow body 8-byte aligned
LENGTH_FIELD_BYTES = 4
CRC_FIELD_END = 8  # the CRC covers bytes [8, 4 + length)
CODECS = {"uncompressed": 0, "lz4": 1, "zstd": 2}
CODEC_NAMES = {number: name for name, number in CODECS.items()}
ATTRIBUTE_CODEC_MASK = 0x07
ATTRIBUTE_LOG_APPEND_TIME = 0x08
NO_PRODUCER_ID = -1


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    """Metadata of one stored batch (what the frame header holds)."""

    base_offset: int
    last_offset_delta: int
    record_count: int  # 0 only for a batch compaction emptied (kept to mark a segment's end)
    max_timestamp_ms: int
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = -1
    base_sequence: int = -1
    leader_epoch: int = 0
    delete_horizon_ms: int = -1
    attributes: int = 0
    crc: int = 0
    frame_bytes: int = 0

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def codec(self) -> str:
        return CODEC_NAMES.get(self.attributes & ATTRIBUTE_CODEC_MASK, "unknown")

    @property
    def dense(self) -> bool:
        """True when every offset from base to last is present (no compaction gaps)."""
        return self.record_count == self.last_offset_delta + 1


def make_batch(
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None] | None = None,
    timestamps_ms: Sequence[int] | np.ndarray | int | None = None,
    headers: Sequence[Iterable[tuple[str, bytes]] | None] | None = None,
    offsets: Sequence[int] | np.ndarray | None = None,
) -> pa.RecordBatch:
    """Build a batch of ``RECORD_SCHEMA`` from Python sequences, column by column.

    ``offsets`` default to 0..n-1 (the log reassigns them on append); ``timestamps_ms``
    defaults to the current wall-clock time and may be one int for every record; ``headers``
    holds one list of (str, bytes) per record.
    Raises ``InvalidRecordError`` naming the argument whose values have the wrong type.
    """
    count = len(values)
    if offsets is None:
        offsets = np.arange(count, dtype=np.int64)
    if timestamps_ms is None:
        timestamps_ms = time.time_ns() // 1_000_000
    if isinstance(timestamps_ms, (int, np.integer)):
        timestamps_ms = np.full(count, int(timestamps_ms), dtype=np.int64)
    columns = [
        _column("offsets", offsets, pa.int64(), count),
        _column("timestamps_ms", timestamps_ms, pa.int64(), count),
        _column("keys", keys if keys is not None else [None] * count, pa.binary(), count),
        _column("values", values, pa.binary(), count),
        _column("headers", headers if headers is not None else [None] * count, HEADERS_TYPE, count),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=RECORD_SCHEMA)


def _column(name: str, data: Any, arrow_type: pa.DataType, count: int) -> pa.Array:
    try:
        column = pa.array(data, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as error:
        raise InvalidRecordError(f"{name} must be a sequence of {arrow_type}: {error}") from None
    if len(column) != count:
        raise InvalidRecordError(f"{name} has {len(column)} entries for {count} records")
    return column


def producer_columns(batch: pa.RecordBatch | pa.Table) -> list[pa.Array]:
    """The (timestamp, key, value, headers) columns of a batch of ``PRODUCE_SCHEMA`` or
    ``RECORD_SCHEMA`` (any offsets are ignored: the log assigns them), or
    ``InvalidRecordError`` naming the first column that does not match."""
    if isinstance(batch, pa.Table):
        batches = batch.combine_chunks().to_batches()
        if not batches:
            raise InvalidRecordError("empty batch: a batch needs at least one record")
        batch = batches[0]
    if not isinstance(batch, pa.RecordBatch):
        raise InvalidRecordError(f"expected a pyarrow RecordBatch, got {type(batch).__name__}")
    schema = batch.schema
    if schema.equals(PRODUCE_SCHEMA):
        columns = batch.columns
    elif schema.equals(RECORD_SCHEMA):
        columns = batch.columns[1:]
    else:
        columns = []
        for field in PRODUCE_SCHEMA:
            index = schema.get_field_index(field.name)
            if index < 0:
                raise InvalidRecordError(f"batch has no column {field.name!r} ({field.type}); schema is {schema}")
            if not schema.field(index).type.equals(field.type):
                raise InvalidRecordError(
                    f"batch column {field.name!r} has type {schema.field(index).type}, expected {field.type}"
                )
            columns.append(batch.column(index))
        extra = [name for name in schema.names if RECORD_SCHEMA.get_field_index(name) < 0]
        if extra:
            raise InvalidRecordError(f"batch has unexpected columns {extra}")
    if columns[0].null_count:
        raise InvalidRecordError(f"batch column 'timestamp' has {columns[0].null_count} nulls")
    return columns


def encode_body(batch: pa.RecordBatch, codec: str = "uncompressed") -> pa.Buffer:
    """Serialize ``batch`` to one Arrow IPC record-batch message (no schema message)."""
    if codec == "uncompressed":
        return batch.serialize()
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, RECORD_SCHEMA, options=ipc.IpcWriteOptions(compression=codec)) as writer:
        writer.write_batch(batch)
    stream = sink.getvalue()
    # The stream writer emits the schema message first; the frame stores only the batch
    # message that follows it.
    reader = pa.BufferReader(stream)
    ipc.read_message(reader)
    start = reader.tell()
    ipc.read_message(reader)
    return stream.slice(start, reader.tell() - start)


def encode_frame(header: BatchHeader, body: pa.Buffer) -> tuple[bytes, BatchHeader]:
    """Build the frame header for ``body``; return it and ``header``, which must be a
    fresh object, with its crc and frame size filled in."""
    assert body.size % 8 == 0, f"Arrow IPC bodies are 8-byte padded, got {body.size} bytes"
    length = FRAME_HEADER_BYTES - LENGTH_FIELD_BYTES + body.size
    fields = _header_fields(header)
    without_crc = FRAME_HEADER.pack(length, 0, *fields)
    crc = crc32c.crc32c(body, crc32c.crc32c(without_crc[CRC_FIELD_END:]))
    packed = FRAME_HEADER.pack(length, crc, *fields)
    # Frozen dataclass, set in place while it is still ours alone (replace() costs ~10 us).
    object.__setattr__(header, "crc", crc)
    object.__setattr__(header, "frame_bytes", FRAME_HEADER_BYTES + body.size)
    return packed, header


def _header_fields(header: BatchHeader) -> tuple:
    return (
        FRAME_MAGIC,
        header.attributes,
        header.base_offset,
        header.last_offset_delta,
        header.record_count,
        header.max_timestamp_ms,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.leader_epoch,
        header.delete_horizon_ms,
        0,
    )


def parse_header(buffer: Any, position: int) -> BatchHeader:
    """Read the frame header at ``position`` of ``buffer`` (no CRC check)."""
    (length, crc, _magic, attributes, base_offset, last_offset_delta, record_count, max_timestamp_ms,
     producer_id, producer_epoch, base_sequence, leader_epoch, delete_horizon_ms,
     _reserved) = FRAME_HEADER.unpack_from(buffer, position)
    return BatchHeader(
        base_offset=base_offset,
        last_offset_delta=last_offset_delta,
        record_count=record_count,
        max_timestamp_ms=max_timestamp_ms,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        leader_epoch=leader_epoch,
        delete_horizon_ms=delete_horizon_ms,
        attributes=attributes,
        crc=crc,
        frame_bytes=length + LENGTH_FIELD_BYTES,
    )


def check_frame(buffer: pa.Buffer, position: int, end: int, verify_crc: bool) -> tuple[BatchHeader | None, str]:
    """Validate the frame at ``position`` of ``buffer[:end]``.

    Returns ``(header, "")`` for a valid frame, or ``(None, reason)`` describing the first
    check it fails: a torn length, a wrong magic, impossible counts or a CRC mismatch.
    """
    if end - position < FRAME_HEADER_BYTES:
        return None, f"torn frame header: {end - position} of {FRAME_HEADER_BYTES} bytes"
    length, crc, magic = struct.unpack_from("<IIB", buffer, position)
    if length < FRAME_HEADER_BYTES - LENGTH_FIELD_BYTES:
        return None, f"frame length {length} is shorter than a header"
    if length % 8 != LENGTH_FIELD_BYTES:
        return None, f"frame length {length} is not 8-byte aligned"
    if position + LENGTH_FIELD_BYTES + length > end:
        return None, f"torn frame: length {length} runs past the end of the segment"
    if magic != FRAME_MAGIC:
        return None, f"frame magic {magic} is not {FRAME_MAGIC}"
    header = parse_header(buffer, position)
    if header.record_count < 0 or header.last_offset_delta < max(header.record_count - 1, 0):
        return None, f"frame counts are impossible (count {header.record_count}, last delta {header.last_offset_delta})"
    if header.attributes & ATTRIBUTE_CODEC_MASK not in CODEC_NAMES:
        return None, f"frame codec {header.attributes & ATTRIBUTE_CODEC_MASK} is unknown"
    if verify_crc:
        covered = buffer.slice(position + CRC_FIELD_END, LENGTH_FIELD_BYTES + length - CRC_FIELD_END)
        actual = crc32c.crc32c(covered)
        if actual != crc:
            return None, f"CRC mismatch: stored {crc:#010x}, computed {actual:#010x}"
    return header, ""


def decode_body(buffer: pa.Buffer, position: int, header: BatchHeader) -> pa.RecordBatch:
    """Decode the Arrow body of the frame at ``position`` (zero-copy when uncompressed)."""
    body = buffer.slice(position + FRAME_HEADER_BYTES, header.frame_bytes - FRAME_HEADER_BYTES)
    return ipc.read_record_batch(body, RECORD_SCHEMA)


def encode_stream(batches: Sequence[pa.RecordBatch], schema: pa.Schema = RECORD_SCHEMA,
                  codec: str = "uncompressed") -> bytes:
    """Batches as one Arrow IPC stream (schema once, then each batch) in a ``bytes``
    object: the form batches take between actors. Unlike pickling, this writes only the
    rows of a sliced batch, and ``bytes`` crosses Ray faster than an Arrow buffer."""
    sink = pa.BufferOutputStream()
    options = ipc.IpcWriteOptions(compression=None if codec == "uncompressed" else codec)
    with ipc.new_stream(sink, schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def decode_stream(data: bytes | pa.Buffer) -> list[pa.RecordBatch]:
    """The batches of an IPC stream made by ``encode_stream`` (zero-copy views of
    ``data`` when uncompressed). Raises ``InvalidRecordError`` on bytes that are not one."""
    try:
        return list(ipc.open_stream(pa.py_buffer(data) if not isinstance(data, pa.Buffer) else data))
    except (pa.ArrowException, OSError, TypeError) as error:  # any malformed stream, named
        raise InvalidRecordError(f"not an Arrow IPC stream of record batches: {error}") from None
