"""A raw Kafka-protocol socket for the listener tests: frames built with kio, as a client
would send them, so the tests see exactly what the listener answers."""

from __future__ import annotations

import io
import socket
import struct

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer


def address(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return host, int(port)


def request_frame(request, correlation_id: int = 1, client_id: str = "wire-test") -> bytes:
    header_schema = type(request).__header_schema__
    buffer = io.BytesIO()
    fields = {"request_api_key": request.__api_key__, "request_api_version": request.__version__,
              "correlation_id": correlation_id}
    if "client_id" in header_schema.__dataclass_fields__:
        fields["client_id"] = client_id
    entity_writer(header_schema)(buffer, header_schema(**fields))
    entity_writer(type(request))(buffer, request)
    body = buffer.getvalue()
    return struct.pack(">i", len(body)) + body


class WireSocket:
    def __init__(self, bootstrap: str, timeout_s: float = 30.0) -> None:
        self.sock = socket.create_connection(address(bootstrap), timeout=timeout_s)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self) -> bytes | None:
        """The next response frame's bytes, or None when the listener closed the socket."""
        size = self._read(4)
        if size is None:
            return None
        return self._read(struct.unpack(">i", size)[0])

    def _read(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def call(self, request, correlation_id: int = 1):
        """Send ``request``; return (correlation id, the parsed response)."""
        self.send(request_frame(request, correlation_id))
        frame = self.read_frame()
        assert frame is not None, "the listener closed the connection"
        schema = load_response_schema(request.__api_key__, request.__version__)
        (got_id,) = struct.unpack_from(">i", frame, 0)
        offset = 4
        if schema.__flexible__ and request.__api_key__ != 18:
            offset += 1  # empty tagged fields of response header v1
        response, _ = entity_reader(schema)(frame, offset)
        return got_id, response

    def close(self) -> None:
        self.sock.close()


def api_versions_request(version: int = 3):
    schema = load_request_schema(18, version)
    if version >= 3:
        return schema(client_software_name="wire-test", client_software_version="1")
    return schema()
