from __future__ import annotations

import datetime as dt
import itertools

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.market import ist_midnight_utc
from sentinel_ray.pipeline.features import session_bars, session_features, warmup_start
from sentinel_ray.pipeline.features_store import read_bars, read_posts, state_before
from sentinel_ray.schemas import dataset
from sentinel_ray.storage.warehouse import connect_warehouse

DAY = dt.date(2026, 11, 5)  # a Thursday: a trading day
_prefixes = itertools.count()


@pytest.fixture
def ingest_settings(isolated_settings: Settings, embedded_redis: str) -> Settings:
    return isolated_settings.model_copy(update={
        "batch_max_rows": 8_000, "batch_max_wait_s": 0.2, "claim_idle_s": 1.0, "replay_chunk_rows": 5_000,
        "replay_speed": 0.0, "stream_max_entries": 10_000, "sources_enabled": ["replay"],
        "replay_live_start": DAY, "replay_live_end": DAY,
    })


@pytest.fixture
def prefix(isolated_settings: Settings) -> str:
    return f"t{next(_prefixes)}-{isolated_settings.warehouse_database}"


@pytest.fixture
def store(ingest_settings: Settings, prefix: str):
    from sentinel_ray.ingest.supervisor import stream_store

    s = stream_store(ingest_settings, prefix)
    yield s
    for key in s.redis.scan_iter(match=f"{prefix}:*"):
        s.redis.delete(key)


def firehose(settings: Settings, start: dt.date = DAY, end: dt.date = DAY):
    from sentinel_ray.sources.replay import LiveReplaySource, ReplaySource

    return LiveReplaySource(ReplaySource.from_settings(settings), start=start, end=end, speed=0,
                            chunk_rows=settings.replay_chunk_rows)


def expected(settings: Settings, start: dt.date = DAY, end: dt.date = DAY) -> dict:
    from sentinel_ray.sources.replay import ReplaySource

    return ReplaySource.from_settings(settings).expected_counts(start, end)


def stored_counts(settings: Settings) -> dict[str, int]:
    """Rows per dataset in curated, quarantine and the warehouse (-1: warehouse not answering)."""
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    lake = Lake(settings.resolved_lake_uri)
    wh = connect_warehouse(settings)
    out = {}
    for ds in ("prices", "posts"):
        out[f"{ds}_curated"] = lake.read("curated", ds).num_rows
        out[f"{ds}_quarantine"] = lake.read("quarantine", ds).num_rows
        try:
            out[f"{ds}_warehouse"] = wh.query_rows(f"SELECT count() AS n FROM {{db}}.{ds} FINAL")[0]["n"]
        except Exception:  # noqa: BLE001 - not created yet, or suspended on purpose
            out[f"{ds}_warehouse"] = -1
    return out


def expected_counts(settings: Settings) -> dict[str, int]:
    """What stored_counts must reach for the replay range of `settings`."""
    exp = expected(settings)
    return {**{f"{ds}_curated": exp[ds]["valid"] for ds in ("prices", "posts")},
            **{f"{ds}_quarantine": sum(exp[ds]["rejected"].values()) for ds in ("prices", "posts")},
            **{f"{ds}_warehouse": exp[ds]["valid"] for ds in ("prices", "posts")}}


def poll_all(poller) -> int:
    """Poll until the source is idle; the records published."""
    import asyncio

    total = 0
    for _ in range(1000):
        published = asyncio.run(poller.poll_once())
        if not published and poller.stats.state == "idle":
            return total
        total += published
    raise AssertionError("replay did not end")


def make_consumer(settings: Settings, store, name: str, dataset: str = "prices"):
    from sentinel_ray.ingest.consumer import StreamConsumer
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    return StreamConsumer(settings, dataset, name, store=store, lake=Lake(settings.resolved_lake_uri),
                          warehouse=connect_warehouse(settings))


def drain(consumer) -> None:
    while consumer.run_once():
        pass


def stored_of_day(settings: Settings, table: str, column: str = "ts", day: dt.date = DAY) -> pa.Table:
    """A computed table's stored rows of one IST day, in its schema, without `computed_at`."""
    lo, hi = ist_midnight_utc(day), ist_midnight_utc(day + dt.timedelta(days=1))
    ds = dataset(table)
    rows = connect_warehouse(settings).query_arrow(
        f"SELECT * FROM {{db}}.{table} FINAL WHERE {column} >= {{lo:DateTime64(3, 'UTC')}} "
        f"AND {column} < {{hi:DateTime64(3, 'UTC')}}", {"lo": lo, "hi": hi})
    rows = pa.table({f.name: pc.cast(rows.column(f.name).combine_chunks().dictionary_decode()
                                     if pa.types.is_dictionary(rows.column(f.name).type) else rows.column(f.name), f.type)
                     for f in ds.arrow_schema}, schema=ds.arrow_schema)
    return rows.drop_columns(["computed_at"]).sort_by([("ticker", "ascending"), (column, "ascending")])


def features_of_stored_bars(settings: Settings, day: dt.date = DAY, table: str = "features_1m") -> pa.Table:
    """The day's features_1m (or features_1d) as the feature functions give them on what is
    stored now, assembled here."""
    wh = connect_warehouse(settings)
    lo, hi = ist_midnight_utc(day), ist_midnight_utc(day + dt.timedelta(days=1))
    bars = read_bars(wh, lo, hi)
    first = pc.min(session_bars(bars).column("ts")).as_py()
    posts = read_posts(wh, ist_midnight_utc(warmup_start(first.date())), hi)
    f1m, f1d, _ = session_features(bars, posts, state_before(wh, day), computed_at=dt.datetime.now(dt.UTC))
    if table == "features_1d":
        return f1d.drop_columns(["computed_at"]).sort_by([("ticker", "ascending"), ("day", "ascending")])
    return f1m.drop_columns(["computed_at"]).sort_by([("ticker", "ascending"), ("ts", "ascending")])
