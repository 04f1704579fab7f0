"""Declarative data-quality rules per dataset, evaluated vectorised on Arrow.

A rule is a small spec (`name`, `kind`, `severity`, columns, parameters) read from YAML:
the shipped `default_rules.yaml`, then an optional override file (`quality_rules_file`
setting) merged into it by rule name (`loader`). Each kind is a class (`kinds`,
`price_jump`; the base in `base`) whose `mask(table, ctx)` says, for every row at once,
whether the row fails (True) or not; `spec.build_rule` makes one from its spec.

A `RuleSet` (`ruleset`) holds one dataset's rules in order. `RuleSet.evaluate` gives each
row the reason code of the first failing `reject` rule (the row goes to quarantine) and
counts the rows each `warn` rule flags (the row is kept). A rule that needs to know which
rows every other rule rejected (`unique`, `price_jump`) runs after those, on the survivors
only, so a copy of a rejected row is judged on its own merits. The per-table caches they
share (column codes, rows ordered by key) live on the `Context` (`context`).

A null value never fails a value rule: absence is `not_null`'s business, so a row with a
missing price says missing_field and not also non_positive_price.
"""
from sentinel_ray.quality.rules.base import Rule
from sentinel_ray.quality.rules.context import Context
from sentinel_ray.quality.rules.kinds import (
    AllowedRule,
    CrossFieldRule,
    FreshnessRule,
    NotNullRule,
    RangeRule,
    RegexRule,
    SessionRule,
    TextLengthRule,
    TypeRule,
    UniqueRule,
)
from sentinel_ray.quality.rules.loader import (
    DEFAULT_RULES_FILE,
    RulesError,
    default_rules,
    default_rules_text,
    evaluate,
    load_rules,
    rules_for,
)
from sentinel_ray.quality.rules.price_jump import PriceJumpRule
from sentinel_ray.quality.rules.ruleset import Evaluation, QualityRules, RuleSet
from sentinel_ray.quality.rules.spec import KINDS, RuleSpec, build_rule

__all__ = [
    "DEFAULT_RULES_FILE",
    "KINDS",
    "AllowedRule",
    "Context",
    "CrossFieldRule",
    "Evaluation",
    "FreshnessRule",
    "NotNullRule",
    "PriceJumpRule",
    "QualityRules",
    "RangeRule",
    "RegexRule",
    "Rule",
    "RuleSet",
    "RuleSpec",
    "RulesError",
    "SessionRule",
    "TextLengthRule",
    "TypeRule",
    "UniqueRule",
    "build_rule",
    "default_rules",
    "default_rules_text",
    "evaluate",
    "load_rules",
    "rules_for",
]
