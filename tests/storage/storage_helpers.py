"""Batch builders and result readers shared by the storage tests."""

from rafka.storage import make_batch


def batch_of(count: int, start: int = 0, value_bytes: int = 10, timestamp_ms: int = 0, keys=None):
    """A batch of ``count`` records with values b"v<i>" padded to ``value_bytes``."""
    values = [(b"v%d" % (start + i)).ljust(value_bytes, b".") for i in range(count)]
    return make_batch(values, keys=keys, timestamps_ms=timestamp_ms)


def values_of(result) -> list[bytes]:
    return [value for batch in result.batches for value in batch.column("value").to_pylist()]


def offsets_of(result) -> list[int]:
    return [offset for batch in result.batches for offset in batch.column("offset").to_pylist()]


def contents(log) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) of every record in ``log``, from its start."""
    result = log.read(log.log_start_offset, max_bytes=10**9)
    return [
        (offset, key, value)
        for batch in result.batches
        for offset, key, value in zip(*(batch.column(name).to_pylist() for name in ("offset", "key", "value")))
    ]


def crash(log) -> None:
    """Drop a log without flushing or checkpointing, as a killed process would."""
    for segment in log.segments():
        segment.close()
