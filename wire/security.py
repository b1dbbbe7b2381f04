"""Authentication (SASL) and authorization (ACLs) on the Kafka listeners.

Every connection has a ``Session`` (its listener, the client's address, the principal
once known), set in a context variable by the server for the connection's task, so
handlers reach it with ``current_session()`` without it passing through every call.

* **PLAINTEXT / SSL** listeners: every connection is ``User:ANONYMOUS`` at once (TLS
  client certificates are not used for identity).
* **SASL_PLAINTEXT / SASL_SSL**: until a SASL exchange succeeds the connection may only
  send ApiVersions, SaslHandshake (v0-1) and SaslAuthenticate (v0-2); anything else
  closes it, as Kafka does. PLAIN and SCRAM-SHA-256/512 check against the SCRAM
  credentials in the controller's metadata (``rafka.security.scram``). A failed
  exchange answers SASL_AUTHENTICATION_FAILED with Kafka's message and then closes the
  connection. SaslHandshake v0 (tokens framed without Kafka headers) is served too.
* **ACLs** (when ``ListenerConfig.authorizer_enabled``): ``allowed(operation,
  resource_type, name)`` asks ``rafka.security.acl.Authorizer`` for the session's
  principal and host. With the authorizer off everything is allowed.

The credentials and ACLs are cached from the controller for at most ``CACHE_TTL_S``.
The controller tells every alive broker when they change (``invalidate``) before its
call returns, so a change applies to the next request; a broker that missed the news
(unreachable then) catches up within ``CACHE_TTL_S``. Requests already being answered
finish under the rules they started with.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import time
from typing import Any

from rafka.security.acl import Authorizer
from rafka.security.scram import AuthenticationError, ScramServer, verify_plain
from rafka.wire import protocol

logger = logging.getLogger(__name__)

E = protocol.error_code
CACHE_TTL_S = 1.0
ANONYMOUS = "User:ANONYMOUS"
# What a SASL listener answers before the client authenticated: ApiVersions, SaslHandshake, SaslAuthenticate.
PRE_AUTHENTICATION_KEYS = frozenset({18, 17, 36})


@dataclasses.dataclass
class Session:
    listener: str
    client_host: str
    sasl: bool
    principal: str = ANONYMOUS
    authenticated: bool = False
    mechanism: str | None = None
    handshake_version: int = 1
    scram: ScramServer | None = None
    close_after_response: bool = False

    @property
    def raw_tokens(self) -> bool:
        """After SaslHandshake v0 the SASL tokens come as bare size-prefixed frames."""
        return self.sasl and not self.authenticated and self.mechanism is not None and self.handshake_version == 0


_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("rafka_wire_session", default=None)


def start_session(session: Session) -> None:
    _SESSION.set(session)


def current_session() -> Session | None:
    return _SESSION.get()


class WireSecurity:
    """One per broker (``KafkaApis.security``)."""

    def __init__(self, apis: Any, settings: Any) -> None:
        self.apis = apis
        self.settings = settings
        self.enabled = bool(settings is not None and settings.authorizer_enabled)
        self.mechanisms = tuple(settings.sasl_mechanisms) if settings is not None else ()
        self._credentials: dict = {}
        self._authorizer = Authorizer([])
        self._loaded_at_s = -1e9
        self._generation = 0  # bumped by invalidate(); a refresh that raced one stays stale
        self._lock = asyncio.Lock()

    # -- cache -----------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at_s < CACHE_TTL_S:
            return
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at_s < CACHE_TTL_S:
                return
            generation = self._generation
            state = await self.apis._controller().security_state.remote()
            self._credentials = state["scram_credentials"]
            self._authorizer = Authorizer(state["acls"], self.settings.super_users if self.settings else (),
                                          self.settings.allow_everyone_if_no_acl_found if self.settings else False)
            if generation == self._generation:
                self._loaded_at_s = time.monotonic()

    def invalidate(self) -> None:
        """The controller's credentials or ACLs changed: reload before the next request."""
        self._generation += 1
        self._loaded_at_s = -1e9

    def _lookup(self, user: str, mechanism: str) -> dict | None:
        stored = self._credentials.get(user, {}).get(mechanism)
        return None if stored is None else {"mechanism": mechanism, **stored}

    # -- authorization ---------------------------------------------------------------

    def allowed(self, operation: str, resource_type: str, name: str) -> bool:
        if not self.enabled:
            return True
        session = current_session()
        principal, host = (session.principal, session.client_host) if session else (ANONYMOUS, "*")
        return self._authorizer.authorize(principal, host, operation, resource_type, name)

    def allowed_any(self, operation: str, resource_type: str) -> bool:
        if not self.enabled:
            return True
        session = current_session()
        principal, host = (session.principal, session.client_host) if session else (ANONYMOUS, "*")
        return self._authorizer.authorize_any(principal, host, operation, resource_type)

    # -- SASL --------------------------------------------------------------------------

    async def sasl_handshake(self, header: protocol.RequestHeader, request: Any) -> Any:
        session = current_session()
        data = {"error_code": 0, "mechanisms": list(self.mechanisms)}
        if session is None or not session.sasl or session.authenticated or session.mechanism is not None:
            data["error_code"] = E("illegal_sasl_state")
            session and setattr(session, "close_after_response", True)
        elif request.mechanism not in self.mechanisms:
            data["error_code"] = E("unsupported_sasl_mechanism")
            session.close_after_response = True
        else:
            session.mechanism = request.mechanism
            session.handshake_version = header.api_version
        return protocol.build(protocol.response_class(17, header.api_version), data)

    async def sasl_authenticate(self, header: protocol.RequestHeader, request: Any) -> Any:
        session = current_session()
        data = {"error_code": 0, "error_message": None, "auth_bytes": b"", "session_lifetime": 0}
        if session is None or not session.sasl or session.authenticated or session.mechanism is None \
                or session.handshake_version == 0:
            data.update(error_code=E("illegal_sasl_state"), error_message="SaslAuthenticate before SaslHandshake "
                        "v1, or after authentication")
            if session is not None:
                session.close_after_response = True
        else:
            try:
                data["auth_bytes"] = await self.step(session, bytes(request.auth_bytes))
            except AuthenticationError as error:
                data.update(error_code=E("sasl_authentication_failed"), error_message=str(error))
                session.close_after_response = True
        return protocol.build(protocol.response_class(36, header.api_version), data)

    async def step(self, session: Session, token: bytes) -> bytes:
        """One SASL token from the client; the server's answer, or AuthenticationError."""
        if session.mechanism == "PLAIN":
            user = await self._with_user(lambda: verify_plain(token, self._lookup), _plain_user(token))
            self._authenticated(session, user)
            return b""
        if session.scram is None:
            session.scram = ScramServer(session.mechanism, self._lookup)
            return await self._with_user(lambda: session.scram.first(token), _scram_user(token))
        answer = await asyncio.to_thread(session.scram.final, token)
        self._authenticated(session, session.scram.user)
        return answer

    async def _with_user(self, work, user: str | None):
        await self.refresh()
        if user is not None and user not in self._credentials:
            await self.refresh(force=True)  # a user created since the last refresh
        return await asyncio.to_thread(work)  # PBKDF2 for PLAIN: off the event loop

    def _authenticated(self, session: Session, user: str) -> None:
        session.authenticated = True
        session.principal = f"User:{user}"
        session.scram = None
        logger.debug("wire: %s authenticated %s with %s", session.client_host, session.principal, session.mechanism)


def _plain_user(token: bytes) -> str | None:
    parts = token.split(b"\0")
    return parts[1].decode(errors="replace") if len(parts) == 3 else None


def _scram_user(token: bytes) -> str | None:
    for part in token.decode(errors="replace").split(","):
        if part.startswith("n=") and len(part) > 2:
            return part[2:].replace("=2C", ",").replace("=3D", "=")
    return None
