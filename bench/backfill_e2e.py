"""The backfill a user runs, end to end, against each of its parts timed alone on the same rows.

    flock /tmp/sentinel-ray.lock .venv/bin/python bench/backfill_e2e.py [--start 2026-10-01] [--months 1]

(e2e)  `run_backfill` of the replay source over --months months: the code path and settings
       `sentinel-ray backfill` uses (lake raw + curated + quarantine, warehouse, quality
       metrics, pipeline_runs, backfill_days, the final merge), into a fresh database and
       lake, Ray already started (its start is not the backfill's). Peak RSS of the driver,
       the map workers and the warehouse owner are sampled while it runs.
(parts) then in this one process, on the same days and rows, each part alone:
       source generation, raw-zone write, `process_batch`, curated Parquet write, the
       warehouse insert (through the owner actor, in blocks of days as the backfill sends them)
       and the signals (features, risk and alerts of each block: `SignalUpdater.on_prices`,
       their warehouse and lake writes included).

Prints rows/s of the whole and of each part, each part's share of the summed part time,
and ends with one JSON line: e2e_rows_s, parts (rows/s each), rows, days, cores, peak_rss_mb.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.detect.signals import SignalUpdater
from sentinel_ray.ingest.backfill import MAX_DAYS_PER_BLOCK, date_range, run_backfill
from sentinel_ray.pipeline.store import InsertBuffer
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import DATA_DATASETS, PRICES
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse

PARTS = ("generate", "raw_write", "process_batch", "curated_write", "warehouse_insert", "signals")


class PeakRss:
    """Samples the RSS of this process and of the Ray workers by role while it runs."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, interval_s: float) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                try:
                    cmd = " ".join(proc.info["cmdline"] or [])
                    rss = proc.info["memory_info"].rss / 2**20
                except (psutil.Error, TypeError):
                    continue
                role = ("driver" if proc.info["pid"] == me else "map_worker" if "MapBatches" in cmd
                        else "warehouse" if "WarehouseOwner" in cmd else None)
                if role:
                    self.peaks[role] = max(self.peaks.get(role, 0.0), rss)
            self._stop.wait(interval_s)


def month_end(start: dt.date, months: int) -> dt.date:
    y, m = divmod(start.month - 1 + months, 12)
    return dt.date(start.year + y, m + 1, 1) - dt.timedelta(days=1)


def time_parts(settings: Settings, days: list[dt.date], scratch: Path) -> tuple[dict[str, float], int]:
    """Each part alone, in this process, over the same days: seconds per part, rows."""
    source = ReplaySource.from_settings(settings)
    rules = rules_for(settings)
    lake = Lake(str(scratch / "parts-lake"))
    warehouse = connect_warehouse(settings.model_copy(update={"warehouse_database": settings.warehouse_database + "_parts"}))
    warehouse.ensure_schema()
    seconds = dict.fromkeys(PARTS, 0.0)
    rows = 0
    now = utc_now()
    buffer, held = InsertBuffer(warehouse), 0
    signals = SignalUpdater(warehouse, lake, detected_by="backfill")
    block_bars: list[pa.Table] = []

    def clock(part: str, began: float) -> float:
        t = time.perf_counter()
        seconds[part] += t - began
        return t

    for day in days:
        t = time.perf_counter()
        fetched = source.generate_day(day, run_id="bench", ingested_at=now)
        t = clock("generate", t)
        key = f"replay-{day.isoformat()}"
        for seq, payload in enumerate(fetched.raw):
            lake.write_raw(payload, day=day, batch_key=key, seq=seq)
        t = clock("raw_write", t)
        for name, table in fetched.records.items():
            rows += table.num_rows
            ds = DATA_DATASETS[name]
            t = time.perf_counter()
            result = process_batch(table, ds, now=now, run_id="bench", ingested_at=now, rules=rules)
            t = clock("process_batch", t)
            lake.write_curated(ds, result.valid, batch_key=key)
            t = clock("curated_write", t)
            buffer.insert(name, result.valid)
            if name == PRICES.name:
                block_bars.append(result.valid)
        held += 1
        if held == MAX_DAYS_PER_BLOCK or day == days[-1]:
            t = time.perf_counter()
            buffer.flush()
            t = clock("warehouse_insert", t)
            signals.on_prices(pa.concat_tables(block_bars), batch_key=None)  # features, risk, alerts
            clock("signals", t)
            held, block_bars = 0, []
    warehouse.command("DROP DATABASE IF EXISTS {db}")
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 10, 1))
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--no-parts", action="store_true", help="time the backfill only")
    args = parser.parse_args()

    import ray

    from sentinel_ray.runtime import RAY_NAMESPACE

    cores = os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="backfill-e2e-"))
    data_dir = args.data_dir or scratch / "data"
    tag = f"e2e_{int(time.time())}"
    settings = Settings(data_dir=data_dir, warehouse_database=tag, lake_uri=str(scratch / "lake"))
    end = month_end(args.start, args.months)
    days = date_range(args.start, end)
    ray.init(address="local", num_cpus=cores, include_dashboard=False, namespace=RAY_NAMESPACE,
             logging_level="ERROR", log_to_driver=False)
    try:
        connect_warehouse(settings).ensure_schema()  # the owner actor up, as under `up`
        print(f"backfill {args.start}..{end} ({len(days)} days), {cores} cores")
        with PeakRss() as rss:
            began = time.perf_counter()
            summary = run_backfill(settings, "replay", args.start, end,
                                   progress=lambda p: print(p.render(), flush=True))
            e2e_s = time.perf_counter() - began
        rows = summary.total_in
        e2e = rows / e2e_s
        print(f"(e2e) run_backfill          : {e2e:>12,.0f} rows/s  ({rows:,} rows in {e2e_s:.2f}s)")
        report: dict[str, Any] = {"e2e_rows_s": round(e2e), "rows": rows, "days": len(days), "cores": cores,
                                  "e2e_s": round(e2e_s, 3),
                                  "peak_rss_mb": {k: round(v) for k, v in sorted(rss.peaks.items())}}
        print("peak RSS (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rss.peaks.items())))
        if not args.no_parts:
            seconds, part_rows = time_parts(settings, days, scratch)
            assert part_rows == rows, (part_rows, rows)
            total = sum(seconds.values())
            parts = {p: rows / s for p, s in seconds.items()}
            for p in PARTS:
                print(f"  {p:<22}: {parts[p]:>12,.0f} rows/s  {seconds[p]:6.2f}s  {seconds[p] / total:5.1%} of the parts")
            print(f"  parts in sequence     : {rows / total:>12,.0f} rows/s  {total:6.2f}s "
                  f"(one process; e2e/one-process = {e2e * total / rows:.2f}x)")
            slowest = min(parts, key=parts.get)
            print(f"e2e / slowest part ({slowest}) = {e2e / parts[slowest]:.2f}x (target >= 0.3); "
                  f"e2e >= 300k rows/s: {'yes' if e2e >= 300_000 else 'no'}")
            report["parts"] = {p: round(v) for p, v in parts.items()}
            report["part_share"] = {p: round(seconds[p] / total, 3) for p in PARTS}
        connect_warehouse(settings).command("DROP DATABASE IF EXISTS {db}")
        print(json.dumps(report))
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
