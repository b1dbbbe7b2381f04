"""Fixtures for the Connect tests: one real PostgreSQL server for the session."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from postgres_server import PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of an empty database on a PostgreSQL server started for this session
    (stopped at the end, even when a test or the start itself failed)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
