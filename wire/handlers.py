"""What each Kafka request does, mapped onto rafka's actors.

One ``KafkaApis`` per broker, running in the broker's event loop. It answers:

* **ApiVersions** with ``protocol.SUPPORTED``, nothing more;
* **Metadata** from the controller's partition table (cached here, refreshed at most
  every ``METADATA_TTL_S`` and at once after a leadership error), every broker listed
  with its address on the listener the request came in on (each broker actor's
  ``wire_addresses``);
* **Produce** per partition: the Kafka batches become Arrow batches (``records.py``) and
  go to this broker's own replica of the partition, which must be the leader (else
  NOT_LEADER_OR_FOLLOWER, as in Kafka, and the client refreshes its metadata). acks=0
  sends no response; acks=1 answers after the leader's append, acks=-1 once the ISR has
  the batch. An idempotent producer's id, epoch and base sequence go to the replica,
  which rejects duplicates and gaps. The partitions of one request go concurrently;
  the batches of one partition in order;
* **Fetch**: every partition asked at once without waiting; if that yields fewer than
  ``min_bytes``, a long poll on every partition until the first one has records or
  ``max_wait`` passes. Records leave as Kafka batches, at least one batch even over
  ``max_bytes`` (so a consumer always progresses), otherwise at most ``max_bytes`` in
  the response and ``partition_max_bytes`` per partition (sizes counted as Arrow bytes);
* **ListOffsets**: earliest (-2), latest (-1, the high watermark) or by timestamp.
* **DeleteRecords** per partition, on its leader (as Kafka routes it): the leader
  replica's ``delete_records`` moves the log start offset on the leader and its in-sync
  followers and answers the low watermark (OFFSET_OUT_OF_RANGE past the high watermark).

Admin requests and InitProducerId are in ``admin.py``.

Errors from the actors become Kafka error codes per partition (``errors.py``); an
unexpected one is UNKNOWN_SERVER_ERROR for that partition, never a dropped connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray

from rafka import errors
from rafka.actors import names
from rafka.storage.batch import decode_stream, encode_stream
from rafka.wire import protocol
from rafka.wire.acls import AclApis
from rafka.wire.admin import AdminApis
from rafka.wire.consumer_groups import ConsumerGroupApis
from rafka.wire.errors import RETRY_WITH_NEW_METADATA, error_code_of, message_of
from rafka.wire.groups import GroupApis
from rafka.wire.membership import MembershipApis
from rafka.wire.records import decode_produce, encode_fetch
from rafka.wire.security import WireSecurity, current_session
from rafka.wire.users import UserApis

logger = logging.getLogger(__name__)

METADATA_TTL_S = 1.0
ADDRESS_TTL_S = 5.0
MAX_WAIT_MS_CAP = 30_000  # a client cannot hold a fetch open longer than this
CLUSTER_ID = "rafka"

E = protocol.error_code
NONE = 0


class KafkaApis:
    """Request handlers of one broker. ``broker`` is the Broker object (same process)."""

    def __init__(self, broker: Any, settings: Any = None) -> None:
        self.broker = broker
        self.security = WireSecurity(self, settings)
        self._metadata: dict[str, list[dict] | None] = {}
        self._metadata_at_s = 0.0
        self._brokers: list[dict] = []
        # listener name -> broker id -> (host, port): Metadata names each broker's
        # address on the listener the request came in on, as Kafka does.
        self._listener_addresses: dict[str, dict[int, tuple[str, int]]] = {}
        self._addresses_at_s = 0.0
        self._refresh_lock = asyncio.Lock()
        self.cluster_id = CLUSTER_ID
        groups = GroupApis(self)
        self.handlers = {0: self.produce, 1: self.fetch, 2: self.list_offsets, 3: self.metadata,
                         18: self.api_versions, 21: self.delete_records, 23: self.offset_for_leader_epoch,
                         **AdminApis(self).handlers, **groups.handlers, **MembershipApis(self, groups).handlers,
                         **ConsumerGroupApis(self, groups).handlers,
                         17: self.security.sasl_handshake, 36: self.security.sasl_authenticate,
                         **AclApis(self).handlers, **UserApis(self).handlers}

    @property
    def _addresses(self) -> dict[int, tuple[str, int]]:
        """Every alive broker's address on the current request's listener."""
        session = current_session()
        return self._listener_addresses.get(session.listener if session else "PLAINTEXT", {})

    def own_address(self) -> tuple[str, int] | None:
        """This broker's address on the current request's listener."""
        session = current_session()
        return self.broker.wire_listener_address(session.listener if session else None)

    # -- cluster view ------------------------------------------------------------------

    def _controller(self):
        return ray.get_actor(names.CONTROLLER, namespace=self.broker.namespace)

    async def _refresh(self, force: bool = False) -> None:
        async with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._metadata_at_s < METADATA_TTL_S:
                return
            controller = self._controller()
            self._metadata, self._brokers = await asyncio.gather(
                controller.metadata.remote(None), controller.brokers.remote())
            self._metadata_at_s = time.monotonic()
            if now - self._addresses_at_s > ADDRESS_TTL_S or any(
                    b["broker_id"] not in self._addresses for b in self._brokers if b["alive"]):
                await self._refresh_addresses()

    async def _refresh_addresses(self) -> None:
        async def addresses(broker_id: int) -> tuple[int, dict]:
            if broker_id == self.broker.broker_id:
                return broker_id, self.broker.wire_listener_addresses()
            try:
                handle = ray.get_actor(names.broker(broker_id), namespace=self.broker.namespace)
                return broker_id, await asyncio.wait_for(_await(handle.wire_addresses.remote()), 5.0) or {}
            except Exception:  # noqa: BLE001 - a broker that does not answer is left out
                return broker_id, {}

        found = await asyncio.gather(*(addresses(b["broker_id"]) for b in self._brokers if b["alive"]))
        by_listener: dict[str, dict[int, tuple[str, int]]] = {}
        for broker_id, listeners in found:
            for name, address in listeners.items():
                by_listener.setdefault(name, {})[broker_id] = tuple(address)
        self._listener_addresses = by_listener
        self._addresses_at_s = time.monotonic()

    async def _partitions(self, topic: str) -> list[dict] | None:
        await self._refresh()
        partitions = self._metadata.get(topic)
        if partitions is None:
            await self._refresh(force=True)
            partitions = self._metadata.get(topic)
        return partitions

    async def _leader_replica(self, topic: str, partition: int):
        """(handle, leader epoch) of this broker's replica of ``topic``/``partition`` if
        it leads it, else raise the error a Kafka broker would answer."""
        partitions = await self._partitions(topic)
        if partitions is None or not 0 <= partition < len(partitions):
            raise errors.TopicNotFoundError(f"unknown topic-partition {topic}-{partition}")
        state = partitions[partition]
        if state["leader"] < 0:
            raise errors.LeaderNotAvailableError(f"{topic}-{partition} has no leader")
        if state["leader"] != self.broker.broker_id:
            raise errors.NotLeaderError(f"broker {self.broker.broker_id} does not lead {topic}-{partition}")
        handle = self.broker.local_replica(topic, partition)
        if handle is None:
            raise errors.NotLeaderError(f"broker {self.broker.broker_id} holds no replica of {topic}-{partition}")
        return handle, state["leader_epoch"]

    def topic_names_by_id(self) -> dict[str, str]:
        """Topic name by topic id (hex), from the cached metadata."""
        return {partitions[0]["topic_id"]: name for name, partitions in self._metadata.items()
                if partitions and partitions[0].get("topic_id")}

    def _leadership_changed(self) -> None:
        self._metadata_at_s = 0.0

    # -- ApiVersions -------------------------------------------------------------------

    async def api_versions(self, header: protocol.RequestHeader, request: Any) -> Any:
        return self.api_versions_response(header.api_version, NONE)

    @staticmethod
    def api_versions_response(version: int, error: int) -> Any:
        keys = [{"api_key": key, "min_version": low, "max_version": high}
                for key, (low, high) in sorted(protocol.SUPPORTED.items())]
        return protocol.build(protocol.response_class(18, version),
                              {"error_code": error, "api_keys": keys, "throttle_time": 0})

    # -- Metadata ----------------------------------------------------------------------

    async def metadata(self, header: protocol.RequestHeader, request: Any) -> Any:
        await self._refresh(force=True)
        unknown_ids = []
        if request.topics is None or (header.api_version == 0 and not request.topics):
            # All topics: only those the principal may describe (Kafka hides the rest).
            wanted = sorted(name for name in self._metadata if not name.startswith("__")
                            and self.security.allowed("describe", "topic", name))
            refused: set[str] = set()
        else:
            # v10+ may name a topic by id alone (KIP-516; a KIP-848 consumer asks for
            # the topics of its assignment so).
            names_by_id = self.topic_names_by_id()
            wanted = []
            for topic in request.topics:
                if topic.name is None and getattr(topic, "topic_id", None) is not None:
                    name = names_by_id.get(topic.topic_id.hex)
                    if name is None:
                        unknown_ids.append(topic.topic_id)
                    else:
                        wanted.append(name)
                else:
                    wanted.append(topic.name)
            refused = {name for name in wanted if not self.security.allowed("describe", "topic", name)}
        if any(name not in self._metadata for name in wanted):
            self._metadata.update(await self._controller().metadata.remote(wanted))
        topics = [{"error_code": E("unknown_topic_id"), "name": None, "partitions": (), "topic_id": topic_id,
                   "is_internal": False} for topic_id in unknown_ids]
        for name in wanted:
            partitions = self._metadata.get(name)
            if name in refused:
                topics.append({"error_code": E("topic_authorization_failed"), "name": name, "partitions": (),
                               "topic_id": None, "is_internal": False})
                continue
            if partitions is None:
                topics.append({"error_code": E("unknown_topic_or_partition"), "name": name, "partitions": (),
                               "topic_id": None, "is_internal": False})
                continue
            topics.append({
                "error_code": NONE, "name": name, "topic_id": partitions[0].get("topic_id") if partitions else None,
                "is_internal": name.startswith("__"),
                "partitions": [{
                    "error_code": NONE if state["leader"] >= 0 else E("leader_not_available"),
                    "partition_index": index, "leader_id": state["leader"],
                    "leader_epoch": state["leader_epoch"], "replica_nodes": state["replicas"],
                    "isr_nodes": state.get("isr", state["replicas"]),
                    "offline_replicas": [b for b in state["replicas"] if b not in self._addresses],
                } for index, state in enumerate(partitions)],
            })
        brokers = [{"node_id": broker_id, "host": host, "port": port, "rack": None}
                   for broker_id, (host, port) in sorted(self._addresses.items())]
        controller_id = min(self._addresses) if self._addresses else -1
        return protocol.build(protocol.response_class(3, header.api_version), {
            "throttle_time": 0, "brokers": brokers, "cluster_id": self.cluster_id, "controller_id": controller_id,
            "topics": topics, "cluster_authorized_operations": -2147483648,
        })

    # -- Produce -----------------------------------------------------------------------

    async def produce(self, header: protocol.RequestHeader, request: Any) -> Any:
        acks = int(request.acks)
        timeout_ms = max(0, round(request.timeout.total_seconds() * 1000))
        jobs, slots = [], []
        for topic in request.topic_data:
            for data in topic.partition_data:
                slots.append((topic.name, data.index))
                jobs.append(self._produce_partition(topic.name, data.index, data.records, acks, timeout_ms))
        results = await asyncio.gather(*jobs)
        if acks == 0:
            return None
        responses: dict[str, list] = {}
        for (topic, partition), (error, base_offset, log_start_offset, message) in zip(slots, results):
            responses.setdefault(topic, []).append({
                "index": partition, "error_code": error, "base_offset": base_offset,
                "log_start_offset": log_start_offset, "record_errors": (), "error_message": message,
            })
        return protocol.build(protocol.response_class(0, header.api_version), {
            "responses": [{"name": name, "partition_responses": parts} for name, parts in responses.items()],
            "throttle_time": 0,
        })

    async def _produce_partition(self, topic: str, partition: int, records: bytes | None, acks: int,
                                 timeout_ms: int) -> tuple[int, int, int, str | None]:
        """(error code, base offset, log start offset, error message) of one partition."""
        if acks not in (0, 1, -1):
            return E("invalid_required_acks"), -1, -1, f"acks must be 0, 1 or -1, got {acks}"
        if not self.security.allowed("write", "topic", topic):
            return E("topic_authorization_failed"), -1, -1, f"write to topic {topic!r} is not allowed"
        try:
            replica, leader_epoch = await self._leader_replica(topic, partition)
            batches = decode_produce(records or b"")
            base_offset = -1
            for produced in batches:
                offset, _append_time = await replica.produce.remote(
                    encode_stream([produced.batch], produced.batch.schema), "uncompressed", leader_epoch,
                    produced.producer_id, produced.producer_epoch, produced.base_sequence, acks, timeout_ms)
                if base_offset < 0:
                    base_offset = offset
            return NONE, base_offset, -1, None
        except Exception as error:  # noqa: BLE001 - every failure becomes this partition's error code
            code = error_code_of(error)
            if code in RETRY_WITH_NEW_METADATA:
                self._leadership_changed()
            elif code == E("unknown_server_error"):
                logger.warning("wire: produce to %s-%s failed: %r", topic, partition, error)
            return code, -1, -1, message_of(error)

    # -- Fetch -------------------------------------------------------------------------

    async def fetch(self, header: protocol.RequestHeader, request: Any) -> Any:
        max_wait_ms = min(max(0, round(request.max_wait.total_seconds() * 1000)), MAX_WAIT_MS_CAP)
        wanted = [(topic.topic, part.partition, part.fetch_offset, part.partition_max_bytes)
                  for topic in request.topics for part in topic.partitions]
        results = await asyncio.gather(*(self._fetch_partition(t, p, o, m, 0) for t, p, o, m in wanted))
        if sum(len(r[1]) for r in results if r[1]) < max(int(request.min_bytes), 1) and max_wait_ms > 0 \
                and not any(r[0] != NONE for r in results):
            results = await self._long_poll(wanted, results, max_wait_ms)
        budget = int(request.max_bytes) if request.max_bytes > 0 else 2**31 - 1
        responses: dict[str, list] = {}
        sent_any = False
        for (topic, partition, _offset, _limit), (error, batches, high_watermark, log_start) in zip(wanted, results):
            records = b""
            if batches:
                size = sum(batch.nbytes for batch in batches)
                if not sent_any or size <= budget:
                    records = encode_fetch(batches)
                    budget -= size
                    sent_any = True
            responses.setdefault(topic, []).append({
                "partition_index": partition, "error_code": error, "high_watermark": high_watermark,
                "last_stable_offset": high_watermark, "log_start_offset": log_start,
                "aborted_transactions": None, "preferred_read_replica": -1, "records": records,
            })
        return protocol.build(protocol.response_class(1, header.api_version), {
            "throttle_time": 0, "error_code": NONE, "session_id": 0,
            "responses": [{"topic": name, "partitions": parts} for name, parts in responses.items()],
        })

    async def _long_poll(self, wanted: list, results: list, max_wait_ms: int) -> list:
        """Wait on every partition until the first has records (or ``max_wait_ms``)."""
        tasks = [asyncio.ensure_future(self._fetch_partition(t, p, o, m, max_wait_ms)) for t, p, o, m in wanted]
        pending = set(tasks)
        deadline = time.monotonic() + max_wait_ms / 1000 + 1.0
        while pending:
            done, pending = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()),
                                               return_when=asyncio.FIRST_COMPLETED)
            if not done or any(task.result()[1] for task in done):
                break
        merged = []
        for task, first in zip(tasks, results):
            if task.done():
                merged.append(task.result())
            else:
                # Still waiting: it answers within max_wait; drop what it brings then.
                task.add_done_callback(_consume_result)
                merged.append(first)
        return merged

    async def _fetch_partition(self, topic: str, partition: int, offset: int, max_bytes: int,
                               max_wait_ms: int) -> tuple[int, list, int, int]:
        """(error code, Arrow batches, high watermark, log start offset)."""
        if not self.security.allowed("read", "topic", topic):
            return E("topic_authorization_failed"), [], -1, -1
        try:
            replica, _epoch = await self._leader_replica(topic, partition)
            answer = await replica.fetch.remote(offset, max(int(max_bytes), 1), max_wait_ms, 1)
            batches = decode_stream(answer.records) if answer.records is not None else []
            return NONE, batches, answer.high_watermark, answer.log_start_offset
        except Exception as error:  # noqa: BLE001 - every failure becomes this partition's error code
            code = error_code_of(error)
            if code in RETRY_WITH_NEW_METADATA:
                self._leadership_changed()
            elif code == E("unknown_server_error"):
                logger.warning("wire: fetch from %s-%s failed: %r", topic, partition, error)
            return code, [], -1, -1

    # -- ListOffsets -------------------------------------------------------------------

    async def list_offsets(self, header: protocol.RequestHeader, request: Any) -> Any:
        wanted = [(topic.name, part.partition_index, part.timestamp)
                  for topic in request.topics for part in topic.partitions]
        results = await asyncio.gather(*(self._list_offset(*item) for item in wanted))
        responses: dict[str, list] = {}
        for (topic, partition, _ts), (error, offset, timestamp, epoch) in zip(wanted, results):
            responses.setdefault(topic, []).append({
                "partition_index": partition, "error_code": error, "timestamp": timestamp, "offset": offset,
                "leader_epoch": epoch,
            })
        return protocol.build(protocol.response_class(2, header.api_version), {
            "throttle_time": 0, "topics": [{"name": name, "partitions": parts} for name, parts in responses.items()],
        })

    # -- DeleteRecords ------------------------------------------------------------------

    async def delete_records(self, header: protocol.RequestHeader, request: Any) -> Any:
        timeout_ms = max(0, round(request.timeout.total_seconds() * 1000))
        wanted = [(topic.name, part.partition_index, int(part.offset))
                  for topic in request.topics for part in topic.partitions]
        results = await asyncio.gather(*(self._delete_records(*item, timeout_ms) for item in wanted))
        responses: dict[str, list] = {}
        for (topic, partition, _offset), (error, low_watermark) in zip(wanted, results):
            responses.setdefault(topic, []).append({"partition_index": partition, "low_watermark": low_watermark,
                                                    "error_code": error})
        return protocol.build(protocol.response_class(21, header.api_version), {
            "throttle_time": 0, "topics": [{"name": name, "partitions": parts} for name, parts in responses.items()],
        })

    async def _delete_records(self, topic: str, partition: int, offset: int, timeout_ms: int) -> tuple[int, int]:
        if not self.security.allowed("delete", "topic", topic):
            return E("topic_authorization_failed"), -1
        try:
            replica, epoch = await self._leader_replica(topic, partition)
            return NONE, await replica.delete_records.remote(offset, epoch, timeout_ms)
        except Exception as error:  # noqa: BLE001 - each partition answers its own error
            code = error_code_of(error)
            if code in RETRY_WITH_NEW_METADATA:
                self._leadership_changed()
            return code, -1

    # -- OffsetForLeaderEpoch -----------------------------------------------------------

    async def offset_for_leader_epoch(self, header: protocol.RequestHeader, request: Any) -> Any:
        if getattr(request, "replica_id", -1) >= 0:
            # Followers replicate over Ray (actors/replication.py), never over the wire.
            topics = [{"topic": t.topic, "partitions": [
                {"partition": p.partition, "error_code": E("cluster_authorization_failed"), "leader_epoch": -1,
                 "end_offset": -1} for p in t.partitions]} for t in request.topics]
            return protocol.build(protocol.response_class(23, header.api_version),
                                  {"throttle_time": 0, "topics": topics})
        wanted = [(t.topic, p.partition, int(p.current_leader_epoch), int(p.leader_epoch))
                  for t in request.topics for p in t.partitions]
        results = await asyncio.gather(*(self._end_offset_for_epoch(*item) for item in wanted))
        responses: dict[str, list] = {}
        for (topic, partition, _current, _epoch), (error, epoch, end_offset) in zip(wanted, results):
            responses.setdefault(topic, []).append({"partition": partition, "error_code": error,
                                                    "leader_epoch": epoch, "end_offset": end_offset})
        return protocol.build(protocol.response_class(23, header.api_version), {
            "throttle_time": 0, "topics": [{"topic": name, "partitions": parts} for name, parts in responses.items()]})

    async def _end_offset_for_epoch(self, topic: str, partition: int, current_leader_epoch: int,
                                    leader_epoch: int) -> tuple[int, int, int]:
        if not self.security.allowed("describe", "topic", topic):
            return E("topic_authorization_failed"), -1, -1
        try:
            replica, epoch = await self._leader_replica(topic, partition)
            if current_leader_epoch >= 0 and current_leader_epoch != epoch:
                name = "fenced_leader_epoch" if current_leader_epoch < epoch else "unknown_leader_epoch"
                return E(name), -1, -1
            found_epoch, end_offset = await replica.end_offset_for_epoch.remote(leader_epoch, current_leader_epoch)
            return NONE, found_epoch, end_offset
        except Exception as error:  # noqa: BLE001
            code = error_code_of(error)
            if code in RETRY_WITH_NEW_METADATA:
                self._leadership_changed()
            return code, -1, -1

    async def _list_offset(self, topic: str, partition: int, timestamp_ms: int) -> tuple[int, int, int, int]:
        if not self.security.allowed("describe", "topic", topic):
            return E("topic_authorization_failed"), -1, -1, -1
        try:
            replica, epoch = await self._leader_replica(topic, partition)
            offset, found_ms = await replica.list_offset.remote(int(timestamp_ms))
            return NONE, offset, found_ms, epoch
        except Exception as error:  # noqa: BLE001
            code = error_code_of(error)
            if code in RETRY_WITH_NEW_METADATA:
                self._leadership_changed()
            return code, -1, -1, -1


def _consume_result(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


async def _await(ref):
    return await ref
