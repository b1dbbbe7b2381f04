"""Connector configs, fuzzed (issue 21): seeded random mutations of valid configs go
through ``settings.validate`` exactly as the herder runs it on a REST body. Each is
either accepted or refused with a ``ConnectorConfigError`` with a message; nothing
else is raised, and validating creates no file."""

from __future__ import annotations

import os
import random

from rafka.connect import ConnectorConfigError
from rafka.connect.policy import ConnectPolicy
from rafka.connect.settings import validate

FUZZ_SEED = 2121
FUZZ_CASES = 600
KEYS = ["connector.class", "tasks.max", "topics", "topics.regex", "topic", "file", "files", "key.converter",
        "value.converter", "transforms", "transforms.t.type", "transforms.t.field", "errors.tolerance",
        "errors.deadletterqueue.topic.name", "path", "flush.size", "partition.by", "batch.size", "name",
        "producer.override.", "value.converter.schemas.enable", "format", "poll.interval.ms"]
VALUES = [None, True, False, 0, -1, 2**63, 1.5, float("nan"), "", " ", "x" * 70_000, "a\x00b", "../../etc/passwd",
          "/etc/passwd", "json", "string", "bytes", "FileSource", "FileSink", "ParquetSink", "os.system",
          "json.JSONDecoder", "rafka.connect.connectors.file:FileSinkConnector", "InsertField$Value", "Filter",
          "[", "(?P<", "all", "none", "s3://bucket/x", "file:///etc", [], ["a", "b"], [1, None], {"k": "v"},
          "\ud800", "t1,t2", "1e9", "9" * 40]


def _valid(tmp_path) -> list[dict]:
    return [
        {"connector.class": "FileSink", "topics": "t", "file": str(tmp_path / "out.txt")},
        {"connector.class": "FileSource", "topic": "t", "file": str(tmp_path / "in.txt")},
        {"connector.class": "ParquetSink", "topics": "t", "path": str(tmp_path / "dataset")},
    ]


def test_fuzzed_connector_configs_are_accepted_or_refused_naming_a_key(tmp_path):
    rng = random.Random(FUZZ_SEED)
    policy = ConnectPolicy.build(file_roots=[str(tmp_path)])
    inside_before = sorted(os.listdir(tmp_path))
    refused = 0
    for case in range(FUZZ_CASES):
        config = dict(rng.choice(_valid(tmp_path)))
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(KEYS)
            if rng.random() < 0.15:
                config.pop(key, None)
            else:
                config[key] = rng.choice(VALUES)
        try:
            validate("fuzz", config, {}, policy)
        except ConnectorConfigError as error:
            assert str(error), f"case {case}: {config!r} refused without a message"
            refused += 1
        except Exception as error:  # noqa: BLE001 - the failure this test looks for
            raise AssertionError(f"case {case}: {config!r} raised {type(error).__name__}: {error}") from error
    assert refused > FUZZ_CASES // 2
    assert sorted(os.listdir(tmp_path)) == inside_before  # validating creates no file
