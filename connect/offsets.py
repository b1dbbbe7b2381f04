import json


def partition_key(source_partition: dict) -> str:
    return json.dumps(source_partition, sort_keys=True, separators=(",", ":"))
