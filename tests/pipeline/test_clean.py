from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from sentinel_ray.pipeline.clean import conform, normalise
from sentinel_ray.quality.rules import Context, UniqueRule
from sentinel_ray.schemas import Dataset
from sentinel_ray.schemas import POSTS, PRICES, TIMESTAMP_TYPE
from tests.pipeline.rows import UTC, TS, price_row


def dedup_mask(table: pa.Table, ds: Dataset) -> pa.Array:
    """The shipped `duplicate` rule (kind `unique` on the natural key) alone: True for rows whose
    key appeared in an earlier row."""
    rule = UniqueRule(name="duplicate", dataset=ds.name, columns=list(ds.natural_key))
    return rule.mask(table, Context(now=datetime.now(timezone.utc)))


def typed_prices(rows: list[dict[str, object]]) -> pa.Table:
    schema = pa.schema([pa.field(f.name, f.kind.arrow) for f in PRICES.fields])
    return pa.Table.from_pylist(rows, schema=schema)


def conformed_column(values: pa.Array, name: str = "open") -> tuple[list[object], list[bool]]:
    """Conform a prices table whose `name` column holds `values`; return that column and bad_type."""
    n = len(values)
    table = typed_prices([price_row() for _ in range(n)])
    table = table.set_column(table.schema.get_field_index(name), name, values)
    out, bad = conform(table, PRICES)
    return out.column(name).to_pylist(), bad.to_pylist()


# --- conform: numbers ---------------------------------------------------------------

def test_numeric_strings_convert_and_garbage_is_bad_type() -> None:
    values, bad = conformed_column(pa.array(["123.5", " 7 ", "abc", None, "1e3", "", "nan"]))
    assert values == [123.5, 7.0, None, None, 1000.0, None, None]
    assert bad == [False, False, True, False, False, True, True]


def test_clean_numeric_strings_take_the_fast_path() -> None:
    values, bad = conformed_column(pa.array(["12.5", "3"]))
    assert values == [12.5, 3.0]
    assert bad == [False, False]


def test_ints_become_floats() -> None:
    values, bad = conformed_column(pa.array([100, 7], pa.int32()))
    assert values == [100.0, 7.0]
    assert bad == [False, False]


def test_float_volume_converts_only_when_integral() -> None:
    values, bad = conformed_column(pa.array([10.0, 10.5, float("inf"), None]), name="volume")
    assert values == [10, None, None, None]
    assert bad == [False, True, True, False]


def test_volume_from_text() -> None:
    values, bad = conformed_column(pa.array(["42", " 5 ", "4.0", "x"]), name="volume")
    assert values == [42, 5, 4, None]
    assert bad == [False, False, False, True]


def test_nan_in_a_float_column_is_bad_type() -> None:
    values, bad = conformed_column(pa.array([1.5, float("nan")]))
    assert values == [1.5, None]
    assert bad == [False, True]


# --- conform: timestamps ------------------------------------------------------------

def test_offset_timestamps_are_converted_to_utc() -> None:
    values, bad = conformed_column(
        pa.array(["2024-01-02T09:15:00+05:30", "2024-01-02T03:45:00Z"]), name="ts"
    )
    assert values == [datetime(2024, 1, 2, 3, 45, tzinfo=UTC)] * 2
    assert bad == [False, False]


def test_naive_timestamp_strings_are_utc() -> None:
    # Mixed with an offset one and junk, so the element-wise path runs.
    values, bad = conformed_column(
        pa.array([
            "2024-01-02T09:15:00", "2024-01-02 09:15:00+05:30", "2024-01-02",
            "2024-01-02T09:15:00.123456", "not a time", "2024-02-30T00:00:00", "2024-01-02T25:00:00",
        ]),
        name="ts",
    )
    assert values == [
        datetime(2024, 1, 2, 9, 15, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 45, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 2, 9, 15, 0, 123000, tzinfo=UTC),
        None, None, None,
    ]
    assert bad == [False, False, False, False, True, True, True]


def test_naive_timestamp_type_is_utc_and_other_zones_and_units_convert() -> None:
    naive = pa.array([datetime(2024, 1, 2, 9, 15)], pa.timestamp("us"))
    assert conformed_column(naive, "ts")[0] == [datetime(2024, 1, 2, 9, 15, tzinfo=UTC)]
    ist = pa.array([datetime(2024, 1, 2, 3, 45, tzinfo=UTC)], pa.timestamp("ns", tz="Asia/Kolkata"))
    assert conformed_column(ist, "ts")[0] == [datetime(2024, 1, 2, 3, 45, tzinfo=UTC)]
    assert conformed_column(pa.array([date(2024, 1, 2)]), "ts")[0] == [datetime(2024, 1, 2, tzinfo=UTC)]


def test_unconvertible_type_marks_every_present_value() -> None:
    values, bad = conformed_column(pa.array([[1], None]), name="ts")
    assert values == [None, None]
    assert bad == [True, False]
    values, bad = conformed_column(pa.array([{"a": 1}, None]), name="ticker")
    assert values == [None, None]
    assert bad == [True, False]


def test_timestamp_overflowing_milliseconds_is_bad_type_not_a_wrapped_time() -> None:
    # int64 max seconds wrapped to 1969-12-31 23:59:59 under an unchecked cast
    raw = pa.array([2**63 - 1, -(2**63), 1_704_168_000, None], pa.int64()).cast(pa.timestamp("s"))
    values, bad = conformed_column(raw, name="ts")
    assert values == [None, None, datetime(2024, 1, 2, 4, tzinfo=UTC), None]
    assert bad == [True, True, False, False]


def test_uint64_beyond_int64_spoils_only_its_own_rows() -> None:
    values, bad = conformed_column(pa.array([2**64 - 1, 2**63, 5, None], pa.uint64()), name="volume")
    assert values == [None, None, 5, None]
    assert bad == [True, True, False, False]


def test_epoch_numbers_are_not_guessed_as_timestamps() -> None:
    values, bad = conformed_column(pa.array([1_704_168_000, None]), name="ts")
    assert values == [None, None]
    assert bad == [True, False]


# --- conform: shape -----------------------------------------------------------------

def test_schema_is_exactly_the_dataset_columns_with_extra_dropped_and_missing_null() -> None:
    rows = [price_row(extra="x") for _ in range(2)]
    for r in rows:
        del r["volume"]
    table = pa.Table.from_pylist(rows)
    out, bad = conform(table, PRICES)
    assert out.schema == pa.schema([pa.field(f.name, f.kind.arrow) for f in PRICES.fields])
    assert out.column("volume").to_pylist() == [None, None]
    assert bad.to_pylist() == [False, False]


def test_large_string_and_dictionary_columns_decode() -> None:
    table = typed_prices([price_row(), price_row()])
    table = table.set_column(0, "ticker", pa.array(["TCS", "INFY"], pa.large_string()))
    table = table.set_column(1, "exchange", pa.array(["NSE", "NSE"]).dictionary_encode())
    out, bad = conform(table, PRICES)
    assert out.column("ticker").type == pa.string()
    assert out.column("exchange").to_pylist() == ["NSE", "NSE"]
    assert bad.to_pylist() == [False, False]


def test_exact_types_pass_through_untouched() -> None:
    table = typed_prices([price_row()])
    out, bad = conform(table, PRICES)
    assert out.column("open").chunk(0) is not None
    assert out.equals(table)
    assert bad.to_pylist() == [False]


def test_post_tickers_from_large_list() -> None:
    table = pa.table({"tickers": pa.array([["TCS"], None], pa.large_list(pa.large_string()))})
    out, bad = conform(table, POSTS)
    assert out.column("tickers").type == pa.list_(pa.string())
    assert out.column("tickers").to_pylist() == [["TCS"], None]
    assert bad.to_pylist() == [False, False]


# --- normalise ----------------------------------------------------------------------

def test_yahoo_suffixes_set_exchange_and_tickers_are_upper_trimmed() -> None:
    table = typed_prices([
        price_row(ticker=" reliance.ns ", exchange=None),
        price_row(ticker="tcs.bo", exchange="nse"),
        price_row(ticker="infy", exchange=" bse "),
        price_row(ticker=None, exchange=None),
    ])
    out = normalise(table, PRICES)
    assert out.column("ticker").to_pylist() == ["RELIANCE", "TCS", "INFY", None]
    assert out.column("exchange").to_pylist() == ["NSE", "BSE", "BSE", None]
    assert out.schema == table.schema


def test_post_cashtags_upper_cased_and_text_trimmed() -> None:
    table = pa.table({
        "text": pa.array(["  buy $tcs now  ", None]),
        "tickers": pa.array([["$tcs", "Infy"], None], pa.list_(pa.string())),
    })
    table, _ = conform(table, POSTS)
    out = normalise(table, POSTS)
    assert out.column("text").to_pylist() == ["buy $tcs now", None]
    assert out.column("tickers").to_pylist() == [["TCS", "INFY"], None]


def test_post_tickers_of_a_sliced_table_keep_row_boundaries() -> None:
    table = pa.table({"tickers": pa.array([["a"], ["b", "c"], [], ["d"]], pa.list_(pa.string()))}).slice(1)
    table, _ = conform(table, POSTS)
    assert normalise(table, POSTS).column("tickers").to_pylist() == [["B", "C"], [], ["D"]]


def test_post_tickers_of_a_sliced_chunk_with_null_lists() -> None:
    # Arrow refuses a null mask with sliced offsets: the list is rebuilt on the slice's values
    tickers = pa.array([["$a"], None, ["b ", "c"], None, [], ["d"]], pa.list_(pa.string()))
    for table in (pa.table({"tickers": tickers}).slice(1), pa.table({"tickers": tickers}).slice(2, 3),
                  pa.concat_tables([pa.table({"tickers": tickers}).slice(0, 2),
                                    pa.table({"tickers": tickers}).slice(3)])):
        expected = [None if t is None else [x.strip(" $").upper() for x in t]
                    for t in table.column("tickers").to_pylist()]
        table, _ = conform(table, POSTS)
        assert normalise(table, POSTS).column("tickers").to_pylist() == expected


# --- dedup --------------------------------------------------------------------------

def test_dedup_keeps_first_occurrence_and_marks_later_ones() -> None:
    later = TS + timedelta(minutes=1)
    table = typed_prices([
        price_row(), price_row(ts=later), price_row(close=100.7), price_row(ts=later), price_row(),
    ])
    assert dedup_mask(table, PRICES).to_pylist() == [False, False, True, True, True]


def test_source_is_part_of_the_prices_key() -> None:
    table = typed_prices([price_row(source="replay"), price_row(source="yahoo")])
    assert dedup_mask(table, PRICES).to_pylist() == [False, False]


def test_null_key_rows_are_never_duplicates_and_never_shadow_real_keys() -> None:
    table = typed_prices([price_row(ticker=None), price_row(ticker=None), price_row(ts=None), price_row()])
    assert dedup_mask(table, PRICES).to_pylist() == [False, False, False, False]


def test_dedup_of_posts_and_empty_and_chunked_tables() -> None:
    posts = pa.table({"platform": ["x", "x", "reddit", "x"], "post_id": ["1", "2", "1", "1"]})
    posts, _ = conform(posts, POSTS)
    assert dedup_mask(posts, POSTS).to_pylist() == [False, False, False, True]
    assert dedup_mask(typed_prices([]), PRICES).to_pylist() == []
    chunked = pa.concat_tables([typed_prices([price_row()]), typed_prices([price_row(), price_row(ticker="TCS")])])
    assert dedup_mask(chunked, PRICES).to_pylist() == [False, True, False]


def test_dedup_matches_a_plain_python_dedup() -> None:
    rng = np.random.default_rng(7)
    n = 2000
    tickers = np.array(["RELIANCE", "TCS", "INFY", None], dtype=object)[rng.integers(0, 4, n)]
    minutes = rng.integers(0, 50, n)
    rows = [price_row(ticker=t, ts=TS + timedelta(minutes=int(m)), source=("replay", "yahoo")[i % 2])
            for i, (t, m) in enumerate(zip(tickers, minutes))]
    seen: set[tuple] = set()
    expected = []
    for row in rows:
        key = tuple(row[k] for k in PRICES.natural_key)
        expected.append(None not in key and key in seen)
        seen.add(key)
    assert dedup_mask(typed_prices(rows), PRICES).to_pylist() == expected
    assert sum(expected) > 0


def test_keys_with_many_distinct_values() -> None:
    far = datetime(2200, 1, 1, tzinfo=UTC)
    rows = [price_row(ticker=f"T{i}", ts=TS if i % 2 else far) for i in range(300)] + [price_row(ticker="T1")]
    rows += [price_row(source=f"s{i}", exchange=f"E{i}", interval=f"{i}m") for i in range(300)]
    table = typed_prices(rows)
    mask = dedup_mask(table, PRICES).to_pylist()
    assert mask[300] is True
    assert sum(mask) == 1


@pytest.mark.parametrize("ts_type", [TIMESTAMP_TYPE])
def test_conform_then_dedup_on_string_timestamps(ts_type: pa.DataType) -> None:
    table = pa.table({
        "ticker": ["TCS", "TCS"], "exchange": ["NSE", "NSE"], "interval": ["1m", "1m"], "source": ["a", "a"],
        "ts": ["2024-01-02T09:15:00+05:30", "2024-01-02T03:45:00Z"],
    })
    out, _ = conform(table, PRICES)
    assert out.column("ts").type == ts_type
    assert dedup_mask(out, PRICES).to_pylist() == [False, True]
