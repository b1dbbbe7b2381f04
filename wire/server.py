"""The Kafka wire-protocol listener: an asyncio TCP server in a broker's event loop.

Each connection is served by one task that reads a request frame, answers it, and reads
the next: requests of one connection are handled one at a time and answered in order,
as a Kafka broker does (so produces on one connection keep their order). Connections
are served concurrently; a long-polling fetch on one never delays another.

Connections are untrusted input, so every resource is bounded:

* a frame longer than ``max_frame_bytes`` (or shorter than a request header) closes the
  connection before its body is read;
* a connection that sends nothing for ``idle_timeout_s``, or stops halfway through a
  frame for that long, is closed;
* at most ``max_connections`` are open; a new one past that is closed at once;
* a request whose api key or version is not in ``protocol.SUPPORTED``, or whose bytes
  do not parse, closes its connection (ApiVersions excepted: it gets
  UNSUPPORTED_VERSION and the supported list, KIP-511);
* a handler that raises (a bug, or an actor failing in a way handlers.py does not map to
  an error code) closes only its own connection and is logged.

Security (wire/security.py, docs/security.md): with an ``ssl_context`` the listener
speaks TLS (a failed handshake closes the connection before any request); on a SASL
listener a connection that has not authenticated may send only ApiVersions,
SaslHandshake and SaslAuthenticate, anything else closes it; a failed authentication is
answered and then the connection closed.

Nothing here blocks the event loop: parsing and encoding are synchronous but bounded by
the frame size; every wait on an actor is an ``await``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from typing import Any

from rafka.wire import protocol
from rafka.wire.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES
from rafka.wire.security import PRE_AUTHENTICATION_KEYS, Session, current_session, start_session

logger = logging.getLogger(__name__)

PORT_SEARCH_SPAN = 100  # ports tried after the configured one when it is taken
TLS_HANDSHAKE_TIMEOUT_S = 30.0


class WireServer:
    """Serves ``apis`` (a handlers.KafkaApis) on ``host``:``port``."""

    def __init__(self, apis: Any, host: str, port: int, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, listener_name: str = "PLAINTEXT",
                 sasl: bool = False, ssl_context: ssl.SSLContext | None = None) -> None:
        self.apis = apis
        self.listener_name = listener_name
        self.sasl = sasl
        self.ssl_context = ssl_context
        self.host = host
        self.requested_port = port
        self.port = -1
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self, search_free_port: bool = True) -> int:
        """Listen on the configured port, or (``search_free_port``) the first free one of
        the ``PORT_SEARCH_SPAN`` after it; port 0 takes any free port. Returns the port."""
        attempts = 1 if self.requested_port == 0 or not search_free_port else PORT_SEARCH_SPAN
        last_error: OSError | None = None
        for port in range(self.requested_port, self.requested_port + attempts):
            try:
                tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT_S} \
                    if self.ssl_context is not None else {}
                self._server = await asyncio.start_server(self._serve, self.host, port, limit=64 * 1024, **tls)
            except OSError as error:
                last_error = error
                continue
            self.port = self._server.sockets[0].getsockname()[1]
            return self.port
        raise OSError(f"no free port for the Kafka listener on {self.host} in "
                      f"{self.requested_port}..{self.requested_port + attempts - 1}: {last_error}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        self._server = None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.max_connections:
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        start_session(Session(self.listener_name, str(peer[0]) if peer else "*", self.sasl))
        try:
            await self._serve_connection(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, protocol.FrameError,
                ssl.SSLError) as error:
            logger.debug("wire: closing connection: %r", error)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # noqa: BLE001 - one connection's failure must not reach the broker
            logger.warning("wire: closing a connection after an unexpected error: %r", error, exc_info=True)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            size_bytes = await asyncio.wait_for(reader.readexactly(4), self.idle_timeout_s)
            (size,) = struct.unpack(">i", size_bytes)
            if size < 8 or size > self.max_frame_bytes:
                raise protocol.FrameError(f"request size {size} is outside [8, {self.max_frame_bytes}]")
            frame = await asyncio.wait_for(reader.readexactly(size), self.idle_timeout_s)
            session = current_session()
            if session.raw_tokens:
                response = await self._raw_token(session, frame)
            else:
                response = await self._answer(frame)
            if response is not None:
                writer.write(response)
                await asyncio.wait_for(writer.drain(), self.idle_timeout_s)
            if session.close_after_response:
                raise ConnectionError(f"closing the connection from {session.client_host}: authentication failed "
                                      "or a SASL request out of order")

    async def _raw_token(self, session: Session, frame: bytes) -> bytes:
        """A SASL token after SaslHandshake v0: answered as a bare size-prefixed token;
        a failure closes the connection (v0 has no way to carry an error)."""
        from rafka.security.scram import AuthenticationError

        try:
            answer = await self.apis.security.step(session, frame)
        except AuthenticationError as error:
            raise ConnectionError(f"SASL authentication of {session.client_host} failed: {error}") from None
        return struct.pack(">i", len(answer)) + answer

    async def _answer(self, frame: bytes) -> bytes | None:
        api_key, api_version, correlation_id = protocol.read_header(frame)
        if api_key == protocol.API_VERSIONS_KEY and not protocol.supports(api_key, api_version):
            header = protocol.RequestHeader(api_key, 0, correlation_id, None, False)
            return protocol.encode_response(
                header, self.apis.api_versions_response(0, protocol.error_code("unsupported_version")))
        session = current_session()
        if session.sasl and not session.authenticated and api_key not in PRE_AUTHENTICATION_KEYS:
            # Kafka closes a connection that sends any other request before authenticating.
            raise protocol.FrameError(f"api key {api_key} before SASL authentication from {session.client_host}")
        header, request = protocol.parse_request(frame)
        if self.apis.security.enabled and api_key not in PRE_AUTHENTICATION_KEYS:
            await self.apis.security.refresh()
        handler = self.apis.handlers.get(api_key)
        if handler is None:
            raise protocol.FrameError(f"api key {api_key} has no handler")
        response = await handler(header, request)
        if response is None:  # acks=0 produce: Kafka sends nothing back
            return None
        return protocol.encode_response(header, response)
