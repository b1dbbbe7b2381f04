"""TopologyTestDriver: run a StreamsApp's dataflow in this process, without Ray or a
cluster, for unit tests of stream logic (Kafka Streams has the same tool).

Everything runs as partition 0 of every topic: records piped into a source topic go
through the same processors a task actor runs, repartition topics are fed straight to
the sub-topology that reads them, and what sinks write is kept per topic, decoded back
to Python values (``read_output``). State lives in the driver, changelogs included, so
``restart()`` checks that state survives a task restart.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Iterable

import pyarrow as pa

from rafka.streams import codec
from rafka.streams.dsl import StreamsApp
from rafka.streams.runtime import Task
from rafka.streams.topology import changelog_topic, compile_app


class _LocalProducer:
    def __init__(self, driver: "TopologyTestDriver") -> None:
        self.driver = driver

    def send_batch(self, topic: str, table: pa.Table, partition: int | None = None) -> None:
        self.driver._deliver(topic, table)

    def partitions_for(self, topic: str) -> list[int]:
        return [0]  # the driver runs everything as partition 0


class TopologyTestDriver:
    def __init__(self, app: StreamsApp) -> None:
        self.app = app
        self.compiled = compile_app(app)
        self.outputs: dict[str, list[pa.Table]] = defaultdict(list)
        self.changelogs: dict[str, list[pa.Table]] = defaultdict(list)
        self._producer = _LocalProducer(self)
        self._start_tasks()

    def _start_tasks(self) -> None:
        self.tasks = [Task(self.compiled, sub, 0, self._producer) for sub in self.compiled.subtopologies]
        for task in self.tasks:
            for aggregate in task.aggregates:
                for table in self.changelogs[changelog_topic(self.app, aggregate.node.name)]:
                    aggregate.restore(table)

    def pipe(self, topic: str, records: Iterable[tuple[Any, Any, int]]) -> None:
        """Send (key, value, timestamp ms) records to ``topic``, as one batch; keys and
        values are bytes or str (str is encoded as UTF-8), as a producer would send."""
        rows = list(records)
        encode = lambda item: item.encode() if isinstance(item, str) else item  # noqa: E731
        table = pa.table({
            "offset": pa.array(range(len(rows)), pa.int64()),
            "timestamp": pa.array([row[2] for row in rows], pa.int64()),
            "key": pa.array([encode(row[0]) for row in rows], pa.binary()),
            "value": pa.array([encode(row[1]) for row in rows], pa.binary()),
        })
        self._deliver(topic, table, from_user=True)

    def _deliver(self, topic: str, table: pa.Table, from_user: bool = False) -> None:
        if topic in self.compiled.changelog_topics:
            self.changelogs[topic].append(table)
            return
        readers = [task for task in self.tasks if topic in task.sub.source_topics]
        if not readers and not from_user:
            self.outputs[topic].append(table)
            return
        if "offset" not in table.column_names:
            table = table.append_column("offset", pa.array(range(table.num_rows), pa.int64()))
        if "timestamp" not in table.column_names:
            table = table.append_column("timestamp", pa.array([time.time_ns() // 1_000_000] * table.num_rows, pa.int64()))
        for task in readers:
            for batch in table.combine_chunks().to_batches():
                task.process(topic, batch)
        if topic not in self.compiled.repartition_topics and readers and not from_user:
            self.outputs[topic].append(table)  # a sink topic some sub-topology also reads

    def commit(self) -> None:
        """What a task does at commit: changelogs out."""
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
