"""The policy engine (pure): load, validate and compile tiering policies, evaluate customers.

Public API::

    load_policy(path) -> CompiledPolicy          # a YAML file; raises PolicyError(file, path, reason)
    load_preset(name) -> CompiledPolicy          # scoring/presets/<name>.yaml
    load_policies(specs) -> list[CompiledPolicy] # preset names or paths; duplicate ids refused
    CompiledPolicy.evaluate(features, population=None) -> Decision
    ScoreHistogram / HistogramPopulation / PopulationView  # population for percentile bands and quotas

Modules: ``catalogue`` (feature names and windows), ``conditions`` (typed condition language),
``intervals`` (ladders), ``scores`` (scorecards, blends, bonuses), ``tiers`` (bands, percentile, rules,
grants, max/min), ``adjustments`` (force, caps, quotas, entitlements), ``compiler``, ``loader``,
``population``. No I/O other than reading policy YAML; no code from a policy file is ever executed.
"""

from scoring.accel import extend_path

__path__ = extend_path(__path__, __name__)  # the compiled build of this package's hot modules first (make native)

from scoring.policy.catalogue import UNBOUNDED_DAYS, FeatureInfo, lookup
from scoring.policy.compiled import CompiledPolicy, Decision
from scoring.policy.errors import PolicyError
from scoring.policy.loader import PRESETS_DIR, load_policies, load_policy, load_preset, parse_policy, preset_names
from scoring.policy.population import HistogramPopulation, PopulationView, ScoreHistogram

__all__ = [
    "PRESETS_DIR",
    "UNBOUNDED_DAYS",
    "CompiledPolicy",
    "Decision",
    "FeatureInfo",
    "HistogramPopulation",
    "PolicyError",
    "PopulationView",
    "ScoreHistogram",
    "load_policies",
    "load_policy",
    "load_preset",
    "lookup",
    "parse_policy",
    "preset_names",
]
