"""Keys and values between Arrow columns inside a stream job and bytes in topics.

Inside a job, ``key`` and ``value`` are Arrow columns of any type. Leaving the job:

* ``to(topic)`` writes bytes a user reads: binary as is, strings as UTF-8, numbers as
  their decimal text, anything else (lists, structs, dicts) as JSON;
* internal topics (repartition, changelog) keep the type: each value gets a one-byte
  tag — 0 binary, 1 UTF-8 string, 2 msgpack — so the reading task rebuilds the same
  column. Binary and string columns cost one vectorized concatenation; other types are
  packed per record (the slow path).

Entering a job, ``source(topic, key_format=, value_format=)`` decodes: "bytes" (as is),
"utf8", "int", "float" (from decimal text), or "json" (one JSON document per value,
parsed by pyarrow's reader in one call per batch).
"""

from __future__ import annotations

import json

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

FORMATS = ("bytes", "utf8", "int", "float", "json")
_TAG_BINARY, _TAG_STRING, _TAG_MSGPACK = b"\x00", b"\x01", b"\x02"
_MAX_BYTES = 2**31 - 1
# Keys of watermark records in repartition topics (never a data key: those start 0-2).
WATERMARK_TAG = b"\x03"


def to_external(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as the binary a user reads (see the module docstring)."""
    column = _array(column)
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.cast(pa.binary())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string()).cast(pa.binary())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return column.cast(pa.string()).cast(pa.binary())
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.binary())
    return pa.array([None if item is None else json.dumps(item, default=_json_default).encode()
                     for item in column.to_pylist()], pa.binary())


def to_internal(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as tagged binary that ``from_internal`` turns back into the same type."""
    column = _array(column)
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _tag(column.cast(pa.binary()), _TAG_BINARY)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _tag(column.cast(pa.string()).cast(pa.binary()), _TAG_STRING)
    return pa.array([None if item is None else _TAG_MSGPACK + msgpack.packb(item) for item in column.to_pylist()],
                    pa.binary())


def from_internal(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    column = _array(column).cast(pa.binary())
    if len(column) == 0 or column.null_count == len(column):
        return column
    tags = pc.binary_slice(column, 0, 1)
    distinct = [tag for tag in pc.unique(tags).to_pylist() if tag is not None]
    if distinct in ([_TAG_BINARY], [_TAG_STRING]):
        # An explicit stop: pyarrow 26's binary_slice without one fails on a trailing null.
        body = pc.binary_slice(column, 1, _MAX_BYTES)
        return body if distinct == [_TAG_BINARY] else body.cast(pa.string())
    return pa.array([None if item is None else _unpack_tagged(item) for item in column.to_pylist()])


def decode(column: pa.Array | pa.ChunkedArray, fmt: str, what: str) -> pa.Array | pa.ChunkedArray:
    """Decode a binary column read from a topic per ``fmt`` (see the module docstring).

    The chunks of a poll's batches stay chunks: concatenating them first cost more than
    decoding them (for bytes, int and float)."""
    if fmt == "bytes":
        return column
    if fmt == "utf8":
        return column.cast(pa.string())
    if fmt in ("int", "float"):
        try:
            # A view, not a cast, to string: the number parser refuses any byte that is
            # not part of a number, so UTF-8 validation first would only repeat the check.
            return _as_string_view(column).cast(pa.int64() if fmt == "int" else pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"{what} is not {'an integer' if fmt == 'int' else 'a number'} in decimal text: {error}") from None
    if fmt == "json":
        items = column.to_pylist()
        try:
            return pa.array([None if item is None else json.loads(item) for item in items])
        except (ValueError, pa.ArrowInvalid) as error:
            raise ValueError(f"{what} is not JSON: {error}") from None
    raise ValueError(f"unknown format {fmt!r} for {what}; known: {', '.join(FORMATS)}")


def _as_string_view(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:
            return column.cast(pa.string())
        views = [_as_string_view(chunk) for chunk in column.chunks]
        return pa.chunked_array(views, views[0].type)
    kind = column.type
    if pa.types.is_binary(kind):
        return column.view(pa.string())
    if pa.types.is_large_binary(kind):
        return column.view(pa.large_string())
    return column.cast(pa.string())


def _unpack_tagged(item: bytes):
    tag, body = item[:1], item[1:]
    if tag == _TAG_BINARY:
        return body
    if tag == _TAG_STRING:
        return body.decode("utf-8")
    return msgpack.unpackb(body)


def _tag(column: pa.Array, tag: bytes) -> pa.Array:
    prefix = pa.scalar(tag, pa.binary())
    return pc.binary_join_element_wise(prefix, column, pa.scalar(b"", pa.binary()))


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _json_default(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    raise TypeError(f"{value!r} is not JSON serializable")
