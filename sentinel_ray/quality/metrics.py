"""Quality measurements of one processed batch, per source, as rows of `quality_metrics`.

Long format (one row per metric and column) so new metrics need no schema change and
trends are one GROUP BY away. Everything is computed from the batch's two outputs
(valid + quarantined = every row that came in), vectorised.

    rows_in, rows_valid, rows_quarantined, rows_warned   counts
    rejected[reason], warned[rule]                       counts per reason / warn rule
    completeness[column]   share of rows where the column has a value
    validity               rows_valid / rows_in
    uniqueness             1 - duplicates / rows_in
    consistency            1 - cross-field failures (OHLC) / rows_in   (prices)
    freshness_s            measured_at - newest valid event time
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.records import BatchResult, Reason, utc_now
from sentinel_ray.schemas import QUALITY_METRICS, Dataset

CONSISTENCY_REASONS = (Reason.OHLC_INCONSISTENT.value,)


def batch_metrics(result: BatchResult, ds: Dataset, *, run_id: str, batch: str, pipeline: str,
                  measured_at: dt.datetime) -> pa.Table:
    rows: list[dict[str, Any]] = []
    sources = _sources(result)
    for source in sources:
        valid = _of_source(result.valid, source)
        quarantined = _of_source(result.quarantined, source)
        # warn counts are per batch; they are attributed to the batch's single source, and
        # only reported per source when the batch had one (the common case)
        warned, rows_warned = (dict(result.warned), result.rows_warned) if len(sources) == 1 else ({}, 0)
        rows.extend({**m, "source": source} for m in _measure(ds, valid, quarantined, warned, rows_warned))
    for row in rows:
        row.update(run_id=run_id, batch=batch, pipeline=pipeline, dataset=ds.name, measured_at=measured_at)
    return pa.Table.from_pylist(rows, schema=QUALITY_METRICS.arrow_schema)


def _sources(result: BatchResult) -> list[str]:
    # per table and dictionary-encoded: a batch has one or two sources, hashing each
    # row's string again for a chunked union cost more than the rest of the metrics
    found: set[str] = set()
    for table in (result.valid, result.quarantined):
        if table.num_rows:
            found.update(pc.fill_null(table.column("source").dictionary_encode().combine_chunks().dictionary,
                                      "unknown").to_pylist())
            if table.column("source").null_count:
                found.add("unknown")
    return sorted(found)


def _of_source(table: pa.Table, source: str) -> pa.Table:
    sources = pc.fill_null(table.column("source"), "unknown")
    if table.num_rows == 0 or pc.all(pc.equal(sources, source)).as_py():
        return table
    return table.filter(pc.equal(sources, source))


def _measure(ds: Dataset, valid: pa.Table, quarantined: pa.Table, warned: dict[str, int],
             rows_warned: int) -> list[dict[str, Any]]:
    rows_valid, rows_quarantined = valid.num_rows, quarantined.num_rows
    rows_in = rows_valid + rows_quarantined
    reasons = _reason_counts(quarantined)
    out: list[dict[str, Any]] = [
        {"metric": "rows_in", "column": "", "value": rows_in},
        {"metric": "rows_valid", "column": "", "value": rows_valid},
        {"metric": "rows_quarantined", "column": "", "value": rows_quarantined},
        {"metric": "rows_warned", "column": "", "value": rows_warned},
    ]
    out += [{"metric": "rejected", "column": reason, "value": n} for reason, n in sorted(reasons.items())]
    out += [{"metric": "warned", "column": rule, "value": n} for rule, n in sorted(warned.items())]
    if rows_in == 0:
        return out
    for name in ds.column_names:
        if name in ("run_id", "ingested_at"):  # stamped by the platform, always present
            continue
        present = _present(valid, name) + _present(quarantined, name)
        out.append({"metric": "completeness", "column": name, "value": present / rows_in})
    out.append({"metric": "validity", "column": "", "value": rows_valid / rows_in})
    out.append({"metric": "uniqueness", "column": "",
                "value": 1 - reasons.get(Reason.DUPLICATE.value, 0) / rows_in})
    if ds.name == "prices":
        inconsistent = sum(reasons.get(r, 0) for r in CONSISTENCY_REASONS)
        out.append({"metric": "consistency", "column": "", "value": 1 - inconsistent / rows_in})
    if rows_valid:
        newest = pc.max(valid.column(ds.time_column)).as_py()
        if newest is not None:
            age = (utc_now() - newest).total_seconds()
            out.append({"metric": "freshness_s", "column": "", "value": max(0.0, age)})
    return out


def _present(table: pa.Table, name: str) -> int:
    if table.num_rows == 0:
        return 0
    col = table.column(name)
    present = table.num_rows - col.null_count
    if pa.types.is_string(col.type):  # an empty string is no value either
        present -= pc.sum(pc.equal(pc.utf8_trim_whitespace(col), "")).as_py() or 0
    return present


def _reason_counts(quarantined: pa.Table) -> dict[str, int]:
    if quarantined.num_rows == 0:
        return {}
    counts = pc.value_counts(quarantined.column("reject_reason")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}
