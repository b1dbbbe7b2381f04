"""The listener's connection limits and their defaults, apart from the server so that
what only configures a listener (wire/config.py, the CLI's ``rafka up``) does not import
the protocol stack (kio's message schemas take 0.4 s to import; every CLI command paid it).
"""

DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
DEFAULT_IDLE_TIMEOUT_S = 600.0  # Kafka's connections.max.idle.ms
DEFAULT_MAX_CONNECTIONS = 1000
