"""Fixtures for the wire-protocol tests: the shared cluster's Kafka listeners. The raw
protocol client (wire_client.py) next to the tests imports as a plain module."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="session")
def bootstrap(cluster) -> str:
    servers = cluster.bootstrap_servers
    assert servers, "the shared cluster's brokers have no Kafka listener"
    return servers
