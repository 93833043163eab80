"""The checked-in contract documents are exactly what the models generate (no drift)."""

from pathlib import Path

from schemas.export import documents

DOCS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def test_checked_in_schemas_match_models():
    generated = documents()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    assert set(on_disk) == set(generated), "run `make schemas` and commit docs/schemas"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} drifted from the models: run `make schemas`"


def test_tier_change_schema_uses_wire_names():
    import json

    schema = json.loads(documents()["tier-change.schema.json"])
    assert {"from", "to", "change_id", "sequence", "cause"} <= set(schema["properties"])
