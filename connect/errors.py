"""Connect's errors, under ``rafka.RafkaError``.

Hierarchy::

    RafkaError
    └── ConnectError                     anything Connect refuses or cannot do
        ├── ConnectorConfigError         a connector config is invalid (REST 400); ``field`` names the key
        ├── ConnectorNotFoundError       no connector of that name (REST 404)
        ├── ConnectorExistsError         creating a connector that exists (REST 409)
        ├── PluginNotFoundError          ``connector.class`` names no known plugin (REST 400)
        └── RetriableError (retriable)   a task cannot make progress now; the runtime calls it again

A task raises ``RetriableError`` for a condition that should pass (a database restarting,
a lock timeout): the runtime backs off and retries the same call with the same records.
Any other exception from a task is a failure: with ``errors.tolerance=all`` a sink's
failing records go to the dead-letter queue; otherwise the task fails, its status says
why, and the runtime restarts it with backoff.
"""

from __future__ import annotations

from rafka.errors import InvalidConfigError, RafkaError


class ConnectError(RafkaError):
    """Connect refused a request or could not do it."""

    status_code = 500


class ConnectorConfigError(ConnectError, InvalidConfigError):
    """A connector config is invalid; ``field`` is the key at fault (or None). The
    message always names the full key, so a REST answer alone tells the user which one."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        if field and field not in message:
            message = f"{field}: {message}"
        super().__init__(message)
        self.field = field


class ConnectorNotFoundError(ConnectError, KeyError):
    """No connector (or task) of that name exists."""

    status_code = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConnectorExistsError(ConnectError):
    """A connector of that name already exists."""

    status_code = 409


class PluginNotFoundError(ConnectorConfigError):
    """``connector.class`` (or a transform or converter type) names no known plugin."""


class RetriableError(ConnectError):
    """A transient failure: the runtime retries the same call after a backoff."""

    retriable = True
