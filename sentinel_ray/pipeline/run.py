"""The Ray Data driver for backfills: fan out over date partitions, store each one.

One Ray Data row per UTC day of the range. `map_batches` fetches that day's history
from the source, keeps the raw payloads in the lake, runs the pipeline functions and
writes lake and warehouse (`process_and_store`). Each day's files and rows are keyed by
`<source>-<day>`, so running the same range again replaces instead of adding.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sentinel_ray.config import Settings
from sentinel_ray.monitoring import metrics
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.store import process_and_store
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import FetchResult, utc_now
from sentinel_ray.schemas import DATA_DATASETS
from sentinel_ray.sources import make_history_source
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse, connect_warehouse

MAX_BACKFILL_DAYS = 3660


class BackfillError(ValueError):
    pass


@dataclass
class BackfillSummary:
    run_id: str
    source: str
    start: dt.date
    end: dt.date
    days: int
    seconds: float
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_valid: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total_in(self) -> int:
        return sum(self.rows_in.values())

    @property
    def total_valid(self) -> int:
        return sum(self.rows_valid.values())

    @property
    def total_quarantined(self) -> int:
        return sum(self.rows_quarantined.values())

    def render(self) -> str:
        lines = [f"backfill {self.run_id}: source={self.source} {self.start}..{self.end} ({self.days} days) "
                 f"in {self.seconds:.1f}s"]
        for name in sorted(self.rows_in):
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.get(name, {}).items())) or "none"
            lines.append(f"  {name:<8} rows in {self.rows_in[name]:>9,}  valid {self.rows_valid[name]:>9,}  "
                         f"quarantined {self.rows_quarantined[name]:>7,}  ({reasons})")
        rate = self.total_in / self.seconds if self.seconds else 0.0
        lines.append(f"  total    rows in {self.total_in:>9,}  valid {self.total_valid:>9,}  "
                     f"quarantined {self.total_quarantined:>7,}  {rate:,.0f} rows/s")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "start": str(self.start), "end": str(self.end),
                "days": self.days, "seconds": round(self.seconds, 3), "rows_in": self.rows_in,
                "rows_valid": self.rows_valid, "rows_quarantined": self.rows_quarantined, "reasons": self.reasons}


def tune_ray_data() -> None:
    """Let map tasks use every CPU from the start.

    Ray Data reserves part of the cluster per operator and ramps concurrency up only as
    task outputs are measured; on a 2-core machine with a single map operator that kept
    one task running at a time (measured in bench/pipeline_throughput.py: 1.5 -> 2.2M rows/s).
    """
    import ray

    ray.data.DataContext.get_current().op_resource_reservation_enabled = False


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise BackfillError(f"end {end} is before start {start}")
    days = (end - start).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise BackfillError(f"{days} days is more than one backfill takes ({MAX_BACKFILL_DAYS}); split the range")
    return [start + dt.timedelta(days=i) for i in range(days)]


def backfill_days(batch: dict[str, np.ndarray], *, settings: Settings, source_name: str, run_id: str,
                  now: dt.datetime) -> dict[str, list[Any]]:
    """map_batches body: one or more days in, one summary row per (day, dataset) out."""
    source = make_history_source(source_name, settings)
    lake = Lake(settings.resolved_lake_uri)
    warehouse = connect_warehouse(settings)
    rules = rules_for(settings)
    out: dict[str, list[Any]] = {"day": [], "dataset": [], "rows_in": [], "rows_valid": [],
                                 "rows_quarantined": [], "reasons": []}
    for day_text in batch["day"]:
        day = dt.date.fromisoformat(str(day_text))
        ingested_at = utc_now()
        fetched = asyncio.run(_fetch_day(source, day, run_id, ingested_at))
        batch_key = f"{source_name}-{day.isoformat()}"
        for seq, payload in enumerate(fetched.raw):
            lake.write_raw(payload, day=day, batch_key=batch_key, seq=seq)
        for name, ds in DATA_DATASETS.items():
            table = fetched.records.get(name)
            if table is None:
                continue
            began = time.perf_counter()
            result = process_and_store(table, ds, lake=lake, warehouse=warehouse, day=day, batch_key=batch_key,
                                       now=now, run_id=run_id, ingested_at=ingested_at, pipeline="backfill",
                                       rules=rules)
            metrics.record_batch("backfill", name, source_name, result.rows_in, result.rows_valid,
                                 result.rows_quarantined, time.perf_counter() - began)
            out["day"].append(day.isoformat())
            out["dataset"].append(name)
            out["rows_in"].append(result.rows_in)
            out["rows_valid"].append(result.rows_valid)
            out["rows_quarantined"].append(result.rows_quarantined)
            out["reasons"].append(json.dumps(result.reason_counts()))
    return out


async def _fetch_day(source: HistorySource, day: dt.date, run_id: str, ingested_at: dt.datetime) -> FetchResult:
    # one event loop per day: close the source's connections inside the loop that opened them
    try:
        return await source.fetch_history(day, run_id=run_id, ingested_at=ingested_at)
    finally:
        await source.close()


def run_backfill(settings: Settings, source_name: str, start: dt.date, end: dt.date) -> BackfillSummary:
    """Backfill [start, end] from a source. Ray must be initialised (see runtime.init_ray)."""
    import ray

    days = date_range(start, end)
    make_history_source(source_name, settings)  # fail fast on an unknown source or bad rules, before any work
    rules_for(settings)
    warehouse = connect_warehouse(settings)
    warehouse.ensure_schema()
    run = PipelineRun("backfill", {"source": source_name, "start": str(start), "end": str(end)})
    run.record(warehouse)
    tune_ray_data()
    began = time.perf_counter()
    try:
        rows = (
            ray.data.from_items([{"day": d.isoformat()} for d in days], override_num_blocks=len(days))
            .map_batches(backfill_days, batch_size=1, batch_format="numpy", fn_kwargs={
                "settings": settings, "source_name": source_name, "run_id": run.run_id, "now": utc_now()})
            .take_all()
        )
    except BaseException as e:
        run.fail_quietly(warehouse, e)
        raise
    _merge_replaced_rows(warehouse, days)
    summary = _summarise(rows, run.run_id, source_name, start, end, len(days), time.perf_counter() - began)
    run.rows_in, run.rows_valid, run.rows_quarantined = (
        summary.total_in, summary.total_valid, summary.total_quarantined)
    run.finish(warehouse)
    return summary


def _merge_replaced_rows(warehouse: Warehouse, days: list[dt.date]) -> None:
    """Merge the months a backfill touched, so rows it replaced are gone on disk too, not only
    under FINAL. Month ids are computed here, never taken from input."""
    for month in sorted({d.year * 100 + d.month for d in days}):
        for name in DATA_DATASETS:
            warehouse.command(f"OPTIMIZE TABLE {{db}}.`{name}` PARTITION ID '{month:d}' FINAL")


def _summarise(rows: list[dict[str, Any]], run_id: str, source: str, start: dt.date, end: dt.date,
               days: int, seconds: float) -> BackfillSummary:
    summary = BackfillSummary(run_id, source, start, end, days, seconds)
    reasons: dict[str, Counter[str]] = {}
    for row in rows:
        name = str(row["dataset"])
        summary.rows_in[name] = summary.rows_in.get(name, 0) + int(row["rows_in"])
        summary.rows_valid[name] = summary.rows_valid.get(name, 0) + int(row["rows_valid"])
        summary.rows_quarantined[name] = summary.rows_quarantined.get(name, 0) + int(row["rows_quarantined"])
        reasons.setdefault(name, Counter()).update(json.loads(str(row["reasons"])))
    summary.reasons = {k: dict(v) for k, v in reasons.items()}
    return summary
