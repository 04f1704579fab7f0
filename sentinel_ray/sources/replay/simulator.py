"""The simulated NSE cash market: per-symbol random walks and 1-minute bars, on which the
episodes (`episodes.py`) lay their price and volume effects.

Everything is a pure function of (seed, day, symbols): each random draw comes from
`numpy.random.default_rng([seed, day ordinal, stream, ...])`, never from the clock,
so any day can be generated alone, in any order, on any worker, with the same result.
"""
from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable

import numpy as np

from sentinel_ray import reference
from sentinel_ray.market import MS_PER_DAY, MS_PER_MIN, SESSION_BARS, SESSION_OPEN_MS, is_trading_day, next_trading_day

# The daily random walk starts here; days before it cannot be generated.
EPOCH = dt.date(2020, 1, 1)
# ... and is precomputed up to here (about 6,000 days, a few hundred KB per instance).
HORIZON = dt.date(2036, 12, 31)

TICK = 0.05

# Independent random streams per day, so adding draws to one never shifts another.
(STREAM_EPISODE, STREAM_BARS, STREAM_POSTS, STREAM_BAD, STREAM_SYMBOL, STREAM_WALK, STREAM_GAP,
 STREAM_FILINGS, STREAM_EPISODE_POSTS) = range(9)

# What an episode does to one day's bars: rows (symbol indexes, or a slice for all), a
# log-price bump over the day's SESSION_BARS + 1 path points and a volume multiplier over
# its bars (each 1-D, or one row per symbol).
Effect = tuple["np.ndarray | slice", np.ndarray, np.ndarray]


def day_start_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * MS_PER_DAY


def ms_to_datetime(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=int(ms))


def _symbol_key(symbol: str) -> int:
    # crc32, not hash(): Python's str hash is salted per process.
    return zlib.crc32(symbol.encode())


@dataclass(frozen=True)
class SymbolInfo:
    symbol: str
    name: str
    smallcap: bool


def _symbol_infos(symbols: list[str], smallcaps: Iterable[str] | None) -> list[SymbolInfo]:
    """Names from the reference table; small caps as given, else the table's segment
    (symbols it does not know behave like small caps)."""
    table = reference.symbol_table().to_pydict()
    by_symbol = {s: (n, seg) for s, n, seg in zip(table["symbol"], table["name"], table["segment"])}
    small = set(smallcaps) if smallcaps is not None else None
    infos = []
    for s in symbols:
        name, seg = by_symbol.get(s, (s, "smallcap"))
        infos.append(SymbolInfo(s, name, s in small if small is not None else seg == "smallcap"))
    return infos


def _to_tick(x: np.ndarray, how: Any = np.rint) -> np.ndarray:
    # Second rounding strips float noise (123.45000000000002) so values print as quoted.
    return np.round(how(x / TICK) * TICK, 2)


# --- the market ---------------------------------------------------------------------


class SimulatedMarket:
    """The bars of `symbols` for any day in EPOCH..HORIZON, drawn from `seed`."""

    def __init__(self, seed: int, symbols: list[str], smallcaps: Iterable[str] | None = None) -> None:
        if len(set(symbols)) != len(symbols):
            raise ValueError("replay symbols must be distinct")
        self.seed = seed
        self.symbols = symbols
        self.infos = _symbol_infos(symbols, smallcaps)
        self.index = {s: i for i, s in enumerate(symbols)}
        self._keys = [_symbol_key(s) for s in symbols]

    def rng(self, day: dt.date | None, stream: int, *extra: int) -> np.random.Generator:
        ordinal = 0 if day is None else day.toordinal()
        return np.random.default_rng([self.seed, ordinal, stream, *extra])

    # ---- per-symbol constants --------------------------------------------------------

    @cached_property
    def _params(self) -> dict[str, np.ndarray]:
        """Per-symbol base price, daily and intraday volatility, volume scale."""
        n = len(self.symbols)
        base, vol_scale = np.empty(n), np.empty(n)
        for i, (info, key) in enumerate(zip(self.infos, self._keys)):
            u = self.rng(None, STREAM_SYMBOL, key).random(2)
            lo, hi = (5.0, 200.0) if info.smallcap else (200.0, 4000.0)
            base[i] = np.exp(np.log(lo) + u[0] * np.log(hi / lo))
            # Penny stocks trade many more shares per minute than large caps.
            vlo, vhi = (2e4, 5e5) if info.smallcap else (2e3, 5e4)
            vol_scale[i] = np.exp(np.log(vlo) + u[1] * np.log(vhi / vlo))
        small = np.array([info.smallcap for info in self.infos], dtype=bool)
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
        steps = np.stack([self.rng(None, STREAM_WALK, key).standard_normal(n_days) for key in self._keys]) \
            if self._keys else np.empty((0, n_days))
        steps *= self._params["daily_sigma"][:, None]
        steps[:, weekday >= 5] = 0.0
        walk = np.cumsum(steps, axis=1)
        amplitude = 0.7
        return np.log(self._params["base"])[:, None] + amplitude * np.tanh(walk / amplitude)

    def price_at_open(self, day: dt.date) -> np.ndarray:
        """Each symbol's opening price level of `day` (before its gap)."""
        return np.exp(self._log_open(day))

    def _log_open(self, day: dt.date) -> np.ndarray:
        if not EPOCH <= day <= HORIZON:
            raise ValueError(f"replay covers {EPOCH}..{HORIZON}, not {day}")
        return self._log_opens[:, (day - EPOCH).days]

    def _gap(self, day: dt.date) -> np.ndarray:
        """Overnight gap of each symbol at `day`'s open (the previous close targets the walk)."""
        return np.array([self.rng(day, STREAM_GAP, key).normal(0.0, 0.004) for key in self._keys])

    # ---- prices ------------------------------------------------------------------------

    def bars(self, day: dt.date, effects: Iterable[Effect] = ()) -> dict[str, np.ndarray]:
        """Good 1-minute bars of every symbol, symbol-major, as numpy columns (none on a closed day)."""
        if not is_trading_day(day) or not self.symbols:
            empty = {k: np.empty(0) for k in ("open", "high", "low", "close")}
            return {"ticker": np.empty(0, dtype=object), "ts": np.empty(0, np.int64), **empty,
                    "volume": np.empty(0, np.int64)}
        n_sym, t = len(self.symbols), SESSION_BARS
        p = self._params
        start = self._log_open(day) + self._gap(day)
        target = self._log_open(next_trading_day(day))  # tomorrow's open before its gap: continuity
        # Per-symbol streams: a symbol's bars do not depend on which others are simulated.
        draws = [self.rng(day, STREAM_BARS, key) for key in self._keys]
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

        for rows, bump, vmult in effects:
            log_path[rows] += bump
            volume[rows] *= vmult

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
