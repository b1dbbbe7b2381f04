"""Storage benchmark: append and read throughput of ``rafka.storage.Log``.

For records of 100 B and 1 KiB in batches of 1,000 and 10,000 records it measures
``Log.append`` without fsync and with an fsync per batch (``flush.messages=1``), beside a
raw sequential ``os.write`` of the same bytes in the same run (the ceiling: what the disk
and page cache take without any framing, CRC or Arrow work), and ``Log.read`` of Arrow
batches back from the page cache.

Targets on a 2-core machine (issue 2): append without fsync at least 50% of the raw write
rate; Arrow reads from the page cache at least 1 GB/s. MB/s count record value bytes.
Reads are zero-copy views of the mapped segments, so "read" measures finding, validating
and slicing batches; "read+scan" also touches every value byte.

The cleaner (log compaction) is measured on a compacted log of ``--cleaner-keys`` keys
(default 200,000) with 100-byte values, each key written twice, in 4 MiB segments, high
watermark at the log end: "clean pass" is the first pass (half the records go; keys/s
counts distinct keys of the cleaned range per second), "idle pass" a second pass with
nothing dirty, the one the replica runs every few seconds. Then the clean pass again on a
fresh log through ``Log.compact_async`` (what the replica runs) while a coroutine ticks
every millisecond: its longest gap is how long the pass held the event loop.

Run:  python benchmarks/storage_bench.py [--scale 1.0] [--dir /tmp] [--json FILE] [--only append|cleaner]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa

from rafka.storage import PRODUCE_SCHEMA, Log, LogConfig

NO_FSYNC_PAYLOAD_BYTES = 256 * 1024 * 1024
FSYNC_BATCHES = 40


def build_batches(record_bytes: int, batch_records: int, batch_count: int) -> list[pa.RecordBatch]:
    """Distinct random batches (a pool of 8, reused) of the produce schema."""
    pool = []
    for _ in range(min(8, batch_count)):
        payload = np.random.default_rng().integers(0, 256, batch_records * record_bytes, dtype=np.uint8)
        values = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(record_bytes), batch_records, [None, pa.py_buffer(payload)]).cast(pa.binary())
        keys = pa.array([b"key-%d" % i for i in range(batch_records)], pa.binary())
        pool.append(pa.RecordBatch.from_arrays(
            [pa.array(np.full(batch_records, time.time_ns() // 1_000_000, dtype=np.int64)), keys, values,
             pa.nulls(batch_records, PRODUCE_SCHEMA.field("headers").type)], schema=PRODUCE_SCHEMA))
    return [pool[i % len(pool)] for i in range(batch_count)]


def raw_write(directory: str, chunk: bytes, count: int, fsync: bool) -> float:
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    started = time.perf_counter()
    for _ in range(count):
        os.write(fd, chunk)
        if fsync:
            os.fsync(fd)
    elapsed_s = time.perf_counter() - started
    os.close(fd)
    os.unlink(path)
    return elapsed_s


def run_case(directory: str, record_bytes: int, batch_records: int, fsync: bool, scale: float) -> dict:
    batch_payload_bytes = record_bytes * batch_records
    batch_count = FSYNC_BATCHES if fsync else max(4, int(NO_FSYNC_PAYLOAD_BYTES * scale / batch_payload_bytes))
    batches = build_batches(record_bytes, batch_records, batch_count)
    log_dir = tempfile.mkdtemp(dir=directory)
    config = {"segment.bytes": str(1024**3 - 1), "flush.messages": "1" if fsync else "-1",
              "max.message.bytes": str(32 * 1024 * 1024)}
    log = Log(log_dir, LogConfig.from_dict(config))

    started = time.perf_counter()
    for batch in batches:
        log.append(batch)
    append_s = time.perf_counter() - started
    stored_bytes = log.size_bytes
    records = batch_count * batch_records
    payload_bytes = records * record_bytes

    frame_bytes = stored_bytes // batch_count
    raw_s = raw_write(directory, os.urandom(frame_bytes), batch_count, fsync)

    # Read everything back from the page cache; count rows so nothing is skipped.
    read_records = 0
    started = time.perf_counter()
    offset = 0
    while offset < log.log_end_offset:
        result = log.read(offset, max_bytes=8 * 1024 * 1024)
        read_records += sum(batch.num_rows for batch in result.batches)
        offset = result.next_offset
    read_s = time.perf_counter() - started
    assert read_records == records, (read_records, records)

    # The same read, also touching every value byte (XOR-folding the value buffers), so
    # the figure includes faulting the mapped pages in, not just building views.
    started = time.perf_counter()
    offset, checksum = 0, 0
    while offset < log.log_end_offset:
        result = log.read(offset, max_bytes=8 * 1024 * 1024)
        for batch in result.batches:
            data = batch.column("value").buffers()[2]
            words = np.frombuffer(data, dtype=np.uint8, count=data.size - data.size % 8).view(np.uint64)
            checksum ^= int(np.bitwise_xor.reduce(words))
        offset = result.next_offset
    scan_s = time.perf_counter() - started
    log.close()
    shutil.rmtree(log_dir)
    return {
        "record_bytes": record_bytes, "batch_records": batch_records, "fsync": fsync, "batches": batch_count,
        "append_mb_per_s": payload_bytes / append_s / 1e6, "append_records_per_s": records / append_s,
        "raw_write_mb_per_s": payload_bytes / raw_s / 1e6, "append_percent_of_raw": 100 * raw_s / append_s,
        "read_mb_per_s": payload_bytes / read_s / 1e6, "read_records_per_s": records / read_s,
        "read_and_scan_mb_per_s": payload_bytes / scan_s / 1e6,
        "stored_bytes_per_record": stored_bytes / records,
    }


CLEANER_VALUE_BYTES = 100
CLEANER_BATCH_RECORDS = 1000
CLEANER_SEGMENT_BYTES = 4 * 1024 * 1024


def build_compacted_log(directory: str, key_count: int) -> Log:
    """A compacted log holding every key twice, all committed, every segment closed."""
    log_dir = tempfile.mkdtemp(dir=directory)
    config = {"cleanup.policy": "compact", "segment.bytes": str(CLEANER_SEGMENT_BYTES)}
    log = Log(log_dir, LogConfig.from_dict(config))
    values = pa.array([b"v" * CLEANER_VALUE_BYTES] * CLEANER_BATCH_RECORDS, pa.binary())
    headers = pa.nulls(CLEANER_BATCH_RECORDS, PRODUCE_SCHEMA.field("headers").type)
    for _round in range(2):
        for first in range(0, key_count, CLEANER_BATCH_RECORDS):
            count = min(CLEANER_BATCH_RECORDS, key_count - first)
            keys = pa.array([b"key-%010d" % i for i in range(first, first + count)], pa.binary())
            timestamps = pa.array(np.full(count, time.time_ns() // 1_000_000, dtype=np.int64))
            log.append(pa.RecordBatch.from_arrays([timestamps, keys, values.slice(0, count), headers.slice(0, count)],
                                                  schema=PRODUCE_SCHEMA))
    log.roll()
    log.set_high_watermark(log.log_end_offset)
    return log


async def longest_loop_stall_s(log: Log) -> tuple[float, float]:
    """Run ``compact_async`` while a ticker measures the event loop's longest stall;
    return (the pass's wall time, the longest gap between two ticks)."""
    done = False
    longest_s = 0.0

    async def ticker() -> None:
        nonlocal longest_s
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest_s = max(longest_s, now - last)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    result = await log.compact_async()
    elapsed_s = time.perf_counter() - started
    done = True
    await ticking
    assert result.records_removed > 0, result
    return elapsed_s, longest_s


def run_cleaner_case(directory: str, key_count: int) -> dict:
    """Time a cleaning pass over ``key_count`` keys each written twice, then an idle one,
    then the same cleaning pass through ``compact_async`` on an event loop."""
    log = build_compacted_log(directory, key_count)
    records = 2 * key_count
    size_before = log.size_bytes
    segments = len(log.segments())

    started = time.perf_counter()
    cleaned = log.compact()
    clean_s = time.perf_counter() - started
    assert cleaned.records_removed == key_count, cleaned

    idle_s = []
    for _ in range(3):
        started = time.perf_counter()
        idle = log.compact()
        idle_s.append(time.perf_counter() - started)
        assert idle.records_removed == 0, idle
    log.close()
    shutil.rmtree(log.directory)

    row = {
        "keys": key_count, "records": records, "bytes_before": size_before, "segments": segments,
        "clean_pass_s": clean_s, "clean_keys_per_s": key_count / clean_s, "clean_records_per_s": records / clean_s,
        "idle_pass_s": min(idle_s),
    }
    if hasattr(log, "compact_async"):
        log = build_compacted_log(directory, key_count)
        row["async_pass_s"], row["async_longest_loop_stall_s"] = asyncio.run(longest_loop_stall_s(log))
        log.close()
        shutil.rmtree(log.directory)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description="rafka storage benchmark")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the no-fsync data volume")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--only", choices=("append", "cleaner"), help="run one part only")
    parser.add_argument("--cleaner-keys", type=int, default=200_000, help="keys in the cleaner case")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="rafka-storage-bench-", dir=args.dir)
    print(f"rafka storage benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, pyarrow {pa.__version__}, dir {directory}")
    results = []
    try:
        if args.only != "cleaner":
            results += run_append_cases(directory, args.scale)
        if args.only != "append":
            row = run_cleaner_case(directory, args.cleaner_keys)
            results.append(row)
            print(f"cleaner: {row['keys']:,} keys, {row['records']:,} records, {row['bytes_before'] / 1e6:,.0f} MB "
                  f"in {row['segments']} segments | clean pass {row['clean_pass_s']:.2f} s "
                  f"({row['clean_keys_per_s']:,.0f} keys/s, {row['clean_records_per_s']:,.0f} records/s) | "
                  f"idle pass (nothing dirty) {row['idle_pass_s'] * 1000:,.2f} ms")
            if "async_pass_s" in row:
                print(f"cleaner on an event loop (compact_async): pass {row['async_pass_s']:.2f} s, longest event-loop "
                      f"stall {row['async_longest_loop_stall_s'] * 1000:,.0f} ms")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "cores": os.cpu_count(),
                       "results": results}, handle, indent=2)
    return 0


def run_append_cases(directory: str, scale: float) -> list[dict]:
    header = (f"{'record':>7} {'batch':>6} {'fsync':>5} | {'append MB/s':>11} {'append rec/s':>13} | "
              f"{'raw MB/s':>9} {'% of raw':>8} | {'read MB/s':>9} {'read rec/s':>13} {'read+scan MB/s':>14}")
    print(header)
    print("-" * len(header))
    results = []
    for fsync in (False, True):
        for record_bytes in (100, 1024):
            for batch_records in (1000, 10_000):
                row = run_case(directory, record_bytes, batch_records, fsync, scale)
                results.append(row)
                print(f"{record_bytes:>6}B {batch_records:>6} {'yes' if fsync else 'no':>5} | "
                      f"{row['append_mb_per_s']:>11,.0f} {row['append_records_per_s']:>13,.0f} | "
                      f"{row['raw_write_mb_per_s']:>9,.0f} {row['append_percent_of_raw']:>7.0f}% | "
                      f"{row['read_mb_per_s']:>9,.0f} {row['read_records_per_s']:>13,.0f}"
                      f" {row['read_and_scan_mb_per_s']:>14,.0f}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
