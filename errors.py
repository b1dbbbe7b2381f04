"""rafka's exceptions: one root, one branch per area, a ``retriable`` flag on each.

Hierarchy::

    RafkaError
    ├── InvalidConfigError            a config key or value is not acceptable
    ├── InvalidTopicError             a topic name or partition count is not acceptable
    ├── TopicExistsError              creating a topic that already exists
    ├── TopicNotFoundError            naming a topic that does not exist
    ├── TopicAuthorizationError       a client writing to an internal topic (only rafka's actors may)
    ├── RecordError
    │   ├── InvalidRecordError        a batch of the wrong schema, a null key on a compacted log
    │   └── RecordTooLargeError       a record or batch over ``max.message.bytes``
    ├── OffsetOutOfRangeError         reading below the log start or past the log end
    ├── StorageError                  the log on disk cannot do what was asked
    │   ├── CorruptRecordError        a stored batch fails its CRC or framing checks
    │   └── CorruptIndexError         an index file is inconsistent with its segment
    ├── NotLeaderError (retriable)    the replica asked is not the partition's leader
    ├── LeaderNotAvailableError (retriable)
    ├── NotEnoughReplicasError (retriable)
    │   └── NotEnoughReplicasAfterAppendError (retriable)  the batch was appended first
    ├── OutOfOrderSequenceError       an idempotent producer's sequence has a gap
    ├── DuplicateSequenceError        a retry of a batch appended too long ago to answer
    ├── InvalidProducerEpochError     a producer was fenced by a newer instance
    ├── NoOffsetForPartitionError     no position and auto_offset_reset="none"
    ├── RequestTimeoutError (retriable)  a request got no answer within its timeout
    ├── ClusterError                  no cluster running, a dead broker
    │   └── ActorUnavailableError (retriable)  an actor died or cannot be reached
    ├── NotControllerError (retriable)  the controller asked is not the active one
    ├── StaleControllerEpochError     a request from a deposed controller (older epoch)
    └── GroupError                    a consumer-group request the coordinator refused
        ├── UnknownMemberIdError      the member is not (or no longer) in the group
        ├── FencedInstanceIdError     another consumer took this static member's place
        ├── InconsistentGroupProtocolError
        ├── CommitFailedError         a commit for a partition the member does not hold
        │   └── StaleMemberEpochError a commit from an older epoch than the partition's
        ├── GroupNotEmptyError
        └── GroupNotFoundError

Each error carries a message that names the bad value. ``retriable`` says whether the
same request may succeed if simply sent again later (after a metadata refresh); clients
retry those within their timeouts and surface the rest at once.
"""

from __future__ import annotations


class RafkaError(Exception):
    """The root of every error rafka raises on purpose."""

    retriable: bool = False


class InvalidConfigError(RafkaError, ValueError):
    """A configuration key is unknown or its value is out of range or of the wrong type."""


class InvalidTopicError(RafkaError, ValueError):
    """A topic name is malformed, or a partition count or replication factor is invalid."""


class TopicExistsError(RafkaError):
    """A topic of that name already exists."""


class TopicNotFoundError(RafkaError, KeyError):
    """No topic of that name exists."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class TopicAuthorizationError(RafkaError):
    """The request is not allowed on this topic: a client produced to an internal topic
    (``__consumer_offsets``, ``__connect_*``, a stream job's changelog or repartition
    topic), which only rafka's own actors write. See docs/security.md."""


class RecordError(RafkaError, ValueError):
    """A record or batch is not acceptable."""


class InvalidRecordError(RecordError):
    """A batch has the wrong schema, or a record breaks a rule of the log (such as a
    null key on a compacted log)."""


class RecordTooLargeError(RecordError):
    """A record or batch is larger than ``max.message.bytes`` allows."""


class OffsetOutOfRangeError(RafkaError):
    """An offset is below the log start offset or above the log end offset."""


class StorageError(RafkaError):
    """The log on disk cannot do what was asked."""


class CorruptRecordError(StorageError):
    """A stored batch fails its CRC, length or header checks."""


class CorruptIndexError(StorageError):
    """An index file does not agree with its segment."""


class NotLeaderError(RafkaError):
    """The replica asked is not (or no longer) the leader of the partition."""

    retriable = True


class LeaderNotAvailableError(RafkaError):
    """The partition has no leader at the moment (an election is under way)."""

    retriable = True


class NotEnoughReplicasError(RafkaError):
    """The in-sync replica set is smaller than ``min.insync.replicas``."""

    retriable = True


class NotEnoughReplicasAfterAppendError(NotEnoughReplicasError):
    """The leader appended the batch, then found the in-sync replicas fewer than
    ``min.insync.replicas`` (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND): unlike its parent,
    the batch may be in the log, so a client must not re-send it under a new sequence."""


class OutOfOrderSequenceError(RafkaError):
    """An idempotent producer's batch sequence skipped ahead of what the leader holds:
    the batches between never arrived, and this one was not appended."""


class DuplicateSequenceError(RafkaError):
    """A retry of a batch the leader appended before the last batches it remembers per
    producer (``RECENT_BATCHES_PER_PRODUCER``): it is in the log, but its offset is no
    longer known, so it is neither appended again nor answered with an offset."""


class InvalidProducerEpochError(RafkaError):
    """A batch came from a producer epoch older than one the partition has seen."""


class NoOffsetForPartitionError(RafkaError):
    """A consumer has no position for a partition and ``auto_offset_reset`` is "none"."""


class RequestTimeoutError(RafkaError):
    """A request got no answer within its timeout (the buffer stayed full, a broker was
    slow or unreachable)."""

    retriable = True


class ClusterError(RafkaError):
    """No cluster is running, a broker is unreachable, or a request timed out."""


class ActorUnavailableError(ClusterError):
    """An actor died or cannot be reached (retriable: its restart or a new leader may
    answer). Raised by ``rafka.calls`` in place of Ray's actor errors."""

    retriable = True


class NotControllerError(RafkaError):
    """The controller voter asked is not the active controller (the quorum's leader);
    the message names the leader it knows, if any. See docs/controller-quorum.md."""

    retriable = True


class StaleControllerEpochError(RafkaError):
    """A broker or replica refused a request carrying an older controller epoch than one
    it has seen: the sender was deposed (not retriable: the sender must step down)."""


class GroupError(RafkaError):
    """A consumer-group request the coordinator refused."""


class UnknownMemberIdError(GroupError):
    """The coordinator does not know this member (its session expired, it left, or the
    coordinator lost it): the consumer drops its partitions and joins again."""


class FencedInstanceIdError(GroupError):
    """Another consumer joined with the same ``group_instance_id`` (static membership)
    and took this one's place."""


class InconsistentGroupProtocolError(GroupError):
    """A member asked for a partition assignor other than the one the group uses."""


class CommitFailedError(GroupError):
    """An offset commit was refused: the partition is not assigned to this member, or a
    consumer outside the group committed while the group has active members."""


class StaleMemberEpochError(CommitFailedError):
    """An offset commit came from an older epoch of its member than the one at which the
    partition was (last) assigned to it: the partition moved away and back since the
    commit was made, so its offsets may be behind another owner's. Refused, as Kafka's
    ``STALE_MEMBER_EPOCH`` (KIP-848)."""


class GroupNotEmptyError(GroupError):
    """The operation (delete, reset offsets) needs a group with no active members."""


class GroupNotFoundError(GroupError, KeyError):
    """No consumer group by that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class HandlerError(RafkaError):
    """A ConsumerPool's handler kept failing on a record and the pool stopped (its
    ``on_error`` policy is "stop"). ``topic``, ``partition`` and ``offset`` name the
    record (the first of the batch in batches mode); ``report`` has the traceback."""

    def __init__(self, message: str, topic: str = "", partition: int = -1, offset: int = -1,
                 report: dict | None = None) -> None:
        super().__init__(message)
        self.topic, self.partition, self.offset, self.report = topic, partition, offset, report or {}
