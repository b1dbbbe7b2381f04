"""Declared, validated connector configuration: rafka's one config-definition mechanism
(rafka/config.py, which documents the types and checks) as Connect uses it.

Connector configs arrive as a flat ``{str: str}`` map (the REST API and Kafka Connect
carry strings), or as Python values from the Python API, so values are parsed from text.
A ``ConfigDef`` lists the keys a plugin understands, parses each value to its type,
applies defaults and validators, and raises ``ConnectorConfigError`` naming the key at
fault. Keys it does not list pass through untouched (the worker's own keys,
``transforms.*`` and the like).
"""

from __future__ import annotations

from typing import Any, Mapping

from rafka import config as _config
from rafka.config import REQUIRED
from rafka.connect.errors import ConnectorConfigError

__all__ = ["REQUIRED", "ConfigDef", "ConfigField"]


def _connector_error(message: str, key: str) -> Exception:
    return ConnectorConfigError(message, key or None)


class ConfigDef(_config.ConfigDef):
    """rafka.config.ConfigDef reporting ``ConnectorConfigError``, keys named bare."""

    def __init__(self, fields=(), **options: Any) -> None:
        options.setdefault("error", _connector_error)
        super().__init__(fields, **options)

    def _check_mapping(self, config: Mapping[str, Any]) -> None:
        if not isinstance(config, Mapping):
            raise ConnectorConfigError(f"a connector config must be a JSON object, got {type(config).__name__}")
        super()._check_mapping(config)


class ConfigField(_config.ConfigField):
    """rafka.config.ConfigField that can parse a value on its own."""

    def parse(self, raw: Any) -> Any:
        return ConfigDef([self]).parse_value(self, raw)
