"""``Connect``: the Python handle to a cluster's Connect runtime.

``Connect.start(cluster, rest_port=8083)`` starts the herder actor (or attaches to the
one running in the cluster's namespace) and waits until it has loaded its configs and
its REST API listens. Its security settings (docs/security.md) are fixed when the
herder starts: ``rest_token`` (else ``RAFKA_CONNECT_TOKEN`` or the file
``RAFKA_CONNECT_TOKEN_FILE`` names), required on every REST request and mandatory for a
non-loopback ``rest_host``; ``plugin_path``, the module prefixes connector, transform
and converter classes may come from besides the built-ins; ``file_roots``, the
directories file connectors may use (none by default: file connectors are refused).
This handle talks to the herder through Ray, inside the trust boundary, and needs no
token. Every method is the Python form of a REST call (see rest.py) and
raises the same errors: ``ConnectorConfigError`` (its ``field`` names the bad key),
``ConnectorNotFoundError``, ``ConnectorExistsError``.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import ray

from rafka.client import rpc
from rafka.connect.errors import ConnectError
from rafka.connect.herder import HERDER_NAME, Herder
from rafka.connect.policy import ConnectPolicy
from rafka.connect.rest_security import check_bind, load_token
from rafka.errors import ActorUnavailableError
from rafka.retry import Backoff, retry

DEFAULT_REST_PORT = 8083
DEFAULT_REST_HOST = "127.0.0.1"
# While the herder restarts: every 0.5 s (jittered), no doubling; Ray brings it back in
# about that time and the caller's deadline bounds the whole.
HERDER_RETRY_BACKOFF = Backoff(initial_s=0.5, max_s=0.5, multiplier=1.0)
# Herder methods that are safe to send again when the first try may or may not have run.
_REPEATABLE_CALLS = frozenset({"ready", "list_connectors", "info", "config", "status", "task_configs", "offsets",
                               "plugin_list", "validate_config", "pause", "resume"})


class Connect:
    def __init__(self, cluster: Any, herder: Any, rest_url: str) -> None:
        self.cluster = cluster
        self._herder = herder
        self.rest_url = rest_url

    @classmethod
    def start(cls, cluster: Any, rest_port: int = DEFAULT_REST_PORT, rest_host: str = DEFAULT_REST_HOST,
              rest_token: str | None = None, plugin_path: Iterable[str] | str | None = None,
              file_roots: Iterable[str] | str | None = None) -> "Connect":
        """Start Connect on ``cluster`` (REST API on ``rest_host:rest_port``; port 0
        picks a free one), or attach to the Connect already running there (whose
        settings stay as they were). ``ValueError`` or ``ConnectError`` name a bad
        setting, such as a non-loopback ``rest_host`` without a token."""
        if isinstance(rest_port, bool) or not isinstance(rest_port, int) or not 0 <= rest_port <= 65535:
            raise ValueError(f"rest_port must be an int in 0..65535, got {rest_port!r}")
        token = load_token(rest_token)
        check_bind(rest_host, token)
        policy = ConnectPolicy.build(plugin_path, file_roots)
        herder = (
            ray.remote(Herder)
            .options(name=HERDER_NAME, namespace=cluster.namespace, lifetime="detached", get_if_exists=True,
                     num_cpus=0, max_restarts=-1, max_concurrency=32)
            .remote(cluster.namespace, rest_host, rest_port, token, policy)
        )
        return cls(cluster, herder, rpc.get(herder.ready.remote()))

    @classmethod
    def attach(cls, cluster: Any) -> "Connect":
        """The Connect running on ``cluster``; ConnectError if none is."""
        try:
            herder = ray.get_actor(HERDER_NAME, namespace=cluster.namespace)
        except ValueError:
            raise ConnectError(f"Connect is not running in Ray namespace {cluster.namespace!r}; "
                               "start it with rafka.connect.Connect.start(cluster) or `rafka connect start`") from None
        return cls(cluster, herder, rpc.get(herder.ready.remote()))

    def _call(self, method: str, *args: Any, timeout_s: float = 120.0) -> Any:
        """Call the herder. A call that only reads, or sets a target state, is repeated
        while the herder restarts (``ActorUnavailableError``: Ray is bringing it back);
        one that creates or deletes is not, since it may have happened."""
        deadline = time.monotonic() + timeout_s

        def attempt() -> Any:
            return rpc.get(getattr(self._herder, method).remote(*args), timeout_s=max(deadline - time.monotonic(), 0.1))

        def repeatable(error: BaseException, failures: int) -> bool:
            return isinstance(error, ActorUnavailableError) and method in _REPEATABLE_CALLS

        return retry(attempt, HERDER_RETRY_BACKOFF, retriable=repeatable, deadline_s=deadline)

    # -- connectors ----------------------------------------------------------------------

    def create(self, name: str, config: dict[str, Any]) -> dict:
        """Create connector ``name``; returns its info (name, config, tasks, type)."""
        return self._call("create", name, config)

    def put_config(self, name: str, config: dict[str, Any]) -> dict:
        """Create ``name`` or replace its config (its tasks restart with the new one)."""
        return self._call("put_config", name, config)[1]

    def list(self) -> list[str]:
        return self._call("list_connectors")

    def info(self, name: str) -> dict:
        return self._call("info", name)

    def config(self, name: str) -> dict:
        return self._call("config", name)

    def status(self, name: str) -> dict:
        return self._call("status", name)

    def task_configs(self, name: str) -> list[dict]:
        return self._call("task_configs", name)

    def offsets(self, name: str) -> dict:
        return self._call("offsets", name)

    def pause(self, name: str) -> None:
        self._call("pause", name)

    def resume(self, name: str) -> None:
        self._call("resume", name)

    def restart(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> dict:
        return self._call("restart", name, include_tasks, only_failed)

    def restart_task(self, name: str, task_id: int) -> None:
        self._call("restart_task", name, task_id)

    def delete(self, name: str) -> None:
        """Stop the connector's tasks (each commits first) and forget its config. Source
        offsets and a sink's consumer group stay, as in Kafka Connect."""
        self._call("delete", name)

    def plugins(self) -> list[dict]:
        return self._call("plugin_list")

    def validate(self, plugin: str, config: dict[str, Any]) -> dict:
        return self._call("validate_config", plugin, config)

    def register_plugin(self, connector_class: type, name: str | None = None) -> str:
        """Make ``connector_class`` usable as ``connector.class: name`` (default: the
        class's name). The class is shipped by value, so one defined in a script or a
        notebook works; it is stored with the configs and survives restarts."""
        import sys

        name = name or connector_class.__name__
        module = sys.modules.get(connector_class.__module__)
        defined_in = connector_class.__module__
        if module is not None and defined_in != "__main__" and not defined_in.startswith("rafka."):
            ray.cloudpickle.register_pickle_by_value(module)
        self._call("register_plugin", name, ray.cloudpickle.dumps(connector_class))
        return name

    def wait_for_state(self, name: str, state: str = "RUNNING", timeout_s: float = 60.0, tasks: bool = True) -> dict:
        """Wait until the connector (and with ``tasks`` every task) is in ``state``;
        returns the status, or raises ConnectError with the last status seen."""
        deadline = time.monotonic() + timeout_s
        status: dict = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            states = [status["connector"]["state"]] + ([t["state"] for t in status["tasks"]] if tasks else [])
            if all(s == state for s in states) and (status["tasks"] or not tasks):
                return status
            time.sleep(0.2)
        raise ConnectError(f"connector {name!r} did not reach {state} within {timeout_s:.0f} s: {status}")

    def shutdown(self) -> None:
        """Stop every connector's tasks (each commits) and the herder."""
        try:
            self._call("shutdown")
        finally:
            try:
                ray.kill(self._herder, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone after its shutdown: nothing is left to stop
                pass
