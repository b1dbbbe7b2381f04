"""The file source (reading, resuming, following) and the file sink, driven in process as
the runtime drives them."""

from __future__ import annotations

import json
import os

import pytest

from rafka.connect.api import SinkRecord, SinkTaskContext, SourceTaskContext
from rafka.connect.connectors.file import FileSinkConnector, FileSinkTask, FileSourceConnector, FileSourceTask
from rafka.connect.errors import ConnectorConfigError
from rafka.connect.offsets import partition_key


@pytest.fixture
def start_source():
    """Starts a source task on ``path`` as the runtime would, with committed ``offsets``
    ({source partition key: offset}); stops every task at the end."""
    tasks = []

    def start(path, offsets=None, **config):
        task = FileSourceTask()
        task.initialize(SourceTaskContext("files", 0, offsets or {}))
        task.start({"file": str(path), "topic": "lines", "poll.interval.ms": "0", **config})
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.stop()


def poll_all(task, polls_max=20):
    """Records of polls until one returns nothing."""
    records = []
    for _ in range(polls_max):
        batch = task.poll()
        if not batch:
            return records
        records.extend(batch)
    raise AssertionError("the source never ran dry")


def committed(record):
    """The committed offsets a runtime would hand a restarted task after ``record``."""
    return {partition_key(record.source_partition): record.source_offset}


# -- source --------------------------------------------------------------------------


def test_poll_reads_every_complete_line_in_order(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_bytes(b"alpha\nbeta\r\n\ngamma\n")
    records = poll_all(start_source(path))
    assert [record.value for record in records] == ["alpha", "beta", "", "gamma"]
    assert {record.topic for record in records} == {"lines"}
    assert records[0].source_partition == {"filename": str(path)}
    assert [record.source_offset["position"] for record in records] == [6, 12, 13, 19]
    assert all(record.key is None for record in records)


def test_poll_returns_at_most_batch_size_records(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"line {index}\n" for index in range(25)))
    task = start_source(path, **{"batch.size": 10})
    assert [len(task.poll()) for _ in range(4)] == [10, 10, 5, 0]


def test_poll_reads_lines_longer_than_one_read(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("x" * 100 + "\nshort\n")
    records = poll_all(start_source(path, **{"read.bytes": 16}))
    assert [record.value for record in records] == ["x" * 100, "short"]


def test_poll_raises_for_line_longer_than_line_bytes_max(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("ok\n" + "y" * 64)
    task = start_source(path, **{"read.bytes": 16, "line.bytes.max": 32})
    with pytest.raises(ValueError, match=rf"{path}.*byte 3 .*line.bytes.max=32"):
        task.poll()


def test_poll_holds_back_partial_last_line_until_its_newline(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\ntw")
    task = start_source(path)
    assert [record.value for record in poll_all(task)] == ["one"]
    with open(path, "ab") as file:
        file.write(b"o\n")
    records = poll_all(task)
    assert [record.value for record in records] == ["two"]
    assert records[0].source_offset == {"position": 8}


def test_poll_picks_up_appended_lines(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("first\n")
    task = start_source(path)
    assert len(poll_all(task)) == 1
    with open(path, "a") as file:
        file.write("second\nthird\n")
    assert [record.value for record in poll_all(task)] == ["second", "third"]


def test_start_resumes_after_committed_position_without_rereading(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("a\nb\nc\nd\n")
    first_run = start_source(path, **{"batch.size": 2})
    records = first_run.poll()
    assert [record.value for record in records] == ["a", "b"]
    first_run.stop()
    restarted = start_source(path, offsets=committed(records[-1]))
    assert [record.value for record in poll_all(restarted)] == ["c", "d"]


def test_start_rereads_from_zero_when_file_is_shorter_than_committed_position(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("new\n")
    task = start_source(path, offsets={partition_key({"filename": str(path)}): {"position": 1000}})
    assert [record.value for record in poll_all(task)] == ["new"]


def test_poll_rereads_from_zero_after_truncation(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("old line one\nold line two\n")
    task = start_source(path)
    assert len(poll_all(task)) == 2
    path.write_text("fresh\n")
    assert [record.value for record in poll_all(task)] == ["fresh"]


def test_poll_follows_file_replaced_by_rotation(tmp_path, start_source):
    path = tmp_path / "in.txt"
    path.write_text("before\n")
    task = start_source(path)
    assert len(poll_all(task)) == 1
    os.rename(path, tmp_path / "in.txt.1")
    path.write_text("after\n")
    assert [record.value for record in poll_all(task)] == ["after"]


def test_poll_waits_for_missing_file_to_appear(tmp_path, start_source):
    path = tmp_path / "later.txt"
    task = start_source(path)
    assert task.poll() == []
    path.write_text("here\n")
    assert [record.value for record in poll_all(task)] == ["here"]


def test_poll_in_json_format_emits_parsed_documents(tmp_path, start_source):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "tags": ["a"]}\n\n[2]\n')
    records = poll_all(start_source(path, format="json"))
    assert [record.value for record in records] == [{"id": 1, "tags": ["a"]}, [2]]
    assert records[-1].source_offset == {"position": path.stat().st_size}


def test_poll_in_json_format_raises_naming_file_and_offset_for_bad_line(tmp_path, start_source):
    path = tmp_path / "in.jsonl"
    path.write_text('{"ok": true}\nnot json\n')
    task = start_source(path, format="json")
    with pytest.raises(ValueError, match=rf"{path}.*byte 13"):
        task.poll()


def test_poll_reads_all_files_of_the_task(tmp_path, start_source):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("a1\na2\n")
    second.write_text("b1\n")
    task = start_source(first, files=[str(first), str(second)])
    records = poll_all(task)
    assert sorted(record.value for record in records) == ["a1", "a2", "b1"]
    assert {record.source_partition["filename"] for record in records} == {str(first), str(second)}


def test_task_configs_splits_files_over_tasks(tmp_path):
    connector = FileSourceConnector()
    paths = [str(tmp_path / f"{index}.txt") for index in range(5)]
    connector.start(connector.validate({"files": paths, "topic": "t"}))
    configs = connector.task_configs(2)
    assert len(configs) == 2
    assert sorted(path for config in configs for path in config["files"]) == sorted(paths)
    assert len(connector.task_configs(10)) == 5


def test_validate_sets_json_converter_for_json_format(tmp_path):
    connector = FileSourceConnector()
    assert connector.default_config == {"value.converter": "string"}
    config = connector.validate({"file": str(tmp_path / "x"), "topic": "t", "format": "json",
                                 "value.converter": "string"})
    assert config["value.converter"] == "json"


@pytest.mark.parametrize(("config", "field"), [
    ({"file": "x.txt"}, "topic"),
    ({"topic": "t"}, "file"),
    ({"file": "/no/such/dir/x.txt", "topic": "t"}, "file"),
    ({"files": ["/no/such/dir/x.txt"], "topic": "t"}, "files"),
    ({"file": "x.txt", "topic": "t", "format": "xml"}, "format"),
    ({"file": "x.txt", "topic": "t", "batch.size": "0"}, "batch.size"),
    ({"file": "x.txt", "topic": "t", "poll.interval.ms": "5000"}, "poll.interval.ms"),
])
def test_validate_source_rejects_bad_config_naming_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as raised:
        FileSourceConnector().validate(config)
    assert raised.value.field == field


# -- sink ----------------------------------------------------------------------------


def sink_record(value, offset=0, partition=0):
    return SinkRecord("t", partition, offset, 1_700_000_000_000, None, value)


def start_sink(path, **config):
    task = FileSinkTask()
    task.initialize(SinkTaskContext("file-sink", 0))
    task.start({"file": str(path), **config})
    return task


def test_put_in_lines_format_appends_one_line_per_record(tmp_path):
    path = tmp_path / "out.txt"
    task = start_sink(path)
    task.open([("t", 0), ("t", 1)])
    task.put([sink_record("a", 0, 0), sink_record(b"b", 0, 1), sink_record({"c": 1}, 1, 0)])
    task.put([sink_record("d", 2, 0)])
    assert task.pre_commit({("t", 0): 3, ("t", 1): 1}) == {("t", 0): 3, ("t", 1): 1}
    task.stop()
    assert path.read_text() == 'a\nb\n{"c":1}\nd\n'


def test_put_in_json_format_writes_one_json_document_per_line(tmp_path):
    path = tmp_path / "out.jsonl"
    task = start_sink(path, format="json")
    task.put([sink_record({"id": 1}), sink_record("text", 1), sink_record([1, 2], 2)])
    task.flush({})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"id": 1}, "text", [1, 2]]
    task.stop()


def test_start_sink_appends_to_existing_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("kept\n")
    task = start_sink(path)
    task.put([sink_record("added")])
    task.stop()
    assert path.read_text() == "kept\nadded\n"


def test_sink_task_configs_runs_one_task(tmp_path):
    connector = FileSinkConnector()
    connector.start(connector.validate({"file": str(tmp_path / "out.txt"), "topics": "t"}))
    assert len(connector.task_configs(4)) == 1


@pytest.mark.parametrize(("config", "field"), [
    ({}, "file"),
    ({"file": "/no/such/dir/out.txt"}, "file"),
    ({"file": "out.txt", "format": "csv"}, "format"),
])
def test_validate_sink_rejects_bad_config_naming_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as raised:
        FileSinkConnector().validate(config)
    assert raised.value.field == field
