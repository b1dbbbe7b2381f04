"""Admin: create, list, describe, alter and delete topics; list, describe (with lag),
delete and reset the offsets of consumer groups; manage the Kafka listeners' SCRAM
users and ACLs (docs/security.md).

Arguments are validated here, before any remote call, with errors that name the bad
value; the controller validates again (it is the authority) for other callers.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from rafka.actors import names
from rafka.actors.coordinator import coordinator_handle, coordinator_index
from rafka.client import rpc
from rafka.errors import GroupNotFoundError, RafkaError
from rafka.security import scram
from rafka.security.acl import AclBinding, AclFilter
from rafka.validation import validate_config, validate_count, validate_topic_name

if TYPE_CHECKING:
    from rafka.client.cluster import Cluster


class Admin:
    def __init__(self, cluster: "Cluster") -> None:
        self._cluster = cluster
        self._controller = cluster.controller

    @staticmethod
    def _call(method, *args):
        # The controller may be restarting (Ray brings it back from its metadata log).
        return rpc.call_with_retries(method, *args)

    def describe_cluster(self) -> dict:
        """The brokers (id, node, data dir, alive) and the controller quorum: ``voters``
        (each voter's role, term, leader, commit and applied index, or ``reachable:
        False``), ``leader`` (the active controller's voter id), ``epoch`` (the
        controller epoch) and ``lag`` (entries each voter is behind the leader)."""
        return {"brokers": self._cluster.brokers(), "controller": self._cluster.quorum()}

    def create_topic(self, topic: str, partitions: int = 1, replication_factor: int = 1,
                     config: dict[str, Any] | None = None) -> dict:
        """Create ``topic``; returns its description once every replica is serving.
        Raises ``TopicExistsError``, ``InvalidTopicError`` or ``InvalidConfigError``."""
        validate_topic_name(topic)
        validate_count("partitions", partitions)
        validate_count("replication_factor", replication_factor)
        config = validate_config(config)
        # One topic id for every retry of this call: an attempt that committed before a
        # controller failover is recognised instead of answering TopicExistsError.
        return self._call(self._controller.create_topic, topic, partitions, replication_factor, config,
                          uuid.uuid4().hex)

    def delete_topic(self, topic: str) -> None:
        validate_topic_name(topic)
        self._call(self._controller.delete_topic, topic)
        self._cluster.metadata.invalidate(topic)

    def list_topics(self, include_internal: bool = False) -> list[str]:
        return self._call(self._controller.list_topics, include_internal)

    def describe_topic(self, topic: str) -> dict:
        """Partitions (leader, leader epoch, replicas, ISR) and config overrides."""
        validate_topic_name(topic)
        return self._call(self._controller.describe_topic, topic)

    def describe_configs(self, topic: str) -> dict[str, str]:
        """Every config of ``topic`` under Kafka's names, defaults included."""
        validate_topic_name(topic)
        return self._call(self._controller.describe_configs, topic)

    def alter_configs(self, topic: str, changes: dict[str, Any]) -> dict[str, str]:
        """Set configs of ``topic`` (a None value resets one to its default)."""
        validate_topic_name(topic)
        return self._call(self._controller.alter_configs, topic, changes)

    def create_partitions(self, topic: str, total: int) -> dict:
        """Grow ``topic`` to ``total`` partitions."""
        validate_topic_name(topic)
        validate_count("total", total)
        description = self._call(self._controller.create_partitions, topic, total)
        self._cluster.metadata.invalidate(topic)
        return description

    def list_offsets(self, topic: str, spec: str | int = "latest") -> dict[int, int]:
        """Per partition, the earliest offset, latest (high watermark), or the first at
        or after a timestamp (ms); -1 where none."""
        from rafka.actors.replica import EARLIEST, LATEST

        timestamp = {"earliest": EARLIEST, "latest": LATEST}.get(spec, spec) if isinstance(spec, str) else spec
        if not isinstance(timestamp, int):
            raise ValueError(f"spec must be 'earliest', 'latest' or a timestamp in ms, got {spec!r}")
        metadata = self._cluster.metadata
        metadata.refresh([topic])
        count = metadata.partition_count(topic)
        offsets = {}
        for partition in range(count):
            for attempt in range(20):
                try:
                    offsets[partition] = rpc.get(metadata.leader(topic, partition)[0].list_offset.remote(timestamp))[0]
                    break
                except RafkaError as error:
                    if not error.retriable or attempt == 19:
                        raise
                    metadata.invalidate(topic)
        return offsets

    def delete_records(self, topic: str, before: dict[int, int], timeout_s: float = 30.0) -> dict[int, int]:
        """Delete the records of ``topic`` before an offset per partition (Kafka's
        DeleteRecords; -1: everything below the high watermark). Returns per partition
        the new low watermark, once the leader and every in-sync follower have moved
        their log start offset there. Consumers positioned below it get
        OffsetOutOfRange (and reset per ``auto_offset_reset``)."""
        validate_topic_name(topic)
        if not isinstance(before, dict) or not before:
            raise ValueError(f"before must be a non-empty dict of partition -> offset, got {before!r}")
        for partition, offset in before.items():
            for name, value, low in (("partition", partition, 0), ("offset", offset, -1)):
                if isinstance(value, bool) or not isinstance(value, int) or value < low:
                    raise ValueError(f"{name} must be an int >= {low}, got {value!r} (partition {partition!r})")
        metadata = self._cluster.metadata
        metadata.refresh([topic])
        count = metadata.partition_count(topic)
        unknown = sorted(p for p in before if p >= count)
        if unknown:
            raise ValueError(f"topic {topic!r} has {count} partitions; there is no partition {unknown[0]}")
        low_watermarks = {}
        for partition, offset in sorted(before.items()):
            for attempt in range(20):
                try:
                    replica, epoch = metadata.leader(topic, partition)
                    low_watermarks[partition] = rpc.get(replica.delete_records.remote(
                        offset, epoch, round(timeout_s * 1000)), timeout_s=timeout_s + 10)
                    break
                except RafkaError as error:
                    if not error.retriable or attempt == 19:
                        raise
                    metadata.invalidate(topic)
        return low_watermarks

    # -- consumer groups -------------------------------------------------------------

    def _coordinator_count(self) -> int:
        partitions = self._call(self._controller.metadata, [names.OFFSETS_TOPIC])[names.OFFSETS_TOPIC]
        return len(partitions) if partitions else 0

    def _coordinator_call(self, group_id: str, method: str, *args: Any) -> Any:
        if not isinstance(group_id, str) or not group_id:
            raise TypeError(f"group_id must be a non-empty str, got {group_id!r}")
        count = self._coordinator_count()
        if count == 0:
            raise GroupNotFoundError(f"unknown consumer group {group_id!r} (no group has ever been used)")
        index = coordinator_index(group_id, count)
        return rpc.call_with_retries(getattr(coordinator_handle(self._cluster.namespace, index), method), group_id, *args)

    def list_groups(self) -> list[dict]:
        """Every consumer group: its id, state (Empty, Stable, Reconciling), member
        count and assignor."""
        groups = []
        for index in range(self._coordinator_count()):
            groups.extend(rpc.call_with_retries(coordinator_handle(self._cluster.namespace, index).list_groups))
        return sorted(groups, key=lambda group: group["group_id"])

    def describe_group(self, group_id: str) -> dict:
        """State, members (id, instance id, client id, assigned partitions) and, per
        partition the group subscribes to or has committed: the owner, committed offset,
        log end offset (the high watermark) and lag (None where nothing is committed)."""
        description = self._coordinator_call(group_id, "describe_group")
        owners = {tuple(tp): member["member_id"] for member in description["members"] for tp in member["assignment"]}
        committed = {tuple(tp): entry["offset"] for tp, entry in description["offsets"].items()}
        topics = {tp[0] for tp in committed} | {tp[0] for member in description["members"] for tp in member["target"]}
        partitions = []
        for topic in sorted(topics):
            try:
                ends = self.list_offsets(topic, "latest")
            except RafkaError:
                ends = {}  # a deleted topic: its offsets remain until the group is deleted
            for partition in sorted(set(ends) | {p for t, p in committed if t == topic}):
                offset, end = committed.get((topic, partition)), ends.get(partition)
                partitions.append({
                    "topic": topic, "partition": partition, "member_id": owners.get((topic, partition)),
                    "committed_offset": offset, "log_end_offset": end,
                    "lag": None if offset is None or end is None else max(0, end - offset),
                })
        description["partitions"] = partitions
        description["total_lag"] = sum(entry["lag"] or 0 for entry in partitions)
        del description["offsets"]
        return description

    def delete_group(self, group_id: str) -> None:
        """Delete a group with no active members, and its committed offsets."""
        self._coordinator_call(group_id, "delete_group")

    def reset_offsets(self, group_id: str, topic: str, *, to: str | int | None = None,
                      timestamp_ms: int | None = None, shift_by: int | None = None,
                      partitions: list[int] | None = None, dry_run: bool = False) -> dict[int, int]:
        """Set the committed offsets of ``group_id`` on ``topic`` (all partitions, or
        ``partitions``) for a group with no active members. Exactly one of: ``to``
        ("earliest", "latest" or an offset), ``timestamp_ms`` (the first offset at or
        after it; latest where none), ``shift_by`` (committed offset + N, or from the
        earliest when nothing is committed). Results are clamped to the log's range.
        Returns {partition: new offset}; ``dry_run`` computes without committing."""
        validate_topic_name(topic)
        chosen = [name for name, value in (("to", to), ("timestamp_ms", timestamp_ms), ("shift_by", shift_by))
                  if value is not None]
        if len(chosen) != 1:
            raise ValueError(f"reset_offsets takes exactly one of to, timestamp_ms, shift_by; got {chosen or 'none'}")
        if to is not None and to not in ("earliest", "latest") and (isinstance(to, bool) or not isinstance(to, int) or to < 0):
            raise ValueError(f"to must be 'earliest', 'latest' or a non-negative offset, got {to!r}")
        for name, value in (("timestamp_ms", timestamp_ms), ("shift_by", shift_by)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be an int, got {value!r}")
        earliest, latest = self.list_offsets(topic, "earliest"), self.list_offsets(topic, "latest")
        wanted = sorted(earliest) if partitions is None else list(partitions)
        for partition in wanted:
            if partition not in earliest:
                raise ValueError(f"topic {topic!r} has no partition {partition!r} (it has {len(earliest)})")
        if to == "earliest":
            targets = {p: earliest[p] for p in wanted}
        elif to == "latest":
            targets = {p: latest[p] for p in wanted}
        elif to is not None:
            targets = {p: to for p in wanted}
        elif timestamp_ms is not None:
            found = self.list_offsets(topic, timestamp_ms)
            targets = {p: found[p] if found[p] >= 0 else latest[p] for p in wanted}
        else:
            committed = {}
            try:
                described = self.describe_group(group_id)
                committed = {e["partition"]: e["committed_offset"] for e in described["partitions"] if e["topic"] == topic}
            except GroupNotFoundError:
                pass
            targets = {p: (committed[p] if committed.get(p) is not None else earliest[p]) + shift_by for p in wanted}
        targets = {p: min(max(offset, earliest[p]), latest[p]) for p, offset in targets.items()}
        if not dry_run:
            entries = [[topic, p, offset, ""] for p, offset in sorted(targets.items())]
            count = self._coordinator_count()
            if count == 0:
                from rafka.actors.coordinator import offsets_topic_partitions

                count = offsets_topic_partitions(self._controller)
            handle = coordinator_handle(self._cluster.namespace, coordinator_index(group_id, count))
            rpc.call_with_retries(handle.commit, group_id, None, entries)
        return targets

    # -- wire-listener users and ACLs (docs/security.md) --------------------------------

    def set_scram_credential(self, user: str, password: str, mechanism: str = "SCRAM-SHA-256",
                             iterations: int = scram.ITERATIONS_MIN) -> None:
        """Create or replace ``user``'s ``mechanism`` credential (SCRAM-SHA-256 or -512).
        The salted keys are derived here: the password never leaves this process and is
        never stored. The user can then log in over SASL/SCRAM with that mechanism, and
        over SASL/PLAIN with the password."""
        scram.validate_user(user)
        stored = scram.credential(password, mechanism, iterations)
        self._alter_scram([[user, stored]], [])

    def delete_scram_credential(self, user: str, mechanism: str = "SCRAM-SHA-256") -> None:
        """Remove ``user``'s ``mechanism`` credential; ValueError if there is none."""
        scram.validate_user(user)
        if mechanism not in scram.MECHANISMS:
            raise ValueError(f"SCRAM mechanism must be one of {sorted(scram.MECHANISMS)}, got {mechanism!r}")
        self._alter_scram([], [[user, mechanism]])

    def _alter_scram(self, upsertions: list, deletions: list) -> None:
        for result in self._call(self._controller.alter_scram_credentials, upsertions, deletions):
            if result is not None:
                raise ValueError(f"{result[0]}: {result[1]}")

    def describe_scram_credentials(self, users: list[str] | None = None) -> dict[str, list[tuple[str, int]]]:
        """user -> [(mechanism, iterations)] for ``users`` (default every user)."""
        return self._call(self._controller.describe_scram_credentials, users)

    def create_acls(self, bindings: list[AclBinding]) -> None:
        """Add ``bindings``; all or none (a bad one raises ValueError naming it)."""
        checked = [b.to_dict() if isinstance(b, AclBinding) else AclBinding.from_dict(b).to_dict() for b in bindings]
        self._call(self._controller.create_acls, checked)

    def describe_acls(self, **acl_filter: Any) -> list[AclBinding]:
        """The bindings that match: keyword arguments as ``AclBinding``'s fields, each
        left out matching everything (``pattern_type="match"`` with ``name``: every
        binding that applies to that resource)."""
        found = self._call(self._controller.describe_acls, AclFilter(**acl_filter).to_dict())
        return [AclBinding.from_dict(b) for b in found]

    def delete_acls(self, **acl_filter: Any) -> list[AclBinding]:
        """Remove the bindings that match (as ``describe_acls``); returns them."""
        (matched,) = self._call(self._controller.delete_acls, [AclFilter(**acl_filter).to_dict()])
        return [AclBinding.from_dict(b) for b in matched]
