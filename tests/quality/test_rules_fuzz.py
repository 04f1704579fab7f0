"""Bounded fuzz of the batch transform: extreme values of every column type, in every Arrow
representation a source might send, through `process_batch` for each dataset.

Each case is a small batch (0-12 rows) of valid rows whose cells are replaced, at random, by
values from the pools below (NaT sent as its raw int64, +/-inf, NaN, int64 extremes, year 1 and
year 9999, 1899/1970 dates, empty, huge and odd-Unicode text, JSON placeholders, script links),
with columns sent as text, other units, other widths, dictionaries, several chunks, or not at
all. A case fails on any exception, on rows lost or doubled, on a wrong output schema, and on
any out-of-range value in a VALID row, checked with plain Python (not the rules' own regexes).
Cases are seeded (`default_rng([SEED, dataset, case])`): a failing id reproduces exactly.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.rules import default_rules
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, Dataset, Kind
from tests.pipeline.rows import KNOWN, NOW, TS, UTC, filing_row, post_row, price_row

SEED = 20240603
CASES = 100  # per dataset: 300 in all, a few seconds
MAX_ROWS = 12

# --- what a valid row may hold (the spec, written independently of the rules file) ------------
FLOOR = {"prices": datetime(1990, 1, 1, tzinfo=UTC), "posts": datetime(2000, 1, 1, tzinfo=UTC),
         "filings": datetime(1990, 1, 1, tzinfo=UTC)}
LATEST = NOW + timedelta(minutes=5)  # future_timestamp's clock skew
LATEST_INGEST = NOW + timedelta(days=1)  # ingested_at: clocks of other hosts
MAX_PRICE, MAX_VOLUME, MAX_ENGAGEMENT = 1e7, 10**12, 10**10
PLACEHOLDERS = {"null", "none", "nil", "undefined", "nan", "n/a", "na", "true", "false", "[object object]"}
IST = timedelta(hours=5, minutes=30)

# --- pools ----------------------------------------------------------------------------------
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(t: datetime) -> int:
    return (t - EPOCH) // timedelta(milliseconds=1)


TIMES_MS = [
    I64_MIN,  # pandas/numpy NaT as its raw value: the 795 GiB session calendar
    I64_MAX, I64_MIN + 1, ms(datetime(1, 1, 1, tzinfo=UTC)), ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ms(datetime(1899, 12, 30, tzinfo=UTC)), ms(datetime(1875, 7, 9, tzinfo=UTC)), 0, -1, 1_704_168_000,  # epoch s as ms
    ms(datetime(1989, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)), ms(datetime(1990, 1, 1, tzinfo=UTC)),
    ms(datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)), ms(datetime(2000, 1, 1, tzinfo=UTC)),
    ms(LATEST), ms(LATEST) + 1, ms(NOW + timedelta(days=1)), ms(NOW + timedelta(days=3650)),
    ms(TS + timedelta(days=4)),  # Saturday, in session hours
    ms(TS - timedelta(minutes=16)),  # 09:14 IST
    ms(TS + timedelta(hours=6)),  # 15:30 IST: closed
]
TIME_TEXT = [
    "", " ", "garbage", "2024-02-30T00:00:00Z", "2024-13-01", "0001-01-01T00:00:00Z", "0000-01-01",
    "9999-12-31T23:59:59.999Z", "1970-01-01", "1899-12-30", "2024-01-02 09:30:00+05:30", "+275760-09-13",
    "2024-01-02T04:00:00.123456789Z", "2024-01-02T04:00:00-23:59", "२०२४-०१-०२", "NaT", "null", "1704168000",
]
FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-300, 1e308, -1e308, 1e7, 1e7 + 1, 2.0**53, -1.0]
FLOAT_TEXT = ["nan", "inf", "-Infinity", "1e400", "-0", "abc", "", " 100.5 ", "1,000", "0x10", "١٢٣", "1e-400",
              "99.0", "+101.0"]
SCALES = [1e6, 1e300, 1e-300, 5e-322, 100.0]
INTS = [I64_MIN, I64_MAX, -1, 0, 10**12, 10**12 + 1, 10**10, 10**10 + 1, 2**53 + 1, I64_MIN + 1]
INT_TEXT = ["9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e3", "1.5", " 7 ", "", "abc",
            "-5", "1e30"]
INT_FLOATS = [math.nan, math.inf, 1.5, 1e19, -1e19, 9.2e18, 1e12, 0.0, -0.0, -3.0]
TEXT = [
    "", " ", "{}", "[]", "null", "NULL", "None", " undefined ", "[object Object]", "\u00a0null\u00a0", "\u200b" * 8,
    "🚀" * 6, "€€€€€€", "---!!!", "a" * 10_001, "مرحبا بالعالم كيف الحال", "e\u0301" * 5, "\x00\x00\x00\x00\x00",
    "\ufeffhello world", "NaN", "\t\n\r  ", "ｆｕｌｌｗｉｄｔｈ text", "𝕳𝖊𝖑𝖑𝖔 𝖜𝖔𝖗𝖑𝖉", "RELIANCE to the moon 🚀",
    "<script>alert(1)</script>", "x" * 70_000,
]
LINKS = [
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", " javascript:x", "data:text/html;base64,PHNjcmlwdD4=", "vbscript:x",
    "file:///etc/passwd", "//evil.example/x", "/relative/path", "http://", "https://", "https:///x",
    "https://trusted.example@evil.example/", "https://ok.example/a b", "HTTPS://OK.EXAMPLE/X",
    "https://ok.example/x\njavascript:y", "https://ok\u00a0example/", "http://[::1]/", "ftp://x.example/",
    "https://www.reddit.com/r/IndianStockMarket/comments/abc/", "",
]
SYMBOLS = ["", " ", "nse", " NSE ", "NSE", "BSE", "LSE", "RELIANCE", "reliance.ns", "TCS.BO", "AAPL", "{}", "ऱिलायंस",
           "1m", "1d", "5m", "replay", "A" * 1000, "\x00", "null"]
LISTS: list[list[str | None] | None] = [[], None, [None], ["$reliance "], ["{}"], ["a" * 1000], ["RELIANCE", "TCS"]]

# --- representations of a column: (arrow type, value of the base cell -> cell, pool) ---------
Rep = tuple[pa.DataType, Callable[[Any], Any], list[Any]]


def _iso(t: datetime) -> str:
    return t.isoformat()


def _days(t: datetime) -> int:
    return (t - EPOCH).days


def representations(kind: Kind) -> list[Rep]:
    ts_ms = pa.timestamp("ms", tz="UTC")
    if kind is Kind.TIMESTAMP:
        return [
            (ts_ms, ms, TIMES_MS),
            (pa.timestamp("s"), lambda t: ms(t) // 1000, [t // 1000 for t in TIMES_MS] + [I64_MAX, I64_MIN, 9 * 10**15]),
            (pa.timestamp("us", tz="Asia/Kolkata"), lambda t: ms(t) * 1000, [I64_MIN, I64_MAX, 0, -1]),
            (pa.timestamp("ns"), lambda t: ms(t) * 1_000_000, [I64_MIN, I64_MAX, 0, 1]),
            (pa.string(), _iso, TIME_TEXT),
            (pa.large_string(), _iso, TIME_TEXT),
            (pa.int64(), ms, TIMES_MS),  # bare epoch numbers: refused, never guessed
            (pa.date32(), _days, [-(2**31), 2**31 - 1, 0, -719_162, 2_932_896]),  # year 1 .. 9999
        ]
    if kind is Kind.FLOAT:
        return [
            (pa.float64(), float, FLOATS),
            (pa.string(), repr, FLOAT_TEXT),
            (pa.int64(), lambda v: round(v) if abs(v) < 9e18 else None, INTS),
            (pa.float32(), float, [math.nan, math.inf, 3.4e38, 1e-45, 0.0]),
            (pa.decimal128(38, 2), lambda v: Decimal(f"{v:.2f}") if abs(v) < 1e30 else None,
             [Decimal("1e30"), Decimal("-1e30"), Decimal("0")]),
            (pa.bool_(), bool, [True, False]),
        ]
    if kind is Kind.INT:
        return [
            (pa.int64(), int, INTS),
            (pa.string(), str, INT_TEXT),
            (pa.float64(), float, INT_FLOATS),
            (pa.uint64(), abs, [2**64 - 1, 2**63, 2**63 - 1, 0]),
            (pa.int8(), lambda v: max(-128, min(127, v)), [-128, 127, -1, 0]),
        ]
    if kind in (Kind.STRING, Kind.SYMBOL):
        pool = TEXT + LINKS + SYMBOLS
        return [
            (pa.string(), str, pool),
            (pa.large_string(), str, pool),
            (pa.dictionary(pa.int32(), pa.string()), str, pool),
            (pa.int64(), lambda v: len(str(v)), INTS),  # numbers where text belongs: cast to their digits
        ]
    assert kind is Kind.SYMBOLS
    return [
        (pa.list_(pa.string()), list, LISTS),
        (pa.large_list(pa.large_string()), list, LISTS),
        (pa.list_(pa.int64()), lambda v: list(range(len(v))), [[I64_MIN, I64_MAX], [], None]),
        (pa.string(), lambda v: ",".join(v), TEXT[:5]),  # a string where a list belongs: bad_type
    ]


BASE_ROWS: dict[str, Callable[[int], dict[str, object]]] = {
    "prices": lambda i: price_row(ts=TS + timedelta(minutes=i)),
    "posts": lambda i: post_row(post_id=f"p{i}", ts=TS + timedelta(minutes=i)),
    "filings": lambda i: filing_row(filing_id=f"f{i}", ts=TS + timedelta(minutes=i)),
}


def _column(rng: np.random.Generator, kind: Kind, base: list[Any]) -> pa.Array:
    reps = representations(kind)
    # the column's own type most of the time, so a batch has some rows for the rules to pass
    typ, of_base, pool = reps[0] if rng.random() < 0.6 else reps[int(rng.integers(len(reps)))]
    rate = float(rng.choice([0.0, 0.1, 0.3, 1.0]))
    cells = []
    for value in base:
        if rng.random() < rate:
            cells.append(pool[int(rng.integers(len(pool)))] if rng.random() < 0.9 else None)
        else:
            cells.append(None if value is None else of_base(value))
    if pa.types.is_dictionary(typ):
        return pa.array(cells, pa.string()).dictionary_encode()
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):  # raw values, whatever they mean
        return pa.array(cells, pa.int32() if typ == pa.date32() else pa.int64()).cast(typ)
    return pa.array(cells, typ)


def fuzz_table(ds: Dataset, rng: np.random.Generator) -> pa.Table:
    n = int(rng.integers(0, MAX_ROWS + 1))
    rows = [BASE_ROWS[ds.name](i) for i in range(n)]
    if ds is PRICES:  # whole bars mis-scaled (units, parse errors): OHLC order intact
        for row in rows:
            if rng.random() < 0.1:
                scale = float(rng.choice(SCALES))
                row.update({k: row[k] * scale for k in ("open", "high", "low", "close")})  # type: ignore[operator]
    if n and rng.random() < 0.3:  # some copies for the unique rule
        rows += [dict(rows[int(rng.integers(n))]) for _ in range(int(rng.integers(1, 4)))]
    columns: dict[str, pa.Array] = {}
    for field in ds.fields:
        if field.derived:
            continue  # enrichment's to fill (conform adds it as nulls), never sent by a source
        if rng.random() < 0.03:
            continue  # the column is missing altogether
        base = [r[field.name] for r in rows]
        columns[field.name] = _column(rng, field.kind, base)
    if rng.random() < 0.05:
        columns["extra"] = pa.array([{"a": 1}] * len(rows))
    if rng.random() < 0.05 and columns:
        name = list(columns)[int(rng.integers(len(columns)))]
        columns[name] = pa.nulls(len(rows))  # all-null, null-typed
    table = pa.table(columns) if columns else pa.table({"extra": pa.nulls(len(rows))})
    if table.num_rows and rng.random() < 0.3:  # several chunks, some empty
        cuts = sorted(int(c) for c in rng.integers(0, table.num_rows + 1, size=int(rng.integers(1, 4))))
        bounds = [0, *cuts, table.num_rows]
        table = pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])])
    return table


# --- the oracle -----------------------------------------------------------------------------
def _bare(text: str) -> str:
    """`text` without the blanks and control characters around it (what a placeholder may wear)."""
    i, j = 0, len(text)
    while i < j and _blank(text[i]):
        i += 1
    while j > i and _blank(text[j - 1]):
        j -= 1
    return text[i:j]


def _blank(c: str) -> bool:
    return c.isspace() or unicodedata.category(c) in ("Cc", "Zs", "Zl", "Zp")


def _has_text(text: str, symbols: bool) -> bool:
    return any(unicodedata.category(c)[0] in "LN" or (symbols and unicodedata.category(c) == "So") for c in text)


def _is_link(url: str) -> bool:
    if url == "":
        return True  # empty is absent
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return False
    host = rest
    for stop in "/?#":
        host = host.split(stop, 1)[0]
    bad_host = any(c == "@" or c.isspace() or unicodedata.category(c) in ("Cc", "Zs", "Zl", "Zp") for c in host)
    return bool(host) and not bad_host and not any(unicodedata.category(c) == "Cc" for c in url)


def _in_session(ts: datetime) -> bool:
    local = ts + IST
    minute = local.hour * 60 + local.minute
    return local.weekday() < 5 and 9 * 60 + 15 <= minute < 15 * 60 + 30


def check_valid_row(ds: Dataset, row: dict[str, Any]) -> None:
    for f in ds.fields:
        if f.required:
            assert row[f.name] is not None, f.name
            if f.kind in (Kind.STRING, Kind.SYMBOL):
                assert row[f.name] != "", f.name
    assert FLOOR[ds.name] <= row["ts"] <= LATEST
    assert FLOOR[ds.name] <= row["ingested_at"] <= LATEST_INGEST
    if ds is PRICES:
        o, h, lo, c = row["open"], row["high"], row["low"], row["close"]
        for p in (o, h, lo, c):
            assert math.isfinite(p) and 0 < p <= MAX_PRICE
        assert lo <= o <= h and lo <= c <= h
        assert 0 <= row["volume"] <= MAX_VOLUME
        assert row["exchange"] in ("NSE", "BSE") and row["ticker"] in KNOWN.to_pylist()
        if row["interval"] == "1m":
            assert _in_session(row["ts"])
    elif ds is POSTS:
        text = row["text"]
        assert 5 <= len(text.strip()) <= 10_000
        assert _has_text(text, symbols=True) and _bare(text).lower() not in PLACEHOLDERS
        assert row["engagement"] is None or 0 <= row["engagement"] <= MAX_ENGAGEMENT
        assert row["url"] is None or _is_link(row["url"]), row["url"]
    else:
        assert row["exchange"] in ("NSE", "BSE")
        for name in ("company", "subject"):
            assert _has_text(row[name], symbols=False) and _bare(row[name]).lower() not in PLACEHOLDERS, row[name]
        assert row["attachment_url"] is None or _is_link(row["attachment_url"]), row["attachment_url"]


@pytest.mark.parametrize("case", range(CASES))
@pytest.mark.parametrize("ds", [PRICES, POSTS, FILINGS], ids=lambda d: d.name)
def test_any_values_are_validated_without_crashing(ds: Dataset, case: int) -> None:
    rng = np.random.default_rng([SEED, ["prices", "posts", "filings"].index(ds.name), case])
    table = fuzz_table(ds, rng)
    stamp = rng.random() < 0.5  # the drivers' lineage stamp, or the rows' own ingested_at
    result = process_batch(table, ds, now=NOW, known_tickers=KNOWN, run_id="fuzz" if stamp else None,
                           ingested_at=NOW if stamp else None)
    assert result.rows_valid + result.rows_quarantined == table.num_rows
    assert result.valid.schema == ds.arrow_schema and result.quarantined.schema == ds.quarantine_schema
    reasons = set(result.quarantined.column("reject_reason").to_pylist())
    assert None not in reasons and reasons <= {r.reason for r in default_rules()[ds.name].rules}
    rows = result.valid.to_pylist()
    for row in rows:
        check_valid_row(ds, row)
    keys = [tuple(r[k] for k in ds.natural_key) for r in rows]
    assert len(keys) == len(set(keys))


def test_the_fuzz_reaches_both_outcomes_and_every_new_reason() -> None:
    # a fuzz that rejects everything (or nothing) proves nothing: the pools must hit the rules
    valid = 0
    seen: set[str] = set()
    for i, ds in enumerate((PRICES, POSTS, FILINGS)):
        for case in range(CASES):
            table = fuzz_table(ds, np.random.default_rng([SEED, i, case]))
            result = process_batch(table, ds, now=NOW, known_tickers=KNOWN)
            valid += result.rows_valid
            seen |= set(result.reason_counts())
    assert valid > 100
    assert {"bad_type", "missing_field", "future_timestamp", "implausible_timestamp", "implausible_price",
            "implausible_count", "non_text", "bad_url", "duplicate"} <= seen


def test_nat_as_raw_int64_in_minute_bars_is_rejected_not_a_crash() -> None:
    # Yahoo's null timestamp arrived as numpy NaT (int64 min): the session rule once sized its
    # weekday calendar from it (~795 GiB)
    rows = [price_row(ts=TS + timedelta(minutes=i)) for i in range(3)]
    table = pa.Table.from_pylist(rows, schema=PRICES.record_schema)
    ts = pa.array([I64_MIN, ms(TS), I64_MAX], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    result = process_batch(table, PRICES, now=NOW, known_tickers=KNOWN)
    assert result.rows_valid == 1 and result.reason_counts() == {"implausible_timestamp": 1, "future_timestamp": 1}


def test_a_backfill_decade_of_minute_bars_keeps_its_calendar_path() -> None:
    # many rows over many days: the one-lookup-per-day calendar, and the same verdicts per row
    days = [date(2010, 1, 4) + timedelta(days=d) for d in range(0, 3650, 7)]  # Mondays
    stamps = [datetime(d.year, d.month, d.day, 4, tzinfo=UTC) for d in days]
    stamps += [s + timedelta(days=5) for s in stamps]  # Saturdays
    rows = [price_row(ts=t, ingested_at=t) for t in stamps]
    result = process_batch(pa.Table.from_pylist(rows, schema=PRICES.record_schema), PRICES, now=NOW,
                           known_tickers=KNOWN)
    assert result.rows_valid == len(days) and result.reason_counts() == {"outside_session": len(days)}
