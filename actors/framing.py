"""Length- and CRC-framed msgpack records: the file format of the controller's metadata
store and of the Raft voters' logs.

A frame is ``length uint32 LE | CRC-32C uint32 LE of the body | msgpack body``. Readers
stop at the first frame that is short, fails its CRC or does not decode: a crash can only
tear the last write, so nothing after it was ever acknowledged.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import crc32c
import msgpack

FRAME = struct.Struct("<II")  # body length, CRC-32C of the body


def frame(value: object) -> bytes:
    body = msgpack.packb(value)
    return FRAME.pack(len(body), crc32c.crc32c(body)) + body


def frames(data: bytes) -> Iterator[tuple[int, object]]:
    """Yield (start position, decoded value) for each whole frame; stop at the first bad one."""
    position = 0
    while position + FRAME.size <= len(data):
        length, crc = FRAME.unpack_from(data, position)
        body = data[position + FRAME.size:position + FRAME.size + length]
        if len(body) != length or crc32c.crc32c(body) != crc:
            return
        try:
            value = msgpack.unpackb(body, strict_map_key=False)
        except (ValueError, msgpack.UnpackException):
            return
        yield position, value
        position += FRAME.size + length
