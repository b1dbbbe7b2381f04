"""The PartitionReplica actor's own contract (actors/replica.py), called directly on Ray.

Two replicas of one partition, started as named actors in a namespace of this module's
own (no controller, no broker): broker 0's leads at epoch 1, broker 1's follows it. With
no controller to ask, an ISR change the leader requests is never confirmed, so the
follower stays counted in the high watermark however long it lags (KIP-497: a removal
counts only once the controller confirms it) — which lets a test hold the high
watermark back by freezing the follower's process. The tests share the pair and find
the current leader and epoch each time (one of them moves the leadership), and each
reads the offsets it starts from instead of assuming them.

The client's view of the same machinery (a whole cluster, acks, failover) is
tests/client/test_replication.py; a produce's batch validation is
tests/actors/test_replica_produce_validation.py.
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager

import pyarrow as pa
import pytest
import ray

import rafka
from rafka.actors import names
from rafka.actors.replica import CONFIG_FILE, EARLIEST, PartitionReplica
from rafka.calls import get
from rafka.storage.batch import PRODUCE_SCHEMA, decode_stream, encode_stream

NAMESPACE = "rafka-test-replica-actor"
TOPIC = "replica-actor"
BROKERS = (0, 1)
FIRST_EPOCH = 1
# Long enough that a follower frozen by a test never even asks to leave the ISR.
LAG_TIME_MAX_MS = 600_000
CALL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def pair(ray_instance, tmp_path_factory):
    """{broker id: replica handle}, and each replica's directory."""
    root = tmp_path_factory.mktemp("replica-actor")
    state = {"leader": 0, "leader_epoch": FIRST_EPOCH, "replicas": list(BROKERS), "isr": list(BROKERS),
             "partition_epoch": 0}
    directories = {broker_id: str(root / f"broker-{broker_id}") for broker_id in BROKERS}
    handles = {
        broker_id: ray.remote(PartitionReplica)
        .options(name=names.replica(TOPIC, 0, broker_id), namespace=NAMESPACE, num_cpus=0, max_concurrency=1000)
        .remote(TOPIC, 0, broker_id, directories[broker_id], {}, state, NAMESPACE, LAG_TIME_MAX_MS,
                topic_id="a" * 32)
        for broker_id in BROKERS
    }
    get([handle.ready.remote() for handle in handles.values()], timeout_s=180)
    yield handles, directories
    for handle in handles.values():
        try:
            get(handle.close.remote(), timeout_s=CALL_TIMEOUT_S)
        finally:
            ray.kill(handle, no_restart=True)


def status(handle) -> dict:
    return get(handle.status.remote(), timeout_s=CALL_TIMEOUT_S)


def roles(pair) -> tuple:
    """(leader handle, follower handle, leader epoch), once the follower has taken the
    leader's handshake at the leader's epoch."""
    handles, _ = pair

    def settled():
        statuses = {broker_id: status(handle) for broker_id, handle in handles.items()}
        leaders = [b for b, s in statuses.items() if s["role"] == "leader"]
        if len(leaders) != 1:
            return None
        (leader,) = leaders
        (follower,) = [b for b in statuses if b != leader]
        epoch = statuses[leader]["leader_epoch"]
        follows = statuses[follower]["role"] == "follower" and statuses[follower]["leader_epoch"] == epoch
        return (handles[leader], handles[follower], epoch) if follows else None

    return wait_until(settled, "one leader and its follower at the leader's epoch")


def wait_until(condition, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def payload(values: list[bytes]) -> bytes:
    count = len(values)
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1_000] * count, pa.int64()), pa.array([b"k"] * count, pa.binary()), pa.array(values, pa.binary()),
         pa.nulls(count, PRODUCE_SCHEMA.field("headers").type)], schema=PRODUCE_SCHEMA)
    return encode_stream([batch], PRODUCE_SCHEMA)


def produce(handle, values: list[bytes], leader_epoch: int, acks: int = -1) -> int:
    """The base offset the leader assigned."""
    ref = handle.produce.remote(payload(values), "uncompressed", leader_epoch, -1, -1, -1, acks, 30_000)
    return get(ref, timeout_s=CALL_TIMEOUT_S)[0]


def fetched_values(response) -> list[bytes]:
    if response.records is None:
        return []
    return [value for batch in decode_stream(response.records) for value in batch.column("value").to_pylist()]


def actor_pid(handle) -> int:
    return get(handle.__ray_call__.remote(lambda replica: os.getpid()), timeout_s=CALL_TIMEOUT_S)


@contextmanager
def frozen(handle):
    """The replica's process stopped (as a paused or swapped-out process is), then thawed."""
    pid = actor_pid(handle)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# -- append and fetch ----------------------------------------------------------------


def test_produce_assigns_consecutive_offsets_and_fetch_returns_the_records(pair):
    leader, _, epoch = roles(pair)
    base = produce(leader, [b"a", b"b", b"c"], epoch)
    assert produce(leader, [b"d"], epoch) == base + 3
    response = get(leader.fetch.remote(base, max_wait_ms=0), timeout_s=CALL_TIMEOUT_S)
    assert fetched_values(response) == [b"a", b"b", b"c", b"d"]
    assert (response.record_count, response.next_offset, response.high_watermark) == (4, base + 4, base + 4)


def test_fetch_at_the_log_end_waits_for_a_record(pair):
    leader, _, epoch = roles(pair)
    end = status(leader)["log_end_offset"]
    waiting = leader.fetch.remote(end, max_wait_ms=60_000)
    produce(leader, [b"awaited"], epoch)
    assert fetched_values(get(waiting, timeout_s=CALL_TIMEOUT_S)) == [b"awaited"]


# -- high watermark --------------------------------------------------------------------


def test_acks_all_produce_returns_once_the_follower_holds_the_records(pair):
    leader, follower, epoch = roles(pair)
    base = produce(leader, [b"r"] * 5, epoch, acks=-1)
    assert status(follower)["log_end_offset"] >= base + 5
    assert status(leader)["high_watermark"] >= base + 5


def test_follower_learns_the_high_watermark_from_its_leader(pair):
    leader, follower, epoch = roles(pair)
    base = produce(leader, [b"h"] * 3, epoch, acks=-1)
    wait_until(lambda: status(follower)["high_watermark"] >= base + 3, "the follower's high watermark")


def test_high_watermark_stays_below_records_an_in_sync_follower_lacks(pair):
    leader, follower, epoch = roles(pair)
    produce(leader, [b"before"], epoch, acks=-1)  # high watermark == log end offset
    with frozen(follower):
        base = produce(leader, [b"held"], epoch, acks=1)
        held = status(leader)
        assert (held["log_end_offset"], held["high_watermark"]) == (base + 1, base)
        # Consumers read below the high watermark only.
        response = get(leader.fetch.remote(base, max_wait_ms=0), timeout_s=CALL_TIMEOUT_S)
        assert (fetched_values(response), response.high_watermark) == ([], base)
    wait_until(lambda: status(leader)["high_watermark"] == base + 1, "the high watermark after the follower thawed")


# -- leader epochs -----------------------------------------------------------------------


def test_produce_at_a_stale_leader_epoch_is_refused_and_appends_nothing(pair):
    leader, _, epoch = roles(pair)
    end = status(leader)["log_end_offset"]
    with pytest.raises(rafka.NotLeaderError, match=rf"at epoch {epoch - 1} \(it is leader at epoch {epoch}\)"):
        produce(leader, [b"from a deposed leader's client"], epoch - 1)
    assert status(leader)["log_end_offset"] == end


def test_replicate_at_a_stale_epoch_is_refused_by_the_follower(pair):
    leader, follower, epoch = roles(pair)
    end = status(follower)["log_end_offset"]
    with pytest.raises(rafka.NotLeaderError, match=f"knows leader epoch {epoch}; {epoch - 1} is stale"):
        get(follower.replicate.remote(None, epoch - 1, 0, end), timeout_s=CALL_TIMEOUT_S)
    assert status(follower)["log_end_offset"] == end


def test_handshake_at_a_stale_epoch_is_refused(pair):
    _, follower, epoch = roles(pair)
    with pytest.raises(rafka.NotLeaderError, match=f"knows leader epoch {epoch}; {epoch - 1} is stale"):
        get(follower.become_follower.remote(epoch - 1, 0, [], 0, 0), timeout_s=CALL_TIMEOUT_S)
    assert status(follower)["leader_epoch"] == epoch


def test_state_at_an_older_epoch_is_ignored(pair):
    leader, follower, epoch = roles(pair)
    follower_id = status(follower)["broker_id"]
    stale = {"leader": follower_id, "leader_epoch": epoch - 1, "replicas": list(BROKERS), "isr": list(BROKERS)}
    get(leader.apply_state.remote(stale), timeout_s=CALL_TIMEOUT_S)
    assert (status(leader)["role"], status(leader)["leader_epoch"]) == ("leader", epoch)


def test_a_leader_at_a_higher_epoch_fences_the_old_one(pair):
    old_leader, new_leader, epoch = roles(pair)
    get(new_leader.become_leader.remote(epoch + 1, list(BROKERS), list(BROKERS)), timeout_s=CALL_TIMEOUT_S)
    # The old leader has heard nothing from a controller: the new leader's handshake
    # makes it a follower at the new epoch, and its clients' produces are refused.
    leader, follower, new_epoch = roles(pair)
    assert (leader, follower, new_epoch) == (new_leader, old_leader, epoch + 1)
    with pytest.raises(rafka.NotLeaderError, match="it is follower"):
        produce(old_leader, [b"lost"], epoch)
    base = produce(new_leader, [b"kept"], new_epoch, acks=-1)
    assert status(old_leader)["log_end_offset"] == base + 1


# -- log start and DeleteRecords -------------------------------------------------------------


def test_delete_records_moves_the_log_start_on_leader_and_follower(pair):
    leader, follower, epoch = roles(pair)
    base = produce(leader, [b"d"] * 4, epoch, acks=-1)
    assert get(leader.delete_records.remote(base + 2, epoch), timeout_s=CALL_TIMEOUT_S) == base + 2
    assert status(leader)["log_start_offset"] == status(follower)["log_start_offset"] == base + 2
    assert get(leader.list_offset.remote(EARLIEST), timeout_s=CALL_TIMEOUT_S) == (base + 2, -1)


def test_fetch_below_the_log_start_is_out_of_range_naming_the_offset(pair):
    leader, _, epoch = roles(pair)
    produce(leader, [b"gone"], epoch, acks=-1)
    start = get(leader.delete_records.remote(-1, epoch), timeout_s=CALL_TIMEOUT_S)  # -1: the high watermark
    with pytest.raises(rafka.OffsetOutOfRangeError, match=f"offset {start - 1} is out of range"):
        get(leader.fetch.remote(start - 1, max_wait_ms=0), timeout_s=CALL_TIMEOUT_S)


def test_delete_records_past_the_high_watermark_is_refused_and_deletes_nothing(pair):
    leader, _, epoch = roles(pair)
    before = status(leader)
    beyond = before["high_watermark"] + 5
    with pytest.raises(rafka.OffsetOutOfRangeError, match=f"before {beyond}: past the high watermark"):
        get(leader.delete_records.remote(beyond, epoch), timeout_s=CALL_TIMEOUT_S)
    assert status(leader)["log_start_offset"] == before["log_start_offset"]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-5, "3", True, 2.5])
def test_delete_records_at_an_offset_that_is_not_one_names_it(pair, offset):
    leader, _, epoch = roles(pair)
    before = status(leader)["log_start_offset"]
    with pytest.raises(rafka.OffsetOutOfRangeError, match=f"before offset {offset!r}".replace(".", r"\.")):
        get(leader.delete_records.remote(offset, epoch), timeout_s=CALL_TIMEOUT_S)
    assert status(leader)["log_start_offset"] == before


def test_produce_of_bytes_that_are_no_batch_stream_is_refused_and_appends_nothing(pair):
    leader, _, epoch = roles(pair)
    end = status(leader)["log_end_offset"]
    with pytest.raises(rafka.InvalidRecordError, match="not an Arrow IPC stream"):
        get(leader.produce.remote(b"not arrow", "uncompressed", epoch), timeout_s=CALL_TIMEOUT_S)
    assert status(leader)["log_end_offset"] == end


@pytest.mark.parametrize("acks", [2, "all", None])
def test_produce_with_acks_other_than_0_1_or_minus_1_is_refused_naming_it(pair, acks):
    leader, _, epoch = roles(pair)
    end = status(leader)["log_end_offset"]
    with pytest.raises(rafka.InvalidConfigError, match=f"acks must be 0, 1 or -1 .*got {acks!r}"):
        produce(leader, [b"unsure"], epoch, acks=acks)
    assert status(leader)["log_end_offset"] == end


def test_config_with_an_unknown_key_is_refused_and_the_stored_config_kept(pair):
    leader, _, _ = roles(pair)
    handles, directories = pair
    broker_id = status(leader)["broker_id"]
    path = os.path.join(directories[broker_id], CONFIG_FILE)
    with open(path) as handle:
        stored = json.load(handle)
    with pytest.raises(rafka.InvalidConfigError, match="unknown topic config 'retention.forever'"):
        get(leader.update_config.remote({"retention.forever": "1"}), timeout_s=CALL_TIMEOUT_S)
    with open(path) as handle:
        assert json.load(handle) == stored


def test_config_update_is_stored_for_a_restart(pair):
    leader, _, _ = roles(pair)
    _, directories = pair
    broker_id = status(leader)["broker_id"]
    get(leader.update_config.remote({"retention.ms": "3600000"}), timeout_s=CALL_TIMEOUT_S)
    with open(os.path.join(directories[broker_id], CONFIG_FILE)) as handle:
        assert json.load(handle) == {"retention.ms": "3600000"}
    assert get(leader.__ray_call__.remote(lambda replica: replica.log.config.retention_ms),
               timeout_s=CALL_TIMEOUT_S) == 3_600_000
