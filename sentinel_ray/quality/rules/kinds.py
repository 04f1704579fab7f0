"""The simple rule kinds: one row at a time (not_null, type, range, allowed, regex, text_length,
cross_field, freshness, session) and `unique` over the rows other rules kept."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field, model_validator

from sentinel_ray import market
from sentinel_ray.quality.rules.arrays import Mask, any_of, definite, int_numpy, single_chunk, valid_numpy
from sentinel_ray.quality.rules.base import NUMBER_KINDS, STRING_KINDS, Rule, require, symbol_columns
from sentinel_ray.quality.rules.context import Context
from sentinel_ray.quality.rules.params import Clock, Duration, Moment, UtcOffset, Weekday
from sentinel_ray.schemas import TIMESTAMP_TYPE, Dataset, Kind

_MS_LIMIT = 2**62  # epoch ms beyond this (~146 million years) cannot be a real time: clipped before arithmetic


class NotNullRule(Rule):
    """Required values: null (and, for text, empty) fails. A value conform could not read is
    reported as bad_type, not as absent."""

    kind: Literal["not_null"] = "not_null"
    columns: list[str] = Field(min_length=1)
    empty_is_null: bool = True
    blank_is_null: bool = False  # whitespace-only text counts as absent too

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        out: Mask | None = None
        symbols = symbol_columns(self.dataset)
        for name in self.columns:
            col = table.column(name)
            if name in symbols and not self.blank_is_null:
                # few distinct values: look each up once (the codes serve keys and sets too)
                absent = (lambda d: pc.equal(d, "")) if self.empty_is_null else pc.is_null
                flags = ctx.codes(table, name).flags(absent, null=True)
                if flags is not None:
                    out = pa.array(flags) if out is None else pc.or_kleene(out, pa.array(flags))
                continue
            missing = pc.is_null(col)
            if pa.types.is_string(col.type) and (self.empty_is_null or self.blank_is_null):
                text = pc.utf8_trim_whitespace(col) if self.blank_is_null else col
                missing = pc.or_kleene(missing, pc.equal(text, ""))  # an empty id or symbol names nothing
            out = missing if out is None else pc.or_kleene(out, missing)
        if out is None:
            return np.zeros(table.num_rows, dtype=bool)
        if ctx.bad_type is not None:
            out = pc.and_(definite(out, table.num_rows), pc.invert(ctx.bad_type))
        return out

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, None, "columns")


class TypeRule(Rule):
    """A value was present but could not be read as its column's type (`clean.conform`)."""

    kind: Literal["type"] = "type"

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        return ctx.bad_type if ctx.bad_type is not None else np.zeros(table.num_rows, dtype=bool)


class RangeRule(Rule):
    """Numbers within [min, max], each bound inclusive unless said otherwise; any listed column
    failing fails the row."""

    kind: Literal["range"] = "range"
    columns: list[str] = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True

    @model_validator(mode="after")
    def _a_bound(self) -> "RangeRule":
        if self.min is None and self.max is None:
            raise ValueError("a range needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        fails: list[Mask] = []
        for name in self.columns:
            col = table.column(name)
            if pa.types.is_integer(col.type) and not all(_int_bound(b) for b in (self.min, self.max)):
                # Arrow compares int64 with a float by a checked cast that refuses values past
                # 2**53 (a volume of 2**63-1): compare as floats, rounded, instead
                col = pc.cast(col, pa.float64(), safe=False)
            lower = [] if self.min is None else [
                (pc.less if self.min_inclusive else pc.less_equal, _bound(self.min, col.type))]
            upper = [] if self.max is None else [
                (pc.greater if self.max_inclusive else pc.greater_equal, _bound(self.max, col.type))]
            fails += _outside(col, lower, upper)
        return any_of(fails) if fails else np.zeros(table.num_rows, dtype=bool)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, NUMBER_KINDS, "columns")


class AllowedRule(Rule):
    """Values from a fixed set: listed `values`, or `values_from` reference data
    (`known_tickers`: the shipped symbol list, `exchanges`: NSE and BSE)."""

    kind: Literal["allowed"] = "allowed"
    columns: list[str] = Field(min_length=1)
    values: list[str] | None = None
    values_from: Literal["known_tickers", "exchanges"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "AllowedRule":
        if (self.values is None) == (self.values_from is None):
            raise ValueError("give exactly one of `values` and `values_from`")
        return self

    def value_set(self, ctx: Context) -> pa.Array:
        if self.values is not None:
            return pa.array(self.values, pa.string())
        if self.values_from == "known_tickers":
            return ctx.tickers()
        return pa.array(market.EXCHANGES, pa.string())

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        allowed = self.value_set(ctx)
        fails = np.zeros(table.num_rows, dtype=bool)
        for name in self.columns:
            # null is not_null's call, not a value outside the set
            fails |= ctx.codes(table, name).lookup(lambda distinct: pc.invert(pc.is_in(distinct, allowed)), null=False)
        return fails

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, STRING_KINDS, "columns")


class RegexRule(Rule):
    """Text matching `pattern` and not matching `forbid` (RE2 syntax, searched: anchor with ^...$
    to match whole values); either may be left out, not both."""

    kind: Literal["regex"] = "regex"
    columns: list[str] = Field(min_length=1)
    pattern: str | None = None
    forbid: str | None = None

    @model_validator(mode="after")
    def _compiles(self) -> "RegexRule":
        if self.pattern is None and self.forbid is None:
            raise ValueError("a regex rule needs `pattern`, `forbid` or both")
        for what, regex in (("pattern", self.pattern), ("forbid", self.forbid)):
            if regex is None:
                continue
            try:
                pc.match_substring_regex(pa.array([""], pa.string()), regex)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ValueError(f"{what} {regex!r} does not compile: {e}") from None
        return self

    def _fails(self, values: pa.Array | pa.ChunkedArray) -> Mask:
        fails: list[Mask] = []
        if self.pattern is not None:
            fails.append(pc.invert(pc.match_substring_regex(values, self.pattern)))
        if self.forbid is not None:
            fails.append(pc.match_substring_regex(values, self.forbid))
        return any_of(fails)

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        symbols = symbol_columns(self.dataset)
        fails: list[Mask] = []
        for name in self.columns:
            if name in symbols:  # few distinct values: match each once
                fails.append(ctx.codes(table, name).lookup(self._fails, null=False))
            else:
                fails.append(self._fails(table.column(name)))
        return any_of(fails)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, STRING_KINDS, "columns")


class TextLengthRule(Rule):
    """Text length in characters (code points, not bytes) after trimming whitespace."""

    kind: Literal["text_length"] = "text_length"
    columns: list[str] = Field(min_length=1)
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        fails = []
        for name in self.columns:
            chars = pc.utf8_length(pc.utf8_trim_whitespace(table.column(name)))
            if self.min is not None:
                fails.append(pc.less(chars, self.min))
            if self.max is not None:
                fails.append(pc.greater(chars, self.max))
        return any_of(fails) if fails else np.zeros(table.num_rows, dtype=bool)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, STRING_KINDS, "columns")


_OPS = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal, "==": pc.equal,
        "!=": pc.not_equal}


class CrossFieldRule(Rule):
    """Relations between columns of one row. `check: ohlc`: low <= open, close <= high.
    `check: compare`: `left op right` must hold (op one of < <= > >= == !=)."""

    kind: Literal["cross_field"] = "cross_field"
    check_: Literal["ohlc", "compare"] = Field(alias="check")
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    left: str | None = None
    op: Literal["<", "<=", ">", ">=", "==", "!="] | None = None
    right: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _complete(self) -> "CrossFieldRule":
        if self.check_ == "compare" and None in (self.left, self.op, self.right):
            raise ValueError("check: compare needs `left`, `op` and `right`")
        return self

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        if self.check_ == "compare":
            holds = _OPS[self.op](table.column(self.left), table.column(self.right))  # type: ignore[index]
            return pc.invert(holds)
        o, h, lo, c = (table.column(n) for n in (self.open, self.high, self.low, self.close))
        consistent = pc.and_(
            pc.and_(pc.less_equal(lo, o), pc.less_equal(o, h)),
            pc.and_(pc.less_equal(lo, c), pc.less_equal(c, h)),
        )
        return pc.invert(consistent)

    def columns_used(self) -> list[str]:
        if self.check_ == "compare":
            return [self.left, self.right]  # type: ignore[list-item]
        return [self.open, self.high, self.low, self.close]

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns_used():
            require(ds, name, None if self.check_ == "compare" else NUMBER_KINDS, "columns")


class FreshnessRule(Rule):
    """Event time no later than now + `max_future` (clock skew), when set no older than
    now - `max_age`, and when set not before the fixed moment `not_before` (a date is its
    midnight UTC): the times no real source produces, like 1970 or year 1."""

    kind: Literal["freshness"] = "freshness"
    columns: list[str] = Field(default_factory=lambda: ["ts"], min_length=1)
    max_future: Duration | None = None
    max_age: Duration | None = None
    not_before: Moment | None = None

    @model_validator(mode="after")
    def _a_limit(self) -> "FreshnessRule":
        if self.max_future is None and self.max_age is None and self.not_before is None:
            raise ValueError("freshness needs `max_future`, `max_age`, `not_before` or some of them")
        return self

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        now = ctx.now_utc
        fails: list[Mask] = []
        future = self.max_future
        lower = [(pc.less, pa.scalar(t, type=TIMESTAMP_TYPE)) for t in
                 (None if self.max_age is None else now - self.max_age, self.not_before) if t is not None]
        upper = [] if future is None else [(pc.greater, pa.scalar(now + future, type=TIMESTAMP_TYPE))]
        for name in self.columns:
            fails += _outside(table.column(name), lower, upper)
        return any_of(fails) if fails else np.zeros(table.num_rows, dtype=bool)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, (Kind.TIMESTAMP,), "columns")


class SessionRule(Rule):
    """Bar times inside the trading session (`open` <= local time < `close`) on `weekdays`.
    Local time is UTC + `utc_offset` (IST has no daylight saving). Use `when` to limit it to
    intraday bars: daily bars are stamped at midnight by many sources."""

    kind: Literal["session"] = "session"
    columns: list[str] = Field(default_factory=lambda: ["ts"], min_length=1)
    open: Clock = market.SESSION_OPEN
    close: Clock = market.SESSION_CLOSE
    utc_offset: UtcOffset = market.IST_OFFSET
    weekdays: list[Weekday] = Field(default_factory=lambda: list(market.TRADING_WEEKDAYS))

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        open_ms = (self.open.hour * 60 + self.open.minute) * 60_000 + self.open.second * 1000
        close_ms = (self.close.hour * 60 + self.close.minute) * 60_000 + self.close.second * 1000
        offset_ms = int(self.utc_offset.total_seconds() * 1000)
        out = np.zeros(table.num_rows, dtype=bool)
        for name in self.columns:
            # Integer arithmetic on epoch ms: no time-zone database lookups per row.
            col = single_chunk(table.column(name))
            ms = int_numpy(pc.cast(col, pa.int64()))
            if ms.size and (ms.min() < -_MS_LIMIT or ms.max() > _MS_LIMIT):
                # int64-extreme times (a NaT sent as its raw value) would overflow `+ offset`
                ms = np.clip(ms, -_MS_LIMIT, _MS_LIMIT)
            local = ms + offset_ms
            days = local // market.MS_PER_DAY  # floor division: right for times before 1970 too
            ms_of_day = local - days * market.MS_PER_DAY
            outside = (ms_of_day < open_ms) | (ms_of_day >= close_ms)
            if len(self.weekdays) < 7 and days.size:
                open_day = np.zeros(7, dtype=bool)
                open_day[self.weekdays] = True
                first, last = int(days.min()), int(days.max())
                if last - first < max(days.size, 366):
                    # one weekday lookup per calendar day in the batch, not per row
                    calendar = open_day[(np.arange(first, last + 1) + 3) % 7]  # 1970-01-01 was a Thursday
                    outside |= ~calendar[days - first]
                else:
                    # a batch spanning more days than it has rows (one bad time far away suffices):
                    # a calendar that long could not even be allocated, so per row
                    outside |= ~open_day[(days + 3) % 7]
            if col.null_count:
                outside &= valid_numpy(col)
            out |= outside
        return out

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, (Kind.TIMESTAMP,), "columns")


class UniqueRule(Rule):
    """Key columns unique among the rows that pass every other reject rule: the first
    occurrence is kept, later ones fail. Rows with a null key part never fail here."""

    kind: Literal["unique"] = "unique"
    columns: list[str] = Field(min_length=1)

    after_others: ClassVar[bool] = True

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        n = table.num_rows
        out = np.zeros(n, dtype=bool)
        if n < 2:
            return out
        keys = ctx.sorted_keys(table, tuple(self.columns))
        order, group, last = keys.kept(ctx)
        repeat = (group[1:] == group[:-1]) & (last[1:] == last[:-1])
        if not repeat.any():
            return out  # all keys unique: the common case
        out[order[1:][repeat]] = True
        if keys.has_null is not None:
            out &= ~keys.has_null
        return out

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            require(ds, name, tuple(k for k in Kind if k is not Kind.SYMBOLS), "columns")


Check = tuple[Callable[[Any, Any], Any], pa.Scalar]  # (comparison that fails a value, bound)


def _outside(col: pa.ChunkedArray | pa.Array, lower: list[Check], upper: list[Check]) -> list[Mask]:
    """Per-row masks of the bound checks some value of `col` fails. The column's extremes
    first: on clean data (nearly always) no bound is crossed and no per-row comparison is made."""
    fails: list[Mask] = []
    both = None if pa.types.is_float64(col.type) else pc.min_max(col)  # one pass: fast on integers and times
    for checks, extreme in ((lower, "min"), (upper, "max")):
        if not checks:
            continue
        value = both[extreme] if both is not None else _float_extreme(col, extreme)
        if not value.is_valid:  # empty or all null: nothing fails
            continue
        fails += [fail(col, bound) for fail, bound in checks if fail(value, bound).as_py()]
    return fails


def _float_extreme(col: pa.ChunkedArray | pa.Array, which: Literal["min", "max"]) -> pa.Scalar:
    """The least or greatest value of a float64 column, or a bound of it; null when it has none.

    Arrow's float min/max costs five comparisons; numpy's NaN-skipping reduction over the
    value buffer costs less than one. The buffer's null slots hold arbitrary values, so the
    result may lie beyond the real extreme: that costs a per-row check, never a missed fail.
    All-NaN gives NaN, which fails no comparison, as NaN does per row.
    """
    chunks = [c for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col]) if c.null_count < len(c)]
    if not chunks:  # empty or all null
        return pa.scalar(None, col.type)
    reduce = np.fmin.reduce if which == "min" else np.fmax.reduce
    values = [reduce(np.frombuffer(c.buffers()[1], np.float64, len(c), c.offset * 8)) for c in chunks]
    return pa.scalar(float(reduce(np.array(values))), col.type)


def _int_bound(value: float | None) -> bool:
    """No bound, or one an int64 column can be compared with exactly."""
    return value is None or (float(value).is_integer() and -(2**63) <= value < 2**63)


def _bound(value: float, typ: pa.DataType) -> pa.Scalar:
    if pa.types.is_integer(typ) and _int_bound(value):
        return pa.scalar(int(value), typ)
    return pa.scalar(float(value), pa.float64())
