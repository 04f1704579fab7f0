"""One batch from records to storage: the step both drivers share.

Backfill partitions (Ray Data) and stream micro-batches both call `process_and_store`:
the pipeline functions, then the lake (curated + quarantine), then the warehouse (rows and
the batch's quality metrics). Every
write is keyed by `batch_key`, so storing the same batch again changes nothing.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.metrics import batch_metrics
from sentinel_ray.quality.rules import QualityRules
from sentinel_ray.records import BatchResult
from sentinel_ray.schemas import QUALITY_METRICS, Dataset, dataset
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse


def process_and_store(
    table: pa.Table,
    ds: Dataset,
    *,
    lake: Lake,
    warehouse: Warehouse | InsertBuffer | None,
    day: dt.date,
    batch_key: str,
    now: dt.datetime,
    run_id: str,
    ingested_at: dt.datetime | None,
    pipeline: str,
    rules: QualityRules | None = None,
) -> BatchResult:
    result = process_batch(table, ds, now=now, run_id=run_id, ingested_at=ingested_at, rules=rules)
    lake.write_curated(ds, result.valid, batch_key=batch_key)
    lake.write_quarantine(ds, result.quarantined, day=day, batch_key=batch_key)
    if warehouse is not None:
        warehouse.insert(ds.name, result.valid)
        metrics = batch_metrics(result, ds, run_id=run_id, batch=batch_key, pipeline=pipeline, measured_at=now)
        warehouse.insert(QUALITY_METRICS.name, metrics)
    return result


class InsertBuffer:
    """Warehouse inserts held back and sent as one insert per table (`flush`).

    Each insert into the embedded warehouse is a round trip to its owner actor and a new
    part to merge; a backfill task stores several days and flushes once (measured: a
    third of a month's backfill went to per-day inserts). Rows are the same either way:
    the tables are ReplacingMergeTree, so when a flush is retried nothing is doubled.
    """

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._tables: dict[str, list[pa.Table]] = {}

    def insert(self, dataset_name: str, table: pa.Table) -> int:
        if table.num_rows:
            self._tables.setdefault(dataset_name, []).append(table.select(dataset(dataset_name).column_names))
        return table.num_rows

    def flush(self) -> dict[str, int]:
        """Insert everything held, one call per table; returns rows per table."""
        tables, self._tables = self._tables, {}
        inserted: dict[str, Any] = {}
        for name, parts in tables.items():
            schema = dataset(name).arrow_schema
            inserted[name] = self.warehouse.insert(name, pa.concat_tables([t.cast(schema) for t in parts]))
        return inserted
