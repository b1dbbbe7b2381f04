"""A task: one sub-topology on one partition number, and event time across a
repartition (see ``Task``). A worker actor (runtime.py) runs the tasks of the
partitions it owns; TopologyTestDriver (testing.py) runs them in-process.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.compute as pc

from rafka.streams.dsl import Node
from rafka.streams.processors import NO_TIME, OWN_TIME, Aggregate, TableStore, build
from rafka.streams.topology import Compiled, SubTopology, changelog_topic

WATERMARKS_KEY = "__watermarks__"  # changelog key [WATERMARKS_KEY, topic]: a repartition topic's upstream marks


class Task:
    """One sub-topology on one partition number (see the module docstring).

    Event time across a repartition: a task's *stream time* is the largest timestamp
    of the stream records it has read from source topics (Kafka Streams' stream time;
    records of a table's topic do not count), or, for a task reading a repartition
    topic, the watermark it receives. A task that writes to a repartition topic sends
    its stream time to every partition of it whenever the time advances (a watermark
    record after the data it covers), and, when it has read all of its input and has
    had none since the last commit, an *idle* mark, so an empty or quiet upstream
    partition does not hold every downstream window open. The task reading the topic
    takes the smallest watermark of the upstream tasks that are not idle (so a
    lagging upstream's records are not made late by a faster one), or the largest of
    all when every one is idle (the input is drained: every window it can close,
    closes); -inf until every upstream has reported once; it never goes back. The
    price of idleness, as in Flink: records that reach an idle upstream later may find
    their windows closed downstream, and are then dropped as late and counted. The
    marks a task has received go to the changelog of each aggregation behind the topic
    at each commit and come back with it, so a task that moves does not wait for
    upstream tasks that have nothing more to send.
    """

    def __init__(self, compiled: Compiled, sub: SubTopology, partition: int, producer: Any) -> None:
        self.sub = sub
        self.partition = partition
        self.producer = producer
        self.app = compiled.app
        self.parents = sub.parents
        self.processors = {node: build(node, self) for node in sub.nodes}
        for node in sub.nodes:
            for parent in sub.parents[node]:
                self.processors[parent].children.append(self.processors[node])
        # Several sources may read one topic (merged or joined); each gets every batch.
        self.sources: dict[str, list[Any]] = {}
        for node in sub.nodes:
            if node.kind == "source":
                for topic in node.options["topics"]:
                    self.sources.setdefault(topic, []).append(self.processors[node])
        self.aggregates = [p for p in self.processors.values() if isinstance(p, Aggregate)]
        self.tables = [p for p in self.processors.values() if isinstance(p, TableStore)]
        for store in self.tables:
            self.processors[self.parents[store.node][0]].feeds_table = True
        self.late_records = 0
        self.records = 0
        self.compiled = compiled
        self.repartition_sinks = [p for p in self.processors.values() if p.node.kind == "repartition_sink"]
        self.stream_time_ms = NO_TIME  # the largest timestamp read from a source topic (stream records only)
        self.idle = False  # an idle mark went out and no input came since
        self.active = False  # input since the last idle check
        self._upstream_watermarks: dict[str, dict[int, tuple[int, bool]]] = {}  # upstream -> (watermark, idle)
        self._watermarks: dict[str, int] = {}  # per repartition topic read: the watermark so far (monotonic)
        self._watermark_topic: dict[Node, str | None] = {}
        self._marks_changed: set[str] = set()  # repartition topics whose marks changed since the changelog write

    def send(self, topic: str, table: pa.Table, partition: int | None = None) -> None:
        self.producer.send_batch(topic, table, partition=partition)

    def partition_count(self, topic: str) -> int:
        return len(self.producer.partitions_for(topic))

    # -- event time across a repartition (see the class docstring) ------------------------

    def upstream_watermark(self, topic: str, upstream_partition: int, watermark_ms: int | None, idle: bool) -> None:
        """A watermark record from upstream task ``upstream_partition`` (None: it has no
        stream time yet)."""
        marks = self._upstream_watermarks.setdefault(topic, {})
        previous = marks.get(upstream_partition, (NO_TIME, False))[0]
        marks[upstream_partition] = (max(previous, NO_TIME if watermark_ms is None else watermark_ms), idle)
        self._marks_changed.add(topic)

    def watermark_for(self, node: Node):
        """Stream time for an aggregation: its own (``OWN_TIME``) when it reads a
        source topic; behind a repartition topic, the watermark of that topic."""
        topic = self._root_internal_topic(node)
        return OWN_TIME if topic is None else self.topic_watermark(topic)

    def topic_watermark(self, topic: str) -> int:
        """The watermark of repartition ``topic`` (see the class docstring): -inf until
        every upstream task has reported; then the smallest watermark of those not
        idle, or the largest of all when all are idle; never lower than before."""
        writer = self.compiled.subtopologies[self.compiled.repartition_topics[topic]]
        upstream = self.partition_count(writer.source_topics[0])
        marks = self._upstream_watermarks.get(topic, {})
        watermark = self._watermarks.get(topic, NO_TIME)
        if len(marks) >= upstream:
            active = [mark for mark, idle in marks.values() if not idle]
            watermark = max(watermark, min(active) if active else max(mark for mark, _ in marks.values()))
            self._watermarks[topic] = watermark
        return watermark

    def outgoing_watermark(self, node: Node) -> int:
        """The event time this task has reached on the path to ``node`` (a repartition sink)."""
        topic = self._root_internal_topic(node)
        return self.stream_time_ms if topic is None else self.topic_watermark(topic)

    def _root_internal_topic(self, node: Node) -> str | None:
        """The repartition topic at the root of ``node``'s first-parent chain, if any."""
        if node not in self._watermark_topic:
            current = node
            while self.parents[current]:
                current = self.parents[current][0]
            internal = current.options.get("internal")
            self._watermark_topic[node] = current.options["topics"][0] if internal else None
        return self._watermark_topic[node]

    def mark_idle(self) -> None:
        """Called by the worker at a commit when this task has read all of its input and
        had none since the last one: tell the downstream tasks not to wait for it."""
        if self.idle or not self.repartition_sinks:
            return
        self.idle = True
        for sink in self.repartition_sinks:
            sink.send_idle()

    def process(self, topic: str, batches: pa.RecordBatch | list[pa.RecordBatch]) -> None:
        """Push a partition's batches from one poll through the graph as one table:
        fewer, larger steps (an aggregation's per-group work shrinks with batch size)."""
        table = pa.Table.from_batches(batches if isinstance(batches, list) else [batches])
        self.active = True
        if topic not in self.compiled.repartition_topics:
            self.records += table.num_rows  # (a repartition source counts its data, not the marks)
        for source in self.sources[topic]:
            source.process(table, None)
        for aggregate in self.aggregates:
            aggregate.punctuate()
        was_idle, self.idle = self.idle, False
        for sink in self.repartition_sinks:
            sink.send_watermark(self.outgoing_watermark(sink.node), force=was_idle)

    def write_changelogs(self) -> None:
        changed, self._marks_changed = self._marks_changed, set()
        for aggregate in self.aggregates:
            entries = aggregate.changelog_entries()
            topic = self._root_internal_topic(aggregate.node)
            if topic in changed:
                marks = [[upstream, mark, idle] for upstream, (mark, idle) in self._upstream_watermarks[topic].items()]
                row = pa.table({"key": pa.array([msgpack.packb([WATERMARKS_KEY, topic])], pa.binary()),
                                "value": pa.array([msgpack.packb(marks)], pa.binary())})
                entries = row if entries is None else pa.concat_tables([entries, row])
            if entries is not None:
                self.producer.send_batch(changelog_topic(self.app, aggregate.node.name), entries, partition=self.partition)

    def restore(self, aggregate: Aggregate, table: pa.Table) -> None:
        """Replay a changelog table into ``aggregate`` (and the upstream marks in it)."""
        topic = self._root_internal_topic(aggregate.node)
        if topic is not None:
            key = pa.scalar(msgpack.packb([WATERMARKS_KEY, topic]), pa.binary())
            is_marks = pc.fill_null(pc.equal(table.column("key"), key), False)
            if pc.any(is_marks).as_py():
                for value in table.filter(is_marks).column("value").to_pylist():
                    for upstream, mark, idle in msgpack.unpackb(value) if value is not None else ():
                        self.upstream_watermark(topic, upstream, mark, idle)
                table = table.filter(pc.invert(is_marks))
                self._marks_changed.discard(topic)
        aggregate.restore(table)
