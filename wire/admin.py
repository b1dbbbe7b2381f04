"""Admin and producer-setup requests, mapped onto the controller actor.

* **CreateTopics** -> ``Controller.create_topic`` (``num_partitions``/``replication_factor``
  of -1 mean 1, Kafka's broker defaults; explicit replica assignments are refused with
  INVALID_REQUEST: the controller places replicas). ``validate_only`` checks the name and
  that the topic does not exist, and creates nothing.
* **DeleteTopics** -> ``Controller.delete_topic``, by name (a request by topic id gets
  UNKNOWN_TOPIC_ID).
* **CreatePartitions** -> ``Controller.create_partitions`` (no explicit assignments).
* **DescribeConfigs** -> ``Controller.describe_configs`` for topics: every config, the
  topic's overrides marked as such (DYNAMIC_TOPIC_CONFIG), the rest as defaults; a broker
  resource answers with no configs (rafka has no per-broker Kafka configs).
* **IncrementalAlterConfigs** -> ``Controller.alter_configs`` for topics: SET, DELETE
  (back to the default), APPEND and SUBTRACT (comma-separated lists such as
  ``cleanup.policy``), all of one topic applied as one change; ``validate_only``
  checks the result with the controller's validation and changes nothing. A broker
  resource is refused with INVALID_REQUEST (rafka has no per-broker configs).
* **InitProducerId** -> ``Controller.allocate_producer_id`` with epoch 0, for idempotent
  producers; a transactional id is refused (rafka has no transactions yet).
* **DescribeCluster**: the brokers and their listeners, as in Metadata.

Each topic gets its own error code and message; one bad topic never fails the others.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rafka.errors import TopicAuthorizationError, TopicExistsError
from rafka.security.acl import CLUSTER_NAME
from rafka.storage.config import LogConfig
from rafka.wire import protocol
from rafka.wire.errors import InvalidRequestError, UnknownTopicIdError, error_code_of, message_of

logger = logging.getLogger(__name__)

E = protocol.error_code
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_DEFAULT = 5
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3  # IncrementalAlterConfigs operations


class AdminApis:
    def __init__(self, apis: Any) -> None:
        self.apis = apis
        self.handlers = {19: self.create_topics, 20: self.delete_topics, 37: self.create_partitions,
                         32: self.describe_configs, 44: self.incremental_alter_configs, 22: self.init_producer_id,
                         60: self.describe_cluster}

    def _controller(self):
        return self.apis._controller()

    def _require(self, operation: str, resource_type: str, name: str, cluster_too: bool = False) -> None:
        """Raise TopicAuthorizationError unless the principal may do ``operation`` on the
        topic (or, ``cluster_too``, on the cluster: Kafka's CreateTopics takes either)."""
        security = self.apis.security
        if security.allowed(operation, resource_type, name) or (
                cluster_too and security.allowed(operation, "cluster", CLUSTER_NAME)):
            return
        raise TopicAuthorizationError(f"{operation} on topic {name!r} is not allowed")

    async def _topic_result(self, name: str, work) -> dict:
        try:
            extra = await work
            return {"name": name, "error_code": 0, "error_message": None, **(extra or {})}
        except Exception as error:  # noqa: BLE001 - each topic answers its own error
            return {"name": name, "error_code": error_code_of(error), "error_message": message_of(error)}

    # -- topics --------------------------------------------------------------------

    async def create_topics(self, header: protocol.RequestHeader, request: Any) -> Any:
        async def create(topic) -> dict:
            self._require("create", "topic", topic.name, cluster_too=True)
            if any(True for _ in topic.assignments):
                raise InvalidRequestError("explicit replica assignments are not supported; leave them out")
            partitions = 1 if topic.num_partitions == -1 else int(topic.num_partitions)
            replication_factor = 1 if topic.replication_factor == -1 else int(topic.replication_factor)
            config = {item.name: item.value for item in topic.configs}
            if request.validate_only:
                # Imported here: actors.controller imports the broker, which imports this module.
                from rafka.actors.controller import validate_topic_name

                validate_topic_name(topic.name)
                if (await self._controller().metadata.remote([topic.name])).get(topic.name) is not None:
                    raise TopicExistsError(f"topic {topic.name!r} already exists")
                return {"num_partitions": partitions, "replication_factor": replication_factor, "configs": ()}
            described = await self._controller().create_topic.remote(topic.name, partitions, replication_factor,
                                                                      config)
            self.apis._leadership_changed()
            return {"topic_id": described.get("topic_id"), "num_partitions": partitions,
                    "replication_factor": replication_factor, "configs": ()}

        results = await asyncio.gather(*(self._topic_result(topic.name, create(topic)) for topic in request.topics))
        for result in results:
            result.setdefault("topic_id", None)
        return protocol.build(protocol.response_class(19, header.api_version),
                              {"throttle_time": 0, "topics": results})

    async def delete_topics(self, header: protocol.RequestHeader, request: Any) -> Any:
        if header.api_version >= 6:
            names = [topic.name for topic in request.topics]
        else:
            names = list(request.topic_names)

        async def delete(name: str | None) -> None:
            if name is None:
                raise UnknownTopicIdError("deleting a topic by id is not supported; name it")
            self._require("delete", "topic", name)
            await self._controller().delete_topic.remote(name)
            self.apis._leadership_changed()

        results = await asyncio.gather(*(self._topic_result(name, delete(name)) for name in names))
        return protocol.build(protocol.response_class(20, header.api_version),
                              {"throttle_time": 0, "responses": [{**r, "topic_id": None} for r in results]})

    async def create_partitions(self, header: protocol.RequestHeader, request: Any) -> Any:
        async def grow(topic) -> None:
            self._require("alter", "topic", topic.name)
            if topic.assignments:
                raise InvalidRequestError("explicit replica assignments are not supported; leave them out")
            if request.validate_only:
                return
            await self._controller().create_partitions.remote(topic.name, int(topic.count))
            self.apis._leadership_changed()

        results = await asyncio.gather(*(self._topic_result(topic.name, grow(topic)) for topic in request.topics))
        return protocol.build(protocol.response_class(37, header.api_version), {"throttle_time": 0, "results": results})

    async def describe_configs(self, header: protocol.RequestHeader, request: Any) -> Any:
        async def describe(resource) -> dict:
            base = {"resource_type": resource.resource_type, "resource_name": resource.resource_name}
            if resource.resource_type == RESOURCE_BROKER:
                if not self.apis.security.allowed("describe_configs", "cluster", CLUSTER_NAME):
                    return {**base, "error_code": E("cluster_authorization_failed"), "configs": (),
                            "error_message": "describe_configs on the cluster is not allowed"}
                return {**base, "error_code": 0, "error_message": None, "configs": ()}
            if resource.resource_type == RESOURCE_TOPIC and \
                    not self.apis.security.allowed("describe_configs", "topic", resource.resource_name):
                return {**base, "error_code": E("topic_authorization_failed"), "configs": (),
                        "error_message": f"describe_configs on topic {resource.resource_name!r} is not allowed"}
            if resource.resource_type != RESOURCE_TOPIC:
                return {**base, "error_code": E("invalid_request"), "configs": (),
                        "error_message": f"resource type {resource.resource_type} is not supported (2 topic, 4 broker)"}
            result = await self._topic_result(resource.resource_name, self._configs(resource))
            result.setdefault("configs", ())
            return {**base, **result}

        results = await asyncio.gather(*(describe(resource) for resource in request.resources))
        return protocol.build(protocol.response_class(32, header.api_version), {"throttle_time": 0, "results": results})

    async def _configs(self, resource) -> dict:
        controller = self._controller()
        description, configs = await asyncio.gather(controller.describe_topic.remote(resource.resource_name),
                                                    controller.describe_configs.remote(resource.resource_name))
        overrides = description["config"]
        wanted = set(resource.configuration_keys) if resource.configuration_keys else None
        return {"configs": [
            {"name": name, "value": str(value), "read_only": False, "is_default": name not in overrides,
             "config_source": SOURCE_DYNAMIC_TOPIC if name in overrides else SOURCE_DEFAULT,
             "is_sensitive": False, "synonyms": (), "config_type": 0, "documentation": None}
            for name, value in sorted(configs.items()) if wanted is None or name in wanted
        ]}

    async def incremental_alter_configs(self, header: protocol.RequestHeader, request: Any) -> Any:
        async def alter(resource) -> dict:
            base = {"resource_type": resource.resource_type, "resource_name": resource.resource_name}
            if resource.resource_type != RESOURCE_TOPIC:
                return {**base, "error_code": E("invalid_request"),
                        "error_message": f"resource type {resource.resource_type} cannot be altered: rafka has "
                                         "configs per topic (2) only"}
            if not self.apis.security.allowed("alter_configs", "topic", resource.resource_name):
                return {**base, "error_code": E("topic_authorization_failed"),
                        "error_message": f"alter_configs on topic {resource.resource_name!r} is not allowed"}
            result = await self._topic_result(resource.resource_name,
                                              self._alter(resource, bool(request.validate_only)))
            return {**base, "error_code": result["error_code"], "error_message": result["error_message"]}

        results = await asyncio.gather(*(alter(resource) for resource in request.resources))
        return protocol.build(protocol.response_class(44, header.api_version),
                              {"throttle_time": 0, "responses": results})

    async def _alter(self, resource, validate_only: bool) -> None:
        """SET, DELETE (back to the default), APPEND and SUBTRACT (on comma-separated
        list values, such as cleanup.policy) of one topic, as one controller change."""
        controller = self._controller()
        current = await controller.describe_configs.remote(resource.resource_name)
        changes: dict[str, str | None] = {}
        for entry in resource.configs:
            operation = int(entry.config_operation)
            if operation == OP_SET:
                if entry.value is None:
                    raise InvalidRequestError(f"SET of config {entry.name!r} needs a value")
                changes[entry.name] = entry.value
            elif operation == OP_DELETE:
                changes[entry.name] = None
            elif operation in (OP_APPEND, OP_SUBTRACT):
                base = changes.get(entry.name, current.get(entry.name))
                items = [item for item in str(base or "").split(",") if item]
                values = [item for item in (entry.value or "").split(",") if item]
                if operation == OP_APPEND:
                    items += [item for item in values if item not in items]
                else:
                    items = [item for item in items if item not in values]
                changes[entry.name] = ",".join(items)
            else:
                raise InvalidRequestError(f"config operation {operation} of {entry.name!r} is not one of "
                                          "0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT")
        if validate_only:
            description = await controller.describe_topic.remote(resource.resource_name)
            config = dict(description["config"])
            for name, value in changes.items():
                if value is None:
                    config.pop(name, None)
                else:
                    config[name] = value
            LogConfig.from_dict(config)  # what the controller validates with: raises naming a bad value
            return
        await controller.alter_configs.remote(resource.resource_name, changes)

    # -- producers and cluster -----------------------------------------------------

    async def init_producer_id(self, header: protocol.RequestHeader, request: Any) -> Any:
        data = {"throttle_time": 0, "error_code": 0, "producer_id": -1, "producer_epoch": -1}
        security = self.apis.security
        if not (security.allowed("idempotent_write", "cluster", CLUSTER_NAME) or security.allowed_any("write", "topic")):
            # Kafka: an idempotent producer needs IdempotentWrite on the cluster or Write on some topic.
            data["error_code"] = E("cluster_authorization_failed")
        elif request.transactional_id is not None:
            logger.info("wire: InitProducerId for transactional id %r refused: no transactions",
                        request.transactional_id)
            data["error_code"] = E("invalid_request")
        else:
            data["producer_id"] = await self._controller().allocate_producer_id.remote()
            data["producer_epoch"] = 0
        return protocol.build(protocol.response_class(22, header.api_version), data)

    async def describe_cluster(self, header: protocol.RequestHeader, request: Any) -> Any:
        await self.apis._refresh(force=True)
        addresses = self.apis._addresses
        return protocol.build(protocol.response_class(60, header.api_version), {
            "throttle_time": 0, "error_code": 0, "error_message": None, "cluster_id": self.apis.cluster_id,
            "controller_id": min(addresses) if addresses else -1,
            "brokers": [{"broker_id": broker_id, "host": host, "port": port, "rack": None, "is_fenced": False}
                        for broker_id, (host, port) in sorted(addresses.items())],
        })
