"""The keys every connector config may carry, beside its plugin's own.

``validate(name, config)`` is what create and update run before anything is stored: it
resolves the plugin, merges the plugin's ``default_config`` under the user's keys,
parses the runtime keys below and the plugin's ``config_def``, builds the converters and
transforms once (so a bad one is refused now, not in a task later), and raises
``ConnectorConfigError`` whose ``field`` names the key at fault.
"""

from __future__ import annotations

import re
from typing import Any

from rafka.connect.config import ConfigDef, ConfigField
from rafka.connect.errors import ConnectorConfigError
from rafka.connect.plugins import connector_type, resolve
from rafka.connect.policy import DEFAULT_POLICY, ConnectPolicy

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
CONNECTOR_CLASS = "connector.class"

RUNTIME_CONFIG = ConfigDef([
    ConfigField(CONNECTOR_CLASS, "str", doc="the connector plugin: a built-in name or module.Class"),
    ConfigField("tasks.max", "int", 1, "the most tasks (Ray actors) to run", min=1),
    ConfigField("key.converter", "str", "string", "bytes, string or json (or Kafka's class names)"),
    ConfigField("value.converter", "str", "json", "bytes, string or json (or Kafka's class names)"),
    ConfigField("transforms", "list", [], "aliases of the single-message transforms to apply, in order"),
    ConfigField("errors.tolerance", "str", "none", "none: a failing record fails the task; all: skip it (sinks: to the DLQ)",
                choices=("none", "all")),
    ConfigField("errors.deadletterqueue.topic.name", "str", "",
                "sinks: topic for records that failed (with errors.tolerance=all)"),
    ConfigField("errors.deadletterqueue.topic.replication.factor", "int", 1,
                "replication factor of a DLQ topic created on demand", min=1),
    ConfigField("errors.deadletterqueue.context.headers.enable", "bool", True, "add __connect.errors.* headers to DLQ records"),
    ConfigField("errors.retry.timeout.ms", "int", 300_000,
                "how long to retry a RetriableError before failing the task (-1: forever)", min=-1),
    ConfigField("errors.retry.delay.max.ms", "int", 60_000, "the longest backoff between retries", min=1),
    ConfigField("errors.log.enable", "bool", False, "log every failed record"),
    ConfigField("offset.flush.interval.ms", "int", 5_000, "how often offsets are committed", min=10),
    ConfigField("topics", "list", [], "sinks: the topics to read"),
    ConfigField("topics.regex", "str", "", "sinks: a regular expression of the topics to read"),
])

OVERRIDE_PREFIXES = ("producer.override.", "consumer.override.")


def validate(name: Any, config: Any, registered: dict[str, type] | None = None,
             policy: ConnectPolicy = DEFAULT_POLICY) -> tuple[type, dict[str, Any]]:
    """(connector class, parsed config) for connector ``name``; raises ConnectorConfigError.
    ``policy`` bounds the classes it may import and the files it may name
    (connect/policy.py); the default allows built-ins only and no file."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConnectorConfigError(f"connector name must be 1-200 letters, digits, '.', '_' or '-', got {name!r}", "name")
    if not isinstance(config, dict):
        raise ConnectorConfigError(f"a connector config must be a JSON object, got {type(config).__name__}")
    if config.get("name", name) != name:
        raise ConnectorConfigError(f"config name {config.get('name')!r} does not match connector name {name!r}", "name")
    if not config.get(CONNECTOR_CLASS):
        raise ConnectorConfigError(f"missing required configuration {CONNECTOR_CLASS!r}", CONNECTOR_CLASS)
    _check_plain(config)
    cls = resolve(config[CONNECTOR_CLASS], registered, policy=policy)
    merged = {**getattr(cls, "default_config", {}), **config, "name": name}
    parsed = RUNTIME_CONFIG.parse(merged)
    kind = connector_type(cls)
    if kind == "sink":
        if bool(parsed["topics"]) == bool(parsed["topics.regex"]):
            raise ConnectorConfigError("a sink connector needs exactly one of 'topics' or 'topics.regex'", "topics")
        if parsed["topics.regex"]:
            try:
                re.compile(parsed["topics.regex"])
            except re.error as error:
                raise ConnectorConfigError(f"topics.regex is not a regular expression: {error}", "topics.regex") from None
        dlq = parsed["errors.deadletterqueue.topic.name"]
        if dlq and (dlq in parsed["topics"] or (parsed["topics.regex"] and re.fullmatch(parsed["topics.regex"], dlq))):
            raise ConnectorConfigError(f"the dead-letter queue topic {dlq!r} is also a topic this sink reads",
                                       "errors.deadletterqueue.topic.name")
    for key in merged:
        if key.startswith(OVERRIDE_PREFIXES) and not key.split(".override.", 1)[1]:
            raise ConnectorConfigError(f"{key!r} names no client setting", key)
    # Build converters and transforms now: a bad type or setting is refused at create.
    from rafka.connect.converters import converter_from_config
    from rafka.connect.transforms import build_transforms

    converter_from_config(parsed, is_key=True, policy=policy)
    converter_from_config(parsed, is_key=False, policy=policy)
    build_transforms(parsed, policy=policy)
    connector = cls()
    parsed = connector.validate(parsed)
    _confine_files(cls, parsed, policy)
    return cls, parsed


MAX_CONFIG_KEYS = 1000
MAX_CONFIG_VALUE_CHARS = 64 * 1024


def _check_plain(config: dict) -> None:
    """A config is a flat JSON object of bounded size: string keys; values a string,
    number, boolean, null or a list of those (``topics``, ``files``)."""
    if len(config) > MAX_CONFIG_KEYS:
        raise ConnectorConfigError(f"a connector config has at most {MAX_CONFIG_KEYS} keys, got {len(config)}")
    for key, value in config.items():
        if not isinstance(key, str) or not key or len(key) > 1000:
            raise ConnectorConfigError(f"config keys are non-empty strings of at most 1000 characters, got {key!r:.100}")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, (dict, list)) or not (item is None or isinstance(item, (str, int, float, bool))):
                raise ConnectorConfigError(
                    f"{key!r} must be a string, number, boolean or a list of those, got {type(item).__name__}", key)
            if isinstance(item, str) and (len(item) > MAX_CONFIG_VALUE_CHARS or "\x00" in item):
                raise ConnectorConfigError(
                    f"{key!r} must be at most {MAX_CONFIG_VALUE_CHARS} characters without NUL bytes", key)


def _confine_files(cls: type, parsed: dict[str, Any], policy: ConnectPolicy) -> None:
    """Every local path in the connector's ``file_fields`` lies under the policy's file
    roots. A URI of a remote filesystem (``s3://…``) is not a local file and passes."""
    for field in getattr(cls, "file_fields", ()):
        value = parsed.get(field)
        for path in (value if isinstance(value, list) else [value] if value else []):
            scheme, separator, rest = path.partition("://") if isinstance(path, str) else ("", "", "")
            if separator and scheme.lower() != "file":
                continue
            policy.check_file(rest if separator else path, field)


def client_overrides(config: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``producer.override.linger_ms=5`` → ``{"linger_ms": 5}`` (numbers parsed)."""
    overrides = {}
    for key, value in config.items():
        if key.startswith(prefix):
            overrides[key[len(prefix):].replace(".", "_")] = _number_or_text(value)
    return overrides


def _number_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(value.lower(), value)
