"""Where and how the Kafka listeners listen: one ``ListenerConfig`` per rafka cluster.

``Cluster.start`` stores it in Ray's cluster-wide key-value store under the cluster's
namespace before any broker starts; every broker (including one Ray restarts, or one the
controller starts on a node that joins later) reads it when it starts its listeners. No
stored config means the defaults.

Listeners are Kafka's: ``listeners`` is a list of ``PROTOCOL://host:port`` with protocol
``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL`` (at most one listener per
protocol; the protocol is also the listener's name). Without ``listeners``, one
``PLAINTEXT`` listener on ``host``:``port`` (the settings before security existed).
Broker ``i`` listens on ``port + i`` or, when that port is taken (another cluster or
program on the node), the next free one after it; ``port=0`` takes any free port.
``advertised_host`` is the address put in Metadata responses for clients to connect to
(default: the listener's host, or the node's IP when that is ``0.0.0.0``).

Security (docs/security.md): ``ssl_certfile``/``ssl_keyfile`` (PEM files present on every
node) serve the ``SSL`` and ``SASL_SSL`` listeners; ``sasl_mechanisms`` are those SASL
listeners offer; the authorizer (ACLs) is on when ``authorizer`` says so, by default
when any listener authenticates (``SASL_*``); ``super_users`` (``User:<name>``) bypass
ACLs; ``allow_everyone_if_no_acl_found`` (default False) answers for resources no ACL
names.
"""

from __future__ import annotations

import dataclasses
import json
import os

from rafka.wire.limits import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FRAME_BYTES

DEFAULT_PORT = 9092
KV_KEY = "rafka-wire-listener"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclasses.dataclass(frozen=True)
class Listener:
    """One parsed ``PROTOCOL://host:port``."""

    protocol: str
    host: str
    port: int

    @property
    def name(self) -> str:
        return self.protocol

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def port_for(self, broker_id: int) -> int:
        return 0 if self.port == 0 else min(self.port + broker_id, 65535)

    @classmethod
    def parse(cls, text: object) -> "Listener":
        if not isinstance(text, str) or "://" not in text:
            raise ValueError(f"a listener is 'PROTOCOL://host:port', got {text!r}")
        protocol, _, address = text.partition("://")
        protocol = protocol.upper()
        if protocol not in PROTOCOLS:
            raise ValueError(f"listener protocol must be one of {list(PROTOCOLS)}, got {protocol!r} in {text!r}")
        host, _, port_text = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"listener {text!r} has no port number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"listener port must be in 0..65535, got {port} in {text!r}")
        return cls(protocol, host, port)


@dataclasses.dataclass(frozen=True)
class ListenerConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    advertised_host: str | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    listeners: tuple[str, ...] = ()
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    sasl_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    authorizer: bool | None = None
    super_users: tuple[str, ...] = ()
    allow_everyone_if_no_acl_found: bool = False

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
        for field in ("listeners", "sasl_mechanisms", "super_users"):
            value = getattr(self, field)
            if isinstance(value, str):
                value = tuple(item.strip() for item in value.split(",") if item.strip())
            object.__setattr__(self, field, tuple(value))
        parsed = self.parsed_listeners()
        protocols = [listener.protocol for listener in parsed]
        if len(set(protocols)) != len(protocols):
            raise ValueError(f"at most one listener per protocol, got {list(self.listeners)}")
        for mechanism in self.sasl_mechanisms:
            if mechanism not in SASL_MECHANISMS:
                raise ValueError(f"SASL mechanism must be one of {list(SASL_MECHANISMS)}, got {mechanism!r}")
        if any(listener.uses_sasl for listener in parsed) and not self.sasl_mechanisms:
            raise ValueError("a SASL listener needs at least one SASL mechanism")
        if any(listener.uses_tls for listener in parsed):
            for field in ("ssl_certfile", "ssl_keyfile"):
                path = getattr(self, field)
                if not isinstance(path, str) or not path:
                    raise ValueError(f"an SSL or SASL_SSL listener needs {field} (a PEM file), got {path!r}")
                if not os.path.isabs(path):
                    raise ValueError(f"{field} must be an absolute path (brokers run elsewhere), got {path!r}")
        for principal in self.super_users:
            if not principal.startswith("User:") or len(principal) < 6:
                raise ValueError(f"a super user is 'User:<name>', got {principal!r}")
        if self.authorizer not in (None, True, False):
            raise ValueError(f"authorizer must be True, False or None (on with SASL), got {self.authorizer!r}")

    def parsed_listeners(self) -> list[Listener]:
        if not self.listeners:
            return [Listener("PLAINTEXT", self.host, self.port)]
        return [Listener.parse(text) for text in self.listeners]

    @property
    def authorizer_enabled(self) -> bool:
        if self.authorizer is not None:
            return self.authorizer
        return any(listener.uses_sasl for listener in self.parsed_listeners())

    def port_for(self, broker_id: int) -> int:
        return 0 if self.port == 0 else min(self.port + broker_id, 65535)


# Ray is imported where the store is used, not with this module: `rafka up` checks a
# ListenerConfig before it knows which Ray (and Ray auth mode) it will connect to.

def store(namespace: str, config: ListenerConfig) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(KV_KEY, json.dumps(dataclasses.asdict(config)), overwrite=True, namespace=namespace)


def load(namespace: str) -> ListenerConfig:
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(KV_KEY, namespace=namespace)
    return ListenerConfig(**json.loads(raw)) if raw else ListenerConfig()
