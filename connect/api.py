"""The connector contracts: what a source or sink plugin implements, and when the
runtime calls it.

A **connector** (``SourceConnector`` / ``SinkConnector``) is configuration and planning:
it validates its config and splits the work into at most ``tasks.max`` task configs. It
moves no data. A **task** (``SourceTask`` / ``SinkTask``) moves data; the runtime runs
each task in its own Ray actor (``connect/worker.py``) and calls its methods from one
thread only, so a task needs no locks of its own.

Lifecycle of a connector, in the herder actor::

    validate(config) -> start(config) -> task_configs(max_tasks) ... stop()

``task_configs`` is called again when the config changes or a task asks for
reconfiguration (``context.request_reconfiguration()``).

Delivery guarantee: **at least once**, for sources and sinks alike.

- Source: a record's source offset is committed to ``__connect_offsets`` only after the
  record (and every record before it from the same task) was acknowledged by the
  cluster with ``acks=all``. After a crash the task restarts from the last committed
  offset, so records after that offset may be produced twice; none is lost. Offsets are
  committed every ``offset.flush.interval.ms`` and when the task stops.
- Sink: the consumer group ``connect-<name>`` commits an offset only after ``flush``
  (or ``pre_commit``) for the records before it returned. After a crash the records
  after the last commit are delivered again, so ``put`` may see a record twice; a sink
  that wants no duplicates makes its writes idempotent (upsert by key) or encodes the
  offsets it has written in its output and rewinds with ``context.offset`` in ``open``
  (the Parquet sink does this).

Not guaranteed: ordering across partitions (within one topic partition, or within one
source partition, records keep their order); that ``stop`` is called (a killed actor just
dies); that a record is seen by ``put`` only once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from rafka import __version__
from rafka.connect.config import ConfigDef

# -- records -------------------------------------------------------------------------


@dataclass
class SourceRecord:
    """One record a source task emits.

    ``source_partition`` names the stream it came from (a file, a table) and
    ``source_offset`` is where to resume *after* this record; both are JSON-able dicts.
    The runtime stores the latest offset per source partition. ``key`` and ``value`` are
    Python values (``bytes``, ``str``, numbers, ``dict``/``list`` for JSON) that the
    configured converters turn into bytes. ``topic`` may be None when the connector's
    ``topic`` config (or a routing transform) sets it. ``partition`` None lets the
    producer's partitioner choose (by key)."""

    source_partition: dict
    source_offset: dict
    topic: str | None
    value: Any
    key: Any = None
    partition: int | None = None
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class SinkRecord:
    """One record a sink task receives: where it was read from, and its key and value as
    the converters decoded them (``bytes``, ``str``, or JSON values)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: Any
    value: Any
    headers: list[tuple[str, bytes]] = field(default_factory=list)


# -- contexts ------------------------------------------------------------------------


class ConnectorContext:
    """What the runtime offers a connector."""

    def __init__(self, name: str, request_reconfiguration: Callable[[], None],
                 raise_error: Callable[[BaseException], None]) -> None:
        self.name = name
        self._request_reconfiguration = request_reconfiguration
        self._raise_error = raise_error

    def request_reconfiguration(self) -> None:
        """Ask the runtime to call ``task_configs`` again and restart the tasks (the
        input changed: a new table, a new file)."""
        self._request_reconfiguration()

    def raise_error(self, error: BaseException) -> None:
        """Mark the connector FAILED with ``error`` (from a thread the connector runs)."""
        self._raise_error(error)


class SourceTaskContext:
    """What the runtime offers a source task: the committed offsets of its partitions."""

    def __init__(self, name: str, task_id: int, offsets: dict[str, dict]) -> None:
        self.connector_name = name
        self.task_id = task_id
        self._offsets = offsets

    def offset(self, source_partition: dict) -> dict | None:
        """The last committed ``source_offset`` for ``source_partition``, or None when
        nothing was committed for it yet. Call it in ``start``."""
        from rafka.connect.offsets import partition_key

        return self._offsets.get(partition_key(source_partition))


class SinkTaskContext:
    """What the runtime offers a sink task: rewinding and pausing partitions."""

    def __init__(self, name: str, task_id: int) -> None:
        self.connector_name = name
        self.task_id = task_id
        self.requested_offsets: dict[tuple[str, int], int] = {}
        self.requested_pauses: set[tuple[str, int]] = set()
        self.requested_resumes: set[tuple[str, int]] = set()
        self.commit_requested = False

    def offset(self, topic: str, partition: int, offset: int) -> None:
        """Read ``(topic, partition)`` from ``offset`` on (the next record ``put`` sees
        from it). Call it in ``open`` to resume where the sink's own output says, or in
        ``put`` to re-read."""
        self.requested_offsets[(topic, partition)] = offset

    def pause(self, topic: str, partition: int) -> None:
        self.requested_pauses.add((topic, partition))

    def resume(self, topic: str, partition: int) -> None:
        self.requested_resumes.add((topic, partition))

    def request_commit(self) -> None:
        """Ask for a flush and an offset commit soon, before the next interval."""
        self.commit_requested = True


# -- connectors ----------------------------------------------------------------------


class Connector(ABC):
    """Base of every connector. Subclasses set ``config_def`` (the keys they read) and
    implement ``task_class`` and ``task_configs``.

    ``validate(config)`` runs on create and update, before anything is stored: raise
    ``ConnectorConfigError`` (naming the key) for a bad value. ``start(config)`` runs
    once per start of the connector in the herder actor, ``stop()`` when it is deleted,
    paused for reconfiguration, or the herder stops."""

    config_def: ConfigDef = ConfigDef()
    # Config the runtime merges *under* the user's config (user keys win), e.g. the
    # converter that matches the values this plugin emits or expects.
    default_config: dict = {}
    version: str = __version__  # a plugin outside rafka gives its own

    def __init__(self) -> None:
        self.context: ConnectorContext | None = None
        self.config: dict[str, Any] = {}

    def initialize(self, context: ConnectorContext) -> None:
        self.context = context

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """Parse ``config`` with ``config_def`` and return it; raise
        ``ConnectorConfigError`` for a bad value. Override to check more (call super)."""
        return self.config_def.parse(config)

    def start(self, config: dict[str, Any]) -> None:
        """Called once the config is valid; ``config`` is what ``validate`` returned."""
        self.config = config

    @abstractmethod
    def task_class(self) -> type:
        """The ``SourceTask`` or ``SinkTask`` subclass that does this connector's work."""

    @abstractmethod
    def task_configs(self, max_tasks: int) -> list[dict[str, Any]]:
        """Split the work into at most ``max_tasks`` configs, one per task to run. Each
        is a JSON-able dict; the runtime adds the connector's own config under it."""

    def stop(self) -> None:
        """Release what ``start`` acquired."""


class SourceConnector(Connector):
    """A connector that reads an external system into topics."""


class SinkConnector(Connector):
    """A connector that writes topics to an external system. The runtime reads the
    topics named by ``topics`` (a list) or ``topics.regex`` through the consumer group
    ``connect-<name>``; every task gets the same config and the group spreads the topic
    partitions over the tasks."""

    def task_configs(self, max_tasks: int) -> list[dict[str, Any]]:
        return [dict(self.config) for _ in range(max_tasks)]


# -- tasks ---------------------------------------------------------------------------


class SourceTask(ABC):
    """Reads from an external system.

    Called, in this order, from one thread of the task's actor:

    - ``start(config)`` once. Read ``self.context.offset(source_partition)`` here and
      resume after it (the offset is the one stored with the last record acknowledged
      and committed; None on the first run).
    - ``poll()`` in a loop while the task runs and is not paused. Return the records
      available now (a list, possibly empty); block at most about a second when there
      is nothing, so pause and stop are prompt. Return batches, not single records: the
      runtime sends one produce batch per poll.
    - ``commit()`` after the offsets of the records polled so far were committed.
    - ``stop()`` once when the task stops (not called when the actor is killed).

    Raise ``RetriableError`` from ``poll`` for a transient failure (the runtime backs
    off and polls again); any other exception fails the task."""

    def __init__(self) -> None:
        self.context: SourceTaskContext | None = None

    def initialize(self, context: SourceTaskContext) -> None:
        self.context = context

    @abstractmethod
    def start(self, config: dict[str, Any]) -> None: ...

    @abstractmethod
    def poll(self) -> list[SourceRecord]: ...

    def commit(self) -> None:
        """The offsets of every record returned by ``poll`` so far are committed."""

    def stop(self) -> None: ...


class SinkTask(ABC):
    """Writes to an external system.

    Called, in this order, from one thread of the task's actor:

    - ``start(config)`` once.
    - ``open(partitions)`` when the consumer group assigns partitions (a list of
      ``(topic, partition)``); rewind with ``self.context.offset`` here if the sink
      keeps its own record of what it wrote.
    - ``put(records)`` with each batch read, in offset order per partition; called with
      an empty list when nothing arrived for a while, so time-based work (rolling a
      file) can happen.
    - ``pre_commit(offsets)`` every ``offset.flush.interval.ms``, before a rebalance and
      on stop, with the next offset to read per partition; the default calls
      ``flush(offsets)`` and returns ``offsets``. Return the offsets that are safe to
      commit (everything before them durably written); the runtime commits those.
    - ``close(partitions)`` when partitions are revoked (after their ``pre_commit``).
    - ``stop()`` once when the task stops (not called when the actor is killed).

    Raise ``RetriableError`` for a transient failure: the runtime backs off and calls
    ``put`` again with the same records. Any other exception from ``put`` is a failure
    of those records: with ``errors.tolerance=all`` the runtime retries them one at a
    time and sends only the ones that still fail to the dead-letter queue; with
    ``none`` the task fails (nothing after the last commit is lost: it is read again)."""

    def __init__(self) -> None:
        self.context: SinkTaskContext | None = None

    def initialize(self, context: SinkTaskContext) -> None:
        self.context = context

    @abstractmethod
    def start(self, config: dict[str, Any]) -> None: ...

    def open(self, partitions: list[tuple[str, int]]) -> None: ...

    @abstractmethod
    def put(self, records: list[SinkRecord]) -> None: ...

    def flush(self, offsets: dict[tuple[str, int], int]) -> None:
        """Make every record ``put`` so far durable in the external system."""

    def pre_commit(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        self.flush(offsets)
        return offsets

    def close(self, partitions: list[tuple[str, int]]) -> None: ...

    def stop(self) -> None: ...
