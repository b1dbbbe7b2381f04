"""Opening a partition log: recovery after a clean or unclean shutdown (Kafka's LogLoader).

``load_log`` reads one partition directory (layout in ``rafka.storage.log``) and returns
the state a ``Log`` starts from. It is called once, by ``Log``'s constructor, before the
log is shared with anyone; it is not thread-safe and imports no Ray.

What it removes before reading anything:
  - leftover files of an interrupted write (``.tmp``, ``.cleaned``, ``.truncating``,
    ``.swap``): the operation that made them never finished, so the files they were to
    replace are still whole;
  - the ``clean-shutdown`` marker, durably (the directory is fsynced): from here on a
    crash must read as unclean. ``RecoveryResult.clean_shutdown`` says whether it was
    there; a directory without segments counts as clean, having nothing to lose;
  - offset and time indexes whose ``.log`` file is gone.

What it trusts: a segment that ends at or below the recovery-point checkpoint was fsynced
and validated before, so only its indexes are loaded (and rebuilt from the frame headers
if they are damaged). Its records are not checked: corruption there shows on a read with
``verify_crc`` (as in Kafka). A missing recovery-point checkpoint trusts nothing.

What it validates: every segment from the first one holding an offset at or above the
recovery point (or the first trusted one whose indexes fail to load when no later segment
is trusted), frame by frame: framing, CRC, offsets increasing from where the previous
segment ended, an Arrow body with the stated row count. Validated segments are fsynced
before the log moves its recovery point past them.

What it cuts, and logs as a warning of the ``rafka.storage.log`` logger naming the
directory and what was dropped:
  - at the first invalid frame of a validated segment: the rest of that segment and every
    later segment (nothing after a corrupt frame can be trusted to be in order);
  - a trusted segment that fails to load while a later segment is trusted too (a disk
    fault in fsynced data): that segment is cut at its bad frame and the later segments
    are kept, so the log has a gap.
Everything dropped is counted in ``RecoveryResult`` (bytes, batches, segments deleted).

What it derives from the checkpoints, each clamped to what the segments hold:
  - the log start offset: the checkpoint, at least the first segment's base, at most the
    log end offset;
  - the high watermark: the checkpoint (0 if missing), within [log start, log end];
  - the leader-epoch history: the checkpoint, extended by newer epochs found in the
    batches validated just now, or rebuilt from every batch header when the checkpoint is
    missing or unreadable; then truncated to the log's offsets at both ends;
  - the cleaner offset: the checkpoint, or the log start when missing (the whole log is
    dirty, the safe choice); one past the log end is rewritten (and saved) as the log end.

It returns a ``LoadedLog``: the segments (oldest first, every one flushed), those offsets,
the epoch history, and the ``RecoveryResult``. The recovery point it returns is the log
end offset; the caller writes the recovery-point, high-watermark and log-start
checkpoints from it (``Log.checkpoint``).
"""

from __future__ import annotations

import dataclasses
import logging
import os

from rafka.errors import StorageError
from rafka.storage import checkpoint
from rafka.storage.checkpoint import NO_DELETE_HORIZON, LeaderEpochCache
from rafka.storage.clock import Clock
from rafka.storage.config import LogConfig
from rafka.storage.segment import LOG_SUFFIX, Segment, _count_frames

LEFTOVER_SUFFIXES = (".tmp", ".cleaned", ".truncating", ".swap")
# Recovery is reported under the partition log's logger: it is what operators filter on,
# and what ``rafka.storage.log``'s docstring promises.
logger = logging.getLogger("rafka.storage.log")


@dataclasses.dataclass(frozen=True)
class RecoveryResult:
    """What opening the log found and dropped."""

    bytes_dropped: int = 0
    batches_dropped: int = 0
    segments_recovered: int = 0
    segments_deleted: int = 0
    indexes_rebuilt: int = 0
    # False: the log was not closed cleanly last time (see ``rafka.storage.log``).
    clean_shutdown: bool = True


@dataclasses.dataclass(frozen=True)
class LoadedLog:
    """The state a ``Log`` starts from (see the module docstring)."""

    segments: list[Segment]
    log_start_offset: int
    high_watermark: int
    recovery_point: int
    epochs: LeaderEpochCache
    cleaner_offset: int
    cleaner_delete_horizon_ms: int
    recovery: RecoveryResult


def load_log(directory: str, config: LogConfig, clock: Clock) -> LoadedLog:
    """Recover the partition log in ``directory`` (which exists) and return its state."""

    def path(name: str) -> str:
        return os.path.join(directory, name)

    names = os.listdir(directory)
    for name in names:
        if name.endswith(LEFTOVER_SUFFIXES):
            os.unlink(path(name))
    bases = sorted(int(name[: -len(LOG_SUFFIX)]) for name in names
                   if name.endswith(LOG_SUFFIX) and name[:-len(LOG_SUFFIX)].isdigit())
    clean_shutdown = checkpoint.CLEAN_SHUTDOWN_FILE in names or not bases
    if checkpoint.CLEAN_SHUTDOWN_FILE in names:
        # Gone for good before anything is appended: a crash from here on must read
        # as unclean.
        os.unlink(path(checkpoint.CLEAN_SHUTDOWN_FILE))
        checkpoint.fsync_directory(directory)
    for name in names:  # indexes whose segment is gone
        stem, _, suffix = name.partition(".")
        if suffix in ("index", "timeindex") and stem.isdigit() and int(stem) not in bases:
            os.unlink(path(name))
    log_start = checkpoint.read_offset(path(checkpoint.LOG_START_OFFSET_FILE))
    recovery_point = checkpoint.read_offset(path(checkpoint.RECOVERY_POINT_FILE)) or 0
    if not bases:
        bases = [log_start or 0]
    now_ms = clock.now_ms()
    segments = [Segment(directory, base, config.index_interval_bytes, config.segment_index_bytes, now_ms)
                for base in bases]

    # A segment that ends at or below the recovery point was fsynced and validated
    # before: load its indexes only. Every segment from the first that holds an offset
    # at or above the recovery point (or fails to load) is validated frame by frame.
    indexes_rebuilt = 0
    bytes_dropped = batches_dropped = segments_deleted = 0
    first_to_recover = len(segments)
    for index, segment in enumerate(segments):
        if segment.base_offset > recovery_point:
            first_to_recover = index
            break
        wholly_trusted = index + 1 < len(segments) and segments[index + 1].base_offset <= recovery_point
        try:
            indexes_rebuilt += segment.load()
        except StorageError:
            if not wholly_trusted:
                first_to_recover = index
                break
            # Corruption in data fsynced and validated before (a disk fault): cut
            # this segment at the bad frame and report it, but keep the segments after
            # it, which hold good records of their own (the log gets a gap).
            dropped, frames = segment.recover(segments[index - 1].next_offset if index else 0)
            logger.warning("%s: segment %d, fsynced before, is corrupt: recovery cut %d bytes (%d batches) "
                           "from it and kept the segments after it, so the log has a gap from offset %d",
                           directory, segment.base_offset, dropped, frames, segment.next_offset)
            bytes_dropped += dropped
            batches_dropped += frames
            indexes_rebuilt += 1
            continue
        if segment.next_offset > recovery_point:
            first_to_recover = index
            break
    expected_offset = segments[first_to_recover - 1].next_offset if first_to_recover else 0
    recovered = 0
    for index in range(first_to_recover, len(segments)):
        segment = segments[index]
        dropped, frames = segment.recover(expected_offset)
        recovered += 1
        indexes_rebuilt += 1
        bytes_dropped += dropped
        batches_dropped += frames
        expected_offset = segment.next_offset
        if dropped:
            # Nothing after a corrupt frame can be trusted to be in order.
            later_bytes = later_batches = 0
            for later in segments[index + 1 :]:
                later_bytes += later.size_bytes
                later_batches += _count_frames(later.buffer(), 0, later.size_bytes)
                later.delete()
                segments_deleted += 1
            bytes_dropped += later_bytes
            batches_dropped += later_batches
            logger.warning("%s: recovery cut a torn or corrupt tail at offset %d in segment %d: %d bytes "
                           "(%d batches) of it, and %d later segments (%d bytes, %d batches) deleted",
                           directory, segment.next_offset, segment.base_offset, dropped, frames,
                           len(segments) - index - 1, later_bytes, later_batches)
            del segments[index + 1 :]
            break

    end = segments[-1].next_offset
    log_start_offset = min(max(log_start or 0, segments[0].base_offset), end)
    high_watermark = min(max(checkpoint.read_offset(path(checkpoint.HIGH_WATERMARK_FILE)) or 0, log_start_offset), end)
    epochs = LeaderEpochCache.load(path(checkpoint.LEADER_EPOCH_FILE))
    if epochs is None:
        epochs = _rebuild_epochs(path(checkpoint.LEADER_EPOCH_FILE), segments)
    else:
        # Batches validated just now may carry epochs the checkpoint never saw (a crash
        # between writing a batch and saving the history).
        for segment in segments[first_to_recover:]:
            for _position, header in segment.headers():
                if header.leader_epoch > epochs.latest_epoch:
                    epochs.assign(header.leader_epoch, header.base_offset)
    epochs.truncate_from_end(end)
    epochs.truncate_from_start(log_start_offset)
    # Without a cleaner checkpoint the whole log counts as dirty (the safe choice: a
    # full pass, as after Kafka loses its cleaner-offset-checkpoint).
    cleaned = checkpoint.read_cleaner_offset(path(checkpoint.CLEANER_OFFSET_FILE))
    cleaner_offset, cleaner_horizon_ms = cleaned or (log_start_offset, NO_DELETE_HORIZON)
    if cleaner_offset > end:
        cleaner_offset = end
        checkpoint.write_cleaner_offset(path(checkpoint.CLEANER_OFFSET_FILE), cleaner_offset, cleaner_horizon_ms)
    for segment in segments:
        segment.flush()
    recovery = RecoveryResult(bytes_dropped, batches_dropped, recovered, segments_deleted, indexes_rebuilt,
                              clean_shutdown)
    return LoadedLog(segments, log_start_offset, high_watermark, end, epochs, cleaner_offset, cleaner_horizon_ms,
                     recovery)


def _rebuild_epochs(path: str, segments: list[Segment]) -> LeaderEpochCache:
    cache = LeaderEpochCache(path)
    for segment in segments:
        for _position, header in segment.headers():
            if header.leader_epoch > cache.latest_epoch:
                cache.assign(header.leader_epoch, header.base_offset)
    cache.save()
    return cache
