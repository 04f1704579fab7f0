"""A backfill's days on the workers: the body of its Ray Data tasks (`store_days`).

Per day: fetch the history from the source, keep the raw payloads in the lake, run the
pipeline functions and write lake and warehouse (`process_and_store`), the block's
warehouse inserts held to go as one insert per table; then one summary row per (day,
dataset) back to the driver, with the day's valid 1m bars for its signals.

Its own module so that a worker imports only what storing days needs: the tasks' function
is pickled by reference, and a worker process imports the module it lives in before the
first block (the driver's signals, lineage and serving code cost a new worker ~0.5 s of
CPU it has no use for). The driver is `ingest/backfill.py`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.config import Settings
from sentinel_ray.ingest.lineage import keep_payloads, stamp_raw_ids
from sentinel_ray.monitoring import metrics
from sentinel_ray.pipeline.store import InsertBuffer, process_and_store
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import FetchResult, utc_now
from sentinel_ray.schemas import DATA_DATASETS, PRICES
from sentinel_ray.sources import make_history_source
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse


def warm_up() -> None:
    """Nothing: a task whose worker, by unpickling it, imports this module (and Ray Data, whose
    import brings the map task code), so the backfill's first blocks find workers ready."""
    import ray.data  # noqa: F401 - the public import; a private module path would break on a Ray upgrade


def store_days(batch: dict[str, np.ndarray], *, settings: Settings, source_name: str, run_id: str,
               now: dt.datetime) -> dict[str, list[Any]]:
    """map_batches body (a Ray Data task): a block of days in, one summary row per (day, dataset) out.
    Tasks, not actors: they run on the job's already started worker processes (an actor
    pool starts new ones, seconds on a small machine); building a worker costs ~50 ms."""
    worker = DayWorker(settings=settings, source_name=source_name, run_id=run_id, now=now)
    try:
        return worker(batch)
    finally:
        worker.loop.close()


class DayWorker:
    """A block of days in, one summary row per (day, dataset) out (`store_days`)."""

    def __init__(self, *, settings: Settings, source_name: str, run_id: str, now: dt.datetime) -> None:
        self.source_name, self.run_id, self.now = source_name, run_id, now
        self.source = make_history_source(source_name, settings)
        self.lake = Lake(settings.resolved_lake_uri)
        self.warehouse = connect_warehouse(settings)
        self.rules = rules_for(settings)
        # One loop for the actor's life. asyncio.run per day would cost more than the
        # day: it swaps the SIGINT handler each time, and restoring it formats the
        # finished task's repr, the day's whole FetchResult (measured: 40 ms a day).
        self.loop = asyncio.new_event_loop()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"day": [], "dataset": [], "rows_in": [], "rows_valid": [],
                                     "rows_quarantined": [], "reasons": [], "months": [], "bars": []}
        buffer = InsertBuffer(self.warehouse)
        for day_text in batch["day"]:
            day = dt.date.fromisoformat(str(day_text))
            ingested_at = utc_now()
            fetched = self.loop.run_until_complete(fetch_day(self.source, day, self.run_id, ingested_at))
            batch_key = f"{self.source_name}-{day.isoformat()}"
            kept = keep_payloads(self.lake, fetched.raw, day=day, batch_key=batch_key)
            records = stamp_raw_ids(fetched.records, kept)  # each row names the raw file it came from
            for name, ds in DATA_DATASETS.items():
                table = records.get(name)
                if table is None:
                    continue
                began = time.perf_counter()
                result = process_and_store(table, ds, lake=self.lake, warehouse=buffer, day=day,
                                           batch_key=batch_key, now=self.now, run_id=self.run_id,
                                           ingested_at=ingested_at, pipeline="backfill", rules=self.rules)
                metrics.record_batch("backfill", name, self.source_name, result.rows_in, result.rows_valid,
                                     result.rows_quarantined, time.perf_counter() - began)
                out["day"].append(day.isoformat())
                out["dataset"].append(name)
                out["rows_in"].append(result.rows_in)
                out["rows_valid"].append(result.rows_valid)
                out["rows_quarantined"].append(result.rows_quarantined)
                out["reasons"].append(json.dumps(result.reason_counts()))
                out["months"].append(json.dumps(months_of(result.valid.column(ds.time_column))))
                out["bars"].append(bars_ipc(result.valid) if name == PRICES.name else b"")
        buffer.flush()  # the block's days count as finished only once their rows are in
        return out


def bars_ipc(prices: pa.Table) -> bytes:
    """A day's valid 1m session bars as Arrow IPC, for the driver's features: the columns
    `session_bars` reads, a few hundred kB a day (the worker has them; reading them back
    from the warehouse would cost the owner actor a FINAL scan per block)."""
    bars = prices.filter(pc.equal(prices.column("interval"), "1m")).select(
        ["ticker", "exchange", "interval", "ts", "open", "high", "low", "close", "volume", "source"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, bars.schema) as writer:
        writer.write_table(bars)
    return sink.getvalue().to_pybytes()


def months_of(ts: pa.ChunkedArray) -> list[int]:
    """yyyymm of every month the timestamps fall in (min..max: a day's rows span one or two)."""
    if len(ts) - ts.null_count == 0:
        return []
    bounds = pc.min_max(ts).as_py()
    first, last = bounds["min"].date(), bounds["max"].date()
    return sorted({d.year * 100 + d.month for d in month_starts(first, last)})


def month_starts(first: dt.date, last: dt.date) -> Iterable[dt.date]:
    month = first.replace(day=1)
    while month <= last:
        yield month
        month = (month + dt.timedelta(days=32)).replace(day=1)


async def fetch_day(source: HistorySource, day: dt.date, run_id: str, ingested_at: dt.datetime) -> FetchResult:
    # close the source's connections inside the loop that opened them
    try:
        return await source.fetch_history(day, run_id=run_id, ingested_at=ingested_at)
    finally:
        await source.close()
