"""TLS for the ``SSL`` and ``SASL_SSL`` listeners: a server-side ``ssl.SSLContext``
from the cluster's ``ssl_certfile`` / ``ssl_keyfile`` (PEM; the certificate file may
hold the chain). TLS 1.2 or newer, Python's default ciphers; client certificates are
not asked for. A missing or unreadable file raises ValueError naming it, so the broker
logs why its listener did not start.
"""

from __future__ import annotations

import ssl
from typing import Any


def server_context(settings: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot load the listener's TLS certificate {settings.ssl_certfile!r} and key "
                         f"{settings.ssl_keyfile!r}: {error}") from None
    return context
