"""Converters: the step between a record's Python key or value and the bytes in a topic.

A source task emits Python values; the runtime calls ``from_values`` (Python -> bytes)
on the key converter and the value converter before producing. A sink task receives
Python values; the runtime calls ``to_values`` (bytes -> Python) on what it consumed
before ``put``. A connector picks its converters with ``key.converter`` (default
``string``) and ``value.converter`` (default ``json``); their own settings come from the
connector config under those prefixes, e.g. ``value.converter.schemas.enable=true``.

Built-ins, by alias and by Kafka Connect class name:

==========  ============================================================  ================
alias       Kafka class                                                   Python side
==========  ============================================================  ================
``bytes``   ``org.apache.kafka.connect.converters.ByteArrayConverter``    ``bytes``
``string``  ``org.apache.kafka.connect.storage.StringConverter``          ``str``
``json``    ``org.apache.kafka.connect.json.JsonConverter``               JSON values
==========  ============================================================  ================

Any other ``Converter`` subclass is named by its import path, ``module.Class`` or
``module:Class``.

Contract: ``None`` (a tombstone) converts to ``None`` both ways, in every converter. A
value a converter cannot represent raises ``TypeError`` naming its type; bytes a
converter cannot decode raise ``ValueError`` showing the first bytes. Both are failures
of that one record (the runtime's ``errors.tolerance`` decides what happens next). A
converter instance is used from one thread (the task's), so it keeps no locks.
"""

from __future__ import annotations

import base64
import codecs
import importlib
import json
from abc import ABC, abstractmethod
from typing import Any

from rafka.connect.config import ConfigDef
from rafka.connect.errors import ConnectorConfigError, PluginNotFoundError

KEY_CONVERTER_DEFAULT = "string"
VALUE_CONVERTER_DEFAULT = "json"
# How many leading bytes an undecodable-data error shows: enough to recognise the
# format (a magic byte, a stray quote), short enough for a status line.
_ERROR_PREVIEW_BYTES = 32
_BYTES_LIKE = (bytes, bytearray, memoryview)


class Converter(ABC):
    """Turns Python keys or values into bytes and back, for one side (key or value) of
    one connector's records.

    ``configure`` is called once, before any conversion, with the converter's own
    settings (the connector config's ``key.converter.*`` or ``value.converter.*`` keys
    with the prefix removed), parsed by ``config_def``. The batch forms are what the
    runtime calls; override them when a batch can be converted faster than one value at
    a time. ``from_value(topic, to_value(topic, data))`` need not return ``data`` byte
    for byte, but ``to_value(topic, from_value(topic, value))`` returns ``value`` for
    every value the converter represents exactly (see each converter)."""

    config_def: ConfigDef = ConfigDef()

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.is_key = False

    def configure(self, config: dict, is_key: bool) -> None:
        self.config = self.config_def.parse(config)
        self.is_key = is_key

    @abstractmethod
    def from_value(self, topic: str, value: Any) -> bytes | None:
        """``value`` as bytes for ``topic``; None for None."""

    @abstractmethod
    def to_value(self, topic: str, data: bytes | None) -> Any:
        """The Python value ``data`` (read from ``topic``) holds; None for None."""

    def from_values(self, topic: str, values: list) -> list[bytes | None]:
        from_value = self.from_value
        return [from_value(topic, value) for value in values]

    def to_values(self, topic: str, datas: list) -> list:
        to_value = self.to_value
        return [to_value(topic, data) for data in datas]

    def _side(self) -> str:
        return "key" if self.is_key else "value"


class BytesConverter(Converter):
    """Bytes pass through unchanged (``bytearray`` and ``memoryview`` become ``bytes``);
    any other Python value is refused. The sink side sees the raw bytes."""

    def from_value(self, topic: str, value: Any) -> bytes | None:
        if value is None or type(value) is bytes:
            return value
        if isinstance(value, _BYTES_LIKE):
            return bytes(value)
        raise TypeError(f"BytesConverter takes bytes, bytearray or memoryview, got {type(value).__name__} "
                        f"for a {self._side()} of topic {topic!r}")

    def to_value(self, topic: str, data: bytes | None) -> Any:
        if data is None or type(data) is bytes:
            return data
        return bytes(data)


class StringConverter(Converter):
    """Text in ``encoding`` (default UTF-8). ``str`` is encoded, bytes pass through, and
    other scalars (``int``, ``float``, ``bool``) are written as ``str(value)``; a dict or
    list is refused (use ``json``). The sink side decodes to ``str``."""

    config_def = ConfigDef().define(
        "encoding", "str", "utf-8", "The character encoding of the text.",
        validator=lambda name: None if _known_encoding(name) else f"unknown encoding {name!r}")

    def __init__(self) -> None:
        super().__init__()
        self.encoding = "utf-8"

    def configure(self, config: dict, is_key: bool) -> None:
        # Kafka names the same setting ``converter.encoding``; take it when ours is unset.
        if "encoding" not in config and "converter.encoding" in config:
            config = {**config, "encoding": config["converter.encoding"]}
        super().configure(config, is_key)
        self.encoding = self.config["encoding"]

    def from_value(self, topic: str, value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value.encode(self.encoding)
        if isinstance(value, _BYTES_LIKE):
            return bytes(value)
        if isinstance(value, (int, float)):
            return str(value).encode(self.encoding)
        raise TypeError(f"StringConverter takes str, bytes or a number, got {type(value).__name__} for a "
                        f"{self._side()} of topic {topic!r} (use the json converter for structured values)")

    def to_value(self, topic: str, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return bytes(data).decode(self.encoding)
        except UnicodeDecodeError as error:
            raise ValueError(f"a {self._side()} of topic {topic!r} is not {self.encoding} text ({error.reason} at "
                             f"byte {error.start}): {_preview(data)}") from None


class JsonConverter(Converter):
    """JSON in UTF-8, compact, with non-ASCII characters written as they are.

    ``bytes`` values are written as base64 strings. With ``schemas.enable=false`` (the
    default) they read back as those strings. With ``schemas.enable=true`` every value is
    written inside Kafka Connect's envelope ``{"schema": ..., "payload": ...}``, the
    schema inferred from the value (``struct``, ``array``, ``string``, ``int64``,
    ``double``, ``boolean``, ``bytes``; nested fields are optional), and reading unwraps
    an envelope, turning ``bytes`` fields back into ``bytes``; data without an envelope
    is read as plain JSON.

    Standard JSON only: NaN and infinities are refused (``ValueError``), as are values
    JSON has no form for (``TypeError``). Tuples read back as lists, and dict keys as
    strings."""

    config_def = ConfigDef().define(
        "schemas.enable", "bool", False,
        "Write each value inside a {\"schema\", \"payload\"} envelope, and unwrap one when reading.")

    def __init__(self) -> None:
        super().__init__()
        self.schemas_enable = False
        self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                                         default=_json_default)
        self._decoder = json.JSONDecoder()

    def configure(self, config: dict, is_key: bool) -> None:
        super().configure(config, is_key)
        self.schemas_enable = self.config["schemas.enable"]

    def from_value(self, topic: str, value: Any) -> bytes | None:
        return self.from_values(topic, [value])[0]

    def to_value(self, topic: str, data: bytes | None) -> Any:
        return self.to_values(topic, [data])[0]

    def from_values(self, topic: str, values: list) -> list[bytes | None]:
        encode = self._encoder.encode
        envelope = self.schemas_enable
        datas: list[bytes | None] = []
        for value in values:
            if value is None:
                datas.append(None)
                continue
            try:
                if envelope:
                    value = {"schema": _infer_schema(value, optional=False), "payload": value}
                datas.append(encode(value).encode("utf-8"))
            except (TypeError, ValueError) as error:
                raise type(error)(f"cannot write a {self._side()} of topic {topic!r} as JSON: {error}") from None
        return datas

    def to_values(self, topic: str, datas: list) -> list:
        decode = self._decoder.decode
        envelope = self.schemas_enable
        values = []
        for data in datas:
            if data is None:
                values.append(None)
                continue
            try:
                value = decode(bytes(data).decode("utf-8"))
            except UnicodeDecodeError as error:
                raise ValueError(f"a {self._side()} of topic {topic!r} is not UTF-8 ({error.reason} at byte "
                                 f"{error.start}): {_preview(data)}") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"a {self._side()} of topic {topic!r} is not valid JSON ({error.msg} at char "
                                 f"{error.pos}): {_preview(data)}") from None
            if envelope and type(value) is dict and value.keys() == {"schema", "payload"}:
                value = _apply_schema(value["schema"], value["payload"])
            values.append(value)
        return values


# -- the schema envelope -------------------------------------------------------------


def _infer_schema(value: Any, optional: bool = True) -> dict:
    """A Kafka Connect JSON schema describing ``value``. Inference looks at this one
    value only: a list's item schema comes from its first non-null item, and a null
    whose type is unknown is an optional string."""
    if value is None:
        return {"type": "string", "optional": True}
    if isinstance(value, bool):
        kind = {"type": "boolean"}
    elif isinstance(value, int):
        kind = {"type": "int64"}
    elif isinstance(value, float):
        kind = {"type": "double"}
    elif isinstance(value, str):
        kind = {"type": "string"}
    elif isinstance(value, _BYTES_LIKE):
        kind = {"type": "bytes"}
    elif isinstance(value, dict):
        kind = {"type": "struct",
                "fields": [{"field": str(name), **_infer_schema(item)} for name, item in value.items()]}
    elif isinstance(value, (list, tuple)):
        first = next((item for item in value if item is not None), None)
        kind = {"type": "array", "items": _infer_schema(first)}
    else:
        raise TypeError(f"no JSON schema type for {type(value).__name__}")
    return {**kind, "optional": optional}


def _apply_schema(schema: Any, payload: Any) -> Any:
    """``payload`` with the fields ``schema`` types as ``bytes`` decoded from base64.
    Anything the schema does not describe is left as it was read."""
    if payload is None or not isinstance(schema, dict):
        return payload
    kind = schema.get("type")
    if kind == "bytes" and isinstance(payload, str):
        try:
            return base64.b64decode(payload, validate=True)
        except ValueError:
            return payload
    if kind == "struct" and isinstance(payload, dict):
        fields = {field.get("field"): field for field in schema.get("fields", ()) if isinstance(field, dict)}
        return {name: _apply_schema(fields.get(name), item) for name, item in payload.items()}
    if kind == "array" and isinstance(payload, list):
        items = schema.get("items")
        return [_apply_schema(items, item) for item in payload]
    if kind == "map" and isinstance(payload, dict):
        values = schema.get("values")
        return {name: _apply_schema(values, item) for name, item in payload.items()}
    return payload


def _json_default(value: Any) -> Any:
    if isinstance(value, _BYTES_LIKE):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _preview(data: Any) -> str:
    head = bytes(data[:_ERROR_PREVIEW_BYTES])
    more = f" ... ({len(data)} bytes)" if len(data) > _ERROR_PREVIEW_BYTES else ""
    return f"first bytes {head!r}{more}"


def _known_encoding(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


# -- resolving a converter from a config ---------------------------------------------

_BUILTINS: list[tuple[type[Converter], str, tuple[str, ...]]] = [
    # (class, Kafka class name, aliases)
    (BytesConverter, "org.apache.kafka.connect.converters.ByteArrayConverter", ("bytes", "bytearray")),
    (StringConverter, "org.apache.kafka.connect.storage.StringConverter", ("string",)),
    (JsonConverter, "org.apache.kafka.connect.json.JsonConverter", ("json",)),
]
_CONVERTERS: dict[str, type[Converter]] = {
    name: cls for cls, kafka_name, aliases in _BUILTINS for name in (kafka_name, *aliases)}


def build_converter(spec: str | type[Converter], config: dict, is_key: bool, policy: Any = None) -> Converter:
    """A configured converter. ``spec`` is an alias (``bytes``, ``string``, ``json``), a
    Kafka Connect class name, an import path ``module.Class`` or ``module:Class`` of a
    ``Converter`` subclass, or the subclass itself. ``config`` holds the converter's own
    settings, prefix removed.

    Raises ``PluginNotFoundError`` (field ``key.converter`` or ``value.converter``) when
    ``spec`` names no converter, and ``ConnectorConfigError`` naming the full key (e.g.
    ``value.converter.schemas.enable``) for a bad setting. With ``policy`` (a
    ``ConnectPolicy``; the herder always gives one) an import path outside its plugin
    path is refused before anything is imported."""
    side = "key.converter" if is_key else "value.converter"
    cls = _resolve(spec, side, policy)
    converter = cls()
    try:
        converter.configure(dict(config), is_key)
    except ConnectorConfigError as error:
        if error.field is None or error.field.startswith(side + "."):
            raise
        raise ConnectorConfigError(f"{side}: {error}", f"{side}.{error.field}") from None
    return converter


def converter_from_config(connector_config: dict, is_key: bool, policy: Any = None) -> Converter:
    """The key (``is_key``) or value converter a connector config asks for: the class
    from ``key.converter`` / ``value.converter`` (defaults ``string`` / ``json``), its
    settings from the keys under that prefix."""
    side = "key.converter" if is_key else "value.converter"
    spec = connector_config.get(side)
    if spec is None or spec == "":
        spec = KEY_CONVERTER_DEFAULT if is_key else VALUE_CONVERTER_DEFAULT
    prefix = side + "."
    config = {name[len(prefix):]: value for name, value in connector_config.items() if name.startswith(prefix)}
    return build_converter(spec, config, is_key, policy)


def converter_plugins() -> list[dict]:
    """The built-in converters, for a plugin listing: Kafka class name, type, version,
    aliases and config fields."""
    from rafka.connect.api import Connector

    return [{"class": kafka_name, "type": "converter", "version": Connector.version,
             "aliases": [*aliases, f"{cls.__module__}.{cls.__qualname__}"], "config": cls.config_def.describe()}
            for cls, kafka_name, aliases in _BUILTINS]


def _resolve(spec: Any, side: str, policy: Any = None) -> type[Converter]:
    if isinstance(spec, type):
        if issubclass(spec, Converter) and not getattr(spec, "__abstractmethods__", None):
            return spec
        raise PluginNotFoundError(f"{side} {spec.__qualname__} is not a Converter subclass", side)
    if not isinstance(spec, str) or not spec.strip():
        raise PluginNotFoundError(f"{side} must name a converter, got {spec!r}", side)
    name = spec.strip()
    cls = _CONVERTERS.get(name) or _CONVERTERS.get(name.lower())
    if cls is not None:
        return cls
    cls = _import_class(name, policy, side)
    if cls is None or not issubclass(cls, Converter) or getattr(cls, "__abstractmethods__", None):
        known = ", ".join(alias for _, _, aliases in _BUILTINS for alias in aliases)
        raise PluginNotFoundError(
            f"{side} {name!r} names no converter (use one of {known}, a Kafka converter class name, "
            f"or the import path of a Converter subclass)", side)
    return cls


def _import_class(path: str, policy: Any = None, field: str = "") -> type | None:
    """The class at ``module:Class`` or ``module.Class``, or None when there is none.
    With ``policy``, a module outside its plugin path raises ``PluginNotFoundError``
    naming ``field`` before it is imported (importing runs the module's code)."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        return None
    if policy is not None:
        policy.check_import(module_name, path, field)
    try:
        module = importlib.import_module(module_name)
    except (ImportError, TypeError, ValueError):  # not a module name at all ("../x")
        return None
    value = module
    for part in attribute.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value if isinstance(value, type) else None
