"""What the runtime does with a record that fails: the ``errors.*`` settings.

A record fails at a *stage*: ``KEY_CONVERTER``, ``VALUE_CONVERTER``, ``TRANSFORMATION``
or ``TASK_PUT`` (a sink's ``put`` raised for it alone) — or ``TASK_POLL`` for a source.
With ``errors.tolerance=none`` the first failure fails the task. With ``all`` the record
is skipped; a sink with ``errors.deadletterqueue.topic.name`` also writes it, with its
original key, value and headers, to that topic, adding Kafka Connect's context headers
(``__connect.errors.topic``, ``.partition``, ``.offset``, ``.connector.name``,
``.task.id``, ``.stage``, ``.class.name``, ``.exception.class.name``,
``.exception.message``, ``.exception.stacktrace``). DLQ records are flushed (acks=all)
before the offsets after them are committed, and ``flush`` (or the next DLQ send) raises
``DeadLetterQueueError`` (failing the task, which then restarts from its last commit)
if one of them was not written, so a failed record is never lost: it is in the DLQ or
it is read again. The DLQ producer is a ``CheckedProducer`` (client/delivery.py), which
holds the futures of the sends still in flight.
"""

from __future__ import annotations

import collections
import logging
import time
import traceback
from typing import Any

from rafka.client.delivery import CheckedProducer
from rafka.connect.errors import ConnectError

logger = logging.getLogger("rafka.connect")

FAILURES_KEPT = 20
HEADER_PREFIX = "__connect.errors."


class ToleranceExceededError(Exception):
    """A record failed with ``errors.tolerance=none``: the task must fail."""


class DeadLetterQueueError(ConnectError):
    """A record could not be written to the dead-letter queue: the task must fail
    before it commits offsets past that record."""


class FailureHandler:
    def __init__(self, cluster: Any, connector: str, task_id: int, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.connector = connector
        self.task_id = task_id
        self.tolerate = config["errors.tolerance"] == "all"
        self.log = config["errors.log.enable"]
        self.dlq_topic = config.get("errors.deadletterqueue.topic.name") or ""
        self.dlq_replication = config.get("errors.deadletterqueue.topic.replication.factor", 1)
        self.context_headers = config.get("errors.deadletterqueue.context.headers.enable", True)
        self.failed = 0
        self.dead_lettered = 0
        self.recent: collections.deque = collections.deque(maxlen=FAILURES_KEPT)
        self._producer: CheckedProducer | None = None

    def fail(self, stage: str, where: dict[str, Any], error: BaseException, stage_class: str = "",
             raw: tuple[bytes | None, bytes | None, list | None] | None = None) -> None:
        """Handle one failed record: raise ToleranceExceededError (tolerance none), or
        count it, keep it for status, and send ``raw`` (key, value, headers) to the DLQ."""
        self.failed += 1
        summary = {"stage": stage, **where, "error": f"{type(error).__name__}: {error}", "time_ms": int(time.time() * 1000)}
        self.recent.append(summary)
        if not self.tolerate:
            raise ToleranceExceededError(f"{stage} failed for {where}: {type(error).__name__}: {error}") from error
        if self.log:
            logger.warning("connector %s task %s: record skipped at %s %s: %r", self.connector, self.task_id, stage, where, error)
        if self.dlq_topic and raw is not None:
            self._dead_letter(stage, stage_class, where, error, raw)

    def _dead_letter(self, stage: str, stage_class: str, where: dict, error: BaseException, raw: tuple) -> None:
        key, value, headers = raw
        headers = list(headers or [])
        if self.context_headers:
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            context = {
                "topic": where.get("topic"), "partition": where.get("partition"), "offset": where.get("offset"),
                "connector.name": self.connector, "task.id": self.task_id, "stage": stage, "class.name": stage_class,
                "exception.class.name": f"{type(error).__module__}.{type(error).__qualname__}",
                "exception.message": str(error), "exception.stacktrace": trace,
            }
            headers += [(HEADER_PREFIX + name, str(text).encode("utf-8")) for name, text in context.items() if text is not None]
        if self._producer is None:
            ensure_topic_plain(self.cluster, self.dlq_topic, self.dlq_replication)
            self._producer = CheckedProducer(self.cluster.producer(acks="all", linger_ms=5))
        try:
            self._producer.send(self.dlq_topic, value=value, key=key, headers=headers)
        except Exception as failure:  # noqa: BLE001 - an earlier DLQ record was not written
            raise self._lost(failure) from failure
        self.dead_lettered += 1

    def flush(self) -> None:
        """Wait until every DLQ record is acknowledged (before offsets are committed);
        raise DeadLetterQueueError if one was not written."""
        if self._producer is None:
            return
        try:
            self._producer.flush()
        except Exception as failure:  # noqa: BLE001 - any failure means a DLQ record is lost
            raise self._lost(failure) from failure

    def _lost(self, failure: BaseException) -> DeadLetterQueueError:
        return DeadLetterQueueError(f"a record could not be written to the dead-letter queue {self.dlq_topic!r}: "
                                    f"{type(failure).__name__}: {failure}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def status(self) -> dict:
        return {"failed": self.failed, "dead_lettered": self.dead_lettered, "recent_failures": list(self.recent)}


def ensure_topic_plain(cluster: Any, topic: str, replication_factor: int) -> None:
    """Create ``topic`` (one partition, not compacted) unless it exists."""
    from rafka.client import rpc
    from rafka.errors import TopicExistsError

    if rpc.call_with_retries(cluster.controller.metadata, [topic])[topic] is not None:
        return
    alive = sum(1 for broker in cluster.brokers() if broker.get("alive", True))
    try:
        cluster.admin().create_topic(topic, 1, max(1, min(replication_factor, alive)))
    except TopicExistsError:
        pass


def format_trace(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


