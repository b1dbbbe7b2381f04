"""Partition assignors: where a consumer group's coordinator wants each partition.

An assignor maps the members (each with the set of topics it subscribes to and a sort
key: its ``group_instance_id`` when it has one, so a static member keeps its place, else
its member id), the partition count of every subscribed topic, and the previous target
assignment to a new target: member id → set of (topic, partition). Every partition of a
subscribed topic goes to exactly one member that subscribes to its topic. Both
assignors are deterministic for the same input.

* ``range`` is Kafka's RangeAssignor: per topic, members in sort-key order take
  contiguous ranges, the first ``count % members`` one partition more.
* ``sticky`` keeps each partition with its previous owner whenever that owner is still
  subscribed, gives orphaned partitions to the least-loaded eligible member, then moves
  single partitions from the most- to the least-loaded member until no two eligible
  members differ by more than one: a membership change moves only what it must
  (Kafka's CooperativeStickyAssignor's intent).
* ``copartitioned`` is sticky over partition numbers: partition p of every subscribed
  topic goes to one member (what stream jobs need to join co-partitioned topics).

Neither assignor hands anything over by itself: the coordinator's incremental protocol
revokes a moved partition from its old owner before the new owner gets it, whichever
assignor chose the move (see coordinator.py).
"""

from __future__ import annotations

from typing import Callable

TopicPartition = tuple[str, int]
Assignment = dict[str, set[TopicPartition]]

ASSIGNORS = ("range", "sticky", "copartitioned")


def assign(name: str, topics_by_member: dict[str, frozenset[str]], sort_keys: dict[str, str],
           partition_counts: dict[str, int], previous: Assignment) -> Assignment:
    """The target assignment of assignor ``name`` (see the module docstring)."""
    try:
        assignor: Callable[..., Assignment] = {"range": range_assign, "sticky": sticky_assign,
                                              "copartitioned": copartitioned_assign}[name]
    except KeyError:
        raise ValueError(f"unknown partition assignor {name!r}; known: {', '.join(ASSIGNORS)}") from None
    return assignor(topics_by_member, sort_keys, partition_counts, previous)


def range_assign(topics_by_member: dict[str, frozenset[str]], sort_keys: dict[str, str],
                 partition_counts: dict[str, int], previous: Assignment) -> Assignment:
    del previous  # range ignores history, as Kafka's does
    target: Assignment = {member: set() for member in topics_by_member}
    for topic in sorted(partition_counts):
        members = sorted((m for m, topics in topics_by_member.items() if topic in topics), key=lambda m: (sort_keys[m], m))
        if not members:
            continue
        count = partition_counts[topic]
        share, extra = divmod(count, len(members))
        start = 0
        for index, member in enumerate(members):
            size = share + (1 if index < extra else 0)
            target[member].update((topic, partition) for partition in range(start, start + size))
            start += size
    return target


def sticky_assign(topics_by_member: dict[str, frozenset[str]], sort_keys: dict[str, str],
                  partition_counts: dict[str, int], previous: Assignment) -> Assignment:
    def order(member: str) -> tuple[str, str]:
        return sort_keys[member], member

    members = sorted(topics_by_member, key=order)
    target: Assignment = {member: set() for member in members}
    wanted = {
        (topic, partition)
        for topic, count in partition_counts.items()
        if any(topic in topics_by_member[m] for m in members)
        for partition in range(count)
    }
    owner: dict[TopicPartition, str] = {}
    # 1. Keep what each member had, if it still exists and the member still wants it.
    for member in members:
        for tp in sorted(previous.get(member, ())):
            if tp in wanted and tp not in owner and tp[0] in topics_by_member[member]:
                owner[tp] = member
                target[member].add(tp)
    # 2. Orphans go to the least-loaded eligible member.
    for tp in sorted(wanted - owner.keys()):
        eligible = [m for m in members if tp[0] in topics_by_member[m]]
        chosen = min(eligible, key=lambda m: (len(target[m]), order(m)))
        owner[tp] = chosen
        target[chosen].add(tp)
    # 3. Balance: move one partition at a time from a loaded member to an eligible one
    #    holding at least two fewer. Each move lowers the sum of squared loads, so this
    #    ends, after at most one move per partition.
    while True:
        move = _one_balancing_move(members, topics_by_member, target, order)
        if move is None:
            return target
        tp, donor, receiver = move
        target[donor].discard(tp)
        target[receiver].add(tp)


def _one_balancing_move(members, topics_by_member, target, order):
    receivers = sorted(members, key=lambda m: (len(target[m]), order(m)))
    for donor in sorted(members, key=lambda m: (-len(target[m]), order(m))):
        for tp in sorted(target[donor], reverse=True):
            for receiver in receivers:
                if len(target[receiver]) + 1 >= len(target[donor]):
                    break  # receivers are sorted by load: no lighter one follows
                if tp[0] in topics_by_member[receiver]:
                    return tp, donor, receiver
    return None


def copartitioned_assign(topics_by_member: dict[str, frozenset[str]], sort_keys: dict[str, str],
                         partition_counts: dict[str, int], previous: Assignment) -> Assignment:
    """Sticky over partition *numbers*: partition p of every subscribed topic goes to
    the same member, so a task that joins co-partitioned topics (a stream job's
    sub-topology reading several topics, or a stream and a table) sees all of its
    inputs. Assumes every member subscribes to the same topics (a stream job's
    workers do); a member gets (t, p) only for topics it subscribes to."""
    units = max(partition_counts.values(), default=0)
    unit_members = {member: frozenset({"*"}) for member in topics_by_member}
    unit_previous = {member: {("*", p) for _, p in tps} for member, tps in previous.items()}
    by_unit = sticky_assign(unit_members, sort_keys, {"*": units}, unit_previous)
    return {
        member: {(topic, p) for _, p in units_of for topic in topics_by_member[member]
                 if topic in partition_counts and p < partition_counts[topic]}
        for member, units_of in by_unit.items()
    }
