"""Producer options checked before anything is sent (no cluster needed)."""

from __future__ import annotations

import pytest

from rafka.client.producer import ProducerConfig
from rafka.errors import InvalidConfigError


def test_build_refuses_more_than_five_in_flight_with_idempotence():
    # The leader remembers the last 5 batches per producer: a sixth outstanding batch
    # could not be recognised as a retry (Kafka's client refuses the same).
    with pytest.raises(InvalidConfigError, match="max_in_flight=6"):
        ProducerConfig.build(max_in_flight=6)


def test_build_allows_more_in_flight_without_idempotence():
    assert ProducerConfig.build(max_in_flight=10, enable_idempotence=False).max_in_flight == 10
    assert ProducerConfig.build(max_in_flight=5).max_in_flight == 5


def test_build_refuses_a_non_bool_enable_idempotence():
    with pytest.raises(InvalidConfigError, match="enable_idempotence"):
        ProducerConfig.build(enable_idempotence="no")
