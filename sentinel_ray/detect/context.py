"""What a bar's own features cannot say: how the rest of the market moved that minute, and
whether the company told the exchange something that explains the move.

    market_relative(features_1m)   each return minus the median return of every ticker in
                                   the batch at the same minute: a market rally lifts every
                                   symbol, a pump lifts one
    filing_age_min(features_1m, filings)
                                   trading minutes since the ticker's latest price-sensitive
                                   filing at or before the bar's close (NaN: none in reach);
                                   results, orders, buybacks explain a move, a pump has none
    is_smallcap(tickers)           the reference table's segment: pumps need a thin float

All point in time (the same minute's bars, filings already disseminated), pure over Arrow,
so the stream and the backfill derive the same values. Market-relative returns need the
minute's bars of the whole universe in one batch: a backfill's day and a stream batch of
every ticker's bars both hold them.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray import reference
from sentinel_ray.detect.alerts import session_index
from sentinel_ray.market import MS_PER_MIN, SESSION_BARS
from sentinel_ray.schemas import TIMESTAMP_TYPE

RETURNS = ("ret_15m", "ret_60m", "ret_prev_close")
# A market-wide median needs enough symbols to mean anything.
MIN_MARKET_TICKERS = 10
# Price-sensitive disclosures (SEBI LODR regulation 30): results, orders, corporate actions,
# deals, approvals. Procedural ones (intimations, certificates, newspaper copies, meeting
# notices) move nothing, even when they name results ("to consider quarterly results").
MATERIAL = re.compile(r"result|order|buyback|buy-back|acqui|approv|merger|amalgamat|dividend|bonus|split|"
                      r"fund rais|qip|preferential|stake|allot|open offer|takeover|contract|delist|guidance",
                      re.IGNORECASE)
ROUTINE = re.compile(r"intimation|trading window|newspaper|certificate|loss of share|analyst|"
                     r"shareholders meeting|general meeting|investor meet|con\. call", re.IGNORECASE)
# How long a disclosure explains a move: the session of the news and the fade after it.
FILING_EXPLAINS_MIN = 3 * SESSION_BARS


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(pc.cast(table.column(name), pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _ts_ms(table: pa.Table) -> np.ndarray:
    return pc.cast(pc.cast(table.column("ts"), TIMESTAMP_TYPE), pa.int64()).to_numpy(zero_copy_only=False)


def group_median(groups: np.ndarray, values: np.ndarray, *, min_count: int = 1) -> np.ndarray:
    """Per row, the median of the non-NaN `values` of its group (NaN under `min_count` values)."""
    n = len(values)
    if n == 0:
        return np.zeros(0)
    finite = ~np.isnan(values)
    order = np.lexsort((np.where(finite, values, np.inf), ~finite, groups))  # per group: values, NaN last
    g = groups[order]
    first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.add.reduceat(finite[order].astype(np.int64), first)
    sorted_values = values[order]
    lo = first + np.maximum(counts - 1, 0) // 2
    hi = first + counts // 2
    hi = np.where(counts > 0, np.minimum(hi, first + np.maximum(counts - 1, 0)), lo)
    median = np.where(counts >= min_count, (sorted_values[lo] + sorted_values[hi]) / 2.0, np.nan)
    out = np.empty(n)
    out[order] = np.repeat(median, np.diff(np.r_[first, n]))
    return out


def market_relative(features_1m: pa.Table) -> dict[str, np.ndarray]:
    """`excess_<return>` per row: the return minus the median of the batch's tickers at that ts
    (the return itself where fewer than MIN_MARKET_TICKERS have one)."""
    ts = _ts_ms(features_1m)
    out = {}
    for name in RETURNS:
        x = _floats(features_1m, name)
        median = group_median(ts, x, min_count=MIN_MARKET_TICKERS)
        out[f"excess_{name}"] = x - np.nan_to_num(median, nan=0.0)
    return out


def material_filings(filings: pa.Table | None) -> pa.Table:
    """The price-sensitive filings (ticker, ts) among `filings`."""
    empty = pa.table({"ticker": pa.array([], pa.string()), "ts": pa.array([], TIMESTAMP_TYPE)})
    if filings is None or filings.num_rows == 0:
        return empty
    def text(name: str) -> list[str]:
        if name not in filings.column_names:
            return [""] * filings.num_rows
        return pc.fill_null(pc.cast(filings.column(name), pa.string()), "").to_pylist()

    subject, details = text("subject"), text("details")
    keep = [bool(MATERIAL.search(f"{s} {d}")) and not ROUTINE.search(s) for s, d in zip(subject, details)]
    picked = filings.filter(pa.array(keep, pa.bool_()))
    picked = picked.filter(pc.is_valid(picked.column("ticker")))
    return pa.table({"ticker": pc.cast(picked.column("ticker"), pa.string()),
                     "ts": pc.cast(picked.column("ts"), TIMESTAMP_TYPE)})


def filing_age_min(features_1m: pa.Table, filings: pa.Table | None) -> np.ndarray:
    """Trading minutes from each bar's ticker's latest material filing (at or before the bar's
    close) to the bar; NaN where there is none within FILING_EXPLAINS_MIN."""
    n = features_1m.num_rows
    out = np.full(n, np.nan)
    material = material_filings(filings)
    if n == 0 or material.num_rows == 0:
        return out
    tickers = features_1m.column("ticker").to_pylist()
    bar_ms = _ts_ms(features_1m)
    bar_idx = session_index(bar_ms)
    f_tickers = material.column("ticker").to_pylist()
    f_ms = _ts_ms(material)
    f_idx = session_index(f_ms)
    by_ticker: dict[str, list[int]] = {}
    for i, t in enumerate(f_tickers):
        by_ticker.setdefault(t, []).append(i)
    rows_of: dict[str, list[int]] = {}
    for i, t in enumerate(tickers):
        if t in by_ticker:
            rows_of.setdefault(t, []).append(i)
    for t, rows in rows_of.items():
        fi = np.asarray(by_ticker[t])
        fi = fi[np.argsort(f_ms[fi], kind="stable")]
        rows_arr = np.asarray(rows)
        # latest filing disseminated before the bar's close
        k = np.searchsorted(f_ms[fi], bar_ms[rows_arr] + MS_PER_MIN, side="left") - 1
        has = k >= 0
        age = np.where(has, bar_idx[rows_arr] - f_idx[fi[np.maximum(k, 0)]], np.nan)
        out[rows_arr] = np.where(has & (age <= FILING_EXPLAINS_MIN), age, np.nan)
    return out


def is_smallcap(tickers: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where the reference table does not list the symbol among the large caps (NIFTY 50)."""
    large = pa.array(reference.symbols("nifty50"), pa.string())
    return ~pc.is_in(pc.cast(tickers, pa.string()), value_set=large).to_numpy(zero_copy_only=False)
