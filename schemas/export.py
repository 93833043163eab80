"""Every contract as JSON documents: one JSON Schema per input event kind and per output, and the AsyncAPI
document of every topic (``asyncapi.json``, see :mod:`schemas.asyncapi`).

``documents()`` is the single source for ``tierstream schemas`` and for the drift test that keeps the
checked-in copies under ``docs/schemas/`` identical to the models.
"""

from __future__ import annotations

import json

from schemas.admin import (
    ADMIN_COMMAND_ADAPTER,
    CommandResult,
    ProposalClosed,
    TierAtRisk,
    TierChangeProposed,
)
from schemas.asyncapi import asyncapi_document
from schemas.events import EVENT_ADAPTER, EVENT_MODELS
from schemas.outputs import DLQ_HEADERS, TierChangeEvent
from schemas.readmodel import TierRecord


def documents() -> dict[str, str]:
    """File name -> JSON text (sorted keys, 2-space indent, trailing newline) of every contract."""
    docs: dict[str, dict] = {f"event.{name}.schema.json": m.model_json_schema() for name, m in EVENT_MODELS.items()}
    docs["event.schema.json"] = EVENT_ADAPTER.json_schema()
    docs["tier-change.schema.json"] = TierChangeEvent.model_json_schema(by_alias=True)
    docs["readmodel.tier-record.schema.json"] = TierRecord.model_json_schema()
    docs["admin-command.schema.json"] = ADMIN_COMMAND_ADAPTER.json_schema(by_alias=True)
    docs["admin-audit.schema.json"] = CommandResult.model_json_schema(by_alias=True)
    docs["tier-change-proposed.schema.json"] = TierChangeProposed.model_json_schema(by_alias=True)
    docs["tier-proposal-closed.schema.json"] = ProposalClosed.model_json_schema(by_alias=True)
    docs["tier-at-risk.schema.json"] = TierAtRisk.model_json_schema(by_alias=True)
    docs["dead-letter.headers.json"] = {
        "description": "Dead-letter records keep the original key and value bytes; these headers say why.",
        "headers": DLQ_HEADERS,
    }
    # With the default prefix: the prefix is a deployment setting, the contract is the same under any.
    docs["asyncapi.json"] = asyncapi_document()
    return {name: json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in docs.items()}
