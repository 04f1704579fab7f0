"""What rules see besides the table (`Context`), and the per-table caches they share:
dense codes of low-cardinality columns and rows ordered by key."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray import reference
from sentinel_ray.market import as_utc
from sentinel_ray.quality.rules.arrays import bool_numpy, int_numpy, or_optional, single_chunk


_WIDE = 2**62  # an integer column spanning more than this is ranked, not offset (int64 room)


@dataclass
class Context:
    """What rules may look at besides the table.

    `bad_type` is `clean.conform`'s per-row mask of unreadable values.
    """

    now: datetime
    known_tickers: pa.Array | None = None
    bad_type: pa.Array | None = None
    # Set while a RuleSet evaluates: rows rejected by the rules that ran before (numpy bool).
    rejected: np.ndarray | None = None
    _keys: dict[tuple[str, ...], "SortedKeys"] = field(default_factory=dict, init=False, repr=False)
    _codes: dict[str, "Codes"] = field(default_factory=dict, init=False, repr=False)
    _table: pa.Table | None = field(default=None, init=False, repr=False)  # what the caches describe

    @property
    def now_utc(self) -> datetime:
        return as_utc(self.now)

    def tickers(self) -> pa.Array:
        return self.known_tickers if self.known_tickers is not None else reference.known_tickers()

    def kept(self) -> np.ndarray | None:
        """Rows no earlier reject rule has rejected (None: all of them)."""
        if self.rejected is None or not self.rejected.any():
            return None
        return ~self.rejected

    def sorted_keys(self, table: pa.Table, columns: tuple[str, ...]) -> "SortedKeys":
        """The rows not rejected so far, ordered by `columns` (the last one is the fine order,
        e.g. time). Built once per table and column list, shared by the rules that need it."""
        self._bind(table)
        if columns not in self._keys:
            self._keys[columns] = SortedKeys.build(table, columns, self)
        return self._keys[columns]

    def codes(self, table: pa.Table, name: str) -> "Codes":
        """Dense codes of a low-cardinality column (symbols, keys, times), computed once per table."""
        self._bind(table)
        if name not in self._codes:
            self._codes[name] = Codes.of(table.column(name))
        return self._codes[name]

    def _bind(self, table: pa.Table) -> None:
        # The caches belong to one table: a context reused for another starts afresh.
        if self._table is not table:
            self._table, self._codes, self._keys = table, {}, {}


@dataclass
class Codes:
    """A column as dense int64 codes (null has a code of its own), or the one value in every row."""

    column: pa.Array
    constant: bool  # one value (or null) in every row: `values` is None
    values: np.ndarray | None
    cardinality: int
    nulls: np.ndarray | None
    dictionary: pa.Array | None  # code -> value, for dictionary-coded columns

    @classmethod
    def of(cls, col: pa.ChunkedArray | pa.Array) -> "Codes":
        arr = single_chunk(col)
        n = len(arr)
        if n == 0 or arr.null_count == n or (arr.null_count == 0 and _constant(arr)):
            return cls(arr, True, None, 1, None, None)
        nulls = bool_numpy(pc.is_null(arr)) if arr.null_count else None
        if pa.types.is_integer(arr.type) or pa.types.is_timestamp(arr.type):
            ints = int_numpy(pc.cast(arr, pa.int64()))
            valid = ints if nulls is None else ints[~nulls]
            lo, hi = int(valid.min()), int(valid.max())
            if hi - lo < _WIDE:
                codes = ints - lo
                if nulls is not None:
                    codes[nulls] = hi - lo + 1
                return cls(arr, False, codes, hi - lo + 2, nulls, None)
            # Values too far apart for `value - min` (int64 extremes: a NaT sent as its raw
            # value): rank them instead, which keeps their order (a sort, but a rare one).
            distinct, codes = np.unique(valid, return_inverse=True)
            if nulls is not None:
                full = np.full(n, len(distinct), dtype=np.int64)
                full[~nulls] = codes
                codes = full
            return cls(arr, False, codes.astype(np.int64, copy=False), len(distinct) + 1, nulls, None)
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
            out = bool_numpy(fn(self.column))
            if self.nulls is not None:
                out = np.where(self.nulls, null, out)
        else:
            per_value = np.append(bool_numpy(fn(self.dictionary)), null)
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
class SortedKeys:
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
    def build(cls, table: pa.Table, columns: tuple[str, ...], ctx: Context) -> "SortedKeys":
        n = table.num_rows
        group = np.zeros(n, dtype=np.int64)
        capacity = 1
        has_null: np.ndarray | None = None
        for name in columns[:-1]:
            codes = ctx.codes(table, name)
            if codes.values is None:  # one value in every row: adds nothing to the key
                continue
            values, cardinality = codes.values, codes.cardinality
            if capacity * cardinality >= 2**62:  # re-number the groups seen so far to stay in int64
                uniques, group = np.unique(group, return_inverse=True)
                capacity = len(uniques)
                if capacity * cardinality >= 2**62:  # and this column's codes too: both then fit n
                    distinct, values = np.unique(values, return_inverse=True)
                    cardinality = len(distinct)
            group = group * cardinality + values
            capacity *= cardinality
            has_null = or_optional(has_null, codes.nulls)
        last_codes = ctx.codes(table, columns[-1])
        last = last_codes.values if last_codes.values is not None else np.zeros(n, dtype=np.int64)
        has_null = or_optional(has_null, last_codes.nulls)
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
