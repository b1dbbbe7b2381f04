"""Single-message transforms (SMTs): small per-record edits between a connector and a
topic.

A connector config lists its transforms by alias, in the order they apply, and gives
each a type and settings under ``transforms.<alias>.``::

    transforms=addSource,daily
    transforms.addSource.type=InsertField$Value
    transforms.addSource.static.field=source
    transforms.addSource.static.value=orders-db
    transforms.daily.type=org.apache.kafka.connect.transforms.TimestampRouter

On the source side the chain runs on each ``SourceRecord`` a task polled, before the
value converter; on the sink side on each ``SinkRecord`` after the converter, before
``put``. A transform returns a new record (it never changes the one it was given, nor
the dict in its key or value) or None to drop it; a dropped record goes no further down
the chain. Within one task transforms run from one thread, in list order.

Built-ins, each also known by its Kafka class name
(``org.apache.kafka.connect.transforms.<Name>``):

- ``InsertField$Value`` (also ``InsertField``), ``InsertField$Key``: add a static field
  and the record's topic, partition, offset or timestamp to a dict value (key).
- ``ReplaceField$Value`` (also ``ReplaceField``), ``ReplaceField$Key``: keep or drop
  fields and rename them.
- ``Filter``: drop the records a condition matches, or keep only those.
- ``TimestampRouter``: rewrite the topic from the record's timestamp.

Another ``Transform`` subclass is named by its import path (``module.Class`` or
``module:Class``) or registered with ``register_transform``.

A transform that cannot handle a record (a value that is not a dict, a record without a
timestamp) raises ``TransformError``; that is a failure of that record, and the
runtime's ``errors.tolerance`` decides what happens to it. Tombstones (a None key or
value) pass through the field transforms unchanged, so compaction still sees them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Iterable

from rafka.connect.api import Connector, SinkRecord, SourceRecord
from rafka.connect.config import ConfigDef, ConfigField
from rafka.connect.converters import _import_class
from rafka.connect.errors import ConnectError, ConnectorConfigError, PluginNotFoundError

Record = SourceRecord | SinkRecord
_KAFKA_PACKAGE = "org.apache.kafka.connect.transforms."


class TransformError(ConnectError, ValueError):
    """A transform could not handle one record; the message names its topic."""


class Transform(ABC):
    """One step of a transform chain.

    ``configure(config)`` is called once, before any record, with the transform's
    settings (its ``transforms.<alias>.`` keys, prefix removed, ``type`` left out);
    the default parses them with ``config_def`` into ``self.config``. A bad setting
    raises ``ConnectorConfigError`` whose ``field`` is the full key,
    ``transforms.<alias>.<key>`` (``alias`` is set before ``configure``).
    ``apply(record)`` returns the record to pass on (a copy when anything changed) or
    None to drop it. ``close()`` is called when the task stops."""

    config_def: ConfigDef = ConfigDef()
    alias: str | None = None

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}

    def configure(self, config: dict) -> None:
        try:
            self.config = self.config_def.parse(config)
        except ConnectorConfigError as error:
            raise self.config_error(str(error), error.field) from None

    @abstractmethod
    def apply(self, record: Record) -> Record | None: ...

    def close(self) -> None: ...

    def config_error(self, message: str, key: str | None) -> ConnectorConfigError:
        """A ``ConnectorConfigError`` for this transform's setting ``key``, with the full
        key as its field."""
        if self.alias is None:
            return ConnectorConfigError(message, key)
        prefix = f"transforms.{self.alias}."
        if key is not None and key.startswith(prefix):
            return ConnectorConfigError(message, key)
        return ConnectorConfigError(f"transform {self.alias!r}: {message}",
                                    prefix + key if key is not None else f"transforms.{self.alias}")


class _KeyOrValueTransform(Transform):
    """A transform that edits the record's value (``target = "value"``) or key."""

    target = "value"

    def operand(self, record: Record) -> Any:
        return record.value if self.target == "value" else record.key

    def with_operand(self, record: Record, operand: Any) -> Record:
        if self.target == "value":
            return dataclasses.replace(record, value=operand)
        return dataclasses.replace(record, key=operand)

    def require_dict(self, record: Record, operand: Any) -> dict:
        if not isinstance(operand, dict):
            raise TransformError(
                f"{type(self).__name__} (transform {self.alias!r}) needs a dict {self.target} but a record of topic "
                f"{record.topic!r} has a {type(operand).__name__} (use the json converter, or a transform that "
                f"builds a dict first)")
        return operand


# -- InsertField ---------------------------------------------------------------------


class InsertField(_KeyOrValueTransform):
    """Adds fields to a dict value: ``static.field`` = ``static.value``, and the
    record's ``topic``, ``partition``, ``offset`` (sink records only) and
    ``timestamp`` (milliseconds) under the names their ``*.field`` settings give.

    A field name may end in ``!`` (required: a record without that property, such as a
    source record for ``offset.field``, is an error) or ``?`` (optional, the default: the
    field is left out when the record has no such property)."""

    config_def = ConfigDef([
        ConfigField("static.field", "str", None, "Field for the fixed value static.value."),
        ConfigField("static.value", "str", None, "The fixed value to insert under static.field."),
        ConfigField("topic.field", "str", None, "Field for the record's topic."),
        ConfigField("partition.field", "str", None, "Field for the record's partition."),
        ConfigField("offset.field", "str", None, "Field for the record's offset (sink records)."),
        ConfigField("timestamp.field", "str", None, "Field for the record's timestamp in milliseconds."),
    ])

    def configure(self, config: dict) -> None:
        super().configure(config)
        # (field name, record attribute, required)
        self._inserts: list[tuple[str, str, bool]] = []
        for attribute in ("topic", "partition", "offset", "timestamp"):
            name = self.config[f"{attribute}.field"]
            if name is None:
                continue
            required = name.endswith("!")
            name = name.rstrip("!?")
            if not name:
                raise self.config_error(f"{attribute}.field needs a field name", f"{attribute}.field")
            self._inserts.append((name, "timestamp_ms" if attribute == "timestamp" else attribute, required))
        self._static_field = self.config["static.field"]
        self._static_value = self.config["static.value"]
        if self._static_value is not None and self._static_field is None:
            raise self.config_error("static.value is set but static.field is not", "static.field")

    def apply(self, record: Record) -> Record | None:
        operand = self.operand(record)
        if operand is None:
            return record
        updated = dict(self.require_dict(record, operand))
        for name, attribute, required in self._inserts:
            value = getattr(record, attribute, None)
            if value is None:
                if required:
                    raise TransformError(f"InsertField (transform {self.alias!r}) requires {attribute} for field "
                                         f"{name!r} but a {type(record).__name__} of topic {record.topic!r} has none")
                continue
            updated[name] = value
        if self._static_field is not None:
            updated[self._static_field] = self._static_value
        return self.with_operand(record, updated)


class InsertFieldKey(InsertField):
    """``InsertField`` on the record's key."""

    target = "key"


# -- ReplaceField --------------------------------------------------------------------


def _check_renames(renames: list[str]) -> str | None:
    for pair in renames:
        old, separator, new = pair.partition(":")
        if not separator or not old.strip() or not new.strip() or ":" in new:
            return f"each rename is old:new, got {pair!r}"
    return None


class ReplaceField(_KeyOrValueTransform):
    """Keeps (``include``) or drops (``exclude``) fields of a dict value, then renames
    them (``renames=old:new,old2:new2``). With ``include`` empty every field not
    excluded is kept. Kafka's older names ``whitelist`` and ``blacklist`` are read when
    ``include`` and ``exclude`` are unset."""

    config_def = (ConfigDef()
                  .define("exclude", "list", [], "Fields to drop.")
                  .define("include", "list", [], "Fields to keep; empty keeps every field.")
                  .define("renames", "list", [], "Renames as old:new pairs, comma-separated.",
                          validator=_check_renames)
                  .define("blacklist", "list", [], "Older name of exclude.")
                  .define("whitelist", "list", [], "Older name of include."))

    def configure(self, config: dict) -> None:
        super().configure(config)
        self._exclude = frozenset(self.config["exclude"] or self.config["blacklist"])
        self._include = frozenset(self.config["include"] or self.config["whitelist"])
        self._renames = {old.strip(): new.strip()
                         for old, _, new in (pair.partition(":") for pair in self.config["renames"])}

    def apply(self, record: Record) -> Record | None:
        operand = self.operand(record)
        if operand is None:
            return record
        include, exclude, renames = self._include, self._exclude, self._renames
        updated = {renames.get(name, name): value
                   for name, value in self.require_dict(record, operand).items()
                   if (not include or name in include) and name not in exclude}
        return self.with_operand(record, updated)


class ReplaceFieldKey(ReplaceField):
    """``ReplaceField`` on the record's key."""

    target = "key"


# -- Filter --------------------------------------------------------------------------

_FILTER_OPS = ("==", "!=", "<", "<=", ">", ">=", "exists", "missing", "contains", "regex")
_ORDER_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
              "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_MISSING = object()


class Filter(Transform):
    """Drops the records whose value matches a condition (``action=exclude``, the
    default), or keeps only those (``action=include``).

    The condition is ``<field> <op> <value>``. ``field`` is a key of the value dict or
    a dotted path into nested dicts (``customer.address.country``; a key that itself
    holds dots is tried first). ``op`` is one of ``== != < <= > >=``, ``exists``,
    ``missing`` (no ``value`` needed), ``contains`` (a substring of a string, an item of
    a list, a key of a dict) or ``regex`` (``re.search`` on the field as text; anchor
    with ``^...$`` for a whole match). When the field holds a number and ``value``
    parses as one, they compare as numbers; otherwise both compare as text, a field
    rendered as JSON renders it (``true``, ``null``, ``{"a":1}``).

    A field that is absent (or a value that is not a dict) matches only ``missing``."""

    config_def = (ConfigDef()
                  .define("field", "str", doc="Field, or dotted path into nested dicts, to test.")
                  .define("op", "str", "==", "The comparison.", choices=_FILTER_OPS)
                  .define("value", "str", None, "What to compare the field with (not for exists/missing).")
                  .define("action", "str", "exclude", "exclude: drop matching records; include: keep only them.",
                          choices=("exclude", "include")))

    def configure(self, config: dict) -> None:
        super().configure(config)
        self._field = self.config["field"]
        if not self._field:
            raise self.config_error("field needs a field name", "field")
        self._path = self._field.split(".")
        self._op = self.config["op"]
        self._value = self.config["value"]
        if self._value is None and self._op not in ("exists", "missing"):
            raise self.config_error(f"op {self._op} needs a value", "value")
        self._number = _as_number(self._value)
        self._pattern = None
        if self._op == "regex":
            try:
                self._pattern = re.compile(self._value)
            except re.error as error:
                raise self.config_error(f"value is not a regular expression ({error}): {self._value!r}",
                                        "value") from None
        self._keep_matching = self.config["action"] == "include"

    def apply(self, record: Record) -> Record | None:
        return record if self.matches(record.value) == self._keep_matching else None

    def matches(self, value: Any) -> bool:
        """Whether the condition holds for ``value`` (a record's value)."""
        found = self._lookup(value)
        op = self._op
        if op == "exists":
            return found is not _MISSING
        if op == "missing":
            return found is _MISSING
        if found is _MISSING:
            return False
        if op == "contains":
            if isinstance(found, str):
                return self._value in found
            if isinstance(found, dict):
                return self._value in found
            if isinstance(found, (list, tuple)):
                return any(_as_text(item) == self._value for item in found)
            return False
        if op == "regex":
            return self._pattern.search(_as_text(found)) is not None
        if self._number is not None and isinstance(found, (int, float)) and not isinstance(found, bool):
            return _ORDER_OPS[op](found, self._number)
        return _ORDER_OPS[op](_as_text(found), self._value)

    def _lookup(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return _MISSING
        if self._field in value:
            return value[self._field]
        for part in self._path:
            if not isinstance(value, dict) or part not in value:
                return _MISSING
            value = value[part]
        return value


def _as_number(text: str | None) -> float | int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number else None  # NaN compares false with everything


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr)


# -- TimestampRouter -----------------------------------------------------------------

# Java SimpleDateFormat letter -> (datetime attribute, longest run supported).
_DATE_LETTERS = {"y": ("year", 4), "M": ("month", 2), "d": ("day", 2), "H": ("hour", 2), "m": ("minute", 2),
                 "s": ("second", 2), "S": ("millisecond", 3)}


def _compile_date_format(pattern: str) -> list[tuple[str, int] | str]:
    """``pattern`` (Java SimpleDateFormat letters) as literal strings and
    ``(attribute, width)`` pairs. Text in single quotes is literal; ``''`` is a quote.
    Raises ValueError for a letter it does not support."""
    parts: list[tuple[str, int] | str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end = pattern.find("'", index + 1)
            if end == -1:
                raise ValueError("an unclosed quote")
            parts.append(pattern[index + 1:end] if end > index + 1 else "'")
            index = end + 1
        elif char.isascii() and char.isalpha():
            run_end = index
            while run_end < len(pattern) and pattern[run_end] == char:
                run_end += 1
            width = run_end - index
            if char not in _DATE_LETTERS:
                raise ValueError(f"the letter {char!r} is not supported (use yyyy, yy, MM, dd, HH, mm, ss, SSS)")
            attribute, width_max = _DATE_LETTERS[char]
            if width > width_max:
                raise ValueError(f"{char * width} is too long (at most {char * width_max})")
            parts.append((attribute, width))
            index = run_end
        else:
            parts.append(char)
            index += 1
    return parts


class TimestampRouter(Transform):
    """Sends each record to a topic named from its own topic and timestamp:
    ``topic.format`` (default ``${topic}-${timestamp}``) with ``${timestamp}`` written
    in ``timestamp.format`` (default ``yyyyMMdd``, Java SimpleDateFormat letters
    ``yyyy yy MM dd HH mm ss SSS``), in UTC. A record without a timestamp (or topic) is
    an error."""

    config_def = (ConfigDef()
                  .define("topic.format", "str", "${topic}-${timestamp}",
                          "The new topic; ${topic} and ${timestamp} are replaced.")
                  .define("timestamp.format", "str", "yyyyMMdd",
                          "How ${timestamp} is written, in Java SimpleDateFormat letters, UTC."))

    def configure(self, config: dict) -> None:
        super().configure(config)
        self._topic_format = self.config["topic.format"]
        try:
            self._date_parts = _compile_date_format(self.config["timestamp.format"])
        except ValueError as error:
            raise self.config_error(f"timestamp.format {self.config['timestamp.format']!r}: {error}",
                                    "timestamp.format") from None

    def apply(self, record: Record) -> Record | None:
        if record.timestamp_ms is None:
            raise TransformError(f"TimestampRouter (transform {self.alias!r}) needs a timestamp but a record of "
                                 f"topic {record.topic!r} has none")
        if record.topic is None:
            raise TransformError(f"TimestampRouter (transform {self.alias!r}) needs the record's topic, and it is "
                                 f"not set yet")
        topic = (self._topic_format.replace("${topic}", record.topic)
                 .replace("${timestamp}", self.format_timestamp(record.timestamp_ms)))
        return dataclasses.replace(record, topic=topic)

    def format_timestamp(self, timestamp_ms: int) -> str:
        moment = datetime.fromtimestamp(timestamp_ms // 1000, tz=timezone.utc)
        fields = {"year": moment.year, "month": moment.month, "day": moment.day, "hour": moment.hour,
                  "minute": moment.minute, "second": moment.second, "millisecond": timestamp_ms % 1000}
        text = []
        for part in self._date_parts:
            if isinstance(part, str):
                text.append(part)
                continue
            attribute, width = part
            number = fields[attribute]
            if attribute == "year" and width == 2:
                number %= 100
            text.append(str(number).zfill(width))
        return "".join(text)


# -- the registry and the chain ------------------------------------------------------

_TRANSFORMS: dict[str, type[Transform]] = {}


def register_transform(name: str, cls: type[Transform]) -> None:
    """Make ``cls`` available as ``transforms.<alias>.type=<name>``. Registering the
    same class twice is harmless; another class under a taken name is a ValueError."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise TypeError(f"a transform must be a Transform subclass, got {cls!r}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a transform name must be a non-empty string, got {name!r}")
    existing = _TRANSFORMS.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(f"the transform name {name!r} is taken by {existing.__qualname__}")
    _TRANSFORMS[name] = cls


for _cls, _names in ((InsertField, ("InsertField$Value", "InsertField")), (InsertFieldKey, ("InsertField$Key",)),
                     (ReplaceField, ("ReplaceField$Value", "ReplaceField")), (ReplaceFieldKey, ("ReplaceField$Key",)),
                     (Filter, ("Filter",)), (TimestampRouter, ("TimestampRouter",))):
    for _name in (_KAFKA_PACKAGE + _names[0], *_names):
        register_transform(_name, _cls)
del _cls, _names, _name
_BUILTIN_CLASSES = frozenset(_TRANSFORMS.values())


def resolve_transform(type_name: str, field: str = "type", policy: Any = None) -> type[Transform]:
    """The transform class ``type_name`` names: a registered name (built-ins, their
    Kafka class names, ``register_transform``) or an import path ``module.Class`` /
    ``module:Class``. Raises ``PluginNotFoundError`` with ``field`` otherwise."""
    name = type_name.strip() if isinstance(type_name, str) else ""
    cls = _TRANSFORMS.get(name)
    if cls is None and name:
        cls = _import_class(name, policy, field)
    if cls is None or not issubclass(cls, Transform) or getattr(cls, "__abstractmethods__", None):
        raise PluginNotFoundError(
            f"{field} {type_name!r} names no transform (use a built-in such as InsertField$Value, Filter or "
            f"TimestampRouter, a registered name, or the import path of a Transform subclass)", field)
    return cls


def build_transforms(connector_config: dict, policy: Any = None) -> list[Transform]:
    """The configured chain of transforms a connector config lists in ``transforms``
    (a comma-separated string or a list of aliases), in order. With ``policy`` (a
    ``ConnectPolicy``) a type outside its plugin path is refused unimported."""
    raw = connector_config.get("transforms")
    if raw is None or raw == "":
        return []
    aliases = ConfigField("transforms", "list").parse(raw)
    duplicates = sorted({alias for alias in aliases if aliases.count(alias) > 1})
    if duplicates:
        raise ConnectorConfigError(f"transforms lists {', '.join(duplicates)} more than once", "transforms")
    transforms = []
    for alias in aliases:
        prefix = f"transforms.{alias}."
        type_key = prefix + "type"
        type_name = connector_config.get(type_key)
        if type_name is None or (isinstance(type_name, str) and not type_name.strip()):
            raise ConnectorConfigError(f"missing required configuration {type_key!r}: the transform class", type_key)
        cls = resolve_transform(type_name, type_key, policy)
        transform = cls()
        transform.alias = alias
        config = {name[len(prefix):]: value for name, value in connector_config.items()
                  if name.startswith(prefix) and name != type_key}
        try:
            transform.configure(config)
        except ConnectorConfigError as error:
            # A plugin's own configure may name the short key; the full key is what
            # the REST API and the user see.
            full = transform.config_error(str(error), error.field)
            if full.field == error.field:
                raise
            raise full from None
        transforms.append(transform)
    return transforms


def apply_transforms(transforms: Iterable[Transform], record: Record) -> Record | None:
    """``record`` after every transform in order, or None when one dropped it."""
    for transform in transforms:
        record = transform.apply(record)
        if record is None:
            return None
    return record


def apply_transforms_batch(transforms: Iterable[Transform], records: list[Record]) -> list[Record]:
    """The records of a batch that survive the chain, transformed, in their order:
    each transform runs over the whole batch before the next."""
    for transform in transforms:
        apply = transform.apply
        records = [result for result in map(apply, records) if result is not None]
        if not records:
            break
    return records


def transform_plugins() -> list[dict]:
    """Every registered transform, for a plugin listing: class name (the Kafka name for
    a built-in), type, version, other names, and config fields."""
    names_by_class: dict[type[Transform], list[str]] = {}
    for name, cls in _TRANSFORMS.items():
        names_by_class.setdefault(cls, []).append(name)
    return [{"class": names[0], "type": "transformation",
             "version": Connector.version if cls in _BUILTIN_CLASSES else getattr(cls, "version", "unknown"),
             "aliases": names[1:], "config": cls.config_def.describe()}
            for cls, names in names_by_class.items()]
