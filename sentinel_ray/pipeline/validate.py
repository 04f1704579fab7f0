"""Row validation: why (if at all) each row of a conformed batch is rejected.

Each rule is declared once in `RULES` as (reason, datasets, mask function). Every mask
is computed over whole columns, then the masks are folded from the lowest priority to
the highest so each row carries the first failing reason in `REASON_ORDER`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.pipeline.clean import dedup_mask
from sentinel_ray.pipeline.reasons import REASON_ORDER, Reason
from sentinel_ray.reference import EXCHANGES
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, TIMESTAMP_TYPE, Dataset, Kind

Mask = pa.Array | pa.ChunkedArray

MS_PER_DAY = 86_400_000
# NSE/BSE continuous session 09:15-15:30 IST, i.e. 03:45-10:00 UTC (IST has no DST).
SESSION_OPEN_MS = (3 * 60 + 45) * 60_000
SESSION_CLOSE_MS = 10 * 60 * 60_000
TEXT_MIN_CHARS = 5
TEXT_MAX_CHARS = 10_000
OHLC = ("open", "high", "low", "close")


@dataclass
class Context:
    """What the rules may look at besides the table."""

    table: pa.Table
    ds: Dataset
    now: datetime
    known_tickers: pa.Array
    bad_type: pa.Array | None
    future_skew: timedelta
    rejected: Mask | None = None  # rows failing any other rule; set before `after_others` rules run

    def col(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)


def _missing_field(ctx: Context) -> Mask:
    mask: Mask | None = None
    for name in ctx.ds.required_columns:
        col = ctx.col(name)
        missing = pc.is_null(col)
        if ctx.ds.field(name).kind in (Kind.STRING, Kind.SYMBOL):
            missing = pc.or_kleene(missing, pc.equal(col, ""))  # an empty id or symbol names nothing
        mask = missing if mask is None else pc.or_kleene(mask, missing)
    assert mask is not None
    if ctx.bad_type is not None:
        # conform nulls unreadable values; that row's problem is the type, not absence.
        mask = pc.and_(mask, pc.invert(ctx.bad_type))
    return mask


def _bad_type(ctx: Context) -> Mask:
    return ctx.bad_type if ctx.bad_type is not None else pa.nulls(ctx.table.num_rows, pa.bool_())


def _unknown_exchange(ctx: Context) -> Mask:
    return pc.invert(pc.is_in(ctx.col("exchange"), pa.array(EXCHANGES)))


def _unknown_ticker(ctx: Context) -> Mask:
    return pc.invert(pc.is_in(ctx.col("ticker"), ctx.known_tickers))


def _non_positive_price(ctx: Context) -> Mask:
    return _any_of(pc.less_equal(ctx.col(c), 0.0) for c in OHLC)


def _negative_volume(ctx: Context) -> Mask:
    return pc.less(ctx.col("volume"), 0)


def _ohlc_inconsistent(ctx: Context) -> Mask:
    o, h, l, c = (ctx.col(name) for name in OHLC)
    consistent = pc.and_(
        pc.and_(pc.less_equal(l, o), pc.less_equal(o, h)),
        pc.and_(pc.less_equal(l, c), pc.less_equal(c, h)),
    )
    return pc.invert(consistent)


def _future_timestamp(ctx: Context) -> Mask:
    now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=timezone.utc)
    limit = pa.scalar(now + ctx.future_skew, type=TIMESTAMP_TYPE)
    return pc.greater(ctx.col(ctx.ds.time_column), limit)


def _outside_session(ctx: Context) -> Mask:
    # Integer arithmetic on epoch ms: no time-zone database lookups per row.
    ms = pc.cast(ctx.col("ts"), pa.int64())
    days = pc.floor(pc.divide(pc.cast(ms, pa.float64()), float(MS_PER_DAY)))
    ms_of_day = pc.subtract(ms, pc.multiply(pc.cast(days, pa.int64()), MS_PER_DAY))
    # 1970-01-01 was a Thursday: (days + 3) mod 7 is 0 on Mondays, 5 and 6 at the weekend.
    weekday = pc.subtract(pc.add(days, 3.0), pc.multiply(pc.floor(pc.divide(pc.add(days, 3.0), 7.0)), 7.0))
    outside = _any_of(
        [
            pc.less(ms_of_day, SESSION_OPEN_MS),
            pc.greater_equal(ms_of_day, SESSION_CLOSE_MS),
            pc.greater_equal(weekday, 5.0),
        ]
    )
    # Only intraday bars have a session; daily bars are stamped at midnight by many sources.
    return pc.and_(pc.equal(ctx.col("interval"), "1m"), outside)


def _text_length(ctx: Context) -> Mask:
    chars = pc.utf8_length(pc.utf8_trim_whitespace(ctx.col("text")))  # code points, not bytes
    return pc.or_(pc.less(chars, TEXT_MIN_CHARS), pc.greater(chars, TEXT_MAX_CHARS))


def _duplicate(ctx: Context) -> Mask:
    # Only rows that pass every other rule compete: a copy of a rejected row is judged
    # on its own merits and keeps its own reason.
    assert ctx.rejected is not None
    keep = pc.invert(ctx.rejected).to_numpy(zero_copy_only=False)
    n = ctx.table.num_rows
    if keep.all():
        return dedup_mask(ctx.table, ctx.ds)
    rows = np.flatnonzero(keep)
    dup = np.zeros(n, dtype=bool)
    candidates = ctx.table.select(list(ctx.ds.natural_key)).take(rows)
    dup[rows] = dedup_mask(candidates, ctx.ds).to_numpy(zero_copy_only=False)
    return pa.array(dup)


def _any_of(masks) -> Mask:  # type: ignore[no-untyped-def]
    out: Mask | None = None
    for m in masks:
        out = m if out is None else pc.or_kleene(out, m)
    assert out is not None
    return out


@dataclass(frozen=True)
class Rule:
    reason: Reason
    datasets: frozenset[str]
    mask: Callable[[Context], Mask]
    after_others: bool = False  # needs to know which rows every other rule rejected


_ALL = frozenset({PRICES.name, POSTS.name, FILINGS.name})
_EXCHANGE = frozenset({PRICES.name, FILINGS.name})
_PRICES = frozenset({PRICES.name})
_POSTS = frozenset({POSTS.name})

RULES: tuple[Rule, ...] = (
    Rule(Reason.MISSING_FIELD, _ALL, _missing_field),
    Rule(Reason.BAD_TYPE, _ALL, _bad_type),
    Rule(Reason.UNKNOWN_EXCHANGE, _EXCHANGE, _unknown_exchange),
    Rule(Reason.UNKNOWN_TICKER, _PRICES, _unknown_ticker),
    Rule(Reason.NON_POSITIVE_PRICE, _PRICES, _non_positive_price),
    Rule(Reason.NEGATIVE_VOLUME, _PRICES, _negative_volume),
    Rule(Reason.OHLC_INCONSISTENT, _PRICES, _ohlc_inconsistent),
    Rule(Reason.FUTURE_TIMESTAMP, _ALL, _future_timestamp),
    Rule(Reason.OUTSIDE_SESSION, _PRICES, _outside_session),
    Rule(Reason.TEXT_LENGTH, _POSTS, _text_length),
    Rule(Reason.DUPLICATE, _ALL, _duplicate, after_others=True),
)
assert [r.reason for r in RULES] == list(REASON_ORDER), "RULES must follow REASON_ORDER"

_REASON_STRINGS = pa.array([r.value for r in REASON_ORDER], pa.string())


def reject_reasons(
    table: pa.Table,
    ds: Dataset,
    *,
    now: datetime,
    known_tickers: pa.Array,
    bad_type: pa.Array | None = None,
    future_skew: timedelta = timedelta(minutes=5),
) -> pa.Array:
    """Per row, the first failing `Reason` (as a string) or null when the row is valid.

    `table` must be conformed (`clean.conform`) so every column exists with its type.
    """
    n = table.num_rows
    ctx = Context(table, ds, now, known_tickers, bad_type, future_skew)
    rules = [r for r in RULES if ds.name in r.datasets]
    masks: dict[Reason, Mask] = {}
    for rule in (r for r in rules if not r.after_others):
        masks[rule.reason] = _definite(rule.mask(ctx), n)
    ctx.rejected = _any_of(masks.values()) if masks else pa.array(np.zeros(n, dtype=bool))
    for rule in (r for r in rules if r.after_others):
        masks[rule.reason] = _definite(rule.mask(ctx), n)
    return _first_reason(rules, masks, n)


def _definite(mask: Mask, n: int) -> pa.Array:
    """A null comparison (null input) is 'rule not violated': absence is missing_field's job."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    return pc.fill_null(mask, False) if mask.null_count else mask


def _first_reason(rules: list[Rule], masks: dict[Reason, Mask], n: int) -> pa.Array:
    # Fold small integer codes from the lowest priority up, so a higher-priority reason
    # overwrites a lower one; map codes to strings once at the end (cheaper than folding strings).
    code: pa.Array = pa.nulls(n, pa.int8())
    for rule in reversed(rules):
        mask = masks[rule.reason]
        if not pc.any(mask).as_py():
            continue  # the common case on clean data: no work at all
        code = pc.if_else(mask, pa.scalar(REASON_ORDER.index(rule.reason), pa.int8()), code)
    return pc.take(_REASON_STRINGS, code)
