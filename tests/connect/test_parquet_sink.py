"""The Parquet sink: rolling files, what pre_commit covers, and exactly-once output across
a crash and redelivery, driven in process as the runtime drives it."""

from __future__ import annotations

import os

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rafka.connect.api import SinkRecord, SinkTaskContext
from rafka.connect.connectors.parquet import ParquetSinkConnector, ParquetSinkTask, file_name
from rafka.connect.errors import ConnectorConfigError
from rafka.storage.clock import ManualClock

TOPIC = "events"


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def start_sink(tmp_path, clock):
    """Starts a sink task writing under ``tmp_path/"dataset"`` with its partitions opened."""

    def start(partitions=((TOPIC, 0),), **config):
        task = ParquetSinkTask(clock=clock)
        task.initialize(SinkTaskContext("parquet", 0))
        task.start({"path": str(tmp_path / "dataset"), "topics": TOPIC, **config})
        task.open(list(partitions))
        return task

    return start


def records(first, last, partition=0, **extra):
    return [SinkRecord(TOPIC, partition, offset, 1_700_000_000_000 + offset, None,
                       {"id": offset, "name": f"n{offset}", **extra})
            for offset in range(first, last + 1)]


def written_files(root):
    return sorted(name for _, _, names in os.walk(root) for name in names if name.endswith(".parquet"))


def read_dataset(root):
    return ds.dataset(str(root), partitioning="hive").to_table()


def test_put_buffers_rows_below_flush_size_without_writing(tmp_path, start_sink):
    task = start_sink(**{"flush.size": 10})
    task.put(records(0, 8))
    assert written_files(tmp_path / "dataset") == []


def test_put_rolls_a_file_of_exactly_flush_size_rows(tmp_path, start_sink):
    task = start_sink(**{"flush.size": 4})
    task.put(records(0, 9))
    assert written_files(tmp_path / "dataset") == [file_name(TOPIC, 0, 0, 3), file_name(TOPIC, 0, 4, 7)]
    path = tmp_path / "dataset" / f"topic={TOPIC}" / "partition=0" / file_name(TOPIC, 0, 4, 7)
    assert pq.read_table(path).column("_offset").to_pylist() == [4, 5, 6, 7]


def test_empty_put_rolls_file_once_rotate_interval_passes(tmp_path, start_sink, clock):
    task = start_sink(**{"rotate.interval.ms": 1000})
    task.put(records(0, 2))
    clock.advance(999)
    task.put([])
    assert written_files(tmp_path / "dataset") == []
    clock.advance(1)
    task.put([])
    assert written_files(tmp_path / "dataset") == [file_name(TOPIC, 0, 0, 2)]


def test_put_rolls_file_when_buffer_reaches_file_size_bytes(tmp_path, start_sink):
    task = start_sink(**{"file.size.bytes": 1})
    task.put(records(0, 1))
    assert written_files(tmp_path / "dataset") == [file_name(TOPIC, 0, 0, 1)]


def test_pre_commit_covers_only_rows_written_to_files(start_sink):
    task = start_sink(**{"flush.size": 4})
    task.put(records(0, 5))
    assert task.pre_commit({(TOPIC, 0): 6}) == {(TOPIC, 0): 4}
    task.put(records(6, 7))
    assert task.pre_commit({(TOPIC, 0): 8}) == {(TOPIC, 0): 8}


def test_pre_commit_does_not_write_buffered_rows(tmp_path, start_sink):
    task = start_sink()
    task.put(records(0, 2))
    assert task.pre_commit({(TOPIC, 0): 3}) == {(TOPIC, 0): 0}
    assert written_files(tmp_path / "dataset") == []


def test_close_writes_buffered_rows(tmp_path, start_sink):
    task = start_sink()
    task.put(records(0, 2))
    task.close([(TOPIC, 0)])
    assert written_files(tmp_path / "dataset") == [file_name(TOPIC, 0, 0, 2)]


def test_open_rewinds_to_offset_after_last_written_file(start_sink):
    first_run = start_sink(**{"flush.size": 5})
    first_run.put(records(0, 11))
    restarted = start_sink(**{"flush.size": 5})
    assert restarted.context.requested_offsets == {(TOPIC, 0): 10}


def test_open_leaves_offset_alone_when_no_file_was_written(start_sink):
    assert start_sink().context.requested_offsets == {}


def test_redelivery_after_crash_writes_every_offset_exactly_once(tmp_path, start_sink):
    # A task writes 0..9 in files and buffers 10..13, then dies before any commit; the
    # group redelivers from the last commit (0). The new task rewinds to 10, and put drops
    # the overlap the consumer still hands it.
    crashed = start_sink(**{"flush.size": 5})
    crashed.put(records(0, 13))
    restarted = start_sink(**{"flush.size": 5})
    assert restarted.context.requested_offsets[(TOPIC, 0)] == 10
    restarted.put(records(3, 12))
    restarted.put(records(8, 19))
    restarted.stop()
    offsets = read_dataset(tmp_path / "dataset").column("_offset").to_pylist()
    assert sorted(offsets) == list(range(20))


def test_put_drops_records_already_buffered(tmp_path, start_sink):
    task = start_sink()
    task.put(records(0, 4))
    task.put(records(2, 6))
    task.stop()
    assert read_dataset(tmp_path / "dataset").column("_offset").to_pylist() == list(range(7))


def test_open_deletes_leftover_temporary_files(tmp_path, start_sink):
    directory = tmp_path / "dataset" / f"topic={TOPIC}" / "partition=0"
    directory.mkdir(parents=True)
    leftover = directory / f".{file_name(TOPIC, 0, 0, 9)}.1234abcd.tmp"
    leftover.write_bytes(b"half a file")
    task = start_sink()
    assert not leftover.exists()
    assert task.last_recovery[(TOPIC, 0)].dropped_paths == [str(leftover)]


def test_dataset_reads_back_with_hive_partitioning(tmp_path, start_sink):
    task = start_sink(partitions=[(TOPIC, 0), (TOPIC, 1)])
    task.put(records(0, 2, partition=0) + records(0, 1, partition=1))
    task.stop()
    table = read_dataset(tmp_path / "dataset").sort_by([("partition", "ascending"), ("_offset", "ascending")])
    assert table.column("topic").to_pylist() == [TOPIC] * 5
    assert table.column("partition").to_pylist() == [0, 0, 0, 1, 1]
    assert table.column("name").to_pylist() == ["n0", "n1", "n2", "n0", "n1"]
    assert set(table.column_names) >= {"id", "name", "_topic", "_partition", "_offset", "_timestamp"}


def test_put_without_kafka_fields_writes_value_columns_only(tmp_path, start_sink):
    task = start_sink(**{"include.kafka.fields": "false"})
    task.put(records(0, 1))
    task.stop()
    path = next((tmp_path / "dataset").rglob("*.parquet"))
    assert pq.read_table(path).column_names == ["id", "name"]


def test_put_merges_new_columns_into_one_file(tmp_path, start_sink):
    task = start_sink()
    task.put(records(0, 1))
    task.put(records(2, 3, extra=1.5))
    task.stop()
    assert len(written_files(tmp_path / "dataset")) == 1
    assert read_dataset(tmp_path / "dataset").sort_by("_offset").column("extra").to_pylist() == [None, None, 1.5, 1.5]


def test_put_rolls_file_when_a_column_changes_type(tmp_path, start_sink):
    task = start_sink()
    task.put(records(0, 1, kind=1))
    task.put(records(2, 3, kind="text"))
    task.stop()
    assert written_files(tmp_path / "dataset") == [file_name(TOPIC, 0, 0, 1), file_name(TOPIC, 0, 2, 3)]


def test_put_rejects_non_dict_value(start_sink):
    task = start_sink()
    with pytest.raises(ValueError, match="dict values"):
        task.put([SinkRecord(TOPIC, 0, 0, 0, None, "plain text")])


def test_partition_by_fields_writes_hive_directories_per_value(tmp_path, start_sink):
    task = start_sink(**{"partition.by": "fields", "partition.fields": "country"})
    task.put([SinkRecord(TOPIC, 0, offset, 0, None, {"id": offset, "country": country})
              for offset, country in enumerate(["fr", "de", "fr", "a/b"])])
    task.stop()
    directories = sorted(os.listdir(tmp_path / "dataset" / f"topic={TOPIC}"))
    assert directories == ["country=a%2Fb", "country=de", "country=fr"]
    table = read_dataset(tmp_path / "dataset").sort_by("_offset")
    assert table.column("country").to_pylist() == ["fr", "de", "fr", "a/b"]


def test_open_deletes_incomplete_span_of_field_partitioned_files(tmp_path, start_sink):
    config = {"partition.by": "fields", "partition.fields": "country", "flush.size": 2}
    task = start_sink(**config)
    task.put([SinkRecord(TOPIC, 0, offset, 0, None, {"country": country})
              for offset, country in enumerate(["fr", "fr", "fr", "de"])])
    # The writer died after renaming one of the two files of span 2..3.
    missing = tmp_path / "dataset" / f"topic={TOPIC}" / "country=de" / file_name(TOPIC, 0, 2, 3, 1, 2)
    missing.unlink()
    restarted = start_sink(**config)
    assert restarted.context.requested_offsets == {(TOPIC, 0): 2}
    assert [os.path.basename(path) for path in restarted.last_recovery[(TOPIC, 0)].dropped_paths] == [
        file_name(TOPIC, 0, 2, 3, 0, 2)]


def test_sink_accepts_file_uri_path(tmp_path, start_sink):
    task = start_sink(path=(tmp_path / "by-uri").as_uri())
    task.put(records(0, 1))
    task.stop()
    assert written_files(tmp_path / "by-uri") == [file_name(TOPIC, 0, 0, 1)]


def test_connector_defaults_value_converter_to_json():
    assert ParquetSinkConnector.default_config == {"value.converter": "json"}


@pytest.mark.parametrize(("config", "field"), [
    ({}, "path"),
    ({"path": "d", "partition.by": "hour"}, "partition.by"),
    ({"path": "d", "partition.by": "fields"}, "partition.fields"),
    ({"path": "d", "partition.by": "fields", "partition.fields": "_offset"}, "partition.fields"),
    ({"path": "d", "flush.size": "0"}, "flush.size"),
    ({"path": "d", "rotate.interval.ms": "soon"}, "rotate.interval.ms"),
    ({"path": "d", "compression": "lzma"}, "compression"),
    ({"path": "nosuchscheme://bucket/x"}, "path"),
])
def test_validate_rejects_bad_config_naming_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as raised:
        ParquetSinkConnector().validate(config)
    assert raised.value.field == field


def test_put_for_unopened_partition_drops_offsets_already_written(tmp_path, start_sink, clock):
    first_run = start_sink(**{"flush.size": 3})
    first_run.put(records(0, 2))
    task = ParquetSinkTask(clock=clock)
    task.initialize(SinkTaskContext("parquet", 0))
    task.start({"path": str(tmp_path / "dataset"), "flush.size": 3})
    task.put(records(0, 5))
    assert sorted(read_dataset(tmp_path / "dataset").column("_offset").to_pylist()) == list(range(6))
