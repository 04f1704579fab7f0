"""Offline simulator of the NSE cash market and the chatter around it.

`ReplaySource` plays a service that answers "everything for one UTC day": 1-minute
bars for every symbol and social/news posts, with pump-and-dump episodes and a known
number of bad records of each kind, so the whole platform (validation, features,
alerts) can be exercised and checked against ground truth with no network.

Everything is a pure function of (seed, day, symbols): each random draw comes from
`numpy.random.default_rng([seed, day ordinal, stream, ...])`, never from the clock,
so any day can be generated alone, in any order, on any worker, with the same result.

Records tables use the dataset's column names, order and Arrow types, but every field
is nullable (`Dataset.record_schema`): the
injected bad rows hold nulls in required columns, which is exactly what validation
must find.

For continuous ingestion the same market is played live by `replay_live.LiveReplaySource`.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc  # noqa: F401 - reference.symbols() relies on it being imported

from sentinel_ray import reference
from sentinel_ray.market import (MS_PER_DAY, MS_PER_MIN, SESSION_BARS, SESSION_CLOSE_MS, SESSION_OPEN_MS,
                                 is_trading_day, next_trading_day)
from sentinel_ray.records import FetchResult, RawPayload, Reason
from sentinel_ray.schemas import POSTS, PRICES, TIMESTAMP_TYPE
from sentinel_ray.sources.base import HistorySource

# --- calendar -----------------------------------------------------------------------

# The daily random walk starts here; days before it cannot be generated.
EPOCH = dt.date(2020, 1, 1)
# ... and is precomputed up to here (about 6,000 days, a few hundred KB per instance).
HORIZON = dt.date(2036, 12, 31)

TICK = 0.05
FUTURE_SHIFT_DAYS = 3650  # a "future" bad row: same wall time ten years on

# Independent random streams per day, so adding draws to one never shifts another.
_STREAM_EPISODE, _STREAM_BARS, _STREAM_POSTS, _STREAM_BAD, _STREAM_SYMBOL, _STREAM_WALK, _STREAM_GAP = range(7)


def day_start_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * MS_PER_DAY


def _ms_to_datetime(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=int(ms))


def _symbol_key(symbol: str) -> int:
    # crc32, not hash(): Python's str hash is salted per process.
    return zlib.crc32(symbol.encode())


# --- symbols ------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    name: str
    smallcap: bool


def _symbol_infos(symbols: list[str]) -> list[SymbolInfo]:
    table = reference.symbol_table().to_pydict()
    by_symbol = {s: (n, seg) for s, n, seg in zip(table["symbol"], table["name"], table["segment"])}
    infos = []
    for s in symbols:
        name, seg = by_symbol.get(s, (s, "smallcap"))  # unknown symbols behave like small caps
        infos.append(SymbolInfo(s, name, seg == "smallcap"))
    return infos


def _short_name(name: str) -> str:
    """How chatter names a company: 'Reliance Industries Ltd' -> 'Reliance Industries'."""
    for suffix in (" Ltd", " Limited"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removeprefix("The ")


# --- episodes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One pump-and-dump: bar indexes within the session and its size."""

    ticker: str
    day: dt.date
    promo_start_ms: int
    pump_bar: int
    peak_bar: int
    dump_end_bar: int
    gain: float  # peak / pre-pump price - 1
    volume_mult: float
    promo_posts: int

    def bar_ms(self, bar: int) -> int:
        return day_start_ms(self.day) + SESSION_OPEN_MS + bar * MS_PER_MIN

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticker": self.ticker,
            "day": self.day,
            "promo_start": _ms_to_datetime(self.promo_start_ms),
            "pump_start": _ms_to_datetime(self.bar_ms(self.pump_bar)),
            "peak_ts": _ms_to_datetime(self.bar_ms(self.peak_bar)),
            "dump_end": _ms_to_datetime(self.bar_ms(self.dump_end_bar)),
        }


EPISODE_SCHEMA = pa.schema(
    [
        pa.field("ticker", pa.string()),
        pa.field("day", pa.date32()),
        pa.field("promo_start", TIMESTAMP_TYPE),
        pa.field("pump_start", TIMESTAMP_TYPE),
        pa.field("peak_ts", TIMESTAMP_TYPE),
        pa.field("dump_end", TIMESTAMP_TYPE),
    ]
)

# --- post text ----------------------------------------------------------------------

PLATFORMS = ("reddit", "x", "telegram", "youtube", "news")
_REGULAR_PLATFORM_P = (0.30, 0.30, 0.15, 0.10, 0.15)
_PROMO_PLATFORM_P = (0.07, 0.25, 0.60, 0.08, 0.0)

_SOCIAL_ONE = (
    "{a} looking strong above the 20 DMA, adding more on dips",
    "Anyone tracking {a}? Volume picking up since the open",
    "Booked profit in {a} today, will re-enter near support",
    "{a} broke support today, staying away for now",
    "FII selling in {a} continues, DIIs absorbing everything",
    "Results of {a} were better than street estimates. Holding.",
    "{a} mein aaj accha move hai bhai, hold karo",
    "Kal {a} ka result hai, kya lagta hai sabko?",
    "{a} ne toh aaj rula diya 😭 SL hit ho gaya",
    "{a} long term ke liye best hai, dheere dheere accumulate karo",
    "Is {a} a value trap at these levels? Thoughts?",
)
_SOCIAL_TWO = (
    "{a} vs {b}: which one for the long term?",
    "Rotating from {a} into {b}, better risk-reward",
    "Bhai {a} aur {b} dono portfolio mein hai, sell karu kya?",
    "{a} and {b} both at 52-week highs, momentum is real",
)
_SOCIAL_NONE = (
    "Nifty looking weak today, market mein panic hai",
    "What's everyone's view on the RBI policy this week?",
    "Sensex up 500 points, green everywhere today",
    "Aaj market band kitne baje hoga? Koi batao",
    "Expiry day volatility is insane, trading light today",
    "Started my first SIP today, any tips for a beginner?",
)
_NEWS_ONE = (
    "{a} shares rise after quarterly earnings beat estimates",
    "{a} stock falls as brokerage cuts target price",
    "{a}: board approves fund raise via QIP",
    "{a} bags large order, shares in focus",
    "Promoters raise stake in {a}, stock trades higher",
)
_NEWS_TWO = ("{a} and {b} lead gains on the Nifty", "{a}, {b} drag benchmark indices lower")
_NEWS_NONE = (
    "Sensex, Nifty end flat amid mixed global cues",
    "FPIs turn net buyers in Indian equities this week",
    "Rupee settles higher against the US dollar",
)
_PROMO = (
    "🚀🚀 {a} MULTIBAGGER ALERT 🚀🚀 Target 3x in 2 weeks. Buy before it flies!",
    "Operator news in {a} ✅ big move loading, accumulate now 🚀🔥",
    "{a} target 3x pakka 💯 operator entry ho chuki hai, abhi lo warna pachtaoge 🚀",
    "Jackpot stock {a} 🚀🚀🚀 sirf VIP members ke liye. Buy before it flies",
    "Insider info: {a} big order coming 🚀 target 3x, don't miss this rocket",
    "{a} 🚀🚀 upper circuit coming today! Multibagger loading 💰💰",
)
_HANDLE_HEAD = ("dalal", "nifty", "bull", "bear", "trader", "stock", "market", "desi", "mumbai", "chart", "swing", "value")
_HANDLE_TAIL = ("_guru", "wala", "_king", "_pro", "_investor", "_baba", "_ji", "_india", "")
_SUBREDDITS = ("IndianStreetBets", "IndianStockMarket", "DalalStreetTalks")
_TELEGRAM = ("nifty_updates", "stock_market_hindi", "dalal_street_chat")
_TELEGRAM_PROMO = ("multibagger_calls", "operator_tips_vip", "rocket_stocks_india", "jackpot_penny_picks")
_YOUTUBE = ("StockMarketHindi", "NiftyWithRahul", "TradingChanakya", "InvestKaroIndia")
_NEWS_OUTLETS = (
    ("economictimes.indiatimes.com", "Economic Times"),
    ("www.moneycontrol.com", "Moneycontrol"),
    ("www.livemint.com", "Mint"),
    ("www.business-standard.com", "Business Standard"),
)
_X_EPOCH_MS = 1_288_834_974_657  # Twitter snowflake epoch


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


# --- the source ---------------------------------------------------------------------


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
        self.seed = int(seed)
        self.symbols = list(symbols) if symbols is not None else reference.symbols()
        self.bad_rate = float(bad_rate)
        self.posts_per_day = int(posts_per_day)
        self.pump_probability = float(pump_probability)
        self.start = start  # first day `fetch(None)` emits; None: a week before today (UTC)
        self._infos = _symbol_infos(self.symbols)
        self._keys = [_symbol_key(s) for s in self.symbols]

    @classmethod
    def from_settings(cls, settings: Any) -> "ReplaySource":
        return cls(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate)

    # ---- per-symbol constants --------------------------------------------------------

    def _rng(self, day: dt.date | None, stream: int, *extra: int) -> np.random.Generator:
        ordinal = 0 if day is None else day.toordinal()
        return np.random.default_rng([self.seed, ordinal, stream, *extra])

    @cached_property
    def _params(self) -> dict[str, np.ndarray]:
        """Per-symbol base price, daily and intraday volatility, volume scale."""
        n = len(self.symbols)
        base, vol_scale = np.empty(n), np.empty(n)
        for i, (info, key) in enumerate(zip(self._infos, self._keys)):
            u = self._rng(None, _STREAM_SYMBOL, key).random(2)
            lo, hi = (5.0, 200.0) if info.smallcap else (200.0, 4000.0)
            base[i] = np.exp(np.log(lo) + u[0] * np.log(hi / lo))
            # Penny stocks trade many more shares per minute than large caps.
            vlo, vhi = (2e4, 5e5) if info.smallcap else (2e3, 5e4)
            vol_scale[i] = np.exp(np.log(vlo) + u[1] * np.log(vhi / vlo))
        small = np.array([info.smallcap for info in self._infos], dtype=bool)
        return {
            "base": base,
            "vol_scale": vol_scale,
            "daily_sigma": np.where(small, 0.03, 0.015),
            "intraday_sigma": np.where(small, 0.02, 0.01),
        }

    @cached_property
    def _log_opens(self) -> np.ndarray:
        """(symbols, days since EPOCH) log opening price, before the overnight gap.

        A random walk over weekdays (weekend steps are zero), squashed with tanh so a
        simulated decade stays within a factor ~2 of the base price. Computed once for
        the whole horizon so every day reads the same walk.
        """
        n_days = (HORIZON - EPOCH).days + 1
        weekday = (EPOCH.weekday() + np.arange(n_days)) % 7
        steps = np.stack([self._rng(None, _STREAM_WALK, key).standard_normal(n_days) for key in self._keys]) \
            if self._keys else np.empty((0, n_days))
        steps *= self._params["daily_sigma"][:, None]
        steps[:, weekday >= 5] = 0.0
        walk = np.cumsum(steps, axis=1)
        amplitude = 0.7
        return np.log(self._params["base"])[:, None] + amplitude * np.tanh(walk / amplitude)

    def _log_open(self, day: dt.date) -> np.ndarray:
        if not EPOCH <= day <= HORIZON:
            raise ValueError(f"replay covers {EPOCH}..{HORIZON}, not {day}")
        return self._log_opens[:, (day - EPOCH).days]

    def _gap(self, day: dt.date) -> np.ndarray:
        """Overnight gap of each symbol at `day`'s open (the previous close targets the walk)."""
        return np.array([self._rng(day, _STREAM_GAP, key).normal(0.0, 0.004) for key in self._keys])

    # ---- episodes ----------------------------------------------------------------------

    def _episode(self, day: dt.date) -> Episode | None:
        smallcaps = sorted(info.symbol for info in self._infos if info.smallcap)
        if not is_trading_day(day) or not smallcaps:
            return None
        rng = self._rng(day, _STREAM_EPISODE)
        # Draw everything up front so the decision never shifts the other numbers.
        happens = rng.random() < self.pump_probability
        ticker = smallcaps[int(rng.integers(len(smallcaps)))]
        rise = int(rng.integers(30, 91))
        fall = int(rng.integers(30, 61))
        pump_bar = int(rng.integers(60, SESSION_BARS - rise - fall - 5))
        lead_min = int(rng.integers(50, 71))
        # 17%+ rather than 15% so minute noise never hides a real episode's run-up.
        gain = float(rng.uniform(0.17, 0.40))
        volume_mult = float(rng.uniform(5.0, 10.0))
        promo_posts = int(rng.integers(15, 41))
        if not happens:
            return None
        pump_ms = day_start_ms(day) + SESSION_OPEN_MS + pump_bar * MS_PER_MIN
        return Episode(
            ticker=ticker,
            day=day,
            promo_start_ms=pump_ms - lead_min * MS_PER_MIN,
            pump_bar=pump_bar,
            peak_bar=pump_bar + rise,
            dump_end_bar=pump_bar + rise + fall,
            gain=gain,
            volume_mult=volume_mult,
            promo_posts=promo_posts,
        )

    def episodes(self, start: dt.date, end: dt.date) -> pa.Table:
        """Ground truth: every pump-and-dump from `start` to `end` inclusive."""
        rows = [e.as_dict() for e in self._episodes_between(start, end)]
        return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)

    def _episodes_between(self, start: dt.date, end: dt.date) -> list[Episode]:
        days = (start + dt.timedelta(days=i) for i in range((end - start).days + 1))
        return [e for e in map(self._episode, days) if e is not None]

    # ---- prices ------------------------------------------------------------------------

    def _bars(self, day: dt.date, episode: Episode | None) -> dict[str, np.ndarray]:
        """Good 1-minute bars of every symbol, symbol-major, as numpy columns."""
        n_sym, t = len(self.symbols), SESSION_BARS
        p = self._params
        start = self._log_open(day) + self._gap(day)
        target = self._log_open(next_trading_day(day))  # tomorrow's open before its gap: continuity
        # Per-symbol streams: a symbol's bars do not depend on which others are simulated.
        draws = [self._rng(day, _STREAM_BARS, key) for key in self._keys]
        steps = np.stack([r.standard_normal(t) for r in draws]) if draws else np.empty((0, t))
        wicks = np.abs(np.stack([r.standard_normal((2, t)) for r in draws])) if draws else np.empty((0, 2, t))
        noise = np.stack([r.lognormal(0.0, 0.35, t) for r in draws]) if draws else np.empty((0, t))

        minute_sigma = p["intraday_sigma"][:, None] / np.sqrt(t)
        walk = np.concatenate([np.zeros((n_sym, 1)), np.cumsum(steps * minute_sigma, axis=1)], axis=1)
        frac = np.linspace(0.0, 1.0, t + 1)[None, :]
        bridge = walk - frac * walk[:, -1:]  # Brownian bridge: pinned to 0 at open and close
        log_path = start[:, None] + (target - start)[:, None] * frac + bridge  # t+1 points

        u = np.linspace(-1.0, 1.0, t)
        volume = p["vol_scale"][:, None] * (1.0 + 2.5 * u**2)[None, :] * noise  # U-shaped day

        if episode is not None:
            row = self.symbols.index(episode.ticker)
            bump, vmult = _episode_profiles(episode)
            log_path[row] += bump
            volume[row] *= vmult

        price = np.exp(log_path)
        open_ = _to_tick(price[:, :-1])
        close = _to_tick(price[:, 1:])
        wick = minute_sigma * 0.6
        high = np.maximum(np.maximum(open_, close), _to_tick(np.maximum(open_, close) * np.exp(wicks[:, 0] * wick), np.ceil))
        low = np.minimum(np.minimum(open_, close), _to_tick(np.minimum(open_, close) * np.exp(-wicks[:, 1] * wick), np.floor))
        low = np.maximum(low, TICK)
        ts = day_start_ms(day) + SESSION_OPEN_MS + np.arange(t, dtype=np.int64) * MS_PER_MIN
        return {
            "ticker": np.repeat(np.array(self.symbols, dtype=object), t),
            "ts": np.tile(ts, n_sym),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": np.maximum(np.rint(volume), 1).astype(np.int64).ravel(),
        }

    def _prices(
        self, day: dt.date, episode: Episode | None, rng: np.random.Generator
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
        """Bars plus injected bad rows: (columns, null masks, expected counts)."""
        if not is_trading_day(day) or not self.symbols:
            empty = {k: np.empty(0) for k in ("open", "high", "low", "close")}
            cols = {"ticker": np.empty(0, dtype=object), "ts": np.empty(0, np.int64), **empty,
                    "volume": np.empty(0, np.int64)}
            return cols, {}, {"rows": 0, "valid": 0, "rejected": {}}
        cols = self._bars(day, episode)
        n = len(cols["ts"])
        protected = np.zeros(n, dtype=bool)
        if episode is not None:  # keep the ground-truth episode bars intact
            protected[cols["ticker"] == episode.ticker] = True
        # OHLC swap needs high > low to make a difference.
        swappable = cols["high"] > cols["low"]
        k = self._bad_per_kind(n, 5)
        pools = [~protected, ~protected, ~protected & swappable, ~protected]
        picks = _pick_disjoint(rng, pools, k)
        nonpos, missing, ohlc, future = picks
        cols["low"][nonpos] = 0.0  # still low <= open, close <= high: only non_positive_price fires
        close_null = np.zeros(n, dtype=bool)
        close_null[missing] = True
        cols["high"][ohlc], cols["low"][ohlc] = cols["low"][ohlc].copy(), cols["high"][ohlc].copy()
        cols["ts"][future] += FUTURE_SHIFT_DAYS * MS_PER_DAY
        used = np.zeros(n, dtype=bool)
        used[np.concatenate(picks)] = True
        dup = np.sort(rng.choice(np.flatnonzero(~used), size=k, replace=False))
        cols = {name: np.concatenate([c, c[dup]]) for name, c in cols.items()}
        masks = {"close": np.concatenate([close_null, np.zeros(k, dtype=bool)])}
        expected = {
            "rows": n + k,
            "valid": n - 4 * k,
            "rejected": {
                Reason.MISSING_FIELD.value: k,
                Reason.NON_POSITIVE_PRICE.value: k,
                Reason.OHLC_INCONSISTENT.value: k,
                Reason.FUTURE_TIMESTAMP.value: k,
                Reason.DUPLICATE.value: k,
            },
        }
        return cols, masks, expected

    def _bad_per_kind(self, n_good: int, kinds: int) -> int:
        # At least one of each kind so validation is exercised on every batch.
        return max(1, int(round(self.bad_rate * n_good / kinds)))

    # ---- posts -------------------------------------------------------------------------

    def _posts(
        self, day: dt.date, episode: Episode | None, rng: np.random.Generator
    ) -> dict[str, list[Any]]:
        """Good posts of the day, sorted by time, as Python lists (texts are built per post)."""
        trading = is_trading_day(day)
        n_regular = self.posts_per_day if trading else self.posts_per_day // 3
        day_ms = day_start_ms(day)
        # Chatter follows the market: most posts in session hours on trading days,
        # in IST daytime (02:30-18:30 UTC) otherwise.
        lo, hi, busy = (SESSION_OPEN_MS, SESSION_CLOSE_MS, 0.65) if trading else (150 * MS_PER_MIN, 1110 * MS_PER_MIN, 0.8)
        in_busy = rng.random(n_regular) < busy
        ts = np.where(in_busy, rng.integers(lo, hi, n_regular), rng.integers(0, MS_PER_DAY, n_regular)) + day_ms
        platform = rng.choice(len(PLATFORMS), size=n_regular, p=_REGULAR_PLATFORM_P)
        promo = np.zeros(n_regular, dtype=bool)
        if episode is not None:
            m = episode.promo_posts
            pump_ms = episode.bar_ms(episode.pump_bar)
            ts = np.concatenate([ts, rng.integers(episode.promo_start_ms, pump_ms, m)])
            platform = np.concatenate([platform, rng.choice(len(PLATFORMS), size=m, p=_PROMO_PLATFORM_P)])
            promo = np.concatenate([promo, np.ones(m, dtype=bool)])
        order = np.argsort(ts, kind="stable")
        ts, platform, promo = ts[order], platform[order], promo[order]

        names = {info.symbol: _short_name(info.name) for info in self._infos}
        out: dict[str, list[Any]] = {k: [] for k in ("platform", "post_id", "author", "text", "ts", "url", "engagement", "tickers", "promo")}
        for i in range(len(ts)):
            plat = PLATFORMS[int(platform[i])]
            if promo[i]:
                assert episode is not None
                tickers = [episode.ticker]
                text = _PROMO[int(rng.integers(len(_PROMO)))].format(a=_mention(rng, episode.ticker, names, promo=True))
            else:
                tickers, text = _regular_text(rng, plat, self.symbols, names)
            post_id, author, url = _identity(rng, plat, bool(promo[i]), day, i, int(ts[i]), self.seed)
            engagement = None if plat == "news" else int(rng.lognormal(3.0 if not promo[i] else 4.5, 1.2))
            for key, value in (("platform", plat), ("post_id", post_id), ("author", author), ("text", text),
                               ("ts", int(ts[i])), ("url", url), ("engagement", engagement),
                               ("tickers", tickers), ("promo", bool(promo[i]))):
                out[key].append(value)
        return out

    def _posts_with_bad(
        self, day: dt.date, episode: Episode | None, rng: np.random.Generator
    ) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        posts = self._posts(day, episode, rng)
        n = len(posts["ts"])
        if n == 0:
            return posts, {"rows": 0, "valid": 0, "rejected": {}}
        k = self._bad_per_kind(n, 4)
        pool = ~np.array(posts["promo"], dtype=bool)  # promo posts are the episode's ground truth
        if pool.sum() < 4 * k:
            k = max(0, int(pool.sum()) // 4)
        missing, short, future = _pick_disjoint(rng, [pool, pool, pool], k)
        for i in missing:
            posts["post_id"][i] = None
        # 1-4 characters after trimming. Not empty or whitespace-only: validation trims
        # text first and an empty string counts as missing_field, not text_length.
        for j, i in enumerate(short):
            posts["text"][i] = ("gm!", " ok ", "🚀🚀🚀", "hi\n")[j % 4]
        for i in future:
            posts["ts"][i] += FUTURE_SHIFT_DAYS * MS_PER_DAY
        used = np.zeros(n, dtype=bool)
        used[np.concatenate([missing, short, future])] = True
        dup = np.sort(rng.choice(np.flatnonzero(~used), size=k, replace=False)) if k else np.empty(0, np.int64)
        for key, values in posts.items():
            values.extend([list(values[i]) if key == "tickers" else values[i] for i in dup])
        rejected = {
            Reason.MISSING_FIELD.value: k,
            Reason.TEXT_LENGTH.value: k,
            Reason.FUTURE_TIMESTAMP.value: k,
            Reason.DUPLICATE.value: k,
        }
        return posts, {"rows": n + k, "valid": n - 3 * k, "rejected": rejected if k else {}}

    # ---- the day -------------------------------------------------------------------------

    def generate_day(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """Everything the simulated service has for one UTC calendar day."""
        episode = self._episode(day)
        bad_rng = self._rng(day, _STREAM_BAD)
        price_cols, price_masks, price_expected = self._prices(day, episode, bad_rng)
        posts, posts_expected = self._posts_with_bad(day, episode, self._rng(day, _STREAM_POSTS))
        ingested_ms = int(ingested_at.timestamp() * 1000)
        lineage = {"source": self.name, "run_id": run_id, "ingested_ms": ingested_ms}
        prices = _prices_table(price_cols, price_masks, lineage)
        posts_table = _posts_table(posts, lineage)
        raw = [
            RawPayload(self.name, PRICES.name, ingested_at, to_ndjson(prices), "application/x-ndjson",
                       f"replay://{PRICES.name}/{day.isoformat()}"),
            RawPayload(self.name, POSTS.name, ingested_at, to_ndjson(posts_table), "application/x-ndjson",
                       f"replay://{POSTS.name}/{day.isoformat()}"),
        ]
        return FetchResult(
            raw=raw,
            records={PRICES.name: prices, POSTS.name: posts_table},
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


# --- helpers ----------------------------------------------------------------------------


def _to_tick(x: np.ndarray, how: Any = np.rint) -> np.ndarray:
    # Second rounding strips float noise (123.45000000000002) so values print as quoted.
    return np.round(how(x / TICK) * TICK, 2)


def _episode_profiles(e: Episode) -> tuple[np.ndarray, np.ndarray]:
    """Log-price bump over the t+1 path points and volume multiplier over the t bars."""
    bump = np.zeros(SESSION_BARS + 1)
    peak = np.log1p(e.gain)
    rise = e.peak_bar - e.pump_bar
    fall = e.dump_end_bar - e.peak_bar
    # Accelerating run-up, then a fast collapse that slows as it nears the old price.
    bump[e.pump_bar : e.peak_bar + 1] = peak * np.linspace(0.0, 1.0, rise + 1) ** 1.5
    bump[e.peak_bar : e.dump_end_bar + 1] = peak * (1.0 - np.linspace(0.0, 1.0, fall + 1)) ** 0.6
    vmult = np.ones(SESSION_BARS)
    promo_bar = max(0, (e.promo_start_ms - e.bar_ms(0)) // MS_PER_MIN)
    vmult[promo_bar : e.pump_bar] = 1.5  # early birds from the tip channels
    vmult[e.pump_bar : e.peak_bar] = e.volume_mult * np.linspace(0.7, 1.3, rise)
    vmult[e.peak_bar : e.dump_end_bar] = e.volume_mult * np.linspace(1.2, 0.6, fall)
    return bump, vmult


def _pick_disjoint(rng: np.random.Generator, pools: list[np.ndarray], k: int) -> list[np.ndarray]:
    """`k` distinct row indexes from each boolean pool, no index picked twice overall."""
    taken = np.zeros(len(pools[0]) if pools else 0, dtype=bool)
    picks = []
    for pool in pools:
        candidates = np.flatnonzero(pool & ~taken)
        chosen = np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))
        taken[chosen] = True
        picks.append(chosen)
    return picks


def _mention(rng: np.random.Generator, symbol: str, names: dict[str, str], promo: bool = False) -> str:
    style = rng.random()
    if promo:  # tip channels shout the symbol
        return f"${symbol}" if style < 0.5 else symbol
    if style < 0.4:
        return f"${symbol}"
    if style < 0.75:
        return symbol
    return names[symbol]


def _regular_text(
    rng: np.random.Generator, platform: str, symbols: list[str], names: dict[str, str]
) -> tuple[list[str], str]:
    n_tickers = int(rng.choice(3, p=(0.15, 0.65, 0.20))) if len(symbols) >= 2 else min(1, len(symbols))
    tickers = [symbols[int(j)] for j in rng.choice(len(symbols), size=n_tickers, replace=False)] if n_tickers else []
    news = platform == "news"
    templates = {
        0: _NEWS_NONE if news else _SOCIAL_NONE,
        1: _NEWS_ONE if news else _SOCIAL_ONE,
        2: _NEWS_TWO if news else _SOCIAL_TWO,
    }[n_tickers]
    template = templates[int(rng.integers(len(templates)))]
    # Headlines name the company; chatter mixes cashtags, symbols and names.
    mentions = [names[t] if news else _mention(rng, t, names) for t in tickers]
    return tickers, template.format(**dict(zip("ab", mentions)))


def _identity(
    rng: np.random.Generator, platform: str, promo: bool, day: dt.date, i: int, ts_ms: int, seed: int
) -> tuple[str, str | None, str]:
    """(post_id, author, url) in each platform's own format, unique per (day, i)."""
    serial = (day - EPOCH).days * 100_000 + i
    handle = (
        _HANDLE_HEAD[int(rng.integers(len(_HANDLE_HEAD)))]
        + _HANDLE_TAIL[int(rng.integers(len(_HANDLE_TAIL)))]
        + str(int(rng.integers(1, 1000)))
    )
    if platform == "reddit":
        id36 = _base36(day.toordinal() * 100_000 + i)
        sub = _SUBREDDITS[int(rng.integers(len(_SUBREDDITS)))]
        return f"t3_{id36}", handle, f"https://www.reddit.com/r/{sub}/comments/{id36}/"
    if platform == "x":
        snowflake = ((ts_ms - _X_EPOCH_MS) << 22) | (i & 0x3FFFFF)
        return str(snowflake), handle, f"https://x.com/{handle}/status/{snowflake}"
    if platform == "telegram":
        channels = _TELEGRAM_PROMO if promo else _TELEGRAM
        channel = channels[int(rng.integers(len(channels)))]
        return f"{channel}/{serial}", channel, f"https://t.me/{channel}/{serial}"
    if platform == "youtube":
        digest = hashlib.blake2b(f"{seed}:{day.toordinal()}:{i}".encode(), digest_size=8).digest()
        video = base64.urlsafe_b64encode(digest).decode().rstrip("=")  # 11 chars, like real ids
        channel = _YOUTUBE[int(rng.integers(len(_YOUTUBE)))]
        return video, channel, f"https://www.youtube.com/watch?v={video}"
    host, outlet = _NEWS_OUTLETS[int(rng.integers(len(_NEWS_OUTLETS)))]
    article = str(100_000_000 + serial)
    author = outlet if rng.random() < 0.7 else None  # wire copy often carries no byline
    return article, author, f"https://{host}/markets/stocks/news/articleshow/{article}.cms"


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64), type=pa.int64()).cast(TIMESTAMP_TYPE)


def _lineage(n: int, lineage: dict[str, Any]) -> list[pa.Array]:
    return [
        pa.array(np.full(n, lineage["source"], dtype=object), pa.string()),
        pa.array(np.full(n, lineage["run_id"], dtype=object), pa.string()),
        _timestamps(np.full(n, lineage["ingested_ms"], dtype=np.int64)),
    ]


def _prices_table(cols: dict[str, np.ndarray], masks: dict[str, np.ndarray], lineage: dict[str, Any]) -> pa.Table:
    n = len(cols["ts"])

    def num(name: str, typ: pa.DataType) -> pa.Array:
        mask = masks.get(name)
        return pa.array(cols[name], typ, mask=mask if mask is not None and mask.any() else None)

    arrays = [
        pa.array(cols["ticker"], pa.string()),
        pa.array(np.full(n, "NSE", dtype=object), pa.string()),
        pa.array(np.full(n, "1m", dtype=object), pa.string()),
        _timestamps(cols["ts"]),
        num("open", pa.float64()),
        num("high", pa.float64()),
        num("low", pa.float64()),
        num("close", pa.float64()),
        num("volume", pa.int64()),
        *_lineage(n, lineage),
    ]
    return pa.Table.from_arrays(arrays, schema=PRICES.record_schema)


def _posts_table(posts: dict[str, list[Any]], lineage: dict[str, Any]) -> pa.Table:
    n = len(posts["ts"])
    arrays = [
        pa.array(posts["platform"], pa.string()),
        pa.array(posts["post_id"], pa.string()),
        pa.array(posts["author"], pa.string()),
        pa.array(posts["text"], pa.string()),
        _timestamps(np.array(posts["ts"], dtype=np.int64)),
        pa.array(posts["url"], pa.string()),
        pa.array(posts["engagement"], pa.int64()),
        pa.array(posts["tickers"], pa.list_(pa.string())),
        *_lineage(n, lineage),
    ]
    return pa.Table.from_arrays(arrays, schema=POSTS.record_schema)


def _iso_ist(ts: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as the service spells them: ISO-8601 in IST with its offset."""
    ms = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    local = (ms + 330 * MS_PER_MIN).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(local, unit="ms").astype(str), "+05:30").astype(object)


def to_ndjson(table: pa.Table) -> bytes:
    """The body the simulated service sends: one JSON object per record."""
    if table.num_rows == 0:
        return b""
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            frame[field.name] = _iso_ist(table.column(field.name))
    body = frame.to_json(orient="records", lines=True, force_ascii=False)
    # pandas escapes every '/' ('https:\/\/'); legal JSON, but no real service sends it.
    body = body.replace("\\/", "/")
    return body.encode("utf-8") if body.endswith("\n") else (body + "\n").encode("utf-8")
