"""The AsyncAPI document: AsyncAPI 3 structure, every topic present, every reference resolving, and the
payload schemas accepting what the worker really sends (and refusing what it must not).

The checked-in copy (docs/schemas/asyncapi.json) is kept equal to the code by test_schema_documents.py.
The document was also checked once with the official @asyncapi/parser (npm), which reported no error; that
check is not repeated here to keep the tests Python-only.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.asyncapi import asyncapi_document
from schemas.outputs import DLQ_HEADERS, TierChangeEvent, change_id
from schemas.readmodel import TierRecord
from streams.topics import Topics

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "schemas" / "asyncapi.json"
ID = re.compile(r"^[A-Za-z0-9_\-]+$")  # AsyncAPI 3: keys of channels, operations, components
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi_document()


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (at {part!r})"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_required_asyncapi3_fields(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and re.fullmatch(r"\d+\.\d+\.\d+", doc["info"]["version"])
    assert doc["servers"]["kafka"]["protocol"] == "kafka"
    for section in ("channels", "operations"):
        assert doc[section] and all(ID.match(k) for k in doc[section]), section
    for section in ("messages", "schemas"):
        assert all(ID.match(k) for k in doc["components"][section]), section
    for op_id, op in doc["operations"].items():
        assert op["action"] in {"send", "receive"}, op_id
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/")
        # AsyncAPI 3: an operation's messages must be (references to) messages of its channel
        for m in op["messages"]:
            assert m["$ref"].startswith(channel_ref + "/messages/"), (op_id, m)
    for channel_id, channel in doc["channels"].items():
        assert channel["address"] and channel["messages"], channel_id
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]


def test_every_reference_resolves(doc):
    for ref in refs(doc):
        resolve(doc, ref)
    # and nothing points at pydantic's local $defs, which do not exist inside this document
    assert not [r for r in refs(doc) if "$defs" in r]


@pytest.mark.parametrize("prefix", ["tierstream.", "acme.prod."])
def test_every_topic_is_a_channel(prefix):
    doc = asyncapi_document(prefix)
    topics = Topics(prefix)
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(topics.all_consumed()) | set(topics.all_produced()) == addresses
    sends = {resolve(doc, op["channel"]["$ref"])["address"] for op in doc["operations"].values()
             if op["action"] == "send"}
    receives = {resolve(doc, op["channel"]["$ref"])["address"] for op in doc["operations"].values()
                if op["action"] == "receive"}
    assert sends == set(topics.all_produced())
    assert receives == set(topics.all_consumed())


def test_guarantees_are_stated(doc):
    channels = {c["address"]: c for c in doc["channels"].values()}
    topics = Topics()
    changes = channels[topics.tier_changes]
    assert changes["x-tierstream"]["ordering"].startswith("per customer")
    assert "de-duplicate by change_id" in changes["x-tierstream"]["delivery"]
    snapshot = channels[topics.customer_tiers]
    assert snapshot["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["compact"]
    assert changes["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"] == ["delete"]
    key = resolve(doc, snapshot["messages"]["tier-record"]["$ref"])["bindings"]["kafka"]["key"]
    assert key["type"] == "array" and key["minItems"] == key["maxItems"] == 2
    change_key = resolve(doc, changes["messages"]["tier-change"]["$ref"])["bindings"]["kafka"]["key"]
    assert change_key["type"] == "string" and "customer_id" in change_key["description"]
    dead = resolve(doc, channels[topics.dead_letters]["messages"]["dead-letter"]["$ref"])
    assert set(dead["headers"]["schema"]["properties"]) == set(DLQ_HEADERS)
    assert channels[topics.repartition]["x-tierstream"]["internal"] is True


def _validator(doc: dict[str, Any], message_id: str) -> Any:
    """A JSON Schema validator of one message's payload, references resolved within the document."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    payload = doc["components"]["messages"][message_id]["payload"]
    assert payload["schemaFormat"].startswith("application/schema+json")
    # The references are document-absolute (#/components/...): validate with the document as the root.
    return jsonschema_rs.Draft202012Validator({**payload["schema"], "components": doc["components"]})


def _change(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "customer_id": "c-1", "policy": "five_tier", "policy_version": 1, "from_tier": "silver",
        "to_tier": "gold", "direction": "up", "cause": "event", "score": 70.0, "sequence": 2, "event_id": "e-1",
        "effective_at": NOW, "decided_at": NOW,
    }
    fields.update(overrides)
    cid = change_id(fields["customer_id"], fields["policy"], fields["policy_version"], fields["sequence"],
                    fields["to_tier"])
    # the wire form, exactly as streams.batch.encode_change writes it
    return TierChangeEvent(change_id=cid, **fields).model_dump(mode="json", by_alias=True)


def test_payload_schemas_accept_real_records_and_refuse_wrong_ones(doc):
    change = _validator(doc, "tier-change")
    wire = _change()
    assert change.is_valid(wire)
    assert not change.is_valid({**wire, "sequence": 0})
    assert not change.is_valid({k: v for k, v in wire.items() if k != "change_id"})
    assert not change.is_valid({**wire, "to_tier": "gold"})  # python names are not the wire names

    record = TierRecord(customer_id="c-1", policy="five_tier", policy_version=1, tier="gold", since=NOW,
                        version=3, updated_at=NOW)
    assert _validator(doc, "tier-record").is_valid(record.model_dump(mode="json"))

    event = _validator(doc, "event")
    order = {"event_id": "e", "customer_id": "c", "occurred_at": NOW.isoformat(), "type": "order",
             "order_id": "o", "status": "placed", "amount": "10.5"}
    assert event.is_valid(order) and _validator(doc, "order-event").is_valid(order)
    assert not event.is_valid({**order, "type": "purchase"})

    command = {"type": "set_override", "command_id": "k", "customer_id": "c", "policy": "five_tier",
               "actor": "ops", "reason": "VIP", "kind": "pin", "tier": "gold"}
    assert _validator(doc, "admin-command").is_valid(command)
    assert not _validator(doc, "admin-command").is_valid({k: v for k, v in command.items() if k != "kind"})


def test_checked_in_copy_is_the_generated_document():
    # test_schema_documents.py checks the text; this says what to do when only this document drifted
    assert json.loads(CHECKED_IN.read_text()) == asyncapi_document(), (
        "docs/schemas/asyncapi.json drifted: run `make schemas`")
