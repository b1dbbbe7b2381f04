"""PartitionMetrics without Ray: what a flush publishes, and how ISR changes count.

The Ray metric objects are replaced by recorders, so these tests check rafka's
bookkeeping (deltas, zero increments skipped, gauges re-set), not Ray's export; the
export is tested against a running cluster in tests/client/test_metrics.py."""

from __future__ import annotations

import pytest

from rafka.actors import metrics
from rafka.actors.group_lag import lag_by_topic


class Recorder:
    """Stands in for a Ray Counter, Gauge or Histogram: keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict]] = []

    def inc(self, value, tags=None):
        assert value > 0, "Ray refuses increments that are not positive"
        self.set(value, tags)

    def set(self, value, tags=None):
        self.calls.append((value, dict(tags)))

    observe = set

    def values(self) -> list[float]:
        return [value for value, _ in self.calls]


class FakeRegistry:
    def __getattr__(self, name):
        recorder = Recorder()
        setattr(self, name, recorder)
        return recorder


@pytest.fixture
def fake(monkeypatch) -> FakeRegistry:
    registry = FakeRegistry()
    monkeypatch.setattr(metrics, "registry", lambda: registry)
    return registry


def test_flush_publishes_counts_since_the_last_flush(fake):
    partition = metrics.PartitionMetrics("clicks", 2, 7)
    partition.produced(10, 1000, 0.002, acks=1)
    partition.produced(5, 400, 0.003, acks=-1)
    partition.fetched(12, 900, 0.001)
    partition.flush(under_replicated=False)
    partition.produced(1, 50, 0.001, acks=1)
    partition.flush(under_replicated=True)
    assert fake.records_in.values() == [15, 1]
    assert fake.bytes_in.values() == [1400, 50]
    assert fake.records_out.values() == [12]  # nothing fetched since: no zero increment
    assert fake.bytes_out.values() == [900]
    assert fake.under_replicated.values() == [0, 1]
    assert fake.records_in.calls[0][1] == {"topic": "clicks", "partition": "2", "broker": "7"}


def test_latencies_are_observed_per_request_with_topic_and_acks(fake):
    partition = metrics.PartitionMetrics("clicks", 0, 1)
    partition.produced(1, 10, 0.004, acks=-1)
    partition.produced(1, 10, 0.001, acks=0)
    partition.fetched(0, 0, 0.0005)
    assert fake.produce_latency.calls == [(0.004, {"topic": "clicks", "acks": "all"}),
                                          (0.001, {"topic": "clicks", "acks": "0"})]
    assert fake.fetch_latency.calls == [(0.0005, {"topic": "clicks"})]


def test_isr_change_counts_shrinks_and_expands(fake):
    partition = metrics.PartitionMetrics("clicks", 0, 1)
    partition.isr_changed({1, 2, 3}, {1, 2})
    partition.isr_changed({1, 2}, {1, 2, 3})
    partition.isr_changed({1, 2}, {1, 3})  # one out, one in: both
    partition.isr_changed({1, 2}, {1, 2})
    assert len(fake.isr_shrinks.calls) == 2
    assert len(fake.isr_expands.calls) == 2


def test_lag_sums_committed_partitions_with_known_end_offsets():
    committed = {("a", 0): 5, ("a", 1): 10, ("b", 0): 3, ("c", 0): 1}
    ends = {("a", 0): 8, ("a", 1): 10, ("b", 0): 2, ("a", 2): 100}
    # b's committed offset past the high watermark (a truncated log) counts as 0;
    # c's leader did not answer; a-2 was never committed.
    assert lag_by_topic(committed, ends) == {"a": 3, "b": 0}


def test_registry_is_created_once_per_process():
    assert metrics.registry() is metrics.registry()
