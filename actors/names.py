"""Names of rafka's Ray actors. Every actor of one rafka cluster lives in one Ray
namespace (default ``rafka``) as a named, detached actor, which is how
``Cluster.connect()`` and restarted actors find each other."""

DEFAULT_NAMESPACE = "rafka"
CONTROLLER = "controller"
BROKER_PREFIX = "broker-"


def broker(broker_id: int) -> str:
    return f"{BROKER_PREFIX}{broker_id}"


def broker_id_of(name: str) -> int | None:
    """The broker id in a broker actor's name, or None if ``name`` is not one."""
    suffix = name[len(BROKER_PREFIX):]
    return int(suffix) if name.startswith(BROKER_PREFIX) and suffix.isdigit() else None


def replica(topic: str, partition: int, broker_id: int) -> str:
    # Topic names cannot contain ':' (see rafka.validation.validate_topic_name).
    return f"replica:{topic}:{partition}:{broker_id}"


OFFSETS_TOPIC = "__consumer_offsets"


def group_coordinator(index: int) -> str:
    """Coordinator ``index`` owns partition ``index`` of ``__consumer_offsets``."""
    return f"group-coordinator-{index}"


RAFT_VOTER_PREFIX = "raft-voter-"


def raft_voter(voter_id: str) -> str:
    """A controller-quorum voter (actors/raft_voter.py)."""
    return f"{RAFT_VOTER_PREFIX}{voter_id}"
