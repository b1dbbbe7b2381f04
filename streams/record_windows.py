"""Aggregations on session and sliding windows: windows whose bounds depend on the
records themselves, evaluated per key and per record (the slow path).

Both keep, per key, the windows' aggregates in the task; every change goes to the
changelog at the next commit like the time-window aggregations of processors.py
(key ``[key, window start]``, value ``[aggregate, window end, newest timestamp]``).

**Session windows** (``SessionWindows(gap_ms, grace_ms)``): a record at t joins every
session of its key that it comes within ``gap_ms`` of (start - gap <= t <= end + gap);
they merge into one session [min start, max end]. Merging aggregates: count and sum
add, min/max take the extreme, ``reduce`` applies its function to the two aggregates,
``aggregate`` needs ``merger(a, b)``. A record whose merged session is already closed
(end + gap + grace <= stream time) is late. With ``emit="update"`` the new session is
emitted and every session merged into it is emitted with a None value (a tombstone),
as Kafka Streams does.

**Sliding windows** (``SlidingWindows(size_ms, grace_ms)``, Kafka's semantics): the
windows of a key are [t - size, t] for each of its records t, and [t + 1, t + 1 + size]
for each record t followed by another within ``size_ms``: every distinct set of records
no more than ``size_ms`` apart gets one window. A record at t is late once its own
window is closed (t + grace < stream time). Windows containing a new record are
recomputed from the key's records still inside the retention (stream time - size -
grace).
"""

from __future__ import annotations

import bisect
from typing import Any

import pyarrow as pa

from rafka.streams.processors import OWN_TIME, Aggregate, _array
from rafka.streams.windows import SessionWindows, SlidingWindows


def _combine(how: str, node_options: dict):
    if how in ("count", "sum"):
        return lambda a, b: a + b
    if how == "min":
        return min
    if how == "max":
        return max
    if how == "reduce":
        return node_options["fn"]
    merger = node_options.get("merger")
    if merger is None:
        raise ValueError("aggregate() on session windows needs merger=(a, b) -> aggregate to merge sessions")
    return merger


class _RecordWindowAggregate(Aggregate):
    """Shared parts: per-record loop, emission with explicit window ends, changelog."""

    def __init__(self, node, task) -> None:
        super().__init__(node, task)
        self.ends: dict[tuple[Any, int], int] = {}  # (key, start) -> end
        self.tombstones: list[tuple[Any, int, int]] = []  # (key, start, end) merged away, to emit

    def _initial(self, value):
        how = self.how
        if how == "count":
            return 1
        if how in ("sum", "min", "max", "reduce"):
            return value
        return self.node.options["fn"](self.node.options["initializer"](), value)

    def _add(self, aggregate, value):
        how = self.how
        if how == "count":
            return aggregate + 1
        if how == "sum":
            return aggregate + value
        if how == "min":
            return min(aggregate, value)
        if how == "max":
            return max(aggregate, value)
        return self.node.options["fn"](aggregate, value)

    def process(self, table: pa.Table, sender) -> None:
        touched: dict = {}
        # Behind a repartition topic stream time is the upstream watermark (task.Task),
        # not the newest record seen, so a lagging upstream's records are not made late.
        external = self.task.watermark_for(self.node)
        own_time = external is OWN_TIME
        if not own_time:
            self.stream_time_ms = external
        for key, value, timestamp in zip(table.column("key").to_pylist(), table.column("value").to_pylist(),
                                         table.column("timestamp").to_pylist()):
            if own_time:
                self.stream_time_ms = max(self.stream_time_ms, timestamp)
            if self._late(key, timestamp):
                self.late_records += 1
                self.task.late_records += 1
                continue
            for group in self._add_record(key, value, timestamp):
                touched[group] = None
        if not self.final:
            self._emit_groups([g for g in touched if g in self.state])

    def punctuate(self) -> None:
        external = self.task.watermark_for(self.node)
        if external is not OWN_TIME:
            self.stream_time_ms = external
        closed = [group for group in self.state if self._closed(group)]
        if not closed:
            return
        if self.final:
            self._emit_groups(closed)
        for group in closed:
            self._forget(group)

    def _forget(self, group) -> None:
        del self.state[group]
        self.ends.pop(group, None)
        self.latest_ts.pop(group, None)
        self.changed[group] = None

    def _emit_groups(self, groups: list) -> None:
        rows = [] if self.final else [(key, None, end, start, end) for key, start, end in self.tombstones]
        rows += [(g[0], self.state[g], self.latest_ts[g], g[1], self.ends[g]) for g in groups]
        self.tombstones = []
        if not rows:
            return
        keys, values, timestamps, starts, ends = zip(*rows)
        self.emit(pa.table({"key": _array(list(keys)), "value": _array(list(values)),
                            "timestamp": pa.array(timestamps, pa.int64()),
                            "window_start": pa.array(starts, pa.int64()), "window_end": pa.array(ends, pa.int64())}))

    def changelog_entries(self) -> pa.Table | None:
        import msgpack

        if not self.changed:
            return None
        keys = [msgpack.packb([g[0], g[1]]) for g in self.changed]
        values = [None if v is None else msgpack.packb([v, self.ends[g], self.latest_ts[g]])
                  for g, v in self.changed.items()]
        self.changed = {}
        return pa.table({"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())})

    def restore(self, table: pa.Table) -> None:
        import msgpack

        for key, value in zip(table.column("key").to_pylist(), table.column("value").to_pylist()):
            group = tuple(msgpack.unpackb(key))
            if value is None:
                self.state.pop(group, None)
                self.ends.pop(group, None)
                self.latest_ts.pop(group, None)
            else:
                aggregate, end, latest = msgpack.unpackb(value)
                self.state[group], self.ends[group], self.latest_ts[group] = aggregate, end, latest
                self.stream_time_ms = max(self.stream_time_ms, latest)
        self._restored()

    def _restored(self) -> None:
        pass


class SessionAggregate(_RecordWindowAggregate):
    def __init__(self, node, task) -> None:
        super().__init__(node, task)
        self.windows: SessionWindows = node.options["windows"]
        self.merge = _combine(self.how, node.options)
        self.sessions: dict[Any, list[int]] = {}  # key -> sorted session starts

    def _overlapping(self, key, timestamp: int) -> list[int]:
        gap = self.windows.gap_ms
        return [start for start in self.sessions.get(key, ())
                if start - gap <= timestamp <= self.ends[(key, start)] + gap]

    def _late(self, key, timestamp: int) -> bool:
        end = max([timestamp] + [self.ends[(key, s)] for s in self._overlapping(key, timestamp)])
        return self.windows.closed(end, self.stream_time_ms)

    def _add_record(self, key, value, timestamp: int) -> list:
        merging = self._overlapping(key, timestamp)
        aggregate = self._initial(value)
        start, end, latest = timestamp, timestamp, timestamp
        for old_start in merging:
            group = (key, old_start)
            aggregate = self.merge(self.state[group], aggregate)
            start, end = min(start, old_start), max(end, self.ends[group])
            latest = max(latest, self.latest_ts[group])
            self.tombstones.append((key, old_start, self.ends[group]))
            self._forget(group)
        self.tombstones = [t for t in self.tombstones if not (t[0] == key and t[1] == start and t[2] == end)]
        group = (key, start)
        self.state[group] = self.changed[group] = aggregate
        self.ends[group], self.latest_ts[group] = end, latest
        bisect.insort(self.sessions.setdefault(key, []), start)
        return [group]

    def _closed(self, group) -> bool:
        return self.windows.closed(self.ends[group], self.stream_time_ms)

    def _forget(self, group) -> None:
        super()._forget(group)
        starts = self.sessions.get(group[0])
        if starts and group[1] in starts:
            starts.remove(group[1])

    def _restored(self) -> None:
        self.sessions = {}
        for key, start in self.state:
            bisect.insort(self.sessions.setdefault(key, []), start)


class SlidingAggregate(_RecordWindowAggregate):
    def __init__(self, node, task) -> None:
        super().__init__(node, task)
        self.windows: SlidingWindows = node.options["windows"]
        self.records: dict[Any, list[tuple[int, Any]]] = {}  # key -> [(timestamp, value)] sorted
        self.changed_keys: set = set()
        if self.how == "aggregate" and "initializer" not in node.options:
            raise ValueError("aggregate() needs an initializer")

    def _late(self, key, timestamp: int) -> bool:
        return timestamp + self.windows.grace_ms < self.stream_time_ms

    def _aggregate_range(self, key, start: int, end: int):
        aggregate = None
        for timestamp, value in self.records.get(key, ()):
            if start <= timestamp <= end:
                aggregate = self._initial(value) if aggregate is None else self._add(aggregate, value)
        return aggregate

    def _add_record(self, key, value, timestamp: int) -> list:
        size = self.windows.size_ms
        records = self.records.setdefault(key, [])
        bisect.insort(records, (timestamp, value), key=lambda item: item[0])
        self.changed_keys.add(key)
        horizon = self.stream_time_ms - size - self.windows.grace_ms - 1
        while records and records[0][0] < horizon:
            records.pop(0)
        times = [t for t, _ in records]
        wanted = {t - size for t in times}  # left windows [t - size, t]
        for index, t in enumerate(times):  # right windows [t + 1, t + 1 + size] when a later record is close
            if any(t < u <= t + size for u in times[index + 1:]):
                wanted.add(t + 1)
        # The windows holding the new record, and its own right window (which starts
        # just after it, so does not hold it, but is new if a later record is close).
        affected = [start for start in wanted if start <= timestamp <= start + size or start == timestamp + 1]
        touched = []
        for start in affected:
            group = (key, start)
            aggregate = self._aggregate_range(key, start, start + size)
            if aggregate is None:
                continue
            newest = max(t for t in times if start <= t <= start + size)
            self.state[group] = self.changed[group] = aggregate
            self.ends[group], self.latest_ts[group] = start + size, newest
            touched.append(group)
        return touched

    def _closed(self, group) -> bool:
        return self.windows.closed(group[1], self.stream_time_ms)

    def changelog_entries(self) -> pa.Table | None:
        """The windows' changes, plus each touched key's records (a sliding window is
        recomputed from them, so a restored task needs them too)."""
        import msgpack

        windows = super().changelog_entries()
        if not self.changed_keys:
            return windows
        keys = [msgpack.packb([_RECORDS, key]) for key in self.changed_keys]
        values = [msgpack.packb(self.records.get(key, [])) for key in self.changed_keys]
        self.changed_keys = set()
        records = pa.table({"key": pa.array(keys, pa.binary()), "value": pa.array(values, pa.binary())})
        return records if windows is None else pa.concat_tables([windows, records])

    def restore(self, table: pa.Table) -> None:
        import msgpack

        mask = [msgpack.unpackb(key)[0] == _RECORDS for key in table.column("key").to_pylist()]
        for key, value in zip(table.filter(pa.array(mask)).column("key").to_pylist(),
                              table.filter(pa.array(mask)).column("value").to_pylist()):
            self.records[msgpack.unpackb(key)[1]] = [tuple(item) for item in msgpack.unpackb(value)]
        super().restore(table.filter(pa.array([not m for m in mask])))


_RECORDS = "__records__"  # changelog key prefix of a sliding-window key's records
