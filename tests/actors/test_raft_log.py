"""A Raft voter's files (actors/raft_log.py): reopen, torn tails, truncation, snapshots, corruption."""

import os

import pytest

from rafka.actors.raft_log import LOG_FILE, META_FILE, SNAPSHOT_FILE, RaftLog
from rafka.errors import StorageError


def test_reopen_restores_term_vote_and_entries(tmp_path):
    log = RaftLog(str(tmp_path))
    assert log.fresh
    log.set_term(3, "v1")
    log.append([(2, {"a": 1}), (3, None)])
    log.close()
    again = RaftLog(str(tmp_path))
    assert not again.fresh
    assert (again.term, again.voted_for, again.recovering) == (3, "v1", False)
    assert again.entries == [(2, {"a": 1}), (3, None)]
    assert (again.last_index, again.last_term) == (2, 3)


def test_reopen_with_torn_tail_at_every_byte_drops_only_the_last_entry(tmp_path):
    base = tmp_path / "base"
    log = RaftLog(str(base))
    log.append([(1, "first"), (1, "second")])
    log.close()
    data = (base / LOG_FILE).read_bytes()
    whole = len(data)
    log = RaftLog(str(base))
    log.append([(1, "third")])
    log.close()
    full = (base / LOG_FILE).read_bytes()
    for cut in range(whole, len(full)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / LOG_FILE).write_bytes(full[:cut])
        torn = RaftLog(str(directory))
        assert torn.entries == [(1, "first"), (1, "second")], cut
        assert torn.last_recovery["bytes_dropped"] == cut - whole
        torn.append([(2, "after")])  # the cut tail is gone, so appends continue cleanly
        torn.close()
        assert RaftLog(str(directory)).entries == [(1, "first"), (1, "second"), (2, "after")]


def test_truncate_after_drops_the_suffix_durably(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (1, "c")])
    log.truncate_after(1)
    log.append([(2, "B")])
    log.close()
    assert RaftLog(str(tmp_path)).entries == [(1, "a"), (2, "B")]


def test_save_snapshot_compacts_and_keeps_the_entries_after_it(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (2, "c")])
    log.save_snapshot(2, 1, ["a", "b"])
    assert (log.snapshot_index, log.entries, log.last_index) == (2, [(2, "c")], 3)
    log.close()
    again = RaftLog(str(tmp_path))
    assert (again.snapshot_index, again.snapshot_term, again.snapshot_state) == (2, 1, ["a", "b"])
    assert again.entries == [(2, "c")]
    assert again.term_at(2) == 1 and again.term_at(1) is None


def test_save_snapshot_of_another_history_drops_every_entry(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (1, "c")])
    log.save_snapshot(2, 5, ["x", "y"])  # an installed snapshot whose entry 2 has term 5
    assert (log.entries, log.last_index, log.last_term) == ([], 2, 5)


def test_reopen_after_crash_between_snapshot_and_log_rename_drops_the_replaced_history(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (1, "c")])
    old_log = (tmp_path / LOG_FILE).read_bytes()
    log.save_snapshot(2, 5, ["x", "y"])
    log.close()
    (tmp_path / LOG_FILE).write_bytes(old_log)  # as if the crash came before the log's rename
    again = RaftLog(str(tmp_path))
    assert (again.snapshot_index, again.entries) == (2, [])
    assert again.last_recovery["entries_dropped"] == 1


def test_reopen_after_crash_between_compaction_renames_keeps_the_entries(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (1, "c")])
    old_log = (tmp_path / LOG_FILE).read_bytes()
    log.save_snapshot(2, 1, ["a", "b"])
    log.close()
    (tmp_path / LOG_FILE).write_bytes(old_log)
    again = RaftLog(str(tmp_path))
    assert (again.snapshot_index, again.entries) == (2, [(1, "c")])


@pytest.mark.parametrize("name", [META_FILE, SNAPSHOT_FILE])
def test_open_with_corrupt_meta_or_snapshot_raises_naming_the_file(tmp_path, name):
    log = RaftLog(str(tmp_path))
    log.set_term(1, None)
    log.append([(1, "a")])
    log.save_snapshot(1, 1, ["a"])
    log.close()
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=name):
        RaftLog(str(tmp_path))


def test_open_with_a_gap_in_the_log_raises(tmp_path):
    log = RaftLog(str(tmp_path))
    log.append([(1, "a"), (1, "b"), (1, "c")])
    log.close()
    data = (tmp_path / LOG_FILE).read_bytes()
    # Rebuild the file without its second entry.
    from rafka.actors.raft_log import _frames
    positions = [position for position, _ in _frames(data)] + [len(data)]
    gapped = data[:positions[2]] + data[positions[3]:]
    (tmp_path / LOG_FILE).write_bytes(gapped)
    with pytest.raises(StorageError, match="jumps from index 1 to 3"):
        RaftLog(str(tmp_path))


def test_open_of_a_removed_directory_is_fresh_and_empty(tmp_path):
    log = RaftLog(str(tmp_path / "voter"))
    log.set_term(4, "v2")
    log.append([(4, "a")])
    log.close()
    for name in os.listdir(tmp_path / "voter"):
        os.remove(tmp_path / "voter" / name)
    os.rmdir(tmp_path / "voter")
    again = RaftLog(str(tmp_path / "voter"))
    assert again.fresh and (again.term, again.voted_for, again.last_index) == (0, None, 0)
