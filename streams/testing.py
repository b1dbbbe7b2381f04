"""TopologyTestDriver: run a StreamsApp's dataflow in this process, without Ray or a
cluster, for unit tests of stream logic (Kafka Streams has the same tool).

Every topic has ``partitions`` partitions (default 1) and there is one task per
(sub-topology, partition), as on actors. Records piped into partition p of a source
topic go through the same processors a task actor runs; what a task writes to a
repartition topic goes straight to the task reading that partition (keys placed by
Kafka's partitioner, as a producer would); what sinks write is kept per topic, decoded
back to Python values (``read_output``). ``commit()`` does what a worker does at a
commit: changelogs out, and an idle mark from every task that had no input since the
previous commit (in the driver every task has always read all of its input). State
lives in the driver, changelogs included, so ``restart()`` checks that state survives a
task restart.

With ``hold_repartitions=True``, what tasks write to repartition topics waits instead,
per partition and in the order sent, until ``deliver_held()`` hands each partition's
backlog to its task as one batch: what a downstream task that lags behind reads in one
poll on actors (upstream data and watermark records interleaved).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from rafka.client.partitioner import partition_for_key
from rafka.streams import codec
from rafka.streams.dsl import StreamsApp
from rafka.streams.task import Task
from rafka.streams.topology import changelog_topic, compile_app


class _LocalProducer:
    def __init__(self, driver: "TopologyTestDriver") -> None:
        self.driver = driver

    def send_batch(self, topic: str, table: pa.Table, partition: int | None = None) -> None:
        self.driver._deliver(topic, table, partition)

    def partitions_for(self, topic: str) -> list[int]:
        return list(range(self.driver.partitions))


class TopologyTestDriver:
    def __init__(self, app: StreamsApp, partitions: int = 1, hold_repartitions: bool = False) -> None:
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be a positive int, got {partitions!r}")
        self.app = app
        self.partitions = partitions
        self.hold_repartitions = bool(hold_repartitions)
        self._held: dict[tuple[str, int], list[pa.Table]] = defaultdict(list)  # (topic, partition) -> sent, in order
        self.compiled = compile_app(app)
        self.outputs: dict[str, list[pa.Table]] = defaultdict(list)
        self.changelogs: dict[tuple[str, int], list[pa.Table]] = defaultdict(list)
        self._producer = _LocalProducer(self)
        self._start_tasks()

    def _start_tasks(self) -> None:
        self.tasks = [Task(self.compiled, sub, partition, self._producer)
                      for sub in self.compiled.subtopologies for partition in range(self.partitions)]
        for task in self.tasks:
            for aggregate in task.aggregates:
                for table in self.changelogs[(changelog_topic(self.app, aggregate.node.name), task.partition)]:
                    task.restore(aggregate, table)

    def pipe(self, topic: str, records: Iterable[tuple[Any, Any, int]], partition: int = 0) -> None:
        """Send (key, value, timestamp ms) records to ``partition`` of ``topic``, as one
        batch; keys and values are bytes or str (str is encoded as UTF-8), as a
        producer would send."""
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < self.partitions:
            raise ValueError(f"partition must be an int in [0, {self.partitions}), got {partition!r}")
        rows = list(records)
        encode = lambda item: item.encode() if isinstance(item, str) else item  # noqa: E731
        table = pa.table({
            "offset": pa.array(range(len(rows)), pa.int64()),
            "timestamp": pa.array([row[2] for row in rows], pa.int64()),
            "key": pa.array([encode(row[0]) for row in rows], pa.binary()),
            "value": pa.array([encode(row[1]) for row in rows], pa.binary()),
        })
        self._deliver(topic, table, partition, from_user=True)

    def _deliver(self, topic: str, table: pa.Table, partition: int | None, from_user: bool = False) -> None:
        if topic in self.compiled.changelog_topics:
            self.changelogs[(topic, partition)].append(table)
            return
        readers = [task for task in self.tasks if topic in task.sub.source_topics]
        if not readers and not from_user:
            self.outputs[topic].append(table)
            return
        if "offset" not in table.column_names:
            table = table.append_column("offset", pa.array(range(table.num_rows), pa.int64()))
        if "timestamp" not in table.column_names:
            table = table.append_column("timestamp", pa.array([time.time_ns() // 1_000_000] * table.num_rows, pa.int64()))
        for number, part in self._by_partition(table, partition):
            if self.hold_repartitions and topic in self.compiled.repartition_topics:
                self._held[(topic, number)].append(part)
                continue
            for task in readers:
                if task.partition == number:
                    for batch in part.combine_chunks().to_batches():
                        task.process(topic, batch)
        if topic not in self.compiled.repartition_topics and readers and not from_user:
            self.outputs[topic].append(table)  # a sink topic some sub-topology also reads

    def deliver_held(self) -> None:
        """Hand every held repartition backlog to its task, one batch per partition
        (and again for what that makes downstream tasks write, until none is held)."""
        while self._held:
            held, self._held = self._held, defaultdict(list)
            for (topic, number), tables in held.items():
                batch = pa.concat_tables(tables).combine_chunks()
                for task in self.tasks:
                    if topic in task.sub.source_topics and task.partition == number:
                        task.process(topic, batch.to_batches())

    def _by_partition(self, table: pa.Table, partition: int | None) -> list[tuple[int, pa.Table]]:
        """The rows for each partition: all to ``partition``, or by key as a producer does
        (rows without a key to partition 0)."""
        if partition is not None or self.partitions == 1:
            return [(partition or 0, table)]
        keys = table.column("key").to_pylist()
        numbers = np.array([0 if key is None else partition_for_key(key, self.partitions) for key in keys])
        return [(number, table.filter(pa.array(numbers == number))) for number in range(self.partitions)
                if (numbers == number).any()]

    def commit(self) -> None:
        """What a worker does at a commit: idle marks from tasks that had no input since
        the last commit, and changelogs out."""
        for task in self.tasks:
            if not task.active:
                task.mark_idle()
            task.active = False
        for task in self.tasks:
            task.write_changelogs()

    def restart(self) -> None:
        """Commit, drop every task, and start them again from their changelogs."""
        self.commit()
        self._start_tasks()

    def read_output(self, topic: str, key_format: str = "bytes", value_format: str = "bytes") -> list[tuple]:
        """(key, value, timestamp, headers dict) of every record written to ``topic``."""
        records = []
        for table in self.outputs.get(topic, []):
            keys = codec.decode(table.column("key"), key_format, f"key of {topic}").to_pylist()
            values = codec.decode(table.column("value"), value_format, f"value of {topic}").to_pylist()
            headers = table.column("headers").to_pylist() if "headers" in table.column_names else [None] * len(keys)
            for key, value, timestamp, header in zip(keys, values, table.column("timestamp").to_pylist(), headers):
                records.append((key, value, timestamp, {h["key"]: h["value"] for h in header} if header else {}))
        return records

    @property
    def late_records(self) -> int:
        return sum(task.late_records for task in self.tasks)
