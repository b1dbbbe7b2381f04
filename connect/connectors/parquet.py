"""Parquet sink: topics written as a Hive-partitioned Parquet dataset, each offset once.

Layout under ``path`` (a local directory or a ``pyarrow.fs`` URI such as ``s3://b/p``)::

    topic=<topic>/partition=<p>/<topic>+<p>+<first offset>+<last offset>.parquet
        partition.by=kafka_partition (the default)
    topic=<topic>/<field>=<value>/.../<topic>+<p>+<first>+<last>+<i>of<n>.parquet
        partition.by=fields: one directory level per name in partition.fields

Offsets in names are zero-padded to 20 digits. A file holds rows of one topic partition
in offset order; ``first``/``last`` are the first and last offset of the span written
together (with ``fields``, the span is split over ``n`` files, one per distinct field
value, and every one of them carries the span's bounds and ``i of n``). The dataset reads
back with ``pyarrow.dataset.dataset(path, partitioning="hive")``; files whose names
start with ``.`` (the temporary ones) are ignored by Arrow.

Rows: each record value must be a dict (the ``json`` converter's output, the default);
its keys are the columns, types inferred by Arrow. With ``include.kafka.fields=true``
(the default) the rows also carry ``_topic``, ``_partition``, ``_offset`` and
``_timestamp`` (timestamp[ms]) so a reader can trace or check every row; these names are
reserved. With ``partition.by=fields`` the partition fields are stored in the directory
names only (Hive style) and read back as strings or integers as Arrow infers them. Value
fields named ``topic`` or ``partition`` clash with the directory levels: avoid them.

Exactly once, although ``put`` may see a record twice:

- A file appears under its final name only whole: it is written to ``.<name>.tmp``,
  fsynced, renamed (``os.replace``, atomic on a local disk), and its directory fsynced.
- ``open`` scans the partition's files and rewinds the consumer to the offset after the
  highest one written (``context.offset``); ``put`` drops a record whose offset is not
  above the last one buffered or written (a redelivery).
- Rows still buffered are not committed: ``pre_commit`` returns, per partition, the first
  buffered offset (or the offered offset when nothing is buffered), so a crash loses only
  rows that will be read again. It does not write a file just because a commit is due.
- Recovery in ``open`` deletes leftover ``.tmp`` files and, with ``fields``, the files of
  a span that is not complete (fewer than ``n`` files: the writer died between renames),
  then rewinds to before that span. ``open`` records what it dropped in ``last_recovery``.

This assumes one writer per topic partition at a time (the consumer group's assignment):
a writer that lost a partition but keeps writing can leave overlapping spans.

A file is rolled (written) when its buffer reaches ``flush.size`` rows, or ``file.size.bytes``
of Arrow memory, or when its first row was buffered ``rotate.interval.ms`` ago by the wall
clock; the time rule is checked on every ``put``, including the empty ones the runtime
makes when nothing arrives. A batch whose columns cannot be merged with the buffered rows'
(a field changed type) rolls the buffer first and starts a new file. ``flush``, ``close``
and ``stop`` write what is buffered.

Concurrency: not thread-safe; the runtime calls a task from one thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import uuid
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from rafka.connect.api import SinkConnector, SinkRecord, SinkTask
from rafka.connect.config import ConfigDef
from rafka.connect.errors import ConnectorConfigError
from rafka.storage.clock import Clock, SystemClock

log = logging.getLogger(__name__)

PARTITION_BY = ("kafka_partition", "fields")
COMPRESSIONS = ("snappy", "zstd", "gzip", "lz4", "brotli", "none")
KAFKA_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp")
OFFSET_DIGITS = 20
NULL_DIRECTORY_VALUE = "__HIVE_DEFAULT_PARTITION__"

_FILE_NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})"
                        r"(?:\+(?P<index>\d+)of(?P<count>\d+))?\.parquet$")

PARQUET_SINK_CONFIG = (
    ConfigDef()
    .define("path", "str", doc="root directory of the dataset: a local path or a pyarrow.fs URI")
    .define("partition.by", "str", "kafka_partition",
            "kafka_partition: topic=<t>/partition=<p>/; fields: one directory level per partition.fields entry",
            choices=PARTITION_BY)
    .define("partition.fields", "list", [], "value fields naming the directories when partition.by=fields")
    .define("flush.size", "int", 100_000, "rows per file", min=1)
    .define("rotate.interval.ms", "int", 60_000, "roll a file whose first row was buffered this long ago", min=1)
    .define("file.size.bytes", "int", None, "roll a file when its buffered rows hold this many Arrow bytes", min=1)
    .define("compression", "str", "snappy", "Parquet compression codec", choices=COMPRESSIONS)
    .define("include.kafka.fields", "bool", True, "add the columns _topic, _partition, _offset, _timestamp")
)


def _parse_config(config: dict[str, Any]) -> dict[str, Any]:
    parsed = PARQUET_SINK_CONFIG.parse(config)
    if parsed["partition.by"] == "fields":
        if not parsed["partition.fields"]:
            raise ConnectorConfigError("partition.fields must name at least one value field when partition.by=fields",
                                       "partition.fields")
        reserved = set(parsed["partition.fields"]) & set(KAFKA_COLUMNS)
        if reserved:
            raise ConnectorConfigError(f"partition.fields: {sorted(reserved)} are reserved column names",
                                       "partition.fields")
    try:
        _filesystem(parsed["path"])
    except (pa.ArrowInvalid, ValueError, OSError) as error:
        raise ConnectorConfigError(f"path: cannot use {parsed['path']!r}: {error}", "path") from None
    return parsed


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def file_name(topic: str, partition: int, first_offset: int, last_offset: int, index: int | None = None,
              count: int | None = None) -> str:
    """The name of a file holding the span ``first_offset..last_offset`` of a partition."""
    span = f"{topic}+{partition}+{first_offset:0{OFFSET_DIGITS}d}+{last_offset:0{OFFSET_DIGITS}d}"
    return f"{span}+{index}of{count}.parquet" if count is not None else f"{span}.parquet"


class ParquetSinkConnector(SinkConnector):
    """Writes its topics to a Parquet dataset, each offset exactly once."""

    config_def = PARQUET_SINK_CONFIG
    file_fields = ("path",)  # a local path is confined to Connect's file_roots (connect/policy.py)
    default_config = {"value.converter": "json"}

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return _parse_config(config)

    def task_class(self) -> type:
        return ParquetSinkTask


@dataclasses.dataclass
class Recovery:
    """What ``open`` found and dropped for one partition."""

    last_offset: int | None
    dropped_paths: list[str]


class _PartitionBuffer:
    """Rows of one topic partition not written yet, as Arrow tables in offset order."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.schema: pa.Schema | None = None
        self.row_count = 0
        self.byte_count = 0
        self.first_buffered_ms = 0

    def add(self, table: pa.Table, now_ms: int) -> None:
        if not self.tables:
            self.first_buffered_ms = now_ms
        self.tables.append(table)
        self.row_count += table.num_rows
        self.byte_count += table.nbytes

    def first_offset(self) -> int:
        return self.tables[0].column("_offset")[0].as_py()

    def take_all(self) -> pa.Table:
        table = pa.concat_tables(self.tables, promote_options="permissive") if len(self.tables) > 1 else self.tables[0]
        self.tables, self.schema, self.row_count, self.byte_count = [], None, 0, 0
        return table


class _PartitionState:
    def __init__(self, last_written_offset: int | None) -> None:
        self.last_written_offset = last_written_offset
        self.last_seen_offset = last_written_offset  # written or buffered
        self.buffer = _PartitionBuffer()


class ParquetSinkTask(SinkTask):
    """Buffers rows per topic partition and writes them as files (see the module docstring)."""

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__()
        self._clock = clock or SystemClock()
        self._partitions: dict[tuple[str, int], _PartitionState] = {}
        self.last_recovery: dict[tuple[str, int], Recovery] = {}

    def start(self, config: dict[str, Any]) -> None:
        parsed = _parse_config(config)
        self._filesystem, self._root = _filesystem(parsed["path"])
        self._local = isinstance(self._filesystem, pafs.LocalFileSystem)
        self._partition_fields: list[str] = parsed["partition.fields"] if parsed["partition.by"] == "fields" else []
        self._flush_size = parsed["flush.size"]
        self._rotate_interval_ms = parsed["rotate.interval.ms"]
        self._file_bytes_max = parsed["file.size.bytes"]
        self._compression = None if parsed["compression"] == "none" else parsed["compression"]
        self._include_kafka_fields = parsed["include.kafka.fields"]
        self._filesystem.create_dir(self._root, recursive=True)

    # -- assignment ------------------------------------------------------------------

    def open(self, partitions: list[tuple[str, int]]) -> None:
        for topic in sorted({topic for topic, _ in partitions}):
            files = self._list_files(topic)
            for partition in sorted(p for t, p in partitions if t == topic):
                recovery = self._recover(topic, partition, files)
                self.last_recovery[(topic, partition)] = recovery
                self._partitions[(topic, partition)] = _PartitionState(recovery.last_offset)
                if recovery.last_offset is not None:
                    self.context.offset(topic, partition, recovery.last_offset + 1)

    def close(self, partitions: list[tuple[str, int]]) -> None:
        for topic_partition in partitions:
            state = self._partitions.pop(topic_partition, None)
            if state is not None and state.buffer.row_count:
                self._write(topic_partition, state, state.buffer.take_all())

    def stop(self) -> None:
        self.close(list(self._partitions))

    # -- data ------------------------------------------------------------------------

    def put(self, records: list[SinkRecord]) -> None:
        now_ms = self._clock.now_ms()
        by_partition: dict[tuple[str, int], list[SinkRecord]] = {}
        for record in records:
            by_partition.setdefault((record.topic, record.partition), []).append(record)
        # Convert every partition's rows before buffering any, so a bad record fails the
        # whole call and the runtime's retry sees no half-buffered batch.
        unopened = [topic_partition for topic_partition in by_partition if topic_partition not in self._partitions]
        if unopened:
            # The runtime opens partitions before their records arrive; if it did not,
            # scanning now still drops the records already in files.
            log.warning("put for partitions that were not opened: %s; opening them", unopened)
            self.open(unopened)
        tables = {}
        for topic_partition, partition_records in by_partition.items():
            fresh = _fresh_records(partition_records, self._partitions[topic_partition].last_seen_offset)
            if fresh:
                tables[topic_partition] = _to_table(fresh)
        for topic_partition, table in tables.items():
            self._buffer(topic_partition, self._partitions[topic_partition], table, now_ms)
        for topic_partition, state in self._partitions.items():
            buffer = state.buffer
            if buffer.row_count and now_ms - buffer.first_buffered_ms >= self._rotate_interval_ms:
                self._write(topic_partition, state, buffer.take_all())

    def flush(self, offsets: dict[tuple[str, int], int]) -> None:
        """Write every buffered row (the runtime commits through ``pre_commit``, which
        does not call this)."""
        for topic_partition, state in self._partitions.items():
            if state.buffer.row_count:
                self._write(topic_partition, state, state.buffer.take_all())

    def pre_commit(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        safe = {}
        for topic_partition, offset in offsets.items():
            state = self._partitions.get(topic_partition)
            if state is None:
                continue
            safe[topic_partition] = state.buffer.first_offset() if state.buffer.row_count else offset
        return safe

    def _buffer(self, topic_partition: tuple[str, int], state: _PartitionState, table: pa.Table, now_ms: int) -> None:
        buffer = state.buffer
        if buffer.row_count:
            try:
                buffer.schema = pa.unify_schemas([buffer.schema, table.schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                log.info("%s: columns changed (%s); rolling the buffered rows into a file", topic_partition, error)
                self._write(topic_partition, state, buffer.take_all())
        if not buffer.row_count:
            buffer.schema = table.schema
        buffer.add(table, now_ms)
        state.last_seen_offset = table.column("_offset")[-1].as_py()
        if buffer.row_count >= self._flush_size or (self._file_bytes_max and buffer.byte_count >= self._file_bytes_max):
            rows = buffer.take_all()
            while rows.num_rows >= self._flush_size or (
                    self._file_bytes_max and rows.num_rows and rows.nbytes >= self._file_bytes_max):
                cut = min(self._flush_size, rows.num_rows)
                self._write(topic_partition, state, rows.slice(0, cut))
                rows = rows.slice(cut)
            if rows.num_rows:
                # Fewer than flush.size rows were buffered before this put, and the
                # files above took at least flush.size: what is left came in this put.
                buffer.add(rows, now_ms)
                buffer.schema = rows.schema

    # -- files -----------------------------------------------------------------------

    def _topic_directory(self, topic: str) -> str:
        return f"{self._root}/topic={topic}"

    def _list_files(self, topic: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self._topic_directory(topic), recursive=True, allow_not_found=True)
        return [info for info in self._filesystem.get_file_info(selector) if info.type == pafs.FileType.File]

    def _recover(self, topic: str, partition: int, files: list[pafs.FileInfo]) -> Recovery:
        """Delete leftovers of an interrupted write of ``topic``/``partition`` and return
        the last offset its complete files hold."""
        dropped: list[str] = []
        spans: dict[tuple[int, int], list[tuple[str, int | None]]] = {}
        prefix = f"{topic}+{partition}+"
        for info in files:
            name = info.base_name
            if name.startswith("." + prefix) and name.endswith(".tmp"):
                dropped.append(info.path)
                continue
            match = _FILE_NAME.match(name)
            if match is None or match["topic"] != topic or int(match["partition"]) != partition:
                continue
            count = int(match["count"]) if match["count"] else None
            spans.setdefault((int(match["first"]), int(match["last"])), []).append((info.path, count))
        last_offset = None
        for (first, last), span_files in sorted(spans.items()):
            expected = span_files[0][1] or 1
            if len(span_files) < expected:
                log.warning("%s-%d: span %d..%d has %d of its %d files (a write was cut short): deleting them",
                            topic, partition, first, last, len(span_files), expected)
                dropped.extend(path for path, _ in span_files)
                continue
            last_offset = last if last_offset is None else max(last_offset, last)
        for path in dropped:
            self._filesystem.delete_file(path)
        return Recovery(last_offset, dropped)

    def _write(self, topic_partition: tuple[str, int], state: _PartitionState, table: pa.Table) -> None:
        """Write the rows of one span as its file(s), each atomically."""
        topic, partition = topic_partition
        offsets = table.column("_offset")
        first_offset, last_offset = offsets[0].as_py(), offsets[-1].as_py()
        assert state.last_written_offset is None or first_offset > state.last_written_offset, (
            f"{topic_partition}: span {first_offset}..{last_offset} overlaps written offset {state.last_written_offset}")
        if not self._include_kafka_fields:
            table = table.drop_columns(list(KAFKA_COLUMNS))
        topic_directory = self._topic_directory(topic)
        if not self._partition_fields:
            parts = [(f"{topic_directory}/partition={partition}",
                      file_name(topic, partition, first_offset, last_offset), table)]
        else:
            groups = _split_by_fields(table, self._partition_fields)
            parts = [(f"{topic_directory}/{directory}",
                      file_name(topic, partition, first_offset, last_offset, index, len(groups)), rows)
                     for index, (directory, rows) in enumerate(groups)]
        # Every temporary file is complete and durable before the first rename, so an
        # interrupted span is missing whole files only, which _recover detects.
        renames = []
        for directory, name, rows in parts:
            self._filesystem.create_dir(directory, recursive=True)
            temporary = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            with self._filesystem.open_output_stream(temporary) as stream:
                pq.write_table(rows, stream, compression=self._compression)
            if self._local:
                _fsync_path(temporary)
            renames.append((temporary, f"{directory}/{name}"))
        for temporary, final in renames:
            self._filesystem.move(temporary, final)
        if self._local:
            for directory in sorted({directory for directory, _, _ in parts}):
                _fsync_path(directory)
        state.last_written_offset = last_offset
        log.debug("%s: wrote offsets %d..%d (%d rows) in %d file(s)", topic_partition, first_offset, last_offset,
                  table.num_rows, len(parts))


def _fresh_records(records: list[SinkRecord], last_seen_offset: int | None) -> list[SinkRecord]:
    """``records`` without those at or below ``last_seen_offset`` or out of order."""
    fresh = []
    last = -1 if last_seen_offset is None else last_seen_offset
    for record in records:
        if record.offset > last:
            fresh.append(record)
            last = record.offset
    return fresh


def _to_table(records: list[SinkRecord]) -> pa.Table:
    """The rows of ``records`` (one partition, offsets increasing) with the Kafka columns."""
    values = [record.value for record in records]
    for record in records:
        if not isinstance(record.value, dict):
            raise ValueError(f"{record.topic}-{record.partition}@{record.offset}: the Parquet sink needs dict values "
                             f"(the json converter), got {type(record.value).__name__}")
    names = list(dict.fromkeys(key for value in values for key in value))
    reserved = set(names) & set(KAFKA_COLUMNS)
    if reserved:
        raise ValueError(f"{records[0].topic}-{records[0].partition}: value fields {sorted(reserved)} "
                         f"clash with the reserved Kafka columns")
    columns = {name: pa.array([value.get(name) for value in values]) for name in names}
    columns["_topic"] = pa.array([record.topic for record in records], pa.string())
    columns["_partition"] = pa.array([record.partition for record in records], pa.int32())
    columns["_offset"] = pa.array([record.offset for record in records], pa.int64())
    columns["_timestamp"] = pa.array([record.timestamp_ms for record in records], pa.timestamp("ms"))
    return pa.table(columns)


def _split_by_fields(table: pa.Table, fields: list[str]) -> list[tuple[str, pa.Table]]:
    """Rows grouped by the values of ``fields`` as ``(hive directory, rows)``; the fields
    themselves live in the directory names only."""
    keys = list(zip(*[table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
                      for name in fields]))
    groups: dict[tuple, list[int]] = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    stored = table.drop_columns([name for name in fields if name in table.column_names])
    return [("/".join(f"{name}={_directory_value(value)}" for name, value in zip(fields, key)), stored.take(rows))
            for key, rows in groups.items()]


def _directory_value(value: Any) -> str:
    if value is None:
        return NULL_DIRECTORY_VALUE
    return quote(str(value), safe="")


def _fsync_path(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
