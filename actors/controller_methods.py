"""The controller role's method names: what the router named ``names.CONTROLLER``
forwards to the active controller (actors/controller_router.py) and what only the active
controller answers (actors/controller.py wraps each). Kept apart from the controller so
that the router's process imports only this, not the controller and its storage stack.
tests/actors/test_controller_router.py checks the list against Controller."""

# Every method of the controller role (not the voter's: request, propose, status, ...).
CONTROLLER_METHODS = (
    "add_broker", "brokers", "broker_heartbeat", "alter_isr", "replica_failed", "replica_restarted",
    "start_brokers", "set_broker_per_node", "create_topic", "delete_topic", "list_topics", "describe_topic",
    "describe_configs", "alter_configs", "create_partitions", "metadata", "allocate_producer_id", "shutdown",
    # SecurityMetadata's (actors/security_metadata.py): brokers and Admin reach them through the router too.
    "security_state", "alter_scram_credentials", "describe_scram_credentials", "create_acls", "describe_acls",
    "delete_acls",
)
