"""Row validation: why (if at all) each row of a conformed batch is rejected.

The rules themselves are declared in `quality/default_rules.yaml` (plus an optional
override file) and evaluated by `sentinel_ray.quality.rules`; this is the pipeline's
entry point to them for callers that only want the reasons.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from sentinel_ray.quality.rules import Context, QualityRules, default_rules
from sentinel_ray.schemas import Dataset


def reject_reasons(
    table: pa.Table,
    ds: Dataset,
    *,
    now: datetime,
    known_tickers: pa.Array,
    bad_type: pa.Array | None = None,
    future_skew: timedelta | None = None,
    rules: QualityRules | None = None,
) -> pa.Array:
    """Per row, the reason code of the first failing reject rule, or null when the row is valid.

    `table` must be conformed (`clean.conform`) so every column exists with its type.
    `future_skew` overrides the freshness rules' `max_future` (default: the rules' own, 5 min).
    """
    ctx = Context(now=now, known_tickers=known_tickers, bad_type=bad_type, future_skew=future_skew)
    return (rules or default_rules()).for_dataset(ds).evaluate(table, ctx).reject_reason
