"""CreateAcls, DescribeAcls, DeleteAcls, mapped onto the controller's ACLs
(actors/security_metadata.py).

Kafka's rules: each needs the authorizer on (else SECURITY_DISABLED); CreateAcls and
DeleteAcls need ALTER on the cluster, DescribeAcls DESCRIBE on the cluster (else
CLUSTER_AUTHORIZATION_FAILED). Each creation and each delete filter answers its own
error; a binding that does not validate (an unknown operation, a cluster resource not
named ``kafka-cluster``, a principal that is not ``User:...``) is INVALID_REQUEST with
the reason. After a change made here this broker reloads its ACLs at once; others
within wire/security.py's cache time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rafka.security.acl import CLUSTER_NAME, OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES, AclBinding, AclFilter
from rafka.wire import protocol
from rafka.wire.errors import error_code_of, message_of

E = protocol.error_code


def _codes(binding: dict) -> dict:
    return {"resource_type": RESOURCE_TYPES[binding["resource_type"]], "resource_name": binding["name"],
            "pattern_type": PATTERN_TYPES[binding["pattern_type"]], "principal": binding["principal"],
            "host": binding["host"], "operation": OPERATIONS[binding["operation"]],
            "permission_type": PERMISSIONS[binding["permission"]]}


def _filter(entry: Any) -> AclFilter:
    return AclFilter(resource_type=int(entry.resource_type_filter), name=entry.resource_name_filter,
                     pattern_type=int(entry.pattern_type_filter), principal=entry.principal_filter,
                     host=entry.host_filter, operation=int(entry.operation), permission=int(entry.permission_type))


class AclApis:
    def __init__(self, apis: Any) -> None:
        self.apis = apis
        self.handlers = {29: self.describe_acls, 30: self.create_acls, 31: self.delete_acls}

    def _refusal(self, operation: str) -> tuple[int, str] | None:
        if not self.apis.security.enabled:
            return E("security_disabled"), "no authorizer is configured on this cluster's listeners"
        if not self.apis.security.allowed(operation, "cluster", CLUSTER_NAME):
            return E("cluster_authorization_failed"), f"{operation} on the cluster is not allowed"
        return None

    async def create_acls(self, header: protocol.RequestHeader, request: Any) -> Any:
        refusal = self._refusal("alter")
        results: list[dict] = []
        if refusal:
            results = [{"error_code": refusal[0], "error_message": refusal[1]} for _ in request.creations]
        else:
            async def create(entry: Any) -> dict:
                try:
                    binding = AclBinding(resource_type=int(entry.resource_type), name=entry.resource_name,
                                         pattern_type=int(entry.resource_pattern_type), principal=entry.principal,
                                         host=entry.host, operation=int(entry.operation),
                                         permission=int(entry.permission_type))
                    await self.apis._controller().create_acls.remote([binding.to_dict()])
                    return {"error_code": 0, "error_message": None}
                except ValueError as error:
                    return {"error_code": E("invalid_request"), "error_message": str(error)}
                except Exception as error:  # noqa: BLE001 - each creation answers its own error
                    return {"error_code": error_code_of(error), "error_message": message_of(error)}

            results = await asyncio.gather(*(create(entry) for entry in request.creations))
            await self.apis.security.refresh(force=True)
        return protocol.build(protocol.response_class(30, header.api_version),
                              {"throttle_time": 0, "results": results})

    async def describe_acls(self, header: protocol.RequestHeader, request: Any) -> Any:
        data: dict = {"throttle_time": 0, "error_code": 0, "error_message": None, "resources": []}
        refusal = self._refusal("describe")
        if refusal:
            data.update(error_code=refusal[0], error_message=refusal[1])
        else:
            try:
                found = await self.apis._controller().describe_acls.remote(_filter(request).to_dict())
                resources: dict[tuple, list] = {}
                for binding in found:
                    codes = _codes(binding)
                    key = (codes["resource_type"], codes["resource_name"], codes["pattern_type"])
                    resources.setdefault(key, []).append({k: codes[k] for k in
                                                          ("principal", "host", "operation", "permission_type")})
                data["resources"] = [{"resource_type": t, "resource_name": n, "pattern_type": p, "acls": acls}
                                     for (t, n, p), acls in resources.items()]
            except ValueError as error:
                data.update(error_code=E("invalid_request"), error_message=str(error))
        return protocol.build(protocol.response_class(29, header.api_version), data)

    async def delete_acls(self, header: protocol.RequestHeader, request: Any) -> Any:
        refusal = self._refusal("alter")
        results: list[dict] = []
        if refusal:
            results = [{"error_code": refusal[0], "error_message": refusal[1], "matching_acls": ()}
                       for _ in request.filters]
        else:
            filters, bad = [], {}
            for index, entry in enumerate(request.filters):
                try:
                    filters.append(_filter(entry).to_dict())
                except ValueError as error:
                    bad[index] = str(error)
            matched = await self.apis._controller().delete_acls.remote(filters)
            await self.apis.security.refresh(force=True)
            found = iter(matched)
            for index in range(len(request.filters)):
                if index in bad:
                    results.append({"error_code": E("invalid_request"), "error_message": bad[index],
                                    "matching_acls": ()})
                else:
                    results.append({"error_code": 0, "error_message": None, "matching_acls": [
                        {"error_code": 0, "error_message": None, **_codes(b)} for b in next(found)]})
        return protocol.build(protocol.response_class(31, header.api_version),
                              {"throttle_time": 0, "filter_results": results})
