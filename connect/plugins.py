"""Finding connector classes by the name in ``connector.class``.

A name is a built-in alias (``FileSource``, ``PostgresSink``…; Kafka's
``FileStreamSource``/``FileStreamSink`` also work), a class registered with
``register_plugin`` (which ships the class to the actors by value, so a class defined in
a script or notebook works), or an importable ``module.Class`` / ``module:Class`` path
under Connect's plugin path (``policy.ConnectPolicy``; checked before importing).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from rafka.connect.api import Connector, SinkConnector, SourceConnector
from rafka.connect.errors import PluginNotFoundError

BUILTINS = {
    "FileSource": "rafka.connect.connectors.file:FileSourceConnector",
    "FileSink": "rafka.connect.connectors.file:FileSinkConnector",
    "PostgresSource": "rafka.connect.connectors.postgres:PostgresSourceConnector",
    "PostgresSink": "rafka.connect.connectors.postgres:PostgresSinkConnector",
    "ParquetSink": "rafka.connect.connectors.parquet:ParquetSinkConnector",
}
ALIASES = {
    "FileStreamSource": "FileSource",
    "FileStreamSink": "FileSink",
    "org.apache.kafka.connect.file.FileStreamSourceConnector": "FileSource",
    "org.apache.kafka.connect.file.FileStreamSinkConnector": "FileSink",
    "FileSourceConnector": "FileSource",
    "FileSinkConnector": "FileSink",
    "PostgresSourceConnector": "PostgresSource",
    "PostgresSinkConnector": "PostgresSink",
    "ParquetSinkConnector": "ParquetSink",
}


def resolve(name: Any, registered: dict[str, type] | None = None, field: str = "connector.class",
            policy: Any = None) -> type:
    """The Connector subclass named ``name``, or ``PluginNotFoundError`` naming it. With
    ``policy`` (a ``ConnectPolicy``) an import path outside its plugin path is refused
    before anything is imported."""
    if isinstance(name, type):
        cls = name
    else:
        if not isinstance(name, str) or not name.strip():
            raise PluginNotFoundError(f"{field} must name a connector class, got {name!r}", field)
        name = name.strip()
        registered = registered or {}
        if name in registered:
            cls = registered[name]
        else:
            target = BUILTINS.get(ALIASES.get(name, name), name)
            cls = _import(target, field, policy)
    if not (inspect.isclass(cls) and issubclass(cls, Connector)) or inspect.isabstract(cls):
        raise PluginNotFoundError(f"{field} {name!r} is not a concrete rafka.connect Connector class", field)
    return cls


def _import(target: str, field: str, policy: Any = None) -> type:
    module_name, sep, attribute = target.partition(":")
    if not sep:
        module_name, _, attribute = target.rpartition(".")
    if not module_name:
        known = ", ".join(sorted(BUILTINS))
        raise PluginNotFoundError(f"{field} {target!r} is not a known connector (built-ins: {known}; or give module.Class)",
                                  field)
    if policy is not None:
        policy.check_import(module_name, target, field)
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        raise PluginNotFoundError(f"{field} {target!r} cannot be loaded: {error}", field) from None


def connector_type(cls: type) -> str:
    return "source" if issubclass(cls, SourceConnector) else "sink" if issubclass(cls, SinkConnector) else "unknown"


def describe(alias: str, cls: type) -> dict:
    return {"class": alias, "module": f"{cls.__module__}.{cls.__qualname__}", "type": connector_type(cls),
            "version": getattr(cls, "version", "")}


def list_plugins(registered: dict[str, type] | None = None) -> list[dict]:
    """Every connector plugin that loads here (a built-in whose driver is missing is left
    out), with its type and version."""
    plugins = []
    for alias, target in BUILTINS.items():
        try:
            plugins.append(describe(alias, _import(target, "connector.class")))
        except PluginNotFoundError:
            continue
    for alias, cls in (registered or {}).items():
        plugins.append(describe(alias, cls))
    return plugins
