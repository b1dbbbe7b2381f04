"""The herder: the one actor that owns connector configs, runs connectors and
supervises their task actors.

It is a named, detached Ray actor (``connect-herder`` in the cluster's namespace) that
Ray restarts when it dies. On (re)start it reads ``__connect_configs`` and starts every
connector it finds there; a task actor still running from before with the same config
generation is adopted, not restarted. Configs and target states (RUNNING/PAUSED) are
written to ``__connect_configs`` (acks=all, as JSON of plain data) before a request is
answered, so an acknowledged create survives any restart. Plugin classes registered
from Python are kept in Ray's key-value store (connect/plugin_store.py), never in a
topic: nothing read from a topic is unpickled. Status is written to ``__connect_status``
whenever a state changes.

Security (docs/security.md): every config, from REST or a restart, is checked against
the herder's ``ConnectPolicy`` (the classes it may import, the files it may name); the
REST API checks the credential, ``Host``, ``Origin`` and content type
(connect/rest_security.py).

Supervision: every ``MONITOR_INTERVAL_S`` the herder asks each task actor for its
status. A task that FAILED, or whose actor died, is restarted after a backoff of
1, 2, 4, … up to ``MAX_BACKOFF_S`` seconds, each jittered by up to 20% (``rafka.retry``);
the failure's trace stays in the task's status (``trace`` while it is down,
``last_failure`` after), with the restart count.
A task that has run for ``BACKOFF_RESET_S`` starts its backoff over.

Concurrency: requests arrive on the actor's threads (REST and Ray calls) and the monitor
runs on its own; ``_lock`` serialises every change to connector state. Loading the
configs runs on a thread of its own, and every request waits for it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
import urllib.parse
from typing import Any

import ray

from rafka.actors.process import tune_actor_process
from rafka.connect.api import ConnectorContext
from rafka.connect.errors import ConnectError, ConnectorExistsError, ConnectorNotFoundError
from rafka.connect.failures import format_trace
from rafka.connect.plugins import connector_type, list_plugins
from rafka.connect.policy import DEFAULT_POLICY, ConnectPolicy
from rafka.connect.settings import validate
from rafka.connect.store import CONFIGS_TOPIC, STATUS_TOPIC, TopicStore
from rafka.connect.worker import start_task_actor, task_actor_name
from rafka.retry import Backoff

HERDER_NAME = "connect-herder"
MONITOR_INTERVAL_S = 1.0
STATUS_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 60.0
BACKOFF_RESET_S = 60.0
# Before restarting a failed task: 1, 2, 4 ... MAX_BACKOFF_S seconds, jittered so tasks
# that failed together (their database went away) do not all come back at once.
RESTART_BACKOFF = Backoff(initial_s=1.0, max_s=MAX_BACKOFF_S)
REST_PORT_KEY = "rest-port"  # in __connect_configs: the port taken when any free one would do
logger = logging.getLogger(__name__)


def _after_init(method: Any) -> Any:
    """A request waits until the herder has loaded its configs and plugins: a handle
    held across a herder restart must not see an empty herder (404 for a connector
    that exists, an unknown plugin)."""

    @functools.wraps(method)
    def wrapper(self: "Herder", *args: Any, **kwargs: Any) -> Any:
        if not self._ready.is_set() or self._init_error is not None:
            self.ready()
        return method(self, *args, **kwargs)

    return wrapper


class _Task:
    def __init__(self, task_id: int, config: dict) -> None:
        self.id = task_id
        self.config = config
        self.actor: Any = None
        self.status: dict[str, Any] = {"id": task_id, "state": "UNASSIGNED", "worker_id": ""}
        self.restarts = 0
        self.attempt = 0
        self.restart_at: float | None = None
        self.running_since: float | None = None
        self.last_failure: str | None = None


class _Connector:
    def __init__(self, name: str, config: dict, target_state: str) -> None:
        self.name = name
        self.config = config  # as the user gave it
        self.target_state = target_state
        self.cls: type | None = None
        self.kind = "unknown"
        self.instance: Any = None
        self.parsed: dict = {}
        self.generation = ""
        self.tasks: list[_Task] = []
        self.state = "UNASSIGNED"
        self.trace: str | None = None
        self.reconfigure = False


class Herder:
    def __init__(self, namespace: str, rest_host: str, rest_port: int, rest_token: str | None = None,
                 policy: ConnectPolicy = DEFAULT_POLICY) -> None:
        tune_actor_process()
        self.namespace = namespace
        self.rest_host = rest_host
        self.rest_port = rest_port
        self.rest_token = rest_token
        self.policy = policy
        self.rest_url: str | None = None
        self.connectors: dict[str, _Connector] = {}
        self.plugins: dict[str, type] = {}
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._stopped = threading.Event()
        threading.Thread(target=self._init, name="herder-init", daemon=True).start()

    # -- start ---------------------------------------------------------------------------

    def _init(self) -> None:
        try:
            from rafka.client.cluster import Cluster
            from rafka.connect.rest import RestServer

            self.cluster = Cluster.connect(namespace=self.namespace)
            self.configs = TopicStore(self.cluster, CONFIGS_TOPIC)
            self.statuses = TopicStore(self.cluster, STATUS_TOPIC)
            stored = self.configs.read_all()
            ignored = sorted(key for key in stored if key.startswith("plugin-"))
            if ignored:
                # Written by versions before issue 21: a pickle read from a topic is never
                # loaded (it could run code here). Register those classes again.
                logger.warning("ignoring plugin records %s in %s; register the classes again", ignored, CONFIGS_TOPIC)
            from rafka.connect import plugin_store

            self.plugins.update(plugin_store.load_all(self.namespace))
            with self._lock:
                for key, value in sorted(stored.items()):
                    if key.startswith("connector-"):
                        if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
                            logger.warning("skipping malformed record %r in %s", key, CONFIGS_TOPIC)
                            continue
                        connector = _Connector(key[len("connector-"):], value["config"], value.get("target_state", "RUNNING"))
                        self.connectors[connector.name] = connector
                        self._start(connector)
            self.rest_url = self._start_rest(RestServer, stored.get(REST_PORT_KEY))
            threading.Thread(target=self._monitor, name="herder-monitor", daemon=True).start()
        except BaseException as error:  # noqa: BLE001 - ready() reports it
            self._init_error = error
        finally:
            self._ready.set()

    def _start_rest(self, server_class: type, stored: dict | None) -> str:
        """Start the REST API; its URL. Asked for any free port (0), the herder takes the
        port it had before a restart when that is free again, and records the one it got,
        so a URL handed out before Ray restarted the herder still answers."""
        if self.rest_port != 0:
            self.rest = server_class(self, self.rest_host, self.rest_port, self.rest_token)
            return self.rest.start()
        previous_port = stored.get("port") if isinstance(stored, dict) else None
        if isinstance(previous_port, int) and not isinstance(previous_port, bool) and 0 < previous_port < 65536:
            try:
                self.rest = server_class(self, self.rest_host, previous_port, self.rest_token)
                return self.rest.start()
            except ConnectError:
                pass  # taken by now: any free port, recorded below
        self.rest = server_class(self, self.rest_host, 0, self.rest_token)
        url = self.rest.start()
        self.configs.put(REST_PORT_KEY, {"port": urllib.parse.urlsplit(url).port})
        return url

    def ready(self, timeout_s: float = 120.0) -> str:
        """The REST API's URL once the herder has loaded its configs."""
        if not self._ready.wait(timeout_s):
            raise ConnectError(f"the Connect herder did not start within {timeout_s:.0f} s")
        if self._init_error is not None:
            raise ConnectError(f"the Connect herder failed to start: {self._init_error}")
        return self.rest_url

    # -- requests ------------------------------------------------------------------------

    @_after_init
    def list_connectors(self) -> list[str]:
        return sorted(self.connectors)

    @_after_init
    def create(self, name: str, config: dict) -> dict:
        with self._lock:
            if name in self.connectors:
                raise ConnectorExistsError(f"connector {name!r} already exists")
            return self.put_config(name, config)[1]

    @_after_init
    def put_config(self, name: str, config: dict) -> tuple[bool, dict]:
        """Create connector ``name`` or replace its config; (created, info)."""
        config = {**config, "name": name} if isinstance(config, dict) else config
        validate(name, config, self.plugins, self.policy)
        with self._lock:
            existing = self.connectors.get(name)
            target_state = existing.target_state if existing else "RUNNING"
            self.configs.put(f"connector-{name}", {"config": config, "target_state": target_state})
            if existing is not None:
                self._stop(existing)
            connector = _Connector(name, config, target_state)
            self.connectors[name] = connector
            self._start(connector)
            return existing is None, self.info(name)

    @_after_init
    def delete(self, name: str) -> None:
        with self._lock:
            connector = self._get(name)
            self.configs.put(f"connector-{name}", None)
            self._stop(connector)
            del self.connectors[name]
            self.statuses.put_many({f"connector-{name}": None,
                                    **{f"task-{name}-{task.id}": None for task in connector.tasks}})

    @_after_init
    def config(self, name: str) -> dict:
        return dict(self._get(name).config)

    @_after_init
    def info(self, name: str) -> dict:
        connector = self._get(name)
        return {"name": name, "config": dict(connector.config), "type": connector.kind,
                "tasks": [{"connector": name, "task": task.id} for task in connector.tasks]}

    @_after_init
    def task_configs(self, name: str) -> list[dict]:
        connector = self._get(name)
        return [{"id": {"connector": name, "task": task.id}, "config": task.config} for task in connector.tasks]

    @_after_init
    def status(self, name: str) -> dict:
        connector = self._get(name)
        state = connector.state
        if state == "RUNNING" and connector.target_state == "PAUSED":
            state = "PAUSED"
        status = {"name": name, "type": connector.kind,
                  "connector": {"state": state, "worker_id": self.rest_url or ""},
                  "tasks": [self._task_status(task) for task in connector.tasks]}
        if connector.trace:
            status["connector"]["trace"] = connector.trace
        return status

    @_after_init
    def task_status(self, name: str, task_id: int) -> dict:
        return self._task_status(self._task(name, task_id))

    @_after_init
    def pause(self, name: str) -> None:
        self._set_target(name, "PAUSED")

    @_after_init
    def resume(self, name: str) -> None:
        self._set_target(name, "RUNNING")

    @_after_init
    def restart(self, name: str, include_tasks: bool = False, only_failed: bool = False) -> dict:
        """Restart the connector (and with ``include_tasks`` its tasks; with
        ``only_failed`` only the ones that failed). A plain restart of a connector that
        has not failed restarts its Connector instance only, as Kafka Connect does: its
        tasks keep running unless the task configs it computes now differ."""
        with self._lock:
            connector = self._get(name)
            if only_failed and connector.state != "FAILED" and not include_tasks:
                return self.status(name)
            if not include_tasks and connector.state != "FAILED":
                self._restart_instance(connector)
            elif include_tasks or connector.state == "FAILED":
                tasks = [t for t in connector.tasks if not only_failed or t.status.get("state") == "FAILED"]
                if connector.state == "FAILED" or len(tasks) == len(connector.tasks) and include_tasks:
                    self._stop(connector)
                    fresh = _Connector(name, connector.config, connector.target_state)
                    self.connectors[name] = fresh
                    self._start(fresh)
                else:
                    for task in tasks:
                        self._restart_task_now(connector, task)
            return self.status(name)

    @_after_init
    def restart_task(self, name: str, task_id: int) -> None:
        with self._lock:
            connector = self._get(name)
            self._restart_task_now(connector, self._task(name, task_id))

    @_after_init
    def plugin_list(self) -> list[dict]:
        return list_plugins(self.plugins)

    @_after_init
    def validate_config(self, plugin: str, config: dict) -> dict:
        """Kafka Connect's validate answer: ``error_count`` and per-key errors."""
        from rafka.connect.errors import ConnectorConfigError

        config = {**config, "connector.class": config.get("connector.class", plugin)}
        try:
            validate(config.get("name", "validate"), config, self.plugins, self.policy)
            errors: list[dict] = []
        except ConnectorConfigError as error:
            errors = [{"name": error.field or "", "errors": [str(error)]}]
        return {"name": plugin, "error_count": len(errors),
                "configs": [{"value": {"name": e["name"], "errors": e["errors"]}} for e in errors]}

    @_after_init
    def register_plugin(self, name: str, payload: bytes) -> None:
        """Make the pickled connector class ``payload`` available as ``name``. Only a
        member of the Ray cluster can call this (it is a Ray call, not REST), and the
        pickle is kept in Ray's key-value store, where only members can write."""
        from rafka.connect import plugin_store

        cls = ray.cloudpickle.loads(payload)
        with self._lock:
            plugin_store.save(self.namespace, name, payload)
            self.plugins[name] = cls

    @_after_init
    def offsets(self, name: str) -> dict:
        """Committed progress: source offsets, or the sink group's committed offsets."""
        connector = self._get(name)
        if connector.kind == "source":
            from rafka.connect.offsets import OffsetStore

            store = OffsetStore(self.cluster, name)
            try:
                return {"offsets": [{"partition": json.loads(key), "offset": offset}
                                    for key, offset in sorted(store.load().items())]}
            finally:
                store.close()
        from rafka.connect.sink_loop import group_id

        try:
            group = self.cluster.admin().describe_group(group_id(name))
        except Exception:  # noqa: BLE001 - no commit yet
            return {"offsets": []}
        return {"offsets": [{"partition": {"topic": p["topic"], "partition": p["partition"]},
                             "offset": p.get("committed_offset")} for p in group.get("partitions", [])]}

    def shutdown(self) -> None:
        """Stop every task (each commits what it did), then the REST server."""
        self._stopped.set()
        with self._lock:
            for connector in self.connectors.values():
                self._stop(connector)
        if getattr(self, "rest", None) is not None:
            self.rest.stop()

    # -- inside the lock -----------------------------------------------------------------

    def _get(self, name: str) -> _Connector:
        connector = self.connectors.get(name)
        if connector is None:
            raise ConnectorNotFoundError(f"connector {name!r} not found")
        return connector

    def _task(self, name: str, task_id: int) -> _Task:
        connector = self._get(name)
        for task in connector.tasks:
            if task.id == task_id:
                return task
        raise ConnectorNotFoundError(f"connector {name!r} has no task {task_id!r}")

    def _set_target(self, name: str, target_state: str) -> None:
        with self._lock:
            connector = self._get(name)
            if connector.target_state == target_state:
                return
            self.configs.put(f"connector-{name}", {"config": connector.config, "target_state": target_state})
            connector.target_state = target_state
            calls = [task.actor.pause.remote() if target_state == "PAUSED" else task.actor.resume.remote()
                     for task in connector.tasks if task.actor is not None]
        try:
            ray.get(calls, timeout=STATUS_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - a dead task is restarted in the target state
            logger.warning("connector %r: not every task took target state %s (%r); a dead task restarts in it",
                           name, target_state, error)

    def _start(self, connector: _Connector) -> None:
        try:
            cls, parsed = validate(connector.name, connector.config, self.plugins, self.policy)
            connector.cls, connector.kind, connector.parsed = cls, connector_type(cls), parsed
            instance = cls()
            instance.initialize(ConnectorContext(connector.name, lambda: self._request_reconfiguration(connector.name),
                                                 lambda error: self._connector_failed(connector.name, error)))
            instance.start(parsed)
            connector.instance = instance
            task_configs = list(instance.task_configs(parsed["tasks.max"]))[: parsed["tasks.max"]]
        except Exception as error:  # noqa: BLE001 - shown in status
            connector.state, connector.trace = "FAILED", format_trace(error)
            self._write_status(connector)
            return
        connector.generation = hashlib.sha256(
            json.dumps([connector.config, task_configs], sort_keys=True, default=str).encode()).hexdigest()[:16]
        connector.tasks = [_Task(index, task_config) for index, task_config in enumerate(task_configs)]
        connector.state, connector.trace = "RUNNING", None
        for task in connector.tasks:
            self._start_task(connector, task, adopt=True)
        self._write_status(connector)

    def _spec(self, connector: _Connector, task: _Task) -> dict:
        return {"connector": connector.name, "task_id": task.id, "kind": connector.kind,
                "task_class": connector.instance.task_class(), "connector_config": connector.parsed,
                "task_config": {**connector.parsed, **task.config}, "generation": connector.generation,
                "paused": connector.target_state == "PAUSED", "policy": self.policy}

    def _start_task(self, connector: _Connector, task: _Task, adopt: bool = False) -> None:
        name = task_actor_name(connector.name, task.id)
        try:
            existing = ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            existing = None
        if existing is not None:
            try:
                if adopt and ray.get(existing.generation.remote(), timeout=STATUS_TIMEOUT_S) == connector.generation:
                    task.actor = existing
                    task.running_since = time.monotonic()
                    return
            except Exception as error:  # noqa: BLE001 - dead or stuck: replace it
                logger.info("connector %r: replacing task actor %s, which did not answer (%r)", connector.name, name,
                            error)
            _kill(existing)
            _wait_gone(name, self.namespace)
        task.actor = start_task_actor(self.namespace, self._spec(connector, task))
        task.status = {"id": task.id, "state": "UNASSIGNED", "worker_id": ""}
        task.running_since = time.monotonic()
        task.restart_at = None

    def _stop(self, connector: _Connector) -> None:
        """Stop the tasks (gracefully: each commits) and the connector instance."""
        calls = [(task, task.actor.stop.remote()) for task in connector.tasks if task.actor is not None]
        for task, call in calls:
            try:
                ray.get(call, timeout=STATUS_TIMEOUT_S * 4)
            except Exception as error:  # noqa: BLE001 - killed below either way
                logger.warning("connector %r: task %d did not stop cleanly (%r); killing it, its last offsets "
                               "may not be committed", connector.name, task.id, error)
            _kill(task.actor)
            task.actor = None
        for task, _ in calls:
            _wait_gone(task_actor_name(connector.name, task.id), self.namespace)
        if connector.instance is not None:
            try:
                connector.instance.stop()
            except Exception:  # noqa: BLE001 - plugin code: its failure must not stop the herder
                logger.exception("connector %r: its stop() raised", connector.name)
        connector.state = "UNASSIGNED"

    def _restart_instance(self, connector: _Connector) -> None:
        """Stop the Connector instance and start a fresh one on the same config. Task
        actors running with the generation it computes are adopted (keeping their
        restart count); others are replaced, and tasks it no longer has are stopped."""
        if connector.instance is not None:
            try:
                connector.instance.stop()
            except Exception:  # noqa: BLE001 - a fresh instance replaces it either way
                logger.exception("connector %r: its stop() raised; starting a fresh instance anyway", connector.name)
        fresh = _Connector(connector.name, connector.config, connector.target_state)
        self.connectors[connector.name] = fresh
        self._start(fresh)
        old = {task.id: task for task in connector.tasks}
        for task in fresh.tasks:
            before = old.pop(task.id, None)
            if before is not None and fresh.generation == connector.generation:
                task.restarts, task.last_failure = before.restarts, before.last_failure
                if before.actor is not None:
                    task.status = before.status  # the same actor, adopted
        for leftover in old.values():
            if leftover.actor is not None:
                _kill(leftover.actor)
                leftover.actor = None

    def _restart_task_now(self, connector: _Connector, task: _Task) -> None:
        if task.actor is not None:
            _kill(task.actor)
            task.actor = None
        self._start_task(connector, task)

    def _request_reconfiguration(self, name: str) -> None:
        connector = self.connectors.get(name)
        if connector is not None:
            connector.reconfigure = True

    def _connector_failed(self, name: str, error: BaseException) -> None:
        connector = self.connectors.get(name)
        if connector is not None:
            connector.state, connector.trace = "FAILED", format_trace(error)

    def _task_status(self, task: _Task) -> dict:
        status = dict(task.status)
        status["restarts"] = task.restarts
        if task.last_failure and "trace" not in status:
            status["last_failure"] = task.last_failure
        if task.restart_at is not None:
            status["restart_in_s"] = round(max(0.0, task.restart_at - time.monotonic()), 1)
        return status

    def _write_status(self, connector: _Connector) -> None:
        values = {f"connector-{connector.name}": {"state": connector.state, "trace": connector.trace}}
        values.update({f"task-{connector.name}-{task.id}": {k: task.status.get(k) for k in ("state", "worker_id", "trace")}
                       for task in connector.tasks})
        try:
            self.statuses.put_many(values)
        except Exception as error:  # noqa: BLE001 - status is advisory; the next change writes again
            logger.warning("connector %r: could not write its status to %s (%r)", connector.name, STATUS_TOPIC, error)

    # -- supervision ---------------------------------------------------------------------

    def _monitor(self) -> None:
        while not self._stopped.wait(MONITOR_INTERVAL_S):
            try:
                self._check_all()
            except Exception:  # noqa: BLE001 - keep supervising, but a failed pass is a bug to see
                logger.exception("a supervision pass failed; the next starts in %s s", MONITOR_INTERVAL_S)

    def _check_all(self) -> None:
        with self._lock:
            snapshot = [(c, t, t.actor) for c in self.connectors.values() for t in c.tasks]
            reconfigure = [c for c in self.connectors.values() if c.reconfigure]
        for connector in reconfigure:
            with self._lock:
                if self.connectors.get(connector.name) is connector:
                    self._stop(connector)
                    fresh = _Connector(connector.name, connector.config, connector.target_state)
                    self.connectors[connector.name] = fresh
                    self._start(fresh)
        refs = {id(task): actor.status.remote() for _, task, actor in snapshot if actor is not None}
        # Wait for the answers outside the lock: a busy task must not hold up requests.
        answers: dict[int, Any] = {}
        for key, ref in refs.items():
            try:
                answers[key] = ray.get(ref, timeout=STATUS_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                answers[key] = None  # busy, not dead
            except Exception as error:  # noqa: BLE001 - the actor died
                answers[key] = error
        changed: set[str] = set()
        for connector, task, actor in snapshot:
            with self._lock:
                if self.connectors.get(connector.name) is not connector or task.actor is not actor:
                    continue  # changed while we looked
                before = task.status.get("state")
                if actor is None:
                    if task.restart_at is not None and time.monotonic() >= task.restart_at:
                        task.restarts += 1
                        self._start_task(connector, task)
                        changed.add(connector.name)
                    continue
                status = answers.get(id(task))
                if status is None:
                    continue
                if isinstance(status, BaseException):
                    status = {"id": task.id, "state": "FAILED", "worker_id": task.status.get("worker_id", ""),
                              "trace": f"the task's actor died: {status}"}
                task.status = status
                if status["state"] == "FAILED":
                    task.last_failure = status.get("trace")
                    _kill(actor)
                    task.actor = None
                    if task.running_since is not None and time.monotonic() - task.running_since > BACKOFF_RESET_S:
                        task.attempt = 0
                    task.restart_at = time.monotonic() + RESTART_BACKOFF.delay_s(task.attempt)
                    task.attempt += 1
                    task.running_since = None
                if status["state"] != before:
                    changed.add(connector.name)
        for name in changed:
            with self._lock:
                connector = self.connectors.get(name)
            if connector is not None:
                self._write_status(connector)


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception as error:  # noqa: BLE001 - the actor is gone or going either way: nothing more to do
        logger.debug("ray.kill(%r) raised %r", actor, error)


def _wait_gone(name: str, namespace: str, timeout_s: float = 10.0) -> None:
    """Wait until the named actor's name is free (a killed actor releases it shortly)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:
            return
        time.sleep(0.05)
