"""Topic configs under Kafka's dotted names."""

import pytest

from rafka.errors import InvalidConfigError
from rafka.storage import LogConfig


def test_dotted_names_parse_from_strings_and_numbers():
    config = LogConfig.from_dict({"retention.ms": "3600000", "segment.bytes": 4096, "cleanup.policy": "compact,delete",
                                  "unclean.leader.election.enable": "true"})
    assert (config.retention_ms, config.segment_bytes) == (3_600_000, 4096)
    assert config.compact and config.delete and config.unclean_leader_election_enable


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("retention.ms", "soon", "'retention.ms' must be an integer, got 'soon'"),
        ("retention.ms", "-5", "at least 0 (or -1 for no limit), got '-5'"),
        ("segment.bytes", 2**40, "at most"),
        ("cleanup.policy", "shred", "one of delete, compact, compact,delete, got 'shred'"),
        ("retention.minutes", "1", "unknown topic config 'retention.minutes'"),
        ("max.message.bytes", True, "must be an integer"),
        ("min.cleanable.dirty.ratio", "1.5", "'min.cleanable.dirty.ratio' must be between 0 and 1, got '1.5'"),
        ("min.cleanable.dirty.ratio", "-0.1", "must be between 0 and 1, got '-0.1'"),
        ("min.cleanable.dirty.ratio", "nan", "must be between 0 and 1, got 'nan'"),
        ("min.cleanable.dirty.ratio", "half", "'min.cleanable.dirty.ratio' must be a number, got 'half'"),
    ],
)
def test_bad_values_name_the_key_and_value(key, value, message):
    with pytest.raises(InvalidConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LogConfig.from_dict({key: value})


def test_to_dict_round_trips():
    config = LogConfig.from_dict({"retention.bytes": "10", "message.timestamp.type": "LogAppendTime"})
    assert LogConfig.from_dict(config.to_dict()) == config
    assert config.updated({"retention.bytes": "20"}).retention_bytes == 20


def test_min_cleanable_dirty_ratio_defaults_to_kafkas_half_and_parses_numbers():
    assert LogConfig().min_cleanable_dirty_ratio == 0.5
    assert LogConfig.from_dict({"min.cleanable.dirty.ratio": "0.25"}).min_cleanable_dirty_ratio == 0.25
    assert LogConfig.from_dict({"min.cleanable.dirty.ratio": 1}).min_cleanable_dirty_ratio == 1.0
    config = LogConfig.from_dict({"min.cleanable.dirty.ratio": "0.1"})
    assert LogConfig.from_dict(config.to_dict()) == config
