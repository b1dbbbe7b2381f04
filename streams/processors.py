"""What each step does inside a task: processors on Arrow tables, and the state of
aggregations and tables.

A task builds one processor per node of its sub-topology and pushes each input batch
(a ``pyarrow.Table`` with columns key, value, timestamp) from its source processor
down the graph. Processors hold no records between batches; aggregations and tables
hold state:

* an aggregation keeps {(key, window start) → aggregate} (window start None when
  unwindowed). Each change is remembered until the task's next commit, when it goes to
  the changelog topic (partition = the task's partition) as key ``[key, window start]``
  and value ``aggregate``, or a tombstone for a window closed and evicted. Restoring a
  task replays its changelog partition;
* a table keeps {key → latest value}; its source topic is its changelog.

Emission: with ``emit="update"`` an aggregation emits, after each input batch, the new
aggregate of every (key, window) the batch changed — one row per changed group, not per
record; with ``emit="final"`` it emits each window once, when stream time passes its end
plus the grace period. Closed windows are evicted in both modes, which bounds state.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

# Imported here, not on first use: Table.group_by loads pyarrow.acero and pa.array(ndarray)
# loads numpy.ma, together about 0.15 s of CPU on a task's first batch otherwise.
import numpy.ma  # noqa: F401
import pyarrow as pa
import pyarrow.acero  # noqa: F401
import pyarrow.compute as pc

from rafka.streams import codec
from rafka.streams.dsl import Node
from rafka.streams.windows import TimeWindows

NO_TIME = np.iinfo(np.int64).min
OWN_TIME = object()  # Task.watermark_for: the aggregation keeps its own stream time


class Processor:
    def __init__(self, node: Node, task: Any) -> None:
        self.node = node
        self.task = task
        self.children: list[Processor] = []

    def process(self, table: pa.Table, sender: Node | None) -> None:
        self.emit(table)

    def emit(self, table: pa.Table) -> None:
        if table.num_rows:
            for child in self.children:
                child.process(table, self.node)

    def punctuate(self) -> None:
        """After each input batch (aggregations emit closed windows here)."""


class Source(Processor):
    feeds_table = False  # set by the task: a table's source does not move stream time

    def process(self, table: pa.Table, sender: Node | None) -> None:
        if not self.node.options.get("internal"):
            self._emit_data(table)
            return
        # A repartition topic holds the upstream tasks' data and watermark records
        # interleaved, and one poll may bring a long stretch of both. A mark covers only
        # the data before it: each run of data goes down the graph under the marks
        # received so far, and the marks after it count from then on. (Taking every
        # mark of the poll first made data that came before a mark late by it.)
        topic = self.node.options["topics"][0]
        for data, mark in self._split_at_watermarks(table):
            if data.num_rows:
                self.task.records += data.num_rows  # data records (watermark records are not counted)
                self._emit_data(data)
            if mark is not None:
                upstream, watermark_ms, *idle = msgpack.unpackb(mark)  # [p, ms] before idle marks existed
                self.task.upstream_watermark(topic, upstream, watermark_ms, bool(idle and idle[0]))

    def _emit_data(self, table: pa.Table) -> None:
        options = self.node.options
        if options.get("internal"):
            key, value = codec.from_internal(table.column("key")), codec.from_internal(table.column("value"))
        else:
            key = codec.decode(table.column("key"), options["key_format"], f"key of {options['topics']}")
            value = codec.decode(table.column("value"), options["value_format"], f"value of {options['topics']}")
        timestamps = table.column("timestamp")
        out = pa.table({"key": key, "value": value, "timestamp": timestamps})
        extractor = options.get("timestamp_extractor")
        if extractor is not None:
            out = out.set_column(2, "timestamp", pa.array(extractor(out), pa.int64()))
        if not options.get("internal") and not self.feeds_table and out.num_rows:
            self.task.stream_time_ms = max(self.task.stream_time_ms, pc.max(out.column("timestamp")).as_py())
        self.emit(out)

    @staticmethod
    def _split_at_watermarks(table: pa.Table) -> list[tuple[pa.Table, bytes | None]]:
        """The table cut at its watermark records (see Sink), in order: (the data
        before a mark, possibly empty; that mark's value), and last (the rest, None)."""
        is_mark = pc.fill_null(
            pc.equal(pc.binary_slice(table.column("key"), 0, 1), pa.scalar(codec.WATERMARK_TAG, pa.binary())), False)
        rows = np.flatnonzero(is_mark.to_numpy(zero_copy_only=False)).tolist()
        values = table.column("value").take(pa.array(rows, pa.int64())).to_pylist() if rows else []
        pieces, start = [], 0
        for row, value in zip(rows, values):
            pieces.append((table.slice(start, row - start), value))
            start = row + 1
        pieces.append((table.slice(start), None))
        return pieces


class MapBatches(Processor):
    def process(self, table: pa.Table, sender: Node | None) -> None:
        out = self.node.options["fn"](table)
        if isinstance(out, pa.RecordBatch):
            out = pa.Table.from_batches([out])
        if not isinstance(out, pa.Table) or not {"key", "value", "timestamp"} <= set(out.column_names):
            raise TypeError(f"map_batches step {self.node.name!r} must return a pyarrow Table with columns key, "
                            f"value and timestamp, got {type(out).__name__} "
                            f"{getattr(out, 'column_names', '')}")
        self.emit(out)


class PerRecord(Processor):
    """map, map_values, filter, flat_map, peek, key_by, foreach, branch: one Python call
    per record (the slow path)."""

    def process(self, table: pa.Table, sender: Node | None) -> None:
        kind, fn = self.node.kind, self.node.options.get("fn")
        keys, values = table.column("key").to_pylist(), table.column("value").to_pylist()
        if kind in ("peek", "foreach"):
            for key, value in zip(keys, values):
                fn(key, value)
            if kind == "peek":
                self.emit(table)
            return
        if kind in ("filter", "branch"):
            if kind == "filter":
                mask = [bool(fn(key, value)) for key, value in zip(keys, values)]
            else:
                predicates, index = self.node.options["predicates"], self.node.options["index"]
                mask = [_first_true(predicates, key, value) == index for key, value in zip(keys, values)]
            self.emit(table.filter(pa.array(mask, pa.bool_())))
            return
        timestamps = table.column("timestamp").to_pylist()
        out_keys, out_values, out_ts = [], [], []
        for key, value, timestamp in zip(keys, values, timestamps):
            if kind == "map":
                new_key, new_value = fn(key, value)
                out_keys.append(new_key), out_values.append(new_value), out_ts.append(timestamp)
            elif kind == "map_values":
                out_keys.append(key), out_values.append(fn(value)), out_ts.append(timestamp)
            elif kind == "key_by":
                out_keys.append(fn(key, value)), out_values.append(value), out_ts.append(timestamp)
            elif kind == "flat_map":
                for new_key, new_value in fn(key, value):
                    out_keys.append(new_key), out_values.append(new_value), out_ts.append(timestamp)
        self.emit(pa.table({"key": _array(out_keys), "value": _array(out_values),
                            "timestamp": pa.array(out_ts, pa.int64())}))


class Sink(Processor):
    sent_watermark_ms: int | None = None

    def process(self, table: pa.Table, sender: Node | None) -> None:
        internal = self.node.kind == "repartition_sink"
        encode = codec.to_internal if internal else codec.to_external
        columns = {"key": encode(table.column("key")), "value": encode(table.column("value")),
                   "timestamp": table.column("timestamp").cast(pa.int64())}
        if not internal and "window_start" in table.column_names:
            columns["headers"] = _window_headers(table)
        self.task.send(self.node.options["topic"], pa.table(columns))

    def send_watermark(self, watermark_ms: int, force: bool = False) -> None:
        """Tell every partition of a repartition topic how far this task's event time
        has come (a record with the watermark tag: data first, then the mark, in
        order), when it moved (or ``force``: after an idle mark)."""
        if watermark_ms == NO_TIME or (watermark_ms == self.sent_watermark_ms and not force):
            return
        self.sent_watermark_ms = watermark_ms
        self._send_mark(watermark_ms, idle=False)

    def send_idle(self) -> None:
        """Tell every partition of a repartition topic not to wait for this task (with
        its event time so far: when every upstream is idle the largest one counts)."""
        self._send_mark(self.sent_watermark_ms, idle=True)

    def _send_mark(self, watermark_ms: int | None, idle: bool) -> None:
        topic = self.node.options["topic"]
        mark = pa.table({"key": pa.array([codec.WATERMARK_TAG], pa.binary()),
                         "value": pa.array([msgpack.packb([self.task.partition, watermark_ms, idle])], pa.binary()),
                         "timestamp": pa.array([0 if watermark_ms is None else watermark_ms], pa.int64())})
        for partition in range(self.task.partition_count(topic)):
            self.task.send(topic, mark, partition=partition)


class TableStore(Processor):
    """``app.table(topic)``: the latest value per key."""

    def __init__(self, node: Node, task: Any) -> None:
        super().__init__(node, task)
        self.values: dict[Any, Any] = {}

    def process(self, table: pa.Table, sender: Node | None) -> None:
        for key, value in zip(table.column("key").to_pylist(), table.column("value").to_pylist()):
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value
        self.emit(table)


class Join(Processor):
    def process(self, table: pa.Table, sender: Node | None) -> None:
        stream_parent, table_parent = self.task.parents[self.node]
        if sender is table_parent:
            return  # table updates only change the store
        store = self.task.processors[table_parent].values
        joiner, how = self.node.options["joiner"], self.node.options["how"]
        keys = table.column("key").to_pylist()
        found = [store.get(key) for key in keys]
        keep = np.array([value is not None or how == "left" for value in found], dtype=bool)
        if not keep.all():
            table = table.filter(pa.array(keep))
            found = [value for value, kept in zip(found, keep) if kept]
        if joiner is None:
            joined = pa.StructArray.from_arrays([_array(table.column("value").to_pylist()), _array(found)],
                                                ["value", "table_value"])
        else:
            joined = _array([joiner(value, other) for value, other in zip(table.column("value").to_pylist(), found)])
        self.emit(table.set_column(1, "value", joined))


class Aggregate(Processor):
    """count/sum/min/max (vectorized) and reduce/aggregate (per record), unwindowed or
    on TimeWindows (see the module docstring; session and sliding windows are in
    record_windows.py)."""

    def __init__(self, node: Node, task: Any) -> None:
        super().__init__(node, task)
        options = node.options
        self.how: str = options["how"]
        self.windows: TimeWindows | None = options["windows"]
        self.final = options["emit"] == "final"
        self.state: dict[tuple[Any, int | None], Any] = {}
        self.changed: dict[tuple[Any, int | None], Any] = {}  # since the last commit; None = deleted
        # Groups whose last changelog entry is a value: only these need a tombstone when
        # their window closes (a window opened and closed between two commits never
        # reached the changelog, and most do when windows are short).
        self.in_changelog: set[tuple[Any, int | None]] = set()
        self.stream_time_ms = NO_TIME
        self.late_records = 0
        self.latest_ts: dict[tuple[Any, int | None], int] = {}
        # The earliest stream time at which some window in the state closes: punctuate
        # does nothing before stream time reaches it.
        self.next_close_ms = np.iinfo(np.int64).max
        # Time windows: window start -> the groups of that window in the state (a dict
        # used as an ordered set), so that closing windows costs what they hold, not a
        # scan of every group.
        self.window_groups: dict[int, dict] = {}

    # -- processing ----------------------------------------------------------------------

    def process(self, table: pa.Table, sender: Node | None) -> None:
        keys = table.column("key")
        timestamps = table.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        values = table.column("value")
        external = self.task.watermark_for(self.node)
        if self.windows is not None:
            if external is not OWN_TIME:
                # Fed by a repartition topic: stream time is the slowest upstream task's,
                # so records of a lagging upstream are not made late by a faster one.
                self.stream_time_ms = external
            rows, starts, late, new_time = self.windows.assign(timestamps, self.stream_time_ms,
                                                               advance=external is OWN_TIME)
            self.stream_time_ms = new_time
            self.late_records += late
            self.task.late_records += late
            if len(rows) != table.num_rows or (len(rows) and not np.array_equal(rows, np.arange(len(rows)))):
                index = pa.array(rows)
                keys, values, timestamps = keys.take(index), values.take(index), timestamps[rows]
            window_starts = pa.array(starts, pa.int64())
            if len(starts):
                self.next_close_ms = min(self.next_close_ms,
                                         int(starts.min()) + self.windows.size_ms + self.windows.grace_ms)
        else:
            if len(timestamps):
                self.stream_time_ms = max(self.stream_time_ms, int(timestamps.max()))
            window_starts = pa.nulls(len(timestamps), pa.int64())
        if len(timestamps) == 0:
            return
        if self.how in ("count", "sum", "min", "max"):
            touched = self._vectorized(keys, window_starts, values, timestamps)
        else:
            touched = self._per_record(keys, window_starts, values, timestamps)
        if not self.final:
            self._emit_groups(touched)

    def _vectorized(self, keys, window_starts, values, timestamps) -> list:
        how = self.how
        columns = {"k": keys, "w": window_starts, "t": pa.array(timestamps, pa.int64())}
        aggregations = [("t", "max")]
        if how == "count":
            aggregations.append(("k", "count", pc.CountOptions(mode="all")))
        else:
            columns["v"] = values
            aggregations.append(("v", how))
        grouped = pa.table(columns).group_by(["k", "w"], use_threads=False).aggregate(aggregations)
        partials = grouped.column("k_count" if how == "count" else f"v_{how}").to_pylist()
        groups = list(zip(grouped.column("k").to_pylist(), grouped.column("w").to_pylist()))
        newest_ts = grouped.column("t_max").to_pylist()
        state, changed, latest = self.state, self.changed, self.latest_ts
        combine = {"count": int.__add__, "sum": _add, "min": min, "max": max}[how]
        get = state.get
        created = []
        for group, newest, partial in zip(groups, newest_ts, partials):
            current = get(group)
            if current is None:
                state[group] = changed[group] = partial
                latest[group] = newest
                created.append(group)
            else:
                state[group] = changed[group] = combine(current, partial)
                if newest > latest[group]:
                    latest[group] = newest
        if self.windows is not None:
            self._index_new(created)
        return groups

    def _index_new(self, groups: list) -> None:
        """Add groups just created in the state to their windows' entries."""
        window_groups = self.window_groups
        for group in groups:
            members = window_groups.get(group[1])
            if members is None:
                members = window_groups[group[1]] = {}
            members[group] = None

    def _per_record(self, keys, window_starts, values, timestamps) -> list:
        fn = self.node.options["fn"]
        initializer = self.node.options.get("initializer")
        state, changed, latest = self.state, self.changed, self.latest_ts
        touched = {}
        for key, start, value, timestamp in zip(keys.to_pylist(), window_starts.to_pylist(), values.to_pylist(),
                                                timestamps.tolist()):
            group = (key, start)
            if group in state:
                aggregate = fn(state[group], value)
            else:
                if start is not None:
                    self._index_new([group])
                aggregate = value if self.how == "reduce" else fn(initializer(), value)
            state[group] = changed[group] = aggregate
            latest[group] = max(latest.get(group, timestamp), timestamp)
            touched[group] = None
        return list(touched)

    def punctuate(self) -> None:
        """Emit (final mode) and evict every window closed by stream time."""
        if self.windows is None:
            return
        external = self.task.watermark_for(self.node)
        if external is not OWN_TIME:
            self.stream_time_ms = external
        if self.stream_time_ms < self.next_close_ms:
            return
        windows, now, window_groups = self.windows, self.stream_time_ms, self.window_groups
        horizon = now - windows.size_ms - windows.grace_ms  # windows starting at or before it are closed
        closed = [group for start in sorted(start for start in window_groups if start <= horizon)
                  for group in window_groups.pop(start)]
        self.next_close_ms = (min(window_groups) + windows.size_ms + windows.grace_ms if window_groups
                              else np.iinfo(np.int64).max)
        if not closed:
            return
        if self.final:
            self._emit_groups(closed)
        state, latest = self.state, self.latest_ts
        for group in closed:
            del state[group]
            del latest[group]
        self.changed.update(dict.fromkeys(closed))

    def _emit_groups(self, groups: list) -> None:
        if not groups:
            return
        state = self.state
        keys = [group[0] for group in groups]
        values = [state[group] for group in groups]
        if self.windows is None:
            timestamps = [self.latest_ts[group] for group in groups]
            self.emit(pa.table({"key": _array(keys), "value": _array(values), "timestamp": pa.array(timestamps, pa.int64())}))
            return
        starts = np.fromiter((group[1] for group in groups), np.int64, len(groups))
        ends = starts + self.windows.size_ms
        timestamps = [self.latest_ts[group] for group in groups]
        self.emit(pa.table({"key": _array(keys), "value": _array(values),
                            "timestamp": pa.array(timestamps, pa.int64()),
                            "window_start": pa.array(starts), "window_end": pa.array(ends)}))

    # -- changelog -----------------------------------------------------------------------

    def changelog_entries(self) -> pa.Table | None:
        """The changes since the last call, as a table for the changelog topic."""
        if not self.changed:
            return None
        # One packer for the whole commit (msgpack.packb builds one per call, which cost
        # as much as the packing). A tuple packs to the same bytes as a list, so a group
        # (key, window start) is its own changelog key [key, window start].
        pack = msgpack.Packer(autoreset=True).pack
        latest, in_changelog = self.latest_ts, self.in_changelog
        deleted = [group for group, value in self.changed.items() if value is None]
        written = [group for group in deleted if group in in_changelog]
        in_changelog.difference_update(deleted)
        kept = [(group, value) for group, value in self.changed.items() if value is not None]
        in_changelog.update(group for group, _ in kept)
        self.changed = {}
        if not kept and not written:
            return None
        keys = list(map(pack, written))
        keys += [pack(group) for group, _ in kept]
        values = [None] * len(written)
        values += [pack((value, latest.get(group, 0))) for group, value in kept]
        return pa.table({"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())})

    def restore(self, table: pa.Table) -> None:
        for key, value in zip(table.column("key").to_pylist(), table.column("value").to_pylist()):
            group = tuple(msgpack.unpackb(key))
            if value is None:
                self.state.pop(group, None)
                members = self.window_groups.get(group[1])
                if members is not None:
                    members.pop(group, None)
                    if not members:
                        del self.window_groups[group[1]]
                self.latest_ts.pop(group, None)
                self.in_changelog.discard(group)
            else:
                aggregate, latest = msgpack.unpackb(value)
                if group not in self.state and group[1] is not None and self.windows is not None:
                    self._index_new([group])
                self.state[group] = aggregate
                self.latest_ts[group] = latest
                self.in_changelog.add(group)
                if group[1] is not None:
                    self.stream_time_ms = max(self.stream_time_ms, latest)
                    if self.windows is not None:
                        self.next_close_ms = min(self.next_close_ms,
                                                 group[1] + self.windows.size_ms + self.windows.grace_ms)


def build(node: Node, task: Any) -> Processor:
    kind = node.kind
    if kind == "source":
        return Source(node, task)
    if kind == "map_batches":
        return MapBatches(node, task)
    if kind in ("map", "map_values", "filter", "flat_map", "peek", "key_by", "foreach", "branch"):
        return PerRecord(node, task)
    if kind in ("sink", "repartition_sink"):
        return Sink(node, task)
    if kind == "merge":
        return Processor(node, task)
    if kind == "table":
        return TableStore(node, task)
    if kind == "join":
        return Join(node, task)
    if kind == "aggregate":
        from rafka.streams.record_windows import SessionAggregate, SlidingAggregate
        from rafka.streams.windows import SessionWindows, SlidingWindows

        windows = node.options["windows"]
        if isinstance(windows, SessionWindows):
            return SessionAggregate(node, task)
        if isinstance(windows, SlidingWindows):
            return SlidingAggregate(node, task)
        return Aggregate(node, task)
    raise ValueError(f"unknown step kind {kind!r}")


def _first_true(predicates, key, value) -> int:
    for index, predicate in enumerate(predicates):
        if predicate(key, value):
            return index
    return -1


def _add(a, b):
    return a + b


def _array(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed types: keep them as msgpack-able Python objects in a binary column.
        return pa.array([None if v is None else msgpack.packb(v) for v in values], pa.binary())


def _window_headers(table: pa.Table) -> pa.Array:
    """Per row the headers window_start and window_end (decimal text), for sinks."""
    count = table.num_rows
    starts = table.column("window_start").cast(pa.string()).cast(pa.binary()).combine_chunks()
    ends = table.column("window_end").cast(pa.string()).cast(pa.binary()).combine_chunks()
    names = pa.array(["window_start", "window_end"] * count, pa.string())
    interleaved = pc.take(pa.concat_arrays([starts, ends]),
                          pa.array(np.column_stack([np.arange(count), np.arange(count) + count]).ravel()))
    entries = pa.StructArray.from_arrays([names, interleaved], ["key", "value"])
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * count + 1, 2, dtype=np.int32)), entries)
