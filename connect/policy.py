"""What connector configs may name: the operator's limits on classes and files.

A connector config arrives from the REST API, so from anyone who holds the credential
(docs/security.md). Two of its keys reach far beyond Connect: a class name makes the
herder import a module (running its top-level code), and a file connector's path makes a
task read or append to a file with the herder's rights. ``ConnectPolicy`` bounds both:

* **Classes** (``connector.class``, ``transforms.<alias>.type``, ``key.converter``,
  ``value.converter``): a built-in name, a plugin registered from Python
  (``Connect.register_plugin``, a Ray call and so from inside the trust boundary), or an
  import path whose module is ``rafka.connect`` or under one of ``plugin_path``'s
  module prefixes (Kafka Connect's ``plugin.path``, as module names instead of
  directories). Any other path is refused *before* anything is imported.
* **Files** (``file``/``files`` of FileSource and FileSink, a local ``path`` of
  ParquetSink): the path, with every symlink and ``..`` resolved, must lie under one of
  ``file_roots``. With no roots configured every file connector is refused. The check
  runs when a config is created or updated and again when the herder restarts; a
  symlink made inside a root *after* that check can still point a running task
  elsewhere (whoever can write inside a root is trusted with it).

Not bounded here: where a PostgresSink connects or which remote filesystem a
ParquetSink writes to (``s3://…``). Those go where the credential holder says.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable

from rafka.connect.errors import ConnectorConfigError, PluginNotFoundError

BUILTIN_MODULE_PREFIX = "rafka.connect"


def _module_prefixes(plugin_path: Iterable[str] | str | None) -> tuple[str, ...]:
    if plugin_path is None:
        return ()
    if isinstance(plugin_path, str):
        plugin_path = [part for part in plugin_path.split(",")]
    prefixes = []
    for entry in plugin_path:
        if not isinstance(entry, str) or not entry.strip() or not all(
                part.isidentifier() for part in entry.strip().split(".")):
            raise ValueError(f"plugin_path entries are module names such as 'my_company.connectors', got {entry!r}")
        prefixes.append(entry.strip())
    return tuple(prefixes)


def _roots(file_roots: Iterable[str] | str | None) -> tuple[str, ...]:
    if file_roots is None:
        return ()
    if isinstance(file_roots, (str, os.PathLike)):
        file_roots = [file_roots]
    roots = []
    for root in file_roots:
        if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
            raise ValueError(f"file_roots entries are directories, got {root!r}")
        if not os.path.isabs(root):
            raise ValueError(f"file_roots entries must be absolute paths, got {root!r}")
        roots.append(os.path.realpath(root))
    return tuple(roots)


@dataclasses.dataclass(frozen=True)
class ConnectPolicy:
    """The classes and files connector configs may name (see the module docstring).
    Plain data: it travels to task actors inside their spec."""

    plugin_path: tuple[str, ...] = ()
    file_roots: tuple[str, ...] = ()

    @classmethod
    def build(cls, plugin_path: Iterable[str] | str | None = None,
              file_roots: Iterable[str] | str | None = None) -> "ConnectPolicy":
        """Validated: ``ValueError`` names a bad entry."""
        return cls(_module_prefixes(plugin_path), _roots(file_roots))

    def allows_module(self, module_name: str) -> bool:
        return any(module_name == prefix or module_name.startswith(prefix + ".")
                   for prefix in (BUILTIN_MODULE_PREFIX, *self.plugin_path))

    def check_import(self, module_name: str, value: str, field: str) -> None:
        """Refuse (``PluginNotFoundError`` naming ``field``) to import ``module_name``
        for ``value`` unless the plugin path allows it. Call before importing."""
        if not self.allows_module(module_name):
            allowed = ", ".join((BUILTIN_MODULE_PREFIX, *self.plugin_path))
            raise PluginNotFoundError(
                f"{field} {value!r} is not allowed: module {module_name!r} is not under the plugin_path "
                f"({allowed}); add its package to Connect's plugin_path, or register the class with "
                "Connect.register_plugin", field)

    def check_file(self, path: str, field: str) -> str:
        """The resolved absolute ``path``, or ``ConnectorConfigError`` naming ``field``
        and the path when it is outside every file root."""
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ConnectorConfigError(f"{field} must be a file path, got {path!r}", field)
        resolved = os.path.realpath(path)
        if not self.file_roots:
            raise ConnectorConfigError(
                f"{field} {path!r} is refused: Connect has no file_roots configured, so file connectors may use "
                "no file (start Connect with file_roots=[...] or `rafka connect start --file-root DIR`)", field)
        for root in self.file_roots:
            if resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep):
                return resolved
        raise ConnectorConfigError(
            f"{field} {path!r} (resolved: {resolved}) is outside Connect's file_roots {list(self.file_roots)}", field)


DEFAULT_POLICY = ConnectPolicy()
