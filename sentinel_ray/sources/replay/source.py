"""`ReplaySource`: the simulated service that answers "everything for one UTC day"."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from sentinel_ray import reference
from sentinel_ray.market import is_trading_day
from sentinel_ray.records import FetchResult, RawPayload
from sentinel_ray.schemas import POSTS, PRICES
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.sources.replay.chatter import day_posts
from sentinel_ray.sources.replay.faults import with_bad_posts, with_bad_prices
from sentinel_ray.sources.replay.simulator import STREAM_BAD, STREAM_POSTS, SimulatedMarket
from sentinel_ray.sources.replay.tables import posts_table, prices_table
from sentinel_ray.sources.replay.wire import to_ndjson


class ReplaySource(HistorySource):
    """Deterministic simulator of NSE 1-minute bars and social chatter, one UTC day at a time."""

    name = "replay"
    datasets = ("prices", "posts")

    def __init__(
        self,
        seed: int = 42,
        symbols: list[str] | None = None,
        bad_rate: float = 0.002,
        posts_per_day: int = 400,
        pump_probability: float = 0.3,
        start: dt.date | None = None,
    ) -> None:
        if not 0 <= posts_per_day < 50_000:
            raise ValueError("posts_per_day must be in [0, 50000)")  # post ids reserve 5 digits per day
        seed = int(seed)
        symbols = list(symbols) if symbols is not None else reference.symbols()
        self.bad_rate = float(bad_rate)
        self.posts_per_day = int(posts_per_day)
        self.market = SimulatedMarket(seed, symbols, float(pump_probability))
        self.start = start  # first day `fetch(None)` emits; None: a week before today (UTC)

    @classmethod
    def from_settings(cls, settings: Any) -> "ReplaySource":
        return cls(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate)

    @property
    def seed(self) -> int:
        return self.market.seed

    @property
    def symbols(self) -> list[str]:
        return self.market.symbols

    @property
    def pump_probability(self) -> float:
        return self.market.pump_probability

    def episodes(self, start: dt.date, end: dt.date) -> pa.Table:
        """Ground truth: every pump-and-dump from `start` to `end` inclusive."""
        return self.market.episodes(start, end)

    def generate_day(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """Everything the simulated service has for one UTC calendar day."""
        episode = self.market.episode(day)
        bars = self.market.bars(day, episode)
        price_cols, price_masks, price_expected = with_bad_prices(
            bars, episode, self.market.rng(day, STREAM_BAD), self.bad_rate)
        posts_rng = self.market.rng(day, STREAM_POSTS)
        posts = day_posts(posts_rng, day, episode, self.market.infos, self.posts_per_day, self.seed)
        posts, posts_expected = with_bad_posts(posts, posts_rng, self.bad_rate)
        ingested_ms = int(ingested_at.timestamp() * 1000)
        lineage = {"source": self.name, "run_id": run_id, "ingested_ms": ingested_ms}
        prices = prices_table(price_cols, price_masks, lineage)
        posts_records = posts_table(posts, lineage)
        raw = [
            RawPayload(self.name, PRICES.name, ingested_at, to_ndjson(prices), "application/x-ndjson",
                       f"replay://{PRICES.name}/{day.isoformat()}"),
            RawPayload(self.name, POSTS.name, ingested_at, to_ndjson(posts_records), "application/x-ndjson",
                       f"replay://{POSTS.name}/{day.isoformat()}"),
        ]
        return FetchResult(
            raw=raw,
            records={PRICES.name: prices, POSTS.name: posts_records},
            next_cursor={"day": day.isoformat()},
            meta={
                "day": day.isoformat(),
                "trading_day": is_trading_day(day),
                "episodes": [episode.as_dict()] if episode is not None else [],
                "expected": {PRICES.name: price_expected, POSTS.name: posts_expected},
            },
        )

    def expected_counts(self, start: dt.date, end: dt.date) -> dict[str, dict[str, Any]]:
        """Ground-truth counts summed over `start`..`end` inclusive."""
        total: dict[str, dict[str, Any]] = {
            ds: {"rows": 0, "valid": 0, "rejected": {}} for ds in self.datasets
        }
        epoch = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # counts do not depend on it
        for i in range((end - start).days + 1):
            day = start + dt.timedelta(days=i)
            meta = self.generate_day(day, run_id="expected", ingested_at=epoch).meta["expected"]
            for ds, counts in meta.items():
                total[ds]["rows"] += counts["rows"]
                total[ds]["valid"] += counts["valid"]
                for reason, c in counts["rejected"].items():
                    total[ds]["rejected"][reason] = total[ds]["rejected"].get(reason, 0) + c
        return total

    # ---- Source interface --------------------------------------------------------------

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """The day after `cursor["day"]` (or `start`); `next_cursor` names the day emitted."""
        if cursor and cursor.get("day"):
            day = dt.date.fromisoformat(cursor["day"]) + dt.timedelta(days=1)
        else:
            day = self.start or (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=7))
        now = dt.datetime.now(dt.timezone.utc)
        return self.generate_day(day, run_id=f"replay-{day.isoformat()}", ingested_at=now)

    async def fetch_history(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        return self.generate_day(day, run_id=run_id, ingested_at=ingested_at)
