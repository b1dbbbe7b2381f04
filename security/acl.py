"""ACLs: who may do what to which resource, and the authorizer that decides.

A binding is Kafka's: a resource pattern (resource type ``topic``, ``group``,
``cluster`` or ``transactional_id``; a name; pattern type ``literal`` or ``prefixed``)
and an entry (principal ``User:<name>`` or ``User:*``; host, ``*`` for any; an
operation; permission ``allow`` or ``deny``). A literal name ``*`` matches every
resource of its type; the cluster resource is named ``kafka-cluster``.

``AclBinding`` is the public form (admin client, CLI); the controller's metadata keeps
bindings as plain dicts (``AclBinding.to_dict``). ``AclFilter`` selects bindings for
DescribeAcls/DeleteAcls (``None``/``any`` fields match everything; pattern type
``match`` matches every pattern that would apply to the named resource).

``Authorizer.authorize(principal, host, operation, resource_type, name)`` follows
Kafka's StandardAuthorizer:

1. a super user may do anything;
2. the ACLs that apply to the resource are the literal ones with its name or ``*`` and
   the prefixed ones its name starts with; if there are none, the answer is
   ``allow_everyone_if_no_acl_found`` (false by default);
3. a matching ``deny`` (principal or ``User:*``, host or ``*``, the operation or ``all``)
   refuses: deny beats allow;
4. a matching ``allow`` grants; ``describe`` is implied by ``read``, ``write``,
   ``delete`` and ``alter``, and ``describe_configs`` by ``alter_configs``;
5. otherwise refused.

Pure and immutable once built; the wire listener builds a new one whenever the
controller's ACLs change.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

RESOURCE_TYPES = {"any": 1, "topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN_TYPES = {"any": 1, "match": 2, "literal": 3, "prefixed": 4}
OPERATIONS = {"any": 1, "all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
              "cluster_action": 9, "describe_configs": 10, "alter_configs": 11, "idempotent_write": 12}
PERMISSIONS = {"any": 1, "deny": 2, "allow": 3}
CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"
IMPLIED_BY = {"describe": {"read", "write", "delete", "alter"}, "describe_configs": {"alter_configs"}}
NAME_BYTES_MAX = 1024


def _code_name(table: dict[str, int], value: object, what: str, allow_filters: bool) -> str:
    """The lower-case name of ``value`` (a name, any case, or Kafka's numeric code)."""
    if isinstance(value, int) and not isinstance(value, bool):
        for name, code in table.items():
            if code == value:
                value = name
                break
    name = value.lower().replace("-", "_") if isinstance(value, str) else value
    if name not in table or (not allow_filters and name in ("any", "match")):
        choices = [n for n in table if allow_filters or n not in ("any", "match")]
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return name


def validate_principal(principal: object) -> str:
    if not isinstance(principal, str) or not principal.startswith("User:") or len(principal) < 6 \
            or len(principal.encode()) > NAME_BYTES_MAX:
        raise ValueError(f"principal must be 'User:<name>' or 'User:*', got {principal!r}")
    return principal


@dataclasses.dataclass(frozen=True)
class AclBinding:
    """One ACL: ``principal`` may (``permission="allow"``) or may not (``"deny"``) do
    ``operation`` on the resources ``resource_type``/``name``/``pattern_type`` select,
    from ``host`` (``*``: any). Names are validated at construction."""

    resource_type: str
    name: str
    principal: str
    operation: str
    permission: str = "allow"
    pattern_type: str = "literal"
    host: str = WILDCARD

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "resource_type", _code_name(RESOURCE_TYPES, self.resource_type, "resource type", False))
        set_(self, "pattern_type", _code_name(PATTERN_TYPES, self.pattern_type, "pattern type", False))
        set_(self, "operation", _code_name(OPERATIONS, self.operation, "operation", False))
        set_(self, "permission", _code_name(PERMISSIONS, self.permission, "permission", False))
        validate_principal(self.principal)
        if not isinstance(self.name, str) or not self.name or len(self.name.encode()) > NAME_BYTES_MAX:
            raise ValueError(f"resource name must be a non-empty str, got {self.name!r}")
        if self.resource_type == "cluster" and self.name != CLUSTER_NAME:
            raise ValueError(f"the cluster resource is named {CLUSTER_NAME!r}, got {self.name!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be an address or '*', got {self.host!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AclBinding":
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data})


@dataclasses.dataclass(frozen=True)
class AclFilter:
    """Selects bindings: each field ``None`` (or ``any``) matches every value. Pattern
    type ``match`` with a name selects every binding that applies to that resource."""

    resource_type: str = "any"
    name: str | None = None
    pattern_type: str = "any"
    principal: str | None = None
    host: str | None = None
    operation: str = "any"
    permission: str = "any"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "resource_type", _code_name(RESOURCE_TYPES, self.resource_type, "resource type", True))
        set_(self, "pattern_type", _code_name(PATTERN_TYPES, self.pattern_type, "pattern type", True))
        set_(self, "operation", _code_name(OPERATIONS, self.operation, "operation", True))
        set_(self, "permission", _code_name(PERMISSIONS, self.permission, "permission", True))

    def matches(self, binding: dict) -> bool:
        if self.resource_type != "any" and binding["resource_type"] != self.resource_type:
            return False
        if self.pattern_type == "match":
            if self.name is not None and not _applies(binding, self.name):
                return False
        else:
            if self.pattern_type != "any" and binding["pattern_type"] != self.pattern_type:
                return False
            if self.name is not None and binding["name"] != self.name:
                return False
        for field, wanted in (("principal", self.principal), ("host", self.host),
                              ("operation", self.operation), ("permission", self.permission)):
            if wanted is None or (wanted == "any" and field in ("operation", "permission")):
                continue
            if binding[field] != wanted:
                return False
        return True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AclFilter":
        return cls(**data)


def _applies(binding: dict, name: str) -> bool:
    if binding["pattern_type"] == "literal":
        return binding["name"] in (name, WILDCARD)
    return name.startswith(binding["name"])


class Authorizer:
    """Decides requests from ``bindings`` (dicts as ``AclBinding.to_dict`` makes)."""

    def __init__(self, bindings: Iterable[dict], super_users: Iterable[str] = (),
                 allow_everyone_if_no_acl_found: bool = False) -> None:
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._literal: dict[tuple[str, str], list[dict]] = {}
        self._prefixed: dict[str, list[dict]] = {}
        for binding in bindings:
            if binding["pattern_type"] == "literal":
                self._literal.setdefault((binding["resource_type"], binding["name"]), []).append(binding)
            else:
                self._prefixed.setdefault(binding["resource_type"], []).append(binding)

    def _applicable(self, resource_type: str, name: str) -> list[dict]:
        found = list(self._literal.get((resource_type, name), ()))
        if name != WILDCARD:
            found += self._literal.get((resource_type, WILDCARD), ())
        found += [b for b in self._prefixed.get(resource_type, ()) if name.startswith(b["name"])]
        return found

    def authorize(self, principal: str, host: str, operation: str, resource_type: str, name: str) -> bool:
        if principal in self.super_users:
            return True
        applicable = self._applicable(resource_type, name)
        if not applicable:
            return self.allow_everyone_if_no_acl_found
        mine = [b for b in applicable if b["principal"] in (principal, "User:*") and b["host"] in (host, WILDCARD)]
        if any(b["permission"] == "deny" and b["operation"] in (operation, "all") for b in mine):
            return False
        granting = {operation, "all"} | IMPLIED_BY.get(operation, set())
        return any(b["permission"] == "allow" and b["operation"] in granting for b in mine)

    def authorize_any(self, principal: str, host: str, operation: str, resource_type: str) -> bool:
        """Whether ``principal`` may do ``operation`` on at least one resource of the type
        (Kafka grants InitProducerId to a principal that may write to some topic)."""
        if principal in self.super_users:
            return True
        candidates = [b for bindings in self._literal.values() for b in bindings] + \
            [b for bindings in self._prefixed.values() for b in bindings]
        for binding in candidates:
            if binding["resource_type"] == resource_type and binding["permission"] == "allow" \
                    and binding["principal"] in (principal, "User:*") and binding["host"] in (host, WILDCARD) \
                    and binding["operation"] in (operation, "all") \
                    and self.authorize(principal, host, operation, resource_type, binding["name"]):
                return True
        return False
