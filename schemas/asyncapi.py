"""The topic contract as an AsyncAPI 3.0 document, generated from :class:`streams.topics.Topics` and the
pydantic models, so that it cannot say anything the code does not do.

The document describes the stream worker as one application: it *receives* the input topics, the
repartition topic and the admin command topic, and *sends* every output topic. Each channel is one topic
(``address`` = the topic name under a prefix); each message gives its key (Kafka binding) and its payload,
a ``$ref`` into ``components/schemas``, which holds every model's JSON Schema exactly as
``model_json_schema(by_alias=True)`` generates it (only ``$ref`` targets are rewritten from ``#/$defs/X``
to ``#/components/schemas/X/schema`` so they resolve inside this document).

Guarantees that JSON Schema cannot express are stated in the descriptions and, machine-readably, in the
``x-tierstream`` extension of each channel: key, partitioning, ordering, delivery and retention.

Payload schemas are pydantic's (JSON Schema vocabulary, plus OpenAPI-style ``discriminator`` objects on
the unions). Each is wrapped in a multi-format schema object with a JSON Schema ``schemaFormat``, so that
AsyncAPI tools do not read them as AsyncAPI Schema Objects, whose ``discriminator`` is a plain string (the
official parser refuses the document otherwise).

``schemas.export.documents()`` includes this document (``asyncapi.json``), so ``tierstream schemas`` writes
it and the drift test keeps the checked-in copy equal to the code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.admin import (
    ADMIN_COMMAND_ADAPTER,
    CommandResult,
    ProposalClosed,
    TierAtRisk,
    TierChangeProposed,
)
from schemas.events import EVENT_ADAPTER, EVENT_MODELS, EVENT_TYPES
from schemas.outputs import DLQ_HEADERS, TierChangeEvent
from schemas.readmodel import TierRecord
from streams.topics import Topics

ASYNCAPI_VERSION = "3.0.0"
#: Version of the topic contract (not of the package). Bump the minor version when a field or topic is
#: added, the major version when anything is removed, renamed or re-typed (never within a schema_version).
CONTRACT_VERSION = "1.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
#: AsyncAPI's name for JSON Schema payloads. The spec lists draft-07 only; pydantic emits 2020-12
#: keywords (``$defs`` is rewritten away here; ``prefixItems`` does not occur in these models).
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
SCHEMA_REF = "#/components/schemas/{model}/schema"

PARTITIONING = (
    "Kafka's default partitioner (murmur2 of the key bytes) over the same partition count on every topic "
    "(TIERSTREAM_PARTITIONS): all records with one key are on one partition, so a topic keyed by "
    "customer_id has each customer on one partition."
)
ORDERING = "per customer: records of one customer are in decision order; no order across customers"
DELIVERY = (
    "at least once: a record may be delivered more than once, always with identical content; "
    "de-duplicate by change_id and ignore a sequence not newer than the last applied one for "
    "(customer_id, policy)"
)
CUSTOMER_KEY: dict[str, Any] = {
    "type": "string",
    "description": "customer_id, UTF-8 bytes.",
    "minLength": 1,
    "maxLength": 128,
}
INPUT_KEY: dict[str, Any] = {
    **CUSTOMER_KEY,
    "description": "customer_id, UTF-8 bytes (recommended). Unkeyed or otherwise keyed records, and records "
    "on a partition other than murmur2(customer_id) gives, are accepted and re-keyed through the "
    "repartition topic.",
}
SNAPSHOT_KEY: dict[str, Any] = {
    "type": "array",
    "description": 'JSON text of [customer_id, policy], e.g. ["c-42","five_tier"] (no spaces).',
    "items": [{"type": "string", "title": "customer_id"}, {"type": "string", "title": "policy"}],
    "minItems": 2,
    "maxItems": 2,
}
NULLABLE_CUSTOMER_KEY: dict[str, Any] = {
    "description": "customer_id as UTF-8 bytes when the command names one, else null.",
    "anyOf": [{"type": "string"}, {"type": "null"}],
}


class _Components:
    """Collects JSON Schemas of models and adapters under ``components/schemas`` (one entry per model name)."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def add_model(self, model: type[BaseModel]) -> dict[str, str]:
        """Add ``model`` (and the models it uses); returns a ``$ref`` to it."""
        return self._add(model.__name__, model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF))

    def add_adapter(self, name: str, adapter: TypeAdapter[Any]) -> dict[str, str]:
        """Add a union (or any type) under ``name``; returns a ``$ref`` to it."""
        schema = adapter.json_schema(by_alias=True, ref_template=SCHEMA_REF)
        return self._add(name, {"title": name, **schema})

    def _add(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        defs = schema.pop("$defs", {})
        for sub_name, sub in {**defs, name: schema}.items():
            known = self.schemas.setdefault(sub_name, sub)
            # Two different models with one name would silently share one schema: refuse instead.
            if known != sub:
                raise ValueError(f"two different JSON Schemas named {sub_name!r}")
        return {"$ref": SCHEMA_REF.format(model=name)}


def _message(
    name: str,
    title: str,
    summary: str,
    payload: dict[str, Any],
    key: dict[str, Any] | None,
    *,
    content_type: str = "application/json",
    headers: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": content_type,
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": payload},
    }
    if description:
        message["description"] = description
    if headers is not None:
        message["headers"] = {"schemaFormat": SCHEMA_FORMAT, "schema": headers}
    if key is not None:
        message["bindings"] = {"kafka": {"key": key, "bindingVersion": KAFKA_BINDING_VERSION}}
    return message


def _channel(
    address: str,
    title: str,
    description: str,
    messages: list[str],
    *,
    key: str,
    delivery: str = DELIVERY,
    ordering: str = ORDERING,
    compacted: bool = False,
    internal: bool = False,
) -> dict[str, Any]:
    return {
        "address": address,
        "title": title,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "kafka": {
                "topic": address,
                "topicConfiguration": {"cleanup.policy": ["compact" if compacted else "delete"]},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-tierstream": {
            "key": key,
            "partitioning": PARTITIONING,
            "ordering": ordering,
            "delivery": delivery,
            "retention": "compacted: the latest record per key" if compacted else "time-based (delete)",
            "internal": internal,
        },
    }


def asyncapi_document(prefix: str = "tierstream.") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every topic under ``prefix`` (JSON-compatible dict)."""
    topics = Topics(prefix)
    parts = _Components()
    messages: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ inputs
    for event_type in EVENT_TYPES:
        model = EVENT_MODELS[event_type]
        msg_id = f"{event_type}-event"
        messages[msg_id] = _message(
            model.__name__, f"{event_type} event", (model.__doc__ or "").strip().splitlines()[0],
            parts.add_model(model), INPUT_KEY,
        )
        channel_id = f"events-{event_type}"
        channels[channel_id] = _channel(
            topics.input(event_type), f"{event_type} events",
            f"Input: {event_type} events from source systems, one JSON object per record. Invalid records "
            "(bad JSON, wrong type for this topic, schema violations, timestamps too far in the future or "
            "beyond the lateness horizon) go to the dead-letter topic; the stream goes on. A repeated "
            "event_id is counted once, so producers may retry freely.",
            [msg_id], key="customer_id (see the message key)",
            delivery="producers: at least once is enough (events are de-duplicated by event_id)",
        )
        operations[f"receive-{event_type}-events"] = _operation("receive", channel_id, [msg_id],
                                                                f"Score {event_type} events.")

    event_ref = parts.add_adapter("Event", EVENT_ADAPTER)
    messages["event"] = _message(
        "Event", "any input event", "Any input event, discriminated by `type`.", event_ref, CUSTOMER_KEY,
    )
    channels["events-repartition"] = _channel(
        topics.repartition, "repartitioned events",
        "Internal: valid events that arrived unkeyed, keyed by something else or on the wrong partition, "
        "re-keyed by customer_id so that one customer's state has one writer. Any event type. Not for "
        "downstream consumers.",
        ["event"], key="customer_id", internal=True,
    )
    operations["send-repartition"] = _operation("send", "events-repartition", ["event"],
                                                "Re-key mis-keyed input events by customer_id.")
    operations["receive-repartition"] = _operation("receive", "events-repartition", ["event"],
                                                   "Score re-keyed events.")

    command_ref = parts.add_adapter("AdminCommand", ADMIN_COMMAND_ADAPTER)
    messages["admin-command"] = _message(
        "AdminCommand", "admin command",
        "An override or approval (set_override, remove_override, approve_proposal, reject_proposal).",
        command_ref, CUSTOMER_KEY,
        description="Strict: unknown keys, wrong types and naive datetimes are refused (see the audit "
        "topic). A repeated command_id is applied once.",
    )
    channels["admin-commands"] = _channel(
        topics.admin_commands, "admin commands",
        "Input: overrides and approvals, keyed by customer_id (also accepted by the HTTP API, which "
        "produces them here). Every command gets exactly one record on the admin-audit topic.",
        ["admin-command"], key="customer_id",
        delivery="producers: at least once is enough (commands are de-duplicated by command_id)",
    )
    operations["receive-admin-commands"] = _operation("receive", "admin-commands", ["admin-command"],
                                                      "Apply overrides and approvals.")

    # ------------------------------------------------------------------ outputs
    messages["tier-change"] = _message(
        "TierChangeEvent", "tier change", "One customer moved from one tier to another under one policy.",
        parts.add_model(TierChangeEvent), CUSTOMER_KEY,
        description="Versioned by schema_version: within a major version fields are only added. "
        "change_id is deterministic (same decision, same id); sequence counts the changes of one "
        "(customer_id, policy) and grows by one per change.",
    )
    channels["tier-changes"] = _channel(
        topics.tier_changes, "tier changes",
        "Output: one record per tier change, keyed by customer_id, for CRM and notification services "
        "to follow. A worker that restarts after a crash may send a change again: same change_id, "
        "same sequence, same content.",
        ["tier-change"], key="customer_id",
    )
    operations["send-tier-changes"] = _operation("send", "tier-changes", ["tier-change"],
                                                 "Publish every tier change.")

    messages["tier-record"] = _message(
        "TierRecord", "tier snapshot record", "The latest tier of one customer under one policy.",
        parts.add_model(TierRecord), SNAPSHOT_KEY,
        description="The read-model record (as in Redis). `version` is the customer's revision across all "
        "policies: greater is newer. It is not the tier change `sequence`. A null value (tombstone) "
        "would delete the key; the worker does not send any today.",
    )
    channels["customer-tiers"] = _channel(
        topics.customer_tiers, "customer tiers (snapshot)",
        "Output, compacted: the latest record per (customer_id, policy), sent with every tier change and "
        "override, so a new consumer can bootstrap without replaying tier-changes: note tier-changes' end "
        "offsets, read this topic to its end keeping the greatest `version` per key, then follow "
        "tier-changes from the noted offsets. Before compaction runs (and always on the embedded broker, "
        "which never compacts) a key may appear many times: the consumer keeps the latest itself.",
        ["tier-record"], key="JSON [customer_id, policy]", compacted=True,
        delivery="at least once; keep the record with the greatest version per key",
        ordering="per customer: a key's records are in version order",
    )
    operations["send-customer-tiers"] = _operation("send", "customer-tiers", ["tier-record"],
                                                   "Publish the latest tier per customer and policy.")

    messages["tier-change-proposed"] = _message(
        "TierChangeProposed", "tier change proposed", "A sensitive change waiting for approval.",
        parts.add_model(TierChangeProposed), CUSTOMER_KEY,
    )
    messages["tier-proposal-closed"] = _message(
        "ProposalClosed", "tier change proposal closed", "A proposal approved, rejected, expired or withdrawn.",
        parts.add_model(ProposalClosed), CUSTOMER_KEY,
    )
    channels["tier-change-proposed"] = _channel(
        topics.tier_proposals, "tier change proposals",
        "Output: transitions the policy marks as sensitive (they take effect only when approved before "
        "expires_at) and the closing of each proposal. Both kinds share the topic; `type` tells them "
        "apart. De-duplicate by (proposal_id, type).",
        ["tier-change-proposed", "tier-proposal-closed"], key="customer_id",
        delivery="at least once: de-duplicate by (proposal_id, type)",
    )
    operations["send-tier-proposals"] = _operation(
        "send", "tier-change-proposed", ["tier-change-proposed", "tier-proposal-closed"],
        "Publish proposals and their outcome.")

    messages["tier-at-risk"] = _message(
        "TierAtRisk", "tier at risk", "A downgrade is scheduled, with the margin to keep the tier.",
        parts.add_model(TierAtRisk), CUSTOMER_KEY,
    )
    channels["tier-at-risk"] = _channel(
        topics.tier_at_risk, "tier-at-risk warnings",
        "Output: one warning per scheduled downgrade, sent at_risk_days before it. De-duplicate by "
        "(customer_id, policy, tier, scheduled_at).",
        ["tier-at-risk"], key="customer_id",
        delivery="at least once: de-duplicate by (customer_id, policy, tier, scheduled_at)",
    )
    operations["send-tier-at-risk"] = _operation("send", "tier-at-risk", ["tier-at-risk"],
                                                 "Warn before scheduled downgrades.")

    messages["command-result"] = _message(
        "CommandResult", "admin command result", "The audit record of one admin command.",
        parts.add_model(CommandResult), NULLABLE_CUSTOMER_KEY,
    )
    channels["admin-audit"] = _channel(
        topics.admin_audit, "admin audit",
        "Output: exactly one CommandResult per admin command (accepted, or refused with the reason); "
        "unparseable commands too, with a null key when no customer_id could be read.",
        ["command-result"], key="customer_id (null when the command named none)",
        delivery="at least once: de-duplicate by command_id",
    )
    operations["send-admin-audit"] = _operation("send", "admin-audit", ["command-result"],
                                                "Record every admin command's outcome.")

    headers = {
        "type": "object",
        "description": "Kafka headers of a dead letter; every value is a UTF-8 string.",
        "properties": {name: {"type": "string", "description": text} for name, text in DLQ_HEADERS.items()},
        "required": sorted(DLQ_HEADERS),
    }
    messages["dead-letter"] = _message(
        "DeadLetter", "dead letter", "A rejected input record, verbatim.",
        {"description": "The original value bytes, unchanged (need not be JSON)."},
        {"description": "The original key bytes, unchanged (may be null)."},
        content_type="application/octet-stream", headers=headers,
        description="Key and value are the rejected record's original bytes; why and where it came from "
        "are headers (the Kafka Connect convention).",
    )
    channels["dead-letters"] = _channel(
        topics.dead_letters, "dead letters",
        "Output: the original bytes of every rejected input record, reason and source in the headers.",
        ["dead-letter"], key="the original record's key bytes",
        delivery="at least once: de-duplicate by (tierstream.source.topic, .partition, .offset)",
        ordering="per source partition",
    )
    operations["send-dead-letters"] = _operation("send", "dead-letters", ["dead-letter"],
                                                 "Set aside records that are not valid events.")

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:tierstream:topics",
        "info": {
            "title": "tierstream topics",
            "version": CONTRACT_VERSION,
            "description": (
                "Kafka topics of the tierstream worker: events in, tier changes and the latest tier per "
                "customer out. Every topic has the same partition count and is keyed by customer_id "
                "(customer-tiers by [customer_id, policy]), so the records of one key are ordered.\n\n"
                "Delivery is at least once everywhere. Tier changes carry a deterministic change_id and a "
                "per-(customer, policy) sequence: consumers de-duplicate by change_id and ignore a sequence "
                "not newer than the last one they applied. New consumers bootstrap from the compacted "
                "customer-tiers topic instead of replaying tier-changes."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The Kafka cluster of TIERSTREAM_BROKER.",
                "variables": {"bootstrap": {"default": "127.0.0.1:9092", "description": "host:port"}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {name: {"schemaFormat": SCHEMA_FORMAT, "schema": schema}
                        for name, schema in sorted(parts.schemas.items())},
        },
    }


def _operation(action: str, channel_id: str, message_ids: list[str], summary: str) -> dict[str, Any]:
    return {
        "action": action,
        "summary": summary,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in message_ids],
    }
