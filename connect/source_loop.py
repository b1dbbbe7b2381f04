"""The loop of a source task's actor: poll → transform → convert → produce → commit.

Offsets (see api.py for the guarantee): the latest ``source_offset`` per source
partition polled so far is *pending* until a commit: ``producer.flush()`` waits for every
produce since the last commit to be acknowledged (acks=all), every produce result is
checked, and only then are the pending offsets written to ``__connect_offsets`` and
``task.commit()`` called. A produce that failed fails the task before its offset is
stored, so its records are polled again after the restart. A record dropped by a
transform, or skipped with ``errors.tolerance=all``, still advances its offset.

Records of one poll are produced as one Arrow batch per topic (per partition when the
connector chose one), never one producer call per record.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa

from rafka.connect.api import SourceRecord, SourceTaskContext
from rafka.connect.errors import RetriableError
from rafka.connect.failures import FailureHandler
from rafka.connect.offsets import OffsetStore, partition_key
from rafka.connect.settings import client_overrides

MAX_FUTURES_BEFORE_COMMIT = 1_000
PAUSED_SLEEP_S = 0.1
HEADERS_TYPE = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def run_source(runner: Any) -> None:
    """Run until ``runner.stopping``; ``runner`` is the task actor (worker.py)."""
    spec, config = runner.spec, runner.spec["connector_config"]
    offsets = OffsetStore(runner.cluster, spec["connector"])
    task = spec["task_class"]()
    task.initialize(SourceTaskContext(spec["connector"], spec["task_id"], offsets.load()))
    failures = FailureHandler(runner.cluster, spec["connector"], spec["task_id"], config)
    runner.failures = failures
    producer = runner.cluster.producer(**{"acks": "all", "linger_ms": 5,
                                          **client_overrides(config, "producer.override.")})
    pending: dict[str, dict] = {}
    futures: list = []
    interval_s = config["offset.flush.interval.ms"] / 1000
    next_commit = time.monotonic() + interval_s
    task.start(spec["task_config"])
    runner.started()
    try:
        while not runner.stopping.is_set():
            if runner.paused:
                time.sleep(PAUSED_SLEEP_S)
            else:
                try:
                    records = task.poll() or []
                except RetriableError as error:
                    runner.retry_wait(error)
                    continue
                runner.retry_succeeded()
                if records:
                    _produce(runner, producer, records, pending, futures, failures)
            if futures and (time.monotonic() >= next_commit or len(futures) >= MAX_FUTURES_BEFORE_COMMIT) \
                    or pending and time.monotonic() >= next_commit:
                _commit(producer, futures, pending, offsets, task, runner)
                next_commit = time.monotonic() + interval_s
        _commit(producer, futures, pending, offsets, task, runner)
    finally:
        try:
            task.stop()
        finally:
            producer.close()
            offsets.close()
            failures.close()


def _produce(runner: Any, producer: Any, records: list[SourceRecord], pending: dict, futures: list,
             failures: FailureHandler) -> None:
    default_topic = runner.spec["connector_config"].get("topic")
    groups: dict[tuple[str, int | None], dict[str, list]] = {}
    for record in records:
        pending[partition_key(record.source_partition)] = record.source_offset
        where = {"source_partition": record.source_partition, "source_offset": record.source_offset}
        try:
            stage = "TRANSFORMATION"
            for transform in runner.transforms:
                record = transform.apply(record)
                if record is None:
                    break
            if record is None:
                continue
            stage = "KEY_CONVERTER"
            topic = record.topic or default_topic
            if not topic:
                raise ValueError("the record names no topic and the connector has no 'topic' setting")
            key = runner.key_converter.from_value(topic, record.key)
            stage = "VALUE_CONVERTER"
            value = runner.value_converter.from_value(topic, record.value)
        except Exception as error:  # noqa: BLE001 - errors.tolerance decides
            failures.fail(stage, where, error)
            continue
        group = groups.setdefault((topic, record.partition), {"key": [], "value": [], "timestamp": [], "headers": []})
        group["key"].append(key)
        group["value"].append(value)
        group["timestamp"].append(record.timestamp_ms if record.timestamp_ms is not None else int(time.time() * 1000))
        group["headers"].append([{"key": k, "value": v} for k, v in record.headers] if record.headers else None)
    for (topic, partition), columns in groups.items():
        arrays = {"key": pa.array(columns["key"], pa.binary()), "value": pa.array(columns["value"], pa.binary()),
                  "timestamp": pa.array(columns["timestamp"], pa.int64())}
        if any(headers is not None for headers in columns["headers"]):
            arrays["headers"] = pa.array(columns["headers"], HEADERS_TYPE)
        futures.append(producer.send_batch(topic, pa.table(arrays), partition=partition))
        runner.records += len(columns["value"])


def _commit(producer: Any, futures: list, pending: dict, offsets: OffsetStore, task: Any, runner: Any) -> None:
    producer.flush()
    for future in futures:
        future.result()  # raises the produce error: the task fails before storing offsets
    futures.clear()
    if pending:
        offsets.commit(pending)
        pending.clear()
    task.commit()
    runner.committed()
