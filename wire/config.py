"""Where the Kafka listeners listen: one ``ListenerConfig`` per rafka cluster.

``Cluster.start`` stores it in Ray's cluster-wide key-value store under the cluster's
namespace before any broker starts; every broker (including one Ray restarts, or one the
controller starts on a node that joins later) reads it when it starts its listener. No
stored config means the defaults.

Broker ``i`` listens on ``port + i`` or, when that port is taken (another cluster or
program on the node), the next free one after it; ``port=0`` takes any free port.
``host`` is the address to bind; ``advertised_host`` the one put in Metadata responses
for clients to connect to (default: ``host``, or the node's IP when ``host`` is
``0.0.0.0``).
"""

from __future__ import annotations

import dataclasses
import json

from ray.experimental import internal_kv

from rafka.wire.server import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES

DEFAULT_PORT = 9092
KV_KEY = "rafka-wire-listener"


@dataclasses.dataclass(frozen=True)
class ListenerConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    advertised_host: str | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"wire port must be an int in 0..65535, got {self.port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"wire host must be a non-empty str, got {self.host!r}")
        if self.advertised_host is not None and (not isinstance(self.advertised_host, str) or not self.advertised_host):
            raise ValueError(f"wire advertised host must be a non-empty str or None, got {self.advertised_host!r}")
        if isinstance(self.max_frame_bytes, bool) or not isinstance(self.max_frame_bytes, int) \
                or self.max_frame_bytes < 1024:
            raise ValueError(f"max_frame_bytes must be an int >= 1024, got {self.max_frame_bytes!r}")

    def port_for(self, broker_id: int) -> int:
        return 0 if self.port == 0 else min(self.port + broker_id, 65535)


def store(namespace: str, config: ListenerConfig) -> None:
    internal_kv._internal_kv_put(KV_KEY, json.dumps(dataclasses.asdict(config)), overwrite=True, namespace=namespace)


def load(namespace: str) -> ListenerConfig:
    raw = internal_kv._internal_kv_get(KV_KEY, namespace=namespace)
    return ListenerConfig(**json.loads(raw)) if raw else ListenerConfig()
