"""rafka: an event streaming platform in Python on Ray.

The public API is exactly what ``__all__`` lists; everything else is internal.
"""

from rafka.errors import (
    ClusterError,
    CorruptIndexError,
    CorruptRecordError,
    InvalidConfigError,
    InvalidRecordError,
    InvalidTopicError,
    LeaderNotAvailableError,
    NotEnoughReplicasError,
    NotLeaderError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    RafkaError,
    RecordError,
    RecordTooLargeError,
    StorageError,
    TopicExistsError,
    TopicNotFoundError,
)

__version__ = "0.1.0"

__all__ = [
    "ClusterError",
    "CorruptIndexError",
    "CorruptRecordError",
    "InvalidConfigError",
    "InvalidRecordError",
    "InvalidTopicError",
    "LeaderNotAvailableError",
    "NotEnoughReplicasError",
    "NotLeaderError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "RafkaError",
    "RecordError",
    "RecordTooLargeError",
    "StorageError",
    "TopicExistsError",
    "TopicNotFoundError",
    "__version__",
]
