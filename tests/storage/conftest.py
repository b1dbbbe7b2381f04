"""Factories for storage tests: a manual clock and logs on ``tmp_path``."""

from __future__ import annotations

import pytest

from rafka.storage import Log, LogConfig, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def open_log(tmp_path, clock):
    """open_log(**config) opens (or reopens) the log in ``tmp_path/log``; config keys use
    underscores for dots (``segment_bytes=4096``)."""
    opened: list[Log] = []

    def factory(directory=None, **config) -> Log:
        settings = {key.replace("_", "."): value for key, value in config.items()}
        log = Log(str(directory or tmp_path / "log"), LogConfig.from_dict(settings), clock)
        opened.append(log)
        return log

    yield factory
