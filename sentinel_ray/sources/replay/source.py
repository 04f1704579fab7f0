"""`ReplaySource`: the simulated service that answers "everything for one UTC day", and
`parse_payload`, which reads its payloads (NDJSON bodies) back into records."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from sentinel_ray import reference
from sentinel_ray.market import MS_PER_DAY, SESSION_BARS, is_trading_day

from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import DATA_DATASETS, FILINGS, POSTS, PRICES, Dataset
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.sources.lineage import ParsedPayload, finish, payload_schema, positioned, stamped, with_raw
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.sources.replay.chatter import day_posts, routine_filings
from sentinel_ray.sources.replay.episodes import Episode, EpisodeSchedule, protected_tickers
from sentinel_ray.sources.replay.faults import with_bad_posts, with_bad_prices
from sentinel_ray.sources.replay.simulator import (STREAM_BAD, STREAM_FILINGS, STREAM_POSTS, SimulatedMarket,
                                                   day_start_ms, ms_to_datetime)
from sentinel_ray.sources.replay.tables import filings_table, posts_table, prices_table
from sentinel_ray.sources.replay.wire import read_ndjson, to_ndjson

REPLAY = "replay"


def wire_payload(ds: Dataset, table: pa.Table, received_at: dt.datetime, request: str, *, run_id: str,
                 ingested_ms: int) -> RawPayload:
    """The simulated service's answer of `table`'s records (whose `run_id` and `ingested_at` are
    `run_id` and `ingested_ms`): their NDJSON without that lineage of the platform's, which the
    request text carries instead (as any adapter's backfill does), so a day's answer is the same
    bytes whichever run asks for it."""
    body = to_ndjson(table.drop_columns(["run_id", "ingested_at"]))
    payload = RawPayload(REPLAY, ds.name, received_at, body, "application/x-ndjson", request)
    return stamped(payload, run_id=run_id, ingested_at=ms_to_datetime(ingested_ms))


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The records of one of the simulated service's payloads (`ReplaySource` and
    `LiveReplaySource` alike): its NDJSON read back, each line one record at its position,
    the run's lineage from the request text, values and types exactly as `generate_day`
    returned them (the injected bad rows too)."""
    ds = DATA_DATASETS.get(payload.dataset)
    if ds is None:
        raise SourceError(f"replay: no dataset {payload.dataset!r}")
    try:
        table = read_ndjson(payload.body, payload_schema(ds))
    except (pa.ArrowInvalid, ValueError) as e:
        raise UnreadablePayload(f"replay: {payload.request}: not NDJSON of {ds.name} ({str(e)[:200]})",
                                [payload]) from None
    return finish(payload, {ds.name: positioned(table, np.arange(table.num_rows))})


@lru_cache(maxsize=4)
def _simulation(seed: int, symbols: tuple[str, ...], smallcaps: frozenset[str] | None,
                rates: tuple[tuple[str, float], ...]) -> tuple[SimulatedMarket, EpisodeSchedule]:
    """The market and its episode schedule for these parameters, one pair per process.

    A backfill task builds a source per block of days; each new pair would compute the
    symbols' opening-price paths and the episode draws of the weeks before again (~30 ms a
    block, a fifth of generating a month, measured). Both are pure functions of these
    parameters, filled lazily and never changed, so sources with equal parameters share them.
    """
    market = SimulatedMarket(seed, list(symbols), smallcaps)
    return market, EpisodeSchedule(market, dict(rates))


class ReplaySource(HistorySource):
    """Deterministic simulator of NSE 1-minute bars, social chatter and exchange filings,
    one UTC day at a time, with the episodes of `episodes()` as ground truth.

    `symbols` is the universe (default: the reference table's), `smallcaps` which of them
    are small caps (default: the table's segment; symbols it does not know count as small
    caps). `pump_probability` is the chance a pump-and-dump starts on a trading day;
    `episode_rates` overrides the other kinds' rates (`episodes.DEFAULT_RATES`).
    """

    name = REPLAY
    datasets = ("prices", "posts", "filings")

    def __init__(
        self,
        seed: int = 42,
        symbols: list[str] | None = None,
        bad_rate: float = 0.002,
        posts_per_day: int = 400,
        pump_probability: float = 0.3,
        start: dt.date | None = None,
        smallcaps: Iterable[str] | None = None,
        episode_rates: Mapping[str, float] | None = None,
    ) -> None:
        if not 0 <= posts_per_day < 50_000:
            raise ValueError("posts_per_day must be in [0, 50000)")  # post ids reserve 5 digits per day
        seed = int(seed)
        symbols = list(symbols) if symbols is not None else reference.universe("core")
        self.bad_rate = float(bad_rate)
        self.posts_per_day = int(posts_per_day)
        rates = {**(episode_rates or {}), "pump_dump": float(pump_probability)}
        self.market, self.schedule = _simulation(
            seed, tuple(symbols), None if smallcaps is None else frozenset(smallcaps), tuple(sorted(rates.items())))
        self.start = start  # first day `fetch(None)` emits; None: a week before today (UTC)

    @classmethod
    def from_settings(cls, settings: Any) -> "ReplaySource":
        symbols = reference.universe(settings.replay_universe)
        # in the whole market every symbol outside the NIFTY 50 is a small cap to the simulator
        smallcaps = None if settings.replay_universe == "core" else set(symbols) - set(reference.symbols("nifty50"))
        return cls(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate, symbols=symbols, smallcaps=smallcaps,
                   pump_probability=settings.replay_pump_probability, episode_rates=settings.replay_episode_rates)

    @property
    def seed(self) -> int:
        return self.market.seed

    @property
    def symbols(self) -> list[str]:
        return self.market.symbols

    @property
    def pump_probability(self) -> float:
        return self.schedule.rates["pump_dump"]

    @property
    def episode_rates(self) -> dict[str, float]:
        return dict(self.schedule.rates)

    def episodes(self, start: dt.date, end: dt.date) -> pa.Table:
        """Ground truth (`episodes.EPISODE_SCHEMA`): every episode with a price move, post or
        filing on a UTC day from `start` to `end` inclusive, whatever the range asked."""
        return self.schedule.table(start, end)

    def day_episodes(self, day: dt.date) -> list[Episode]:
        return self.schedule.active(day)

    def generate_day(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """Everything the simulated service has for one UTC calendar day."""
        episodes = self.schedule.active(day)
        effects = [fx for fx in (e.effect(day) for e in episodes) if fx is not None]
        bars = self.market.bars(day, effects)
        guarded = protected_tickers(episodes)
        protected = np.repeat([s in guarded for s in self.symbols], SESSION_BARS) \
            if guarded and len(bars["ts"]) else None
        price_cols, price_masks, price_expected = with_bad_prices(
            bars, protected, self.market.rng(day, STREAM_BAD), self.bad_rate)
        lo = day_start_ms(day)
        posts_rng = self.market.rng(day, STREAM_POSTS)
        posts = day_posts(posts_rng, day, [e.day_posts(lo, lo + MS_PER_DAY) for e in episodes],
                          self.market.infos, self.posts_per_day, self.seed)
        posts, posts_expected = with_bad_posts(posts, posts_rng, self.bad_rate)
        filings = routine_filings(self.market.rng(day, STREAM_FILINGS), day, self.market.infos)
        filings += [f for e in episodes for f in e.filings if lo <= f["ts"] < lo + MS_PER_DAY]
        filings.sort(key=lambda f: (f["ts"], f["filing_id"]))
        ingested_ms = int(ingested_at.timestamp() * 1000)
        lineage = {"source": self.name, "run_id": run_id, "ingested_ms": ingested_ms}
        tables = {
            PRICES: prices_table(price_cols, price_masks, lineage),
            POSTS: posts_table(posts, lineage),
            FILINGS: filings_table(filings, lineage),
        }
        raw = [wire_payload(ds, table, ingested_at, f"replay://{ds.name}/{day.isoformat()}", run_id=run_id,
                            ingested_ms=ingested_ms) for ds, table in tables.items()]
        # a body lists its records in table order: record i is line i
        records = {ds.name: with_raw(table, ds, payload.payload_id)
                   for (ds, table), payload in zip(tables.items(), raw, strict=True)}
        return FetchResult(
            raw=raw,
            records=records,
            next_cursor={"day": day.isoformat()},
            meta={
                "day": day.isoformat(),
                "trading_day": is_trading_day(day),
                "episodes": [e.as_dict() for e in episodes],
                "expected": {PRICES.name: price_expected, POSTS.name: posts_expected,
                             FILINGS.name: {"rows": len(filings), "valid": len(filings), "rejected": {}}},
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
