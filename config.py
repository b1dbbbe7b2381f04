"""One way to declare a configuration: each key's name, type, default, bounds, choices,
validator and doc, parsed and checked in one place, with errors that name the key and
the bad value. Topic configs (storage/config.py), producer and consumer options
(client/producer.py, client/consumer.py), stream job options (streams/dsl.py) and
Connect's connector, converter, transform and worker configs (connect/config.py) are
all declared with it.

Values arrive two ways. From the wire, a REST body, a CLI flag or a file they are text
(``from_strings=True``: "5" is an int, "true" a bool, "a,b" a list). From the Python
API they are Python values (``from_strings=False``: "5" for an int is a type error, as a
Python user expects).

Types:

* ``str``: a str (from text: also an int or float, as text); ``password``: the same,
  never printed by ``describe``.
* ``int``: an int, never a bool or a float. ``float``: an int or float, returned as a
  float. ``number``: an int or float, kept as given.
* ``bool``: a bool (from text: true/false, yes/no, 1/0, any case).
* ``list``: a list of str (from text: comma-separated).
* ``any``: any value; only ``choices`` and ``validator`` check it.

Checks, in order: the type; ``choices`` (the allowed values); ``min``/``max``
(inclusive; a float bounded on both sides is "between" them, and NaN is outside);
``allow_never`` also admits -1 ("no limit", Kafka's convention for retention);
``nullable`` admits None; ``validator(value)`` returns a problem (a str) or None.
``attribute`` is the Python name a key is stored under (``retention.ms`` is
``LogConfig.retention_ms``).

Errors: ``error(message, key)`` makes the exception (``InvalidConfigError`` unless a
definition says otherwise; Connect raises its ``ConnectorConfigError``). Messages read
``<subject> '<key>' must be <what>, got <value>``, the subject ("topic config",
"producer option") naming which configuration the key belongs to.

Pure: no Ray, no I/O; importing it loads only ``rafka.errors``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Mapping

from rafka.errors import InvalidConfigError


class _Required:
    """The default of a key that must be given. One instance, kept one across pickling
    (definitions travel to actors by value), so ``default is REQUIRED`` holds."""

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()
TYPES = ("str", "password", "int", "float", "number", "bool", "list", "any")
_WHAT = {"str": "a str", "password": "a str", "int": "an integer", "float": "a number", "number": "a number",
         "bool": "true or false", "list": "a list of str"}
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _invalid_config(message: str, key: str) -> Exception:
    return InvalidConfigError(message)


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One key of a configuration (see the module docstring)."""

    name: str
    type: str = "str"
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    allow_never: bool = False
    nullable: bool = False
    validator: Callable[[Any], str | None] | None = dataclasses.field(default=None, compare=False)
    attribute: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"config type must be one of {TYPES}, got {self.type!r} for {self.name!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def key(self) -> str:
        """The Python name the value is stored under."""
        return self.attribute or self.name

    def describe(self) -> dict:
        described = {"name": self.name, "type": self.type, "required": self.required, "doc": self.doc,
                     "default": None if self.required else _render(self.default)}
        if self.choices:
            described["choices"] = list(self.choices)
        return described


class ConfigDef:
    """An ordered set of ``ConfigField`` and how to report a bad value (see the module
    docstring). ``strict`` refuses keys it does not declare; otherwise they pass through
    ``parse`` untouched (a Connect worker's own keys, ``transforms.*``)."""

    def __init__(self, fields: Iterable[ConfigField] = (), *, subject: str = "",
                 error: Callable[[str, str], Exception] = _invalid_config, from_strings: bool = True,
                 strict: bool = False) -> None:
        self.fields: dict[str, ConfigField] = {}
        self.subject = subject
        self.error = error
        self.from_strings = from_strings
        self.strict = strict
        for config_field in fields:
            self.add(config_field)

    def add(self, config_field: ConfigField) -> "ConfigDef":
        self.fields[config_field.name] = config_field
        return self

    def define(self, name: str, type: str = "str", default: Any = REQUIRED, doc: str = "", **options: Any) -> "ConfigDef":
        return self.add(ConfigField(name, type, default, doc, **options))

    def merged(self, other: "ConfigDef") -> "ConfigDef":
        """Both definitions' fields (``other``'s win a clash), reported as this one's."""
        return type(self)([*self.fields.values(), *other.fields.values()], subject=self.subject, error=self.error,
                          from_strings=self.from_strings, strict=self.strict)

    def with_defaults_of(self, cls: type) -> "ConfigDef":
        """This definition with each field's default read from ``cls``'s attribute of
        the field's ``key`` (a dataclass holds the defaults; this adds the checks)."""
        return type(self)([dataclasses.replace(config_field, default=getattr(cls, config_field.key))
                           for config_field in self.fields.values()],
                          subject=self.subject, error=self.error, from_strings=self.from_strings, strict=self.strict)

    # -- parsing -----------------------------------------------------------------------

    def parse(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared key, parsed or its default (a missing required key raises),
        plus the undeclared keys as given (refused when ``strict``). A None value, or
        "" for a key that is not a str, counts as missing."""
        self._check_mapping(config)
        parsed = dict(config)
        for name, config_field in self.fields.items():
            raw = config.get(name)
            if raw is None or (isinstance(raw, str) and raw == "" and config_field.type not in ("str", "password")):
                if config_field.required:
                    raise self.error(f"missing required configuration {name!r}: {config_field.doc}".rstrip(": "),
                                     name)
                parsed[name] = config_field.default
            else:
                parsed[name] = self.parse_value(config_field, raw)
        return parsed

    def parse_given(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Only the keys given, parsed, under each field's ``key``; an undeclared key
        raises when ``strict`` (and is dropped otherwise)."""
        self._check_mapping(config)
        return {self.fields[name].key: self.parse_value(self.fields[name], raw)
                for name, raw in config.items() if name in self.fields}

    def build(self, cls: type, config: Mapping[str, Any]) -> Any:
        """``cls(**parsed)``: the keys given, checked; ``cls`` supplies the defaults."""
        return cls(**self.parse_given(config))

    def describe(self) -> list[dict]:
        return [config_field.describe() for config_field in self.fields.values()]

    def _check_mapping(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise self.error(f"a {self.subject or 'config'} must be a mapping of names to values, "
                             f"got {type(config).__name__}", "")
        if self.strict:
            for name in config:
                if name not in self.fields:
                    raise self.error(f"unknown {self.subject or 'config'} {name!r}; known: "
                                     f"{', '.join(sorted(self.fields))}", str(name))

    def _label(self, name: str) -> str:
        return f"{self.subject} {name!r}" if self.subject else name

    def parse_value(self, config_field: ConfigField, raw: Any) -> Any:
        """``raw`` parsed and checked as ``config_field`` says; raises naming both."""
        name, label = config_field.name, self._label(config_field.name)
        if raw is None and config_field.nullable:
            return None
        value = self._typed(config_field, raw)
        if value is _BAD:
            raise self.error(f"{label} must be {_WHAT[config_field.type]}, got {raw!r}", name)
        if config_field.choices is not None and (value not in config_field.choices or (
                isinstance(value, bool) and config_field.type != "bool")):
            raise self.error(f"{label} must be one of {', '.join(map(str, config_field.choices))}, got {raw!r}", name)
        if config_field.type in ("int", "float", "number") and not (config_field.allow_never and value == -1):
            self._check_bounds(config_field, label, value, raw)
        if config_field.validator is not None:
            problem = config_field.validator(value)
            if problem:
                raise self.error(f"{label}: {problem} (got {raw!r})", name)
        return value

    def _check_bounds(self, config_field: ConfigField, label: str, value: float, raw: Any) -> None:
        low, high = config_field.min, config_field.max
        if config_field.type == "float" and low is not None and high is not None:
            if not low <= value <= high:  # NaN fails too
                raise self.error(f"{label} must be between {low} and {high}, got {raw!r}", config_field.name)
            return
        if isinstance(value, float) and math.isnan(value) and (low is not None or high is not None):
            raise self.error(f"{label} must be {_WHAT[config_field.type]}, got {raw!r}", config_field.name)
        if low is not None and value < low:
            never = " (or -1 for no limit)" if config_field.allow_never else ""
            raise self.error(f"{label} must be at least {low}{never}, got {raw!r}", config_field.name)
        if high is not None and value > high:
            raise self.error(f"{label} must be at most {high}, got {raw!r}", config_field.name)

    def _typed(self, config_field: ConfigField, raw: Any) -> Any:
        """``raw`` as ``config_field.type``, or ``_BAD``."""
        kind, text = config_field.type, self.from_strings and isinstance(raw, str)
        if kind == "any":
            return raw
        if kind in ("str", "password"):
            if isinstance(raw, str):
                return raw
            if self.from_strings and isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return str(raw)
            return _BAD
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if text and raw.strip().lower() in _TRUE + _FALSE:
                return raw.strip().lower() in _TRUE
            return _BAD
        if kind == "list":
            if isinstance(raw, (list, tuple)) and (self.from_strings or all(isinstance(item, str) for item in raw)):
                items = [str(item).strip() for item in raw]
            elif text:
                items = [item.strip() for item in raw.split(",")]
            else:
                return _BAD
            return [item for item in items if item]
        if isinstance(raw, bool):
            return _BAD
        if kind == "int":
            if isinstance(raw, int):
                return raw
            if text:
                try:
                    return int(raw.strip())
                except ValueError:
                    return _BAD
            return _BAD
        if isinstance(raw, (int, float)):
            return float(raw) if kind == "float" else raw
        if text:
            try:
                number = float(raw.strip())
            except ValueError:
                return _BAD
            if kind == "number" and number.is_integer() and "." not in raw and "e" not in raw.lower():
                return int(number)
            return number
        return _BAD


_BAD = object()


def _render(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(value)
    return value
