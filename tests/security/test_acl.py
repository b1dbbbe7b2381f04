"""ACL bindings, filters and the authorizer's decisions (rafka.security.acl)."""

import pytest

from rafka.security.acl import AclBinding, AclFilter, Authorizer


def authorizer(*bindings, **options):
    return Authorizer([b.to_dict() for b in bindings], **options)


def test_authorize_without_acls_refuses_by_default_and_allows_when_configured():
    assert not authorizer().authorize("User:alice", "1.2.3.4", "read", "topic", "t")
    assert authorizer(allow_everyone_if_no_acl_found=True).authorize("User:alice", "1.2.3.4", "read", "topic", "t")


def test_authorize_read_acl_grants_read_and_describe_but_not_write():
    auth = authorizer(AclBinding("topic", "orders", "User:alice", "read"))
    assert auth.authorize("User:alice", "h", "read", "topic", "orders")
    assert auth.authorize("User:alice", "h", "describe", "topic", "orders")
    assert not auth.authorize("User:alice", "h", "write", "topic", "orders")
    assert not auth.authorize("User:bob", "h", "read", "topic", "orders")


def test_authorize_deny_beats_allow():
    auth = authorizer(AclBinding("topic", "*", "User:*", "all"),
                      AclBinding("topic", "secret", "User:alice", "read", permission="deny"))
    assert not auth.authorize("User:alice", "h", "read", "topic", "secret")
    assert auth.authorize("User:alice", "h", "read", "topic", "public")
    assert auth.authorize("User:bob", "h", "read", "topic", "secret")


def test_authorize_prefixed_pattern_matches_names_that_start_with_it():
    auth = authorizer(AclBinding("topic", "team-a.", "User:alice", "write", pattern_type="prefixed"))
    assert auth.authorize("User:alice", "h", "write", "topic", "team-a.orders")
    assert not auth.authorize("User:alice", "h", "write", "topic", "team-b.orders")


def test_authorize_super_user_bypasses_acls():
    auth = authorizer(AclBinding("topic", "t", "User:alice", "read", permission="deny"), super_users=["User:admin"])
    assert auth.authorize("User:admin", "h", "delete", "topic", "t")


def test_authorize_host_restricts_the_binding():
    auth = authorizer(AclBinding("group", "g", "User:alice", "read", host="10.0.0.1"))
    assert auth.authorize("User:alice", "10.0.0.1", "read", "group", "g")
    assert not auth.authorize("User:alice", "10.0.0.2", "read", "group", "g")


def test_authorize_any_finds_a_writable_topic():
    auth = authorizer(AclBinding("topic", "t", "User:alice", "write"))
    assert auth.authorize_any("User:alice", "h", "write", "topic")
    assert not auth.authorize_any("User:bob", "h", "write", "topic")


@pytest.mark.parametrize("field, value", [("operation", "fly"), ("permission", "maybe"), ("pattern_type", "match"),
                                          ("resource_type", "user"), ("principal", "alice"), ("name", "")])
def test_binding_refuses_bad_field_naming_it(field, value):
    arguments = {"resource_type": "topic", "name": "t", "principal": "User:a", "operation": "read", field: value}
    with pytest.raises(ValueError) as raised:
        AclBinding(**arguments)
    assert repr(value) in str(raised.value)


def test_binding_for_cluster_must_name_kafka_cluster():
    with pytest.raises(ValueError, match="kafka-cluster"):
        AclBinding("cluster", "mine", "User:a", "alter")


def test_binding_takes_kafka_numeric_codes():
    binding = AclBinding(2, "t", "User:a", 3, permission=3, pattern_type=4)
    assert (binding.resource_type, binding.operation, binding.permission, binding.pattern_type) == \
        ("topic", "read", "allow", "prefixed")


def test_filter_match_selects_every_binding_that_applies_to_a_resource():
    literal = AclBinding("topic", "team-a.orders", "User:a", "read").to_dict()
    prefixed = AclBinding("topic", "team-a.", "User:b", "read", pattern_type="prefixed").to_dict()
    other = AclBinding("topic", "team-b.", "User:c", "read", pattern_type="prefixed").to_dict()
    selector = AclFilter(resource_type="topic", name="team-a.orders", pattern_type="match")
    assert [b for b in (literal, prefixed, other) if selector.matches(b)] == [literal, prefixed]
    assert [b for b in (literal, prefixed, other) if AclFilter(principal="User:c").matches(b)] == [other]
