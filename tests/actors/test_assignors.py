"""The partition assignors, as pure functions: coverage, eligibility, balance, and how
little the sticky one moves."""

import pytest
from hypothesis import given, settings, strategies as st

from rafka.actors.assignors import assign, range_assign, sticky_assign


def owners(target):
    seen = {}
    for member, partitions in target.items():
        for tp in partitions:
            assert tp not in seen, f"{tp} has two owners: {seen[tp]} and {member}"
            seen[tp] = member
    return seen


def test_range_matches_kafkas_example():
    # Kafka's RangeAssignor javadoc: C0, C1 on t0, t1 with 3 partitions each.
    members = {"C0": frozenset({"t0", "t1"}), "C1": frozenset({"t0", "t1"})}
    target = range_assign(members, {m: m for m in members}, {"t0": 3, "t1": 3}, {})
    assert target["C0"] == {("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)}
    assert target["C1"] == {("t0", 2), ("t1", 2)}


def test_range_orders_static_members_by_instance_id():
    members = {"zzz": frozenset({"t"}), "aaa": frozenset({"t"})}
    target = range_assign(members, {"zzz": "instance-a", "aaa": "instance-b"}, {"t": 2}, {})
    assert target["zzz"] == {("t", 0)} and target["aaa"] == {("t", 1)}


def test_sticky_moves_only_what_a_new_member_needs():
    members = {"a": frozenset({"t"}), "b": frozenset({"t"})}
    keys = {m: m for m in members}
    before = sticky_assign(members, keys, {"t": 12}, {})
    assert sorted(len(p) for p in before.values()) == [6, 6]
    members["c"] = frozenset({"t"})
    keys["c"] = "c"
    after = sticky_assign(members, keys, {"t": 12}, before)
    assert sorted(len(p) for p in after.values()) == [4, 4, 4]
    moved = sum(1 for m in ("a", "b") for tp in before[m] if tp not in after[m])
    assert moved == 4  # exactly what c takes, nothing shuffled between a and b
    assert after["a"] <= before["a"] and after["b"] <= before["b"]


def test_sticky_keeps_survivors_when_a_member_leaves():
    members = {m: frozenset({"t"}) for m in "abc"}
    keys = {m: m for m in members}
    before = sticky_assign(members, keys, {"t": 9}, {})
    del members["b"], keys["b"]
    after = sticky_assign(members, keys, {"t": 9}, before)
    assert before["a"] <= after["a"] and before["c"] <= after["c"]
    assert sorted(len(p) for p in after.values()) == [4, 5]


def test_unknown_assignor_is_named():
    with pytest.raises(ValueError, match="'roundrobin'"):
        assign("roundrobin", {}, {}, {}, {})


subscriptions = st.dictionaries(
    st.sampled_from([f"m{i}" for i in range(6)]),
    st.frozensets(st.sampled_from(["t0", "t1", "t2"]), min_size=1),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(subscriptions, st.fixed_dictionaries({"t0": st.integers(1, 12), "t1": st.integers(1, 5), "t2": st.integers(1, 7)}),
       st.sampled_from(["range", "sticky"]), st.data())
def test_every_partition_has_exactly_one_eligible_owner(members, counts, name, data):
    keys = {m: m for m in members}
    previous = data.draw(st.dictionaries(st.sampled_from(sorted(members)),
                                         st.sets(st.tuples(st.sampled_from(["t0", "t1", "t2"]), st.integers(0, 12)))))
    target = assign(name, members, keys, counts, previous)
    seen = owners(target)
    wanted = {(t, p) for t, n in counts.items() if any(t in s for s in members.values()) for p in range(n)}
    assert set(seen) == wanted
    for tp, member in seen.items():
        assert tp[0] in members[member]
    if name == "sticky" and len(set(members.values())) == 1:
        loads = [len(p) for p in target.values()]
        assert max(loads) - min(loads) <= 1
