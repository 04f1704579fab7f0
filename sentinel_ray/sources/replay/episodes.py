"""The episodes of the simulated market and their ground truth: pump-and-dumps (the
manipulation a detector must find) and the hard negatives that look like one but are not.

| kind            | who                    | price                                   | volume                 | chatter                          |
|-----------------|------------------------|-----------------------------------------|------------------------|----------------------------------|
| pump_dump       | a small cap            | +10%..+300% over 30 min..5 days, dumped | 3-10x                  | loud / quiet / late promotion    |
| earnings        | any symbol             | +-3..25% at a results filing, fades     | 4-10x, decaying        | news, a filing row               |
| filing_move     | any symbol             | +4..15% after an order/buyback filing   | 3-8x, decaying         | news, a filing row               |
| viral_largecap  | a large cap            | none                                    | none                   | 80-200 viral, non-promo posts    |
| market_rally    | every symbol ("*")     | +1.5..4% (small caps 1.4x), fades       | 1.5-2.5x               | a few market posts, no ticker    |
| index_rebalance | 3-8 large caps ("*")   | +-0.3..0.8% in the last minutes         | 8-25x near the close   | none                             |

The schedule is a pure function of (seed, universe, rates): each trading day draws the
episodes that *start* on it from its own random streams, one per kind, so a day looks the
same whether it is generated alone or inside a month, and `episodes(start, end)` returns
the same rows for a day whatever range is asked. An episode spans at most
`MAX_TRADING_DAYS` trading days (all within `LOOKBACK_DAYS` calendar days); two that
would hit the same ticker at once keep the earlier (decided on the candidates alone, so
no day depends on an unbounded past).

Prices are moved in "episode points": the bar opens of its trading days, one after the
other (the close of one day is the open of the next, so a multi-day episode is
continuous overnight); point p is bar p % 375 of its day p // 375.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

from sentinel_ray.market import MS_PER_DAY, MS_PER_MIN, SESSION_BARS, SESSION_OPEN_MS, is_trading_day, next_trading_day
from sentinel_ray.schemas import TIMESTAMP_TYPE
from sentinel_ray.sources.replay.chatter import (
    EPISODE_SERIAL_BASE,
    FILING_SUBJECTS,
    ROUTINE_SERIALS,
    episode_posts,
    filing_record,
)
from sentinel_ray.sources.replay.simulator import (
    STREAM_EPISODE,
    STREAM_EPISODE_POSTS,
    Effect,
    SimulatedMarket,
    day_start_ms,
    ms_to_datetime,
)

KINDS = ("pump_dump", "earnings", "filing_move", "viral_largecap", "market_rally", "index_rebalance")
MANIPULATION = frozenset({"pump_dump"})
# Episodes starting per trading day (each kind at most one a day). pump_dump's is the
# source's `pump_probability`.
DEFAULT_RATES: dict[str, float] = {
    "pump_dump": 0.3, "earnings": 0.15, "filing_move": 0.12, "viral_largecap": 0.10,
    "market_rally": 0.08, "index_rebalance": 0.06,
}
CHATTER_STYLES = ("loud", "quiet", "late", "news", "none")
MAX_TRADING_DAYS = 5
LOOKBACK_DAYS = 14  # calendar days 5 trading days can take across weekends and holidays
MARKET_WIDE = "*"
_TICKER_KINDS = frozenset({"pump_dump", "earnings", "filing_move", "viral_largecap"})
_MAX_POSTS = 200  # per episode: post serials reserve 200 per (episode, day)
T = SESSION_BARS

EPISODE_SCHEMA = pa.schema([
    pa.field("episode_id", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("is_manipulation", pa.bool_()),
    pa.field("ticker", pa.string()),  # "*": market-wide (market_rally, index_rebalance)
    pa.field("tickers", pa.list_(pa.string())),  # the symbols whose prices or chatter it touches
    pa.field("day", pa.date32()),  # first trading day
    pa.field("last_day", pa.date32()),
    pa.field("days_spanned", pa.int32()),  # trading days
    pa.field("start", TIMESTAMP_TYPE),  # price (or chatter, for viral) move starts
    pa.field("peak_ts", TIMESTAMP_TYPE),  # bar whose open is the price extreme (viral: the chatter peak)
    pa.field("end", TIMESTAMP_TYPE),  # last bar it moves (or last post)
    pa.field("size", pa.float64()),  # price at peak / before - 1 (large caps' for a rally)
    pa.field("volume_mult", pa.float64()),
    pa.field("chatter", pa.string()),  # loud | quiet | late | news | none
    pa.field("chatter_start", TIMESTAMP_TYPE),  # first post, null without posts
    pa.field("posts", pa.int32()),
    pa.field("post_ids", pa.list_(pa.string())),  # post_id of each of its posts
    pa.field("filing_ids", pa.list_(pa.string())),  # NSE filing_id of its filing
])


@dataclass(eq=False)
class Episode:
    episode_id: str
    kind: str
    kind_index: int
    rows: np.ndarray  # symbol indexes whose prices move (empty: none)
    tickers: tuple[str, ...]
    market_wide: bool
    days: tuple[dt.date, ...]
    start_ms: int
    peak_ms: int
    end_ms: int
    size: float
    volume_mult: float
    chatter: str
    profile: np.ndarray | None  # log bump over len(days) * T + 1 points (rows x points when beta given)
    vprofile: np.ndarray | None  # volume multiplier over len(days) * T bars
    beta: np.ndarray | None = None  # per-row scale of the bump (market-wide moves)
    posts: dict[str, list[Any]] = field(default_factory=dict)
    filings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first_ms(self) -> int:
        """Its first trace: price, post or filing."""
        return min([self.start_ms, *self.posts.get("ts", []), *(f["ts"] for f in self.filings)])

    @property
    def last_ms(self) -> int:
        return max([self.end_ms, *self.posts.get("ts", []), *(f["ts"] for f in self.filings)])

    def touches(self, lo_ms: int, hi_ms: int) -> bool:
        """Overlaps [lo_ms, hi_ms)."""
        return self.first_ms < hi_ms and self.last_ms >= lo_ms

    def effect(self, day: dt.date) -> Effect | None:
        if self.profile is None or day not in self.days or not len(self.rows):
            return None
        j = self.days.index(day)
        bump = self.profile[j * T: j * T + T + 1]
        vmult = self.vprofile[j * T: (j + 1) * T]
        if self.beta is not None:
            return self.rows, self.beta[:, None] * bump[None, :], vmult[None, :]
        return self.rows, bump, vmult

    def day_posts(self, lo_ms: int, hi_ms: int) -> dict[str, list[Any]]:
        ts = self.posts.get("ts", [])
        keep = [k for k, t in enumerate(ts) if lo_ms <= t < hi_ms]
        return {key: [values[k] for k in keep] for key, values in self.posts.items()}

    def as_dict(self) -> dict[str, Any]:
        ts = self.posts.get("ts", [])
        return {
            "episode_id": self.episode_id,
            "kind": self.kind,
            "is_manipulation": self.kind in MANIPULATION,
            "ticker": MARKET_WIDE if self.market_wide else self.tickers[0],
            "tickers": list(self.tickers),
            "day": self.days[0],
            "last_day": self.days[-1],
            "days_spanned": len(self.days),
            "start": ms_to_datetime(self.start_ms),
            "peak_ts": ms_to_datetime(self.peak_ms),
            "end": ms_to_datetime(self.end_ms),
            "size": self.size,
            "volume_mult": self.volume_mult,
            "chatter": self.chatter,
            "chatter_start": ms_to_datetime(min(ts)) if ts else None,
            "posts": len(ts),
            "post_ids": list(self.posts.get("post_id", [])),
            "filing_ids": [f["filing_id"] for f in self.filings],
        }


def trading_days(start: dt.date, n: int) -> tuple[dt.date, ...]:
    days = [start]
    while len(days) < n:
        days.append(next_trading_day(days[-1]))
    return tuple(days)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


class EpisodeSchedule:
    """Which episodes the market of `market` has, day by day, at the given rates."""

    def __init__(self, market: SimulatedMarket, rates: Mapping[str, float] | None = None) -> None:
        unknown = set(rates or {}) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown episode kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        self.market = market
        self.rates = {**DEFAULT_RATES, **(rates or {})}
        self._small = np.array([i for i, info in enumerate(market.infos) if info.smallcap], dtype=np.int64)
        self._large = np.array([i for i, info in enumerate(market.infos) if not info.smallcap], dtype=np.int64)
        self._candidates = lru_cache(maxsize=512)(self._draw_day)
        self._valid = lru_cache(maxsize=512)(self._valid_day)

    # ---- the schedule --------------------------------------------------------------

    def active(self, day: dt.date) -> list[Episode]:
        """Episodes with a trace (price, post, filing) on the UTC day `day`; manipulation first."""
        lo = day_start_ms(day)
        found = [e for d in range(LOOKBACK_DAYS + 1) for e in self._valid(day - dt.timedelta(days=d))
                 if e.touches(lo, lo + MS_PER_DAY)]
        return sorted(found, key=lambda e: (e.kind not in MANIPULATION, e.start_ms, e.kind_index))

    def between(self, start: dt.date, end: dt.date) -> list[Episode]:
        """Episodes with a trace on any UTC day from `start` to `end` inclusive."""
        lo, hi = day_start_ms(start), day_start_ms(end) + MS_PER_DAY
        n = (end - start).days + LOOKBACK_DAYS + 1
        found = [e for d in range(n) for e in self._valid(end - dt.timedelta(days=d)) if e.touches(lo, hi)]
        return sorted(found, key=lambda e: (e.start_ms, e.kind_index))

    def table(self, start: dt.date, end: dt.date) -> pa.Table:
        return pa.Table.from_pylist([e.as_dict() for e in self.between(start, end)], schema=EPISODE_SCHEMA)

    def _valid_day(self, day: dt.date) -> tuple[Episode, ...]:
        """The candidates starting on `day` that no earlier candidate's ticker overlaps."""
        earlier = [e for d in range(1, LOOKBACK_DAYS + 1) for e in self._candidates(day - dt.timedelta(days=d))
                   if e.kind in _TICKER_KINDS and e.days[-1] >= day]
        kept: list[Episode] = []
        for e in self._candidates(day):
            if e.kind in _TICKER_KINDS:
                taken = {t for o in earlier for t in o.tickers}
                if taken & set(e.tickers):
                    continue
                earlier.append(e)  # same-day candidates of later kinds yield to it
            kept.append(e)
        return tuple(kept)

    def _draw_day(self, day: dt.date) -> tuple[Episode, ...]:
        if not is_trading_day(day) or not self.market.symbols:
            return ()
        out = []
        for k, kind in enumerate(KINDS):
            rng = np.random.default_rng([self.market.seed, day.toordinal(), STREAM_EPISODE, k])
            # The decision is drawn first and alone: the rate never shifts the other numbers.
            happens = rng.random() < self.rates[kind]
            episode = getattr(self, f"_{kind}")(rng, day, k) if happens else None
            if episode is not None:
                out.append(episode)
        return tuple(out)

    # ---- helpers ---------------------------------------------------------------------

    def _point_ms(self, days: tuple[dt.date, ...], point: int) -> int:
        """ms of episode point `point` (a bar open; negative: before the first open)."""
        j = min(max(point, 0) // T, len(days) - 1)
        return day_start_ms(days[j]) + SESSION_OPEN_MS + (point - j * T) * MS_PER_MIN

    def _times(self, rng: np.random.Generator, days: tuple[dt.date, ...], lo: float, hi: float, n: int,
               mode: float | None = None) -> np.ndarray:
        """`n` sorted post times (ms) between episode points lo and hi."""
        n = min(n, _MAX_POSTS)
        if n <= 0 or hi <= lo:
            return np.empty(0, np.int64)
        pts = rng.triangular(lo, mode, hi, n) if mode is not None else rng.uniform(lo, hi, n)
        whole = np.floor(pts).astype(np.int64)
        ms = np.array([self._point_ms(days, int(p)) for p in whole], dtype=np.int64)
        return np.sort(ms + ((pts - whole) * MS_PER_MIN).astype(np.int64))

    def _posts(self, day: dt.date, k: int, ts: np.ndarray, style: str, row: int | None,
               context: dict[str, Any]) -> dict[str, list[Any]]:
        rng = np.random.default_rng([self.market.seed, day.toordinal(), STREAM_EPISODE_POSTS, k])
        info = self.market.infos[row] if row is not None else None
        per_day: dict[dt.date, int] = {}

        def serial(post_day: dt.date, i: int) -> int:
            # unique within the post's UTC day: (days since the start, kind) own 200 serials
            count = per_day.get(post_day, 0)
            per_day[post_day] = count + 1
            slot = (post_day - day).days * len(KINDS) + k
            return EPISODE_SERIAL_BASE + slot * _MAX_POSTS + count

        return episode_posts(rng, ts, style, info, context, serial, self.market.seed)

    def _price(self, row: int, day: dt.date) -> float:
        return float(self.market.price_at_open(day)[row])

    def _episode_id(self, day: dt.date, kind: str) -> str:
        return f"{kind}-{day:%Y%m%d}"

    def _genuine(self, rng: np.random.Generator, n_days: int, at: int, size: float, jump_bars: int,
                 jump_share: float, drift_bars: int, vmult: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """A news move: a jump at point `at` to `jump_share` of it, a drift to all of it,
        held to the close, then faded back into the walk over the following days."""
        g = n_days * T
        level = np.log1p(size)
        bump = np.zeros(g + 1)
        a, b = at, min(at + jump_bars, T - 1)
        c = min(b + drift_bars, T)
        # from the first point on: at the open (jump_bars 0) that is a gap from the last close
        bump[a:b + 1] = level * jump_share * (np.arange(1, b - a + 2) / (b - a + 1)) ** 0.5
        bump[b:c + 1] = level * (jump_share + (1 - jump_share) * np.linspace(0.0, 1.0, c - b + 1))
        bump[c:T + 1] = level
        bump[T:g] = level * np.linspace(1.0, 0.0, g - T)  # the fade; 0 from the last bar on
        bump[g - 1:] = 0.0
        t = np.arange(g)
        volume = np.ones(g)
        volume[at:] += (vmult - 1.0) * np.exp(-(t[at:] - at) / tau)
        return bump, volume

    # ---- the kinds -------------------------------------------------------------------

    def _pump_dump(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode | None:
        pool = self._small
        row = int(pool[rng.integers(len(pool))]) if len(pool) else -1
        length = int(round(_loguniform(rng, 30, MAX_TRADING_DAYS * T - 60)))  # 30 min .. 5 days
        start = int(rng.integers(15, 300))
        length = min(length, MAX_TRADING_DAYS * T - 1 - start)
        rise = max(10, int(length * rng.uniform(0.4, 0.75)))
        # Bigger pumps take longer: 10-25% in half an hour, up to 300% over a week.
        size = _loguniform(rng, 0.10, max(0.1001, min(3.0, 0.25 + 0.55 * length / T)))
        volume_mult = float(rng.uniform(3.0, 10.0))
        style = CHATTER_STYLES[int(rng.choice(3, p=(0.5, 0.25, 0.25)))]
        lead = int(rng.integers(30, 181))
        n_posts = {"loud": int(rng.integers(30, 151)), "quiet": int(rng.integers(0, 6)),
                   "late": int(rng.integers(20, 101))}[style]
        if row < 0:
            return None
        n_days = (start + length) // T + 1
        days = trading_days(day, n_days)
        g0, gp, ge = start, start + rise, start + length
        bump = np.zeros(n_days * T + 1)
        peak = np.log1p(size)
        # Accelerating run-up, then a fast collapse that slows as it nears the old price.
        bump[g0:gp + 1] = peak * np.linspace(0.0, 1.0, gp - g0 + 1) ** 1.5
        bump[gp:ge + 1] = peak * (1.0 - np.linspace(0.0, 1.0, ge - gp + 1)) ** 0.6
        volume = np.ones(n_days * T)
        volume[max(0, g0 - lead):g0] = 1.5 if style == "loud" else 1.0  # early birds from the tip channels
        volume[g0:gp] = volume_mult * np.linspace(0.7, 1.3, gp - g0)
        volume[gp:ge] = volume_mult * np.linspace(1.2, 0.6, ge - gp)
        if style == "loud":  # 40% before the run-up, the rest while it runs
            pre = int(round(n_posts * 0.4))
            ts = np.concatenate([self._times(rng, days, g0 - lead, g0, pre),
                                 self._times(rng, days, g0, gp, n_posts - pre)])
        elif style == "quiet":
            ts = self._times(rng, days, g0, gp, n_posts)
        else:  # late: the posts start halfway up, when the chart already looks irresistible
            ts = self._times(rng, days, g0 + 0.5 * (gp - g0), gp + 0.3 * (ge - gp), n_posts)
        price = self._price(row, day)
        target = price * (1 + size) * rng.uniform(1.3, 2.5)
        context = {"target": f"{target:.0f}" if target >= 10 else f"{target:.1f}",
                   "percent": int(size * 100 * rng.uniform(0.5, 0.9))}
        posts = self._posts(day, k, np.sort(ts), "promo_late" if style == "late" else "promo", row, context)
        return Episode(
            episode_id=self._episode_id(day, "pump_dump"), kind="pump_dump", kind_index=k,
            rows=np.array([row]), tickers=(self.market.symbols[row],), market_wide=False, days=days,
            start_ms=self._point_ms(days, g0), peak_ms=self._point_ms(days, gp), end_ms=self._point_ms(days, ge),
            size=float(np.expm1(bump[gp])), volume_mult=volume_mult, chatter=style, profile=bump,
            vprofile=volume, posts=posts,
        )

    def _news_move(self, rng: np.random.Generator, day: dt.date, k: int, kind: str) -> Episode:
        n_sym = len(self.market.symbols)
        if kind == "filing_move":  # half of them on small caps, where they look most like a pump
            pool = self._small if len(self._small) and rng.random() < 0.5 else np.arange(n_sym)
        else:
            pool = np.arange(n_sym)
        row = int(pool[rng.integers(len(pool))])
        small = self.market.infos[row].smallcap
        fade_days = int(rng.integers(1, 3))
        days = trading_days(day, 1 + fade_days)
        if kind == "earnings":
            pre_open = rng.random() < 0.4  # results after hours or before the bell: the move is a gap
            at = 0 if pre_open else int(rng.integers(30, 330))
            sign = 1.0 if rng.random() < 0.75 else -1.0
            magnitude = _loguniform(rng, 0.05, 0.25) if small else _loguniform(rng, 0.03, 0.15)
            size = float(np.expm1(sign * np.log1p(magnitude)))
            jump_bars, share, drift = int(rng.integers(2, 11)), float(rng.uniform(0.5, 0.8)), int(rng.integers(30, 121))
            jump_bars = 0 if pre_open else jump_bars
            vmult, tau = float(rng.uniform(4.0, 10.0)), float(rng.uniform(45, 120))
            filed_ms = (day_start_ms(day) + SESSION_OPEN_MS - int(rng.integers(10, 76)) * MS_PER_MIN if pre_open
                        else self._point_ms(days, at) - int(rng.integers(1, 6)) * MS_PER_MIN)
            subject, details = FILING_SUBJECTS["earnings"]
            style = "news_up" if sign > 0 else "news_down"
        else:
            at = int(rng.integers(20, 300))
            size = _loguniform(rng, 0.04, 0.15)
            jump_bars, share, drift = int(rng.integers(5, 20)), float(rng.uniform(0.3, 0.6)), int(rng.integers(15, 61))
            vmult, tau = float(rng.uniform(3.0, 8.0)), float(rng.uniform(30, 90))
            filed_ms = self._point_ms(days, at) - int(rng.integers(1, 6)) * MS_PER_MIN
            subject, details = FILING_SUBJECTS[("order", "buyback", "acquisition", "approval")[int(rng.integers(4))]]
            style = "filing"
        bump, volume = self._genuine(rng, len(days), at, size, jump_bars, share, drift, vmult, tau)
        figure = int(rng.integers(12, 80)) if kind == "earnings" else int(rng.integers(50, 2000))
        details = details.format(x=figure)
        n_posts = int(rng.integers(8, 31)) if kind == "earnings" else int(rng.integers(5, 21))
        first = max(at, 0)
        ts = np.concatenate([self._times(rng, days, first, min(first + 240, T), int(n_posts * 0.8)),
                             self._times(rng, days, T, 2 * T, n_posts - int(n_posts * 0.8))])
        context = {"quarter": int(rng.integers(1, 5)), "figure": figure}
        posts = self._posts(day, k, np.sort(ts), style, row, context)
        filing = filing_record(day, ROUTINE_SERIALS + k, self.market.infos[row], subject, details, filed_ms)
        peak = int(np.argmax(np.abs(bump[:-1])))
        return Episode(
            episode_id=self._episode_id(day, kind), kind=kind, kind_index=k, rows=np.array([row]),
            tickers=(self.market.symbols[row],), market_wide=False, days=days,
            start_ms=self._point_ms(days, at), peak_ms=self._point_ms(days, peak),
            end_ms=self._point_ms(days, len(days) * T - 1), size=float(np.expm1(bump[peak])), volume_mult=vmult,
            chatter="news", profile=bump, vprofile=volume, posts=posts, filings=[filing],
        )

    def _earnings(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode:
        return self._news_move(rng, day, k, "earnings")

    def _filing_move(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode:
        return self._news_move(rng, day, k, "filing_move")

    def _viral_largecap(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode | None:
        if not len(self._large):
            return None
        row = int(self._large[rng.integers(len(self._large))])
        begin = int(rng.integers(0, 200))
        duration = int(rng.integers(60, T - begin))
        n_posts = int(rng.integers(80, _MAX_POSTS + 1))
        days = (day,)
        ts = self._times(rng, days, begin, begin + duration, n_posts, mode=begin + duration * rng.uniform(0.2, 0.6))
        posts = self._posts(day, k, ts, "viral", row, {})
        return Episode(
            episode_id=self._episode_id(day, "viral_largecap"), kind="viral_largecap", kind_index=k,
            rows=np.array([row]), tickers=(self.market.symbols[row],), market_wide=False, days=days,
            start_ms=int(ts[0]), peak_ms=int(np.median(ts)), end_ms=int(ts[-1]), size=0.0, volume_mult=1.0,
            chatter="loud", profile=None, vprofile=None, posts=posts,
        )

    def _market_rally(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode:
        n_sym = len(self.market.symbols)
        size = float(rng.uniform(0.015, 0.04))
        start = int(rng.integers(0, 30))
        rise = int(rng.integers(60, 181))
        fade_days = int(rng.integers(1, 3))
        vmult = float(rng.uniform(1.5, 2.5))
        days = trading_days(day, 1 + fade_days)
        g = len(days) * T
        level = np.log1p(size)
        bump = np.zeros(g + 1)
        bump[start:start + rise + 1] = level * np.linspace(0.0, 1.0, rise + 1) ** 0.7
        bump[start + rise:T + 1] = level
        bump[T:g] = level * np.linspace(1.0, 0.0, g - T)
        bump[g - 1:] = 0.0
        volume = np.ones(g)
        volume[start:T] += (vmult - 1.0) * np.exp(-np.arange(T - start) / (rise * 1.5))
        beta = np.where([info.smallcap for info in self.market.infos], 1.4, 1.0)
        n_posts = int(rng.integers(10, 31))
        ts = self._times(rng, days, start, T, n_posts)
        posts = self._posts(day, k, ts, "market", None,
                            {"figure": f"{size * 100:.1f}", "points": int(size * 80_000 // 10 * 10)})
        return Episode(
            episode_id=self._episode_id(day, "market_rally"), kind="market_rally", kind_index=k,
            rows=np.arange(n_sym), tickers=tuple(self.market.symbols), market_wide=True, days=days,
            start_ms=self._point_ms(days, start), peak_ms=self._point_ms(days, start + rise),
            end_ms=self._point_ms(days, g - 1), size=float(np.expm1(level)), volume_mult=vmult, chatter="news",
            profile=bump, vprofile=volume, beta=beta, posts=posts,
        )

    def _index_rebalance(self, rng: np.random.Generator, day: dt.date, k: int) -> Episode | None:
        large = self._large
        n = int(rng.integers(3, 9))
        last = int(rng.integers(5, 21))
        move = float(rng.uniform(0.003, 0.008)) * (1.0 if rng.random() < 0.5 else -1.0)
        vmult = float(rng.uniform(8.0, 25.0))
        if not len(large):
            return None
        rows = np.sort(rng.choice(large, size=min(n, len(large)), replace=False))
        a = T - last
        bump = np.zeros(T + 1)
        bump[a:] = np.log1p(move) * np.linspace(0.0, 1.0, last + 1)
        volume = np.ones(T)
        volume[a:] = vmult
        days = (day,)
        return Episode(
            episode_id=self._episode_id(day, "index_rebalance"), kind="index_rebalance", kind_index=k,
            rows=rows, tickers=tuple(self.market.symbols[int(r)] for r in rows), market_wide=True, days=days,
            start_ms=self._point_ms(days, a), peak_ms=self._point_ms(days, T - 1), end_ms=self._point_ms(days, T - 1),
            size=float(np.expm1(bump[T - 1])), volume_mult=vmult, chatter="none", profile=bump, vprofile=volume,
        )


def protected_tickers(episodes: list[Episode]) -> set[str]:
    """Tickers whose rows and posts are ground truth: bad rows are never injected there."""
    return {t for e in episodes if e.kind != "market_rally" for t in e.tickers}

