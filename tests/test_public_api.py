"""The public surface is exactly ``rafka.__all__``, sorted, and every name resolves."""

import rafka


def test_all_is_sorted_and_every_name_exists():
    assert list(rafka.__all__) == sorted(rafka.__all__, key=lambda name: (name.startswith("_"), name))
    for name in rafka.__all__:
        assert hasattr(rafka, name), name


def test_public_errors_share_one_root():
    for name in rafka.__all__:
        value = getattr(rafka, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, rafka.RafkaError), name


def test_retriable_flags_follow_the_design():
    assert rafka.NotLeaderError.retriable and rafka.LeaderNotAvailableError.retriable
    assert not rafka.TopicNotFoundError.retriable and not rafka.RecordTooLargeError.retriable
    assert not rafka.InvalidConfigError.retriable
