"""Checks over a recorded history of a fault run (Jepsen's queue checks, for rafka).

Plain functions over plain data (lists of dicts as ``soak_workloads`` records them and
``soak.py`` writes to ``history.json``): no Ray, no rafka import, so each check is
unit-tested on hand-made histories (tests/faults/test_history_checker.py), including
histories that break it.

The history (all times are ``time.monotonic()`` seconds of the one driver process that
ran every workload, so they are comparable):

* ``topics``: ``{topic: "append" | "compact" | "stream"}`` (``stream``: the output of a
  stream job, see ``streams``).
* ``streams``: one per stream job: ``name``, ``input`` (an append topic), ``output``,
  ``caught_up`` (the job committed its whole input before it stopped). The job copies
  each input record (key and value) to its output, at least once.
* ``sends``: one per ``send()``: ``producer``, ``index`` (its n-th send), ``topic``,
  ``key``, ``value`` (str; None is a tombstone, compacted topics only), ``outcome``
  (``ok`` acknowledged with ``partition`` and ``offset``; ``failed`` definitely not
  written: ``send()`` itself raised; ``unknown``: the future failed or never completed,
  so the record may or may not be in the log, as Jepsen's ``:info``).
* ``observations``: one per record a consumer returned: ``reader``, ``interval`` (the
  reader's ownership interval of that partition, see ``assignments``; 0 for readers
  without a group), ``topic``, ``partition``, ``offset``, ``key``, ``value``.
* ``final_reads``: ``{reader: [[topic, partition, offset, key, value], ...]}``: whole
  topics read after every fault healed.
* ``assignments``: a group consumer's ownership intervals: ``consumer``, ``interval``,
  ``topic``, ``partition``, ``start_s``, ``end_s``, ``how`` (``revoked``: released
  before anyone else may take it; ``lost``: the consumer learnt its session was gone,
  so someone else may already own it; ``closed``: the consumer left at the end).
* ``commits``: ``consumer``, ``topic``, ``partition``, ``offset``, ``outcome``
  (``ok`` or ``failed``), ``done_s``.
* ``committed_samples``: the group's committed offsets as its coordinator reported
  them: ``topic``, ``partition``, ``offset``, ``at_s``.
* ``grant_samples``: the coordinator's view of the group at ``at_s``: ``grants``,
  {member id: [[topic, partition], ...]} (what it has told each member it may own).

Values are unique per send (``<producer>-<index>``), which is what lets a read name the
send it came from. Every check returns ``{"valid": bool, "checked": int, "errors":
[...]}`` with at most ``MAX_ERRORS`` examples; ``check_history`` runs them all.

What is deliberately not checked: the ownership interval of a ``lost`` partition ends at
the consumer's last successful commit of it (or at its start when there was none): a
consumer whose session expired may still read for a while (a zombie, as in Kafka's
classic protocol) but can no longer commit, so only its fenced actions count as owning.
An interval lost before any successful commit therefore owns nothing: a consumer frozen
mid-heartbeat may apply a stale assignment on resuming, and learn a moment later that the
partition has moved on.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

MAX_ERRORS = 20


def _result(errors: list, checked: int, **extra: Any) -> dict:
    return {"valid": not errors, "checked": checked, "errors": errors[:MAX_ERRORS], "error_count": len(errors), **extra}


def _topics_of_kind(history: dict, kind: str) -> set[str]:
    return {topic for topic, topic_kind in history.get("topics", {}).items() if topic_kind == kind}


def _final_rows(history: dict, topics: set[str]) -> dict[str, list[list]]:
    return {reader: [row for row in rows if row[0] in topics] for reader, rows in history.get("final_reads", {}).items()}


def _all_reads(history: dict) -> Iterable[tuple[str, str, int, int, Any, Any]]:
    """(reader, topic, partition, offset, key, value) of every record any reader saw."""
    for observation in history.get("observations", ()):
        yield (observation["reader"], observation["topic"], observation["partition"], observation["offset"],
               observation.get("key"), observation["value"])
    for reader, rows in history.get("final_reads", {}).items():
        for topic, partition, offset, key, value in rows:
            yield reader, topic, partition, offset, key, value


# -- records --------------------------------------------------------------------------


def check_acknowledged_present(history: dict) -> dict:
    """Every acknowledged record of an append topic is in every final read."""
    topics = _topics_of_kind(history, "append")
    acknowledged = [s for s in history.get("sends", ()) if s["outcome"] == "ok" and s["topic"] in topics]
    errors = []
    for reader, rows in _final_rows(history, topics).items():
        seen = {row[4] for row in rows}
        for send in acknowledged:
            if send["value"] not in seen:
                errors.append({"reader": reader, "lost": send["value"], "topic": send["topic"],
                               "partition": send["partition"], "offset": send["offset"]})
    return _result(errors, len(acknowledged))


def check_acknowledged_offsets(history: dict) -> dict:
    """The offset a write was acknowledged at holds that write in every final read
    (a truncated and rewritten offset shows up here even if the value survived
    elsewhere)."""
    topics = _topics_of_kind(history, "append")
    acknowledged = [s for s in history.get("sends", ()) if s["outcome"] == "ok" and s["topic"] in topics]
    errors = []
    for reader, rows in _final_rows(history, topics).items():
        at = {(row[0], row[1], row[2]): row[4] for row in rows}
        for send in acknowledged:
            found = at.get((send["topic"], send["partition"], send["offset"]))
            if found is not None and found != send["value"]:
                errors.append({"reader": reader, "topic": send["topic"], "partition": send["partition"],
                               "offset": send["offset"], "acknowledged": send["value"], "found": found})
    return _result(errors, len(acknowledged))


def check_no_duplicates(history: dict) -> dict:
    """No value of an append topic appears at two offsets (idempotence: retries never
    write twice), in any reader's view."""
    topics = _topics_of_kind(history, "append")
    places: dict[Any, set] = collections.defaultdict(set)
    for _reader, topic, partition, offset, _key, value in _all_reads(history):
        if topic in topics:
            places[value].add((topic, partition, offset))
    errors = [{"value": value, "at": sorted(where)} for value, where in places.items() if len(where) > 1]
    return _result(errors, len(places))


def check_no_unexpected(history: dict) -> dict:
    """Every record read was sent, and not by a send that definitely failed (for a stream
    job's output: sent to its input)."""
    possible: dict[str, set] = collections.defaultdict(set)
    for send in history.get("sends", ()):
        if send["outcome"] != "failed":
            possible[send["topic"]].add(send["value"])
    for stream in history.get("streams", ()):
        possible[stream["output"]] = possible[stream["input"]]
    errors, checked = [], 0
    for reader, topic, partition, offset, _key, value in _all_reads(history):
        checked += 1
        if value is not None and value not in possible[topic]:
            errors.append({"reader": reader, "topic": topic, "partition": partition, "offset": offset, "value": value})
    return _result(errors, checked)


def check_readers_agree(history: dict) -> dict:
    """Every reader that saw an offset saw the same record there (one value per offset)."""
    values: dict[tuple, dict] = collections.defaultdict(dict)
    for reader, topic, partition, offset, key, value in _all_reads(history):
        values[(topic, partition, offset)].setdefault((key, value), reader)
    errors = [{"topic": t, "partition": p, "offset": o, "seen": [[reader, key, value] for (key, value), reader in seen.items()]}
              for (t, p, o), seen in values.items() if len(seen) > 1]
    return _result(errors, len(values))


def check_offsets_monotonic(history: dict) -> dict:
    """A consumer's offsets on a partition strictly increase within one ownership
    interval (a new interval may start again from the committed offset)."""
    last: dict[tuple, int] = {}
    errors, checked = [], 0
    for observation in history.get("observations", ()):
        checked += 1
        key = (observation["reader"], observation["interval"], observation["topic"], observation["partition"])
        previous = last.get(key)
        if previous is not None and observation["offset"] <= previous:
            errors.append({"reader": key[0], "interval": key[1], "topic": key[2], "partition": key[3],
                           "offset": observation["offset"], "after": previous})
        last[key] = observation["offset"]
    return _result(errors, checked)


def check_stream_at_least_once(history: dict) -> dict:
    """A stream job that caught up copied every acknowledged input record, with its key,
    to its output, in every final read (duplicates are allowed: at-least-once)."""
    errors, checked = [], 0
    for stream in history.get("streams", ()):
        if not stream.get("caught_up"):
            errors.append({"stream": stream["name"], "error": "did not catch up before the end"})
            continue
        acknowledged = [s for s in history.get("sends", ()) if s["outcome"] == "ok" and s["topic"] == stream["input"]]
        checked += len(acknowledged)
        for reader, rows in _final_rows(history, {stream["output"]}).items():
            copied = {(row[3], row[4]) for row in rows}
            for send in acknowledged:
                if (send["key"], send["value"]) not in copied:
                    errors.append({"stream": stream["name"], "reader": reader, "missing": send["value"],
                                   "key": send["key"]})
    return _result(errors, checked)


def check_producer_order(history: dict) -> dict:
    """One producer's acknowledged records on one partition sit at offsets in the order
    it sent them."""
    by_partition: dict[tuple, list] = collections.defaultdict(list)
    for send in history.get("sends", ()):
        if send["outcome"] == "ok":
            by_partition[(send["producer"], send["topic"], send["partition"])].append((send["index"], send["offset"]))
    errors = []
    for (producer, topic, partition), sent in by_partition.items():
        sent.sort()
        for (index_a, offset_a), (index_b, offset_b) in zip(sent, sent[1:]):
            if offset_b <= offset_a:
                errors.append({"producer": producer, "topic": topic, "partition": partition,
                               "send": index_b, "offset": offset_b, "after_send": index_a, "after_offset": offset_a})
    return _result(errors, sum(len(sent) for sent in by_partition.values()))


# -- consumer groups ------------------------------------------------------------------


def ownership_intervals(history: dict) -> list[dict]:
    """The assignment intervals with the end the single-owner check uses (see the module
    docstring for ``lost``)."""
    last_commit: dict[tuple, list[float]] = collections.defaultdict(list)
    for commit in history.get("commits", ()):
        if commit["outcome"] == "ok":
            last_commit[(commit["consumer"], commit["topic"], commit["partition"])].append(commit["done_s"])
    intervals = []
    for assignment in history.get("assignments", ()):
        end_s = assignment["end_s"]
        if assignment["how"] == "lost":
            commits = [t for t in last_commit[(assignment["consumer"], assignment["topic"], assignment["partition"])]
                       if assignment["start_s"] <= t <= end_s]
            end_s = max(commits, default=assignment["start_s"])
        intervals.append({**assignment, "owned_until_s": end_s})
    return intervals


def check_single_owner(history: dict) -> dict:
    """At no time do two consumers of a group own one partition."""
    by_partition: dict[tuple, list] = collections.defaultdict(list)
    for interval in ownership_intervals(history):
        by_partition[(interval["topic"], interval["partition"])].append(interval)
    errors, checked = [], 0
    for (topic, partition), intervals in by_partition.items():
        intervals.sort(key=lambda i: i["start_s"])
        checked += len(intervals)
        # Compare each interval with the one that, so far, reaches furthest.
        furthest = None
        for interval in intervals:
            if interval["owned_until_s"] <= interval["start_s"]:
                continue  # lost before it committed anything: it never acted as owner
            if furthest is not None and interval["start_s"] < furthest["owned_until_s"] \
                    and interval["consumer"] != furthest["consumer"]:
                errors.append({"topic": topic, "partition": partition,
                               "owner": [furthest["consumer"], furthest["start_s"], furthest["owned_until_s"], furthest["how"]],
                               "also": [interval["consumer"], interval["start_s"], interval["owned_until_s"], interval["how"]]})
            if furthest is None or interval["owned_until_s"] > furthest["owned_until_s"]:
                furthest = interval
    return _result(errors, checked)


def check_commits_monotonic(history: dict) -> dict:
    """A group's committed offset of a partition never moves backwards: neither in the
    order successful commits returned nor in what its coordinator reported over time."""
    errors, checked = [], 0
    for source, rows, time_key in (("commit", [c for c in history.get("commits", ()) if c["outcome"] == "ok"], "done_s"),
                                   ("coordinator", list(history.get("committed_samples", ())), "at_s")):
        by_partition: dict[tuple, list] = collections.defaultdict(list)
        for row in rows:
            by_partition[(row["topic"], row["partition"])].append((row[time_key], row["offset"]))
        for (topic, partition), points in by_partition.items():
            points.sort(key=lambda point: point[0])
            checked += len(points)
            highest = None
            for at_s, offset in points:
                if highest is not None and offset < highest[1]:
                    errors.append({"source": source, "topic": topic, "partition": partition, "at_s": at_s,
                                   "offset": offset, "earlier": highest})
                if highest is None or offset >= highest[1]:
                    highest = (at_s, offset)
    return _result(errors, checked)


def check_group_consumed_below_commit(history: dict) -> dict:
    """Every acknowledged record below a partition's highest successful commit was
    returned to some member of the group (a commit never skips a record)."""
    committed: dict[tuple, int] = {}
    for commit in history.get("commits", ()):
        if commit["outcome"] == "ok":
            key = (commit["topic"], commit["partition"])
            committed[key] = max(committed.get(key, 0), commit["offset"])
    consumers = {a["consumer"] for a in history.get("assignments", ())} | {c["consumer"] for c in history.get("commits", ())}
    delivered = {(o["topic"], o["partition"], o["value"]) for o in history.get("observations", ())
                 if o["reader"] in consumers}
    errors, checked = [], 0
    for send in history.get("sends", ()):
        if send["outcome"] != "ok":
            continue
        bound = committed.get((send["topic"], send["partition"]))
        if bound is None or send["offset"] >= bound:
            continue
        checked += 1
        if (send["topic"], send["partition"], send["value"]) not in delivered:
            errors.append({"topic": send["topic"], "partition": send["partition"], "offset": send["offset"],
                           "value": send["value"], "committed": bound})
    return _result(errors, checked)


def check_coordinator_single_grant(history: dict) -> dict:
    """In every sample of the coordinator's view, no partition is granted to two members."""
    errors, checked = [], 0
    for sample in history.get("grant_samples", ()):
        holders: dict[tuple, list] = collections.defaultdict(list)
        for member, partitions in sample["grants"].items():
            for topic, partition in partitions:
                holders[(topic, partition)].append(member)
        checked += len(holders)
        errors += [{"at_s": sample["at_s"], "topic": topic, "partition": partition, "members": sorted(members)}
                   for (topic, partition), members in holders.items() if len(members) > 1]
    return _result(errors, checked)


# -- compacted topics -----------------------------------------------------------------


def check_compacted_latest(history: dict) -> dict:
    """For every key of a compacted topic, each final read ends with its latest
    acknowledged write, or a later write that may have happened (acknowledged or not);
    a key whose latest acknowledged write is a tombstone may also be gone."""
    topics = _topics_of_kind(history, "compact")
    sends_at: dict[tuple, dict] = {}
    latest: dict[tuple, dict] = {}
    possible_values: dict[tuple, set] = collections.defaultdict(set)
    for send in history.get("sends", ()):
        if send["topic"] not in topics or send["outcome"] == "failed":
            continue
        possible_values[(send["topic"], send["key"])].add(send["value"])
        if send["outcome"] != "ok":
            continue
        key = (send["topic"], send["key"])
        sends_at[(send["topic"], send["partition"], send["offset"])] = send
        if key not in latest or send["offset"] > latest[key]["offset"]:
            latest[key] = send
    errors = []
    for reader, rows in _final_rows(history, topics).items():
        final: dict[tuple, tuple[int, Any]] = {}
        for topic, _partition, offset, key, value in sorted(rows, key=lambda row: (row[0], row[1], row[2])):
            final[(topic, key)] = (offset, value)
        for key, send in latest.items():
            found = final.get(key)
            if found is None:
                if send["value"] is not None:
                    errors.append({"reader": reader, "topic": key[0], "key": key[1], "lost": send["value"],
                                   "offset": send["offset"]})
                continue
            offset, value = found
            if offset < send["offset"]:
                errors.append({"reader": reader, "topic": key[0], "key": key[1], "latest_acknowledged": send["value"],
                               "at": send["offset"], "final": value, "final_offset": offset})
            elif offset == send["offset"] and value != send["value"]:
                errors.append({"reader": reader, "topic": key[0], "key": key[1], "latest_acknowledged": send["value"],
                               "at": send["offset"], "final": value})
            elif offset > send["offset"] and value not in possible_values[key]:
                errors.append({"reader": reader, "topic": key[0], "key": key[1], "final": value, "final_offset": offset,
                               "never_sent_for_key": True})
    return _result(errors, len(latest))


CHECKS = {
    "acknowledged_present": check_acknowledged_present,
    "acknowledged_offsets": check_acknowledged_offsets,
    "no_duplicates": check_no_duplicates,
    "no_unexpected": check_no_unexpected,
    "readers_agree": check_readers_agree,
    "offsets_monotonic": check_offsets_monotonic,
    "producer_order": check_producer_order,
    "single_owner": check_single_owner,
    "commits_monotonic": check_commits_monotonic,
    "group_consumed_below_commit": check_group_consumed_below_commit,
    "coordinator_single_grant": check_coordinator_single_grant,
    "compacted_latest": check_compacted_latest,
    "stream_at_least_once": check_stream_at_least_once,
}


def check_history(history: dict) -> dict:
    """Run every check; the verdict is valid only when each one is."""
    results = {name: check(history) for name, check in CHECKS.items()}
    outcomes = collections.Counter(send["outcome"] for send in history.get("sends", ()))
    return {
        "valid": all(result["valid"] for result in results.values()),
        "failed_checks": sorted(name for name, result in results.items() if not result["valid"]),
        "sends": dict(outcomes),
        "records_read": sum(len(rows) for rows in history.get("final_reads", {}).values()),
        "observations": len(history.get("observations", ())),
        "checks": results,
    }
