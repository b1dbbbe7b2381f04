"""config.py: the one config-definition mechanism, and that every configuration uses it."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from rafka.config import REQUIRED, ConfigDef, ConfigField
from rafka.errors import InvalidConfigError

TEXT = ConfigDef([
    ConfigField("count", "int", 3, "a count", min=1, max=10),
    ConfigField("ratio", "float", 0.5, "a share", min=0, max=1),
    ConfigField("retention", "int", -1, "a limit", min=0, allow_never=True),
    ConfigField("on", "bool", False),
    ConfigField("names", "list", []),
    ConfigField("mode", "str", "a", choices=("a", "b")),
    ConfigField("secret", "password"),
], subject="test config")

PYTHON = ConfigDef([
    ConfigField("count", "int", min=0),
    ConfigField("rate", "number", min=0),
    ConfigField("group", "str", nullable=True),
    ConfigField("on", "bool"),
], subject="test option", from_strings=False, strict=True)


def test_text_values_are_parsed_to_their_types_with_defaults_for_missing_keys():
    parsed = TEXT.parse({"count": " 7 ", "ratio": "0.25", "on": "Yes", "names": "x, y,,z", "secret": "s",
                         "other.key": "kept"})
    assert parsed == {"count": 7, "ratio": 0.25, "retention": -1, "on": True, "names": ["x", "y", "z"], "mode": "a",
                      "secret": "s", "other.key": "kept"}
    assert TEXT.parse({"secret": "s", "count": "", "on": None})["count"] == 3  # "" and None count as missing


@pytest.mark.parametrize(("config", "message"), [
    ({"count": "many"}, "test config 'count' must be an integer, got 'many'"),
    ({"count": 1.5}, "test config 'count' must be an integer, got 1.5"),
    ({"count": True}, "test config 'count' must be an integer, got True"),
    ({"count": "0"}, "test config 'count' must be at least 1, got '0'"),
    ({"count": 11}, "test config 'count' must be at most 10, got 11"),
    ({"ratio": "nan"}, "test config 'ratio' must be between 0 and 1, got 'nan'"),
    ({"ratio": "half"}, "test config 'ratio' must be a number, got 'half'"),
    ({"retention": "-2"}, "test config 'retention' must be at least 0 (or -1 for no limit), got '-2'"),
    ({"on": "maybe"}, "test config 'on' must be true or false, got 'maybe'"),
    ({"mode": "c"}, "test config 'mode' must be one of a, b, got 'c'"),
    ({}, "missing required configuration 'secret'"),
])
def test_bad_text_values_raise_naming_the_key_and_the_value(config, message):
    with pytest.raises(InvalidConfigError) as raised:
        TEXT.parse({"secret": "s", **config} if "secret" not in message else config)
    assert message in str(raised.value)


def test_python_values_are_not_parsed_from_text_and_unknown_keys_are_refused():
    assert PYTHON.parse_given({"count": 0, "rate": 2.5, "group": None, "on": False}) == {
        "count": 0, "rate": 2.5, "group": None, "on": False}
    for config, message in (({"count": "5"}, "test option 'count' must be an integer, got '5'"),
                            ({"rate": "fast"}, "test option 'rate' must be a number, got 'fast'"),
                            ({"rate": math.nan}, "test option 'rate' must be a number, got nan"),
                            ({"on": "true"}, "test option 'on' must be true or false, got 'true'"),
                            ({"group": 7}, "test option 'group' must be a str, got 7"),
                            ({"cuont": 1}, "unknown test option 'cuont'; known: count, group, on, rate")):
        with pytest.raises(InvalidConfigError) as raised:
            PYTHON.parse_given(config)
        assert message in str(raised.value)


def test_a_validator_problem_names_the_key_and_a_custom_error_type_is_raised():
    class MyError(ValueError):
        def __init__(self, message, key):
            super().__init__(message)
            self.key = key

    definition = ConfigDef([ConfigField("port", "int", validator=lambda port: "is reserved" if port < 1024 else None)],
                           error=MyError)
    with pytest.raises(MyError, match=r"port: is reserved \(got '80'\)") as raised:
        definition.parse({"port": "80"})
    assert raised.value.key == "port"


def test_defaults_can_come_from_a_dataclass_and_build_makes_one():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        size_bytes: int = 64
        name: str = "n"

    definition = ConfigDef([ConfigField("size.bytes", "int", min=1, attribute="size_bytes"), ConfigField("name")],
                           strict=True).with_defaults_of(Settings)
    assert [field.default for field in definition.fields.values()] == [64, "n"]
    assert definition.build(Settings, {"size.bytes": "128"}) == Settings(size_bytes=128)
    assert definition.describe()[0] == {"name": "size.bytes", "type": "int", "required": False, "doc": "",
                                        "default": 64}


def test_required_survives_pickling_as_the_same_object():
    import pickle

    assert pickle.loads(pickle.dumps(REQUIRED)) is REQUIRED
    assert ConfigField("x").required and not ConfigField("x", default=None).required


def test_every_configuration_is_declared_with_the_one_mechanism():
    from rafka.client.consumer import CONSUMER_OPTIONS
    from rafka.client.producer import PRODUCER_OPTIONS
    from rafka.connect.settings import RUNTIME_CONFIG
    from rafka.storage.config import TOPIC_CONFIG
    from rafka.streams.dsl import STREAMS_OPTIONS

    for definition in (TOPIC_CONFIG, PRODUCER_OPTIONS, CONSUMER_OPTIONS, STREAMS_OPTIONS, RUNTIME_CONFIG):
        assert isinstance(definition, ConfigDef)
        assert all(field.doc for field in definition.fields.values()), definition.subject


def test_producer_consumer_and_streams_options_name_the_bad_one():
    from rafka.client.consumer import ConsumerConfig
    from rafka.client.producer import ProducerConfig
    from rafka.streams import StreamsApp

    with pytest.raises(InvalidConfigError, match="producer option 'linger_ms' must be at least 0, got -1"):
        ProducerConfig.build(linger_ms=-1)
    with pytest.raises(InvalidConfigError, match="producer option 'compression_type': must be one of none, lz4, zstd"):
        ProducerConfig.build(compression_type="gzip")
    assert ProducerConfig.build(acks="all", compression_type="lz4").acks == -1
    with pytest.raises(InvalidConfigError, match="consumer option 'group_id': must not be empty"):
        ConsumerConfig.build(group_id="")
    with pytest.raises(InvalidConfigError, match="consumer option 'max_poll_records' must be an integer, got 2.5"):
        ConsumerConfig.build(max_poll_records=2.5)
    with pytest.raises(InvalidConfigError, match="streams option 'commit_interval_ms' must be at least 1, got 0"):
        StreamsApp("app", commit_interval_ms=0)


def test_importing_the_config_mechanism_loads_no_ray():
    script = ("import sys, rafka.config, rafka.storage.config, rafka.connect.config\n"
              "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                          text=True).stdout.strip() == "False"
