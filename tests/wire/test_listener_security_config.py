"""Listener security settings (wire/config.py): Kafka-style listeners, TLS files, SASL
mechanisms and super users are validated with errors that name the bad value."""

import pytest

from rafka.wire.config import ListenerConfig


def test_listeners_parse_protocol_host_and_port():
    config = ListenerConfig(listeners=["sasl_ssl://0.0.0.0:9093", "PLAINTEXT://127.0.0.1:9092"],
                            ssl_certfile="/c.pem", ssl_keyfile="/k.pem")
    assert [(listener.protocol, listener.host, listener.port) for listener in config.parsed_listeners()] == \
        [("SASL_SSL", "0.0.0.0", 9093), ("PLAINTEXT", "127.0.0.1", 9092)]
    assert config.authorizer_enabled


def test_no_listeners_means_one_plaintext_listener_without_authorizer():
    config = ListenerConfig(host="127.0.0.1", port=9092)
    assert [(listener.protocol, listener.port) for listener in config.parsed_listeners()] == [("PLAINTEXT", 9092)]
    assert not config.authorizer_enabled


@pytest.mark.parametrize("settings, named", [
    ({"listeners": ["KERBEROS://h:1"]}, "KERBEROS"),
    ({"listeners": ["SSL://h"]}, "SSL://h"),
    ({"listeners": ["PLAINTEXT://h:1", "PLAINTEXT://h:2"]}, "one listener per protocol"),
    ({"listeners": ["SSL://h:1"]}, "ssl_certfile"),
    ({"listeners": ["SSL://h:1"], "ssl_certfile": "c.pem", "ssl_keyfile": "/k"}, "absolute"),
    ({"sasl_mechanisms": ["GSSAPI"]}, "GSSAPI"),
    ({"super_users": ["admin"]}, "'admin'"),
])
def test_listener_config_refuses_bad_security_settings_naming_them(settings, named):
    with pytest.raises(ValueError) as raised:
        ListenerConfig(**settings)
    assert named in str(raised.value)
