"""The loop of a sink task's actor: consume → convert → transform → put → commit.

The task's consumer is a member of the group ``connect-<connector>``; the group spreads
the topic partitions over the connector's tasks. After ``put`` returned for records up to
an offset, that offset becomes a *position*; every ``offset.flush.interval.ms`` (and
before partitions are revoked, and on stop) the runtime calls ``task.pre_commit`` with
the positions, flushes the dead-letter queue, and commits what ``pre_commit`` returned.
So an offset is committed only after the sink said its records are durable — at least
once. ``context.offset(tp, n)`` (in ``open`` or ``put``) seeks the consumer and moves
the position to ``n``. A paused task keeps polling with its partitions paused; records
a poll returned while the pause arrived are not put, and the consumer seeks back to the
first of them, so resume reads them again.

A batch ``put`` that raises (anything but ``RetriableError``) is, with
``errors.tolerance=all``, retried one record at a time so that only the records that
fail alone are dead-lettered; with ``none`` the task fails. ``RetriableError`` pauses
the partitions and retries the same records with backoff (the consumer keeps polling,
so the task stays in its group), up to ``errors.retry.timeout.ms``.
"""

from __future__ import annotations

import time
from typing import Any

from rafka.client.group import ConsumerRebalanceListener
from rafka.client.records import TopicPartition
from rafka.connect.api import SinkRecord, SinkTaskContext
from rafka.connect.errors import RetriableError
from rafka.connect.failures import FailureHandler
from rafka.connect.settings import client_overrides

POLL_TIMEOUT_S = 0.5
MAX_RECORDS_PER_PUT = 20_000
CONSUMER_DEFAULTS = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                     "session_timeout_ms": 10_000, "heartbeat_interval_ms": 2_000}


def group_id(connector: str) -> str:
    return f"connect-{connector}"


class _SinkRun:
    def __init__(self, runner: Any) -> None:
        self.runner = runner
        spec = runner.spec
        self.config = spec["connector_config"]
        self.task = spec["task_class"]()
        self.context = SinkTaskContext(spec["connector"], spec["task_id"])
        self.task.initialize(self.context)
        self.failures = FailureHandler(runner.cluster, spec["connector"], spec["task_id"], self.config)
        runner.failures = self.failures
        self.consumer = runner.cluster.consumer(**{**CONSUMER_DEFAULTS, "group_id": group_id(spec["connector"]),
                                                   **client_overrides(self.config, "consumer.override.")})
        self.positions: dict[tuple[str, int], int] = {}
        self.paused_by_task: set[tuple[str, int]] = set()

    # -- rebalance callbacks (run inside consumer.poll, on the loop's thread) --------

    def revoked(self, partitions: set[TopicPartition], lost: bool) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        if not lost:
            self.commit([key for key in keys if key in self.positions])
        self.task.close(keys)
        for key in keys:
            self.positions.pop(key, None)
            self.paused_by_task.discard(key)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        keys = sorted((tp.topic, tp.partition) for tp in partitions)
        self.task.open(keys)
        self.apply_context()

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        listener = _Listener(self)
        if config["topics.regex"]:
            self.consumer.subscribe(pattern=config["topics.regex"], listener=listener)
        else:
            self.consumer.subscribe(config["topics"], listener=listener)
        interval_s = config["offset.flush.interval.ms"] / 1000
        next_commit = time.monotonic() + interval_s
        self.task.start(self.runner.spec["task_config"])
        self.runner.started()
        try:
            while not self.runner.stopping.is_set():
                self.sync_pause()
                batches = self.consumer.poll_batches(timeout_s=POLL_TIMEOUT_S, max_records=MAX_RECORDS_PER_PUT)
                if self.runner.paused:
                    # The pause arrived while the poll waited: its records are not put,
                    # so the consumer must read them again after resume.
                    self.rewind(batches)
                    continue
                records, raws, ends = self.convert(batches)
                self.put(records, raws)
                for key, end in ends.items():
                    if key not in self.context.requested_offsets:
                        self.positions[key] = end
                self.apply_context()
                if time.monotonic() >= next_commit or self.context.commit_requested:
                    self.commit(list(self.positions))
                    next_commit = time.monotonic() + interval_s
            self.commit(list(self.positions))
            self.task.close(sorted(self.positions))
        finally:
            try:
                self.task.stop()
            finally:
                self.consumer.close()
                self.failures.close()

    def sync_pause(self) -> None:
        assignment = self.consumer.assignment()
        if self.runner.paused:
            self.consumer.pause(*assignment)
        else:
            self.consumer.resume(*(tp for tp in assignment if (tp.topic, tp.partition) not in self.paused_by_task))

    def rewind(self, batches: dict) -> None:
        """Seek each partition back to the first record of ``batches`` (which were
        polled but will not be put); the consumer had moved past them, and a later
        commit would have skipped them."""
        assignment = self.consumer.assignment()
        for tp, tp_batches in batches.items():
            first = next((batch.column("offset")[0].as_py() for batch in tp_batches if batch.num_rows), None)
            if first is not None and tp in assignment:
                self.consumer.seek(tp, first)

    def convert(self, batches: dict) -> tuple[list[SinkRecord], list[tuple], dict[tuple[str, int], int]]:
        runner = self.runner
        records: list[SinkRecord] = []
        raws: list[tuple] = []
        ends: dict[tuple[str, int], int] = {}
        for tp, tp_batches in batches.items():
            for batch in tp_batches:
                if batch.num_rows == 0:
                    continue
                offsets = batch.column("offset").to_pylist()
                timestamps = batch.column("timestamp").to_pylist()
                keys = batch.column("key").to_pylist()
                values = batch.column("value").to_pylist()
                headers = batch.column("headers").to_pylist()
                ends[(tp.topic, tp.partition)] = offsets[-1] + 1
                decoded_keys = _decode_all(runner.key_converter, tp.topic, keys)
                decoded_values = _decode_all(runner.value_converter, tp.topic, values)
                for index, offset in enumerate(offsets):
                    record_headers = [(h["key"], h["value"]) for h in headers[index]] if headers[index] else []
                    raw = (keys[index], values[index], record_headers)
                    where = {"topic": tp.topic, "partition": tp.partition, "offset": offset}
                    try:
                        stage, stage_class = "KEY_CONVERTER", type(runner.key_converter).__name__
                        key = decoded_keys[index] if decoded_keys is not None else \
                            runner.key_converter.to_value(tp.topic, keys[index])
                        stage, stage_class = "VALUE_CONVERTER", type(runner.value_converter).__name__
                        value = decoded_values[index] if decoded_values is not None else \
                            runner.value_converter.to_value(tp.topic, values[index])
                        record = SinkRecord(tp.topic, tp.partition, offset, timestamps[index], key, value, record_headers)
                        stage = "TRANSFORMATION"
                        for transform in runner.transforms:
                            stage_class = type(transform).__name__
                            record = transform.apply(record)
                            if record is None:
                                break
                    except Exception as error:  # noqa: BLE001 - errors.tolerance decides
                        self.failures.fail(stage, where, error, stage_class, raw)
                        continue
                    if record is not None:
                        records.append(record)
                        raws.append(raw)
        runner.records += len(records)
        return records, raws, ends

    def put(self, records: list[SinkRecord], raws: list[tuple]) -> None:
        while True:
            try:
                self.task.put(records)
                self.runner.retry_succeeded()
                return
            except RetriableError as error:
                self.runner.retry_wait(error, poll=self.poll_paused)
                if self.runner.stopping.is_set():
                    raise
            except Exception as error:  # noqa: BLE001 - errors.tolerance decides
                if not self.failures.tolerate or len(records) <= 1:
                    for record, raw in zip(records, raws):
                        self.failures.fail("TASK_PUT", _where(record), error, type(self.task).__name__, raw)
                    return
                # Find the records that fail on their own; the rest go through.
                for record, raw in zip(records, raws):
                    self.put([record], [raw])
                return

    def poll_paused(self, timeout_s: float) -> None:
        """Keep the group membership alive while a put is retried: poll with every
        partition paused (returns nothing)."""
        assignment = self.consumer.assignment()
        self.consumer.pause(*assignment)
        try:
            self.consumer.poll_batches(timeout_s=timeout_s)
        finally:
            self.sync_pause()

    def apply_context(self) -> None:
        requested, self.context.requested_offsets = self.context.requested_offsets, {}
        assignment = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for key, offset in requested.items():
            if key in assignment:
                self.consumer.seek(TopicPartition(*key), offset)
                self.positions[key] = offset
        self.paused_by_task |= {key for key in self.context.requested_pauses if key in assignment}
        self.paused_by_task -= self.context.requested_resumes
        self.context.requested_pauses.clear()
        self.context.requested_resumes.clear()

    def commit(self, keys: list[tuple[str, int]]) -> None:
        self.context.commit_requested = False
        current = {key: self.positions[key] for key in keys if key in self.positions}
        if not current:
            return
        safe = self.task.pre_commit(dict(current)) or {}
        self.failures.flush()
        offsets = {TopicPartition(*key): offset for key, offset in safe.items() if key in current}
        if offsets:
            self.consumer.commit(offsets)
        self.runner.committed()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, run: _SinkRun) -> None:
        self.run = run

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.run.revoked(revoked, lost=False)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.run.revoked(lost, lost=True)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.run.assigned(assigned)


def _decode_all(converter: Any, topic: str, datas: list) -> list | None:
    """Every value decoded in one call, or None when one fails (then each is decoded on
    its own, so only the bad ones fail)."""
    try:
        return converter.to_values(topic, datas)
    except Exception:  # noqa: BLE001 - not lost: the caller decodes each value alone and reports each failure
        return None


def _where(record: SinkRecord) -> dict:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def run_sink(runner: Any) -> None:
    _SinkRun(runner).run()
