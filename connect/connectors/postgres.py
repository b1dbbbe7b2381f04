"""PostgreSQL source and sink connectors (psycopg 3), modelled on Confluent's JDBC ones.

**Source.** Each task polls its tables (or one custom ``query``) with a query that reads
strictly after the last offset, in offset order, at most ``batch.max.rows`` rows:

- ``incrementing``: ``WHERE id > last ORDER BY id``. For append-only tables whose ids
  grow in commit order. A row whose id was taken by a transaction that commits *after*
  a row with a higher id was read is skipped; use ``timestamp+incrementing`` with
  ``timestamp.delay.interval.ms`` when writers overlap.
- ``timestamp+incrementing``: ``WHERE (ts, id) > (last_ts, last_id) AND ts < now() -
  delay ORDER BY ts, id``. Catches inserts and updates (an update must set ``ts``).
  Rows whose ``ts`` is within the delay of the database's clock wait, so a transaction
  that was in flight at read time is not skipped as long as it commits within the delay.
- ``timestamp``: ``WHERE ts > last_ts AND ts < now() - delay ORDER BY ts``. A batch
  always ends on a whole timestamp (rows sharing the last timestamp are read together),
  so it may exceed ``batch.max.rows`` by that group.

Rows with a NULL timestamp or id are never read. Comparisons happen in the database in
its own time zone setting (the connector does not change it), so a ``timestamp without
time zone`` column compares as the writers' ``now()`` wrote it.

Source partition: ``{"table": name}`` or ``{"query": sql}``. Source offset:
``{"incrementing": id}``, ``{"timestamp": iso}`` or ``{"timestamp": iso, "incrementing":
id}``, where ``iso`` is the column value in ISO 8601 (with its UTC offset for
``timestamptz``) and ``id`` the id as a JSON value (an int for integer columns).

Records: topic ``topic.prefix + table`` (``topic.prefix`` alone for a query); key the
row's incrementing id (JSON value, an ``int`` for integer columns; None in ``timestamp``
mode); value the row as a ``dict`` of JSON-safe values (``ROW_VALUE_TYPES`` below);
``timestamp_ms`` from the timestamp column when the mode has one (a naive timestamp is
taken as UTC).

**Sink.** ``put`` writes each batch in one transaction and commits before it returns, so
``flush`` has nothing left to do: whatever ``put`` accepted is durable. Record values
must be ``dict`` (what the JSON converter produces); anything else raises ``ValueError``
naming the record's topic, partition and offset (the runtime's dead-letter queue takes
it). ``insert.mode=insert`` appends with ``COPY`` (re-delivered records are appended
again: at least once); ``upsert`` runs ``INSERT ... ON CONFLICT (pk) DO UPDATE``, which
makes re-delivery idempotent. A field missing from a record is written as NULL (the
columns of a statement are the union of its records' fields). Table names come from
``table.name.format`` with ``${topic}`` replaced, taken as one quoted identifier in the
first schema of the search path (a dot is part of the name, not a schema separator).

Connections: one per task, opened on first use, in autocommit mode (the sink opens an
explicit transaction per ``put``). Any ``psycopg.OperationalError`` (connection refused
or lost, server shutting down, lock or serialization failure) closes the connection and
raises ``RetriableError``; the next call reconnects. Other database errors (a missing
table, a value of the wrong type) propagate as they are. Error messages never contain
``connection.url``'s password.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import re
import time
import uuid
from typing import Any, Callable

try:
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb
except ImportError as error:  # psycopg is an extra: name it, so the fix is one command
    raise ImportError(f"the PostgreSQL connectors need psycopg ({error}): pip install 'rafka[postgres]'") from error

from rafka.connect.api import SinkConnector, SinkRecord, SinkTask, SourceConnector, SourceRecord, SourceTask
from rafka.connect.config import ConfigDef
from rafka.connect.errors import ConnectError, ConnectorConfigError, RetriableError

CONNECT_TIMEOUT_S = 10
POLL_BLOCK_S_MAX = 1.0  # poll() returns within about this long, so pause and stop are prompt

ROW_VALUE_TYPES = """\
How the source turns column values into JSON-safe record values:
integers, floats, booleans, text, NULL -> int, float, bool, str, None;
numeric -> str (exact; a float would round); timestamp, timestamptz, date, time -> ISO 8601
str (timestamptz with its UTC offset); interval -> float seconds; bytea -> base64 str;
uuid, inet and any other type -> str; json/jsonb -> its dict/list/scalar; arrays -> list."""

CONNECTION_URL_DOC = "libpq URI, e.g. postgresql://user:password@127.0.0.1:5432/db"


# -- shared helpers ------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password (``scheme://user:password@host`` or ``password=...``)
    replaced by ``***``."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="rafka-connect")
    except psycopg.OperationalError as error:
        raise RetriableError(f"cannot connect to PostgreSQL at {redact_url(url)}: {_first_line(error)}") from None
    except psycopg.Error:
        # libpq's parse errors quote pieces of the string, password included: say less.
        raise ConnectError("connection.url is not a valid libpq URI or conninfo string") from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def json_safe(value: Any) -> Any:
    """A column value as a JSON-safe Python value (see ``ROW_VALUE_TYPES``)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def epoch_ms(value: Any) -> int | None:
    """Milliseconds since the epoch of a timestamp or date column value (naive = UTC)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, datetime.date):
        return int(datetime.datetime(value.year, value.month, value.day,
                                     tzinfo=datetime.timezone.utc).timestamp() * 1000)
    return None


# -- source --------------------------------------------------------------------------

MODE_INCREMENTING = "incrementing"
MODE_TIMESTAMP = "timestamp"
MODE_TIMESTAMP_INCREMENTING = "timestamp+incrementing"


def _source_config_def() -> ConfigDef:
    return (ConfigDef()
            .define("connection.url", "password", doc=CONNECTION_URL_DOC)
            .define("table.whitelist", "list", [], "tables to copy, one topic each (or use query)")
            .define("query", "str", "", "a custom SELECT to copy instead of tables (one task, topic = topic.prefix)")
            .define("mode", "str", MODE_INCREMENTING, "how new rows are found",
                    choices=(MODE_INCREMENTING, MODE_TIMESTAMP, MODE_TIMESTAMP_INCREMENTING))
            .define("incrementing.column.name", "str", "id", "a strictly increasing, non-null column")
            .define("timestamp.column.name", "str", "", "a column set on insert and on every update")
            .define("topic.prefix", "str", "", "topic = topic.prefix + table name")
            .define("poll.interval.ms", "int", 1000, "how long to wait for new rows after a poll found none", min=0)
            .define("batch.max.rows", "int", 10000, "most rows one poll returns", min=1)
            .define("timestamp.delay.interval.ms", "int", 0,
                    "read only rows whose timestamp is older than this, so in-flight transactions commit first",
                    min=0))


def _validate_source(config: dict[str, Any]) -> dict[str, Any]:
    tables, query = config["table.whitelist"], config["query"].strip()
    if bool(tables) == bool(query):
        raise ConnectorConfigError("set exactly one of table.whitelist and query", "table.whitelist")
    if query and not config["topic.prefix"]:
        raise ConnectorConfigError("topic.prefix is the topic of a query and must be set", "topic.prefix")
    if config["mode"] != MODE_INCREMENTING and not config["timestamp.column.name"]:
        raise ConnectorConfigError(f"timestamp.column.name is required in mode {config['mode']!r}",
                                   "timestamp.column.name")
    if not config["incrementing.column.name"]:
        raise ConnectorConfigError("incrementing.column.name must not be empty", "incrementing.column.name")
    return config


class PostgresSourceConnector(SourceConnector):
    """Copies new and updated rows of PostgreSQL tables (or of one query) to topics."""

    config_def = _source_config_def()

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return _validate_source(super().validate(config))

    def task_class(self) -> type:
        return PostgresSourceTask

    def task_configs(self, max_tasks: int) -> list[dict[str, Any]]:
        """Tables dealt round-robin over ``min(max_tasks, tables)`` tasks, each config
        with its share under ``tables``; a query runs in one task."""
        if self.config.get("query"):
            return [dict(self.config, tables=[])]
        tables = list(self.config["table.whitelist"])
        task_count = max(1, min(max_tasks, len(tables)))
        return [dict(self.config, tables=tables[index::task_count]) for index in range(task_count)]


class _Stream:
    """One table or query a source task reads, and where it is in it."""

    def __init__(self, partition: dict, topic: str, relation: sql.Composable) -> None:
        self.partition = partition
        self.topic = topic
        self.relation = relation
        self.last_timestamp: Any = None  # the offset values as stored (ISO str, JSON id)
        self.last_id: Any = None

    def resume_from(self, offset: dict | None) -> None:
        if offset:
            self.last_timestamp = offset.get("timestamp")
            self.last_id = offset.get("incrementing")

    def offset(self, mode: str) -> dict:
        if mode == MODE_INCREMENTING:
            return {"incrementing": self.last_id}
        if mode == MODE_TIMESTAMP:
            return {"timestamp": self.last_timestamp}
        return {"timestamp": self.last_timestamp, "incrementing": self.last_id}


class PostgresSourceTask(SourceTask):
    """Reads its share of the tables (config ``tables``) or the connector's query."""

    def __init__(self) -> None:
        super().__init__()
        self._connection: psycopg.Connection | None = None
        self._streams: list[_Stream] = []
        self._next_stream = 0
        self._idle_until = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], None] = time.sleep

    def start(self, config: dict[str, Any]) -> None:
        if config.get("tables"):  # this task's share, from PostgresSourceConnector.task_configs
            config = dict(config, **{"table.whitelist": config["tables"]})
        config = _validate_source(_source_config_def().parse(config))
        self._url = config["connection.url"]
        self._mode = config["mode"]
        self._id_column = config["incrementing.column.name"]
        self._timestamp_column = config["timestamp.column.name"]
        self._batch_rows_max = config["batch.max.rows"]
        self._poll_interval_s = config["poll.interval.ms"] / 1000
        self._delay = datetime.timedelta(milliseconds=config["timestamp.delay.interval.ms"])
        query = config["query"].strip()
        if query:
            # The query is wrapped as a subquery; its own % signs are not placeholders.
            relation = sql.SQL("({})").format(sql.SQL(query.rstrip(";").replace("%", "%%")))
            self._streams = [_Stream({"query": query}, config["topic.prefix"], relation)]
        else:
            self._streams = [_Stream({"table": table}, config["topic.prefix"] + table, sql.Identifier(table))
                             for table in config["table.whitelist"]]
        for stream in self._streams:
            stream.resume_from(self.context.offset(stream.partition) if self.context else None)

    def poll(self) -> list[SourceRecord]:
        now = self._clock()
        if now < self._idle_until:
            self._sleep(min(self._idle_until - now, POLL_BLOCK_S_MAX))
            if self._clock() < self._idle_until:
                return []
        records: list[SourceRecord] = []
        # Start with a different stream each poll so a busy table does not starve the rest.
        for step in range(len(self._streams)):
            rows_left = self._batch_rows_max - len(records)
            if rows_left <= 0:
                break
            stream = self._streams[(self._next_stream + step) % len(self._streams)]
            records.extend(self._read(stream, rows_left))
        self._next_stream = (self._next_stream + 1) % max(1, len(self._streams))
        if not records:
            self._idle_until = self._clock() + self._poll_interval_s
        return records

    def stop(self) -> None:
        self._close()

    def _read(self, stream: _Stream, rows_max: int) -> list[SourceRecord]:
        statement, parameters = self._select(stream, rows_max)
        try:
            if self._connection is None:
                self._connection = connect(self._url)
            with self._connection.cursor(row_factory=dict_row) as cursor:
                rows = cursor.execute(statement, parameters).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._close()
            raise RetriableError(f"reading {stream.partition} from PostgreSQL: {_first_line(error)}") from None
        records = []
        for row in rows:
            timestamp = row.get(self._timestamp_column) if self._mode != MODE_INCREMENTING else None
            value = {str(name): json_safe(column) for name, column in row.items()}
            if self._mode != MODE_TIMESTAMP:
                stream.last_id = value[self._id_column]
            if timestamp is not None:
                stream.last_timestamp = value[self._timestamp_column]
            records.append(SourceRecord(
                source_partition=stream.partition, source_offset=stream.offset(self._mode), topic=stream.topic,
                value=value, key=value[self._id_column] if self._mode != MODE_TIMESTAMP else None,
                timestamp_ms=epoch_ms(timestamp)))
        return records

    def _select(self, stream: _Stream, rows_max: int) -> tuple[sql.Composable, list]:
        id_column = sql.Identifier(self._id_column)
        ts_column = sql.Identifier(self._timestamp_column)
        if self._mode == MODE_INCREMENTING:
            if stream.last_id is None:
                return (sql.SQL("SELECT * FROM {} AS source WHERE {} IS NOT NULL ORDER BY {} LIMIT %s")
                        .format(stream.relation, id_column, id_column), [rows_max])
            return (sql.SQL("SELECT * FROM {} AS source WHERE {} > %s ORDER BY {} LIMIT %s")
                    .format(stream.relation, id_column, id_column), [stream.last_id, rows_max])
        # The delay bound is computed in the database: its clock stamped the rows.
        before_delay = sql.SQL("{} < now() - %s").format(ts_column)
        if self._mode == MODE_TIMESTAMP_INCREMENTING:
            if stream.last_timestamp is None:
                after, parameters = sql.SQL("{} IS NOT NULL").format(id_column), []
            else:
                # A row comparison, so an index on (ts, id) serves it.
                after = sql.SQL("({}, {}) > (%s, %s)").format(ts_column, id_column)
                parameters = [stream.last_timestamp, stream.last_id]
            return (sql.SQL("SELECT * FROM {} AS source WHERE {} AND {} ORDER BY {}, {} LIMIT %s")
                    .format(stream.relation, after, before_delay, ts_column, id_column),
                    [*parameters, self._delay, rows_max])
        # Timestamp only: without an id to break ties, read whole timestamp groups, up to
        # the timestamp of the rows_max-th row.
        after, parameters = sql.SQL("TRUE"), []
        if stream.last_timestamp is not None:
            after, parameters = sql.SQL("{} > %s").format(ts_column), [stream.last_timestamp]
        return (sql.SQL("SELECT * FROM {relation} AS source WHERE {after} AND {ts} <= ("
                        "SELECT max({ts}) FROM (SELECT {ts} FROM {relation} AS source WHERE {after} AND {delay} "
                        "ORDER BY {ts} LIMIT %s) AS batch) ORDER BY {ts}")
                .format(relation=stream.relation, after=after, ts=ts_column, delay=before_delay),
                [*parameters, *parameters, self._delay, rows_max])

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


# -- sink ----------------------------------------------------------------------------

INSERT_MODES = ("insert", "upsert")
PK_MODES = ("none", "record_value", "record_key")
TABLE_NAME_TOPIC = "${topic}"


def _sink_config_def() -> ConfigDef:
    return (ConfigDef()
            .define("connection.url", "password", doc=CONNECTION_URL_DOC)
            .define("table.name.format", "str", TABLE_NAME_TOPIC, "destination table; ${topic} is the record's topic")
            .define("insert.mode", "str", "insert", "insert appends (COPY); upsert updates rows by primary key",
                    choices=INSERT_MODES)
            .define("pk.mode", "str", "none", "where the primary key fields come from", choices=PK_MODES)
            .define("pk.fields", "list", [], "primary key columns (for record_key with a non-dict key: its one name)")
            .define("auto.create", "bool", False, "create a missing table from the records' fields")
            .define("auto.evolve", "bool", False, "add columns for fields the table lacks")
            .define("delete.enabled", "bool", False, "a null value (tombstone) deletes the row of its key")
            .define("batch.size", "int", 3000, "most rows per upsert or delete round trip (COPY streams a whole put)",
                    min=1))


def _validate_sink(config: dict[str, Any]) -> dict[str, Any]:
    if TABLE_NAME_TOPIC not in config["table.name.format"] and not config["table.name.format"].strip():
        raise ConnectorConfigError("table.name.format must not be empty", "table.name.format")
    if config["insert.mode"] == "upsert" and config["pk.mode"] == "none":
        raise ConnectorConfigError("insert.mode=upsert needs a primary key: set pk.mode", "pk.mode")
    if config["pk.mode"] == "record_value" and not config["pk.fields"]:
        raise ConnectorConfigError("pk.mode=record_value needs pk.fields", "pk.fields")
    if config["delete.enabled"] and config["pk.mode"] != "record_key":
        raise ConnectorConfigError("delete.enabled needs pk.mode=record_key (a tombstone has only a key)",
                                   "delete.enabled")
    return config


class PostgresSinkConnector(SinkConnector):
    """Writes topics' JSON object records to PostgreSQL tables."""

    config_def = _sink_config_def()

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return _validate_sink(super().validate(config))

    def task_class(self) -> type:
        return PostgresSinkTask


def column_type(values: list[Any]) -> str:
    """The column type ``auto.create`` and ``auto.evolve`` give a field with these values."""
    kinds = {bool if isinstance(value, bool) else type(value) for value in values if value is not None}
    if not kinds:
        return "TEXT"
    if kinds <= {int}:
        return "BIGINT"
    if kinds <= {int, float}:
        return "DOUBLE PRECISION"
    if kinds <= {bool}:
        return "BOOLEAN"
    if kinds <= {dict, list}:
        return "JSONB"
    if kinds <= {bytes}:
        return "BYTEA"
    return "TEXT"


def _adapter(type_name: str) -> Callable[[Any], Any]:
    """Converts a record field for a column of ``type_name`` (``format_type`` text)."""
    if type_name in ("json", "jsonb"):
        return lambda value: None if value is None else Jsonb(value)
    if type_name == "text" or type_name.startswith("character"):
        return lambda value: value if value is None or isinstance(value, str) else (
            json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value))
    if type_name == "bytea":  # the source (and JSON) carry bytes as base64 text
        return lambda value: base64.b64decode(value) if isinstance(value, str) else value
    return lambda value: json.dumps(value) if isinstance(value, (dict, list)) else value


class PostgresSinkTask(SinkTask):
    """Writes each ``put`` in one transaction; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._connection: psycopg.Connection | None = None
        self._columns: dict[str, dict[str, str]] = {}  # table -> column -> type, as last read

    def start(self, config: dict[str, Any]) -> None:
        config = _validate_sink(_sink_config_def().parse(config))
        self._url = config["connection.url"]
        self._table_format = config["table.name.format"]
        self._upsert = config["insert.mode"] == "upsert"
        self._pk_mode = config["pk.mode"]
        self._pk_fields: list[str] = config["pk.fields"]
        self._auto_create = config["auto.create"]
        self._auto_evolve = config["auto.evolve"]
        self._delete_enabled = config["delete.enabled"]
        self._batch_size = config["batch.size"]

    def put(self, records: list[SinkRecord]) -> None:
        if not records:
            return
        # Per table, consecutive runs of writes or deletes, in record order.
        runs: dict[str, list[tuple[str, list[tuple[SinkRecord, dict]]]]] = {}
        for record in records:
            operation, row = self._row(record)
            table_runs = runs.setdefault(self._table_format.replace(TABLE_NAME_TOPIC, record.topic), [])
            if not table_runs or table_runs[-1][0] != operation:
                table_runs.append((operation, []))
            table_runs[-1][1].append((record, row))
        try:
            if self._connection is None:
                self._connection = connect(self._url)
            with self._connection.transaction():
                for table, table_runs in runs.items():
                    for operation, rows in table_runs:
                        if operation == "delete":
                            self._delete(table, rows)
                        else:
                            self._write(table, rows)
        except BaseException as error:
            # The transaction rolled back, with any table it created or altered, or the
            # table changed under us: read the catalog again next time.
            self._columns.clear()
            if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
                self._close()
                raise RetriableError(f"writing to PostgreSQL: {_first_line(error)}") from None
            raise

    def flush(self, offsets: dict[tuple[str, int], int]) -> None:
        """Nothing to do: every ``put`` committed before it returned."""

    def stop(self) -> None:
        self._close()

    def _row(self, record: SinkRecord) -> tuple[str, dict]:
        where = f"record {record.topic}/{record.partition}@{record.offset}"
        if record.value is None and self._delete_enabled:
            return "delete", self._key_fields(record, where)
        if not isinstance(record.value, dict):
            raise ValueError(f"{where}: the PostgreSQL sink needs a JSON object value, got "
                             f"{type(record.value).__name__}")
        row = {str(name): value for name, value in record.value.items()}
        if self._pk_mode == "record_key":
            row.update(self._key_fields(record, where))
        elif self._pk_mode == "record_value":
            missing = [name for name in self._pk_fields if row.get(name) is None]
            if missing:
                raise ValueError(f"{where}: primary key field(s) {', '.join(missing)} missing or null")
        if not row:
            raise ValueError(f"{where}: an empty JSON object has no column to write")
        return "write", row

    def _key_fields(self, record: SinkRecord, where: str) -> dict:
        if isinstance(record.key, dict):
            names = self._pk_fields or sorted(map(str, record.key))
            fields = {name: record.key.get(name) for name in names}
        elif len(self._pk_fields) == 1:
            fields = {self._pk_fields[0]: record.key}
        else:
            raise ValueError(f"{where}: pk.mode=record_key with a non-object key needs exactly one pk.fields name")
        if not fields or any(value is None for value in fields.values()):
            raise ValueError(f"{where}: the record key has a null primary key field")
        return fields

    def _primary_key(self, rows: list[tuple[SinkRecord, dict]]) -> list[str]:
        if self._pk_mode == "record_key" and not self._pk_fields:
            return sorted(map(str, rows[0][0].key))
        return list(self._pk_fields)

    def _write(self, table: str, rows: list[tuple[SinkRecord, dict]]) -> None:
        names = list(dict.fromkeys(name for _, row in rows for name in row))
        primary_key = self._primary_key(rows) if self._pk_mode != "none" else []
        columns = self._ensure_columns(table, names, [row for _, row in rows], primary_key)
        adapters = [_adapter(columns[name]) for name in names]
        values = [[adapt(row.get(name)) for adapt, name in zip(adapters, names)] for _, row in rows]
        column_list = sql.SQL(", ").join(map(sql.Identifier, names))
        cursor = self._connection.cursor()
        if not self._upsert:
            with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), column_list)) as copy:
                for value in values:
                    copy.write_row(value)
            return
        # One statement must not touch a row twice: keep the last record per key, which
        # is what applying them one by one would leave.
        latest = {json.dumps([row.get(name) for name in primary_key], default=str): value
                  for (_, row), value in zip(rows, values)}
        updates = [name for name in names if name not in primary_key]
        on_conflict = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name)) for name in updates))
            if updates else sql.SQL("DO NOTHING"))
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
            sql.Identifier(table), column_list, sql.SQL(", ").join([sql.Placeholder()] * len(names)),
            sql.SQL(", ").join(map(sql.Identifier, primary_key)), on_conflict)
        pending = list(latest.values())
        for start in range(0, len(pending), self._batch_size):
            cursor.executemany(statement, pending[start:start + self._batch_size])

    def _delete(self, table: str, rows: list[tuple[SinkRecord, dict]]) -> None:
        if table not in self._columns and self._table_columns(table) is None:
            return  # nothing to delete from a table that does not exist
        names = list(rows[0][1])
        statement = sql.SQL("DELETE FROM {} WHERE {}").format(sql.Identifier(table), sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(name)) for name in names))
        keys = [[row.get(name) for name in names] for _, row in rows]
        for start in range(0, len(keys), self._batch_size):
            self._connection.cursor().executemany(statement, keys[start:start + self._batch_size])

    def _ensure_columns(self, table: str, names: list[str], rows: list[dict], primary_key: list[str]) -> dict[str, str]:
        """The table's column types, after creating the table or adding columns as
        configured; raise ``ConnectError`` when it lacks one and may not change."""
        columns = self._columns.get(table) or self._table_columns(table)
        if columns is None:
            if not self._auto_create:
                raise ConnectError(f"table {table!r} does not exist and auto.create is false")
            definitions = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(
                column_type([row.get(name) for row in rows]))) for name in names]
            if primary_key:
                definitions.append(sql.SQL("PRIMARY KEY ({})").format(
                    sql.SQL(", ").join(map(sql.Identifier, primary_key))))
            self._connection.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                sql.Identifier(table), sql.SQL(", ").join(definitions)))
            columns = self._table_columns(table)
        missing = [name for name in names if name not in columns]
        if missing:
            if not self._auto_evolve:
                raise ConnectError(f"table {table!r} has no column(s) {', '.join(missing)} and auto.evolve is false")
            for name in missing:
                self._connection.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(table), sql.Identifier(name),
                    sql.SQL(column_type([row.get(name) for row in rows]))))
            columns = self._table_columns(table)
        self._columns[table] = columns
        return columns

    def _table_columns(self, table: str) -> dict[str, str] | None:
        """Column name -> type of ``table`` as the catalog has it now, None if absent."""
        rows = self._connection.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [sql.Identifier(table).as_string(self._connection)]).fetchall()
        return {name: type_name for name, type_name in rows} or None

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
