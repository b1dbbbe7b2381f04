"""Where a follower truncates when a new leader hands it its epoch history (KIP-101/279)."""

from rafka.actors.replication import truncation_offset
from rafka.storage.checkpoint import LeaderEpochCache


def test_same_history_keeps_everything():
    assert truncation_offset(LeaderEpochCache(None, [(0, 0)]), 50, [(0, 0), (1, 50)], 70) == 50


def test_a_divergent_tail_is_cut_where_the_shared_epoch_ended():
    # We led epoch 1 from 40 and wrote to 60; the leader's epoch 1 never existed: it
    # went from epoch 0 (ended at 40) to epoch 2.
    assert truncation_offset(LeaderEpochCache(None, [(0, 0), (1, 40)]), 60, [(0, 0), (2, 45)], 80) == 40


def test_a_follower_ahead_in_the_same_epoch_is_cut_to_the_leaders_end():
    assert truncation_offset(LeaderEpochCache(None, [(0, 0), (3, 10)]), 30, [(0, 0), (3, 10)], 25) == 25


def test_a_history_that_starts_after_the_shared_epoch_keeps_what_precedes_it():
    # Our log began at 100 (started there to match the leader), then we led epoch 1
    # without writing; the new leader's epoch 0 ended at 100. Nothing to cut: never -1.
    assert truncation_offset(LeaderEpochCache(None, [(1, 100)]), 100, [(0, 0), (2, 100)], 100) == 100


def test_nothing_shared_truncates_to_zero():
    assert truncation_offset(LeaderEpochCache(None, [(0, 0)]), 20, [(5, 0)], 10) == 0
