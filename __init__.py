"""rafka: an event streaming platform in Python on Ray.

The public API is exactly what ``__all__`` lists; everything else is internal.
"""

from rafka.errors import (
    ActorUnavailableError,
    ClusterError,
    CommitFailedError,
    CorruptIndexError,
    CorruptRecordError,
    DuplicateSequenceError,
    FencedInstanceIdError,
    GroupError,
    GroupNotEmptyError,
    GroupNotFoundError,
    HandlerError,
    InconsistentGroupProtocolError,
    InvalidConfigError,
    InvalidProducerEpochError,
    InvalidRecordError,
    InvalidTopicError,
    LeaderNotAvailableError,
    NoOffsetForPartitionError,
    NotControllerError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    NotLeaderError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    RafkaError,
    RecordError,
    RecordTooLargeError,
    RequestTimeoutError,
    StaleControllerEpochError,
    StaleMemberEpochError,
    StorageError,
    TopicAuthorizationError,
    TopicExistsError,
    TopicNotFoundError,
    UnknownMemberIdError,
)

__version__ = "0.1.0"

# The client classes import Ray; load them on first use so that `import rafka` (and the
# storage engine, and `rafka --version`) stay fast.
_LAZY = {
    "AclBinding": "rafka.security.acl",
    "Admin": "rafka.client.admin",
    "BatchMetadata": "rafka.client.producer",
    "Cluster": "rafka.client.cluster",
    "Consumer": "rafka.client.consumer",
    "ConsumerPool": "rafka.client.pool",
    "ConsumerRebalanceListener": "rafka.client.group",
    "Producer": "rafka.client.producer",
    "Record": "rafka.client.records",
    "RecordMetadata": "rafka.client.records",
    "TopicPartition": "rafka.client.records",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rafka' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AclBinding",
    "ActorUnavailableError",
    "Admin",
    "BatchMetadata",
    "Cluster",
    "ClusterError",
    "CommitFailedError",
    "Consumer",
    "ConsumerPool",
    "ConsumerRebalanceListener",
    "CorruptIndexError",
    "CorruptRecordError",
    "DuplicateSequenceError",
    "FencedInstanceIdError",
    "GroupError",
    "GroupNotEmptyError",
    "GroupNotFoundError",
    "HandlerError",
    "InconsistentGroupProtocolError",
    "InvalidConfigError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidTopicError",
    "LeaderNotAvailableError",
    "NoOffsetForPartitionError",
    "NotControllerError",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotLeaderError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceError",
    "Producer",
    "RafkaError",
    "Record",
    "RecordError",
    "RecordMetadata",
    "RecordTooLargeError",
    "RequestTimeoutError",
    "StaleControllerEpochError",
    "StaleMemberEpochError",
    "StorageError",
    "TopicAuthorizationError",
    "TopicExistsError",
    "TopicNotFoundError",
    "TopicPartition",
    "UnknownMemberIdError",
    "__version__",
]
