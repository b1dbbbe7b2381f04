"""Single-message transforms: each built-in on source and sink records, chains, and
config errors that name the full key."""

import copy

import pytest

from rafka.connect.api import SinkRecord, SourceRecord
from rafka.connect.errors import ConnectorConfigError, PluginNotFoundError
from rafka.connect.transforms import (
    Filter,
    InsertField,
    Transform,
    TransformError,
    apply_transforms,
    apply_transforms_batch,
    build_transforms,
    register_transform,
    transform_plugins,
)

TIMESTAMP_MS = 1_700_000_000_123  # 2023-11-14 22:13:20.123 UTC


def sink_record(value, key=None, topic="orders", timestamp_ms=TIMESTAMP_MS):
    return SinkRecord(topic=topic, partition=3, offset=42, timestamp_ms=timestamp_ms, key=key, value=value)


def source_record(value, key=None, topic="orders", timestamp_ms=TIMESTAMP_MS):
    return SourceRecord(source_partition={"file": "a"}, source_offset={"line": 1}, topic=topic, value=value,
                        key=key, timestamp_ms=timestamp_ms)


def one(type_name, **settings):
    """The single transform ``type_name`` configured with ``settings`` (dots as ``__``)."""
    config = {"transforms": "t", "transforms.t.type": type_name}
    config.update({f"transforms.t.{name.replace('__', '.')}": value for name, value in settings.items()})
    [transform] = build_transforms(config)
    return transform


class Uppercase(Transform):
    """A user SMT: uppercases the string value."""

    def apply(self, record):
        import dataclasses

        return dataclasses.replace(record, value=record.value.upper())


# -- InsertField ---------------------------------------------------------------------


def test_insert_field_adds_record_properties_to_sink_value():
    transform = one("InsertField$Value", topic__field="t", partition__field="p", offset__field="o",
                    timestamp__field="ts", static__field="origin", static__value="db1")
    assert transform.apply(sink_record({"id": 1})).value == {
        "id": 1, "t": "orders", "p": 3, "o": 42, "ts": TIMESTAMP_MS, "origin": "db1"}


def test_insert_field_skips_offset_on_source_record():
    transform = one("InsertField", topic__field="t", offset__field="o")
    assert transform.apply(source_record({"id": 1})).value == {"id": 1, "t": "orders"}


def test_insert_field_rejects_source_record_when_offset_required():
    with pytest.raises(TransformError, match="offset"):
        one("InsertField", offset__field="o!").apply(source_record({"id": 1}))


def test_insert_field_leaves_input_record_unchanged():
    record = sink_record({"id": 1, "nested": {"a": 1}})
    before = copy.deepcopy(record)
    one("InsertField$Value", static__field="x", static__value="y").apply(record)
    assert record == before


def test_insert_field_key_variant_edits_key():
    record = one("org.apache.kafka.connect.transforms.InsertField$Key", topic__field="t").apply(
        sink_record({"v": 1}, key={"id": 9}))
    assert record.key == {"id": 9, "t": "orders"} and record.value == {"v": 1}


def test_insert_field_rejects_non_dict_value_naming_topic():
    with pytest.raises(TransformError, match="topic 'orders' has a str"):
        one("InsertField", topic__field="t").apply(sink_record("plain text"))


def test_insert_field_passes_tombstone_through():
    record = sink_record(None)
    assert one("InsertField", topic__field="t").apply(record) is record


def test_insert_field_rejects_static_value_without_field():
    with pytest.raises(ConnectorConfigError) as raised:
        one("InsertField", static__value="y")
    assert raised.value.field == "transforms.t.static.field"


# -- ReplaceField --------------------------------------------------------------------


def test_replace_field_renames_and_excludes():
    transform = one("ReplaceField$Value", renames="a:alpha,b:beta", exclude="secret")
    assert transform.apply(sink_record({"a": 1, "b": 2, "secret": 3, "c": 4})).value == {"alpha": 1, "beta": 2, "c": 4}


def test_replace_field_keeps_only_included_fields():
    record = one("ReplaceField", include=["id", "name"]).apply(source_record({"id": 1, "name": "x", "extra": 2}))
    assert record.value == {"id": 1, "name": "x"}


def test_replace_field_accepts_kafka_older_names():
    transform = one("org.apache.kafka.connect.transforms.ReplaceField$Value", whitelist="a,b", blacklist="b")
    assert transform.apply(sink_record({"a": 1, "b": 2, "c": 3})).value == {"a": 1}


def test_replace_field_key_variant_edits_key():
    record = one("ReplaceField$Key", renames="id:key_id").apply(sink_record({"id": 1}, key={"id": 2}))
    assert record.key == {"key_id": 2} and record.value == {"id": 1}


def test_replace_field_leaves_input_record_unchanged():
    record = source_record({"a": 1, "b": 2})
    before = copy.deepcopy(record)
    one("ReplaceField", exclude="a").apply(record)
    assert record == before


def test_replace_field_rejects_malformed_rename_naming_full_key():
    with pytest.raises(ConnectorConfigError, match="old:new") as raised:
        one("ReplaceField", renames="a-b")
    assert raised.value.field == "transforms.t.renames"


# -- Filter --------------------------------------------------------------------------


@pytest.mark.parametrize("op, value, field_value, matches", [
    ("==", "5", 5, True), ("==", "5", 5.0, True), ("!=", "5", 6, True),
    ("<", "10", 9, True), ("<", "10", 10, False), ("<=", "10", 10, True),
    (">", "9", 10, True), (">=", "10.5", 10, False),
    ("==", "EU", "EU", True), ("<", "b", "a", True), ("==", "true", True, True),
    ("contains", "rush", "in a rush", True), ("contains", "x", ["x", "y"], True), ("contains", "z", ["x"], False),
    ("regex", "^ord-[0-9]+$", "ord-17", True), ("regex", "^ord-[0-9]+$", "ord-x", False),
])
def test_filter_compares_with_op(op, value, field_value, matches):
    transform = one("Filter", field="f", op=op, value=value)
    assert transform.matches({"f": field_value}) is matches


def test_filter_compares_numbers_numerically_not_as_text():
    # As text "9" > "10"; as numbers 9 < 10.
    assert one("Filter", field="n", op="<", value="10").matches({"n": 9})


def test_filter_follows_dotted_path():
    transform = one("Filter", field="customer.address.country", op="==", value="FR")
    assert transform.matches({"customer": {"address": {"country": "FR"}}})
    assert not transform.matches({"customer": {"address": "FR"}})


def test_filter_prefers_literal_key_with_dots():
    assert one("Filter", field="a.b", op="==", value="1").matches({"a.b": 1, "a": {"b": 2}})


def test_filter_exists_and_missing_test_presence():
    assert one("Filter", field="a.b", op="exists").matches({"a": {"b": None}})
    assert one("Filter", field="a.b", op="missing").matches({"a": {}})
    assert one("Filter", field="a", op="missing").matches("not a dict")


def test_filter_does_not_match_missing_field_with_comparison():
    assert not one("Filter", field="a", op="!=", value="1").matches({"b": 1})


def test_filter_drops_matching_records_by_default():
    transform = one("Filter", field="status", op="==", value="test")
    assert transform.apply(sink_record({"status": "test"})) is None
    assert transform.apply(sink_record({"status": "live"})) is not None


def test_filter_keeps_only_matching_records_with_include():
    transform = one("Filter", field="amount", op=">=", value="100", action="include")
    assert transform.apply(source_record({"amount": 150})) is not None
    assert transform.apply(source_record({"amount": 50})) is None


def test_filter_rejects_unknown_op_naming_full_key():
    with pytest.raises(ConnectorConfigError) as raised:
        one("Filter", field="a", op="~=", value="1")
    assert raised.value.field == "transforms.t.op"


def test_filter_rejects_comparison_without_value():
    with pytest.raises(ConnectorConfigError) as raised:
        one("Filter", field="a", op=">")
    assert raised.value.field == "transforms.t.value"


def test_filter_rejects_invalid_regex():
    with pytest.raises(ConnectorConfigError) as raised:
        one("Filter", field="a", op="regex", value="(")
    assert raised.value.field == "transforms.t.value"


def test_filter_requires_field():
    with pytest.raises(ConnectorConfigError) as raised:
        one("Filter", op="exists")
    assert raised.value.field == "transforms.t.field"


# -- TimestampRouter -----------------------------------------------------------------


def test_timestamp_router_defaults_to_topic_dash_day():
    assert one("TimestampRouter").apply(sink_record({})).topic == "orders-20231114"


@pytest.mark.parametrize("pattern, expected", [
    ("yyyyMMdd", "20231114"), ("yy-MM-dd", "23-11-14"), ("yyyy-MM-dd'T'HH:mm:ss.SSS", "2023-11-14T22:13:20.123"),
    ("yyyyMMddHH", "2023111422"), ("'week'''yyyy", "week'2023"),
])
def test_timestamp_router_formats_java_pattern(pattern, expected):
    transform = one("TimestampRouter", topic__format="${timestamp}", timestamp__format=pattern)
    assert transform.apply(sink_record({})).topic == expected


def test_timestamp_router_zero_pads_fields():
    # 2024-01-02 03:04:05.006 UTC
    transform = one("TimestampRouter", topic__format="${topic}_${timestamp}", timestamp__format="yyyyMMdd-HHmmss.SSS")
    assert transform.apply(source_record({}, timestamp_ms=1_704_164_645_006)).topic == "orders_20240102-030405.006"


def test_timestamp_router_rejects_record_without_timestamp():
    with pytest.raises(TransformError, match="topic 'orders'"):
        one("TimestampRouter").apply(source_record({}, timestamp_ms=None))


def test_timestamp_router_rejects_unsupported_letter():
    with pytest.raises(ConnectorConfigError, match="'E'") as raised:
        one("TimestampRouter", timestamp__format="EEE yyyy")
    assert raised.value.field == "transforms.t.timestamp.format"


def test_timestamp_router_leaves_input_record_unchanged():
    record = sink_record({"a": 1})
    one("TimestampRouter").apply(record)
    assert record.topic == "orders"


# -- chains and resolution -----------------------------------------------------------


def chain_config():
    return {"transforms": "rename, drop, stamp",
            "transforms.rename.type": "ReplaceField$Value", "transforms.rename.renames": "kind:type",
            "transforms.drop.type": "Filter", "transforms.drop.field": "type", "transforms.drop.value": "test",
            "transforms.stamp.type": "InsertField$Value", "transforms.stamp.offset.field": "offset"}


def test_build_transforms_keeps_listed_order():
    assert [transform.alias for transform in build_transforms(chain_config())] == ["rename", "drop", "stamp"]


def test_apply_transforms_runs_in_order():
    # The filter tests "type", which exists only after the rename ran.
    transforms = build_transforms(chain_config())
    assert apply_transforms(transforms, sink_record({"kind": "test"})) is None
    assert apply_transforms(transforms, sink_record({"kind": "live"})).value == {"type": "live", "offset": 42}


def test_apply_transforms_batch_drops_and_keeps_order():
    transforms = build_transforms(chain_config())
    records = [sink_record({"kind": kind}) for kind in ("a", "test", "b")]
    assert [record.value["type"] for record in apply_transforms_batch(transforms, records)] == ["a", "b"]


def test_build_transforms_accepts_list_of_aliases():
    config = {"transforms": ["a"], "transforms.a.type": "TimestampRouter"}
    assert len(build_transforms(config)) == 1


def test_build_transforms_returns_empty_without_transforms():
    assert build_transforms({"topics": "a"}) == []


def test_build_transforms_requires_type_naming_full_key():
    with pytest.raises(ConnectorConfigError) as raised:
        build_transforms({"transforms": "x"})
    assert raised.value.field == "transforms.x.type"


def test_build_transforms_rejects_unknown_type_naming_full_key():
    with pytest.raises(PluginNotFoundError, match="'Nope'") as raised:
        build_transforms({"transforms": "x", "transforms.x.type": "Nope"})
    assert raised.value.field == "transforms.x.type"


def test_build_transforms_rejects_duplicate_alias():
    with pytest.raises(ConnectorConfigError) as raised:
        build_transforms({"transforms": "a,a", "transforms.a.type": "Filter"})
    assert raised.value.field == "transforms"


def test_build_transforms_resolves_user_transform_by_path():
    [transform] = build_transforms({"transforms": "up", "transforms.up.type": f"{__name__}:Uppercase"})
    assert transform.apply(sink_record("abc")).value == "ABC"


def test_register_transform_makes_name_available():
    register_transform("test.Uppercase", Uppercase)
    [transform] = build_transforms({"transforms": "up", "transforms.up.type": "test.Uppercase"})
    assert isinstance(transform, Uppercase)


def test_register_transform_refuses_taken_name():
    with pytest.raises(ValueError, match="taken"):
        register_transform("Filter", Uppercase)


def test_transform_plugins_lists_builtins_by_kafka_name():
    plugins = {plugin["class"]: plugin for plugin in transform_plugins()}
    insert = plugins["org.apache.kafka.connect.transforms.InsertField$Value"]
    assert insert["type"] == "transformation" and "InsertField" in insert["aliases"]
    assert "static.field" in [field["name"] for field in insert["config"]]
    assert "org.apache.kafka.connect.transforms.Filter" in plugins


def test_configure_directly_names_short_key():
    transform = InsertField()
    with pytest.raises(ConnectorConfigError) as raised:
        transform.configure({"static.value": "x"})
    assert raised.value.field == "static.field"


def test_filter_class_used_directly_matches_after_configure():
    transform = Filter()
    transform.configure({"field": "a", "op": "exists"})
    assert transform.apply(source_record({"a": 1})) is None
