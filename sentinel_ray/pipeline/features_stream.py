"""Features of stored batches, continuing from a carried state: what both drivers call.

`FeatureUpdater(warehouse, lake).on_prices(valid, batch_key=...)` runs `session_features`
on a stored batch's bars (a stream micro-batch, or a backfill's block of days in day
order), continuing from the state it keeps in memory (bounded: `FeatureState`, ~131 KB per ticker and exchange). The
callers are `detect.signals.SignalUpdater` (features, then risk and alerts). The state is never the
only copy of anything: on the first batch after a (re)start it is rebuilt from the bars
stored before that batch, so a consumer killed with SIGKILL mid-batch continues exactly
as an undisturbed one would; a batch whose writes happened but whose ack did not is
re-delivered and recomputed to the same values (idempotent re-insert).

Posts are read from the warehouse per batch (the 20 days the baselines need), so the
prices consumer sees the posts the posts consumer stored. Posts stored after the bars
they belong to (`on_posts`) recompute the post columns of the affected feature rows.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import MS_PER_MIN, ist_date, ist_midnight_utc
from sentinel_ray.pipeline.features import (FeatureState, refresh_post_features, session_bars, session_features,
                                            warmup_start)
from sentinel_ray.pipeline.features_store import read_posts, state_until, write_features
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse

_T = "DateTime64(3, 'UTC')"


class FeatureUpdater:
    def __init__(self, warehouse: Warehouse, lake: Lake | None, *,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.warehouse, self.lake, self.clock = warehouse, lake, clock
        self.state: FeatureState | None = None  # None: rebuild from the warehouse on the next batch

    def on_prices(self, valid: pa.Table, *, batch_key: str | None) -> tuple[pa.Table, pa.Table]:
        """Features of a stored prices batch's 1m bars (and their day rows), written. Lake
        files are named by `batch_key` (a stream batch) or, when None, by the day."""
        bars = session_bars(valid)
        if bars.num_rows == 0:
            return FEATURES_1M.arrow_schema.empty_table(), FEATURES_1D.arrow_schema.empty_table()
        first, last = pc.min_max(bars.column("ts")).as_py().values()
        if self.state is None:
            self.state = state_until(self.warehouse, first)
        since = ist_midnight_utc(warmup_start(first.date()))
        posts = read_posts(self.warehouse, since, last + dt.timedelta(milliseconds=MS_PER_MIN))
        try:
            f1m, f1d, self.state = session_features(valid, posts, self.state, computed_at=self.clock())
        except BaseException:
            self.state = None  # half-updated: rebuild from stored rows next time
            raise
        write_features(self.warehouse, self.lake, f1m, f1d, batch_key=_file_key(batch_key))
        return f1m, f1d

    def on_posts(self, valid: pa.Table, *, batch_key: str | None) -> tuple[pa.Table, pa.Table]:
        """Refresh the feature rows whose post windows a stored posts batch falls in."""
        if valid.num_rows == 0:
            return FEATURES_1M.arrow_schema.empty_table(), FEATURES_1D.arrow_schema.empty_table()
        tickers = pc.unique(pc.list_flatten(valid.column("tickers"))).drop_null().to_pylist()
        if not tickers:
            return FEATURES_1M.arrow_schema.empty_table(), FEATURES_1D.arrow_schema.empty_table()
        lo, hi = pc.min_max(valid.column("ts")).as_py().values()
        # bars whose 60-minute window holds a post: close in (ts, ts + 60m]
        f1m = self.warehouse.query_arrow(
            f"SELECT * FROM {{db}}.{FEATURES_1M.name} FINAL WHERE ticker IN {{t:Array(String)}} "
            f"AND ts >= {{lo:{_T}}} AND ts < {{hi:{_T}}}",
            {"t": tickers, "lo": lo - dt.timedelta(minutes=1), "hi": hi + dt.timedelta(minutes=60)})
        # day rows: the post's own day and the 20 sessions after it (their medians) -- only stored ones
        f1d = self.warehouse.query_arrow(
            f"SELECT * FROM {{db}}.{FEATURES_1D.name} FINAL WHERE ticker IN {{t:Array(String)}} "
            f"AND day >= {{lo:{_T}}} AND day < {{hi:{_T}}}",
            {"t": tickers, "lo": ist_midnight_utc(ist_date(lo)),
             "hi": hi + dt.timedelta(days=31)})
        if f1m.num_rows == 0 and f1d.num_rows == 0:
            return FEATURES_1M.arrow_schema.empty_table(), FEATURES_1D.arrow_schema.empty_table()
        first = min(x for x in (_min(f1m, "ts"), _min(f1d, "day")) if x is not None)
        last = max(x for x in (_max(f1m, "ts"), _max(f1d, "day")) if x is not None)
        since = ist_midnight_utc(warmup_start(ist_date(first)))
        posts = read_posts(self.warehouse, since, last + dt.timedelta(days=1))
        f1m, f1d = refresh_post_features(f1m.cast(FEATURES_1M.arrow_schema), f1d.cast(FEATURES_1D.arrow_schema),
                                         posts, computed_at=self.clock())
        write_features(self.warehouse, self.lake, f1m, f1d, batch_key=_file_key(batch_key))
        return f1m, f1d


def _file_key(batch_key: str | None) -> str | None:
    return None if batch_key is None else f"features-{batch_key}"


def _min(t: pa.Table, col: str) -> dt.datetime | None:
    return pc.min(t.column(col)).as_py() if t.num_rows else None


def _max(t: pa.Table, col: str) -> dt.datetime | None:
    return pc.max(t.column(col)).as_py() if t.num_rows else None
