"""Continuous ingestion: sustained throughput and freshness, in one run.

    .venv/bin/python bench/stream_freshness.py [--days 6] [--rate 5000] [--seconds 20]

(1) firehose: the replay poller (firehose mode) -> Redis Streams -> consumers -> lake +
    warehouse, on Ray actors; events/s while the pipeline is busy (10%..90% of the run).
(2) plain: one process, no Ray, no Redis: the same replay chunks through the same
    pipeline functions into a lake and an embedded warehouse of its own.
(3) freshness: entries published at a fixed rate (--rate events/s) into the stream;
    seconds from entering the stream to being stored (queryable), p50 and p99.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=6, help="replay days for the throughput runs")
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s for the freshness run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the freshness run")
    args = parser.parse_args()

    import ray

    from sentinel_ray.sources.replay import ReplaySource
    from sentinel_ray.storage.redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="sentinel-stream-bench-"))
    try:
        settings = _settings(work / "ray", args.days)
        expected = ReplaySource.from_settings(settings).expected_counts(
            FIRST_DAY, FIRST_DAY + dt.timedelta(days=args.days - 1))
        total = sum(e["rows"] for e in expected.values())
        print(f"{total:,} replay events over {args.days} days", flush=True)

        plain_rate = plain(work / "plain", args.days, total)
        print(f"(2) plain process, no Ray/Redis : {plain_rate:>10,.0f} events/s", flush=True)

        redis = EmbeddedRedis(settings.embedded_redis_dir).start()
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            events_s = firehose(settings, total)
            print(f"(1) firehose through the stream : {events_s:>10,.0f} events/s (target >= 20,000)", flush=True)
            p50, p99 = freshness(settings, args.rate, args.seconds)
            print(f"(3) freshness at {args.rate:,.0f} events/s  : p50 {p50:.3f}s  p99 {p99:.3f}s (target p99 <= 2s)",
                  flush=True)
        finally:
            ray.shutdown()
            redis.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"stream/plain = {events_s / plain_rate:.2f}x")
    print(json.dumps({"events_s": round(events_s), "plain_events_s": round(plain_rate), "freshness_p50_s": p50,
                      "freshness_p99_s": p99, "rate_for_freshness": args.rate}))


if __name__ == "__main__":
    main()
