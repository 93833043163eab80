"""Bad policy files are refused before anything runs, with the file, the path inside it and the reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scoring.policy import PolicyError, load_policies, load_policy, load_preset

GOOD = """
id: demo
version: 1
tiers: [gold, silver, bronze]
score:
  scorecard:
    dimensions:
      - name: value
        weight: 60
        indicators:
          - name: spend
            feature: spend_12m
            weight: 60
            ladder:
              - {ge: 0, lt: 1000, points: 2}
              - {ge: 1000, lt: 5000, points: 5}
              - {ge: 5000, points: 10}
      - name: potential
        weight: 40
        indicators:
          - {name: growth, feature: assess.growth_potential, weight: 40, scale: {from: 0, to: 10}}
tier:
  bands:
    bands:
      - {tier: gold, ge: 80}
      - {tier: silver, ge: 50, lt: 80}
    default: bronze
"""


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def refused(tmp_path: Path, text: str) -> PolicyError:
    p = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(p)
    assert info.value.file == str(p)
    return info.value


def test_good_file_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.id == "demo"
    assert policy.tiers == ("gold", "silver", "bronze")
    assert policy.features_used == frozenset({"spend_12m", "assess.growth_potential"})
    assert policy.max_window_days == 365


def test_error_message_format(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("feature: spend_12m", "feature: spend_13m"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].feature"
    assert "unknown feature 'spend_13m'" in err.reason
    assert str(err) == f"{err.file}: {err.path}: {err.reason}"


def test_unknown_feature_in_condition(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
adjust:
  - force: bronze
    when: {all: [{feature: bad_debt, op: "==", value: true}, {feature: complaints_30d, op: ">", value: 3}]}
"""
    )
    err = refused(tmp_path, text)
    assert err.path == "adjust[0].when.all[1].feature"
    assert "unknown feature 'complaints_30d'" in err.reason


def test_dimension_weights_must_sum_to_100(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("weight: 40\n        indicators", "weight: 35\n        indicators"))
    assert err.path == "score.scorecard.dimensions"
    assert err.reason == "dimension weights sum to 95%, expected 100%"


def test_indicator_weights_must_sum_to_dimension_weight(tmp_path: Path) -> None:
    err = refused(
        tmp_path,
        GOOD.replace("feature: spend_12m\n            weight: 60", "feature: spend_12m\n            weight: 50"),
    )
    assert err.path == "score.scorecard.dimensions[0].indicators"
    assert "sum to 50%, expected 60%" in err.reason


def test_overlapping_ladder_steps(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{ge: 1000, lt: 5000, points: 5}", "{ge: 999, lt: 5000, points: 5}"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[1]"
    assert "overlaps" in err.reason


def test_touching_inclusive_bounds_overlap(tmp_path: Path) -> None:
    # [0, 1000] and [1000, 5000) share 1000: refused
    err = refused(tmp_path, GOOD.replace("{ge: 0, lt: 1000, points: 2}", "{ge: 0, le: 1000, points: 2}"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[1]"
    assert "overlaps" in err.reason


def test_unordered_ladder_steps(tmp_path: Path) -> None:
    text = GOOD.replace(
        "              - {ge: 0, lt: 1000, points: 2}\n              - {ge: 1000, lt: 5000, points: 5}\n",
        "              - {ge: 1000, lt: 5000, points: 5}\n              - {ge: 0, lt: 1000, points: 2}\n",
    )
    err = refused(tmp_path, text)
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[1]"
    assert "not in ascending order" in err.reason


def test_points_above_max_points(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{ge: 5000, points: 10}", "{ge: 5000, points: 12}"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[2].points"
    assert err.reason == "points 12 exceed max_points 10"


def test_unordered_bands(tmp_path: Path) -> None:
    text = GOOD.replace(
        "      - {tier: gold, ge: 80}\n      - {tier: silver, ge: 50, lt: 80}\n",
        "      - {tier: silver, ge: 50, lt: 80}\n      - {tier: gold, ge: 80}\n",
    )
    err = refused(tmp_path, text)
    assert err.path == "tier.bands.bands[1]"
    assert "descending" in err.reason


def test_overlapping_bands(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{tier: silver, ge: 50, lt: 80}", "{tier: silver, ge: 50, le: 80}"))
    assert err.path == "tier.bands.bands[1]"
    assert "overlaps" in err.reason


def test_band_tiers_out_of_tier_order(tmp_path: Path) -> None:
    text = GOOD.replace("{tier: gold, ge: 80}", "{tier: silver, ge: 80}").replace(
        "{tier: silver, ge: 50, lt: 80}", "{tier: gold, ge: 50, lt: 80}"
    )
    err = refused(tmp_path, text)
    assert err.path == "tier.bands.bands[1].tier"
    assert "highest to lowest" in err.reason


def test_unknown_tier_in_band(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{tier: gold, ge: 80}", "{tier: platinum, ge: 80}"))
    assert err.path == "tier.bands.bands[0].tier"
    assert err.reason.startswith("unknown tier 'platinum'")


def test_unknown_tier_in_rule(tmp_path: Path) -> None:
    text = """
    id: r
    version: 1
    tiers: [A, B]
    tier:
      rules:
        - {tier: A, when: {feature: orders_lifetime, op: ">", value: 5}}
        - {tier: Z}
    """
    err = refused(tmp_path, text)
    assert err.path == "tier.rules[1].tier"
    assert "unknown tier 'Z'" in err.reason


def test_rule_ladder_needs_a_default(tmp_path: Path) -> None:
    text = """
    id: r
    version: 1
    tiers: [A, B]
    tier:
      rules:
        - {tier: A, when: {feature: orders_lifetime, op: ">", value: 5}}
        - {tier: B, when: {feature: orders_lifetime, op: ">", value: 1}}
    """
    err = refused(tmp_path, text)
    assert err.path == "tier.rules[1]"
    assert "last rule must have no 'when'" in err.reason


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("default: bronze", "default: bronze\n    fallback: bronze"))
    assert err.path == "tier.bands.fallback"
    assert err.reason == "unknown key 'fallback'"


def test_lifecycle_section_shape_is_checked(tmp_path: Path) -> None:
    # The lifecycle section exists now (tests/unit/scoring/test_lifecycle_policy.py); its shape is checked.
    err = refused(tmp_path, GOOD + "lifecycle: {downgrade: immediate}\n")
    assert err.path == "lifecycle.downgrade"
    assert "valid dictionary" in err.reason


def test_missing_required_key(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("version: 1\n", ""))
    assert err.path == "version"
    assert err.reason == "required key is missing"


def test_bad_operator(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
adjust:
  - force: bronze
    when: {feature: bad_debt, op: "=~", value: true}
"""
    )
    err = refused(tmp_path, text)
    assert err.path == "adjust[0].when.op"


def test_condition_value_type_checked(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
adjust:
  - force: bronze
    when: {feature: complaints_90d, op: ">", value: "many"}
"""
    )
    err = refused(tmp_path, text)
    assert err.path == "adjust[0].when.value"
    assert "int feature must be compared with a number" in err.reason


def test_ambiguous_condition(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
adjust:
  - force: bronze
    when: {feature: bad_debt, op: "==", value: true, all: [{feature: bad_debt, op: "==", value: true}]}
"""
    )
    err = refused(tmp_path, text)
    assert err.path == "adjust[0].when"
    assert "exactly one of" in err.reason


def test_two_lower_bounds(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{ge: 5000, points: 10}", "{ge: 5000, gt: 5000, points: 10}"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[2]"
    assert "at most one lower bound" in err.reason


def test_empty_interval(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("{ge: 1000, lt: 5000, points: 5}", "{ge: 5000, lt: 1000, points: 5}"))
    assert err.path == "score.scorecard.dimensions[0].indicators[0].ladder[1]"
    assert "empty interval" in err.reason


def test_blend_weights(tmp_path: Path) -> None:
    text = """
    id: b
    version: 1
    tiers: [A, B]
    score:
      blend:
        - {name: h, weight: 50, score: {feature: spend_12m}}
        - {name: f, weight: 40, score: {feature: spend_36m}}
    tier: {bands: {bands: [{tier: A, ge: 80}]}}
    """
    err = refused(tmp_path, text)
    assert err.path == "score.blend"
    assert err.reason == "blend weights sum to 90%, expected 100%"


def test_duplicate_tier(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("tiers: [gold, silver, bronze]", "tiers: [gold, silver, gold]"))
    assert err.path == "tiers[2]"
    assert "duplicate tier" in err.reason


def test_score_reference_without_score(tmp_path: Path) -> None:
    text = """
    id: r
    version: 1
    tiers: [A, B]
    tier:
      rules:
        - {tier: A, when: {score: total, op: ">", value: 5}}
        - {tier: B}
    """
    err = refused(tmp_path, text)
    assert err.path == "tier.rules[0].when.score"


def test_percentile_needs_increasing_tops(tmp_path: Path) -> None:
    text = GOOD.replace(
        """  bands:
    bands:
      - {tier: gold, ge: 80}
      - {tier: silver, ge: 50, lt: 80}
    default: bronze""",
        """  percentile:
    bands:
      - {tier: gold, top_percent: 15}
      - {tier: silver, top_percent: 5}""",
    )
    err = refused(tmp_path, text)
    assert err.path == "tier.percentile.bands[1].top_percent"


def test_invalid_yaml(tmp_path: Path) -> None:
    err = refused(tmp_path, "id: [unclosed\n")
    assert err.path == "$"
    assert err.reason.startswith("not valid YAML")


def test_yaml_is_data_only(tmp_path: Path) -> None:
    err = refused(tmp_path, "!!python/object/apply:os.system ['echo hacked']\n")
    assert err.path == "$"
    assert "not valid YAML" in err.reason


def test_not_a_mapping(tmp_path: Path) -> None:
    err = refused(tmp_path, "- a\n- b\n")
    assert err.path == "$"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.yaml")
    assert "cannot read" in info.value.reason


def test_unknown_preset() -> None:
    with pytest.raises(PolicyError) as info:
        load_preset("platinum_club")
    assert "unknown preset" in info.value.reason
    with pytest.raises(PolicyError):
        load_preset("../five_tier")


def test_load_policies_refuses_duplicate_ids(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("id: demo", "id: sabcd"))
    with pytest.raises(PolicyError) as info:
        load_policies(["sabcd", str(p)])
    assert info.value.path == "id"
    assert "duplicate policy id 'sabcd'" in info.value.reason


def test_load_policies_mixes_presets_and_files(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD)
    policies = load_policies(["five_tier", str(p)])
    assert [x.id for x in policies] == ["five_tier", "demo"]


def test_policy_error_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(PolicyError("f.yaml", "a.b[1]", "why")))
    assert (err.file, err.path, err.reason) == ("f.yaml", "a.b[1]", "why")


def test_yaml_booleans_as_tier_names_are_explained(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("tiers: [gold, silver, bronze]", "tiers: [gold, silver, no]"))
    assert err.path == "tiers[2]"
    assert "quote the name" in err.reason
