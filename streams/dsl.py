"""The Streams DSL: describe a dataflow; ``StreamsApp.start`` runs it on task actors.

A stream is a sequence of Arrow batches with at least the columns ``key``, ``value``
and ``timestamp`` (event time, epoch ms). Each step is a node with a stable name (given
with ``name=``, else derived from its kind and position, like Kafka Streams'
``KSTREAM-MAP-0000000003``): names name state stores and internal topics, so give
stateful steps names of your own if the topology may change between deployments.

Fast path: ``map_batches(fn)`` (``fn(pyarrow.Table) -> pyarrow.Table``) and the
built-in aggregations (``count``, ``sum``, ``min``, ``max``) run vectorized on whole
batches. Slow path: ``map``, ``map_values``, ``filter``, ``flat_map``, ``peek``,
``key_by``, ``branch`` predicates, ``foreach``, ``reduce`` and ``aggregate`` call a
Python function once per record — fine for light streams, a hundred times slower than
the fast path for heavy ones.

A step that may change the key (``map``, ``flat_map``, ``key_by``, ``map_batches``)
marks the stream; a later grouping repartitions it through an internal topic
``<app id>-<step name>-repartition`` so each key's records meet in one task.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Iterable

from rafka.config import ConfigDef, ConfigField
from rafka.streams.windows import SessionWindows, SlidingWindows, TimeWindows
from rafka.validation import validate_topic_name

EMIT_MODES = ("update", "final")
AGGREGATIONS = ("count", "sum", "min", "max", "reduce", "aggregate")


@dataclasses.dataclass(eq=False)
class Node:
    """One step of the dataflow (see the module docstring)."""

    kind: str
    name: str
    parents: list["Node"]
    options: dict[str, Any]
    key_changed: bool = False

    def __repr__(self) -> str:
        return f"Node({self.kind}, {self.name!r})"


STREAMS_OPTIONS = ConfigDef([
    # Defaults: StreamsApp's signature.
    ConfigField("auto_offset_reset", "str", doc="where a new application starts reading its sources",
                choices=("earliest", "latest")),
    ConfigField("commit_interval_ms", "int", doc="how often tasks commit their positions and flush their state", min=1),
    ConfigField("max_poll_records", "int", doc="the most records a task processes per poll", min=1),
], subject="streams option", from_strings=False, strict=True)


class StreamsApp:
    """A stream job under an application id (its consumer group, and the prefix of its
    internal topics). Build the dataflow with ``source``/``table``, then ``start``."""

    def __init__(self, application_id: str, *, auto_offset_reset: str = "earliest",
                 commit_interval_ms: int = 30_000, max_poll_records: int = 100_000) -> None:
        validate_topic_name(application_id)  # it prefixes topic names
        STREAMS_OPTIONS.parse_given({"auto_offset_reset": auto_offset_reset, "commit_interval_ms": commit_interval_ms,
                                     "max_poll_records": max_poll_records})
        self.application_id = application_id
        self.auto_offset_reset = auto_offset_reset
        self.commit_interval_ms = commit_interval_ms
        self.max_poll_records = max_poll_records
        self.nodes: list[Node] = []
        self._counter = itertools.count()
        self._names: set[str] = set()

    def _add(self, kind: str, parents: list[Node], name: str | None, key_changed: bool, **options: Any) -> Node:
        index = next(self._counter)
        name = name if name is not None else f"{kind}-{index:04d}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "._-" for c in name):
            raise ValueError(f"step name must use a-z A-Z 0-9 . _ -, got {name!r}")
        if name in self._names:
            raise ValueError(f"step name {name!r} is used twice; names must be unique (they name state and topics)")
        self._names.add(name)
        node = Node(kind, name, parents, options, key_changed)
        self.nodes.append(node)
        return node

    def source(self, topics: str | Iterable[str], *, key_format: str = "bytes", value_format: str = "bytes",
               timestamp_extractor: Callable[[Any], Any] | None = None, name: str | None = None) -> "Stream":
        """A stream of the records of ``topics``. ``key_format``/``value_format``:
        "bytes", "utf8", "int", "float", "json". ``timestamp_extractor(table) ->
        int64 array`` replaces the record timestamp as event time (vectorized)."""
        from rafka.streams.codec import FORMATS

        topics = [topics] if isinstance(topics, str) else list(topics)
        if not topics or not all(isinstance(t, str) for t in topics):
            raise TypeError(f"source() takes a topic name or a list of them, got {topics!r}")
        for what, fmt in (("key_format", key_format), ("value_format", value_format)):
            if fmt not in FORMATS:
                raise ValueError(f"{what} must be one of {', '.join(FORMATS)}, got {fmt!r}")
        node = self._add("source", [], name, False, topics=topics, key_format=key_format,
                         value_format=value_format, timestamp_extractor=timestamp_extractor)
        return Stream(self, node)

    def table(self, topic: str, *, key_format: str = "bytes", value_format: str = "bytes",
              name: str | None = None) -> "Table":
        """``topic`` materialized as a table: the latest value per key (a None value
        deletes the key), kept in a state store of the task that owns the partition."""
        source = self.source(topic, key_format=key_format, value_format=value_format,
                             name=None if name is None else name + "-source")
        node = self._add("table", [source.node], name, False)
        return Table(self, node)

    def start(self, cluster: Any, workers: int = 1, **options: Any):
        """Run the dataflow on ``workers`` task actors; returns a ``StreamsJob``."""
        from rafka.streams.runtime import StreamsJob

        return StreamsJob(cluster, self, workers, **options)


class Stream:
    def __init__(self, app: StreamsApp, node: Node) -> None:
        self.app = app
        self.node = node

    def _then(self, kind: str, name: str | None, key_changed: bool | None = None, **options: Any) -> "Stream":
        changed = self.node.key_changed if key_changed is None else key_changed
        return Stream(self.app, self.app._add(kind, [self.node], name, changed, **options))

    # -- fast path -----------------------------------------------------------------------

    def map_batches(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """``fn(table) -> table`` on whole Arrow tables (columns key, value, timestamp,
        and any you add): the fast path. May change the key."""
        _callable(fn)
        return self._then("map_batches", name, True, fn=fn)

    # -- per record (slow path) ------------------------------------------------------------

    def map(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """``fn(key, value) -> (key, value)`` per record."""
        _callable(fn)
        return self._then("map", name, True, fn=fn)

    def map_values(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """``fn(value) -> value`` per record; the key stays."""
        _callable(fn)
        return self._then("map_values", name, fn=fn)

    def filter(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """Keep records where ``fn(key, value)`` is true."""
        _callable(fn)
        return self._then("filter", name, fn=fn)

    def flat_map(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """``fn(key, value) -> iterable of (key, value)`` per record."""
        _callable(fn)
        return self._then("flat_map", name, True, fn=fn)

    def peek(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """Call ``fn(key, value)`` per record; records pass unchanged."""
        _callable(fn)
        return self._then("peek", name, fn=fn)

    def key_by(self, fn: Callable, *, name: str | None = None) -> "Stream":
        """New key ``fn(key, value)`` per record (a later grouping repartitions)."""
        _callable(fn)
        return self._then("key_by", name, True, fn=fn)

    def foreach(self, fn: Callable, *, name: str | None = None) -> None:
        """Call ``fn(key, value)`` per record; ends the stream."""
        _callable(fn)
        self._then("foreach", name, fn=fn)

    def branch(self, *predicates: Callable, name: str | None = None) -> list["Stream"]:
        """One stream per predicate ``fn(key, value)``: a record goes to the first whose
        predicate is true (none: dropped)."""
        if not predicates:
            raise ValueError("branch() needs at least one predicate")
        for predicate in predicates:
            _callable(predicate)
        base = name or f"branch-{next(self.app._counter):04d}"
        return [self._then("branch", f"{base}-{index}", predicates=predicates, index=index)
                for index in range(len(predicates))]

    def merge(self, other: "Stream", *, name: str | None = None) -> "Stream":
        """Records of both streams."""
        if not isinstance(other, Stream) or other.app is not self.app:
            raise TypeError("merge() takes another stream of the same app")
        node = self.app._add("merge", [self.node, other.node], name, self.node.key_changed or other.node.key_changed)
        return Stream(self.app, node)

    def to(self, topic: str, *, name: str | None = None) -> None:
        """Write the records to ``topic`` (keys and values as bytes: see codec.py)."""
        validate_topic_name(topic)
        self._then("sink", name, topic=topic)

    # -- grouping and joins ------------------------------------------------------------------

    def group_by_key(self) -> "GroupedStream":
        return GroupedStream(self)

    def join(self, table: "Table", joiner: Callable | None = None, *, how: str = "inner",
             name: str | None = None) -> "Stream":
        """Stream–table join on the key: each record meets the table's current value
        for its key. ``joiner(value, table_value) -> value`` (per record); without one
        the result's value is a struct {value, table_value}. ``how``: "inner" drops
        records whose key the table lacks, "left" keeps them with a None table value."""
        if not isinstance(table, Table) or table.app is not self.app:
            raise TypeError("join() takes a Table of the same app (app.table(topic))")
        if how not in ("inner", "left"):
            raise ValueError(f"how must be 'inner' or 'left', got {how!r}")
        if joiner is not None:
            _callable(joiner)
        node = self.app._add("join", [self.node, table.node], name, False, joiner=joiner, how=how)
        return Stream(self.app, node)


class GroupedStream:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def window(self, windows: TimeWindows | SlidingWindows | SessionWindows) -> "WindowedStream":
        if not isinstance(windows, (TimeWindows, SlidingWindows, SessionWindows)):
            raise TypeError(f"window() takes TimeWindows, SlidingWindows or SessionWindows, got {windows!r}")
        return WindowedStream(self.stream, windows)

    def count(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, None, "count", name=name, emit=emit)

    def sum(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, None, "sum", name=name, emit=emit)

    def min(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, None, "min", name=name, emit=emit)

    def max(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, None, "max", name=name, emit=emit)

    def reduce(self, fn: Callable, *, name: str | None = None, emit: str = "update") -> "Table":
        """``fn(aggregate, value) -> aggregate`` per record; the first value starts it."""
        _callable(fn)
        return _aggregate(self.stream, None, "reduce", name=name, emit=emit, fn=fn)

    def aggregate(self, initializer: Callable[[], Any], fn: Callable, *, name: str | None = None,
                  emit: str = "update") -> "Table":
        """``fn(aggregate, value) -> aggregate`` per record from ``initializer()``.
        Aggregates must be msgpack-able (numbers, str, bytes, lists, dicts): they go to
        the changelog."""
        _callable(initializer)
        _callable(fn)
        return _aggregate(self.stream, None, "aggregate", name=name, emit=emit, fn=fn, initializer=initializer)


class WindowedStream(GroupedStream):
    def __init__(self, stream: Stream, windows: Any) -> None:
        super().__init__(stream)
        self.windows = windows

    def count(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, self.windows, "count", name=name, emit=emit)

    def sum(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, self.windows, "sum", name=name, emit=emit)

    def min(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, self.windows, "min", name=name, emit=emit)

    def max(self, *, name: str | None = None, emit: str = "update") -> "Table":
        return _aggregate(self.stream, self.windows, "max", name=name, emit=emit)

    def reduce(self, fn: Callable, *, name: str | None = None, emit: str = "update") -> "Table":
        _callable(fn)
        return _aggregate(self.stream, self.windows, "reduce", name=name, emit=emit, fn=fn)

    def aggregate(self, initializer: Callable[[], Any], fn: Callable, *, merger: Callable | None = None,
                  name: str | None = None, emit: str = "update") -> "Table":
        """As GroupedStream.aggregate; session windows also need ``merger(a, b)`` to
        merge the aggregates of two sessions a record joins."""
        _callable(initializer)
        _callable(fn)
        if isinstance(self.windows, SessionWindows):
            if merger is None:
                raise ValueError("aggregate() on session windows needs merger=(a, b) -> aggregate")
            _callable(merger)
        return _aggregate(self.stream, self.windows, "aggregate", name=name, emit=emit, fn=fn,
                          initializer=initializer, merger=merger)


class Table:
    """A keyed table: an aggregation's results, or a topic materialized by
    ``app.table``. ``to_stream()`` gives its updates as a stream (for windowed tables
    with columns ``window_start`` and ``window_end`` besides key and value)."""

    def __init__(self, app: StreamsApp, node: Node) -> None:
        self.app = app
        self.node = node

    def to_stream(self) -> Stream:
        return Stream(self.app, self.node)


def _aggregate(stream: Stream, windows: Any, how: str, *, name: str | None, emit: str, **options: Any) -> Table:
    if emit not in EMIT_MODES:
        raise ValueError(f"emit must be one of {', '.join(EMIT_MODES)}, got {emit!r}")
    if emit == "final" and windows is None:
        raise ValueError("emit='final' needs windows: an unwindowed table never closes")
    node = stream.app._add("aggregate", [stream.node], name, False, how=how, windows=windows, emit=emit, **options)
    return Table(stream.app, node)


def _callable(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"expected a function, got {fn!r}")
