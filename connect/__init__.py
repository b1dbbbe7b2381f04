"""rafka Connect: moving data between rafka topics and other systems.

Plugins implement the contracts in ``rafka.connect.api`` (``SourceConnector`` and
``SourceTask``, ``SinkConnector`` and ``SinkTask``). The runtime runs every task in its
own Ray actor, keeps source offsets in ``__connect_offsets``, connector configs in
``__connect_configs`` and status in ``__connect_status``, and serves a REST API shaped
like Kafka Connect's (``rafka.connect.rest``). ``Connect`` is the Python handle.
"""

from rafka.connect.api import (
    Connector,
    ConnectorContext,
    SinkConnector,
    SinkRecord,
    SinkTask,
    SinkTaskContext,
    SourceConnector,
    SourceRecord,
    SourceTask,
    SourceTaskContext,
)
from rafka.connect.config import REQUIRED, ConfigDef, ConfigField
from rafka.connect.errors import (
    ConnectError,
    ConnectorConfigError,
    ConnectorExistsError,
    ConnectorNotFoundError,
    PluginNotFoundError,
    RetriableError,
)


def __getattr__(name: str):
    # The runtime imports Ray; load it on first use so plugins can import the contracts cheaply.
    if name == "Connect":
        from rafka.connect.client import Connect

        return Connect
    raise AttributeError(f"module 'rafka.connect' has no attribute {name!r}")


__all__ = [
    "Connect",
    "ConfigDef",
    "ConfigField",
    "ConnectError",
    "Connector",
    "ConnectorConfigError",
    "ConnectorContext",
    "ConnectorExistsError",
    "ConnectorNotFoundError",
    "PluginNotFoundError",
    "REQUIRED",
    "RetriableError",
    "SinkConnector",
    "SinkRecord",
    "SinkTask",
    "SinkTaskContext",
    "SourceConnector",
    "SourceRecord",
    "SourceTask",
    "SourceTaskContext",
]
