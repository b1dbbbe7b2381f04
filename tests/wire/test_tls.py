"""The TLS listener's handshake on its own (no Ray): a client refuses a server whose
certificate has expired, and a listener whose certificate files do not load says so."""

import asyncio
import socket
import ssl
import threading
import types

import certs
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from rafka.wire import tls
from rafka.wire.security import WireSecurity
from rafka.wire.server import WireServer


@pytest.fixture
def expired_listener(tmp_path):
    """A TLS WireServer with an expired certificate, in an event loop of its own thread.
    No request ever reaches its handlers: the handshake fails first."""
    ca_path, ca_key, ca_certificate = certs.make_ca(str(tmp_path))
    cert_path, key_path = certs.make_server_cert(str(tmp_path), ca_key, ca_certificate, expired=True)
    settings = types.SimpleNamespace(ssl_certfile=cert_path, ssl_keyfile=key_path)
    apis = types.SimpleNamespace(handlers={}, security=WireSecurity(None, None))
    server = WireServer(apis, "127.0.0.1", 0, listener_name="SSL", ssl_context=tls.server_context(settings))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
    yield f"127.0.0.1:{port}", ca_path
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)


def test_client_refuses_a_listener_with_an_expired_certificate(expired_listener):
    bootstrap, ca_path = expired_listener
    errors = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": ca_path,
                         "error_cb": errors.append})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    admin.poll(1.0)
    assert any("certificate verify failed" in error.str() for error in errors), [e.str() for e in errors]
    # librdkafka does not say why verification failed; OpenSSL through Python does.
    context = ssl.create_default_context(cafile=ca_path)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError) as raised:
            context.wrap_socket(raw, server_hostname="localhost")
    assert raised.value.verify_message == "certificate has expired"


def test_server_context_names_a_missing_certificate_file(tmp_path):
    settings = types.SimpleNamespace(ssl_certfile=str(tmp_path / "missing.pem"), ssl_keyfile=str(tmp_path / "k"))
    with pytest.raises(ValueError, match="missing.pem"):
        tls.server_context(settings)
