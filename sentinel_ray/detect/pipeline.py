"""Detection over simulated days, in process: the path an evaluation measures.

    detect_days(source, start, end)      replay day -> process_batch -> session_features
                                         -> risk_scores -> alerts.advance, state carried
    evaluate_replay(seeds, start, days)  detect_days per seed (a process each), scored
                                         against the replay's ground truth

The same pure functions the backfill (Ray Data) and the stream (micro-batches) call, with
no warehouse in between: the features continue from a `FeatureState` carried day to day,
the posts window the features need (`warmup_start`) is kept in memory, the open episodes
of `alerts.advance` are carried like the stream carries them. Days before `start` are a
warm-up (the features' 20-session baselines); their alerts are not reported.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray import reference
from sentinel_ray.detect.alerts import Episode, Key, advance, alerts_table
from sentinel_ray.detect.evaluate import DEFAULT_SLACK, MARKET_WIDE, Evaluation, evaluate
from sentinel_ray.detect.risk import risk_scores
from sentinel_ray.market import is_trading_day
from sentinel_ray.pipeline.features import FeatureState, session_features, warmup_start
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, TIMESTAMP_TYPE
from sentinel_ray.sources.replay import ReplaySource

WARMUP_DAYS = 35  # calendar days before `start`: 20+ sessions of volume baseline
_DAY = dt.timedelta(days=1)
_RISK_KEEP = 20.0  # risk rows at or above this are kept for inspection (the rest is noise)
FILING_WINDOW = dt.timedelta(days=8)  # filings kept: 3 sessions before any bar of the day (run.FILING_LOOKBACK)


@dataclass
class Timing:
    posts: int = 0
    posts_s: float = 0.0  # seconds in process_batch of posts (conform, enrich, validate)
    feature_rows: int = 0
    features_s: float = 0.0  # seconds in session_features
    risk_rows: int = 0
    risk_s: float = 0.0  # seconds in risk_scores + advance

    def add(self, other: "Timing") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.posts_s if self.posts_s else 0.0

    @property
    def feature_rows_per_s(self) -> float:
        return self.feature_rows / self.features_s if self.features_s else 0.0


@dataclass
class DetectedDays:
    """What detect_days found in [start, end)."""
    alerts: pa.Table  # ALERTS rows opened in range, as of the end
    risk: pa.Table  # RISK_1M rows in range scoring at least _RISK_KEEP
    trading_days: list[dt.date]  # the trading days in range
    tickers: int
    timing: Timing = field(default_factory=Timing)
    features: pa.Table | None = None  # with keep_features: FEATURES_1M rows of the range
    filings: pa.Table | None = None  # with keep_features: FILINGS rows of the range


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def _since(table: pa.Table, moment: dt.datetime) -> pa.Table:
    return table.filter(pc.greater_equal(table.column("ts"), pa.scalar(moment, TIMESTAMP_TYPE)))


def detect_days(source: ReplaySource, start: dt.date, end: dt.date, *, warmup_days: int = WARMUP_DAYS,
                detected_by: str = "evaluate", keep_features: bool = False) -> DetectedDays:
    """Alerts and risk of the UTC days [start, end) of `source`, after `warmup_days` of warm-up.

    `keep_features`: also return the features_1m rows and filings of the range (to fit or
    inspect the risk model on)."""
    state = FeatureState.empty()
    episodes: dict[Key, Episode] = {}
    opened: dict[str, Episode] = {}
    posts_window: list[pa.Table] = []
    filings_window: list[pa.Table] = []
    risk_kept: list[pa.Table] = []
    features_kept: list[pa.Table] = []
    filings_kept: list[pa.Table] = []
    timing = Timing()
    trading: list[dt.date] = []
    day = start - dt.timedelta(days=warmup_days)
    while day < end:
        counted = day >= start
        # processed as of the end of the day, as a stream would have them
        now = _utc_midnight(day + _DAY)
        fetched = source.generate_day(day, run_id=f"evaluate-{day.isoformat()}", ingested_at=now)
        prices = process_batch(fetched.records[PRICES.name], PRICES, now=now).valid
        began = time.perf_counter()
        posts = process_batch(fetched.records[POSTS.name], POSTS, now=now).valid
        posts_s = time.perf_counter() - began
        filings = process_batch(fetched.records[FILINGS.name], FILINGS, now=now).valid
        posts_window = [_since(t, _utc_midnight(warmup_start(day)) - _DAY) for t in posts_window + [posts]]
        filings_window = [_since(t, now - FILING_WINDOW) for t in filings_window + [filings]]
        began = time.perf_counter()
        f1m, _, state = session_features(prices, pa.concat_tables(posts_window), state, computed_at=now)
        features_s = time.perf_counter() - began
        began = time.perf_counter()
        risk = risk_scores(f1m, computed_at=now, filings=pa.concat_tables(filings_window))
        result = advance(risk, episodes, detected_by=detected_by)
        risk_s = time.perf_counter() - began
        episodes = result.state
        if counted:
            for alert_id, ep in result.touched.items():
                if alert_id in opened or alert_id in result.opened:
                    opened[alert_id] = ep
            risk_kept.append(risk.filter(pc.greater_equal(risk.column("score"), _RISK_KEEP)))
            if keep_features:
                features_kept.append(f1m)
                filings_kept.append(filings)
            if is_trading_day(day):
                trading.append(day)
            timing.add(Timing(posts=posts.num_rows, posts_s=posts_s, feature_rows=f1m.num_rows,
                              features_s=features_s, risk_rows=risk.num_rows, risk_s=risk_s))
        day += _DAY
    alerts = alerts_table(ep.row(_utc_midnight(end)) for ep in opened.values())
    risk = pa.concat_tables(risk_kept) if risk_kept else risk_scores(pa.table({}))
    return DetectedDays(alerts=alerts, risk=risk, trading_days=trading, tickers=len(source.symbols), timing=timing,
                        features=pa.concat_tables(features_kept) if features_kept else None,
                        filings=pa.concat_tables(filings_kept) if filings_kept else None)


# ---- evaluation over seeds -----------------------------------------------------------

def evaluation_symbols() -> list[str]:
    """The universe evaluated: the curated core (NIFTY 50 and the small caps)."""
    return reference.universe("core")


@dataclass
class SeedRun:
    seed: int
    episodes: pa.Table  # ground truth of the episodes starting in range
    earlier: pa.Table  # episodes begun before the range (alerted, or not, in the warm-up)
    alerts: pa.Table  # alerts opened in range
    days: list[dt.date]  # trading days evaluated
    tickers: int
    timing: Timing

    @property
    def ticker_days(self) -> int:
        return len(self.days) * self.tickers


def run_seed(seed: int, start: dt.date, days: int, *, warmup_days: int = WARMUP_DAYS,
             symbols: Sequence[str] | None = None) -> SeedRun:
    """detect_days over `days` calendar days from `start` for one replay seed, with its ground truth."""
    end = start + dt.timedelta(days=days)
    source = ReplaySource(seed=seed, symbols=list(symbols) if symbols is not None else evaluation_symbols())
    found = detect_days(source, start, end, warmup_days=warmup_days)
    truth = source.episodes(start, end - _DAY)
    begun = pc.greater_equal(truth.column("start"), pa.scalar(_utc_midnight(start), TIMESTAMP_TYPE))
    return SeedRun(seed=seed, episodes=truth.filter(begun), earlier=truth.filter(pc.invert(begun)),
                   alerts=found.alerts, days=found.trading_days, tickers=found.tickers, timing=found.timing)


def _run_seed(args: tuple[int, dt.date, int]) -> SeedRun:
    return run_seed(*args)


def run_seeds(seeds: Sequence[int], start: dt.date, days: int, *, processes: int | None = None) -> list[SeedRun]:
    """run_seed for each seed, in parallel processes (the functions are pure; no Ray needed)."""
    jobs = [(int(s), start, days) for s in seeds]
    processes = min(len(jobs), processes or multiprocessing.cpu_count())
    if processes <= 1:
        return [_run_seed(j) for j in jobs]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_run_seed, jobs)


def _prefixed(table: pa.Table, seed: int, columns: Sequence[str]) -> pa.Table:
    """Ids and tickers of one seed made distinct from every other seed's."""
    for name in columns:
        i = table.schema.get_field_index(name)
        values = table.column(name).to_pylist()
        values = [v if v is None or v == MARKET_WIDE else [f"{seed}:{x}" for x in v] if isinstance(v, list)
                  else f"{seed}:{v}" for v in values]
        table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    return table


def combine(runs: Sequence[SeedRun], *, slack: dt.timedelta = DEFAULT_SLACK) -> tuple[Evaluation, Timing]:
    """One evaluation over every seed's episodes and alerts (kept apart by a seed prefix)."""
    def truth(of: str) -> pa.Table:
        return pa.concat_tables([_prefixed(getattr(r, of), r.seed, ("episode_id", "ticker", "tickers")) for r in runs])

    episodes, earlier = truth("episodes"), truth("earlier")
    alerts = pa.concat_tables([_prefixed(r.alerts, r.seed, ("alert_id", "ticker")) for r in runs])
    timing = Timing()
    for r in runs:
        timing.add(r.timing)
    return evaluate(episodes, alerts, ticker_days=sum(r.ticker_days for r in runs), slack=slack,
                    days={d for r in runs for d in r.days}, ignored=earlier), timing


def evaluate_replay(seeds: Sequence[int], start: dt.date, days: int, *, processes: int | None = None
                    ) -> tuple[Evaluation, Timing]:
    return combine(run_seeds(seeds, start, days, processes=processes))


def summary(report: Evaluation, timing: Timing) -> dict[str, Any]:
    """The one JSON line of `sentinel-ray evaluate` and bench/detection.py."""
    return {"f1": _round(report.f1), "precision": _round(report.precision), "recall": _round(report.recall),
            "median_lead_s": _round(report.lead_median_s, 1), "p10_lead_s": _round(report.lead_p10_s, 1),
            "false_alerts_per_1000_ticker_days": _round(report.false_per_1k_ticker_days, 3),
            "posts_s": round(timing.posts_per_s), "features_rows_s": round(timing.feature_rows_per_s)}


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)
