"""The controller's metadata store: durability, replay, torn tails, snapshots."""

import os

import pytest

from rafka.actors.metadata_store import LOG_FILE, SNAPSHOT_FILE, MetadataStore
from rafka.errors import StorageError


def topic_record(name: str, partitions: int = 2) -> dict:
    return {"type": "create_topic", "topic": name, "topic_id": name + "-id", "config": {"retention.ms": "1"},
            "assignments": [[0]] * partitions, "leaders": [0] * partitions, "leader_epochs": [0] * partitions,
            "isr": [[0]] * partitions}


def test_state_survives_reopen(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply({"type": "register_broker", "broker_id": 0, "node_id": "n", "data_dir": "/d", "host": "h"})
    store.apply(topic_record("orders"))
    store.close()
    again = MetadataStore(str(tmp_path))
    assert again.state["brokers"]["0"]["node_id"] == "n"
    assert again.state["topics"]["orders"]["partitions"][1] == {"replicas": [0], "leader": 0, "leader_epoch": 0, "isr": [0]}
    assert again.last_recovery == {"records_replayed": 2, "bytes_dropped": 0}


def test_snapshot_then_log_replay_after_snapshot_every_records(tmp_path):
    store = MetadataStore(str(tmp_path), snapshot_every=3)
    for index in range(5):
        store.apply(topic_record(f"t{index}"))
    store.close()
    assert os.path.getsize(tmp_path / SNAPSHOT_FILE) > 0
    again = MetadataStore(str(tmp_path), snapshot_every=3)
    assert sorted(again.state["topics"]) == [f"t{index}" for index in range(5)]
    assert again.last_recovery["records_replayed"] == 2


def test_torn_tail_at_every_byte_is_dropped_and_reported(tmp_path):
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
        assert list(store.state["topics"]) == ["kept"]
        assert store.last_recovery == {"records_replayed": 1, "bytes_dropped": cut - kept_size}
        store.close()


def test_flipped_byte_in_last_record_is_dropped(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("kept"))
    store.apply(topic_record("flipped"))
    store.close()
    data = bytearray((tmp_path / LOG_FILE).read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / LOG_FILE).write_bytes(bytes(data))
    assert list(MetadataStore(str(tmp_path)).state["topics"]) == ["kept"]


def test_crash_between_snapshot_and_log_truncation_does_not_double_apply(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    store.apply({"type": "alter_config", "topic": "a", "config": {"x": "1"}})
    log_before = (tmp_path / LOG_FILE).read_bytes()
    store.snapshot()
    store.close()
    (tmp_path / LOG_FILE).write_bytes(log_before)  # as if the truncation never happened
    again = MetadataStore(str(tmp_path))
    assert again.last_recovery["records_replayed"] == 0
    assert again.state["topics"]["a"]["config"] == {"x": "1"}
    again.apply({"type": "delete_topic", "topic": "a"})
    again.close()
    assert MetadataStore(str(tmp_path)).state["topics"] == {}


def test_corrupt_snapshot_raises_naming_the_file(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("a"))
    store.snapshot()
    store.close()
    (tmp_path / SNAPSHOT_FILE).write_bytes(b"garbage!")
    with pytest.raises(StorageError, match=SNAPSHOT_FILE):
        MetadataStore(str(tmp_path))


def test_record_types_apply_as_specified(tmp_path):
    store = MetadataStore(str(tmp_path))
    store.apply(topic_record("t", partitions=1))
    store.apply({"type": "add_partitions", "topic": "t", "assignments": [[1]], "leaders": [1], "leader_epochs": [0], "isr": [[1]]})
    store.apply({"type": "change_leader", "topic": "t", "partition": 1, "leader": 2, "leader_epoch": 4, "isr": [2]})
    store.apply({"type": "change_isr", "topic": "t", "partition": 0, "isr": []})
    store.apply({"type": "allocate_producer_ids", "next_producer_id": 1000})
    partitions = store.state["topics"]["t"]["partitions"]
    assert partitions[1] == {"replicas": [1], "leader": 2, "leader_epoch": 4, "isr": [2]}
    assert partitions[0]["isr"] == [] and store.state["next_producer_id"] == 1000
    with pytest.raises(ValueError, match="'bogus'"):
        store.apply({"type": "bogus"})
