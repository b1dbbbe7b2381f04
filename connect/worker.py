"""The task actor: one Ray actor per connector task, running its loop on a thread.

The herder (herder.py) starts a ``_TaskActor`` per task as a named, detached actor
(``connect-task:<connector>:<id>``, ``num_cpus=0``, no Ray restarts: the herder decides
about restarts, with backoff, so a failing task does not spin). The actor's constructor
starts the loop thread (source_loop.py or sink_loop.py); every other method — status,
pause, resume, stop — returns at once, answered from another thread of the actor.

States, as Kafka Connect names them: ``UNASSIGNED`` (starting), ``RUNNING``, ``PAUSED``,
``FAILED`` (the loop ended with an error: ``trace`` says which), ``STOPPED``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import ray

from rafka.actors.process import tune_actor_process
from rafka.connect.errors import RetriableError
from rafka.connect.failures import ToleranceExceededError, format_trace
from rafka.retry import Backoff

TASK_PREFIX = "connect-task:"
STOP_TIMEOUT_S = 30.0
RETRY_BACKOFF_INITIAL_S = 0.2  # the first wait after a RetriableError, doubling (jittered) up to errors.retry.delay.max.ms


def task_actor_name(connector: str, task_id: int) -> str:
    return f"{TASK_PREFIX}{connector}:{task_id}"


class _TaskActor:
    def __init__(self, namespace: str, spec: dict[str, Any]) -> None:
        tune_actor_process()
        self.namespace = namespace
        self.spec = spec
        self.state = "UNASSIGNED"
        self.trace: str | None = None
        self.paused = spec.get("paused", False)
        self.stopping = threading.Event()
        self.records = 0
        self.commits = 0
        self.last_commit_ms: int | None = None
        self.failures = None
        self.retry_since: float | None = None
        self.retry_attempt = 0
        self.cluster = None
        self.worker_id = f"{ray.util.get_node_ip_address()}:{os.getpid()}"
        self._thread = threading.Thread(target=self._run, name=f"connect-{spec['connector']}-{spec['task_id']}", daemon=True)
        self._thread.start()

    # -- called by the herder ----------------------------------------------------------

    def generation(self) -> str:
        return self.spec["generation"]

    def status(self) -> dict[str, Any]:
        status = {"id": self.spec["task_id"], "state": self.state, "worker_id": self.worker_id,
                  "records": self.records, "commits": self.commits, "last_commit_ms": self.last_commit_ms}
        if self.trace:
            status["trace"] = self.trace
        if self.failures is not None:
            status.update(self.failures.status())
        return status

    def pause(self) -> None:
        self.paused = True
        if self.state == "RUNNING":
            self.state = "PAUSED"

    def resume(self) -> None:
        self.paused = False
        if self.state == "PAUSED":
            self.state = "RUNNING"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, Any]:
        """Stop the loop (the task commits what it did and runs ``stop``); returns the
        final status. The actor is killed by the caller afterwards."""
        self.stopping.set()
        self._thread.join(timeout_s)
        return self.status()

    # -- called by the loops -----------------------------------------------------------

    def started(self) -> None:
        self.state = "PAUSED" if self.paused else "RUNNING"

    def committed(self) -> None:
        self.commits += 1
        self.last_commit_ms = int(time.time() * 1000)

    def retry_wait(self, error: RetriableError, poll: Any = None) -> None:
        """Back off before retrying after ``error``; raise it once the connector's
        ``errors.retry.timeout.ms`` has passed since the first retry."""
        config = self.spec["connector_config"]
        now = time.monotonic()
        if self.retry_since is None:
            self.retry_since, self.retry_attempt = now, 0
        timeout_ms = config["errors.retry.timeout.ms"]
        if timeout_ms >= 0 and (now - self.retry_since) * 1000 > timeout_ms:
            raise error
        self.retry_attempt += 1
        max_delay_s = config["errors.retry.delay.max.ms"] / 1000
        delay_s = Backoff(initial_s=min(RETRY_BACKOFF_INITIAL_S, max_delay_s), max_s=max_delay_s).delay_s(
            self.retry_attempt - 1)
        if poll is not None:
            poll(delay_s)
        else:
            self.stopping.wait(delay_s)

    def retry_succeeded(self) -> None:
        self.retry_since = None

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        from rafka.client.cluster import Cluster
        from rafka.connect.converters import converter_from_config
        from rafka.connect.sink_loop import run_sink
        from rafka.connect.source_loop import run_source
        from rafka.connect.transforms import build_transforms

        try:
            config = self.spec["connector_config"]
            self.cluster = Cluster.connect(namespace=self.namespace)
            policy = self.spec.get("policy")  # the herder's, already applied to this config
            self.key_converter = converter_from_config(config, is_key=True, policy=policy)
            self.value_converter = converter_from_config(config, is_key=False, policy=policy)
            self.transforms = build_transforms(config, policy=policy)
            (run_source if self.spec["kind"] == "source" else run_sink)(self)
            self.state = "STOPPED"
        except BaseException as error:  # noqa: BLE001 - reported in status, the herder restarts
            cause = error.__cause__ if isinstance(error, ToleranceExceededError) and error.__cause__ else error
            self.trace = f"{error}\n" + format_trace(cause) if cause is not error else format_trace(error)
            self.state = "FAILED"


def start_task_actor(namespace: str, spec: dict[str, Any]) -> Any:
    return (
        ray.remote(_TaskActor)
        .options(name=task_actor_name(spec["connector"], spec["task_id"]), namespace=namespace, lifetime="detached",
                 num_cpus=0, max_restarts=0, max_concurrency=4)
        .remote(namespace, spec)
    )
