"""rafka's Ray application metrics (``ray.util.metrics``): every metric definition.

Brokers, partition replicas and group coordinators record here; Ray's metrics agent on
each node exports them in Prometheus text (``http://<node ip>:<MetricsExportPort>/metrics``)
and the Ray dashboard charts them. The catalogue, with tags and meaning, is
``docs/metrics.md``; keep the two in step.

Names. Every metric is named ``rafka_...`` with Prometheus conventions: counters end in
``_total``, units come last (``_bytes``, ``_seconds``). Ray's exporter puts its own
prefix in front, so ``rafka_records_in_total`` is scraped as
``ray_rafka_records_in_total``. Ray adds the tags ``WorkerId``, ``NodeAddress``,
``SessionName``, ``Component`` and ``Version``; rafka's tags are ``topic``, ``partition``,
``broker``, ``acks`` and ``group``, all strings.

Cost. Ray metric objects are per-process and costly to create, so ``registry()`` makes
them once per process, on first use. Recording one value costs several microseconds
(more with more tags: Ray converts the tag dict on every call), which matters on the
produce and fetch paths that run thousands of times a second. So ``PartitionMetrics``
counts records and bytes in plain integers and ``flush()`` — called by the replica's
maintenance loop about once a second while there is traffic, every few seconds while
there is none — adds the difference to Ray's counters. Latency histograms are observed
once per request, because Ray has no call that records a pre-aggregated histogram; their
tags are a dict built once.

What is not promised. Counters belong to the process that recorded them: after Ray
restarts an actor its counters start again from zero under a new ``WorkerId`` (use
Prometheus' ``rate()`` / ``increase()``, which handle resets). Counts recorded since the
last flush are lost if the process dies. Ray's agent drops a gauge series that is not set
again within two report intervals, which is why every owner re-sets its gauges
periodically; a gauge of an actor that is gone disappears that way rather than staying
at its last value. Ray's histogram ``_sum`` is computed from bucket midpoints, not from
the exact values.
"""

from __future__ import annotations

import threading

from ray.util.metrics import Counter, Gauge, Histogram

# Seconds; from sub-millisecond appends to acks=all writes that wait on a slow follower.
LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
PARTITION_TAGS = ("topic", "partition", "broker")
ACKS_TAG_VALUES = {0: "0", 1: "1", -1: "all"}


class _Registry:
    """The Ray metric objects of one process (see ``registry()``)."""

    def __init__(self) -> None:
        self.records_in = Counter(
            "rafka_records_in_total", "Records appended by a partition leader from producers (idempotent "
            "retries of records already stored are not counted).", tag_keys=PARTITION_TAGS)
        self.bytes_in = Counter(
            "rafka_bytes_in_total", "Bytes of produce requests (Arrow IPC payload) appended by a partition "
            "leader.", tag_keys=PARTITION_TAGS)
        self.records_out = Counter(
            "rafka_records_out_total", "Records returned by a partition leader to fetch requests.",
            tag_keys=PARTITION_TAGS)
        self.bytes_out = Counter(
            "rafka_bytes_out_total", "Bytes of fetch responses (Arrow IPC stream) returned by a partition "
            "leader.", tag_keys=PARTITION_TAGS)
        self.produce_latency = Histogram(
            "rafka_produce_latency_seconds", "Time a partition leader takes to answer a successful produce "
            "request, including the wait for the in-sync replicas when acks=all.",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("topic", "acks"))
        self.fetch_latency = Histogram(
            "rafka_fetch_latency_seconds", "Time a partition leader spends answering a fetch request, "
            "excluding the long-poll wait for new records (fetch.max.wait.ms).",
            boundaries=LATENCY_BUCKETS_S, tag_keys=("topic",))
        self.under_replicated = Gauge(
            "rafka_under_replicated_partitions", "1 if this replica leads the partition and its ISR is "
            "smaller than its replica set, else 0.", tag_keys=PARTITION_TAGS)
        self.isr_shrinks = Counter(
            "rafka_isr_shrinks_total", "Times a partition leader's ISR lost members.", tag_keys=PARTITION_TAGS)
        self.isr_expands = Counter(
            "rafka_isr_expands_total", "Times a partition leader's ISR gained members.", tag_keys=PARTITION_TAGS)
        self.broker_replicas = Gauge(
            "rafka_broker_replicas", "Partition replicas hosted by a broker.", tag_keys=("broker",))
        self.group_members = Gauge(
            "rafka_group_members", "Members of a consumer group.", tag_keys=("group",))
        self.group_rebalances = Counter(
            "rafka_group_rebalances_total", "Times a consumer group's assignment was recomputed (a new group "
            "epoch).", tag_keys=("group",))
        self.group_lag = Gauge(
            "rafka_group_lag_records", "Records of a topic that a consumer group has not committed yet: the "
            "sum over its committed partitions of high watermark minus committed offset.",
            tag_keys=("group", "topic"))


_registry: _Registry | None = None
_registry_lock = threading.Lock()


def registry() -> _Registry:
    """This process's metric objects, created on the first call."""
    global _registry
    if _registry is None:
        with _registry_lock:  # an actor's threads may race to the first call
            if _registry is None:
                _registry = _Registry()
    return _registry


class PartitionMetrics:
    """The metrics of one partition replica.

    ``produced`` and ``fetched`` run on the request path: they add to local counters and
    observe one histogram value. ``flush`` publishes the counters and the
    under-replicated gauge; the replica calls it every second or few and on close.
    Not thread-safe: the replica calls it from its event-loop thread only.
    """

    def __init__(self, topic: str, partition: int, broker_id: int) -> None:
        self.tags = {"topic": topic, "partition": str(partition), "broker": str(broker_id)}
        self._produce_tags = {acks: {"topic": topic, "acks": name} for acks, name in ACKS_TAG_VALUES.items()}
        self._fetch_tags = {"topic": topic}
        self.records_in = self.bytes_in = self.records_out = self.bytes_out = 0
        # What flush() has already added to Ray's counters, in the same order.
        self._published = (0, 0, 0, 0)

    def produced(self, record_count: int, payload_bytes: int, latency_s: float, acks: int) -> None:
        self.records_in += record_count
        self.bytes_in += payload_bytes
        tags = self._produce_tags.get(acks)
        if tags is None:  # the replica treats any other value as acks=1; label it as sent
            tags = self._produce_tags[acks] = {"topic": self._fetch_tags["topic"], "acks": str(acks)}
        registry().produce_latency.observe(latency_s, tags)

    def fetched(self, record_count: int, response_bytes: int, latency_s: float) -> None:
        self.records_out += record_count
        self.bytes_out += response_bytes
        registry().fetch_latency.observe(latency_s, self._fetch_tags)

    def isr_changed(self, isr_before: set[int], isr_after: set[int]) -> None:
        """Count an ISR change the leader adopted (rare, so recorded at once); one that
        both drops and adds members counts as a shrink and an expand."""
        if isr_before - isr_after:
            registry().isr_shrinks.inc(1, self.tags)
        if isr_after - isr_before:
            registry().isr_expands.inc(1, self.tags)

    def flush(self, under_replicated: bool) -> bool:
        """Publish; True if anything was recorded since the last flush."""
        metrics = registry()
        current = (self.records_in, self.bytes_in, self.records_out, self.bytes_out)
        counters = (metrics.records_in, metrics.bytes_in, metrics.records_out, metrics.bytes_out)
        for counter, now, before in zip(counters, current, self._published):
            if now > before:  # Ray refuses an increment of zero
                counter.inc(now - before, self.tags)
        changed = current != self._published
        self._published = current
        metrics.under_replicated.set(1 if under_replicated else 0, self.tags)
        return changed


def set_broker_replicas(broker_id: int, replica_count: int) -> None:
    registry().broker_replicas.set(replica_count, {"broker": str(broker_id)})


def set_group_members(group_id: str, member_count: int) -> None:
    registry().group_members.set(member_count, {"group": group_id})


def count_group_rebalance(group_id: str) -> None:
    registry().group_rebalances.inc(1, {"group": group_id})


def set_group_lag(group_id: str, topic: str, lag_records: int) -> None:
    registry().group_lag.set(lag_records, {"group": group_id, "topic": topic})
