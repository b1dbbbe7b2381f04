"""A replica's claim on its directory by topic id (KIP-516; see actors/replica.py)."""

from __future__ import annotations

import os

from rafka.actors.replica import claim_directory, read_topic_id


def test_a_new_directory_takes_the_topic_id(tmp_path):
    directory = str(tmp_path / "t-0")
    assert claim_directory(directory, "a" * 32, "t-0") == "a" * 32
    assert read_topic_id(directory) == "a" * 32


def test_data_of_another_topic_id_is_moved_aside_never_read(tmp_path):
    directory = str(tmp_path / "t-0")
    claim_directory(directory, "old", "t-0")
    with open(os.path.join(directory, "00000000000000000000.log"), "wb") as handle:
        handle.write(b"records of the deleted incarnation")
    assert claim_directory(directory, "new", "t-0") == "new"
    assert os.listdir(directory) == ["partition.metadata"]
    stray = str(tmp_path / "t-0.stray-old")
    assert read_topic_id(stray) == "old" and "00000000000000000000.log" in os.listdir(stray)


def test_a_directory_from_before_topic_ids_adopts_the_id(tmp_path):
    directory = tmp_path / "t-0"
    directory.mkdir()
    (directory / "00000000000000000000.log").write_bytes(b"kept")
    assert claim_directory(str(directory), "id", "t-0") == "id"
    assert (directory / "00000000000000000000.log").read_bytes() == b"kept"
