"""File source and file sink: lines (or JSON lines) between local files and topics.

**Source.** ``FileSourceTask`` follows one or more files like ``tail -F``: it reads every
complete line, then keeps watching for lines appended later. Each file is one source
partition, ``{"filename": <absolute path>}``; a record's source offset is
``{"position": <byte offset just after its line>}``, so a restarted task resumes at the
first line whose record was not committed (lines after the commit may be produced again:
at least once). Lines end with ``\\n`` (a ``\\r`` before it is removed); a trailing
partial line is held back until its newline arrives. Values are ``str`` (``format=lines``,
decoded as UTF-8 with invalid bytes replaced) or the parsed JSON value
(``format=json``: one JSON document per line; blank lines are skipped; a line that is
not JSON raises ``ValueError`` naming the file and the byte offset, which fails the task).
Keys are None.

What a position means when the file changes under the task:

- The file shrank below the position (truncated, or a new file of that name is shorter):
  a warning is logged and reading restarts at byte 0.
- The file was replaced (renamed away, a new one created; log rotation): once the old
  file is read to its end, the new one is read from byte 0. A partial last line of the
  old file is dropped (logged).
- The file does not exist yet: ``poll`` returns nothing until it appears.

The source reads in chunks of ``read.bytes`` and splits lines in bulk; one ``poll`` returns
at most ``batch.size`` records over all of the task's files, and sleeps
``poll.interval.ms`` (at most 1 s) only when every file is at its end.

**Sink.** ``FileSinkTask`` appends one line per record, in the order ``put`` receives them
(records of different partitions interleave in arrival order). ``format=lines``: a ``str``
value is written as is, ``bytes`` as is, anything else as JSON. ``format=json``: every
value is written as one JSON document (``bytes`` decoded as UTF-8 first). A value holding
a newline spans several lines. ``flush`` fsyncs the file, so committed offsets never run
ahead of the file's durable content (a restart may append lines again: at least once).
The sink runs a single task, since several tasks appending to one file would interleave.

Converters: both connectors default ``value.converter`` to ``string`` (lines); with
``format=json``, ``validate`` sets ``value.converter`` to ``json`` unless the config names
a converter other than ``string``, because a dict cannot pass through the string converter.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from typing import Any

from rafka.connect.api import SinkConnector, SinkRecord, SinkTask, SourceConnector, SourceRecord, SourceTask
from rafka.connect.config import ConfigDef
from rafka.connect.errors import ConnectorConfigError

log = logging.getLogger(__name__)

FORMATS = ("lines", "json")
POLL_SLEEP_MS_MAX = 1000
LINE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024


def _at_most(limit: int):
    return lambda value: f"must be at most {limit}" if value > limit else None


FILE_SOURCE_CONFIG = (
    ConfigDef()
    .define("file", "str", None, "path of the file to read (or use 'files')")
    .define("files", "list", [], "paths of the files to read, split over the tasks")
    .define("topic", "str", doc="topic the lines are written to")
    .define("format", "str", "lines", "lines: each line is a str value; json: each line is one JSON document",
            choices=FORMATS)
    .define("batch.size", "int", 10000, "most records one poll returns", min=1)
    .define("poll.interval.ms", "int", 500, "how long a poll waits when every file is at its end", min=0,
            validator=_at_most(POLL_SLEEP_MS_MAX))
    .define("read.bytes", "int", 1024 * 1024, "bytes read from a file at a time", min=1)
    .define("line.bytes.max", "int", LINE_BYTES_MAX_DEFAULT, "longest line accepted; a longer one fails the task",
            min=1)
)

FILE_SINK_CONFIG = (
    ConfigDef()
    .define("file", "str", doc="path of the file to append to (created if missing)")
    .define("format", "str", "lines", "lines: str values as is, others as JSON; json: every value as JSON",
            choices=FORMATS)
)


def _converter_for_format(config: dict[str, Any]) -> dict[str, Any]:
    """A JSON value cannot pass through the string converter, the default for files."""
    if config.get("format") == "json" and config.get("value.converter") in (None, "string"):
        config["value.converter"] = "json"
    return config


def _check_parent_directory(path: str, key: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConnectorConfigError(f"{key}: directory {parent!r} does not exist (for {path!r})", key)


# -- source --------------------------------------------------------------------------


class FileSourceConnector(SourceConnector):
    """Reads lines from files into a topic; each task follows a share of ``files``."""

    config_def = FILE_SOURCE_CONFIG
    file_fields = ("file", "files")  # confined to Connect's file_roots (connect/policy.py)
    default_config = {"value.converter": "string"}

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        parsed = super().validate(config)
        if parsed["file"] and parsed["files"]:
            raise ConnectorConfigError("set either 'file' or 'files', not both", "file")
        if not parsed["file"] and not parsed["files"]:
            raise ConnectorConfigError("missing required configuration 'file' (or 'files')", "file")
        key = "file" if parsed["file"] else "files"
        paths = [parsed["file"]] if parsed["file"] else parsed["files"]
        for path in paths:
            _check_parent_directory(path, key)
        if parsed["file"]:
            parsed["file"] = os.path.abspath(parsed["file"])
        else:
            parsed["files"] = [os.path.abspath(path) for path in parsed["files"]]
        return _converter_for_format(parsed)

    def task_class(self) -> type:
        return FileSourceTask

    def task_configs(self, max_tasks: int) -> list[dict[str, Any]]:
        paths = [self.config["file"]] if self.config.get("file") else list(self.config["files"])
        task_count = max(1, min(max_tasks, len(paths)))
        return [{"files": paths[index::task_count]} for index in range(task_count)]


class _FollowedFile:
    """One file being followed: the open handle and the bytes read past ``position``.

    ``position`` is the byte offset just after the last line emitted; ``pending`` holds
    the bytes read from ``position`` on that were not emitted yet (whole lines beyond the
    batch limit, and a partial last line), so the handle is at ``position + len(pending)``.
    """

    def __init__(self, path: str, position: int) -> None:
        self.path = path
        self.partition = {"filename": path}
        self.position = position
        self.pending = b""
        self.handle = None

    def open(self) -> bool:
        """Open the file at ``position`` if it exists; restart at 0 if it is shorter."""
        try:
            self.handle = open(self.path, "rb")
        except FileNotFoundError:
            return False
        size = os.fstat(self.handle.fileno()).st_size
        if size < self.position:
            log.warning("file %s is %d bytes, shorter than the resume position %d: reading it again from 0",
                        self.path, size, self.position)
            self.position = 0
        self.handle.seek(self.position)
        self.pending = b""
        return True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def check_changed(self) -> bool:
        """At the end of the file: restart at 0 if it was truncated, switch to the new
        file if it was replaced. True when reading should go on from the new place."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed or deleted; a file of this name may appear later
        opened = os.fstat(self.handle.fileno())
        if (named.st_ino, named.st_dev) != (opened.st_ino, opened.st_dev):
            if self.pending:
                log.warning("file %s was replaced; dropping its %d-byte partial last line", self.path,
                            len(self.pending))
            log.info("file %s was replaced: reading the new file from 0", self.path)
            self.close()
            self.position = 0
            return self.open()
        if opened.st_size < self.position + len(self.pending):
            log.warning("file %s was truncated to %d bytes below position %d: reading it again from 0",
                        self.path, opened.st_size, self.position)
            self.position = 0
            self.pending = b""
            self.handle.seek(0)
            return True
        return False


class FileSourceTask(SourceTask):
    """Follows the files of its config (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._files: list[_FollowedFile] = []
        self._next_file_index = 0

    def start(self, config: dict[str, Any]) -> None:
        parsed = FILE_SOURCE_CONFIG.parse(config)
        self._topic = parsed["topic"]
        self._format = parsed["format"]
        self._batch_size = parsed["batch.size"]
        self._poll_sleep_s = min(parsed["poll.interval.ms"], POLL_SLEEP_MS_MAX) / 1000
        self._read_bytes = parsed["read.bytes"]
        self._line_bytes_max = parsed["line.bytes.max"]
        paths = parsed["files"] or ([parsed["file"]] if parsed["file"] else [])
        if not paths:
            raise ConnectorConfigError("missing required configuration 'file' (or 'files')", "file")
        for path in paths:
            path = os.path.abspath(path)
            committed = self.context.offset({"filename": path}) if self.context is not None else None
            followed = _FollowedFile(path, int(committed["position"]) if committed else 0)
            followed.open()
            self._files.append(followed)

    def poll(self) -> list[SourceRecord]:
        records: list[SourceRecord] = []
        file_count = len(self._files)
        for step in range(file_count):
            if len(records) >= self._batch_size:
                break
            followed = self._files[(self._next_file_index + step) % file_count]
            records.extend(self._read_lines(followed, self._batch_size - len(records)))
        self._next_file_index = (self._next_file_index + 1) % file_count
        if not records and self._poll_sleep_s:
            time.sleep(self._poll_sleep_s)
        return records

    def stop(self) -> None:
        for followed in self._files:
            followed.close()

    def _read_lines(self, followed: _FollowedFile, count_max: int) -> list[SourceRecord]:
        """Up to ``count_max`` records of the complete lines ``followed`` has now."""
        if followed.handle is None and not followed.open():
            return []
        # Read until the pending bytes hold enough lines or the file ends; a line longer
        # than one chunk takes several reads, bounded by line.bytes.max.
        while followed.pending.count(b"\n") < count_max:
            chunk = followed.handle.read(self._read_bytes)
            if not chunk:
                if followed.check_changed():
                    continue
                break
            followed.pending += chunk
            last_line_bytes = len(followed.pending) - followed.pending.rfind(b"\n") - 1
            if last_line_bytes > self._line_bytes_max:
                line_position = followed.position + len(followed.pending) - last_line_bytes
                raise ValueError(f"{followed.path}: the line at byte {line_position} is longer than "
                                 f"line.bytes.max={self._line_bytes_max}")
        end = followed.pending.rfind(b"\n")
        if end < 0:
            return []
        lines = followed.pending[:end].split(b"\n")
        if len(lines) > count_max:
            lines = lines[:count_max]
        consumed = sum(map(len, lines)) + len(lines)
        first_position = followed.position
        positions = list(itertools.accumulate((len(line) + 1 for line in lines), initial=first_position))
        if b"\r" in followed.pending[:consumed]:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        values = self._decode(followed.path, lines, positions)
        followed.pending = followed.pending[consumed:]
        followed.position += consumed
        partition, topic = followed.partition, self._topic
        return [SourceRecord(partition, {"position": position}, topic, value)
                for value, position in zip(values, positions[1:]) if value is not _SKIP]

    def _decode(self, path: str, lines: list[bytes], positions: list[int]) -> list[Any]:
        if self._format == "lines":
            return [line.decode("utf-8", "replace") for line in lines]
        values: list[Any] = []
        for line, position in zip(lines, positions):
            if not line.strip():
                values.append(_SKIP)
                continue
            try:
                values.append(json.loads(line))
            except ValueError as error:
                raise ValueError(f"{path}: the line at byte {position} is not JSON: {error}") from None
        return values


_SKIP = object()


# -- sink ----------------------------------------------------------------------------


class FileSinkConnector(SinkConnector):
    """Appends the records of its topics to one file, one line each."""

    config_def = FILE_SINK_CONFIG
    default_config = {"value.converter": "string"}
    file_fields = ("file",)  # confined to Connect's file_roots (connect/policy.py)

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        parsed = super().validate(config)
        _check_parent_directory(parsed["file"], "file")
        parsed["file"] = os.path.abspath(parsed["file"])
        return _converter_for_format(parsed)

    def task_class(self) -> type:
        return FileSinkTask

    def task_configs(self, max_tasks: int) -> list[dict[str, Any]]:
        return [dict(self.config)]


class FileSinkTask(SinkTask):
    """Appends one line per record; ``flush`` fsyncs (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._handle = None

    def start(self, config: dict[str, Any]) -> None:
        parsed = FILE_SINK_CONFIG.parse(config)
        self._path = os.path.abspath(parsed["file"])
        self._format = parsed["format"]
        self._handle = open(self._path, "ab")

    def put(self, records: list[SinkRecord]) -> None:
        if not records:
            return
        encode = _encode_line if self._format == "lines" else _encode_json_line
        # One write per batch: the lines of a batch reach the file together.
        self._handle.write(b"".join([encode(record.value) for record in records]))

    def flush(self, offsets: dict[tuple[str, int], int]) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def stop(self) -> None:
        if self._handle is not None:
            self.flush({})
            self._handle.close()
            self._handle = None


def _encode_line(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8") + b"\n"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) + b"\n"
    return json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n"


def _encode_json_line(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n"
