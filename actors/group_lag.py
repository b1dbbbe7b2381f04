"""Consumer-group lag, as the group coordinators publish it (``rafka_group_lag_records``).

Lag of a group on a topic = the sum, over the partitions of that topic the group has
committed an offset for, of the partition's high watermark (the log end offset that
consumers can read up to) minus the committed offset, never below zero. Partitions the
group never committed are left out (their lag is undefined, as in ``rafka groups
describe``), and so are partitions whose leader did not answer in time.

``LogEndOffsets`` asks the leader replicas (``list_offset(LATEST)``), at most
``CALLS_IN_FLIGHT`` calls at a time and each bounded by ``CALL_TIMEOUT_S``, so a slow or
dead leader delays one metrics round, never the coordinator's requests. Leader handles
are cached and dropped when a call fails (the leader may have moved).
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable

import ray

from rafka.actors import names
from rafka.actors.replica import LATEST

CALLS_IN_FLIGHT = 64
CALL_TIMEOUT_S = 2.0

TopicPartition = tuple[str, int]


def lag_by_topic(committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> dict[str, int]:
    """{topic: lag in records} over the committed partitions whose end offset is known."""
    lags: dict[str, int] = {}
    for tp, offset in committed.items():
        end = ends.get(tp)
        if end is not None:
            lags[tp[0]] = lags.get(tp[0], 0) + max(0, end - offset)
    return lags


class LogEndOffsets:
    """High watermarks of partitions, read from their leader replicas."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._leaders: dict[tuple[str, int, int], Any] = {}

    async def fetch(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        """{(topic, partition): high watermark} for every partition of ``topics`` whose
        leader answered; deleted topics and leaderless partitions are missing."""
        topics = sorted(set(topics))
        if not topics:
            return {}
        controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
        metadata = await controller.metadata.remote(topics)
        leaders = [(topic, state["partition"], state["leader"])
                   for topic, partitions in metadata.items() if partitions
                   for state in partitions if state["leader"] >= 0]
        ends: dict[TopicPartition, int] = {}
        for start in range(0, len(leaders), CALLS_IN_FLIGHT):
            chunk = leaders[start:start + CALLS_IN_FLIGHT]
            answers = await asyncio.gather(*(self._end_offset(leader) for leader in chunk), return_exceptions=True)
            for (topic, partition, _), answer in zip(chunk, answers):
                if isinstance(answer, int):
                    ends[(topic, partition)] = answer
        # Keep only the handles of current leaders: the cache stays as small as the topics.
        current = set(leaders)
        self._leaders = {leader: handle for leader, handle in self._leaders.items() if leader in current}
        return ends

    async def _end_offset(self, leader: tuple[str, int, int]) -> int:
        try:
            handle = self._leaders.get(leader)
            if handle is None:
                handle = self._leaders[leader] = ray.get_actor(names.replica(*leader), namespace=self.namespace)
            offset, _ = await asyncio.wait_for(_await(handle.list_offset.remote(LATEST)), CALL_TIMEOUT_S)
            return offset
        except Exception:
            self._leaders.pop(leader, None)
            raise


async def _await(ref):
    return await ref
