"""Small connectors the runtime tests drive: a counting source and a file-appending sink
with switches for failures. They are registered with ``Connect.register_plugin`` (the
class ships by value), as a user's own connector would be."""

from __future__ import annotations

import json
import os
import time

from rafka.connect import ConfigDef, ConfigField, SinkConnector, SinkTask, SourceConnector, SourceRecord, SourceTask


class CountingSource(SourceConnector):
    """Emits {"n": 0} … {"n": count-1} to ``topic``, ``per_poll`` per poll, sleeping
    ``poll_sleep_ms`` after each poll. With ``fail_once_file``, the first task to start
    while that file is absent creates it and fails its first poll."""

    config_def = ConfigDef([
        ConfigField("topic", "str"), ConfigField("count", "int", 1000, min=0), ConfigField("per_poll", "int", 500, min=1),
        ConfigField("poll_sleep_ms", "int", 0, min=0), ConfigField("fail_once_file", "str", ""),
    ])

    def task_class(self) -> type:
        return CountingSourceTask

    def task_configs(self, max_tasks: int) -> list[dict]:
        return [{}]


class CountingSourceTask(SourceTask):
    PARTITION = {"counter": "n"}

    def start(self, config: dict) -> None:
        self.config = config
        committed = self.context.offset(self.PARTITION)
        self.next = committed["next"] if committed else 0
        self.fail_now = bool(config["fail_once_file"]) and not os.path.exists(config["fail_once_file"])
        if self.fail_now:
            open(config["fail_once_file"], "w").close()

    def poll(self) -> list[SourceRecord]:
        if self.fail_now:
            raise RuntimeError("counting source failed on purpose")
        end = min(self.config["count"], self.next + self.config["per_poll"])
        records = [SourceRecord(self.PARTITION, {"next": n + 1}, self.config["topic"], {"n": n}, key=str(n))
                   for n in range(self.next, end)]
        self.next = end
        time.sleep(self.config["poll_sleep_ms"] / 1000 if records else 0.05)
        return records


class AppendingSink(SinkConnector):
    """Appends each record's value["n"] as a line to ``out``; a value whose n is in
    ``poison`` makes ``put`` raise for the whole batch."""

    config_def = ConfigDef([ConfigField("out", "str"), ConfigField("poison", "list", [])])

    def task_class(self) -> type:
        return AppendingSinkTask


class AppendingSinkTask(SinkTask):
    def start(self, config: dict) -> None:
        self.poison = {int(n) for n in config["poison"]}
        self.file = open(config["out"], "a")

    def put(self, records: list) -> None:
        bad = [r.offset for r in records if r.value["n"] in self.poison]
        if bad:
            raise ValueError(f"poison record at offsets {bad}")
        self.file.write("".join(f"{json.dumps(r.value['n'])}\n" for r in records))

    def flush(self, offsets: dict) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def stop(self) -> None:
        self.file.close()
