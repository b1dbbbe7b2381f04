"""The controller's metadata store: durability, replay, torn tails, snapshots, record types."""

import copy
import os

import crc32c
import msgpack
import pytest

from rafka.actors.metadata_store import LOG_FILE, SNAPSHOT_FILE, MetadataStore, apply_record
from rafka.errors import StorageError

BROKER = {"type": "register_broker", "broker_id": 3, "node_id": "node-a", "data_dir": "/d", "host": "h"}


def topic_record(name: str, partitions: int = 2) -> dict:
    return {"type": "create_topic", "topic": name, "topic_id": name + "-id", "config": {"retention.ms": "1"},
            "assignments": [[0, 1]] * partitions, "leaders": [0] * partitions, "leader_epochs": [0] * partitions,
            "isr": [[0, 1]] * partitions}


def fresh_state() -> dict:
    state = {"brokers": {}, "topics": {}, "next_producer_id": 0, "sequence": 0}
    apply_record(state, dict(topic_record("t", partitions=1), sequence=1))
    return state


def test_reopen_after_applies_restores_state(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(BROKER)
    store.apply(topic_record("orders"))
    store.close()
    again = MetadataStore(str(tmp_path))
    assert again.state == store.state
    assert again.state["sequence"] == 2
    assert again.last_recovery == {"records_replayed": 2, "bytes_dropped": 0}


def test_reopen_after_snapshot_every_records_loads_snapshot_and_replays_the_rest(tmp_path):
    store = MetadataStore(str(tmp_path), snapshot_every=3)
    for index in range(5):
        store.apply(topic_record(f"t{index}"))
    store.close()
    assert os.path.getsize(tmp_path / SNAPSHOT_FILE) > 0
    again = MetadataStore(str(tmp_path), snapshot_every=3)
    assert sorted(again.state["topics"]) == [f"t{index}" for index in range(5)]
    assert again.last_recovery == {"records_replayed": 2, "bytes_dropped": 0}


def test_snapshot_after_snapshot_every_records_empties_the_log(tmp_path):
    store = MetadataStore(str(tmp_path), snapshot_every=2)
    store.apply(topic_record("a"))
    assert os.path.getsize(tmp_path / LOG_FILE) > 0
    store.apply(topic_record("b"))
    assert os.path.getsize(tmp_path / LOG_FILE) == 0
    assert not os.path.exists(tmp_path / (SNAPSHOT_FILE + ".tmp"))


def test_reopen_with_torn_tail_at_every_byte_drops_only_the_last_record(tmp_path):
    store = MetadataStore(str(tmp_path / "base"))
    store.apply(topic_record("kept"))
    kept_size = os.path.getsize(tmp_path / "base" / LOG_FILE)
    store.apply(topic_record("torn"))
    store.close()
    data = (tmp_path / "base" / LOG_FILE).read_bytes()
    for cut in range(kept_size, len(data)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / LOG_FILE).write_bytes(data[:cut])
        store = MetadataStore(str(directory))
        assert list(store.state["topics"]) == ["kept"], cut
        assert store.last_recovery == {"records_replayed": 1, "bytes_dropped": cut - kept_size}, cut
        assert os.path.getsize(directory / LOG_FILE) == kept_size
        store.close()


def test_reopen_with_flipped_byte_in_last_record_drops_it(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("kept"))
    kept_size = os.path.getsize(tmp_path / LOG_FILE)
    store.apply(topic_record("flipped"))
    store.close()
    data = bytearray((tmp_path / LOG_FILE).read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / LOG_FILE).write_bytes(bytes(data))
    again = MetadataStore(str(tmp_path))
    assert list(again.state["topics"]) == ["kept"]
    assert again.last_recovery == {"records_replayed": 1, "bytes_dropped": len(data) - kept_size}


def test_apply_after_dropped_tail_survives_reopen(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    store.close()
    with open(tmp_path / LOG_FILE, "ab") as handle:
        handle.write(b"\x05\x00")  # a torn frame header
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("b"))
    store.close()
    again = MetadataStore(str(tmp_path))
    assert sorted(again.state["topics"]) == ["a", "b"]
    assert again.last_recovery == {"records_replayed": 2, "bytes_dropped": 0}


def test_reopen_after_crash_between_snapshot_and_log_truncation_does_not_double_apply(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    store.apply({"type": "add_partitions", "topic": "a", "assignments": [[0]], "leaders": [0],
                 "leader_epochs": [0], "isr": [[0]]})
    log_before = (tmp_path / LOG_FILE).read_bytes()
    store.snapshot()
    store.close()
    (tmp_path / LOG_FILE).write_bytes(log_before)  # as if the truncation never happened
    again = MetadataStore(str(tmp_path))
    assert again.last_recovery == {"records_replayed": 0, "bytes_dropped": 0}
    assert len(again.state["topics"]["a"]["partitions"]) == 3
    again.apply({"type": "delete_topic", "topic": "a"})
    again.close()
    final = MetadataStore(str(tmp_path))
    assert final.state["topics"] == {} and final.state["sequence"] == 3


NOT_A_STATE = msgpack.packb([1, 2])
FRAMED_LIST = len(NOT_A_STATE).to_bytes(4, "little") + crc32c.crc32c(NOT_A_STATE).to_bytes(4, "little") + NOT_A_STATE


@pytest.mark.parametrize("contents", [b"garbage!", b"", b"\x04\x00\x00\x00\x00\x00\x00\x00abcd", FRAMED_LIST])
def test_open_with_corrupt_snapshot_raises_naming_the_file(tmp_path, contents):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    store.snapshot()
    store.close()
    (tmp_path / SNAPSHOT_FILE).write_bytes(contents)
    with pytest.raises(StorageError, match=str(tmp_path / SNAPSHOT_FILE)):
        MetadataStore(str(tmp_path))


def test_apply_of_inapplicable_record_writes_nothing(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    size, state, before = os.path.getsize(tmp_path / LOG_FILE), store.state, copy.deepcopy(store.state)
    with pytest.raises(ValueError, match="'bogus'"):
        store.apply({"type": "bogus"})
    with pytest.raises(KeyError):
        store.apply({"type": "alter_config", "topic": "missing", "config": {}})
    with pytest.raises(IndexError):
        store.apply({"type": "change_isr", "topic": "a", "partition": 9, "isr": []})
    assert os.path.getsize(tmp_path / LOG_FILE) == size
    assert store.state is state and store.state == before
    store.apply({"type": "delete_topic", "topic": "a"})
    store.close()
    assert MetadataStore(str(tmp_path)).state["topics"] == {}


def test_open_with_sequence_gap_in_log_raises(tmp_path):
    store = MetadataStore(str(tmp_path / "base"))
    store.apply(topic_record("a"))
    first = (tmp_path / "base" / LOG_FILE).read_bytes()
    store.apply(topic_record("b"))
    store.apply(topic_record("c"))
    store.close()
    (tmp_path / LOG_FILE).write_bytes(first + (tmp_path / "base" / LOG_FILE).read_bytes()[2 * len(first):])
    with pytest.raises(StorageError, match="jumps from sequence 1 to 3"):
        MetadataStore(str(tmp_path))


def test_apply_after_failed_fsync_refuses_until_reopen(tmp_path, monkeypatch):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(StorageError, match="Input/output error"):
            store.apply(topic_record("b"))
    assert "b" not in store.state["topics"]
    with pytest.raises(StorageError, match="failed earlier"):
        store.apply(topic_record("c"))
    store.close()
    assert "a" in MetadataStore(str(tmp_path)).state["topics"]


def test_apply_record_register_broker_adds_broker_under_string_id():
    state = fresh_state()
    apply_record(state, dict(BROKER, sequence=2))
    assert state["brokers"] == {"3": {"broker_id": 3, "node_id": "node-a", "data_dir": "/d", "host": "h"}}
    assert state["sequence"] == 2


def test_apply_record_create_topic_builds_partitions():
    assert fresh_state()["topics"]["t"] == {
        "topic_id": "t-id", "config": {"retention.ms": "1"},
        "partitions": [{"replicas": [0, 1], "leader": 0, "leader_epoch": 0, "isr": [0, 1], "partition_epoch": 0}]}


def test_apply_record_delete_topic_removes_it():
    state = fresh_state()
    apply_record(state, {"type": "delete_topic", "topic": "t", "sequence": 2})
    assert state["topics"] == {}


def test_apply_record_alter_config_replaces_config():
    state = fresh_state()
    apply_record(state, {"type": "alter_config", "topic": "t", "config": {"cleanup.policy": "compact"}, "sequence": 2})
    assert state["topics"]["t"]["config"] == {"cleanup.policy": "compact"}


def test_apply_record_add_partitions_appends_them():
    state = fresh_state()
    apply_record(state, {"type": "add_partitions", "topic": "t", "assignments": [[1], [2]], "leaders": [1, 2],
                         "leader_epochs": [0, 5], "isr": [[1], [2]], "sequence": 2})
    assert state["topics"]["t"]["partitions"][1:] == [
        {"replicas": [1], "leader": 1, "leader_epoch": 0, "isr": [1], "partition_epoch": 0},
        {"replicas": [2], "leader": 2, "leader_epoch": 5, "isr": [2], "partition_epoch": 0}]


def test_apply_record_change_leader_sets_leader_epoch_and_isr_and_bumps_the_partition_epoch():
    state = fresh_state()
    apply_record(state, {"type": "change_leader", "topic": "t", "partition": 0, "leader": 1, "leader_epoch": 4,
                         "isr": [1], "sequence": 2})
    assert state["topics"]["t"]["partitions"][0] == {"replicas": [0, 1], "leader": 1, "leader_epoch": 4, "isr": [1],
                                                     "partition_epoch": 1}


def test_apply_record_change_isr_sets_only_isr_and_bumps_the_partition_epoch():
    state = fresh_state()
    apply_record(state, {"type": "change_isr", "topic": "t", "partition": 0, "isr": [1], "sequence": 2})
    assert state["topics"]["t"]["partitions"][0] == {"replicas": [0, 1], "leader": 0, "leader_epoch": 0, "isr": [1],
                                                     "partition_epoch": 1}


def test_apply_record_on_a_partition_stored_without_a_partition_epoch_starts_it_at_one():
    state = fresh_state()
    del state["topics"]["t"]["partitions"][0]["partition_epoch"]  # as a snapshot from before partition epochs
    apply_record(state, {"type": "change_isr", "topic": "t", "partition": 0, "isr": [1], "sequence": 2})
    assert state["topics"]["t"]["partitions"][0]["partition_epoch"] == 1


def test_apply_record_allocate_producer_ids_sets_next_id():
    state = fresh_state()
    apply_record(state, {"type": "allocate_producer_ids", "next_producer_id": 1000, "sequence": 2})
    assert state["next_producer_id"] == 1000


def test_apply_record_unknown_type_raises_naming_it():
    state = fresh_state()
    with pytest.raises(ValueError, match="'bogus'"):
        apply_record(state, {"type": "bogus", "sequence": 2})
    assert state == fresh_state()


def test_broker_per_node_survives_reopen_and_defaults_to_off(tmp_path):
    store = MetadataStore(str(tmp_path))
    assert store.state["broker_per_node"] is False
    store.apply({"type": "set_broker_per_node", "enabled": True})
    store.close()
    assert MetadataStore(str(tmp_path)).state["broker_per_node"] is True


def test_snapshot_written_before_broker_per_node_existed_loads_with_it_off(tmp_path):
    old_state = {"brokers": {}, "topics": {}, "next_producer_id": 0, "sequence": 0}
    body = msgpack.packb(old_state)
    header = len(body).to_bytes(4, "little") + crc32c.crc32c(body).to_bytes(4, "little")
    (tmp_path / SNAPSHOT_FILE).write_bytes(header + body)
    assert MetadataStore(str(tmp_path)).state == dict(old_state, broker_per_node=False, deleted_topic_ids=[],
                                                      scram_credentials={}, acls=[])


def test_delete_topic_remembers_the_deleted_topic_id(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply({"type": "create_topic", "topic": "t", "topic_id": "id-1", "config": {}, "assignments": [[0]],
                 "leaders": [0], "leader_epochs": [0], "isr": [[0]]})
    store.apply({"type": "delete_topic", "topic": "t", "topic_id": "id-1"})
    store.close()
    assert MetadataStore(str(tmp_path)).state["deleted_topic_ids"] == ["id-1"]
