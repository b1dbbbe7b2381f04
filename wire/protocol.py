"""Kafka's request/response framing, with message schemas from ``kio``.

A request frame on the socket is ``size int32`` then ``size`` bytes: a request header
(api key int16, api version int16, correlation id int32, client id as a nullable int16
string, and in flexible versions a tagged-field section) followed by the request body.
A response frame is ``size int32``, the correlation id, in flexible versions an empty
tagged-field section (never for ApiVersions, whose response header is always v0 so that a
client can read it before it knows which versions the broker speaks), then the body.

``kio`` supplies a frozen dataclass per (api, version, request|response) generated from
Kafka's own JSON schemas, a native reader and a writer; this module only picks the class
for a header and builds responses from plain dicts (``build``), so handlers can fill one
dict for every version of an API and let each version's class take the fields it has.

``SUPPORTED`` is the truth ApiVersions reports: an API is listed only when the listener
answers it, with the version range it answers. A request for anything else is not
answered: the connection is closed (as Kafka does), except ApiVersions itself, which gets
UNSUPPORTED_VERSION and the list (KIP-511).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import typing
import uuid
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

API_VERSIONS_KEY = 18
# api key -> (min version, max version). Only what handlers.py answers.
SUPPORTED: dict[int, tuple[int, int]] = {
    0: (3, 9),    # Produce: v3 is the first with RecordBatch v2; v10+ adds KIP-951 fields
    1: (4, 12),   # Fetch: v4+ has isolation level and last stable offset; v13 switches to topic ids
    2: (1, 7),    # ListOffsets
    3: (1, 12),   # Metadata
    8: (2, 8),    # OffsetCommit (by topic name; v10 uses topic ids)
    9: (1, 7),    # OffsetFetch (one group per request; v8 batches groups)
    10: (0, 6),   # FindCoordinator (groups)
    11: (0, 9),   # JoinGroup (classic protocol)
    12: (0, 4),   # Heartbeat
    13: (0, 5),   # LeaveGroup
    14: (0, 5),   # SyncGroup
    15: (0, 6),   # DescribeGroups
    16: (0, 5),   # ListGroups
    17: (0, 1),   # SaslHandshake (v0: raw tokens follow; v1: SaslAuthenticate follows)
    18: (0, 3),   # ApiVersions
    19: (2, 7),   # CreateTopics
    20: (1, 6),   # DeleteTopics
    21: (0, 2),   # DeleteRecords (the log start offset moves on the leader and its in-sync followers)
    22: (0, 4),   # InitProducerId (idempotent producers; no transactions)
    23: (2, 4),   # OffsetForLeaderEpoch (consumers; kio has v2+)
    29: (1, 3),   # DescribeAcls (kio has v1+)
    30: (1, 3),   # CreateAcls
    31: (1, 3),   # DeleteAcls
    32: (1, 4),   # DescribeConfigs
    36: (0, 2),   # SaslAuthenticate
    37: (0, 3),   # CreatePartitions
    42: (0, 2),   # DeleteGroups
    44: (0, 1),   # IncrementalAlterConfigs (topics)
    50: (0, 0),   # DescribeUserScramCredentials
    51: (0, 0),   # AlterUserScramCredentials
    60: (0, 1),   # DescribeCluster
    68: (0, 1),   # ConsumerGroupHeartbeat (KIP-848; v1: the client names its member id)
}
_HEADER = struct.Struct(">hhi")


class FrameError(ValueError):
    """A request that cannot be read: the connection is closed."""


@dataclasses.dataclass(frozen=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    flexible: bool


def supports(api_key: int, api_version: int) -> bool:
    versions = SUPPORTED.get(api_key)
    return versions is not None and versions[0] <= api_version <= versions[1]


def request_class(api_key: int, api_version: int) -> type:
    return load_request_schema(api_key, api_version)


def response_class(api_key: int, api_version: int) -> type:
    return load_response_schema(api_key, api_version)


def read_header(frame: bytes) -> tuple[int, int, int]:
    """(api key, api version, correlation id) of a request frame, or FrameError."""
    if len(frame) < _HEADER.size:
        raise FrameError(f"request of {len(frame)} bytes is shorter than a request header")
    return _HEADER.unpack_from(frame, 0)


def parse_request(frame: bytes) -> tuple[RequestHeader, Any]:
    """The header and the kio request object of a supported request frame.
    Raises FrameError on bytes that do not parse."""
    api_key, api_version, correlation_id = read_header(frame)
    if not supports(api_key, api_version):
        raise FrameError(f"api key {api_key} version {api_version} is not supported")
    schema = request_class(api_key, api_version)
    header_schema = schema.__header_schema__
    try:
        header, header_bytes = entity_reader(header_schema)(frame, 0)
        body, body_bytes = entity_reader(schema)(frame, header_bytes)
    except Exception as error:  # noqa: BLE001 - any failure to read is the client's bad bytes
        raise FrameError(f"api key {api_key} v{api_version} request does not parse: {error!r}") from None
    return RequestHeader(api_key, api_version, correlation_id, header.client_id, schema.__flexible__), body


def encode_response(header: RequestHeader, response: Any) -> bytes:
    """The response frame (size prefix included) for ``response`` to ``header``."""
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    buffer.write(struct.pack(">i", header.correlation_id))
    if header.flexible and header.api_key != API_VERSIONS_KEY:
        buffer.write(b"\0")  # no tagged fields in the response header
    entity_writer(type(response))(buffer, response)
    data = buffer.getbuffer()
    struct.pack_into(">i", data, 0, len(data) - 4)
    return bytes(data)


def build(schema: type, data: dict) -> Any:
    """An instance of the kio dataclass ``schema`` from ``data``: keys the schema does
    not have are ignored (so one dict serves every version), nested entities are built
    from dicts, ints become ErrorCode / timedelta where the schema says so. A required
    field missing from ``data`` is a bug here: KeyError names it."""
    hints = _hints(schema)
    values = {}
    for field in dataclasses.fields(schema):
        if field.name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise KeyError(f"{schema.__qualname__} v{schema.__version__} needs {field.name!r}")
            continue
        values[field.name] = _convert(hints[field.name], field.metadata.get("kafka_type"), data[field.name])
    return schema(**values)


def _convert(hint: Any, kafka_type: str | None, value: Any) -> Any:
    if value is None:
        return None
    entity = _entity_type(hint)
    if entity is not None:
        if typing.get_origin(_strip_optional(hint)) is tuple:
            return tuple(item if dataclasses.is_dataclass(item) else build(entity, item) for item in value)
        return value if dataclasses.is_dataclass(value) else build(entity, value)
    if kafka_type == "error_code":
        return ErrorCode(int(value))
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return value if isinstance(value, datetime.timedelta) else datetime.timedelta(milliseconds=value)
    if kafka_type == "uuid" and not isinstance(value, uuid.UUID):
        return uuid.UUID(value) if value else uuid.UUID(int=0)
    if typing.get_origin(_strip_optional(hint)) is tuple:
        return tuple(value)
    return value


def _strip_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if args and type(None) in args and typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        remaining = [arg for arg in args if arg is not type(None)]
        return remaining[0] if len(remaining) == 1 else hint
    return hint


def _entity_type(hint: Any) -> type | None:
    hint = _strip_optional(hint)
    if typing.get_origin(hint) is tuple:
        hint = typing.get_args(hint)[0]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


_HINTS: dict[type, dict] = {}


def _hints(schema: type) -> dict:
    hints = _HINTS.get(schema)
    if hints is None:
        hints = _HINTS[schema] = typing.get_type_hints(schema)
    return hints


def error_code(name: str) -> int:
    return ErrorCode[name].value
