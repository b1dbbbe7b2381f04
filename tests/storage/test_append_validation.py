"""A leader's append takes a client's batches all or nothing, validated in full
(issue 21): bad Arrow data, a bad batch after good ones, and randomly corrupted produce
payloads (a seeded fuzz) each raise a rafka ``RecordError`` naming the problem and leave
the log exactly as it was."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from rafka.errors import InvalidRecordError, RecordError
from rafka.storage import Log, LogConfig
from rafka.storage.batch import PRODUCE_SCHEMA, decode_stream, encode_stream

HEADERS = PRODUCE_SCHEMA.field("headers").type
FUZZ_SEED = 21
FUZZ_CASES = 400


def _batch(values: list[bytes], headers=None) -> pa.RecordBatch:
    count = len(values)
    return pa.RecordBatch.from_arrays(
        [pa.array(range(1, count + 1), pa.int64()), pa.array([b"k%d" % i for i in range(count)], pa.binary()),
         pa.array(values, pa.binary()), headers if headers is not None else pa.nulls(count, HEADERS)],
        schema=PRODUCE_SCHEMA)


def _state(log: Log) -> tuple[int, int]:
    return log.log_end_offset, log.size_bytes


def test_append_many_with_a_bad_last_batch_writes_none(tmp_path):
    log = Log(str(tmp_path), LogConfig())
    log.append(_batch([b"before"]))
    before = _state(log)
    empty = _batch([b"x"]).slice(0, 0)
    with pytest.raises(InvalidRecordError, match="empty batch"):
        log.append_many([_batch([b"a"]), _batch([b"b", b"c"]), empty])
    assert _state(log) == before
    assert [info.first_offset for info in log.append_many([_batch([b"a"]), _batch([b"b", b"c"])])] == [1, 2]


def test_append_of_a_header_key_that_is_not_utf8_is_refused(tmp_path):
    log = Log(str(tmp_path), LogConfig())
    key = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"),
                                                 pa.py_buffer(b"\xff\xfe")])
    entries = pa.StructArray.from_arrays([key, pa.array([b"v"], pa.binary())], fields=list(HEADERS.value_type))
    headers = pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()), entries, type=HEADERS)
    with pytest.raises(InvalidRecordError, match="not valid Arrow data"):
        log.append(_batch([b"v"], headers=headers))
    assert _state(log) == (0, 0)


def test_append_of_offsets_that_run_backwards_is_refused(tmp_path):
    # Passes Arrow's cheap validation (first and last offset inside the data), fails
    # the full one: stored, it would make a reader slice with a negative length.
    log = Log(str(tmp_path), LogConfig())
    values = pa.Array.from_buffers(pa.binary(), 2, [None, pa.py_buffer(b"\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00"),
                                                    pa.py_buffer(b"abc")])
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int64()), pa.array([b"k", b"k"], pa.binary()), values,
                                        pa.nulls(2, HEADERS)], schema=PRODUCE_SCHEMA)
    with pytest.raises(InvalidRecordError, match="non-monotonic offset"):
        log.append(batch)
    assert _state(log) == (0, 0)


def _mutate(payload: bytes, rng: random.Random) -> bytes:
    data = bytearray(payload)
    kind = rng.randrange(4)
    if kind == 0:  # flip a few bytes
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # truncate
        data = data[:rng.randrange(len(data))]
    elif kind == 2:  # overwrite a 4-byte field with an extreme value (lengths, offsets)
        position = rng.randrange(max(1, len(data) - 4))
        data[position:position + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff"])
    else:  # splice a random chunk in
        position = rng.randrange(len(data))
        data[position:position] = rng.randbytes(rng.randint(1, 64))
    return bytes(data)


def test_fuzzed_produce_payloads_are_stored_whole_or_refused_cleanly(tmp_path):
    rng = random.Random(FUZZ_SEED)
    log = Log(str(tmp_path), LogConfig())
    good = []
    for _ in range(3):
        count = rng.randint(1, 5)
        headers = pa.array([[{"key": "h%d" % i, "value": b"v"}] for i in range(count)], HEADERS)
        good.append(_batch([b"value-%d" % i for i in range(count)], headers=headers))
    payload = encode_stream(good, PRODUCE_SCHEMA)
    outcomes = {"stored": 0, "refused": 0}
    for case in range(FUZZ_CASES):
        mutated = _mutate(payload, rng)
        before = _state(log)
        try:
            infos = log.append_many(decode_stream(mutated))
        except RecordError as error:
            assert str(error), f"case {case}: an error without a message"
            assert _state(log) == before, f"case {case}: refused, yet the log changed"
            outcomes["refused"] += 1
            continue
        assert log.log_end_offset == before[0] + sum(info.record_count for info in infos)
        outcomes["stored"] += 1
    # Everything stored reads back: no accepted batch poisons a reader.
    for batch in log.read(0, max_bytes=1 << 30).batches:
        batch.validate(full=True)
        batch.to_pylist()
    assert outcomes["refused"] > FUZZ_CASES // 4, outcomes
