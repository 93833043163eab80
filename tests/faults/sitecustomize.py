"""Fault injection for worker processes started by the integration tests.

A worker started with this directory on ``PYTHONPATH`` imports it at interpreter start (Python's
``sitecustomize`` hook), before tierstream; without the environment variables below it changes nothing.
Nothing in the product refers to it.

``TIERSTREAM_FAULT_LOSE_RECORD=TOPIC:OFFSET``: the first time aiokafka hands over the record at ``OFFSET``
of ``TOPIC`` (any partition), it is withheld while the fetch position moves past it, which is what the
race between a seek from Faust's thread and aiokafka's ``FetchResult.getall`` does (streams.stalls). At
a partition's tail no later record reveals the loss.
"""

from __future__ import annotations

import os
import sys


def _lose_record_once(spec: str) -> None:
    from aiokafka.consumer import fetcher

    topic, _, offset_text = spec.rpartition(":")
    offset = int(offset_text)
    original = fetcher.Fetcher.fetched_records
    state = {"lost": False}

    async def fetched_records(self, partitions, timeout=0, max_records=None):  # type: ignore[no-untyped-def]
        drained = await original(self, partitions, timeout=timeout, max_records=max_records)
        if state["lost"]:
            return drained
        for tp, records in list(drained.items()):
            if tp.topic != topic:
                continue
            kept = [r for r in records if r.offset != offset]
            if len(kept) != len(records):
                state["lost"] = True
                print(f"FAULT: lost {topic}[{tp.partition}]@{offset} in delivery", file=sys.stderr, flush=True)
                if kept:
                    drained[tp] = kept
                else:
                    del drained[tp]
        return drained

    fetcher.Fetcher.fetched_records = fetched_records  # type: ignore[method-assign]


if spec := os.environ.get("TIERSTREAM_FAULT_LOSE_RECORD"):
    _lose_record_once(spec)
