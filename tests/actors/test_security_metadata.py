"""SCRAM credentials and ACLs in the controller's durable metadata (records
alter_scram_credentials, create_acls, delete_acls; actors/security_metadata.py)."""

import asyncio

import pytest

from rafka.actors.metadata_store import MetadataStore
from rafka.actors.security_metadata import SecurityMetadata
from rafka.security import scram
from rafka.security.acl import AclBinding


class CommittedStore:
    """A MetadataStore behind the quorum store's interface: ``apply`` is awaited (on the
    quorum, it returns once a majority of voters has the record)."""

    def __init__(self, directory: str) -> None:
        self._store = MetadataStore(directory)

    @property
    def state(self) -> dict:
        return self._store.state

    async def apply(self, record: dict) -> None:
        self._store.apply(record)

    def close(self) -> None:
        self._store.close()


class Controller(SecurityMetadata):
    """The mixin over a real MetadataStore, without Ray (no brokers to notify)."""

    def __init__(self, directory: str) -> None:
        self.store = CommittedStore(directory)
        self._lock = asyncio.Lock()

    def _mutex(self):
        return self._lock

    def _alive(self):
        return []


def run(coroutine):
    return asyncio.run(coroutine)


def test_credentials_and_acls_survive_reopening_the_store(tmp_path):
    controller = Controller(str(tmp_path))
    stored = scram.credential("pw", "SCRAM-SHA-256")
    assert run(controller.alter_scram_credentials([["alice", stored]], [])) == [None]
    binding = AclBinding("topic", "t", "User:alice", "read").to_dict()
    run(controller.create_acls([binding]))
    controller.store.close()
    reopened = Controller(str(tmp_path))
    assert reopened.security_state()["acls"] == [binding]
    assert reopened.security_state()["scram_credentials"]["alice"]["SCRAM-SHA-256"]["stored_key"] == \
        stored["stored_key"]
    assert reopened.describe_scram_credentials() == {"alice": [("SCRAM-SHA-256", 4096)]}


def test_alter_scram_credentials_answers_each_item_and_applies_the_good_ones(tmp_path):
    controller = Controller(str(tmp_path))
    good = scram.credential("pw", "SCRAM-SHA-512")
    bad = dict(good, iterations=10)
    results = run(controller.alter_scram_credentials([["bob", good], ["carol", bad]], [["nobody", "SCRAM-SHA-256"]]))
    assert results[0][0] == "resource_not_found" and results[1] is None
    assert results[2][0] == "unacceptable_credential" and "iterations" in results[2][1]
    assert sorted(controller.describe_scram_credentials()) == ["bob"]


def test_create_acls_with_one_bad_binding_creates_none(tmp_path):
    controller = Controller(str(tmp_path))
    good = AclBinding("topic", "t", "User:a", "read").to_dict()
    with pytest.raises(ValueError, match="fly"):
        run(controller.create_acls([good, dict(good, operation="fly")]))
    assert controller.security_state()["acls"] == []


def test_delete_acls_returns_what_each_filter_matched(tmp_path):
    controller = Controller(str(tmp_path))
    read = AclBinding("topic", "t", "User:a", "read").to_dict()
    write = AclBinding("topic", "t", "User:b", "write").to_dict()
    run(controller.create_acls([read, write, read]))
    assert controller.security_state()["acls"] == [read, write]  # a duplicate is kept once
    matched = run(controller.delete_acls([{"principal": "User:a"}, {"operation": "delete"}]))
    assert matched == [[read], []]
    assert controller.security_state()["acls"] == [write]
