"""Source offsets: how a source partition is named in the offsets store."""

from __future__ import annotations

import json


def partition_key(source_partition: dict) -> str:
    return json.dumps(source_partition, sort_keys=True, separators=(",", ":"))
