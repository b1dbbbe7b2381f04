"""Window assignment and the key/value codecs, against plain-Python references."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from rafka.streams import codec
from rafka.streams.windows import TimeWindows


def reference_assign(windows, timestamps, stream_time):
    """Per record in order: its windows that are still open, and late records."""
    pairs, late = [], 0
    for row, ts in enumerate(timestamps):
        stream_time = max(stream_time, ts)
        starts = []
        start = ts - ts % windows.advance_ms
        while start + windows.size_ms > ts:
            if start + windows.size_ms + windows.grace_ms > stream_time:
                starts.append(start)
            start -= windows.advance_ms
        if not starts:
            late += 1
        pairs += [(row, s) for s in starts]
    return sorted(pairs), late, stream_time


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=60), st.sampled_from([(1000, 1000), (1000, 250), (900, 300), (1000, 400)]),
       st.integers(0, 2000), st.integers(-1, 10_000))
def test_time_windows_match_the_reference(timestamps, shape, grace_ms, stream_time):
    windows = TimeWindows(shape[0], shape[1], grace_ms)
    rows, starts, late, new_time = windows.assign(np.array(timestamps, dtype=np.int64), stream_time)
    expected_pairs, expected_late, expected_time = reference_assign(windows, timestamps, stream_time)
    assert sorted(zip(rows.tolist(), starts.tolist())) == expected_pairs
    assert late == expected_late
    assert new_time == (expected_time if timestamps else stream_time)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=60), st.sampled_from([(1000, 1000), (1000, 250)]),
       st.integers(0, 2000), st.integers(-1, 10_000))
def test_time_windows_without_advance_keep_the_given_stream_time(timestamps, shape, grace_ms, stream_time):
    windows = TimeWindows(shape[0], shape[1], grace_ms)
    rows, starts, late, new_time = windows.assign(np.array(timestamps, dtype=np.int64), stream_time, advance=False)
    expected = [(row, start) for row, ts in enumerate(timestamps)
                for start in range(ts - ts % shape[1], ts - shape[0], -shape[1])
                if start + shape[0] + grace_ms > stream_time]
    assert sorted(zip(rows.tolist(), starts.tolist())) == sorted(expected)
    assert late == len(timestamps) - len({row for row, _ in expected})
    assert new_time == stream_time


def test_window_arguments_are_checked():
    with pytest.raises(ValueError, match="size_ms"):
        TimeWindows.tumbling(0)
    with pytest.raises(ValueError, match="advance_ms"):
        TimeWindows.hopping(1000, 2000)
    with pytest.raises(ValueError, match="grace_ms"):
        TimeWindows.tumbling(1000, grace_ms=-1)


@pytest.mark.parametrize("values", [
    [b"a", None, b"\x00\x01"], ["x", "y", None], [1, 2, None], [1.5, None], [{"a": 1}, {"a": 2}, None], [[1, 2], None],
])
def test_internal_codec_round_trips_types(values):
    column = pa.array(values)
    assert codec.from_internal(codec.to_internal(column)).to_pylist() == values


def test_external_codec_writes_readable_bytes():
    assert codec.to_external(pa.array([1, None, 30])).to_pylist() == [b"1", None, b"30"]
    assert codec.to_external(pa.array(["é"])).to_pylist() == ["é".encode()]
    assert codec.to_external(pa.array([{"n": 1}])).to_pylist() == [b'{"n": 1}']


def test_decode_names_bad_input():
    with pytest.raises(ValueError, match="value of clicks is not an integer"):
        codec.decode(pa.array([b"12", b"x"]), "int", "value of clicks")
    with pytest.raises(ValueError, match="not JSON"):
        codec.decode(pa.array([b"{"]), "json", "value of clicks")
    for not_utf8 in (b"\xff1", b"1\xc3", b"\xff1.5"):  # numbers are parsed from a string view, not validated first
        with pytest.raises(ValueError, match="value of clicks is not"):
            codec.decode(pa.array([b"1", not_utf8]), "int" if b"." not in not_utf8 else "float", "value of clicks")
    assert codec.decode(pa.array([b"-12", None]), "int", "v").to_pylist() == [-12, None]
    assert codec.decode(pa.array([b"2.5"], pa.large_binary()), "float", "v").to_pylist() == [2.5]
    assert codec.decode(pa.array([b'{"a": 1}']), "json", "v").to_pylist() == [{"a": 1}]
