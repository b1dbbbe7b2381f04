"""The cleaner never removes a record the high watermark has not passed.

Records at or above the high watermark are not yet replicated to every in-sync replica;
a leader change can truncate them. If a newer, uncommitted value of a key removed the
committed one, the truncation would then remove the newer one too and the key would be
gone for good. Only offsets below the first uncleanable offset,
min(high watermark, active segment base), are cleaned (as Kafka's last stable offset).
"""

from __future__ import annotations

from storage_helpers import contents

from rafka.storage import Log, LogConfig, ManualClock, make_batch


def open_compacted(directory, clock: ManualClock) -> Log:
    config = LogConfig.from_dict({"cleanup.policy": "compact", "segment.bytes": "1024"})
    return Log(str(directory), config, clock)


def append(log: Log, clock: ManualClock, key: bytes, value: bytes | None) -> int:
    offset = log.append(make_batch([value], keys=[key], timestamps_ms=clock.now_ms())).first_offset
    log.roll()  # one record per segment: every segment but the active one is closed
    return offset


def test_compact_keeps_every_record_at_or_above_the_high_watermark(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    for value in (b"a0", b"a1", b"a2", b"a3", b"a4", b"a5"):
        append(log, clock, b"k", value)
    log.set_high_watermark(3)
    log.compact()
    # Below the high watermark only the latest committed value (offset 2) survives; from
    # the high watermark on nothing is touched although offsets 3 and 4 are superseded.
    assert contents(log) == [(2, b"k", b"a2"), (3, b"k", b"a3"), (4, b"k", b"a4"), (5, b"k", b"a5")]


def test_compact_cleans_nothing_when_the_high_watermark_is_at_the_log_start(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    for value in (b"a0", b"a1", b"a2"):
        append(log, clock, b"k", value)
    before = contents(log)
    assert log.compact().records_removed == 0
    assert contents(log) == before


def test_truncate_to_the_high_watermark_after_compact_keeps_the_committed_value(tmp_path):
    clock = ManualClock()
    log = open_compacted(tmp_path, clock)
    append(log, clock, b"k", b"committed")
    append(log, clock, b"other", b"x")
    log.set_high_watermark(log.log_end_offset)
    committed_end = log.high_watermark
    # Appended by a leader that then dies before any follower has it; it sits in a closed
    # segment (the log rolled after it), so the old cleaner saw it as cleanable.
    append(log, clock, b"k", b"uncommitted")
    append(log, clock, b"other", b"y")
    log.compact()
    # The new leader never had the uncommitted records: this replica truncates to where
    # the logs agree, which is the high watermark here.
    log.truncate_to(committed_end)
    latest = {key: value for _offset, key, value in contents(log)}
    assert latest.get(b"k") == b"committed"
    assert latest.get(b"other") == b"x"
