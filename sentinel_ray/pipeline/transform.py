"""The one batch transform both drivers call (Ray Data backfills and stream micro-batches).

conform -> normalise -> enrich (tickers found in posts' text) -> validate (the quality rules
engine) -> split into valid rows and quarantined rows. Bad data never raises: it ends up in
`quarantined` with a reason. Rows flagged only by `warn` rules stay valid and are counted
in `warned`.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray import reference
from sentinel_ray.pipeline.clean import conform, normalise
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.quality.rules import Context, Evaluation, QualityRules, default_rules
from sentinel_ray.records import REJECT_REASON, BatchResult
from sentinel_ray.schemas import TIMESTAMP_TYPE, Dataset


def process_batch(
    table: pa.Table,
    ds: Dataset,
    *,
    now: datetime,
    run_id: str | None = None,
    ingested_at: datetime | None = None,
    known_tickers: pa.Array | None = None,
    rules: QualityRules | None = None,
) -> BatchResult:
    """Validate and clean one batch of `ds` rows.

    `run_id` / `ingested_at`, when given, overwrite those columns: they record this run's
    lineage, whatever the input said. `source` is kept from the input. `rules` are the
    quality rules to apply (`quality.rules.rules_for(settings)`); default: the shipped ones.
    """
    if known_tickers is None:
        known_tickers = reference.known_tickers()
    conformed, bad_type = conform(table, ds)
    conformed = enrich(normalise(conformed, ds), ds)  # before validation: rules see the derived columns
    conformed = _stamp_lineage(conformed, run_id, ingested_at)
    ctx = Context(now=now, known_tickers=known_tickers, bad_type=bad_type)
    evaluation = (rules or default_rules()).for_dataset(ds).evaluate(conformed, ctx)
    return _split(conformed, evaluation, ds)


def _stamp_lineage(table: pa.Table, run_id: str | None, ingested_at: datetime | None) -> pa.Table:
    n = table.num_rows
    if run_id is not None:
        table = _replace(table, "run_id", pa.repeat(pa.scalar(run_id, pa.string()), n))
    if ingested_at is not None:
        if ingested_at.tzinfo is None:
            ingested_at = ingested_at.replace(tzinfo=timezone.utc)
        table = _replace(table, "ingested_at", pa.repeat(pa.scalar(ingested_at, TIMESTAMP_TYPE), n))
    return table


def _replace(table: pa.Table, name: str, col: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), col)


def _split(table: pa.Table, evaluation: Evaluation, ds: Dataset) -> BatchResult:
    reasons = evaluation.reject_reason
    warned = {"warned": evaluation.warn_counts, "rows_warned": evaluation.rows_warned}
    if reasons.null_count == len(reasons):  # all valid: no filtering copies at all
        return BatchResult(table.cast(ds.arrow_schema), ds.quarantine_schema.empty_table(), **warned)
    rejected = pc.is_valid(reasons)
    valid = table.filter(pc.invert(rejected))
    quarantined = table.filter(rejected).append_column(REJECT_REASON, reasons.filter(rejected))
    return BatchResult(valid.cast(ds.arrow_schema), quarantined.cast(ds.quarantine_schema), **warned)
