"""The PostgreSQL source and sink tasks against a real server (``postgres_url``), driven
the way the Connect runtime drives them: initialize, start, poll or put, stop."""

import base64
import time
import uuid

import psycopg
import pytest

from rafka.connect import (
    ConnectError,
    ConnectorConfigError,
    RetriableError,
    SinkRecord,
    SinkTaskContext,
    SourceTaskContext,
)
from rafka.connect.connectors.postgres import (
    PostgresSinkConnector,
    PostgresSinkTask,
    PostgresSourceConnector,
    PostgresSourceTask,
)
from rafka.connect.offsets import partition_key


@pytest.fixture
def table(request) -> str:
    """A fresh table name for this test (mixed case and a dash: names are quoted)."""
    return f"{request.node.name[5:30]}-{uuid.uuid4().hex[:6]}"


def execute(url: str, statement: str, parameters=None) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


def create_events(url: str, table: str, rows: int = 0) -> None:
    execute(url, f'CREATE TABLE "{table}" (id BIGSERIAL PRIMARY KEY, name TEXT, '
                 f"updated_at TIMESTAMPTZ NOT NULL DEFAULT now() - interval '1 minute')")
    if rows:
        execute(url, f'INSERT INTO "{table}" (name) SELECT \'row-\' || n FROM generate_series(1, %s) AS n', [rows])


def start_source(url: str, offsets: dict | None = None, **config) -> PostgresSourceTask:
    task = PostgresSourceTask()
    task.initialize(SourceTaskContext("pg-source", 0, offsets or {}))
    task.start({"connection.url": url, "poll.interval.ms": 10, **config})
    return task


def poll_until(task: PostgresSourceTask, count: int, timeout_s: float = 5.0) -> list:
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(task.poll())
    return records


def start_sink(url: str, **config) -> PostgresSinkTask:
    task = PostgresSinkTask()
    task.initialize(SinkTaskContext("pg-sink", 0))
    task.start({"connection.url": url, "auto.create": True, **config})
    return task


def sink_records(topic: str, values: list, first_offset: int = 0, keys: list | None = None) -> list[SinkRecord]:
    return [SinkRecord(topic=topic, partition=0, offset=first_offset + index, timestamp_ms=0,
                       key=keys[index] if keys else None, value=value) for index, value in enumerate(values)]


# -- source --------------------------------------------------------------------------


def test_poll_incrementing_reads_all_rows_then_only_new_ones(postgres_url, table):
    create_events(postgres_url, table, rows=3)
    task = start_source(postgres_url, **{"table.whitelist": table, "topic.prefix": "pg-"})
    first = poll_until(task, 3)
    execute(postgres_url, f'INSERT INTO "{table}" (name) VALUES (%s)', ["row-4"])
    second = poll_until(task, 1)
    task.stop()
    assert [record.value["name"] for record in first] == ["row-1", "row-2", "row-3"]
    assert [(record.key, record.value["name"]) for record in second] == [(4, "row-4")]
    assert second[0].topic == "pg-" + table
    assert second[0].source_partition == {"table": table} and second[0].source_offset == {"incrementing": 4}


def test_start_with_committed_offset_resumes_after_it(postgres_url, table):
    create_events(postgres_url, table, rows=5)
    offsets = {partition_key({"table": table}): {"incrementing": 3}}
    task = start_source(postgres_url, offsets, **{"table.whitelist": table})
    records = poll_until(task, 2)
    assert task.poll() == []
    task.stop()
    assert [record.key for record in records] == [4, 5]


def test_poll_timestamp_incrementing_reads_updated_rows_again(postgres_url, table):
    create_events(postgres_url, table)
    execute(postgres_url, f'INSERT INTO "{table}" (name, updated_at) VALUES '
                          "('a', '2024-01-01 10:00+00'), ('b', '2024-01-01 11:00+00')")
    task = start_source(postgres_url, **{"table.whitelist": table, "mode": "timestamp+incrementing",
                                         "timestamp.column.name": "updated_at"})
    assert len(poll_until(task, 2)) == 2
    execute(postgres_url, f"UPDATE \"{table}\" SET name = 'a2', updated_at = '2024-01-02 10:00+00' WHERE id = 1")
    updated = poll_until(task, 1)
    task.stop()
    assert [(record.key, record.value["name"]) for record in updated] == [(1, "a2")]
    assert updated[0].source_offset == {"timestamp": "2024-01-02T10:00:00+00:00", "incrementing": 1}
    assert updated[0].timestamp_ms == 1704189600000


def test_poll_timestamp_incrementing_reads_equal_timestamp_with_higher_id_only(postgres_url, table):
    create_events(postgres_url, table)
    execute(postgres_url, f'INSERT INTO "{table}" (name, updated_at) VALUES '
                          "('a', '2024-01-01 10:00+00'), ('b', '2024-01-01 10:00+00'), ('c', '2024-01-01 10:00+00')")
    offsets = {partition_key({"table": table}): {"timestamp": "2024-01-01T10:00:00+00:00", "incrementing": 2}}
    task = start_source(postgres_url, offsets, **{"table.whitelist": table, "mode": "timestamp+incrementing",
                                                  "timestamp.column.name": "updated_at"})
    records = poll_until(task, 1)
    assert task.poll() == []
    task.stop()
    assert [record.key for record in records] == [3]


def test_poll_timestamp_delay_holds_back_recent_rows(postgres_url, table):
    create_events(postgres_url, table)
    execute(postgres_url, f'INSERT INTO "{table}" (name, updated_at) VALUES '
                          "('old', now() - interval '2 minutes'), ('recent', now())")
    task = start_source(postgres_url, **{"table.whitelist": table, "mode": "timestamp+incrementing",
                                         "timestamp.column.name": "updated_at", "timestamp.delay.interval.ms": 60000})
    records = poll_until(task, 1)
    assert task.poll() == []
    task.stop()
    assert [record.value["name"] for record in records] == ["old"]


def test_poll_timestamp_mode_reads_whole_timestamp_groups(postgres_url, table):
    create_events(postgres_url, table)
    execute(postgres_url, f'INSERT INTO "{table}" (name, updated_at) VALUES ('
                          "'a', '2024-01-01 10:00+00'), ('b', '2024-01-01 10:00+00'), ('c', '2024-01-01 10:00+00'), "
                          "('d', '2024-01-01 11:00+00')")
    task = start_source(postgres_url, **{"table.whitelist": table, "mode": "timestamp",
                                         "timestamp.column.name": "updated_at", "batch.max.rows": 2})
    first = task.poll()
    second = task.poll()
    task.stop()
    assert sorted(record.value["name"] for record in first) == ["a", "b", "c"]
    assert [record.value["name"] for record in second] == ["d"]
    assert second[0].key is None and second[0].source_offset == {"timestamp": "2024-01-01T11:00:00+00:00"}


def test_poll_batch_max_rows_bounds_one_poll_across_tables(postgres_url, table):
    other = table + "-b"
    create_events(postgres_url, table, rows=3)
    create_events(postgres_url, other, rows=3)
    task = start_source(postgres_url, **{"table.whitelist": [table, other], "batch.max.rows": 4})
    first = task.poll()
    rest = poll_until(task, 2)
    task.stop()
    assert len(first) == 4
    assert sorted((record.topic, record.key) for record in first + rest) == sorted(
        [(table, id_) for id_ in (1, 2, 3)] + [(other, id_) for id_ in (1, 2, 3)])


def test_poll_converts_column_values_to_json_safe_types(postgres_url, table):
    execute(postgres_url, f'CREATE TABLE "{table}" (id INT PRIMARY KEY, amount NUMERIC(10, 2), day DATE, '
                          "at TIMESTAMP, blob BYTEA, ident UUID, doc JSONB, tags TEXT[], flag BOOLEAN, ratio REAL)")
    execute(postgres_url, f'INSERT INTO "{table}" VALUES (1, 12.50, \'2024-02-29\', \'2024-02-29 12:30:00.5\', '
                          "'\\x0001ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2]}', "
                          "'{x,y}', true, 0.5)")
    task = start_source(postgres_url, **{"table.whitelist": table})
    [record] = poll_until(task, 1)
    task.stop()
    assert record.value == {"id": 1, "amount": "12.50", "day": "2024-02-29", "at": "2024-02-29T12:30:00.500000",
                            "blob": base64.b64encode(b"\x00\x01\xff").decode(),
                            "ident": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "doc": {"a": [1, 2]},
                            "tags": ["x", "y"], "flag": True, "ratio": 0.5}


def test_poll_custom_query_reads_into_the_prefix_topic(postgres_url, table):
    create_events(postgres_url, table, rows=4)
    query = f"SELECT id, upper(name) AS name FROM \"{table}\" WHERE id % 2 = 0"
    task = start_source(postgres_url, **{"query": query, "topic.prefix": "evens"})
    records = poll_until(task, 2)
    task.stop()
    assert [(record.topic, record.value) for record in records] == [("evens", {"id": 2, "name": "ROW-2"}),
                                                                    ("evens", {"id": 4, "name": "ROW-4"})]
    assert records[0].source_partition == {"query": query}


def test_poll_when_idle_returns_within_a_second(postgres_url, table):
    create_events(postgres_url, table)
    task = start_source(postgres_url, **{"table.whitelist": table, "poll.interval.ms": 60000})
    sleeps = []
    task._sleep = sleeps.append
    assert task.poll() == [] and task.poll() == []
    task.stop()
    assert sleeps and max(sleeps) <= 1.0


def test_poll_connection_refused_raises_retriable_error_without_password(table):
    with socket_closed_port() as port:
        task = start_source(f"postgresql://user:s3cret@127.0.0.1:{port}/db", **{"table.whitelist": table})
        with pytest.raises(RetriableError) as error:
            task.poll()
    assert "s3cret" not in str(error.value)


def test_poll_after_connection_lost_raises_retriable_error_then_reconnects(postgres_url, table):
    create_events(postgres_url, table, rows=1)
    task = start_source(postgres_url, **{"table.whitelist": table})
    assert len(poll_until(task, 1)) == 1
    execute(postgres_url, "SELECT pg_terminate_backend(%s)", [task._connection.info.backend_pid])
    execute(postgres_url, f'INSERT INTO "{table}" (name) VALUES (%s)', ["row-2"])
    with pytest.raises(RetriableError):
        task.poll()
    records = poll_until(task, 1)
    task.stop()
    assert [record.key for record in records] == [2]


def test_poll_malformed_connection_url_fails_without_echoing_it(table):
    task = start_source("not a conninfo s3cret", **{"table.whitelist": table})
    with pytest.raises(ConnectError) as error:
        task.poll()
    assert not isinstance(error.value, RetriableError) and "s3cret" not in str(error.value)


def socket_closed_port():
    """A context giving a 127.0.0.1 port nothing listens on."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            yield probe.getsockname()[1]  # bound but not listening: connections are refused

    return closed()


def test_task_configs_deal_tables_round_robin():
    connector = PostgresSourceConnector()
    connector.start(connector.validate({"connection.url": "postgresql://x@127.0.0.1/db",
                                        "table.whitelist": "a,b,c,d,e"}))
    assert [config["tables"] for config in connector.task_configs(2)] == [["a", "c", "e"], ["b", "d"]]
    assert [config["tables"] for config in connector.task_configs(9)] == [["a"], ["b"], ["c"], ["d"], ["e"]]


def test_start_with_task_config_reads_only_its_tables(postgres_url, table):
    tables = [f"{table}-{index}" for index in range(3)]
    for name in tables:
        create_events(postgres_url, name, rows=1)
    connector = PostgresSourceConnector()
    connector.start(connector.validate({"connection.url": postgres_url, "table.whitelist": tables}))
    task = PostgresSourceTask()
    task.initialize(SourceTaskContext("pg-source", 1, {}))
    task.start(connector.task_configs(2)[1])
    records = poll_until(task, 1)
    assert task.poll() == []
    task.stop()
    assert [record.topic for record in records] == [tables[1]]


@pytest.mark.parametrize("config, field", [
    ({"table.whitelist": "t"}, "connection.url"),
    ({"connection.url": "postgresql://x@h/db", "table.whitelist": "t", "mode": "bulk"}, "mode"),
    ({"connection.url": "postgresql://x@h/db"}, "table.whitelist"),
    ({"connection.url": "postgresql://x@h/db", "table.whitelist": "t", "mode": "timestamp"}, "timestamp.column.name"),
    ({"connection.url": "postgresql://x@h/db", "table.whitelist": "t", "batch.max.rows": "0"}, "batch.max.rows"),
])
def test_validate_source_bad_config_names_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as error:
        PostgresSourceConnector().validate(config)
    assert error.value.field == field


# -- sink ----------------------------------------------------------------------------


def test_put_insert_auto_creates_table_with_column_types(postgres_url, table):
    task = start_sink(postgres_url)
    task.put(sink_records(table, [{"id": 1, "price": 9.5, "ok": True, "name": "a", "doc": {"k": [1]}, "note": None},
                                  {"id": 2, "price": 3, "ok": False, "name": "b", "doc": [1, 2], "note": None}]))
    task.stop()
    types = dict(execute(postgres_url, "SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_name = %s", [table]))
    assert types == {"id": "bigint", "price": "double precision", "ok": "boolean", "name": "text", "doc": "jsonb",
                     "note": "text"}
    assert execute(postgres_url, f'SELECT id, price, ok, name, doc, note FROM "{table}" ORDER BY id') == [
        (1, 9.5, True, "a", {"k": [1]}, None), (2, 3.0, False, "b", [1, 2], None)]


def test_put_upsert_redelivery_updates_rows_in_place(postgres_url, table):
    task = start_sink(postgres_url, **{"insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id"})
    batch = sink_records(table, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 1, "name": "a2"}])
    task.put(batch)
    task.put(batch)  # at-least-once redelivery of the same records
    task.put(sink_records(table, [{"id": 2, "name": "b2"}], first_offset=3))
    task.stop()
    assert execute(postgres_url, f'SELECT id, name FROM "{table}" ORDER BY id') == [(1, "a2"), (2, "b2")]


def test_put_tombstone_with_delete_enabled_deletes_the_keyed_row(postgres_url, table):
    task = start_sink(postgres_url, **{"insert.mode": "upsert", "pk.mode": "record_key", "pk.fields": "id",
                                       "delete.enabled": "true"})
    task.put(sink_records(table, [{"name": "a"}, {"name": "b"}, None], keys=[1, 2, 1]))
    task.stop()
    assert execute(postgres_url, f'SELECT id, name FROM "{table}"') == [(2, "b")]


def test_put_auto_evolve_adds_missing_columns(postgres_url, table):
    task = start_sink(postgres_url, **{"auto.evolve": True})
    task.put(sink_records(table, [{"id": 1}]))
    task.put(sink_records(table, [{"id": 2, "extra": "x"}], first_offset=1))
    task.stop()
    assert execute(postgres_url, f'SELECT id, extra FROM "{table}" ORDER BY id') == [(1, None), (2, "x")]


def test_put_non_object_value_raises_value_error_naming_the_record(postgres_url, table):
    task = start_sink(postgres_url)
    with pytest.raises(ValueError, match=f"{table}/0@1"):
        task.put(sink_records(table, [{"id": 1}, "not an object"]))
    task.stop()


def test_put_missing_table_without_auto_create_fails_and_writes_nothing(postgres_url, table):
    task = start_sink(postgres_url, **{"auto.create": False})
    with pytest.raises(Exception, match="auto.create"):
        task.put(sink_records(table, [{"id": 1}]))
    task.stop()
    assert execute(postgres_url, "SELECT to_regclass(%s)::text", [f'"{table}"']) == [(None,)]


def test_put_connection_refused_raises_retriable_error(table):
    with socket_closed_port() as port:
        task = start_sink(f"postgresql://user:s3cret@127.0.0.1:{port}/db")
        with pytest.raises(RetriableError) as error:
            task.put(sink_records(table, [{"id": 1}]))
    assert "s3cret" not in str(error.value)


def test_source_records_round_trip_through_the_sink(postgres_url, table):
    create_events(postgres_url, table, rows=3)
    source = start_source(postgres_url, **{"table.whitelist": table, "topic.prefix": "copy-"})
    records = poll_until(source, 3)
    source.stop()
    sink = start_sink(postgres_url, **{"insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id"})
    sink.put([SinkRecord(topic=record.topic, partition=0, offset=index, timestamp_ms=0, key=record.key,
                         value=record.value) for index, record in enumerate(records)])
    sink.stop()
    assert execute(postgres_url, f'SELECT id, name FROM "copy-{table}" ORDER BY id') == [
        (1, "row-1"), (2, "row-2"), (3, "row-3")]


@pytest.mark.parametrize("config, field", [
    ({"table.name.format": "t"}, "connection.url"),
    ({"connection.url": "postgresql://x@h/db", "insert.mode": "merge"}, "insert.mode"),
    ({"connection.url": "postgresql://x@h/db", "insert.mode": "upsert"}, "pk.mode"),
    ({"connection.url": "postgresql://x@h/db", "pk.mode": "record_value"}, "pk.fields"),
    ({"connection.url": "postgresql://x@h/db", "delete.enabled": "true"}, "delete.enabled"),
])
def test_validate_sink_bad_config_names_the_key(config, field):
    with pytest.raises(ConnectorConfigError) as error:
        PostgresSinkConnector().validate(config)
    assert error.value.field == field
