"""Client-side metadata: which broker leads each partition, and handles to the leaders.

Refreshed from the controller when a topic is first used and whenever a request fails
with a retriable error (a new leader, a restarted replica). Thread-safe: the producer's
sender thread and the user's thread share one cache.

A lookup either waits for the controller as long as it takes to answer (retrying, up to
``call_with_retries``' 60 s), or, given ``timeout_s``, at most that long: then it raises
``RequestTimeoutError`` (retriable) and leaves its request pending, so that the next
bounded lookup of the same topics waits for the same answer instead of asking again.
The consumer's poll() uses the bounded form, so that a controller failing over does not
hold a poll(0.5) for many seconds (which made its group evict it for not polling).
"""

from __future__ import annotations

import threading
import time

import ray

from rafka.actors import names
from rafka.client import rpc
from rafka.errors import LeaderNotAvailableError, RequestTimeoutError, TopicNotFoundError

REFRESH_BACKOFF_S = 0.05


class Metadata:
    def __init__(self, controller: ray.actor.ActorHandle, namespace: str) -> None:
        self.controller = controller
        self.namespace = namespace
        self._partitions: dict[str, list[dict]] = {}
        self._handles: dict[str, ray.actor.ActorHandle] = {}
        self._pending: dict[tuple[str, ...], ray.ObjectRef] = {}  # bounded lookups still waiting
        self._lock = threading.Lock()

    def refresh(self, topics: list[str], timeout_s: float | None = None) -> None:
        """Ask the controller about ``topics``: unbounded (retried up to 60 s) or, with
        ``timeout_s``, one pending request waited on for at most that long."""
        if timeout_s is None:
            answer = rpc.call_with_retries(self.controller.metadata, list(topics))
        else:
            key = tuple(sorted(topics))
            with self._lock:
                ref = self._pending.get(key)
                if ref is None:
                    ref = self._pending[key] = self.controller.metadata.remote(list(key))
            answered = False
            try:
                answer = rpc.get(ref, timeout_s=max(0.0, timeout_s))
                answered = True
            except RequestTimeoutError:
                raise  # still pending: the next bounded lookup waits on it
            except BaseException:
                answered = True  # failed for good: the next lookup asks again
                raise
            finally:
                if answered:
                    with self._lock:
                        if self._pending.get(key) is ref:
                            del self._pending[key]
        with self._lock:
            for topic, partitions in answer.items():
                if partitions is None:
                    self._partitions.pop(topic, None)
                else:
                    self._partitions[topic] = partitions

    def partitions(self, topic: str, timeout_s: float | None = None) -> list[dict]:
        partitions = self._partitions.get(topic)
        if partitions is None:
            self.refresh([topic], timeout_s)
            partitions = self._partitions.get(topic)
            if partitions is None:
                raise TopicNotFoundError(f"unknown topic {topic!r}")
        return partitions

    def partition_count(self, topic: str) -> int:
        return len(self.partitions(topic))

    def leader(self, topic: str, partition: int, timeout_s: float | None = None) -> tuple[ray.actor.ActorHandle, int]:
        """(handle of the leader replica, leader epoch) of ``topic``/``partition``;
        ``timeout_s`` bounds a refresh it needs (see the module docstring)."""
        partitions = self.partitions(topic, timeout_s)
        if not 0 <= partition < len(partitions):
            raise TopicNotFoundError(f"topic {topic!r} has no partition {partition} (it has {len(partitions)})")
        state = partitions[partition]
        if state["leader"] < 0:
            raise LeaderNotAvailableError(f"{topic}-{partition} has no leader")
        name = names.replica(topic, partition, state["leader"])
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=self.namespace)
            except ValueError:
                raise LeaderNotAvailableError(f"leader of {topic}-{partition} ({name}) is not running") from None
            self._handles[name] = handle
        return handle, state["leader_epoch"]

    def invalidate(self, topic: str) -> None:
        """Forget what is known of ``topic``; the next use refreshes it."""
        with self._lock:
            self._partitions.pop(topic, None)
            for name in [name for name in self._handles if name.startswith(f"replica:{topic}:")]:
                del self._handles[name]
        time.sleep(REFRESH_BACKOFF_S)
