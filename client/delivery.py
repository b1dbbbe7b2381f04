"""A producer whose ``flush`` fails when a send since the last flush failed.

Kafka's ``Producer.flush()`` waits until every batch is acknowledged *or failed* and
does not raise: only a send's future (or callback) tells that its records were never
written. A pipeline that commits input offsets after flushing its outputs (a stream task:
changelog, outputs, then offsets) must not commit past an output that was lost, or
at-least-once becomes at-most-once. ``CheckedProducer`` keeps the future of every
``send`` / ``send_batch`` since the last ``flush``, and its ``flush`` raises the first
failure among them, so the caller stops before committing and its successor resumes from
the last commit.

Bounds: futures that completed successfully are dropped as new sends arrive, so it holds
about as many as the producer has in flight (which ``buffer_memory`` bounds). A failure
seen early is raised at the next send: nothing after a lost output is produced.

Not thread-safe: one caller thread, like the stream worker that owns it.
"""

from __future__ import annotations

import collections
from typing import Any


class CheckedProducer:
    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._pending: collections.deque = collections.deque()

    def send(self, *args: Any, **kwargs: Any) -> Any:
        self._raise_known_failure()
        future = self._producer.send(*args, **kwargs)
        self._pending.append(future)
        return future

    def send_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._raise_known_failure()
        future = self._producer.send_batch(*args, **kwargs)
        self._pending.append(future)
        return future

    def partitions_for(self, topic: str) -> list[int]:
        return self._producer.partitions_for(topic)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait for every send, then raise the first failure among those since the last
        flush (the error the producer gave up with)."""
        self._producer.flush(timeout_s)
        pending, self._pending = self._pending, collections.deque()
        for future in pending:
            future.result(0)

    def checkpoint(self) -> list:
        """The sends not yet known to have succeeded, as a marker for ``settled``: a
        caller that wants to act once everything sent so far is acknowledged, without
        waiting for it (a stream worker committing offsets while it goes on processing).
        Raises a failure already seen, like ``send``."""
        self._raise_known_failure()
        return list(self._pending)

    @staticmethod
    def settled(checkpoint: list, wait: bool = False) -> bool:
        """Whether every send of ``checkpoint`` has completed; raises the first failure
        among them once all have. Never blocks unless ``wait``, which waits for them
        (each send ends within the producer's ``delivery_timeout_ms``)."""
        if wait:
            for future in checkpoint:
                future.result(None)
        elif not all(future.done() for future in checkpoint):
            return False
        for future in checkpoint:
            future.result(0)
        return True

    def close(self, timeout_s: float | None = None) -> None:
        self._producer.close(timeout_s)

    def _raise_known_failure(self) -> None:
        """Drop the sends that completed, in order; raise if one of them failed (before
        anything more is sent)."""
        pending = self._pending
        while pending and pending[0].done():
            pending.popleft().result(0)
