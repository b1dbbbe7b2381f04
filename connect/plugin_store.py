"""Where classes registered with ``Connect.register_plugin`` are kept: Ray's own
key-value store (in the GCS), never a rafka topic.

A registered class travels by value, as a cloudpickle, because a class defined in a
script or a notebook has no module to import it from. Unpickling runs code, so the
pickle must live where only members of the Ray cluster can write, the same people who
may already run any code there (docs/security.md). A topic is not such a place: before
issue 21 the herder kept these pickles in ``__connect_configs`` and unpickled them on
every restart, so whoever could produce to that topic could run code in the herder.

Kept: across herder restarts, for as long as the Ray cluster (its GCS) lives. Not kept:
across a restart of Ray itself; a connector whose registered class is gone then fails
with ``PluginNotFoundError`` naming it until the class is registered again.

Records ``plugin-<name>`` that older versions wrote to ``__connect_configs`` are ignored
(never unpickled).
"""

from __future__ import annotations

import json
from typing import Any

import ray
from ray.experimental import internal_kv

KEY_PREFIX = "plugin-"
INDEX_KEY = "index"  # a JSON list of the registered names (no "plugin-" key can be it)


def _kv_namespace(rafka_namespace: str) -> str:
    return f"rafka-connect-plugins:{rafka_namespace}"


def _names(namespace: str) -> list[str]:
    raw = internal_kv._internal_kv_get(INDEX_KEY, namespace=namespace)
    return json.loads(raw) if raw else []


def save(rafka_namespace: str, name: str, payload: bytes) -> None:
    """Keep the pickled class ``payload`` registered as ``name``. The caller serialises
    saves (the herder holds its lock): the name index is read, then written."""
    namespace = _kv_namespace(rafka_namespace)
    internal_kv._internal_kv_put(KEY_PREFIX + name, payload, overwrite=True, namespace=namespace)
    names = _names(namespace)
    if name not in names:
        internal_kv._internal_kv_put(INDEX_KEY, json.dumps(names + [name]), overwrite=True, namespace=namespace)


def load_all(rafka_namespace: str) -> dict[str, Any]:
    """Every registered class by name (unpickled: written only by Ray members)."""
    namespace = _kv_namespace(rafka_namespace)
    classes = {}
    for name in _names(namespace):
        payload = internal_kv._internal_kv_get(KEY_PREFIX + name, namespace=namespace)
        if payload is not None:
            classes[name] = ray.cloudpickle.loads(payload)
    return classes
