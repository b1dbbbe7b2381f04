"""Names of rafka's Ray actors. Every actor of one rafka cluster lives in one Ray
namespace (default ``rafka``) as a named, detached actor, which is how
``Cluster.connect()`` and restarted actors find each other."""

DEFAULT_NAMESPACE = "rafka"
CONTROLLER = "controller"


def broker(broker_id: int) -> str:
    return f"broker-{broker_id}"


def replica(topic: str, partition: int, broker_id: int) -> str:
    # Topic names cannot contain ':' (see controller.validate_topic_name).
    return f"replica:{topic}:{partition}:{broker_id}"


OFFSETS_TOPIC = "__consumer_offsets"


def group_coordinator(index: int) -> str:
    """Coordinator ``index`` owns partition ``index`` of ``__consumer_offsets``."""
    return f"group-coordinator-{index}"
