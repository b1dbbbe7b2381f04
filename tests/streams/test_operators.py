"""Every operator and window kind through TopologyTestDriver (the same processors a
task actor runs), against plain-Python references on the same input, including
out-of-order and late events."""

from collections import Counter, defaultdict

import msgpack
import pyarrow.compute as pc
import pytest

from rafka.streams import StreamsApp, TimeWindows
from rafka.streams.testing import TopologyTestDriver
from rafka.streams.topology import compile_app

EVENTS = [  # (key, value, timestamp): out of order within the grace period, and two late
    ("a", "1", 1_000), ("b", "2", 1_500), ("a", "3", 12_000), ("a", "4", 9_000), ("c", "5", 19_999),
    ("b", "6", 20_000), ("a", "7", 2_000), ("c", "8", 25_000), ("a", "9", 44_000), ("b", "10", 13_000),
]


def app_with(build, **options):
    app = StreamsApp("test-app", **options)
    build(app)
    return app, TopologyTestDriver(app)


def test_stateless_operators_match_python():
    def build(app):
        source = app.source("in", key_format="utf8", value_format="int")
        source.filter(lambda k, v: v % 2 == 1).map_values(lambda v: v * 10).to("odd-times-ten")
        source.map(lambda k, v: (k.upper(), str(v))).to("upper")
        source.flat_map(lambda k, v: [(k, v)] * (v % 3)).to("repeated")
        small, big = source.branch(lambda k, v: v < 5, lambda k, v: True)
        small.merge(big.map_values(lambda v: -v)).to("merged")
        seen.clear()
        source.peek(lambda k, v: seen.append(v)).foreach(lambda k, v: seen.append(-v))

    seen = []
    app, driver = app_with(build)
    driver.pipe("in", EVENTS)
    values = [(k, int(v), t) for k, v, t in EVENTS]
    out = lambda topic: [(k, v) for k, v, _, _ in driver.read_output(topic, "utf8", "utf8")]  # noqa: E731
    assert out("odd-times-ten") == [(k, str(v * 10)) for k, v, _ in values if v % 2 == 1]
    assert out("upper") == [(k.upper(), str(v)) for k, v, _ in values]
    assert out("repeated") == [(k, str(v)) for k, v, _ in values for _ in range(v % 3)]
    assert sorted(out("merged")) == sorted([(k, str(v)) for k, v, _ in values if v < 5] +
                                           [(k, str(-v)) for k, v, _ in values if v >= 5])
    assert sorted(seen) == sorted([v for _, v, _ in values] + [-v for _, v, _ in values])


def test_map_batches_is_the_fast_path_and_checks_its_output():
    def build(app):
        source = app.source("in", value_format="utf8")
        source.map_batches(lambda t: t.set_column(1, "value", pc.utf8_upper(t.column("value")))).to("shout")
        source.map_batches(lambda t: t.select(["key"]), name="broken").to("never")

    app, driver = app_with(build)
    with pytest.raises(TypeError, match="'broken' must return a pyarrow Table with columns key, value and timestamp"):
        driver.pipe("in", [("k", "hi", 1)])
    app, driver = app_with(lambda a: a.source("in", value_format="utf8").map_batches(
        lambda t: t.set_column(1, "value", pc.utf8_upper(t.column("value")))).to("shout"))
    driver.pipe("in", [("k", "hi", 1), ("j", "yo", 2)])
    assert [(k, v) for k, v, _, _ in driver.read_output("shout", "utf8", "utf8")] == [("k", "HI"), ("j", "YO")]


def windowed_reference(events, size, advance, grace, how, final):
    """Per (key, window start) the aggregate of the records that were not late when
    they arrived; with final, only windows closed by the end of input."""
    state, stream_time, late = defaultdict(list), -1, 0
    for key, value, ts in events:
        stream_time = max(stream_time, ts)
        starts = [s for s in range(ts - ts % advance, ts - size, -advance) if s + size > ts]
        open_ = [s for s in starts if s + size + grace > stream_time]
        late += not open_
        for start in open_:
            state[(key, start)].append(int(value))
    combine = {"count": len, "sum": sum, "min": min, "max": max}[how]
    result = {group: combine(values) for group, values in state.items()}
    if final:
        result = {g: v for g, v in result.items() if g[1] + size + grace <= stream_time}
    return result, late


@pytest.mark.parametrize("how", ["count", "sum", "min", "max"])
@pytest.mark.parametrize("size,advance", [(10_000, 10_000), (10_000, 5_000)])
@pytest.mark.parametrize("emit", ["update", "final"])
def test_windowed_aggregations_match_python(how, size, advance, emit):
    grace = 3_000

    def build(app):
        grouped = app.source("in", key_format="utf8", value_format="int").group_by_key()
        table = getattr(grouped.window(TimeWindows.hopping(size, advance, grace)), how)(name="agg", emit=emit)
        table.to_stream().to("out")

    app, driver = app_with(build)
    for event in EVENTS:  # one record per batch: emission and lateness per record
        driver.pipe("in", [event])
    expected, late = windowed_reference(EVENTS, size, advance, grace, how, emit == "final")
    latest = {}
    for key, value, _, headers in driver.read_output("out", "utf8", "int"):
        latest[(key, int(headers["window_start"]))] = value
        assert int(headers["window_end"]) == int(headers["window_start"]) + size
    assert latest == expected
    assert driver.late_records == late
    if emit == "final":  # each window exactly once
        assert len(driver.read_output("out")) == len(expected)


def test_reduce_and_aggregate_per_record_unwindowed_with_repartition():
    def build(app):
        source = app.source("in", key_format="utf8", value_format="int")
        by_parity = source.key_by(lambda k, v: "even" if v % 2 == 0 else "odd", name="parity")
        by_parity.group_by_key().reduce(lambda a, v: a + v, name="total").to_stream().to("totals")
        by_parity.group_by_key().aggregate(list, lambda agg, v: agg + [v], name="all").to_stream().to("lists")

    app, driver = app_with(build)
    topology = compile_app(app)
    assert sorted(topology.repartition_topics) == ["test-app-all-repartition", "test-app-total-repartition"]
    assert len(topology.subtopologies) == 3
    driver.pipe("in", EVENTS)
    totals = {k: v for k, v, _, _ in driver.read_output("totals", "utf8", "int")}
    values = [int(v) for _, v, _ in EVENTS]
    assert totals == {"even": sum(v for v in values if v % 2 == 0), "odd": sum(v for v in values if v % 2)}
    lists = {k: v for k, v, _, _ in driver.read_output("lists", "utf8", "json")}
    assert lists == {"even": [v for v in values if v % 2 == 0], "odd": [v for v in values if v % 2]}


def test_state_survives_a_task_restart_through_the_changelog():
    def build(app):
        app.source("in", key_format="utf8").group_by_key().count(name="counts").to_stream().to("out")

    app, driver = app_with(build)
    driver.pipe("in", EVENTS[:5])
    driver.restart()
    driver.pipe("in", EVENTS[5:])
    final = {k: v for k, v, _, _ in driver.read_output("out", "utf8", "int")}
    assert final == dict(Counter(k for k, _, _ in EVENTS))


def test_a_window_closed_between_commits_leaves_no_changelog_entry_and_state_restores():
    def build(app):
        windowed = app.source("in", key_format="utf8").group_by_key().window(TimeWindows.tumbling(10_000))
        windowed.count(name="counts", emit="final").to_stream().to("out")

    app, driver = app_with(build)
    driver.pipe("in", [("a", "1", 1_000), ("b", "1", 2_000)])
    driver.commit()  # a@0 and b@0 reach the changelog
    driver.pipe("in", [("a", "1", 11_000)])  # closes a@0 and b@0 (tombstones), opens a@10000
    driver.pipe("in", [("c", "1", 21_000)])  # closes a@10000 before any commit saw it, opens c@20000
    driver.commit()
    entries = [(tuple(msgpack.unpackb(key)), None if value is None else msgpack.unpackb(value)[0])
               for table in driver.changelogs[("test-app-counts-changelog", 0)]
               for key, value in zip(table.column("key").to_pylist(), table.column("value").to_pylist())]
    assert sorted(entries, key=repr) == sorted([(("a", 0), 1), (("b", 0), 1), (("a", 0), None), (("b", 0), None),
                                                (("c", 20_000), 1)], key=repr)
    driver.restart()
    assert driver.tasks[0].aggregates[0].state == {("c", 20_000): 1}
    driver.pipe("in", [("c", "1", 22_000), ("d", "1", 35_000)])
    counts = {(key, int(headers["window_start"])): value for key, value, _, headers in driver.read_output("out", "utf8", "int")}
    assert counts == {("a", 0): 1, ("b", 0): 1, ("a", 10_000): 1, ("c", 20_000): 2}


def test_stream_table_join_inner_and_left():
    def build(app):
        users = app.table("users", key_format="utf8", value_format="utf8")
        clicks = app.source("clicks", key_format="utf8", value_format="utf8")
        clicks.join(users, lambda click, user: f"{click}@{user}").to("inner")
        clicks.join(users, how="left", name="left").map_values(lambda v: f"{v['value']}@{v['table_value']}").to("left")

    app, driver = app_with(build)
    driver.pipe("users", [("u1", "alice", 1), ("u2", "bob", 1)])
    driver.pipe("clicks", [("u1", "home", 2), ("u3", "cart", 3), ("u2", "shop", 4)])
    driver.pipe("users", [("u1", None, 5)])  # u1 deleted
    driver.pipe("clicks", [("u1", "exit", 6)])
    inner = [(k, v) for k, v, _, _ in driver.read_output("inner", "utf8", "utf8")]
    assert inner == [("u1", "home@alice"), ("u2", "shop@bob")]
    left = [(k, v) for k, v, _, _ in driver.read_output("left", "utf8", "utf8")]
    assert left == [("u1", "home@alice"), ("u3", "cart@None"), ("u2", "shop@bob"), ("u1", "exit@None")]


def test_dsl_errors_name_the_bad_value():
    app = StreamsApp("errors")
    source = app.source("in")
    with pytest.raises(ValueError, match="'xml'"):
        app.source("in", value_format="xml")
    with pytest.raises(ValueError, match="used twice"):
        source.map_values(str, name="same")
        source.map_values(str, name="same")
    with pytest.raises(ValueError, match="emit='final' needs windows"):
        source.group_by_key().count(emit="final")
    with pytest.raises(TypeError, match="expected a function"):
        source.map(42)
    with pytest.raises(ValueError, match="no source"):
        compile_app(StreamsApp("empty"))
    with pytest.raises(ValueError, match="invalid topic name"):
        StreamsApp("bad id")


def test_windows_behind_a_repartition_follow_the_upstream_watermark():
    def build(app):
        source = app.source("in", key_format="utf8", value_format="int")
        source.key_by(lambda k, v: k * 2, name="rekey").group_by_key() \
            .window(TimeWindows.tumbling(10_000, 3_000)).count(name="agg", emit="final").to_stream().to("out")

    app, driver = app_with(build)
    for event in EVENTS:
        driver.pipe("in", [event])
    expected, late = windowed_reference(EVENTS, 10_000, 10_000, 3_000, "count", True)
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert got == {(k * 2, start): count for (k, start), count in expected.items()}
    assert driver.late_records == late


def rekeyed_window_counts(app):
    source = app.source("in", key_format="utf8", value_format="int")
    source.key_by(lambda k, v: k * 2, name="rekey").group_by_key() \
        .window(TimeWindows.tumbling(10_000, 3_000)).count(name="agg", emit="final").to_stream().to("out")


def test_an_empty_upstream_partition_does_not_hold_windows_open():
    app = StreamsApp("test-app")
    rekeyed_window_counts(app)
    driver = TopologyTestDriver(app, partitions=2)
    driver.commit()  # both upstream tasks have read all of their (empty) input: idle
    for event in EVENTS:  # all to partition 0; partition 1 stays empty
        driver.pipe("in", [event], partition=0)
    expected, late = windowed_reference(EVENTS, 10_000, 10_000, 3_000, "count", True)
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert got == {(k * 2, start): count for (k, start), count in expected.items()}
    assert len(driver.read_output("out")) == len(expected)
    assert driver.late_records == late


def test_a_backlog_read_in_one_poll_behind_a_repartition_makes_no_record_late():
    """A lagging downstream task reads its upstream tasks' data and watermark records
    in one batch: a mark counts only for the data after it, so none of the data that
    came before it (many windows' worth) is late."""
    app = StreamsApp("test-app")
    rekeyed_window_counts(app)
    driver = TopologyTestDriver(app, partitions=2, hold_repartitions=True)
    events = {p: [(f"k{(i * 7 + p) % 5}", "1", 1_000 + i * 500 + p) for i in range(200)] for p in (0, 1)}
    for p in (0, 1):  # 100 s of events per partition in two polls each: marks after each
        driver.pipe("in", events[p][:100], partition=p)
        driver.pipe("in", events[p][100:], partition=p)
    driver.deliver_held()
    driver.commit()  # every upstream has read all of its input: idle marks close what can close
    driver.deliver_held()
    assert driver.late_records == 0
    newest_ms = max(ts for p in (0, 1) for _, _, ts in events[p])
    expected = Counter((k * 2, ts - ts % 10_000) for p in (0, 1) for k, _, ts in events[p])
    closed = {group: count for group, count in expected.items() if group[1] + 10_000 + 3_000 <= newest_ms}
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert closed and got == closed


def pipe_beside_a_lagging_partition(driver, events, lagging):
    """``events`` one by one into partition 0, between the two records of ``lagging``
    into partition 1: the second far behind partition 0, yet not late."""
    driver.pipe("in", lagging[:1], partition=1)
    for event in events:
        driver.pipe("in", [event], partition=0)
    driver.pipe("in", lagging[1:], partition=1)


def test_a_lagging_upstream_partition_holds_windows_open_until_it_is_idle():
    app = StreamsApp("test-app")
    rekeyed_window_counts(app)
    driver = TopologyTestDriver(app, partitions=2)
    lagging = [("d", "1", 1_000), ("d", "2", 2_000)]
    pipe_beside_a_lagging_partition(driver, EVENTS, lagging)
    assert driver.read_output("out") == []  # the watermark is partition 1's: 2 s
    assert driver.late_records == 0
    driver.commit()  # both had input since the last commit: not idle yet
    assert driver.read_output("out") == []
    driver.commit()  # now both are idle: the watermark is the largest, 44 s
    everything = Counter((k * 2, ts - ts % 10_000) for k, _, ts in EVENTS + lagging)
    closed = {group: count for group, count in everything.items() if group[1] + 10_000 + 3_000 <= 44_000}
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert got == closed
    assert len(driver.read_output("out")) == len(closed)
    assert driver.late_records == 0


def test_a_restarted_task_behind_a_repartition_restores_the_upstream_marks():
    app = StreamsApp("test-app")
    rekeyed_window_counts(app)
    driver = TopologyTestDriver(app, partitions=2)
    driver.commit()  # partition 1 stays empty: idle, and it never says so again
    for event in EVENTS[:5]:
        driver.pipe("in", [event], partition=0)
    driver.restart()  # the downstream tasks come back with partition 1's idle mark
    for event in EVENTS[5:]:
        driver.pipe("in", [event], partition=0)
    expected, late = windowed_reference(EVENTS, 10_000, 10_000, 3_000, "count", True)
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert got == {(k * 2, start): count for (k, start), count in expected.items()}
    assert driver.late_records == late


SESSION_EVENTS = [  # (key, value, ts): sessions that merge, one out-of-order bridge, late ones
    ("a", "1", 1_000), ("a", "2", 3_000), ("b", "3", 3_500), ("a", "4", 9_000), ("a", "5", 6_000),
    ("b", "6", 20_000), ("a", "7", 2_500), ("a", "8", 30_000), ("b", "9", 4_000), ("a", "10", 27_000),
    ("b", "11", 45_000), ("a", "12", 33_000),
]


def session_reference(events, gap, grace):
    """(late records, sessions closed by the end of input as (key, [start, end, values]),
    sessions still open at the end in the same form)."""
    sessions, stream_time, late, closed = defaultdict(list), -1, 0, []  # key -> [[start, end, values]]
    for key, value, ts in events:
        stream_time = max(stream_time, ts)
        near = [s for s in sessions[key] if s[0] - gap <= ts <= s[1] + gap]
        end = max([ts] + [s[1] for s in near])
        if end + gap + grace <= stream_time:
            late += 1
            continue
        merged = [min([ts] + [s[0] for s in near]), end, [int(value)] + [v for s in near for v in s[2]]]
        sessions[key] = [s for s in sessions[key] if s not in near] + [merged]
        for k in sessions:  # closed sessions leave the store (they can no longer merge)
            for s in [s for s in sessions[k] if s[1] + gap + grace <= stream_time]:
                sessions[k].remove(s)
                closed.append((k, s))
    return late, closed, [(k, s) for k, open_ in sessions.items() for s in open_]


@pytest.mark.parametrize("emit", ["update", "final"])
def test_session_windows_match_python(emit):
    from rafka.streams import SessionWindows

    gap, grace = 3_000, 2_000

    def build(app):
        app.source("in", key_format="utf8", value_format="int").group_by_key() \
            .window(SessionWindows(gap, grace)).sum(name="sessions", emit=emit).to_stream().to("out")

    app, driver = app_with(build)
    for event in SESSION_EVENTS:
        driver.pipe("in", [event])
    late, closed, still_open = session_reference(SESSION_EVENTS, gap, grace)
    state = {}
    for key, value, _, headers in driver.read_output("out", "utf8", "int"):
        group = (key, int(headers["window_start"]), int(headers["window_end"]))
        if value is None:
            state.pop(group, None)
        else:
            state[group] = value
    expected_closed = {(k, s[0], s[1]): sum(s[2]) for k, s in closed}
    assert expected_closed and still_open  # the input closes some sessions and leaves others open
    if emit == "final":
        assert state == expected_closed
        assert len(driver.read_output("out")) == len(expected_closed)
    else:
        # Every session ever formed was emitted, and every one merged away retracted: what
        # remains is exactly the sessions closed and those still open.
        assert state == {**expected_closed, **{(k, s[0], s[1]): sum(s[2]) for k, s in still_open}}
    assert driver.late_records == late


def test_session_windows_behind_a_repartition_follow_the_upstream_watermark():
    from rafka.streams import SessionWindows

    gap, grace = 3_000, 2_000

    def build(app):
        app.source("in", key_format="utf8", value_format="int").key_by(lambda k, v: k * 2, name="rekey") \
            .group_by_key().window(SessionWindows(gap, grace)).sum(name="sessions", emit="final") \
            .to_stream().to("out")

    app, _ = app_with(build)
    driver = TopologyTestDriver(app, partitions=2)
    lagging = [("d", "1", 1_000), ("d", "2", 2_500)]
    pipe_beside_a_lagging_partition(driver, SESSION_EVENTS, lagging)
    assert driver.read_output("out") == [] and driver.late_records == 0
    driver.commit()
    driver.commit()  # both upstream tasks idle: the watermark is the newest event, 45 s
    events = SESSION_EVENTS + lagging
    _, _, sessions = session_reference(events, gap, 10**9)  # nothing late: every session, open
    newest = max(ts for _, _, ts in events)
    expected = {(k * 2, s[0], s[1]): sum(s[2]) for k, s in sessions if s[1] + gap + grace <= newest}
    got = {(k, int(h["window_start"]), int(h["window_end"])): v
           for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert expected and got == expected
    assert len(driver.read_output("out")) == len(expected)


def sliding_reference(events, size, grace):
    kept, stream_time, late = defaultdict(list), -1, 0
    for key, value, ts in events:
        stream_time = max(stream_time, ts)
        if ts + grace < stream_time:
            late += 1
            continue
        kept[key].append((ts, int(value)))
    windows = {}
    for key, records in kept.items():
        times = sorted(t for t, _ in records)
        starts = {t - size for t in times} | {t + 1 for t in times if any(t < u <= t + size for u in times)}
        for start in starts:
            inside = [v for t, v in records if start <= t <= start + size]
            if inside:
                windows[(key, start)] = sum(inside)
    return windows, late


def test_sliding_windows_match_python():
    from rafka.streams import SlidingWindows

    size, grace = 5_000, 4_000

    def build(app):
        app.source("in", key_format="utf8", value_format="int").group_by_key() \
            .window(SlidingWindows(size, grace)).sum(name="sliding").to_stream().to("out")

    app, driver = app_with(build)
    for event in EVENTS:
        driver.pipe("in", [event])
    latest = {}
    for key, value, _, headers in driver.read_output("out", "utf8", "int"):
        latest[(key, int(headers["window_start"]))] = value
    expected, late = sliding_reference(EVENTS, size, grace)
    assert latest == expected
    assert driver.late_records == late


def test_sliding_and_session_state_survive_a_restart():
    from rafka.streams import SessionWindows, SlidingWindows

    def build(app):
        source = app.source("in", key_format="utf8", value_format="int")
        source.group_by_key().window(SlidingWindows(5_000, 60_000)).sum(name="sliding").to_stream().to("sliding")
        source.group_by_key().window(SessionWindows(3_000, 60_000)).count(name="session").to_stream().to("session")

    app, driver = app_with(build)
    for event in EVENTS[:5]:
        driver.pipe("in", [event])
    driver.restart()
    for event in EVENTS[5:]:
        driver.pipe("in", [event])
    latest = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("sliding", "utf8", "int")}
    assert latest == sliding_reference(EVENTS, 5_000, 60_000)[0]
    sessions = {}
    for key, value, _, headers in driver.read_output("session", "utf8", "int"):
        group = (key, int(headers["window_start"]), int(headers["window_end"]))
        if value is None:
            sessions.pop(group, None)
        else:
            sessions[group] = value
    late, closed, still_open = session_reference(EVENTS, 3_000, 60_000)
    assert late == 0 and not closed  # the grace keeps every session open
    assert sessions == {(k, s[0], s[1]): len(s[2]) for k, s in still_open}


def test_a_source_of_several_topics_reads_them_all():
    def build(app):
        source = app.source(["in", "more"], key_format="utf8", value_format="int")
        source.map_values(lambda v: v * 10).to("out")
        source.group_by_key().sum(name="totals").to_stream().to("totals")

    app, driver = app_with(build)
    assert compile_app(app).all_source_topics() == ["in", "more"]
    driver.pipe("in", EVENTS[:5])
    driver.pipe("more", EVENTS[5:])
    assert [(k, v) for k, v, _, _ in driver.read_output("out", "utf8", "int")] == [(k, int(v) * 10) for k, v, _ in EVENTS]
    totals = {k: v for k, v, _, _ in driver.read_output("totals", "utf8", "int")}
    reference = defaultdict(int)
    for key, value, _ in EVENTS:
        reference[key] += int(value)
    assert totals == reference


def test_a_timestamp_extractor_sets_event_time_for_windows_and_outputs():
    def build(app):
        source = app.source("in", key_format="utf8", value_format="int", timestamp_extractor=lambda t: t.column("value"))
        source.to("stamped")
        source.group_by_key().window(TimeWindows.tumbling(10_000, 3_000)).count(name="agg", emit="final") \
            .to_stream().to("out")

    app, driver = app_with(build)
    # Event time travels in the value; the record timestamps run backwards and would make
    # nearly every record late if they counted.
    events = [(key, str(ts), 1_000_000 - index) for index, (key, _, ts) in enumerate(EVENTS)]
    for event in events:
        driver.pipe("in", [event])
    assert [t for _, _, t, _ in driver.read_output("stamped")] == [ts for _, _, ts in EVENTS]
    expected, late = windowed_reference(EVENTS, 10_000, 10_000, 3_000, "count", True)
    got = {(k, int(h["window_start"])): v for k, v, _, h in driver.read_output("out", "utf8", "int")}
    assert expected and got == expected
    assert driver.late_records == late


def test_two_sources_of_one_topic_in_one_subtopology_both_get_every_record():
    def build(app):
        first = app.source("in", key_format="utf8", value_format="int")
        second = app.source("in", key_format="utf8", value_format="int", name="again")
        first.filter(lambda k, v: v % 2 == 1).merge(second.filter(lambda k, v: v % 2 == 0).map_values(lambda v: -v)) \
            .to("out")

    app, driver = app_with(build)
    assert len(compile_app(app).subtopologies) == 1
    driver.pipe("in", EVENTS)
    out = sorted((k, v) for k, v, _, _ in driver.read_output("out", "utf8", "int"))
    assert out == sorted((k, int(v) if int(v) % 2 else -int(v)) for k, v, _ in EVENTS)


def test_a_topic_read_as_both_a_table_and_a_stream_is_refused_at_build_time():
    app = StreamsApp("conflict")
    users = app.table("users", name="profiles")
    app.source("users", name="user-stream").join(users).to("out")
    with pytest.raises(ValueError, match="topic 'users' is read both as a table .*'profiles-source'.* as a stream "
                                         ".*'user-stream'"):
        compile_app(app)
