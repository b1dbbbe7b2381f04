"""Topic names, partition and replica counts, and topic configs, checked without Ray.

The controller checks every request with these (actors/controller.py); clients, the
Streams DSL and the Kafka listener check the same way before anything is sent, so bad
input fails at the call that gave it, with an error naming the bad value. Pure functions:
no Ray, no I/O; importing this module loads only ``rafka.errors`` and ``rafka.storage``'s
config, so ``StreamsApp`` and its test driver need no Ray.
"""

from __future__ import annotations

import re

from rafka.errors import InvalidConfigError, InvalidTopicError
from rafka.storage.config import LogConfig

TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
TOPIC_NAME_MAX = 249


def validate_topic_name(topic: object) -> str:
    """``topic`` when it is a legal topic name (Kafka's rule: 1-249 of a-z A-Z 0-9 . _ -,
    not "." or ".."); otherwise ``InvalidTopicError`` naming it."""
    if not isinstance(topic, str):
        raise InvalidTopicError(f"topic name must be a str, got {topic!r}")
    if not topic or topic in (".", "..") or len(topic) > TOPIC_NAME_MAX or not TOPIC_NAME.match(topic):
        raise InvalidTopicError(
            f"invalid topic name {topic!r}: use 1-{TOPIC_NAME_MAX} of the characters a-z A-Z 0-9 . _ -"
        )
    return topic


def validate_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` when it is an int (not a bool) of at least ``minimum``; otherwise
    ``InvalidTopicError`` naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTopicError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise InvalidTopicError(f"{name} must be at least {minimum}, got {value}")
    return value


def validate_config(config: object) -> dict[str, str]:
    """A topic config as the controller stores it (str keys and values, booleans as
    "true"/"false"); an unknown key or a bad value is ``InvalidConfigError`` naming it."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidConfigError(f"topic config must be a dict of Kafka config names, got {config!r}")
    LogConfig.from_dict(config)  # raises InvalidConfigError naming a bad key or value
    return {str(key): str(value).lower() if isinstance(value, bool) else str(value) for key, value in config.items()}
