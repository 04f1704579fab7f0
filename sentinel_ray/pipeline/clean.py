"""Bring raw batches to a dataset's shape: conform types, normalise values, find duplicates.

Everything here is vectorised Arrow compute over whole columns; Python loops only walk
columns. Each step has a fast path for the common case (already the right type, already
normal) so the clean, typed batches of a backfill cost almost nothing.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import SUFFIX_EXCHANGE
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, Dataset

Column = pa.Array | pa.ChunkedArray

# Strictly numeric text after trimming. `float("nan")`-style words are left out on
# purpose: a price or volume of NaN/inf is not a number the platform can use.
_FLOAT_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# ISO-8601 with field ranges checked here so the final cast cannot fail on them
# (the day-of-month against the month is checked separately by a round trip).
_TS_RE = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,3})?)?"
    r"(Z|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$"
)
_INT64_LIMIT = 9.2e18  # just inside int64's range, so the float -> int cast never overflows


def conform(table: pa.Table, ds: Dataset) -> tuple[pa.Table, pa.Array]:
    """Exactly `ds`'s columns, in order, with its Arrow types (all nullable).

    Returns the table and a per-row boolean `bad_type`: True where some value was present
    but could not be read as its column's type (it becomes null). Missing columns become
    all-null (a missing_field matter for validation), extra columns are dropped.
    """
    n = table.num_rows
    columns: list[Column] = []
    bad: Column | None = None
    for field in ds.fields:
        target = field.kind.arrow
        if field.name not in table.column_names:
            columns.append(pa.nulls(n, target))
            continue
        converted, col_bad = conform_column(table.column(field.name), target)
        columns.append(converted)
        if col_bad is not None:
            bad = col_bad if bad is None else pc.or_(bad, col_bad)
    schema = pa.schema([pa.field(f.name, f.kind.arrow, nullable=True) for f in ds.fields])
    out = pa.Table.from_arrays(columns, schema=schema)
    return out, _as_bool_array(bad, n)


def conform_column(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    """Cast one column to `target`; returns (values, mask of unreadable values or None)."""
    if col.type == target:
        return _finite_checked(col) if pa.types.is_floating(target) else (col, None)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    if pa.types.is_null(col.type):
        return pc.cast(col, target), None
    if col.type == target:  # it was only dictionary- or large-encoded
        return conform_column(col, target)
    if pa.types.is_timestamp(target):
        return _to_timestamp(col, target)
    if pa.types.is_floating(target) or pa.types.is_integer(target):
        return _to_number(col, target)
    return _try_cast(col, target)


def _to_number(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    if pa.types.is_string(col.type):
        try:
            return _finite_checked(pc.cast(col, target))  # clean text: one pass
        except pa.ArrowInvalid:
            values, _ = _from_number(_parse_float_text(col), target)
            return values, _lost(col, values)
    return _from_number(col, target)


def _from_number(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    if pa.types.is_integer(target) and pa.types.is_floating(col.type):
        return _float_to_int(col, target)
    if pa.types.is_integer(target) and pa.types.is_integer(col.type):
        try:
            return pc.cast(col, target), None
        except pa.ArrowInvalid:  # uint64 beyond int64: those values alone are unreadable, not the column
            fits = pc.less_equal(col, pa.scalar(2**63 - 1, col.type))
            values = pc.cast(pc.if_else(fits, col, None), target)
            return values, _lost(col, values)
    if pa.types.is_floating(target) and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        # int64 -> float64 may round beyond 2**53; for prices that is no loss worth a reject.
        return _finite_checked(pc.cast(col, target, safe=False))
    return _try_cast(col, target)


def _parse_float_text(col: Column) -> Column:
    """Text to float64, null where the text is not a plain decimal number."""
    trimmed = pc.utf8_trim_whitespace(col)
    numeric = pc.match_substring_regex(trimmed, _FLOAT_RE)
    return pc.cast(pc.if_else(numeric, trimmed, None), pa.float64())


def _float_to_int(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    integral = pc.and_(
        pc.is_finite(col),
        pc.and_(pc.equal(pc.floor(col), col), pc.less(pc.abs(col), _INT64_LIMIT)),
    )
    values = pc.cast(pc.if_else(integral, col, None), target, safe=False)
    return values, _lost(col, values)


def _finite_checked(col: Column) -> tuple[Column, Column | None]:
    """NaN and +-inf are not usable measurements: null them and flag the row."""
    finite = pc.is_finite(col)  # null stays null
    if pc.all(finite).as_py() is not False:
        return col, None
    values = pc.if_else(finite, col, None)
    return values, _lost(col, values)


def _to_timestamp(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    if pa.types.is_timestamp(col.type):
        # A naive timestamp is UTC by contract; Arrow's cast keeps its value, which is
        # exactly that reading. Other zones are stored as UTC already. Sub-ms is dropped;
        # an overflow is not: a wrapped value would be a wrong but plausible time.
        options = pc.CastOptions(target, allow_time_truncate=True)
        try:
            return pc.cast(col, options=options), None
        except pa.ArrowInvalid:  # seconds beyond ms's range (int64 s >= 9.2e15): those rows only
            limit = (2**63 - 1) // 1000
            ints = pc.cast(col, pa.int64())
            fits = pc.and_(pc.greater_equal(ints, -limit), pc.less_equal(ints, limit))
            values = pc.cast(pc.if_else(fits, col, None), options=options)
            return values, _lost(col, values)
    if pa.types.is_date(col.type):
        return pc.cast(col, target), None
    if not pa.types.is_string(col.type):
        # Bare numbers are refused rather than guessed: epoch seconds read as epoch ms
        # would land silently in January 1970.
        return pa.nulls(len(col), target), pc.is_valid(col)
    try:
        return pc.cast(col, target), None  # ISO-8601 with offsets: one pass
    except pa.ArrowInvalid:
        pass
    text = _iso_with_offset(col)
    readable = pc.and_(pc.match_substring_regex(text, _TS_RE), _real_calendar_date(text))
    try:
        values = pc.cast(pc.if_else(readable, text, None), target)
    except pa.ArrowInvalid:  # the regex should make this unreachable; never crash a batch on it
        values = pa.nulls(len(col), target)
    return values, _lost(col, values)


def _iso_with_offset(col: Column) -> Column:
    """Normalise the ISO-8601 spellings sources send so Arrow's parser takes them all."""
    text = pc.utf8_trim_whitespace(col)
    # Arrow parses at most the target's precision; microseconds and beyond are cut to ms.
    text = pc.replace_substring_regex(text, r"(\.\d{3})\d+", r"\1")
    date_only = pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$")
    text = pc.if_else(date_only, pc.binary_join_element_wise(text, "T00:00:00", ""), text)
    # Naive means UTC (the platform's convention for sources without zones).
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d{2}(:?\d{2})?)$")
    return pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))


def _real_calendar_date(text: Column) -> Column:
    """True where the YYYY-MM-DD prefix is a real date (2024-02-30 is not).

    strptime rolls impossible days over (Feb 30 -> Mar 1); formatting back and comparing
    catches exactly those.
    """
    date = pc.utf8_slice_codeunits(text, 0, 10)
    parsed = pc.strptime(date, format="%Y-%m-%d", unit="s", error_is_null=True)
    return pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), date), False)


def _try_cast(col: Column, target: pa.DataType) -> tuple[Column, Column | None]:
    """Types with no element-wise repair (e.g. a struct where text belongs): all or nothing."""
    try:
        return pc.cast(col, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return pa.nulls(len(col), target), pc.is_valid(col)


def _lost(before: Column, after: Column) -> Column:
    """Rows where a value was present before conversion and is gone after it."""
    return pc.and_(pc.is_valid(before), pc.is_null(after))


def _as_bool_array(mask: Column | None, n: int) -> pa.Array:
    if mask is None:
        return pa.array(np.zeros(n, dtype=bool))
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    return pc.fill_null(mask, False)


def normalise(table: pa.Table, ds: Dataset) -> pa.Table:
    """Canonical spellings: upper-case tickers without Yahoo suffixes, trimmed text."""
    if ds.name == PRICES.name:
        return _normalise_prices(table)
    if ds.name == POSTS.name:
        return _normalise_posts(table)
    if ds.name == FILINGS.name:
        table = _set(table, "exchange", _upper_trimmed(table.column("exchange")))
        return _set(table, "ticker", _upper_trimmed(table.column("ticker")))
    return table


def _normalise_prices(table: pa.Table) -> pa.Table:
    ticker = _upper_trimmed(table.column("ticker"))
    exchange = _upper_trimmed(table.column("exchange"))
    for suffix, name in SUFFIX_EXCHANGE.items():
        has_suffix = pc.fill_null(pc.ends_with(ticker, suffix), False)
        if not pc.any(has_suffix).as_py():
            continue
        # The suffix is the source's own statement of the exchange; it wins over the column.
        exchange = pc.if_else(has_suffix, name, exchange)
        ticker = pc.if_else(has_suffix, pc.utf8_slice_codeunits(ticker, 0, -len(suffix)), ticker)
    table = _set(table, "ticker", ticker)
    return _set(table, "exchange", exchange)


def _normalise_posts(table: pa.Table) -> pa.Table:
    table = _set(table, "text", pc.utf8_trim_whitespace(table.column("text")))
    return _set(table, "tickers", _map_list_items(table.column("tickers"), _clean_cashtag))


def _clean_cashtag(items: Column) -> Column:
    """'$reliance ' -> 'RELIANCE' (cashtags are how chatter names tickers)."""
    return pc.utf8_upper(pc.utf8_trim(items, characters=" \t\n\r$"))


def _map_list_items(col: pa.ChunkedArray, fn) -> pa.ChunkedArray:  # type: ignore[no-untyped-def]
    """Apply `fn` to every list item, keeping each row's list boundaries and nulls."""
    chunks = []
    for chunk in col.chunks:
        # offsets already account for a sliced chunk and index into the full child array
        offsets, values = chunk.offsets, chunk.values
        mask = chunk.is_null() if chunk.null_count else None
        if mask is not None and chunk.offset:
            # Arrow takes no null mask with sliced offsets: rebase them onto the slice's own values
            start = offsets[0].as_py()
            values = values.slice(start, offsets[-1].as_py() - start)
            offsets = pc.subtract(offsets, pa.scalar(start, offsets.type))
        chunks.append(pa.ListArray.from_arrays(offsets, fn(values), type=chunk.type, mask=mask))
    return pa.chunked_array(chunks, type=col.type)


def _upper_trimmed(col: Column) -> Column:
    # Symbols are ASCII (a non-ASCII one is an unknown ticker anyway), and ascii_upper is
    # a near-free pass; detecting "already clean" would cost as much as doing it.
    return pc.ascii_upper(pc.utf8_trim_whitespace(col))


def _set(table: pa.Table, name: str, col: Column) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), col)
