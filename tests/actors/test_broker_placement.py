"""Choosing broker ids for Ray nodes without a broker, and finding broker data dirs on
disk (no Ray: the parts of broker_placement that decide, not the ones that launch)."""

import json
import os

from rafka.actors.broker_placement import broker_directory, choose_broker_ids, stored_broker_ids


def write_broker_dir(data_dir, broker_id, stored_id=None):
    directory = broker_directory(str(data_dir), broker_id)
    os.makedirs(directory)
    with open(os.path.join(directory, "meta.json"), "w") as handle:
        json.dump({"broker_id": broker_id if stored_id is None else stored_id}, handle)


def test_choose_without_orphans_gives_new_ids_in_node_order():
    assert choose_broker_ids(["n1", "n2"], [], {}, next_id=3) == [(3, "n1"), (4, "n2")]


def test_choose_gives_a_node_the_orphaned_id_whose_data_it_holds():
    placements = choose_broker_ids(["fresh", "returning"], [1, 4], {"fresh": [], "returning": [4]}, next_id=5)
    assert placements == [(5, "fresh"), (4, "returning")]


def test_choose_never_gives_an_orphaned_id_to_a_node_without_its_data():
    assert choose_broker_ids(["n1"], [2], {"n1": [0, 1]}, next_id=3) == [(3, "n1")]


def test_choose_on_shared_disk_gives_each_orphan_to_one_node_lowest_first():
    everything = [0, 1, 2]
    placements = choose_broker_ids(["a", "b", "c"], [2, 1], {"a": everything, "b": everything, "c": everything},
                                   next_id=3)
    assert placements == [(1, "a"), (2, "b"), (3, "c")]


def test_stored_broker_ids_lists_broker_dirs_whose_meta_names_them(tmp_path):
    write_broker_dir(tmp_path, 0)
    write_broker_dir(tmp_path, 2)
    write_broker_dir(tmp_path, 5, stored_id=7)  # copied from elsewhere: not broker 5's
    (tmp_path / "broker-9").mkdir()  # no meta.json
    (tmp_path / "broker-x").mkdir()
    (tmp_path / "controller").mkdir()
    assert stored_broker_ids(str(tmp_path)) == [0, 2]


def test_stored_broker_ids_of_a_missing_dir_is_empty(tmp_path):
    assert stored_broker_ids(str(tmp_path / "nothing")) == []
