"""Declarative data-quality rules per dataset, evaluated vectorised on Arrow.

A rule is a small spec (`name`, `kind`, `severity`, columns, parameters) read from YAML:
the shipped `default_rules.yaml`, then an optional override file (`quality_rules_file`
setting) merged into it by rule name. Each kind is a class here whose `mask(table, ctx)`
says, for every row at once, whether the row fails (True) or not.

A `RuleSet` holds one dataset's rules in order. `RuleSet.evaluate` gives each row the
reason code of the first failing `reject` rule (the row goes to quarantine) and counts
the rows each `warn` rule flags (the row is kept). A rule that needs to know which rows
every other rule rejected (`unique`, `price_jump`) runs after those, on the survivors
only, so a copy of a rejected row is judged on its own merits.

A null value never fails a value rule: absence is `not_null`'s business, so a row with a
missing price says missing_field and not also non_positive_price.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Iterator, Literal, Mapping, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from sentinel_ray import reference
from sentinel_ray.schemas import DATA_DATASETS, TIMESTAMP_TYPE, Dataset, Kind, dataset

DEFAULT_RULES_FILE = "default_rules.yaml"
MS_PER_DAY = 86_400_000
_NAME_RE = r"^[a-z][a-z0-9_]*$"
_STRING_KINDS = (Kind.STRING, Kind.SYMBOL)
_NUMBER_KINDS = (Kind.FLOAT, Kind.INT)

Mask = pa.Array | pa.ChunkedArray | np.ndarray


class RulesError(ValueError):
    """A rules file is unreadable or a rule in it is invalid; the message names file, dataset and rule."""


# --- evaluation context ---------------------------------------------------------------


@dataclass
class Context:
    """What rules may look at besides the table.

    `bad_type` is `clean.conform`'s per-row mask of unreadable values. `future_skew`, when
    given, replaces every freshness rule's `max_future` (the legacy `reject_reasons` knob).
    """

    now: datetime
    known_tickers: pa.Array | None = None
    bad_type: pa.Array | None = None
    future_skew: timedelta | None = None
    # Set while a RuleSet evaluates: rows rejected by the rules that ran before (numpy bool).
    rejected: np.ndarray | None = None
    _keys: dict[tuple[str, ...], "_SortedKeys"] = field(default_factory=dict, init=False, repr=False)
    _codes: dict[str, "_Codes"] = field(default_factory=dict, init=False, repr=False)
    _table: pa.Table | None = field(default=None, init=False, repr=False)  # what the caches describe

    @property
    def now_utc(self) -> datetime:
        return self.now if self.now.tzinfo else self.now.replace(tzinfo=timezone.utc)

    def tickers(self) -> pa.Array:
        return self.known_tickers if self.known_tickers is not None else reference.known_tickers()

    def kept(self) -> np.ndarray | None:
        """Rows no earlier reject rule has rejected (None: all of them)."""
        if self.rejected is None or not self.rejected.any():
            return None
        return ~self.rejected

    def sorted_keys(self, table: pa.Table, columns: tuple[str, ...]) -> "_SortedKeys":
        """The rows not rejected so far, ordered by `columns` (the last one is the fine order,
        e.g. time). Built once per table and column list, shared by the rules that need it."""
        self._bind(table)
        if columns not in self._keys:
            self._keys[columns] = _SortedKeys.build(table, columns, self)
        return self._keys[columns]

    def codes(self, table: pa.Table, name: str) -> "_Codes":
        """Dense codes of a low-cardinality column (symbols, keys, times), computed once per table."""
        self._bind(table)
        if name not in self._codes:
            self._codes[name] = _Codes.of(table.column(name))
        return self._codes[name]

    def _bind(self, table: pa.Table) -> None:
        # The caches belong to one table: a context reused for another starts afresh.
        if self._table is not table:
            self._table, self._codes, self._keys = table, {}, {}


# --- rule kinds -----------------------------------------------------------------------


def _parse_duration(value: Any) -> Any:
    """'90s', '5m', '2h', '30d', '1w' or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*", value)
        if m:
            unit = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
            return timedelta(**{unit[m.group(2)]: float(m.group(1))})
        raise ValueError(f"duration {value!r}: write e.g. '90s', '5m', '2h' or '30d'")
    return value


def _parse_clock(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 9:15 as the base-60 integer 555, i.e. minutes: take it as such.
    if isinstance(value, int) and not isinstance(value, bool):
        return time(value // 60, value % 60)
    return value


def _parse_offset(value: Any) -> Any:
    if isinstance(value, str):
        m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", value.strip())
        if not m:
            raise ValueError(f"utc_offset {value!r}: write e.g. '+05:30'")
        sign = -1 if m.group(1) == "-" else 1
        return timedelta(minutes=sign * (int(m.group(2)) * 60 + int(m.group(3))))
    return _parse_duration(value)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_weekday(value: Any) -> Any:
    if isinstance(value, str) and value[:3].lower() in _WEEKDAYS:
        return _WEEKDAYS.index(value[:3].lower())
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
Clock = Annotated[time, BeforeValidator(_parse_clock)]
Weekday = Annotated[int, BeforeValidator(_parse_weekday), Field(ge=0, le=6)]


class Rule(BaseModel):
    """Fields every rule has. Subclasses add their parameters and `_mask`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_RE)
    kind: str
    dataset: str
    reason: str = Field("", pattern=r"^([a-z][a-z0-9_]*)?$", description="code stored with a rejected row; "
                                                                          "default: the rule's name")
    severity: Literal["reject", "warn"] = "reject"
    when: dict[str, list[str]] | None = Field(None, description="only rows whose column holds one of these values")
    description: str = ""

    # Needs `ctx.rejected` (rows every earlier reject rule rejected): runs after the others.
    after_others: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _column_shorthand(cls, data: Any) -> Any:
        # `column: x` is short for `columns: [x]`
        if isinstance(data, dict) and "column" in data and "columns" in cls.model_fields:
            data = dict(data)
            if "columns" in data:
                raise ValueError("give `column` or `columns`, not both")
            data["columns"] = [data.pop("column")]
        return data

    @model_validator(mode="after")
    def _default_reason(self) -> "Rule":
        if not self.reason:
            object.__setattr__(self, "reason", self.name)
        return self

    @property
    def rejects(self) -> bool:
        return self.severity == "reject"

    def mask(self, table: pa.Table, ctx: Context) -> pa.Array:
        """Per row, True where the row fails this rule (never null)."""
        return _arrow_mask(self.applied(table, ctx))

    def applied(self, table: pa.Table, ctx: Context) -> pa.Array | np.ndarray:
        """`mask` as Arrow or numpy booleans, whichever the rule computed (saves conversions)."""
        mask = self._mask(table, ctx)
        mask = mask if isinstance(mask, np.ndarray) else _definite(mask, table.num_rows)
        for name, values in (self.when or {}).items():
            value_set = pa.array(values, pa.string())
            applies = ctx.codes(table, name).flags(lambda distinct, v=value_set: pc.is_in(distinct, v), null=False)
            if applies is None:
                return np.zeros(table.num_rows, dtype=bool)
            mask = mask & applies if isinstance(mask, np.ndarray) else pc.and_(mask, pa.array(applies))
        return mask

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        raise NotImplementedError

    def check(self, ds: Dataset) -> None:
        """Raise ValueError when the rule does not fit `ds` (unknown columns, wrong types)."""
        for name in self.when or {}:
            _require(ds, name, _STRING_KINDS, "when")

    def columns_used(self) -> list[str]:
        return list(getattr(self, "columns", []))


class NotNullRule(Rule):
    """Required values: null (and, for text, empty) fails. A value conform could not read is
    reported as bad_type, not as absent."""

    kind: Literal["not_null"] = "not_null"
    columns: list[str] = Field(min_length=1)
    empty_is_null: bool = True
    blank_is_null: bool = False  # whitespace-only text counts as absent too

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        out: Mask | None = None
        symbols = _symbols(self.dataset)
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
            out = pc.and_(_definite(out, table.num_rows), pc.invert(ctx.bad_type))
        return out

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, None, "columns")


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
            if self.min is not None:
                bound = _bound(self.min, col.type)
                fails.append(pc.less(col, bound) if self.min_inclusive else pc.less_equal(col, bound))
            if self.max is not None:
                bound = _bound(self.max, col.type)
                fails.append(pc.greater(col, bound) if self.max_inclusive else pc.greater_equal(col, bound))
        return _any_of(fails)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, _NUMBER_KINDS, "columns")


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
        return pa.array(reference.EXCHANGES, pa.string())

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
            _require(ds, name, _STRING_KINDS, "columns")


class RegexRule(Rule):
    """Text matching a pattern (RE2 syntax, searched: anchor it with ^...$ to match whole values)."""

    kind: Literal["regex"] = "regex"
    columns: list[str] = Field(min_length=1)
    pattern: str

    @model_validator(mode="after")
    def _compiles(self) -> "RegexRule":
        try:
            pc.match_substring_regex(pa.array([""], pa.string()), self.pattern)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(f"pattern {self.pattern!r} does not compile: {e}") from None
        return self

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        symbols = _symbols(self.dataset)
        fails: list[Mask] = []
        for name in self.columns:
            if name in symbols:  # few distinct values: match each once
                fails.append(ctx.codes(table, name).lookup(
                    lambda distinct: pc.invert(pc.match_substring_regex(distinct, self.pattern)), null=False))
            else:
                fails.append(pc.invert(pc.match_substring_regex(table.column(name), self.pattern)))
        return _any_of(fails)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, _STRING_KINDS, "columns")


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
        return _any_of(fails) if fails else np.zeros(table.num_rows, dtype=bool)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, _STRING_KINDS, "columns")


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
            _require(ds, name, None if self.check_ == "compare" else _NUMBER_KINDS, "columns")


class FreshnessRule(Rule):
    """Event time no later than now + `max_future` (clock skew) and, when set, no older than now - `max_age`."""

    kind: Literal["freshness"] = "freshness"
    columns: list[str] = Field(default_factory=lambda: ["ts"], min_length=1)
    max_future: Duration | None = None
    max_age: Duration | None = None

    @model_validator(mode="after")
    def _a_limit(self) -> "FreshnessRule":
        if self.max_future is None and self.max_age is None:
            raise ValueError("freshness needs `max_future`, `max_age` or both")
        return self

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        now = ctx.now_utc
        fails = []
        future = ctx.future_skew if ctx.future_skew is not None and self.max_future is not None else self.max_future
        for name in self.columns:
            col = table.column(name)
            if future is not None:
                fails.append(pc.greater(col, pa.scalar(now + future, type=TIMESTAMP_TYPE)))
            if self.max_age is not None:
                fails.append(pc.less(col, pa.scalar(now - self.max_age, type=TIMESTAMP_TYPE)))
        return _any_of(fails)

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, (Kind.TIMESTAMP,), "columns")


class SessionRule(Rule):
    """Bar times inside the trading session (`open` <= local time < `close`) on `weekdays`.
    Local time is UTC + `utc_offset` (IST has no daylight saving). Use `when` to limit it to
    intraday bars: daily bars are stamped at midnight by many sources."""

    kind: Literal["session"] = "session"
    columns: list[str] = Field(default_factory=lambda: ["ts"], min_length=1)
    open: Clock = time(9, 15)
    close: Clock = time(15, 30)
    utc_offset: Annotated[timedelta, BeforeValidator(_parse_offset)] = timedelta(hours=5, minutes=30)
    weekdays: list[Weekday] = Field(default_factory=lambda: [0, 1, 2, 3, 4])

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        open_ms = (self.open.hour * 60 + self.open.minute) * 60_000 + self.open.second * 1000
        close_ms = (self.close.hour * 60 + self.close.minute) * 60_000 + self.close.second * 1000
        offset_ms = int(self.utc_offset.total_seconds() * 1000)
        out = np.zeros(table.num_rows, dtype=bool)
        for name in self.columns:
            # Integer arithmetic on epoch ms: no time-zone database lookups per row.
            col = _single_chunk(table.column(name))
            ms = pc.cast(col, pa.int64())
            local = _int_numpy(ms) + offset_ms
            days = local // MS_PER_DAY  # floor division: right for times before 1970 too
            ms_of_day = local - days * MS_PER_DAY
            outside = (ms_of_day < open_ms) | (ms_of_day >= close_ms)
            if len(self.weekdays) < 7 and days.size:
                open_day = np.zeros(7, dtype=bool)
                open_day[self.weekdays] = True
                # one weekday lookup per calendar day in the batch, not per row
                first, last = int(days.min()), int(days.max())
                calendar = open_day[(np.arange(first, last + 1) + 3) % 7]  # 1970-01-01 was a Thursday
                outside |= ~calendar[days - first]
            if col.null_count:
                outside &= _valid_numpy(col)
            out |= outside
        return out

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.columns:
            _require(ds, name, (Kind.TIMESTAMP,), "columns")


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
            _require(ds, name, tuple(k for k in Kind if k is not Kind.SYMBOLS), "columns")


class PriceJumpRule(Rule):
    """Prices more than `factor` away from the rest of their series, without matching volume.

    Each series (`series` columns) is ordered by `time`. Where `price` changes by more than
    `factor` either way between consecutive bars, the series *jumps*; the jumps cut it into
    segments, each at a price level (the sum of the jumps before it). The *anchor* is the
    latest segment of at least `min_anchor_bars` bars that traded (volume > 0), else the
    longest segment (the latest of equals): the last price level the market held. Bars whose
    level is more than `factor` away from the anchor's fail - a one-bar spike, a run of
    mis-scaled bars, the older side of a unit switch alike - unless their run traded like a
    real move: a run of such bars whose mean volume is at least `volume_factor` x the anchor
    segment's mean volume is let through (unit errors - paise for rupees, pence for pounds -
    leave volume untouched). A bar whose own `high` exceeds `factor` x its `low` fails too
    (a mis-scaled high or low alone; the other one-column errors already break OHLC order).

    Bars rejected by other rules take no part. Only neighbours within the batch are seen.
    """

    kind: Literal["price_jump"] = "price_jump"
    series: list[str] = Field(default_factory=lambda: ["ticker", "exchange", "interval", "source"], min_length=1)
    time: str = "ts"
    price: str = "close"
    high: str | None = "high"
    low: str | None = "low"
    volume: str | None = "volume"
    factor: float = Field(20.0, gt=1.0)
    volume_factor: float = Field(10.0, gt=1.0)
    min_anchor_bars: int = Field(5, ge=1)

    after_others: ClassVar[bool] = True

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        n = table.num_rows
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        kept = ctx.kept()
        if self.high is not None and self.low is not None:
            spread = _bool_numpy(pc.greater(table.column(self.high),
                                            pc.multiply(table.column(self.low), self.factor)))
            out |= spread if kept is None else spread & kept
        if n < 2:
            return out
        order, group, _ = ctx.sorted_keys(table, (*self.series, self.time)).kept(ctx)
        price = _float_numpy(table.column(self.price))[order]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = price[1:] / price[:-1]
        same = group[1:] == group[:-1]
        big = ((ratio > self.factor) | (ratio < 1.0 / self.factor)) & same
        if not big.any():
            return out  # the common case: no price anywhere near a jump
        volume = _float_numpy(table.column(self.volume), fill=0.0) if self.volume else None
        out[self._off_anchor(order, same, price, np.flatnonzero(big) + 1, volume)] = True
        return out

    def _off_anchor(self, order: np.ndarray, same: np.ndarray, price: np.ndarray, big: np.ndarray,
                    volume: np.ndarray | None) -> np.ndarray:
        """Rows whose level is more than `factor` away from their series' anchor, volume unmatched.

        `order`/`price`: the kept rows in (series, time) order, `same[i]`: positions i and i+1
        are one series; `big`: positions of the bars right after a jump.
        """
        # Only series with a jump need segments: typically a handful of a batch's thousands.
        bounds = np.flatnonzero(~same) + 1  # where a new series starts
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(order)]])
        touched = np.unique(np.searchsorted(bounds, big, side="right"))
        length = ends[touched] - starts[touched]
        offset = np.cumsum(length) - length  # where each touched series begins in the subset
        local = np.repeat(np.arange(len(touched)), length)  # series number within the subset
        pos = np.arange(int(length.sum())) - offset[local] + starts[touched][local]
        first = np.zeros(len(pos), dtype=bool)
        first[offset] = True
        jump = np.zeros(len(pos), dtype=bool)
        jump[np.searchsorted(pos, big)] = True  # never at a series' first bar
        with np.errstate(divide="ignore", invalid="ignore"):
            log_step = np.where(jump, np.log(price[pos] / price[np.maximum(pos - 1, 0)]), 0.0)
        climb = np.cumsum(log_step)
        level = climb - climb[np.flatnonzero(first)][local]
        vol = volume[order[pos]] if volume is not None else np.ones(len(pos))
        # segments: the runs between jumps; the anchor segment of each series
        seg_start = first | jump
        seg_of = np.cumsum(seg_start) - 1
        starts = np.flatnonzero(seg_start)
        count = np.bincount(seg_of)
        seg_volume = np.bincount(seg_of, weights=vol)
        ordinal = np.arange(len(starts), dtype=np.int64)
        qualified = (count >= self.min_anchor_bars) & (seg_volume > 0)
        score = np.where(qualified, (1 << 50) + ordinal, count.astype(np.int64) * (1 << 25) + ordinal)
        seg_series = local[starts]
        best = np.maximum.reduceat(score, np.flatnonzero(np.concatenate([[True], seg_series[1:] != seg_series[:-1]])))
        anchor = np.flatnonzero(score == best[seg_series])  # one segment per series: scores are unique
        off = np.abs(level - level[starts[anchor]][local]) > math.log(self.factor)
        if volume is not None and off.any():
            # a run of off-level bars that traded like a real move is let through
            run_start = off & (first | ~np.concatenate([[False], off[:-1]]))
            run_of = (np.cumsum(run_start) - 1)[off]
            run_volume = np.bincount(run_of, weights=vol[off]) / np.bincount(run_of)
            typical = (seg_volume[anchor] / count[anchor])[local[run_start]]
            real = run_volume >= self.volume_factor * np.maximum(typical, 1.0)
            if real.any():
                off[np.flatnonzero(off)[real[run_of]]] = False
        return order[pos[off]]

    def columns_used(self) -> list[str]:
        return [c for c in (*self.series, self.time, self.price, self.high, self.low, self.volume) if c]

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.series:
            _require(ds, name, tuple(k for k in Kind if k is not Kind.SYMBOLS), "series")
        _require(ds, self.time, (Kind.TIMESTAMP, Kind.INT), "time")
        for name in (self.price, self.high, self.low, self.volume):
            if name:
                _require(ds, name, _NUMBER_KINDS, "price/high/low/volume")


RuleSpec = Annotated[
    Union[NotNullRule, TypeRule, RangeRule, AllowedRule, RegexRule, TextLengthRule, CrossFieldRule,
          FreshnessRule, SessionRule, UniqueRule, PriceJumpRule],
    Field(discriminator="kind"),
]
_RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(RuleSpec)
KINDS: tuple[str, ...] = tuple(
    cls.model_fields["kind"].default for cls in
    (NotNullRule, TypeRule, RangeRule, AllowedRule, RegexRule, TextLengthRule, CrossFieldRule,
     FreshnessRule, SessionRule, UniqueRule, PriceJumpRule)
)


def build_rule(spec: Mapping[str, Any], ds: Dataset) -> Rule:
    """One rule from its spec, checked against `ds`. Raises ValueError with what is wrong."""
    spec = dict(spec)
    spec.setdefault("dataset", ds.name)
    if spec["dataset"] != ds.name:
        raise ValueError(f"says dataset {spec['dataset']!r} but is listed under {ds.name!r}")
    if "kind" not in spec:
        raise ValueError(f"no `kind` (one of {', '.join(KINDS)})")
    # Named column sets from the schema, so the rules file keeps no second copy of it.
    if spec.get("columns") == "required":
        spec["columns"] = ds.required_columns
    elif spec.get("columns") == "natural_key":
        spec["columns"] = list(ds.natural_key)
    try:
        rule = _RULE_ADAPTER.validate_python(spec)
    except ValidationError as e:
        raise ValueError(_describe(e)) from None
    rule.check(ds)
    return rule


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"][1:])  # loc[0] is the kind (the union's tag)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_invalid":
            parts.append(f"unknown kind {err['input'].get('kind')!r}; known: {', '.join(KINDS)}")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown parameter {loc!r}")
        else:
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _require(ds: Dataset, name: str, kinds: tuple[Kind, ...] | None, what: str) -> None:
    try:
        f = ds.field(name)
    except KeyError:
        raise ValueError(f"{what}: {ds.name} has no column {name!r}") from None
    if kinds is not None and f.kind not in kinds:
        raise ValueError(f"{what}: column {name!r} is {f.kind.name.lower()}, this rule needs "
                         f"{' or '.join(k.name.lower() for k in kinds)}")


# --- rule sets ------------------------------------------------------------------------


@dataclass
class Evaluation:
    """The verdict on one batch."""

    reject_reason: pa.Array  # string per row: the first failing reject rule's reason; null = row passes
    warn_counts: dict[str, int]  # warn rule name -> kept rows it flagged (rules that flagged none are left out)
    warn_masks: dict[str, pa.Array]  # warn rule name -> per-row flags, for the rules in warn_counts
    rows_warned: int  # kept rows flagged by at least one warn rule

    @property
    def rejected(self) -> pa.Array:
        return pc.is_valid(self.reject_reason)


@dataclass(frozen=True)
class RuleSet:
    """One dataset's rules, in priority order."""

    dataset: str
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        reject = [r.reason for r in self.rules if r.rejects]
        object.__setattr__(self, "_reason_strings", pa.array(reject, pa.string()))

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"{self.dataset} has no rule {name!r}; rules: {', '.join(self.names)}")

    def evaluate(self, table: pa.Table, ctx: Context) -> Evaluation:
        """Every rule over the whole table: reject reasons per row, warn counts.

        `table` must be conformed (`clean.conform`): every column present with its type.
        """
        n = table.num_rows
        ctx = dataclasses.replace(ctx, rejected=None)  # fresh per-table caches; the caller's ctx is untouched
        reject = [r for r in self.rules if r.rejects]
        masks: dict[int, pa.Array | np.ndarray] = {}
        for i, rule in enumerate(reject):
            if not rule.after_others:
                masks[i] = rule.applied(table, ctx)
        rejected = _union(list(masks.values()), n)
        for i, rule in enumerate(reject):
            if rule.after_others:
                ctx.rejected = rejected
                masks[i] = rule.applied(table, ctx)
                rejected = rejected | _bool_numpy(masks[i])
        ctx.rejected = rejected
        warn_counts: dict[str, int] = {}
        warn_masks: dict[str, pa.Array] = {}
        warned: np.ndarray | None = None
        for rule in (r for r in self.rules if not r.rejects):
            flagged = _bool_numpy(rule.applied(table, ctx)) & ~rejected
            count = int(flagged.sum())
            if count:
                warn_counts[rule.name] = count
                warn_masks[rule.name] = pa.array(flagged)
                warned = flagged if warned is None else warned | flagged
        reasons = self._first_reason([masks[i] for i in range(len(reject))], rejected)
        return Evaluation(reasons, warn_counts, warn_masks, int(warned.sum()) if warned is not None else 0)

    def _first_reason(self, masks: list[pa.Array | np.ndarray], rejected: np.ndarray) -> pa.Array:
        n = len(rejected)
        rows = np.flatnonzero(rejected)
        if rows.size == 0:
            return pa.nulls(n, pa.string())  # the common case on clean data
        # Only the rejected rows (a few per thousand) need a reason: fold on them alone, from
        # the lowest priority up so a higher-priority rule overwrites a lower one.
        code = np.zeros(rows.size, dtype=np.int16)
        at = pa.array(rows)
        for i in reversed(range(len(masks))):
            m = masks[i]
            hit = m[rows] if isinstance(m, np.ndarray) else _bool_numpy(pc.take(m, at))
            code[hit] = i
        full = np.zeros(n, dtype=np.int16)
        full[rows] = code
        return pc.take(self._reason_strings, pa.array(full, mask=~rejected))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class QualityRules(Mapping[str, RuleSet]):
    """Rule sets by dataset name, and the files they were read from."""

    sets: dict[str, RuleSet]
    files: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> RuleSet:
        return self.sets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def for_dataset(self, ds: Dataset | str) -> RuleSet:
        """The dataset's rules; an empty set (every row passes) for a dataset with none."""
        name = ds if isinstance(ds, str) else ds.name
        return self.sets.get(name) or RuleSet(name)


def evaluate(table: pa.Table, ds: Dataset, ctx: Context, rules: QualityRules | None = None) -> Evaluation:
    """`ds`'s rules (the shipped defaults unless `rules` is given) over `table`."""
    return (rules or default_rules()).for_dataset(ds).evaluate(table, ctx)


# --- loading --------------------------------------------------------------------------

Specs = dict[str, list[dict[str, Any]]]


def default_rules_text() -> str:
    return (resources.files("sentinel_ray") / "quality" / DEFAULT_RULES_FILE).read_text()


@lru_cache(maxsize=1)
def default_rules() -> QualityRules:
    """The shipped rules (`default_rules.yaml`)."""
    return _build(_parse(default_rules_text(), f"<shipped {DEFAULT_RULES_FILE}>"))


def load_rules(path: Path | str | None = None) -> QualityRules:
    """The shipped rules merged with the override file at `path` (None: the shipped rules only).

    The override has the shipped file's shape (`dataset: [rule, ...]`) and is merged by rule
    name per dataset: a known name updates that rule's fields (a different `kind` replaces it
    whole), `enabled: false` drops it, a new name adds a rule at the end or at `before:` /
    `after:` another rule. Raises RulesError naming the file, dataset and rule at fault.
    """
    if path is None:
        return default_rules()
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except OSError as e:
        raise RulesError(f"quality rules file {path}: cannot read: {e.strerror}") from None
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def rules_for(settings: Any) -> QualityRules:
    """The rules `settings` asks for: its `quality_rules_file` merged over the defaults."""
    return load_rules(getattr(settings, "quality_rules_file", None))


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> QualityRules:  # mtime/size: reload when edited
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RulesError(f"quality rules file {path}: cannot read: {e.strerror}") from None
    base = _parse(default_rules_text(), f"<shipped {DEFAULT_RULES_FILE}>")
    merged = _merge(base, _parse(text, path), path)
    return _build(merged, files=(path,))


def _parse(text: str, origin: str) -> Specs:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise RulesError(f"quality rules file {origin}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise RulesError(f"quality rules file {origin}: must map dataset names to lists of rules")
    specs: Specs = {}
    for ds_name, rules in loaded.items():
        if ds_name not in DATA_DATASETS:
            raise RulesError(f"quality rules file {origin}: unknown dataset {ds_name!r}; "
                             f"known: {', '.join(DATA_DATASETS)}")
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}: must be a list of rules")
        seen: set[str] = set()
        for i, spec in enumerate(rules):
            where = f"quality rules file {origin}: dataset {ds_name!r}, rule #{i + 1}"
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise RulesError(f"{where}: each rule is a mapping with a `name`")
            if spec["name"] in seen:
                raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}, rule {spec['name']!r}: "
                                 f"listed twice")
            seen.add(spec["name"])
            spec["__origin"] = origin
        specs[ds_name] = list(rules)
    return specs


def _merge(base: Specs, override: Specs, origin: str) -> Specs:
    out = {name: [dict(s) for s in specs] for name, specs in base.items()}
    for ds_name, specs in override.items():
        current = out.setdefault(ds_name, [])
        for spec in specs:
            spec = dict(spec)
            name = spec["name"]
            where = f"quality rules file {origin}: dataset {ds_name!r}, rule {name!r}"
            before, after = spec.pop("before", None), spec.pop("after", None)
            enabled = spec.pop("enabled", True)
            if not isinstance(enabled, bool):
                raise RulesError(f"{where}: enabled must be true or false")
            names = [s["name"] for s in current]
            if name in names:
                i = names.index(name)
                old = current.pop(i)
                if not enabled:
                    continue
                same_kind = spec.get("kind", old.get("kind")) == old.get("kind")
                merged = {**old, **spec} if same_kind else spec
            else:
                if not enabled:
                    raise RulesError(f"{where}: no such rule to disable; rules: {', '.join(names)}")
                if "kind" not in spec:
                    raise RulesError(f"{where}: a new rule needs a `kind` (one of {', '.join(KINDS)})")
                merged, i = spec, len(current)
            if before is not None or after is not None:
                anchor = before if before is not None else after
                others = [s["name"] for s in current]
                if anchor not in others:
                    raise RulesError(f"{where}: before/after names no rule {anchor!r}; rules: {', '.join(others)}")
                i = others.index(anchor) + (0 if before is not None else 1)
            current.insert(i, merged)
    return out


def _build(specs: Specs, files: tuple[str, ...] = ()) -> QualityRules:
    sets: dict[str, RuleSet] = {}
    for ds_name, rules in specs.items():
        ds = DATA_DATASETS[ds_name]
        built = []
        for spec in rules:
            spec = dict(spec)
            origin = spec.pop("__origin", "?")
            spec.pop("enabled", None)
            try:
                built.append(build_rule(spec, ds))
            except ValueError as e:
                raise RulesError(f"quality rules file {origin}: dataset {ds_name!r}, rule {spec.get('name')!r}: "
                                 f"{e}") from None
        sets[ds_name] = RuleSet(ds_name, tuple(built))
    return QualityRules(sets, files)


# --- shared key ordering --------------------------------------------------------------


@dataclass
class _Codes:
    """A column as dense int64 codes (null has a code of its own), or the one value in every row."""

    column: pa.Array
    constant: bool  # one value (or null) in every row: `values` is None
    values: np.ndarray | None
    cardinality: int
    nulls: np.ndarray | None
    dictionary: pa.Array | None  # code -> value, for dictionary-coded columns

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array) -> "_Codes":
        arr = _single_chunk(col)
        n = len(arr)
        if n == 0 or arr.null_count == n or (arr.null_count == 0 and _constant(arr)):
            return cls(arr, True, None, 1, None, None)
        nulls = _bool_numpy(pc.is_null(arr)) if arr.null_count else None
        if pa.types.is_integer(arr.type) or pa.types.is_timestamp(arr.type):
            ints = _int_numpy(pc.cast(arr, pa.int64()))
            valid = ints if nulls is None else ints[~nulls]
            lo, hi = int(valid.min()), int(valid.max())
            codes = ints - lo
            if nulls is not None:
                codes[nulls] = hi - lo + 1
            return cls(arr, False, codes, hi - lo + 2, nulls, None)
        encoded = pc.dictionary_encode(arr)
        null_code = len(encoded.dictionary)
        indices = encoded.indices
        if indices.null_count:
            indices = pc.fill_null(indices, null_code)
        return cls(arr, False, indices.to_numpy().astype(np.int64), null_code + 1, nulls, encoded.dictionary)

    def lookup(self, fn: Callable[[pa.Array], pa.Array], null: bool) -> np.ndarray:
        """Per row, `fn` (values -> booleans) of its value, computed once per distinct value; `null` for nulls."""
        flags = self.flags(fn, null)
        return flags if flags is not None else np.zeros(len(self.column), dtype=bool)

    def flags(self, fn: Callable[[pa.Array], pa.Array], null: bool) -> np.ndarray | None:
        """`lookup`, or None when it is False for every row (then nothing per row is built)."""
        n = len(self.column)
        if self.constant:
            value = self.column[0] if n else None
            if value is None or not value.is_valid:
                hit = null
            else:
                hit = bool(pc.fill_null(fn(pa.array([value.as_py()], self.column.type)), False)[0].as_py())
            return np.ones(n, dtype=bool) if hit and n else None
        if self.dictionary is None:
            out = _bool_numpy(fn(self.column))
            if self.nulls is not None:
                out = np.where(self.nulls, null, out)
        else:
            per_value = np.append(_bool_numpy(fn(self.dictionary)), null)
            if not per_value.any():
                return None
            assert self.values is not None
            out = per_value[self.values]
        return out if out.any() else None


def _constant(arr: pa.Array) -> bool:
    """Every value equal to the first (no nulls). For text, compares raw bytes: no per-value calls."""
    n = len(arr)
    if arr[n // 2] != arr[0] or arr[n - 1] != arr[0]:
        return False  # the usual way a column is not constant, found in O(1)
    if pa.types.is_string(arr.type):
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
        width = int(offsets[1] - offsets[0])
        if not (np.diff(offsets) == width).all():
            return False
        # n values of one width: all equal when the bytes equal themselves shifted by one value
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))[int(offsets[0]):]
        return width == 0 or bool((data[width:] == data[:-width]).all())
    return bool(pc.all(pc.equal(arr, arr[0])).as_py())


@dataclass
class _SortedKeys:
    """Row order by (all key columns but the last, then the last), e.g. (series, time).

    `group` and `last` are the packed codes of the leading columns and the last column's
    codes, both in that order. Equal keys are adjacent and keep their input order.
    """

    order: np.ndarray  # row numbers
    group: np.ndarray
    last: np.ndarray
    has_null: np.ndarray | None  # per input row: some key part is null
    excluded: np.ndarray | None  # rows left out: those rejected when it was built

    def kept(self, ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, group, last) without the rows `ctx` has rejected by now."""
        kept = ctx.kept()
        if kept is None or (self.excluded is not None and np.array_equal(self.excluded, ctx.rejected)):
            return self.order, self.group, self.last
        select = kept[self.order]
        return self.order[select], self.group[select], self.last[select]

    @classmethod
    def build(cls, table: pa.Table, columns: tuple[str, ...], ctx: Context) -> "_SortedKeys":
        n = table.num_rows
        group = np.zeros(n, dtype=np.int64)
        capacity = 1
        has_null: np.ndarray | None = None
        for name in columns[:-1]:
            codes = ctx.codes(table, name)
            if codes.values is None:  # one value in every row: adds nothing to the key
                continue
            if capacity * codes.cardinality >= 2**62:  # re-number the groups seen so far to stay in int64
                uniques, group = np.unique(group, return_inverse=True)
                capacity = len(uniques)
            group = group * codes.cardinality + codes.values
            capacity *= codes.cardinality
            has_null = _or(has_null, codes.nulls)
        last_codes = ctx.codes(table, columns[-1])
        last = last_codes.values if last_codes.values is not None else np.zeros(n, dtype=np.int64)
        has_null = _or(has_null, last_codes.nulls)
        if last_codes.constant and n and last_codes.column.null_count == n:
            has_null = np.ones(n, dtype=bool)
        # Rejected rows take no part (and cannot make the time order look broken).
        kept = ctx.kept()
        rows = np.flatnonzero(kept) if kept is not None else None
        if rows is not None:
            group, last = group[rows], last[rows]
        # Batches arrive in time order: a stable sort by series alone (a radix sort when the
        # codes fit 16 bits) then leaves each series in time order, with no sort on time.
        small = group.astype(np.int16) if capacity <= 2**15 else group
        order = np.argsort(small, kind="stable")
        g, t = group[order], last[order]
        back = (t[1:] < t[:-1]) & (g[1:] == g[:-1])
        if back.any():
            # Some rows came late: sort just the series they are in by time.
            series_of = np.concatenate([[0], np.cumsum(g[1:] != g[:-1])])
            touched = np.zeros(series_of[-1] + 1, dtype=bool)
            touched[series_of[np.flatnonzero(back) + 1]] = True
            pos = np.flatnonzero(touched[series_of])
            fix = np.lexsort((t[pos], g[pos]))  # stable: equal keys keep their input order
            order[pos] = order[pos][fix]
            g[pos], t[pos] = g[pos][fix], t[pos][fix]
        if rows is not None:
            order = rows[order]
        return cls(order, g, t, has_null, None if kept is None else ~kept)


# --- small helpers --------------------------------------------------------------------


def _any_of(masks: list[Mask]) -> Mask:
    out: Mask | None = None
    for m in masks:
        if isinstance(m, np.ndarray):
            m = pa.array(m)
        out = m if out is None else pc.or_kleene(out, m)
    assert out is not None
    return out


def _definite(mask: Mask, n: int) -> pa.Array:
    """A null comparison (null input) is 'rule not violated': absence is not_null's job."""
    if isinstance(mask, np.ndarray):
        return pa.array(mask, pa.bool_())
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    if len(mask) != n:
        raise AssertionError(f"rule mask has {len(mask)} rows, table {n}")
    return pc.fill_null(mask, False) if mask.null_count else mask


@lru_cache(maxsize=None)
def _symbols(dataset_name: str) -> frozenset[str]:
    """Columns of few distinct values (tickers, exchanges, sources): rules look each value up once."""
    return frozenset(f.name for f in dataset(dataset_name).fields if f.kind is Kind.SYMBOL)


def _union(masks: list[pa.Array | np.ndarray], n: int) -> np.ndarray:
    """Rows failing any of `masks`: Arrow masks are OR-ed as bitmaps, then converted once."""
    arrow = [m for m in masks if not isinstance(m, np.ndarray)]
    out = _bool_numpy(_any_of(arrow)) if arrow else np.zeros(n, dtype=bool)
    for m in masks:
        if isinstance(m, np.ndarray):
            out = out | m
    return out


def _arrow_mask(mask: pa.Array | np.ndarray) -> pa.Array:
    return pa.array(mask, pa.bool_()) if isinstance(mask, np.ndarray) else mask


def _bool_numpy(mask: Mask) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return mask
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return mask.to_numpy(zero_copy_only=False)


def _single_chunk(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks() if col.num_chunks else pa.array([], col.type)


def _int_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = _single_chunk(arr)
    if arr.null_count:
        arr = pc.fill_null(arr, 0)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _float_numpy(col: pa.ChunkedArray | pa.Array, fill: float = math.nan) -> np.ndarray:
    arr = _single_chunk(col)
    if not pa.types.is_floating(arr.type):
        arr = pc.cast(arr, pa.float64())
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)


def _valid_numpy(arr: pa.Array) -> np.ndarray:
    return _bool_numpy(pc.is_valid(arr))


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _bound(value: float, typ: pa.DataType) -> pa.Scalar:
    if pa.types.is_integer(typ) and float(value).is_integer():
        return pa.scalar(int(value), typ)
    return pa.scalar(float(value), pa.float64())
