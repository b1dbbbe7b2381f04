"""Kafka error codes for what goes wrong while answering a request.

``error_code_of`` maps a rafka error (possibly inside Ray's RayTaskError, as awaiting an
actor call raises it) to Kafka's code; an actor that is gone maps to
NOT_LEADER_OR_FOLLOWER, which makes a Kafka client refresh its metadata and retry;
anything unexpected to UNKNOWN_SERVER_ERROR. ``message_of`` gives the text for the
responses that carry one.
"""

from __future__ import annotations

from ray.exceptions import RayError, RayTaskError

from rafka import errors
from rafka.wire import protocol
from rafka.wire.records import CorruptRecordsError, UnsupportedRecordsError


class InvalidRequestError(ValueError):
    """A well-formed request rafka does not take as asked (Kafka's INVALID_REQUEST)."""


class UnknownTopicIdError(KeyError):
    """A topic named by id, which rafka does not resolve yet (UNKNOWN_TOPIC_ID)."""


_ERRORS: list[tuple[type, str]] = [
    (errors.NotLeaderError, "not_leader_or_follower"),
    (errors.LeaderNotAvailableError, "leader_not_available"),
    (errors.TopicNotFoundError, "unknown_topic_or_partition"),
    (errors.OffsetOutOfRangeError, "offset_out_of_range"),
    (errors.NotEnoughReplicasError, "not_enough_replicas"),
    (errors.RequestTimeoutError, "request_timed_out"),
    (errors.RecordTooLargeError, "message_too_large"),
    (errors.InvalidRecordError, "invalid_record"),
    (errors.OutOfOrderSequenceError, "out_of_order_sequence_number"),
    (errors.InvalidProducerEpochError, "invalid_producer_epoch"),
    (errors.TopicExistsError, "topic_already_exists"),
    (errors.InvalidTopicError, "invalid_topic_exception"),
    (errors.InvalidConfigError, "invalid_config"),
    (errors.TopicAuthorizationError, "topic_authorization_failed"),
    (CorruptRecordsError, "corrupt_message"),
    (UnsupportedRecordsError, "unsupported_for_message_format"),
    (InvalidRequestError, "invalid_request"),
    (UnknownTopicIdError, "unknown_topic_id"),
]
RETRY_WITH_NEW_METADATA = frozenset(protocol.error_code(name) for name in ("not_leader_or_follower",
                                                                          "leader_not_available"))


def cause_of(error: BaseException) -> BaseException:
    if isinstance(error, RayTaskError):
        return getattr(error, "cause", None) or error
    return error


def error_code_of(error: BaseException) -> int:
    error = cause_of(error)
    for kind, name in _ERRORS:
        if isinstance(error, kind):
            if kind is errors.NotEnoughReplicasError and "after the append" in str(error):
                return protocol.error_code("not_enough_replicas_after_append")
            if kind is errors.InvalidTopicError and "replication_factor" in str(error):
                return protocol.error_code("invalid_replication_factor")
            if kind is errors.InvalidTopicError and "partitions" in str(error):
                return protocol.error_code("invalid_partitions")
            return protocol.error_code(name)
    if isinstance(error, (ValueError, TypeError)):
        return protocol.error_code("invalid_request")  # the controller's validation of bad arguments
    if isinstance(error, RayError):
        return protocol.error_code("not_leader_or_follower")
    return protocol.error_code("unknown_server_error")


def message_of(error: BaseException) -> str:
    return str(cause_of(error))[:500]
