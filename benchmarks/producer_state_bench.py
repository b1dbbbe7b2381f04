"""Producer-state benchmark: what rebuilding a leader's idempotent-producer state costs.

Builds a log of ``--segments`` segments of small idempotent batches (one record each, so
the header count is as high as it gets for the bytes) from ``--producers`` producers,
then measures, on the same log:

* rebuild by replaying every batch header (no snapshot: the first open of an old log);
* the first snapshot of that log, built in maintenance steps of at most
  ``REPLAY_HEADERS_PER_STEP`` headers (how many steps, the longest one);
* one ``maintain_snapshots`` after a later roll (what the replica's maintenance loop pays
  per roll: a replay of the newly closed segment and a snapshot write);
* rebuild from the newest snapshot plus the tail after it (every later open or leader
  change).

Run:  python benchmarks/producer_state_bench.py [--segments 20] [--batches-per-segment 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

from rafka.actors.producer_state import ProducerStates
from rafka.storage import Log, LogConfig, make_batch, producer_snapshot


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=20)
    parser.add_argument("--batches-per-segment", type=int, default=5000)
    parser.add_argument("--producers", type=int, default=1000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="rafka-producer-state-", dir=args.dir)
    try:
        log = Log(os.path.join(directory, "log"), LogConfig.from_dict({"segment.bytes": str(2**30)}))
        batch = make_batch([b"v" * 100])
        sequences = [0] * args.producers
        for _segment in range(args.segments):
            for index in range(args.batches_per_segment):
                producer_id = index % args.producers
                log.append(batch, producer_id=producer_id, producer_epoch=0, base_sequence=sequences[producer_id])
                sequences[producer_id] += 1
            log.roll()
        batches = args.segments * args.batches_per_segment

        started = time.perf_counter()
        ProducerStates("bench", 1.0).rebuild(log)
        full_replay_s = time.perf_counter() - started

        states = ProducerStates("bench", 1.0)
        steps, longest_step_s = 0, 0.0
        while not producer_snapshot.list_snapshots(log.directory):  # the first: replays everything, in steps
            started = time.perf_counter()
            states.maintain_snapshots(log)
            longest_step_s = max(longest_step_s, time.perf_counter() - started)
            steps += 1
        for index in range(args.batches_per_segment):
            producer_id = index % args.producers
            log.append(batch, producer_id=producer_id, producer_epoch=0, base_sequence=sequences[producer_id])
            sequences[producer_id] += 1
        log.roll()
        started = time.perf_counter()
        states.maintain_snapshots(log)
        per_roll_s = time.perf_counter() - started
        snapshot_bytes = os.path.getsize(producer_snapshot.list_snapshots(log.directory)[-1][1])

        started = time.perf_counter()
        rebuilt = ProducerStates("bench", 1.0)
        rebuilt.rebuild(log)
        from_snapshot_s = time.perf_counter() - started
        assert len(rebuilt.producer_ids()) == args.producers
        log.close()
        print(json.dumps({
            "machine": f"{platform.node()} {os.cpu_count()} cpus", "batches": batches + args.batches_per_segment,
            "segments": args.segments + 1, "producers": args.producers,
            "rebuild_full_replay_s": round(full_replay_s, 3), "first_snapshot_steps": steps,
            "first_snapshot_longest_step_s": round(longest_step_s, 3),
            "snapshot_per_roll_s": round(per_roll_s, 3), "snapshot_bytes": snapshot_bytes,
            "rebuild_from_snapshot_s": round(from_snapshot_s, 4),
        }))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
