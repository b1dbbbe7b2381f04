"""Producer-state snapshot files: format, atomicity, validation by leader epoch; and the
topic config that bounds how long producers are remembered."""

from __future__ import annotations

import pytest

from rafka.errors import InvalidConfigError
from rafka.storage import LogConfig
from rafka.storage.checkpoint import LeaderEpochCache
from rafka.storage.producer_snapshot import (
    ProducerSnapshot,
    epoch_at,
    list_snapshots,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)


def test_write_then_read_returns_the_same_snapshot(tmp_path):
    snapshot = ProducerSnapshot(4096, 3, [[7, 0, 12, 1_700_000_000_000, [[7, 4000, -1], [10, 4010, -1]]]])
    path = write_snapshot(str(tmp_path), snapshot)
    assert path == snapshot_path(str(tmp_path), 4096) and path.endswith("00000000000000004096.snapshot")
    assert read_snapshot(path) == snapshot


def test_list_snapshots_orders_by_offset_and_ignores_other_files(tmp_path):
    for offset in (300, 20, 1000):
        write_snapshot(str(tmp_path), ProducerSnapshot(offset, 0, []))
    (tmp_path / "00000000000000000000.log").write_bytes(b"")
    (tmp_path / "junk.snapshot").write_text("x")
    assert [offset for offset, _path in list_snapshots(str(tmp_path))] == [20, 300, 1000]


def test_read_snapshot_returns_none_for_a_torn_or_altered_file(tmp_path):
    path = write_snapshot(str(tmp_path), ProducerSnapshot(10, 0, [[1, 0, 5, 0, []]]))
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    assert read_snapshot(path) is None
    open(path, "wb").write(data.replace(b'"offset":10', b'"offset":11'))
    assert read_snapshot(path) is None
    assert read_snapshot(str(tmp_path / "missing.snapshot")) is None


def test_epoch_at_names_the_epoch_whose_range_holds_the_offset():
    epochs = LeaderEpochCache(None, [(0, 0), (3, 100), (5, 250)])
    assert [epoch_at(epochs, offset) for offset in (0, 99, 100, 249, 250, 10_000)] == [0, 0, 3, 3, 5, 5]
    assert epoch_at(LeaderEpochCache(None, [(4, 500)]), 10) == 4  # below the history: its first epoch
    assert epoch_at(LeaderEpochCache(None, []), 10) == -1


def test_producer_id_expiration_is_a_topic_config_with_kafkas_name_and_default():
    assert LogConfig().producer_id_expiration_ms == 24 * 3600 * 1000
    assert LogConfig.from_dict({"producer.id.expiration.ms": "60000"}).producer_id_expiration_ms == 60_000
    with pytest.raises(InvalidConfigError, match="producer.id.expiration.ms"):
        LogConfig.from_dict({"producer.id.expiration.ms": "0"})
