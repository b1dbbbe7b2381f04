"""Converters: round trips, tombstones, errors that name the value, resolution from a
connector config."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from rafka.connect.converters import (
    BytesConverter,
    Converter,
    JsonConverter,
    StringConverter,
    build_converter,
    converter_from_config,
    converter_plugins,
)
from rafka.connect.errors import ConnectorConfigError, PluginNotFoundError


def make(cls, config=None, is_key=False):
    converter = cls()
    converter.configure(config or {}, is_key)
    return converter


class UpperConverter(Converter):
    """A user converter, resolved by its import path."""

    def from_value(self, topic, value):
        return None if value is None else value.upper().encode()

    def to_value(self, topic, data):
        return None if data is None else data.decode()


# -- bytes ---------------------------------------------------------------------------


def test_bytes_converter_passes_bytes_through():
    converter = make(BytesConverter)
    assert converter.from_value("t", b"\x00\xff") == b"\x00\xff"
    assert converter.to_value("t", b"\x00\xff") == b"\x00\xff"


def test_bytes_converter_turns_bytearray_and_memoryview_into_bytes():
    converter = make(BytesConverter)
    assert converter.from_values("t", [bytearray(b"ab"), memoryview(b"cd")]) == [b"ab", b"cd"]


def test_bytes_converter_keeps_none():
    converter = make(BytesConverter)
    assert converter.from_value("t", None) is None and converter.to_value("t", None) is None


def test_bytes_converter_refuses_str_naming_the_type():
    with pytest.raises(TypeError, match="got str for a value of topic 'orders'"):
        make(BytesConverter).from_value("orders", "text")


# -- string --------------------------------------------------------------------------


def test_string_converter_round_trips_unicode():
    converter = make(StringConverter)
    assert converter.from_value("t", "héllo ✓") == "héllo ✓".encode()
    assert converter.to_value("t", converter.from_value("t", "héllo ✓")) == "héllo ✓"


def test_string_converter_writes_numbers_with_str():
    assert make(StringConverter).from_values("t", [12, 1.5, b"raw"]) == [b"12", b"1.5", b"raw"]


def test_string_converter_keeps_none():
    converter = make(StringConverter)
    assert converter.from_value("t", None) is None and converter.to_value("t", None) is None


def test_string_converter_uses_configured_encoding():
    converter = make(StringConverter, {"encoding": "utf-16-le"})
    assert converter.from_value("t", "é") == "é".encode("utf-16-le")
    assert converter.to_value("t", "é".encode("utf-16-le")) == "é"


def test_string_converter_refuses_dict_naming_the_type():
    with pytest.raises(TypeError, match="got dict for a key of topic 't'"):
        make(StringConverter, is_key=True).from_value("t", {"a": 1})


def test_string_converter_rejects_undecodable_bytes_showing_them():
    with pytest.raises(ValueError, match=r"not utf-8 text.*first bytes b'\\xff\\xfe'"):
        make(StringConverter).to_value("t", b"\xff\xfe")


def test_string_converter_rejects_unknown_encoding():
    with pytest.raises(ConnectorConfigError) as raised:
        build_converter("string", {"encoding": "no-such-codec"}, is_key=True)
    assert raised.value.field == "key.converter.encoding"


# -- json ----------------------------------------------------------------------------


def test_json_converter_writes_compact_utf8_without_escapes():
    assert make(JsonConverter).from_value("t", {"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'.encode()


def test_json_converter_round_trips_nested_values():
    converter = make(JsonConverter)
    value = {"a": [1, 2.5, None, True], "b": {"c": "✓"}}
    assert converter.to_value("t", converter.from_value("t", value)) == value


def test_json_converter_keeps_none():
    converter = make(JsonConverter)
    assert converter.from_value("t", None) is None and converter.to_value("t", None) is None


def test_json_converter_writes_bytes_as_base64():
    assert make(JsonConverter).from_value("t", {"blob": b"\x00\x01"}) == b'{"blob":"AAE="}'


def test_json_converter_rejects_invalid_json_showing_first_bytes():
    with pytest.raises(ValueError, match=r"topic 'orders' is not valid JSON.*first bytes b'\{oops'"):
        make(JsonConverter).to_value("orders", b"{oops")


def test_json_converter_rejects_nan():
    with pytest.raises(ValueError, match="topic 't'"):
        make(JsonConverter).from_value("t", float("nan"))


def test_json_converter_refuses_a_set_naming_the_type():
    with pytest.raises(TypeError, match="set"):
        make(JsonConverter).from_value("t", {1, 2})


def test_json_converter_wraps_value_in_envelope_when_schemas_enabled():
    data = make(JsonConverter, {"schemas.enable": "true"}).from_value("t", {"id": 7, "name": "x"})
    assert json.loads(data) == {
        "schema": {"type": "struct", "optional": False, "fields": [
            {"field": "id", "type": "int64", "optional": True},
            {"field": "name", "type": "string", "optional": True}]},
        "payload": {"id": 7, "name": "x"}}


def test_json_converter_round_trips_bytes_through_envelope():
    converter = make(JsonConverter, {"schemas.enable": True})
    value = {"blob": b"\x00\xff", "list": [b"a"], "score": 1.5, "ok": False, "none": None}
    assert converter.to_value("t", converter.from_value("t", value)) == value


def test_json_converter_reads_plain_json_when_schemas_enabled():
    assert make(JsonConverter, {"schemas.enable": True}).to_value("t", b'{"a":1}') == {"a": 1}


def test_json_converter_leaves_envelope_alone_when_schemas_disabled():
    data = b'{"schema":{"type":"string"},"payload":"x"}'
    assert make(JsonConverter).to_value("t", data) == {"schema": {"type": "string"}, "payload": "x"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(json_values, max_size=5), st.booleans())
def test_json_converter_round_trips_any_json_value(values, schemas_enable):
    converter = make(JsonConverter, {"schemas.enable": schemas_enable})
    assert converter.to_values("t", converter.from_values("t", values)) == values


# -- resolution ----------------------------------------------------------------------


@pytest.mark.parametrize("spec, cls", [
    ("bytes", BytesConverter), ("string", StringConverter), ("json", JsonConverter),
    ("org.apache.kafka.connect.converters.ByteArrayConverter", BytesConverter),
    ("org.apache.kafka.connect.storage.StringConverter", StringConverter),
    ("org.apache.kafka.connect.json.JsonConverter", JsonConverter),
    ("rafka.connect.converters.JsonConverter", JsonConverter),
    ("rafka.connect.converters:StringConverter", StringConverter),
])
def test_build_converter_resolves_alias_kafka_name_and_path(spec, cls):
    assert type(build_converter(spec, {}, is_key=False)) is cls


def test_build_converter_resolves_user_class_by_path():
    converter = build_converter(f"{__name__}:UpperConverter", {}, is_key=False)
    assert converter.from_value("t", "abc") == b"ABC"


def test_build_converter_rejects_unknown_name_naming_it():
    with pytest.raises(PluginNotFoundError, match="'avro'") as raised:
        build_converter("avro", {}, is_key=False)
    assert raised.value.field == "value.converter"


def test_build_converter_rejects_class_that_is_not_a_converter():
    with pytest.raises(PluginNotFoundError) as raised:
        build_converter("collections.OrderedDict", {}, is_key=True)
    assert raised.value.field == "key.converter"


def test_converter_from_config_defaults_to_string_key_and_json_value():
    assert type(converter_from_config({}, is_key=True)) is StringConverter
    assert type(converter_from_config({}, is_key=False)) is JsonConverter


def test_converter_from_config_passes_prefixed_settings():
    converter = converter_from_config({"value.converter": "json", "value.converter.schemas.enable": "true",
                                       "key.converter.schemas.enable": "false"}, is_key=False)
    assert converter.schemas_enable is True


def test_converter_from_config_names_full_key_of_bad_setting():
    with pytest.raises(ConnectorConfigError) as raised:
        converter_from_config({"value.converter.schemas.enable": "maybe"}, is_key=False)
    assert raised.value.field == "value.converter.schemas.enable"


def test_converter_plugins_lists_builtins_with_config():
    plugins = {plugin["class"]: plugin for plugin in converter_plugins()}
    json_plugin = plugins["org.apache.kafka.connect.json.JsonConverter"]
    assert json_plugin["type"] == "converter" and "json" in json_plugin["aliases"]
    assert [field["name"] for field in json_plugin["config"]] == ["schemas.enable"]
