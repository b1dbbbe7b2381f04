"""The listener itself: where it listens, and that ApiVersions tells the truth."""

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader
from wire_client import WireSocket, api_versions_request, request_frame

from rafka.wire import protocol
from rafka.wire.config import ListenerConfig


def test_bootstrap_servers_lists_one_loopback_listener_per_broker(cluster, bootstrap):
    servers = bootstrap.split(",")
    assert len(servers) == len(cluster.brokers()) == 2
    assert all(server.startswith("127.0.0.1:") for server in servers)
    assert len(set(servers)) == 2


def test_api_versions_lists_exactly_the_supported_apis(bootstrap):
    connection = WireSocket(bootstrap)
    try:
        correlation_id, response = connection.call(api_versions_request(3), correlation_id=77)
    finally:
        connection.close()
    assert correlation_id == 77
    assert response.error_code.value == 0
    assert {key.api_key: (key.min_version, key.max_version) for key in response.api_keys} == protocol.SUPPORTED


def test_api_versions_of_an_unknown_version_answers_unsupported_version_in_v0(bootstrap):
    connection = WireSocket(bootstrap)
    try:
        # v4 of ApiVersions exists in Kafka but not here: KIP-511 says answer in v0.
        request = load_request_schema(18, 4)(client_software_name="x", client_software_version="1")
        connection.send(request_frame(request, correlation_id=5))
        frame = connection.read_frame()
    finally:
        connection.close()
    response, _ = entity_reader(load_response_schema(18, 0))(frame, 4)
    assert response.error_code.name == "unsupported_version"
    assert {key.api_key for key in response.api_keys} == set(protocol.SUPPORTED)


def test_every_supported_version_has_kio_schemas():
    for api_key, (low, high) in protocol.SUPPORTED.items():
        for version in range(low, high + 1):
            assert protocol.request_class(api_key, version).__version__ == version
            assert protocol.response_class(api_key, version).__version__ == version


@pytest.mark.parametrize("bad", [{"port": -1}, {"port": 70000}, {"port": "9092"}, {"host": ""},
                                 {"max_frame_bytes": 10}, {"advertised_host": ""}])
def test_listener_config_rejects_bad_values_by_name(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name.replace("_", " ") if name != "max_frame_bytes" else name):
        ListenerConfig(**bad)


def test_listener_config_gives_broker_i_port_plus_i():
    assert ListenerConfig(port=9092).port_for(2) == 9094
    assert ListenerConfig(port=0).port_for(2) == 0
