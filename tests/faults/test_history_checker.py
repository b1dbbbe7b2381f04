"""The history checker on hand-made histories, without Ray: a clean history passes every
check, and for each check a history that breaks its invariant makes it (and the
verdict) fail, so no check can pass by checking nothing."""

from __future__ import annotations

import copy
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history_checker as checker  # noqa: E402


def send(producer, index, offset, partition=0, outcome="ok", topic="log", key="k", value=None):
    return {"producer": producer, "index": index, "topic": topic, "key": key,
            "value": value if value is not None or topic == "compact" else f"{producer}-{index}",
            "outcome": outcome, "partition": partition if outcome == "ok" else None,
            "offset": offset if outcome == "ok" else None}


def observe(reader, offset, value, interval=1, partition=0, topic="log", key="k"):
    return {"reader": reader, "interval": interval, "topic": topic, "partition": partition, "offset": offset,
            "key": key, "value": value}


def clean_history() -> dict:
    """Two producers on one partition of an append topic, one compacted key, a group of
    two consumers handing the partition over cleanly, one unknown send that did land."""
    sends = [send("p0", 0, 0), send("p1", 0, 1), send("p0", 1, 2), send("p1", 1, 3),
             send("p0", 2, None, outcome="unknown"),  # landed at offset 4 after all
             send("p1", 2, None, outcome="failed"),
             send("c", 0, 0, topic="compact", key="a", value="a1"),
             send("c", 1, 1, topic="compact", key="b", value="b1"),
             send("c", 2, 2, topic="compact", key="a", value="a2"),
             send("c", 3, 3, topic="compact", key="b", value=None)]
    log = [["log", 0, offset, "k", value] for offset, value in enumerate(["p0-0", "p1-0", "p0-1", "p1-1", "p0-2"])]
    compacted = [["compact", 0, 2, "a", "a2"], ["compact", 0, 3, "b", None]]
    # A stream job copied the log to "out", repeating one record (at-least-once).
    copied = [["out", 0, offset, "k", value] for offset, value in enumerate(["p0-0", "p1-0", "p1-0", "p0-1", "p1-1"])]
    return {
        "topics": {"log": "append", "compact": "compact", "out": "stream"},
        "streams": [{"name": "copy", "input": "log", "output": "out", "caught_up": True}],
        "sends": sends,
        "observations": [observe("c0", 0, "p0-0"), observe("c0", 1, "p1-0"),
                         observe("c1", 1, "p1-0", interval=1), observe("c1", 2, "p0-1"), observe("c1", 3, "p1-1")],
        "final_reads": {"reader-a": log + compacted + copied, "reader-b": copy.deepcopy(log + compacted + copied)},
        "assignments": [
            {"consumer": "c0", "interval": 1, "topic": "log", "partition": 0, "start_s": 1.0, "end_s": 5.0, "how": "revoked"},
            {"consumer": "c1", "interval": 1, "topic": "log", "partition": 0, "start_s": 5.5, "end_s": 9.0, "how": "closed"},
        ],
        "commits": [{"consumer": "c0", "topic": "log", "partition": 0, "offset": 1, "outcome": "ok", "done_s": 4.0},
                    {"consumer": "c1", "topic": "log", "partition": 0, "offset": 4, "outcome": "ok", "done_s": 8.0}],
        "committed_samples": [{"topic": "log", "partition": 0, "offset": 1, "at_s": 4.5},
                              {"topic": "log", "partition": 0, "offset": 4, "at_s": 8.5}],
        "grant_samples": [{"at_s": 3.0, "grants": {"m0": [["log", 0]], "m1": []}},
                          {"at_s": 6.0, "grants": {"m0": [], "m1": [["log", 0]]}}],
    }


def test_check_history_passes_a_clean_history():
    verdict = checker.check_history(clean_history())
    assert verdict["valid"], verdict["failed_checks"]
    assert all(result["checked"] > 0 for result in verdict["checks"].values()), verdict["checks"]


def _fails_only(history: dict, name: str) -> dict:
    verdict = checker.check_history(history)
    assert not verdict["valid"]
    assert verdict["failed_checks"] == [name], verdict["failed_checks"]
    return verdict["checks"][name]["errors"][0]


def test_acknowledged_present_fails_when_a_reader_lacks_an_acknowledged_record():
    history = clean_history()
    history["final_reads"]["reader-b"] = [row for row in history["final_reads"]["reader-b"]
                                          if row[4] != "p1-1" or row[0] != "log"]
    error = _fails_only(history, "acknowledged_present")
    assert error["lost"] == "p1-1" and error["reader"] == "reader-b"


def test_acknowledged_offsets_fails_when_an_acknowledged_offset_holds_another_record():
    history = clean_history()
    # p1-1 was acknowledged at 3; the log was truncated and the offset reused by the
    # unknown send, and p1-1 written again at 4 (still present, but moved).
    for reader in ("reader-a", "reader-b"):
        rows = history["final_reads"][reader]
        rows[3][4], rows[4][4] = "p0-2", "p1-1"
    history["observations"] = [o for o in history["observations"] if o["offset"] != 3]
    history["observations"].append(observe("c1", 4, "p1-1"))
    error = _fails_only(history, "acknowledged_offsets")
    assert error["acknowledged"] == "p1-1" and error["found"] == "p0-2"


def test_no_duplicates_fails_when_a_value_sits_at_two_offsets():
    history = clean_history()
    for reader in ("reader-a", "reader-b"):
        history["final_reads"][reader].insert(5, ["log", 0, 5, "k", "p1-1"])
    error = _fails_only(history, "no_duplicates")
    assert error["value"] == "p1-1" and len(error["at"]) == 2


def test_no_unexpected_fails_when_a_definitely_failed_send_is_read():
    history = clean_history()
    for reader in ("reader-a", "reader-b"):
        history["final_reads"][reader].insert(5, ["log", 0, 5, "k", "p1-2"])
    error = _fails_only(history, "no_unexpected")
    assert error["value"] == "p1-2"


def test_readers_agree_fails_when_two_readers_see_different_values_at_one_offset():
    history = clean_history()
    history["final_reads"]["reader-b"][4][4] = "p0-2x"
    history["sends"].append(send("p0", 9, None, outcome="unknown", value="p0-2x"))
    verdict = checker.check_history(history)
    assert "readers_agree" in verdict["failed_checks"]
    assert {value for _, _, value in verdict["checks"]["readers_agree"]["errors"][0]["seen"]} == {"p0-2", "p0-2x"}


def test_offsets_monotonic_fails_when_a_consumer_goes_back_within_an_interval():
    history = clean_history()
    history["observations"].append(observe("c1", 2, "p0-1"))
    error = _fails_only(history, "offsets_monotonic")
    assert error["offset"] == 2 and error["after"] == 3


def test_offsets_monotonic_allows_a_new_interval_to_start_lower():
    history = clean_history()
    history["observations"].append(observe("c1", 2, "p0-1", interval=2))
    assert checker.check_offsets_monotonic(history)["valid"]


def test_producer_order_fails_when_a_later_send_has_a_lower_offset():
    history = clean_history()
    history["sends"][0]["offset"], history["sends"][2]["offset"] = 2, 0
    history["sends"][0]["value"], history["sends"][2]["value"] = "p0-0", "p0-1"
    # Keep the reads consistent with the swapped acknowledgements.
    for reader in ("reader-a", "reader-b"):
        rows = history["final_reads"][reader]
        rows[0][4], rows[2][4] = "p0-1", "p0-0"
    history["observations"] = []
    history["commits"] = history["committed_samples"] = []
    error = _fails_only(history, "producer_order")
    assert error["producer"] == "p0"


def test_single_owner_fails_when_two_consumers_hold_a_partition_at_once():
    history = clean_history()
    history["assignments"][1]["start_s"] = 4.0  # c1 got it before c0 released it at 5.0
    error = _fails_only(history, "single_owner")
    assert error["owner"][0] == "c0" and error["also"][0] == "c1"


def test_single_owner_counts_a_lost_partition_until_its_last_commit():
    history = clean_history()
    history["assignments"][0]["how"] = "lost"  # learnt at 5.0, last commit at 4.0
    history["assignments"][1]["start_s"] = 4.5
    assert checker.check_single_owner(history)["valid"]
    history["assignments"][1]["start_s"] = 3.5  # before c0's commit at 4.0 succeeded
    assert not checker.check_single_owner(history)["valid"]


def test_single_owner_ignores_a_zombie_that_never_committed_inside_another_owners_interval():
    # Seen in the soak (seed 21086): a consumer stopped mid-heartbeat applies a stale
    # assignment on resuming, learns 35 ms later that its session was gone, and its one
    # commit is refused. It never acted as owner, so nobody owned the partition twice.
    history = clean_history()
    history["assignments"].append({"consumer": "z", "interval": 1, "topic": "log", "partition": 0,
                                   "start_s": 6.0, "end_s": 6.035, "how": "lost"})
    history["commits"].append({"consumer": "z", "topic": "log", "partition": 0, "offset": 2, "outcome": "failed",
                               "done_s": 6.03})
    assert checker.check_single_owner(history)["valid"]
    history["commits"][-1]["outcome"] = "ok"  # a commit that went through: it did own it
    assert not checker.check_single_owner(history)["valid"]


def test_commits_monotonic_fails_when_a_successful_commit_goes_backwards():
    history = clean_history()
    history["commits"].append({"consumer": "c1", "topic": "log", "partition": 0, "offset": 2, "outcome": "ok",
                               "done_s": 8.8})
    error = _fails_only(history, "commits_monotonic")
    assert error["source"] == "commit" and error["offset"] == 2


def test_commits_monotonic_fails_when_the_coordinator_reports_an_older_offset():
    history = clean_history()
    history["committed_samples"].append({"topic": "log", "partition": 0, "offset": 1, "at_s": 9.5})
    error = _fails_only(history, "commits_monotonic")
    assert error["source"] == "coordinator" and tuple(error["earlier"]) == (8.5, 4)


def test_group_consumed_below_commit_fails_when_a_commit_skips_a_record():
    history = clean_history()
    history["observations"] = [o for o in history["observations"] if o["value"] != "p0-1"]
    error = _fails_only(history, "group_consumed_below_commit")
    assert error["value"] == "p0-1" and error["committed"] == 4


def test_coordinator_single_grant_fails_when_two_members_are_granted_a_partition():
    history = clean_history()
    history["grant_samples"].append({"at_s": 7.0, "grants": {"m1": [["log", 0]], "m2": [["log", 0]]}})
    error = _fails_only(history, "coordinator_single_grant")
    assert error["members"] == ["m1", "m2"]


def test_compacted_latest_fails_when_a_key_ends_at_an_older_value():
    history = clean_history()
    for reader in ("reader-a", "reader-b"):
        rows = history["final_reads"][reader]
        rows[5] = ["compact", 0, 0, "a", "a1"]
    error = _fails_only(history, "compacted_latest")
    assert error["key"] == "a" and error["final"] == "a1"


def test_compacted_latest_fails_when_a_key_disappears():
    history = clean_history()
    for reader in ("reader-a", "reader-b"):
        del history["final_reads"][reader][5]
    error = _fails_only(history, "compacted_latest")
    assert error["key"] == "a" and error["lost"] == "a2"


def test_compacted_latest_allows_a_tombstoned_key_to_be_gone():
    history = clean_history()
    for reader in ("reader-a", "reader-b"):
        del history["final_reads"][reader][6]
    assert checker.check_compacted_latest(history)["valid"]


def test_stream_at_least_once_fails_when_an_acknowledged_input_record_is_not_in_the_output():
    history = clean_history()
    for rows in history["final_reads"].values():
        rows[:] = [row for row in rows if not (row[0] == "out" and row[4] == "p1-1")]
    error = _fails_only(history, "stream_at_least_once")
    assert error["missing"] == "p1-1"


def test_stream_at_least_once_fails_when_the_job_did_not_catch_up():
    history = clean_history()
    history["streams"][0]["caught_up"] = False
    assert _fails_only(history, "stream_at_least_once")["stream"] == "copy"


def test_no_unexpected_fails_when_a_stream_output_holds_a_value_its_input_never_had():
    history = clean_history()
    for rows in history["final_reads"].values():
        rows.append(["out", 0, 5, "k", "p1-2"])  # a send that definitely failed
    assert _fails_only(history, "no_unexpected")["value"] == "p1-2"


@pytest.mark.parametrize("name", sorted(checker.CHECKS))
def test_each_check_reports_how_much_it_checked(name):
    result = checker.CHECKS[name](clean_history())
    assert result["valid"] and result["checked"] > 0, result
