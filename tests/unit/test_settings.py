"""tierstream.settings: defaults that differ between Kafka and the embedded broker."""

from __future__ import annotations

import os

import pytest

from tierstream.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the developer's or CI's own TIERSTREAM_* variables must not decide these tests
    for name in list(os.environ):
        if name.startswith("TIERSTREAM_"):
            monkeypatch.delenv(name)


def test_producers_batch_on_kafka_and_by_default_on_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().producer_batching
    assert Settings(embedded_broker=True).producer_batching  # the end-offset correction is on by default
    monkeypatch.setenv("TIERSTREAM_EMBEDDED_OFFSET_CORRECTION", "0")
    assert not Settings(embedded_broker=True).producer_batching
    assert Settings().producer_batching  # Kafka needs no correction


def test_read_model_rewrites_are_on_by_default_and_reach_the_decider(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.topology import build_worker

    assert Settings().read_model_rewrite_unchanged  # the contract: updated_at = the last decision
    monkeypatch.setenv("TIERSTREAM_READ_MODEL_REWRITE_UNCHANGED", "false")
    settings = Settings()
    assert not settings.read_model_rewrite_unchanged
    _, worker = build_worker(settings)
    assert worker.processor.decider.rewrite_elided is False
