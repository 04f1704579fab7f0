"""Re-run quarantined rows after a rule change.

`replay_quarantine` re-validates quarantined rows with the current rules. Rows that now
pass go to curated and the warehouse; the rest stay quarantined (with today's reason).
Exactly once: each quarantine file is rewritten without the rows that moved, and the
curated file they moved to is named after the quarantine file's content, so a replay
interrupted half-way repeats the same move into the same file, and a second replay finds
nothing left to move. Duplicates are never moved: their original is already curated.

Like every run it is recorded in `pipeline_runs` with the rules version it applied, and the
rows it moves (or keeps) carry its run id, so a lineage trace of a requalified row names the
replay and the rules that let it through; with a `LineageEmitter` it also emits the run's
OpenLineage events (quarantine zone in, the table and its curated files out).
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.monitoring.lineage_events import LineageDataset, LineageEmitter
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.quarantine import NEVER_REPLAYED, quarantine_files
from sentinel_ray.quality.rules import QualityRules, default_rules
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import dataset as dataset_named
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse


@dataclass
class ReplaySummary:
    run_id: str
    dataset: str
    files: int = 0
    examined: int = 0
    requalified: int = 0
    still_quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # of the rows that stay

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def replay_quarantine(lake: Lake, warehouse: Warehouse, dataset: str, *, rule: str | None = None,
                      start: dt.date | None = None, end: dt.date | None = None,
                      rules: QualityRules | None = None,
                      on_stored: Callable[[pa.Table, str], Any] | None = None,
                      lineage: LineageEmitter | None = None) -> ReplaySummary:
    """Re-validate quarantined rows of `dataset` with `rules` (default: the shipped rules);
    `on_stored(valid rows, batch key)` is called after each file's requalified rows are stored."""
    ds = dataset_named(dataset)
    rules = rules or default_rules()
    run = PipelineRun("quarantine_replay", {"dataset": dataset, "rule": rule, "start": start, "end": end,
                                            "rules_version": rules.version})
    run.record(warehouse)
    event = None
    summary = ReplaySummary(run.run_id, dataset)
    try:
        if lineage is not None:
            event = lineage.start(
                run.run_id, job="quarantine_replay", params=run.params,
                inputs=[LineageDataset.lake(f"quarantine/dataset={dataset}")],
                outputs=[LineageDataset.warehouse(dataset),
                         LineageDataset.lake(f"curated/dataset={dataset}", schema=dataset)])
        for path in quarantine_files(lake, dataset, start=start, end=end):
            _replay_file(lake, warehouse, ds, path, rule, summary, rules, on_stored)
            run.rows_in, run.rows_valid, run.rows_quarantined = (summary.examined, summary.requalified,
                                                                 summary.still_quarantined)
            run.heartbeat(warehouse)  # alive, and how far (at most once a minute)
    except BaseException as e:
        run.fail_quietly(warehouse, e)
        if event is not None:
            event.fail(e)
        raise
    run.rows_in, run.rows_valid, run.rows_quarantined = (summary.examined, summary.requalified,
                                                         summary.still_quarantined)
    run.finish(warehouse)
    if event is not None:
        event.complete({dataset: summary.requalified})
    return summary


def _replay_file(lake: Lake, warehouse: Warehouse, ds: Any, path: str, rule: str | None,
                 summary: ReplaySummary, rules: QualityRules,
                 on_stored: Callable[[pa.Table, str], Any] | None) -> None:
    table = lake.read_file(path).cast(ds.quarantine_schema)
    reasons = table.column("reject_reason")
    chosen = pc.invert(pc.is_in(reasons, pa.array(NEVER_REPLAYED)))
    if rule is not None:
        chosen = pc.and_(chosen, pc.equal(reasons, rule))
    candidates, kept = table.filter(chosen), table.filter(pc.invert(chosen))
    if candidates.num_rows == 0:
        return
    # the curated file is named by the quarantine file's bytes (a repeat writes the same file);
    # the rows name the run, which pipeline_runs knows (with its rules version)
    key = f"requalified-{hashlib.sha1(lake.read_bytes(path)).hexdigest()[:16]}"
    result = process_batch(candidates.drop_columns(["reject_reason"]), ds, now=utc_now(), run_id=summary.run_id,
                           ingested_at=None, rules=rules)
    lake.write_curated(ds, result.valid, batch_key=key)
    warehouse.insert(ds.name, result.valid)
    if on_stored is not None:
        on_stored(result.valid, key)
    lake.replace_file(path, pa.concat_tables([kept, result.quarantined.cast(ds.quarantine_schema)]), ds)
    summary.files += 1
    summary.examined += candidates.num_rows
    summary.requalified += result.rows_valid
    summary.still_quarantined += result.rows_quarantined
    for reason, n in result.reason_counts().items():
        summary.reasons[reason] = summary.reasons.get(reason, 0) + n
