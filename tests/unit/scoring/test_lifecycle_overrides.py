"""Overrides: pin, floor and ceiling with actor, reason and expiry; always explicit in outputs; scores keep
being computed underneath; invalid commands are refused with a reason."""

from __future__ import annotations

import pytest
from test_lifecycle_helpers import Driver, d, make_policy

from schemas.admin import InvalidCommand, parse_command


def test_pin_holds_the_tier_while_scores_move_underneath_and_expires() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 60)  # silver
    r = drv.command("set", "2024-01-02", kind="pin", tier="gold", expires_at=d("2024-03-01"))
    assert r.command.accepted and r.command.reason.startswith("pin at 'gold' until 2024-03-01")
    (c,) = r.changes
    assert (c.from_tier, c.to_tier, c.cause, c.sequence) == ("silver", "gold", "override", 2)
    assert c.override is not None
    o = c.override
    assert (o.kind, o.tier, o.actor, o.reason) == ("pin", "gold", "alice", "because")
    assert c.to_event(d("2024-01-02")).explanation["lifecycle"]["override"]["kind"] == "pin"

    r = drv.event("2024-01-10", 20)  # scores bronze: no visible change, but the scored and held tiers move
    assert r.changes == ()
    assert (r.tier, r.held_tier, r.scored_tier, r.track.score) == ("gold", "bronze", "bronze", 20)
    assert drv.track.override_view().kind == "pin"

    assert drv.due() == d("2024-03-01")
    r = drv.time("2024-03-01")
    (c,) = r.changes
    assert (c.from_tier, c.to_tier, c.cause, c.effective_at, c.override) == (
        "gold", "bronze", "override", d("2024-03-01"), None)
    assert c.note["override_expired"]["kind"] == "pin"


def test_floor_raises_only_and_lets_higher_scores_through() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 20)  # bronze
    r = drv.command("set", "2024-01-02", kind="floor", tier="silver")
    assert [(c.to_tier, c.cause) for c in r.changes] == [("silver", "override")]
    r = drv.event("2024-01-03", 90)
    assert [(c.to_tier, c.cause) for c in r.changes] == [("gold", "event")]
    assert r.changes[0].override.kind == "floor"  # visible in every event while active
    r = drv.event("2024-01-04", 10)
    assert [(c.to_tier, c.cause) for c in r.changes] == [("silver", "event")]  # not below the floor
    assert (r.held_tier, r.scored_tier) == ("bronze", "bronze")


def test_ceiling_caps_and_lower_scores_pass() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 90)  # gold
    r = drv.command("set", "2024-01-02", kind="ceiling", tier="silver", expires_at=d("2024-01-20"))
    assert [(c.from_tier, c.to_tier) for c in r.changes] == [("gold", "silver")]
    assert drv.event("2024-01-03", 95).changes == ()
    assert drv.event("2024-01-04", 10).changes[0].to_tier == "bronze"
    drv.event("2024-01-05", 95)  # back to silver (capped)
    assert drv.track.tier == "silver"
    assert drv.time("2024-01-20").changes[0].to_tier == "gold"  # the cap expired


def test_replace_and_remove_an_override() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 60)
    drv.command("set", "2024-01-02", kind="pin", tier="gold")
    r = drv.command("set", "2024-01-03", kind="pin", tier="bronze")
    assert r.changes[0].note["override_replaced"]["tier"] == "gold"
    r = drv.command("remove", "2024-01-04")
    assert r.command.accepted and r.command.reason == "removed the pin override at 'bronze'"
    assert [(c.from_tier, c.to_tier, c.cause, c.override) for c in r.changes] == [
        ("bronze", "silver", "override", None)]
    r = drv.command("remove", "2024-01-05")
    assert not r.command.accepted and r.command.reason == "no active override to remove"


def test_an_override_before_any_event_assigns_a_tier() -> None:
    drv = Driver(make_policy())
    r = drv.command("set", "2024-01-01", kind="pin", tier="gold")
    assert [(c.from_tier, c.to_tier, c.direction) for c in r.changes] == [(None, "gold", "new")]
    assert drv.event("2024-01-02", 10).changes == ()  # first score: held bronze, still pinned gold


def test_an_override_does_not_start_a_flip_flop_count() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 60)
    drv.command("set", "2024-01-02", kind="pin", tier="gold")
    drv.command("remove", "2024-01-03")
    assert drv.track.flip_flops == 0


def test_invalid_commands_are_refused_with_a_reason() -> None:
    drv = Driver(make_policy())
    drv.event("2024-01-01", 60)
    before = drv.track
    r = drv.command("set", "2024-01-02", kind="pin", tier="platinum")
    assert not r.command.accepted
    assert r.command.reason == "unknown tier 'platinum'; the policy's tiers are gold, silver, bronze"
    r = drv.command("set", "2024-01-02", kind="floor", tier="gold", expires_at=d("2024-01-02"))
    assert not r.command.accepted and "is not after the command time" in r.command.reason
    r = drv.command("set", "2024-01-02", kind="pin", tier="gold", policy="other")
    assert not r.command.accepted and r.command.reason == "command for policy 'other' given to 'demo'"
    r = drv.command("set", "2024-01-02", kind="pin", tier="gold", customer_id="c2")
    assert not r.command.accepted and "for customer 'c2'" in r.command.reason
    assert drv.track.to_dict() == before.to_dict() | {"at": drv.track.to_dict()["at"]}
    assert drv.track.override is None and drv.changes() == [(None, "silver", "event", d("2024-01-01"))]
    # every refusal is an audit record naming the command
    audit = [r.command for r in drv.results if r.command is not None]
    assert [(a.accepted, a.command, a.actor) for a in audit] == [(False, "set_override", "alice")] * 4


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # the kind is never implied (open-loyalty #74: a manual level silently acted as a floor)
        ('{"type": "set_override", "command_id": "1", "customer_id": "c", "policy": "p", "tier": "gold", '
         '"actor": "a", "reason": "r"}', "set_override.kind: Field required"),
        ('{"type": "set_override", "command_id": "1", "customer_id": "c", "policy": "p", "kind": "max", '
         '"tier": "gold", "actor": "a", "reason": "r"}',
         "set_override.kind: Input should be 'pin', 'floor' or 'ceiling'"),
        ('{"type": "set_override", "command_id": "1", "customer_id": "c", "policy": "p", "kind": "pin", '
         '"tier": "gold", "actor": "a", "reason": "r", "expires_at": "2024-01-01T00:00:00"}',
         "set_override.expires_at: Input should have timezone info"),
        ('{"type": "remove_override", "command_id": "1", "customer_id": "c", "policy": "p", "actor": "a", '
         '"reason": ""}', "remove_override.reason: String should have at least 1 character"),
        ('{"type": "approve_proposal", "command_id": "1", "customer_id": "c", "policy": "p", "actor": "a", '
         '"reason": "r", "proposal_id": "x", "extra": 1}', "approve_proposal.extra: Extra inputs are not permitted"),
        ('{"type": "delete_customer"}', "$: Input tag 'delete_customer' found using 'type' does not match"),
        ("not json", "$: Invalid JSON"),
    ],
)
def test_malformed_commands_are_refused_at_parse(raw: str, reason: str) -> None:
    with pytest.raises(InvalidCommand) as info:
        parse_command(raw)
    assert info.value.reason.startswith(reason)


def test_a_valid_command_parses() -> None:
    cmd = parse_command('{"type": "set_override", "command_id": "1", "customer_id": "c", "policy": "demo", '
                        '"kind": "ceiling", "tier": "silver", "actor": "a", "reason": "r", '
                        '"expires_at": "2024-05-01T00:00:00+08:00"}')
    assert cmd.type == "set_override" and cmd.kind == "ceiling"
    assert cmd.expires_at == d("2024-04-30T16:00")
