"""Compile a StreamsApp's nodes into sub-topologies, split at repartition points.

A grouping or join whose input may have a changed key gets a repartition pair: a sink
writing to the internal topic ``<app id>-<step>-repartition`` (keyed by the new key, so
Kafka's partitioner sends each key to one partition) and a source reading it. The graph
then falls apart into connected pieces, the sub-topologies. A task is one sub-topology
on one partition number; every topic a sub-topology reads must have the same partition
count (co-partitioning), which ``check_partitions`` verifies before a job starts.

Internal topics: repartition topics get the partition count of the sub-topology
upstream of them; changelog topics (``<app id>-<step>-changelog``, compacted) that of
the sub-topology whose state they back.
"""

from __future__ import annotations

import dataclasses

from rafka.streams.dsl import Node, StreamsApp

STATEFUL = ("aggregate", "table")


@dataclasses.dataclass
class SubTopology:
    index: int
    nodes: list[Node]  # parents before children
    parents: dict[Node, list[Node]]  # after repartition pairs were inserted
    source_topics: list[str]
    stores: list[Node]  # stateful nodes (their state is changelogged, or restored from the table topic)


@dataclasses.dataclass
class Compiled:
    app: StreamsApp
    subtopologies: list[SubTopology]
    repartition_topics: dict[str, int]  # topic -> index of the sub-topology that writes it
    changelog_topics: dict[str, int]  # topic -> index of the sub-topology whose state it backs

    def subtopology_of(self, topic: str) -> list[SubTopology]:
        return [s for s in self.subtopologies if topic in s.source_topics]

    def all_source_topics(self) -> list[str]:
        return sorted({t for s in self.subtopologies for t in s.source_topics})


def repartition_topic(app: StreamsApp, step: str) -> str:
    return f"{app.application_id}-{step}-repartition"


def changelog_topic(app: StreamsApp, step: str) -> str:
    return f"{app.application_id}-{step}-changelog"


def compile_app(app: StreamsApp) -> Compiled:
    if not any(node.kind == "source" for node in app.nodes):
        raise ValueError(f"stream app {app.application_id!r} has no source()")
    _check_table_topics(app)
    parents: dict[Node, list[Node]] = {node: list(node.parents) for node in app.nodes}
    extra: list[Node] = []
    repartition_writer: dict[str, Node] = {}
    for node in app.nodes:
        if node.kind not in ("aggregate", "join"):
            continue
        upstream = parents[node][0]
        if not upstream.key_changed:
            continue
        topic = repartition_topic(app, node.name)
        sink = Node("repartition_sink", f"{node.name}-repartition-sink", [upstream], {"topic": topic})
        source = Node("source", f"{node.name}-repartition-source", [],
                      {"topics": [topic], "internal": True, "key_format": "bytes", "value_format": "bytes",
                       "timestamp_extractor": None})
        parents[sink] = [upstream]
        parents[source] = []
        parents[node] = [source] + parents[node][1:]
        extra += [sink, source]
        repartition_writer[topic] = sink
    nodes = app.nodes + extra
    # Connected components over parent links.
    component: dict[Node, int] = {}
    neighbours: dict[Node, set[Node]] = {node: set() for node in nodes}
    for node in nodes:
        for parent in parents[node]:
            neighbours[node].add(parent)
            neighbours[parent].add(node)
    order = {node: index for index, node in enumerate(nodes)}
    groups: list[list[Node]] = []
    for node in nodes:
        if node in component:
            continue
        stack, members = [node], []
        component[node] = len(groups)
        while stack:
            current = stack.pop()
            members.append(current)
            for other in neighbours[current]:
                if other not in component:
                    component[other] = len(groups)
                    stack.append(other)
        groups.append(members)
    subtopologies = []
    for index, members in enumerate(groups):
        ordered = _topological(members, parents, order)
        topics = sorted({t for n in ordered if n.kind == "source" for t in n.options["topics"]})
        subtopologies.append(SubTopology(index, ordered, {n: parents[n] for n in ordered}, topics,
                                         [n for n in ordered if n.kind in STATEFUL]))
    repartition = {topic: component[sink] for topic, sink in repartition_writer.items()}
    changelogs = {changelog_topic(app, n.name): s.index for s in subtopologies for n in s.stores if n.kind == "aggregate"}
    return Compiled(app, subtopologies, repartition, changelogs)


def _check_table_topics(app: StreamsApp) -> None:
    """A table's topic may not also be read as a stream: a task bootstraps a table by
    moving its consumer to the end of the topic, which would skip the stream's backlog.
    (Several stream sources may read one topic: each gets every record.)"""
    table_sources = {node.parents[0] for node in app.nodes if node.kind == "table"}
    readers: dict[str, list[Node]] = {}
    for node in app.nodes:
        if node.kind == "source":
            for topic in node.options["topics"]:
                readers.setdefault(topic, []).append(node)
    for topic, nodes in readers.items():
        tables = [n for n in nodes if n in table_sources]
        streams = [n for n in nodes if n not in table_sources]
        if tables and streams:
            raise ValueError(f"topic {topic!r} is read both as a table (step {tables[0].name!r}) and as a stream "
                             f"(step {streams[0].name!r}); read it once, e.g. app.table({topic!r}).to_stream()")


def _topological(members: list[Node], parents: dict[Node, list[Node]], order: dict[Node, int]) -> list[Node]:
    done: list[Node] = []
    seen: set[Node] = set()

    def visit(node: Node) -> None:
        if node in seen:
            return
        seen.add(node)
        for parent in parents[node]:
            visit(parent)
        done.append(node)

    for node in sorted(members, key=lambda n: order[n]):
        visit(node)
    return done


def describe(compiled: Compiled) -> str:
    """A text picture of the sub-topologies (like Kafka Streams' ``Topology#describe``)."""
    lines = []
    for sub in compiled.subtopologies:
        lines.append(f"sub-topology {sub.index}: reads {', '.join(sub.source_topics)}")
        for node in sub.nodes:
            inputs = sub.parents[node]
            lines.append(f"  {node.kind} {node.name}" + (f" <- {', '.join(p.name for p in inputs)}" if inputs else ""))
    return "\n".join(lines)
