"""The partition log on disk: pure Python and pyarrow, no Ray.

``Log`` is the entry point; ``batch`` defines the record schema and the frame format.
"""

from rafka.storage.batch import PRODUCE_SCHEMA, RECORD_SCHEMA, BatchHeader, make_batch
from rafka.storage.cleaner import CompactionResult
from rafka.storage.clock import Clock, ManualClock, SystemClock
from rafka.storage.config import LogConfig
from rafka.storage.log import AppendInfo, Log, ReadResult, RetentionResult
from rafka.storage.log_loader import RecoveryResult

__all__ = [
    "AppendInfo",
    "BatchHeader",
    "Clock",
    "CompactionResult",
    "Log",
    "LogConfig",
    "ManualClock",
    "PRODUCE_SCHEMA",
    "RECORD_SCHEMA",
    "ReadResult",
    "RecoveryResult",
    "RetentionResult",
    "SystemClock",
    "make_batch",
]
