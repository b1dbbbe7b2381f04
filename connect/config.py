"""Declared, validated connector configuration.

Connector configs arrive as a flat ``{str: str}`` map (the REST API and Kafka Connect
carry strings), or as Python values from the Python API. A ``ConfigDef`` lists the keys a
plugin understands, parses each value to its type, applies defaults and validators, and
raises ``ConnectorConfigError`` naming the key at fault. Keys it does not list pass
through untouched (the worker's own keys, ``transforms.*`` and the like).

Types: ``str``, ``int``, ``float``, ``bool``, ``list`` (a comma-separated string or a
Python list of str), ``password`` (a str that status and logs never print).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from rafka.connect.errors import ConnectorConfigError


class _Required:
    """The default of a key that must be given. One instance, kept one across pickling
    (connector classes travel to actors by value), so ``default is REQUIRED`` holds."""

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()
_TYPES = ("str", "int", "float", "bool", "list", "password")


@dataclass(frozen=True)
class ConfigField:
    name: str
    type: str = "str"
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple | None = None
    min: float | None = None
    validator: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"config type must be one of {_TYPES}, got {self.type!r} for {self.name!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, raw: Any) -> Any:
        value = _parse(self.name, self.type, raw)
        if self.choices is not None and value not in self.choices:
            raise ConnectorConfigError(
                f"{self.name} must be one of {', '.join(map(str, self.choices))}, got {raw!r}", self.name)
        if self.min is not None and value < self.min:
            raise ConnectorConfigError(f"{self.name} must be at least {self.min}, got {raw!r}", self.name)
        if self.validator is not None:
            problem = self.validator(value)
            if problem:
                raise ConnectorConfigError(f"{self.name}: {problem} (got {raw!r})", self.name)
        return value

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type, "required": self.required, "doc": self.doc,
                "default": None if self.required else _render(self.default),
                **({"choices": list(self.choices)} if self.choices else {})}


class ConfigDef:
    """An ordered set of ``ConfigField``; ``parse`` returns a dict with every declared
    key (parsed, or its default) plus the undeclared keys as given."""

    def __init__(self, fields: Iterable[ConfigField] = ()) -> None:
        self.fields: dict[str, ConfigField] = {}
        for config_field in fields:
            self.add(config_field)

    def add(self, config_field: ConfigField) -> "ConfigDef":
        self.fields[config_field.name] = config_field
        return self

    def define(self, name: str, type: str = "str", default: Any = REQUIRED, doc: str = "", **options: Any) -> "ConfigDef":
        return self.add(ConfigField(name, type, default, doc, **options))

    def merged(self, other: "ConfigDef") -> "ConfigDef":
        return ConfigDef([*self.fields.values(), *other.fields.values()])

    def parse(self, config: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ConnectorConfigError(f"a connector config must be a JSON object, got {type(config).__name__}")
        parsed = dict(config)
        for name, config_field in self.fields.items():
            raw = config.get(name)
            if raw is None or (isinstance(raw, str) and raw == "" and config_field.type != "str"):
                if config_field.required:
                    raise ConnectorConfigError(f"missing required configuration {name!r}: {config_field.doc}".rstrip(": "),
                                               name)
                parsed[name] = config_field.default
            else:
                parsed[name] = config_field.parse(raw)
        return parsed

    def describe(self) -> list[dict]:
        return [config_field.describe() for config_field in self.fields.values()]


def _parse(name: str, kind: str, raw: Any) -> Any:
    try:
        if kind in ("str", "password"):
            if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
                raise TypeError
            return str(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(raw, bool) or isinstance(raw, float):
                raise TypeError
            return int(str(raw).strip())
        if kind == "float":
            if isinstance(raw, bool):
                raise TypeError
            return float(str(raw).strip())
        if kind == "list":
            if isinstance(raw, (list, tuple)):
                items = [str(item).strip() for item in raw]
            elif isinstance(raw, str):
                items = [item.strip() for item in raw.split(",")]
            else:
                raise TypeError
            return [item for item in items if item]
    except (TypeError, ValueError):
        raise ConnectorConfigError(f"{name} must be a{'n' if kind == 'int' else ''} {kind}, got {raw!r}", name) from None
    raise AssertionError(kind)


def _render(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(value)
    return value
