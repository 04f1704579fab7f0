"""The replay market played as a live feed (or a firehose), for continuous ingestion:
what a poller drives when the replay source streams (`sources.make_stream_source`)."""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pyarrow as pa

from sentinel_ray.market import MS_PER_DAY, SESSION_OPEN_MS, is_trading_day
from sentinel_ray.records import RAW_ID, RAW_POS, FetchResult
from sentinel_ray.schemas import DATA_DATASETS, TIMESTAMP_TYPE
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.lineage import with_raw
from sentinel_ray.sources.replay.simulator import day_start_ms
from sentinel_ray.sources.replay.source import ReplaySource, wire_payload


RUN_ID = ""  # a live feed's rows belong to no run (the pipeline's stream batches set theirs)


def default_live_start(now: dt.datetime | None = None) -> dt.date:
    """The day the live replay starts on unless told: the latest session opened by `now`,
    today from 09:15 IST on a trading day, else the trading day before. So a platform
    started at the weekend, on a holiday or before the open still plays a whole session at
    replay speed (and the days after it up to now), instead of waiting for the next open.
    `up` backfills the days before it: no day is both backfilled and streamed."""
    now = now or dt.datetime.now(dt.timezone.utc)
    day = now.astimezone(dt.timezone.utc).date()  # a replay day is a UTC date: its session opens 03:45 UTC
    opened = now.timestamp() * 1000 >= day_start_ms(day) + SESSION_OPEN_MS
    if not (is_trading_day(day) and opened):
        day -= dt.timedelta(days=1)
        while not is_trading_day(day):
            day -= dt.timedelta(days=1)
    return day


class LiveReplaySource(Source):
    """The replay market played as a live feed, for continuous ingestion.

    Rows are emitted in time order of their timestamps (clipped into their day, so the
    injected bad rows are emitted too; an injected duplicate shares its original's time
    and so always travels in the same poll as it). With `speed` > 0 a simulated clock
    runs `speed` times faster than the wall clock from the first day's 09:15 IST until it
    catches up with the wall clock, then in real time; each poll emits what it has passed. With `speed` == 0 (firehose) each poll emits up
    to `chunk_rows` rows, as fast as it is called. `end` bounds the run (None: forever).
    """

    name = "replay"
    datasets = ReplaySource.datasets  # prices, posts, filings

    def __init__(self, replay: ReplaySource, *, start: dt.date, end: dt.date | None = None, speed: float = 60.0,
                 chunk_rows: int = 20_000, clock: Any = None) -> None:
        self.replay = replay
        self.start, self.end = start, end
        self.speed = float(speed)
        self.chunk_rows = int(chunk_rows)
        self.clock = clock or time.time
        self.poll_interval_s = 1.0 if self.speed > 0 else 0.0
        self._day_cache: tuple[dt.date, dict[str, tuple[pa.Table, np.ndarray]]] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> "LiveReplaySource":
        start = settings.replay_live_start or default_live_start()
        return cls(ReplaySource.from_settings(settings), start=start, end=settings.replay_live_end,
                   speed=settings.replay_speed, chunk_rows=settings.replay_chunk_rows)

    def _day(self, day: dt.date) -> dict[str, tuple[pa.Table, np.ndarray]]:
        """The day's rows per dataset in emission order, with their emission times (ms)."""
        if self._day_cache is None or self._day_cache[0] != day:
            result = self.replay.generate_day(day, run_id=RUN_ID, ingested_at=dt.datetime.now(dt.timezone.utc))
            start_ms = day_start_ms(day)
            end_ms = start_ms + MS_PER_DAY - 1
            ordered = {}
            for name, table in result.records.items():
                table = table.drop_columns([RAW_ID, RAW_POS])  # a poll's payload is a slice: its own lineage
                ts = table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
                ts = np.where(np.isnan(ts.astype(float)), start_ms, ts) if table.column("ts").null_count else ts
                emit = np.clip(ts.astype(np.int64), start_ms, end_ms)
                order = np.argsort(emit, kind="stable")
                ordered[name] = (table.take(pa.array(order)), emit[order])
            self._day_cache = (day, ordered)
        return self._day_cache[1]

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        now_s = self.clock()
        cursor = dict(cursor or {"day": self.start.isoformat(), "emitted_ms": None})
        if self.speed > 0 and "origin_wall" not in cursor:
            cursor["origin_wall"] = now_s
            cursor["origin_sim_ms"] = day_start_ms(self.start) + SESSION_OPEN_MS
        day = dt.date.fromisoformat(cursor["day"])
        if self.end is not None and day > self.end:
            return FetchResult([], {}, cursor, {"done": True})
        upto_ms = None
        if self.speed > 0:
            upto_ms = int(cursor["origin_sim_ms"] + (now_s - cursor["origin_wall"]) * 1000 * self.speed)
            # once the simulated clock has caught up with the real one it runs in real time:
            # a live feed never delivers events from the future
            upto_ms = min(upto_ms, int(now_s * 1000))
        tables, last_ms = self._slice(day, cursor.get("emitted_ms"), upto_ms)
        next_cursor = dict(cursor)
        day_end_ms = day_start_ms(day) + MS_PER_DAY - 1
        if last_ms is not None:
            next_cursor["emitted_ms"] = last_ms
        exhausted = (upto_ms is not None and upto_ms > day_end_ms and last_ms is None) or \
                    (upto_ms is None and last_ms is None)
        if exhausted:  # this day is fully emitted: the next poll starts the next day
            next_cursor.update(day=(day + dt.timedelta(days=1)).isoformat(), emitted_ms=None)
        received = dt.datetime.now(dt.timezone.utc)
        received_ms = int(received.timestamp() * 1000)
        raw, records = [], {}
        for name, table in tables.items():
            if table.num_rows == 0:
                continue
            stamp = pa.array(np.full(table.num_rows, received_ms), TIMESTAMP_TYPE)
            table = table.set_column(table.schema.get_field_index("ingested_at"), "ingested_at", stamp)
            payload = wire_payload(DATA_DATASETS[name], table, received, f"replay-live://{name}/{day.isoformat()}",
                                   run_id=RUN_ID, ingested_ms=received_ms)
            records[name] = with_raw(table, DATA_DATASETS[name], payload.payload_id)
            raw.append(payload)
        return FetchResult(raw, records, next_cursor, {"day": day.isoformat()})

    def _slice(self, day: dt.date, after_ms: int | None, upto_ms: int | None) -> tuple[dict[str, pa.Table], int | None]:
        """Rows emitted after `after_ms`, up to `upto_ms` (live) or `chunk_rows` (firehose)."""
        ordered = self._day(day)
        lo_ms = -1 if after_ms is None else after_ms
        if upto_ms is None:  # firehose: the first chunk_rows rows by time, never splitting equal times
            merged = np.sort(np.concatenate([e[e > lo_ms] for _, e in ordered.values()]), kind="stable")
            if merged.size == 0:
                return {}, None
            upto_ms = int(merged[min(self.chunk_rows, merged.size) - 1])
        out, last = {}, None
        for name, (table, emit) in ordered.items():
            lo, hi = np.searchsorted(emit, lo_ms, "right"), np.searchsorted(emit, upto_ms, "right")
            if hi > lo:
                out[name] = table.slice(lo, hi - lo)
                last = max(last or 0, int(emit[hi - 1]))
        return out, last
