"""The checked-in OpenAPI document (docs/openapi.json) must equal the one the code generates.

If this fails, the API changed: review the change, bump ``API_VERSION`` if the contract changed, and
regenerate with ``python -m tierstream.api.openapi``.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tierstream.api import create_app
from tierstream.api.openapi import OPENAPI_PATH, build_openapi, render
from tierstream.settings import Settings


def test_checked_in_openapi_matches_code() -> None:
    checked_in = OPENAPI_PATH.read_text(encoding="utf-8")
    generated = render(build_openapi())
    assert json.loads(checked_in) == json.loads(generated), "docs/openapi.json drifted: regenerate it"
    assert checked_in == generated, "docs/openapi.json is not in canonical form: regenerate it"


def test_served_openapi_is_the_checked_in_one() -> None:
    # No lifespan (no `with`): serving the document needs no Redis.
    served = TestClient(create_app(Settings(api_read_tokens=("x",)))).get("/openapi.json").json()
    assert served == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def test_every_operation_documents_json_errors() -> None:
    doc = build_openapi()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1/"):
                assert op.get("security") == [{"HTTPBearer": []}], (method, path)
                for status in ("401", "403", "422"):
                    schema = op["responses"][status]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
