"""Continuous ingestion: sustained throughput and freshness, in one run.

    flock /tmp/sentinel-ray.lock .venv/bin/python bench/stream_freshness.py [--days 6] [--rate 5000] [--seconds 20]

Signals are on (`stream_signals`, the default): the prices consumer computes features,
risk and alerts of every batch before acknowledging it, the posts consumer refreshes the
features its posts fall in.

(1) firehose: the replay poller (firehose mode) -> Redis Streams -> consumers -> lake +
    warehouse, on Ray actors; events/s while the pipeline is busy (10%..90% of the run).
(2) plain: one process, no Ray, no Redis: the same replay chunks through the same
    pipeline functions into a lake and an embedded warehouse of its own (no signals).
(3) freshness: entries published at a fixed rate (--rate events/s) into the stream;
    seconds from entering the stream to being stored (queryable), p50 and p99.
(4) alerts: after a backfill of the 30 days before (the features' baselines), --alert-days
    trading days of replay published in time order at --rate events/s; for every alert,
    seconds from the entry holding its opening bar entering the stream to the alert row
    being readable in the warehouse (polled every 50 ms), p50 and p99.

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

from sentinel_ray.config import Settings

FIRST_DAY = dt.date(2026, 11, 2)


def _settings(root: Path, days: int, **extra: object) -> Settings:
    return Settings(data_dir=root, replay_speed=0.0, replay_chunk_rows=20_000, replay_live_start=FIRST_DAY,
                    replay_live_end=FIRST_DAY + dt.timedelta(days=days - 1), sources_enabled=["replay"],
                    batch_max_rows=60_000, batch_max_wait_s=0.1, stream_max_entries=50, **extra)


def _stored_rows(settings: Settings) -> int:
    from sentinel_ray.storage.warehouse import connect_warehouse

    wh = connect_warehouse(settings)
    return sum(wh.query_rows(f"SELECT count() AS n FROM {{db}}.{name}")[0]["n"] for name in ("prices", "posts"))


def firehose(settings: Settings, total_events: int) -> float:
    """Events/s through poller -> stream -> consumers -> storage, over the middle 80% of the run."""
    from sentinel_ray.ingest.supervisor import Supervisor

    sup = Supervisor(settings, prefix="bench")
    began = time.perf_counter()
    sup.start()
    marks: list[tuple[float, int]] = []
    deadline = began + 600
    while time.perf_counter() < deadline:
        in_stream = sum(c.get("rows_in", 0) for c in sup.status()["consumers"].values())
        marks.append((time.perf_counter(), in_stream))
        if in_stream >= total_events:
            break
        time.sleep(0.25)
    sup.stop()
    lo = next(m for m in marks if m[1] >= 0.1 * total_events)
    hi = next(m for m in marks if m[1] >= 0.9 * total_events)
    return (hi[1] - lo[1]) / max(1e-9, hi[0] - lo[0])


def plain(root: Path, days: int, total_events: int) -> float:
    """The same work in one process: replay chunks -> pipeline -> lake + embedded warehouse."""
    from sentinel_ray.pipeline.store import process_and_store
    from sentinel_ray.schemas import DATA_DATASETS
    from sentinel_ray.sources import make_stream_source
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import ClickHouseWarehouse

    settings = _settings(root, days)
    source = make_stream_source("replay", settings)
    lake = Lake(str(root / "lake"))
    warehouse = ClickHouseWarehouse(f"chdb://{root / 'warehouse'}", "bench")
    warehouse.ensure_schema()
    cursor, done, n = None, 0, 0
    began = time.perf_counter()
    while done < total_events:
        result = asyncio.run(source.fetch(cursor))
        cursor = result.next_cursor
        for name, table in result.records.items():
            now = dt.datetime.now(dt.timezone.utc)
            r = process_and_store(table, DATA_DATASETS[name], lake=lake, warehouse=warehouse, day=now.date(),
                                  batch_key=f"plain-{n}", now=now, run_id=f"plain-{n}", ingested_at=None,
                                  pipeline="stream")
            done += r.rows_in
            n += 1
    return done / (time.perf_counter() - began)


def freshness(settings: Settings, rate: float, seconds: float) -> tuple[float, float]:
    """Publish replay rows at `rate` events/s in 10 entries/s; consumers record entry -> stored latency."""
    import pyarrow as pa

    from sentinel_ray.ingest.supervisor import Supervisor, stream_store
    from sentinel_ray.sources.replay import ReplaySource

    day = ReplaySource.from_settings(settings).generate_day(FIRST_DAY, run_id="", ingested_at=dt.datetime.now(
        dt.timezone.utc)).records["prices"]
    sup = Supervisor(settings.model_copy(update={"sources_enabled": []}), prefix="fresh")
    sup.start()
    sup.wait_ready()  # measure the pipeline, not the actors' start-up
    store = stream_store(settings, "fresh")
    per_entry = max(1, int(rate / 10))
    offset = 0
    began = time.perf_counter()
    sent = 0
    while time.perf_counter() - began < seconds:
        chunk = day.slice(offset % (day.num_rows - per_entry), per_entry)
        stamp = pa.array([dt.datetime.now(dt.timezone.utc)] * chunk.num_rows, pa.timestamp("ms", tz="UTC"))
        chunk = chunk.set_column(chunk.schema.get_field_index("ingested_at"), "ingested_at", stamp)
        store.publish("bench", {"prices": chunk}, update_cursor=False)
        offset += per_entry
        sent += 1
        time.sleep(max(0.0, began + sent * 0.1 - time.perf_counter()))
    time.sleep(2)  # let the last entries land
    status = sup.status()["consumers"]["prices-0"]
    sup.stop()
    return status["freshness_p50_s"], status["freshness_p99_s"]


ALERT_DAY = dt.date(2026, 11, 16)  # a Monday: the replay's pumps of 16-20 November follow


def alert_latency(settings: Settings, rate: float, days: int) -> dict[str, float | int]:
    """Entry -> alert row seconds for the alerts of `days` trading days streamed at `rate` events/s."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from sentinel_ray.ingest.backfill import run_backfill
    from sentinel_ray.ingest.supervisor import Supervisor, stream_store
    from sentinel_ray.market import is_trading_day
    from sentinel_ray.sources.replay import ReplaySource
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings = settings.model_copy(update={"sources_enabled": [], "batch_max_wait_s": 0.1})
    run_backfill(settings, "replay", ALERT_DAY - dt.timedelta(days=30), ALERT_DAY - dt.timedelta(days=1))
    source = ReplaySource.from_settings(settings)
    stream_days = [d for d in (ALERT_DAY + dt.timedelta(days=i) for i in range(3 * days)) if is_trading_day(d)][:days]
    now = dt.datetime.now(dt.timezone.utc)
    fetched = [source.generate_day(d, run_id="", ingested_at=now).records for d in stream_days]
    tables = {name: pa.concat_tables([f[name] for f in fetched]) for name in ("prices", "posts", "filings")}
    # every row in time order, as a live feed would send them
    order_ts = np.concatenate([pc.cast(tables[n].column("ts"), pa.int64()).to_numpy(zero_copy_only=False)
                               for n in tables])
    kinds = np.concatenate([np.full(tables[n].num_rows, i) for i, n in enumerate(tables)])
    rows = np.concatenate([np.arange(tables[n].num_rows) for n in tables])
    order = np.argsort(order_ts, kind="stable")
    sup = Supervisor(settings, prefix="alerts")
    sup.start()
    sup.wait_ready()
    store = stream_store(settings, "alerts")
    wh = connect_warehouse(settings)
    per_entry = max(1, int(rate / 10))
    sent_at: dict[tuple[str, int], float] = {}  # (ticker, bar ms) -> when its entry entered the stream
    seen: dict[str, float] = {}
    began = time.perf_counter()
    last_poll = 0.0
    for n, lo in enumerate(range(0, len(order), per_entry)):
        part = order[lo:lo + per_entry]
        entry = {}
        for i, name in enumerate(tables):
            idx = rows[part[kinds[part] == i]]
            if len(idx):
                entry[name] = tables[name].take(pa.array(idx))
        store.publish("bench", entry, update_cursor=False)
        stamp = time.time()
        if "prices" in entry:
            p = entry["prices"]
            for t, ms in zip(p.column("ticker").to_pylist(), pc.cast(p.column("ts"), pa.int64()).to_pylist()):
                sent_at.setdefault((t, ms), stamp)
        if time.perf_counter() - last_poll >= 0.05:
            _poll_alerts(wh, seen)
            last_poll = time.perf_counter()
        time.sleep(max(0.0, began + (n + 1) * 0.1 - time.perf_counter()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store.lag("prices").length:
        _poll_alerts(wh, seen)
        time.sleep(0.05)
    _poll_alerts(wh, seen)
    consumer = sup.status()["consumers"]["prices-0"]
    sup.stop()
    opened = {r["alert_id"]: r for r in wh.query_rows(
        "SELECT alert_id, ticker, opened_at FROM {db}.alerts FINAL WHERE detected_by = 'stream'")}
    waits = []
    for alert_id, first_seen in seen.items():
        row = opened.get(alert_id)
        if row is None:
            continue
        ms = int(row["opened_at"].replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        if (row["ticker"], ms) in sent_at:
            waits.append(first_seen - sent_at[(row["ticker"], ms)])
    waits.sort()
    q = (lambda f: round(waits[min(len(waits) - 1, int(f * len(waits)))], 3) if waits else None)
    return {"alerts": len(waits), "events": len(order), "alert_p50_s": q(0.5), "alert_p99_s": q(0.99),
            "alert_max_s": waits[-1] if waits else None, "freshness_p99_s": consumer["freshness_p99_s"],
            "days": len(stream_days)}


def _poll_alerts(wh, seen: dict[str, float]) -> None:
    for r in wh.query_rows("SELECT alert_id FROM {db}.alerts WHERE detected_by = 'stream'"):
        seen.setdefault(r["alert_id"], time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=6, help="replay days for the throughput runs")
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s for the freshness run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the freshness run")
    parser.add_argument("--alert-days", type=int, default=5, help="trading days streamed for the alert latency run")
    parser.add_argument("--only", help="sections to run, e.g. 14 (default: all)")
    args = parser.parse_args()

    import ray

    from sentinel_ray.ingest.backfill import tune_ray_data
    from sentinel_ray.runtime import RAY_NAMESPACE
    from sentinel_ray.sources.replay import ReplaySource
    from sentinel_ray.storage.redis import EmbeddedRedis

    sections = set(args.only or "1234")
    report: dict[str, object] = {"rate_for_freshness": args.rate}
    work = Path(tempfile.mkdtemp(prefix="sentinel-stream-bench-"))
    try:
        settings = _settings(work / "ray", args.days)
        expected = ReplaySource.from_settings(settings).expected_counts(
            FIRST_DAY, FIRST_DAY + dt.timedelta(days=args.days - 1))
        total = sum(e["rows"] for e in expected.values())
        print(f"{total:,} replay events over {args.days} days", flush=True)

        if "2" in sections:
            report["plain_events_s"] = round(plain(work / "plain", args.days, total))
            print(f"(2) plain process, no Ray/Redis : {report['plain_events_s']:>10,} events/s", flush=True)

        redis = EmbeddedRedis(settings.embedded_redis_dir).start()
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 namespace=RAY_NAMESPACE)
        tune_ray_data(2)
        try:
            if "1" in sections:
                report["events_s"] = round(firehose(settings, total))
                print(f"(1) firehose through the stream : {report['events_s']:>10,} events/s (target >= 20,000)",
                      flush=True)
            if "3" in sections:
                p50, p99 = freshness(settings, args.rate, args.seconds)
                report.update(freshness_p50_s=p50, freshness_p99_s=p99)
                print(f"(3) freshness at {args.rate:,.0f} events/s  : p50 {p50:.3f}s  p99 {p99:.3f}s "
                      f"(target p99 <= 2s)", flush=True)
            if "4" in sections:
                alerts = alert_latency(settings.model_copy(update={"warehouse_database": "alerts"}), args.rate,
                                       args.alert_days)
                report.update(alert_p50_s=alerts["alert_p50_s"], alert_p99_s=alerts["alert_p99_s"],
                              alerts=alerts["alerts"])
                print(f"(4) alerts at {args.rate:,.0f} events/s     : {alerts['alerts']} alerts over "
                      f"{alerts['days']} days, entry -> alert row p50 {alerts['alert_p50_s']}s  p99 "
                      f"{alerts['alert_p99_s']}s (target p99 <= 5s); prices freshness p99 "
                      f"{alerts['freshness_p99_s']}s", flush=True)
        finally:
            ray.shutdown()
            redis.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "events_s" in report and "plain_events_s" in report:
        print(f"stream/plain = {report['events_s'] / report['plain_events_s']:.2f}x")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
