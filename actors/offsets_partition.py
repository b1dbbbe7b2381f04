"""What a group coordinator reads and writes outside itself: its partition of
``__consumer_offsets`` and the cluster's topic metadata.

``GroupCoordinator`` (actors/coordinator.py) keeps its state as records in one partition
of the compacted internal topic and asks the controller how many partitions each user
topic has. ``ReplicaOffsetsPartition`` does both through Ray: it calls the partition's
leader replica (following leader changes for up to ``WRITE_TIMEOUT_S``) and the
controller. The coordinator takes any object with the same four coroutine methods, so
its protocol can be tested as a plain class on a ``storage.Log`` without Ray.

Contract of each method:

* ``read(offset, max_bytes)`` -> ``(batches, next_offset, high_watermark)``: committed
  records (below the high watermark) from ``offset`` on, as Arrow batches with
  ``offset``, ``key`` and ``value`` columns;
* ``append(payload)``: append the batches of an Arrow IPC stream and return once they
  are committed (acks=all); raises when they may not be;
* ``topic_partition_counts()`` -> ``{topic: partition count}`` of every user topic;
* ``log_end_offsets(topics)`` -> ``{(topic, partition): high watermark}`` for metrics;
  partitions whose leader did not answer are missing.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import pyarrow as pa
import ray
from ray.exceptions import RayError

from rafka import calls
from rafka.actors import names
from rafka.actors.group_lag import LogEndOffsets
from rafka.errors import LeaderNotAvailableError, RafkaError
from rafka.retry import Backoff, retry_async
from rafka.storage.batch import decode_stream

WRITE_TIMEOUT_S = 30.0
LEADER_BACKOFF = Backoff(initial_s=0.05, max_s=1.0)  # between tries while a leader moves
READ_WAIT_MS = 0  # a coordinator loading its partition never long-polls

TopicPartition = tuple[str, int]


class ReplicaOffsetsPartition:
    """Partition ``index`` of ``__consumer_offsets`` through its leader replica (Ray)."""

    def __init__(self, index: int, namespace: str) -> None:
        self.index = index
        self.namespace = namespace
        self._leader: Any = None
        self._leader_epoch = -1
        self._end_offsets = LogEndOffsets(namespace)

    async def read(self, offset: int, max_bytes: int) -> tuple[list[pa.RecordBatch], int, int]:
        response = await self._call_leader("fetch", offset, max_bytes, READ_WAIT_MS, 1)
        batches = decode_stream(response.records) if response.records is not None else []
        return batches, response.next_offset, response.high_watermark

    async def append(self, payload: bytes) -> None:
        await self._call_leader("produce", payload)

    async def topic_partition_counts(self) -> dict[str, int]:
        controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
        answer = await controller.metadata.remote(None)  # user topics only
        return {topic: len(partitions) for topic, partitions in answer.items() if partitions}

    async def log_end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        return await self._end_offsets.fetch(topics)

    async def _call_leader(self, method: str, *args: Any) -> Any:
        """Call the leader replica of this partition, following leader changes until
        ``WRITE_TIMEOUT_S``."""

        async def attempt() -> Any:
            try:
                if self._leader is None:
                    await self._find_leader()
                if method == "produce":
                    return await self._leader.produce.remote(*args, leader_epoch=self._leader_epoch, acks=-1,
                                                             internal=True)  # rafka's own writer
                return await getattr(self._leader, method).remote(*args)
            except (RayError, RafkaError) as error:
                error = calls.unwrap(error)
                if calls.retriable_error(error):
                    self._leader = None  # ask the controller again: the leader may have moved
                raise error from None

        return await retry_async(attempt, LEADER_BACKOFF, retriable=calls.retriable_error,
                                 deadline_s=time.monotonic() + WRITE_TIMEOUT_S)

    async def _find_leader(self) -> None:
        controller = ray.get_actor(names.CONTROLLER, namespace=self.namespace)
        partitions = (await controller.metadata.remote([names.OFFSETS_TOPIC]))[names.OFFSETS_TOPIC]
        state = partitions[self.index]
        if state["leader"] < 0:
            raise LeaderNotAvailableError(f"{names.OFFSETS_TOPIC}-{self.index} has no leader")
        try:
            self._leader = ray.get_actor(names.replica(names.OFFSETS_TOPIC, self.index, state["leader"]),
                                         namespace=self.namespace)
        except ValueError:
            raise LeaderNotAvailableError(f"the leader of {names.OFFSETS_TOPIC}-{self.index} is not running") from None
        self._leader_epoch = state["leader_epoch"]
