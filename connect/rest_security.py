"""Who may use the Connect REST API, and what a request must look like.

Every request passes these checks, in this order, before any handler runs:

1. ``Host`` must be an address the API was bound to (``127.0.0.1``, ``localhost`` or
   ``[::1]`` for a loopback bind, the bound address otherwise; any for a wildcard bind,
   which requires a credential): a DNS-rebinding page reaches the port under its own
   name and is refused with 421.
2. A request carrying an ``Origin`` other than the API's own (or
   ``Sec-Fetch-Site: cross-site``) is refused with 403, and so is every ``OPTIONS``
   (CORS preflight): no answer ever carries ``Access-Control-Allow-*``, so a browser
   never lets a page read or write the API.
3. With a credential configured, ``Authorization: Bearer <token>`` or HTTP basic auth
   whose password is the token (any user name) is required; anything else gets 401.
   The comparison takes constant time.
4. A ``POST``/``PUT`` with a body must say ``Content-Type: application/json`` (415
   otherwise): a web page can send ``text/plain`` without a CORS preflight, never
   ``application/json``.

The credential is a token read from ``RAFKA_CONNECT_TOKEN`` or from the file that
``RAFKA_CONNECT_TOKEN_FILE`` names (or given to ``Connect.start``). Binding to anything
but a loopback address without one is refused (``check_bind``). See docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from typing import Callable

from aiohttp import web

from rafka.connect.errors import ConnectError

TOKEN_ENV = "RAFKA_CONNECT_TOKEN"
TOKEN_FILE_ENV = "RAFKA_CONNECT_TOKEN_FILE"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
MAX_TOKEN_BYTES = 4096


def read_token_file(path: str) -> str:
    """The token in file ``path`` (surrounding whitespace removed); ValueError naming
    the file when it cannot be read or holds none."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            token = handle.read(MAX_TOKEN_BYTES + 1).strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the Connect REST token file {path!r}: {error}") from None
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise ValueError(f"the Connect REST token file {path!r} must hold a token of 1 to {MAX_TOKEN_BYTES} characters")
    return token


def load_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The credential: ``token``, else the file ``token_file``, else
    ``RAFKA_CONNECT_TOKEN``, else the file ``RAFKA_CONNECT_TOKEN_FILE`` names; None when
    none is set."""
    if token is not None:
        if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN_BYTES or any(
                ch.isspace() for ch in token.strip()):
            raise ValueError(f"a Connect REST token is 1 to {MAX_TOKEN_BYTES} characters without spaces")
        return token.strip()
    if token_file:
        return read_token_file(token_file)
    if os.environ.get(TOKEN_ENV, "").strip():
        return load_token(os.environ[TOKEN_ENV])
    if os.environ.get(TOKEN_FILE_ENV, "").strip():
        return read_token_file(os.environ[TOKEN_FILE_ENV])
    return None


def is_loopback(host: str) -> bool:
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a credential."""
    if not isinstance(host, str):
        raise ValueError(f"rest_host must be a host name or address, got {host!r}")
    if token is None and not is_loopback(host):
        raise ConnectError(
            f"refusing to serve the Connect REST API on {host!r} without a credential: anyone who reaches it could "
            f"create connectors. Set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or pass rest_token) or bind to 127.0.0.1")


def allowed_hosts(bind_host: str) -> frozenset[str] | None:
    """The ``Host`` names a request may carry (port removed), or None for any."""
    if bind_host in WILDCARD_HOSTS:
        return None
    if is_loopback(bind_host):
        return LOOPBACK_NAMES | {bind_host.strip("[]")}
    return frozenset({bind_host.strip("[]").lower()})


def _host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:8083`` → ``::1``, ``a.b:80`` → ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error_code": status, "message": message}, status=status, headers=headers)


def _authorized(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _user, separator, password = decoded.partition(":")
        return bool(separator) and hmac.compare_digest(password.encode(), token.encode())
    return False


def guard(bind_host: str, token: str | None) -> Callable:
    """The aiohttp middleware that runs the checks in the module docstring."""
    check_bind(bind_host, token)
    hosts = allowed_hosts(bind_host)

    @web.middleware
    async def middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if hosts is not None and _host_name(host) not in hosts:
            return _error(421, f"Host {host!r} is not this API's address ({', '.join(sorted(hosts))}); "
                               "a page reaching the API under another name is refused")
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            return _error(403, "cross-origin requests are refused: the Connect REST API allows no CORS")
        if origin is not None and origin.lower() != f"{request.scheme}://{host}".lower():
            return _error(403, f"a request from origin {origin!r} is refused: the Connect REST API takes no "
                               "cross-origin requests")
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return _error(403, "a cross-site request is refused (Sec-Fetch-Site: cross-site)")
        if token is not None and not _authorized(request.headers.get("Authorization", ""), token):
            return _error(401, f"missing or wrong credential: send 'Authorization: Bearer <token>' (the token in "
                               f"{TOKEN_ENV} or {TOKEN_FILE_ENV} where Connect was started)",
                          **{"WWW-Authenticate": 'Bearer realm="rafka-connect"'})
        if request.method in ("POST", "PUT", "PATCH") and (request.can_read_body or request.content_length):
            if request.content_type != "application/json":
                return _error(415, f"a request body must be sent as Content-Type: application/json, got "
                                   f"{request.headers.get('Content-Type', 'none')!r}")
        return await handler(request)

    return middleware
