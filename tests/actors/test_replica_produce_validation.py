"""A leader validates every batch of a client's produce in full before any of it reaches
the log (issue 21): a payload whose second batch is bad, or whose Arrow buffers lie
(a header key that is not UTF-8), is refused whole with ``InvalidRecordError`` and the
log stays as it was."""

from __future__ import annotations

import pyarrow as pa
import pytest
import ray

import rafka
from rafka.actors import names
from rafka.storage.batch import PRODUCE_SCHEMA, encode_stream

HEADERS = PRODUCE_SCHEMA.field("headers").type


def _batch(values: list[bytes], timestamps=None) -> pa.RecordBatch:
    count = len(values)
    return pa.RecordBatch.from_arrays(
        [pa.array(timestamps if timestamps is not None else [1] * count, pa.int64()),
         pa.array([b"k"] * count, pa.binary()), pa.array(values, pa.binary()), pa.nulls(count, HEADERS)],
        schema=PRODUCE_SCHEMA)


def _leader(cluster, topic: str):
    leader_id = cluster.admin().describe_topic(topic)["partitions"][0]["leader"]
    return ray.get_actor(names.replica(topic, 0, leader_id), namespace=cluster.namespace)


def _produce(replica, payload: bytes):
    from rafka.client.rpc import get

    return get(replica.produce.remote(payload, "uncompressed", -1, -1, -1, -1, 1, 30_000), timeout_s=60)


def test_produce_whose_second_batch_is_bad_writes_nothing(cluster, topic):
    cluster.admin().create_topic(topic)
    leader = _leader(cluster, topic)
    bad = _batch([b"b"], timestamps=pa.array([None], pa.int64()))
    payload = encode_stream([_batch([b"a0", b"a1"]), bad], PRODUCE_SCHEMA)
    with pytest.raises(rafka.InvalidRecordError) as caught:
        _produce(leader, payload)
    assert "timestamp" in str(caught.value)
    # The next good produce lands at offset 0: the refused request left nothing behind
    # (the high watermark alone would not show records appended below the log end).
    assert _produce(leader, encode_stream([_batch([b"next"])], PRODUCE_SCHEMA))[0] == 0


def test_produce_with_a_header_key_that_is_not_utf8_is_refused(cluster, topic):
    cluster.admin().create_topic(topic)
    bad_key = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"),
                                                     pa.py_buffer(b"\xff\xfe")])
    entries = pa.StructArray.from_arrays([bad_key, pa.array([b"v"], pa.binary())], fields=list(HEADERS.value_type))
    headers = pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()), entries, type=HEADERS)
    batch = pa.RecordBatch.from_arrays([pa.array([1], pa.int64()), pa.array([b"k"], pa.binary()),
                                        pa.array([b"v"], pa.binary()), headers], schema=PRODUCE_SCHEMA)
    leader = _leader(cluster, topic)
    with pytest.raises(rafka.InvalidRecordError) as caught:
        _produce(leader, encode_stream([batch], PRODUCE_SCHEMA))
    assert "UTF-8" in str(caught.value) or "utf8" in str(caught.value).lower()
    assert _produce(leader, encode_stream([_batch([b"next"])], PRODUCE_SCHEMA))[0] == 0
