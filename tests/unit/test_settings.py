"""tierstream.settings: environment-derived defaults that differ between Kafka and the embedded broker."""

from __future__ import annotations

import pytest

from tierstream.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the developer's or CI's own TIERSTREAM_* variables must not decide these tests
    import os

    for name in list(os.environ):
        if name.startswith("TIERSTREAM_"):
            monkeypatch.delenv(name)


def test_fetch_wait_defaults_to_100_ms_on_kafka_and_20_ms_on_the_embedded_broker() -> None:
    assert Settings().fetch_wait_ms == 100
    assert Settings(embedded_broker=True).fetch_wait_ms == 20


def test_an_explicit_fetch_wait_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERSTREAM_FETCH_MAX_WAIT_MS", "250")
    assert Settings(embedded_broker=True).fetch_wait_ms == 250
    assert Settings().fetch_wait_ms == 250


def test_producers_batch_on_kafka_and_by_default_on_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().producer_batching
    assert Settings(embedded_broker=True).producer_batching  # the end-offset correction is on by default
    monkeypatch.setenv("TIERSTREAM_EMBEDDED_OFFSET_CORRECTION", "0")
    assert not Settings(embedded_broker=True).producer_batching
    assert Settings().producer_batching  # Kafka needs no correction
