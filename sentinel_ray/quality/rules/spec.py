"""One rule from its spec: the kinds by name, validation against the dataset, readable errors."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from sentinel_ray.quality.rules import kinds
from sentinel_ray.quality.rules.base import Rule
from sentinel_ray.quality.rules.price_jump import PriceJumpRule
from sentinel_ray.schemas import Dataset

# Every kind, in the order error messages list them.
RULE_CLASSES: tuple[type[Rule], ...] = (
    kinds.NotNullRule, kinds.TypeRule, kinds.RangeRule, kinds.AllowedRule, kinds.RegexRule, kinds.TextLengthRule,
    kinds.CrossFieldRule, kinds.FreshnessRule, kinds.SessionRule, kinds.UniqueRule, PriceJumpRule,
)
RuleSpec = Annotated[Union[RULE_CLASSES], Field(discriminator="kind")]
_RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(RuleSpec)
KINDS: tuple[str, ...] = tuple(cls.model_fields["kind"].default for cls in RULE_CLASSES)


def build_rule(spec: Mapping[str, Any], ds: Dataset) -> Rule:
    """One rule from its spec, checked against `ds`. Raises ValueError with what is wrong."""
    spec = dict(spec)
    spec.setdefault("dataset", ds.name)
    if spec["dataset"] != ds.name:
        raise ValueError(f"says dataset {spec['dataset']!r} but is listed under {ds.name!r}")
    if "kind" not in spec:
        raise ValueError(f"no `kind` (one of {', '.join(KINDS)})")
    # Named column sets from the schema, so the rules file keeps no second copy of it.
    if spec.get("columns") == "required":
        spec["columns"] = ds.required_columns
    elif spec.get("columns") == "natural_key":
        spec["columns"] = list(ds.natural_key)
    try:
        rule = _RULE_ADAPTER.validate_python(spec)
    except ValidationError as e:
        raise ValueError(_describe(e)) from None
    rule.check(ds)
    return rule


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"][1:])  # loc[0] is the kind (the union's tag)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            parts.append(f"unknown kind {err['input'].get('kind')!r}; known: {', '.join(KINDS)}")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {loc!r}")
        else:
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
