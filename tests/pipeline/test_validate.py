from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from sentinel_ray.pipeline.clean import conform, normalise
from sentinel_ray.quality.rules import Context, QualityRules, default_rules
from sentinel_ray.records import Reason
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, Dataset
from tests.pipeline.rows import KNOWN, NOW, TS, UTC, filing_row, post_row, price_row


# The priority order quarantined rows were stored with: each shipped dataset's rules
# use a subsequence of it (a code keeps its meaning for good).
REASON_ORDER: tuple[Reason, ...] = (
    Reason.MISSING_FIELD, Reason.BAD_TYPE, Reason.UNKNOWN_EXCHANGE, Reason.UNKNOWN_TICKER, Reason.NON_POSITIVE_PRICE,
    Reason.NEGATIVE_VOLUME, Reason.OHLC_INCONSISTENT, Reason.FUTURE_TIMESTAMP, Reason.OUTSIDE_SESSION,
    Reason.TEXT_LENGTH, Reason.DUPLICATE, Reason.IMPLAUSIBLE_PRICE_JUMP,
    # values no real market produces: after every code stored before them
    Reason.IMPLAUSIBLE_TIMESTAMP, Reason.IMPLAUSIBLE_PRICE, Reason.IMPLAUSIBLE_COUNT, Reason.NON_TEXT, Reason.BAD_URL)


def reject_reasons(table: pa.Table, ds: Dataset, *, now: datetime, known_tickers: pa.Array,
                   bad_type: pa.Array | None = None, rules: QualityRules | None = None) -> pa.Array:
    """The rules engine's per-row reason (the first failing reject rule), as process_batch applies it."""
    ctx = Context(now=now, known_tickers=known_tickers, bad_type=bad_type)
    return (rules or default_rules()).for_dataset(ds).evaluate(table, ctx).reject_reason


def reasons_for(ds: Dataset, rows: list[dict[str, object]], **raw_columns: pa.Array) -> list[str | None]:
    """Conform + normalise `rows` (with any column replaced by a raw array) and validate."""
    schema = pa.schema([pa.field(f.name, f.kind.arrow) for f in ds.fields])
    table = pa.Table.from_pylist(rows, schema=schema)
    for name, values in raw_columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    table, bad = conform(table, ds)
    table = normalise(table, ds)
    return reject_reasons(table, ds, now=NOW, known_tickers=KNOWN, bad_type=bad).to_pylist()


def prices(*rows: dict[str, object], **raw: pa.Array) -> list[str | None]:
    return reasons_for(PRICES, list(rows), **raw)


def posts(*rows: dict[str, object], **raw: pa.Array) -> list[str | None]:
    return reasons_for(POSTS, list(rows), **raw)


def filings(*rows: dict[str, object], **raw: pa.Array) -> list[str | None]:
    return reasons_for(FILINGS, list(rows), **raw)


def test_shipped_rules_follow_the_reason_order() -> None:
    # stored quarantine data keeps its meaning: same codes, same priority as before the rules engine
    for ds in ("prices", "posts", "filings"):
        reasons = [r.reason for r in default_rules()[ds].rules]
        assert reasons == [r for r in REASON_ORDER if r in reasons], ds
    assert [r.reason for r in default_rules()["posts"].rules] == [
        Reason.MISSING_FIELD, Reason.BAD_TYPE, Reason.FUTURE_TIMESTAMP, Reason.TEXT_LENGTH, Reason.DUPLICATE,
        Reason.IMPLAUSIBLE_TIMESTAMP, Reason.IMPLAUSIBLE_COUNT, Reason.NON_TEXT, Reason.BAD_URL]
    assert set(REASON_ORDER) - {r.reason for r in default_rules()["prices"].rules} == {
        Reason.TEXT_LENGTH, Reason.NON_TEXT, Reason.BAD_URL}


def test_clean_rows_are_valid() -> None:
    assert prices(price_row(), price_row(ticker="TCS", exchange="BSE")) == [None, None]
    assert posts(post_row(), post_row(post_id="p2", author=None, engagement=None, tickers=[])) == [None, None]


def test_missing_field_null_and_empty() -> None:
    assert prices(price_row(), price_row(close=None), price_row(source="")) == [
        None, Reason.MISSING_FIELD, Reason.MISSING_FIELD,
    ]
    assert posts(post_row(), post_row(post_id="p2", tickers=None)) == [None, Reason.MISSING_FIELD]


def test_missing_required_column_rejects_every_row() -> None:
    table = pa.Table.from_pylist([price_row()]).drop_columns(["source"])
    table, bad = conform(table, PRICES)
    assert reject_reasons(table, PRICES, now=NOW, known_tickers=KNOWN, bad_type=bad).to_pylist() == [
        Reason.MISSING_FIELD
    ]


def test_optional_fields_may_be_null() -> None:
    assert posts(post_row(author=None, url=None, engagement=None)) == [None]


def test_bad_type() -> None:
    assert prices(price_row(), price_row(ts=TS + timedelta(minutes=1)), open=pa.array(["100", "abc"])) == [
        None, Reason.BAD_TYPE,
    ]


def test_unknown_exchange() -> None:
    assert prices(price_row(), price_row(exchange="NYSE")) == [None, Reason.UNKNOWN_EXCHANGE]


def test_unknown_ticker() -> None:
    assert prices(price_row(), price_row(ticker="AAPL")) == [None, Reason.UNKNOWN_TICKER]


def test_non_positive_price() -> None:
    assert prices(price_row(), price_row(ticker="TCS", low=0.0), price_row(ticker="INFY", open=-1.0)) == [
        None, Reason.NON_POSITIVE_PRICE, Reason.NON_POSITIVE_PRICE,
    ]


def test_negative_volume() -> None:
    assert prices(price_row(), price_row(ticker="TCS", volume=-1), price_row(ticker="ITC", volume=0)) == [
        None, Reason.NEGATIVE_VOLUME, None,
    ]


@pytest.mark.parametrize(
    "bar",
    [
        {"high": 99.5},  # open above high
        {"low": 100.6},  # close below low
        {"close": 101.5},  # close above high
        {"open": 98.0},  # open below low
    ],
)
def test_ohlc_inconsistent(bar: dict[str, float]) -> None:
    assert prices(price_row(), price_row(ticker="TCS", **bar)) == [None, Reason.OHLC_INCONSISTENT]


def test_ohlc_equal_bounds_are_consistent() -> None:
    assert prices(price_row(open=100.0, high=100.0, low=100.0, close=100.0)) == [None]


def test_future_timestamp_beyond_skew() -> None:
    rows = [
        price_row(interval="1d", ts=NOW + timedelta(minutes=4)),
        price_row(interval="1d", ts=NOW + timedelta(minutes=6)),
    ]
    assert prices(*rows) == [None, Reason.FUTURE_TIMESTAMP]
    assert posts(post_row(ts=NOW + timedelta(hours=1))) == [Reason.FUTURE_TIMESTAMP]


def test_outside_session_for_minute_bars_only() -> None:
    day = datetime(2024, 1, 2, tzinfo=UTC)  # Tuesday
    rows = [
        price_row(ts=day + timedelta(hours=3, minutes=45)),  # 09:15 IST: open
        price_row(ts=day + timedelta(hours=9, minutes=59)),  # 15:29 IST: last bar
        price_row(ts=day + timedelta(hours=3, minutes=44)),  # 09:14 IST
        price_row(ts=day + timedelta(hours=10)),  # 15:30 IST: closed
        price_row(ts=day + timedelta(days=4, hours=5)),  # Saturday
        price_row(ts=day + timedelta(days=5, hours=5)),  # Sunday
        price_row(ts=day + timedelta(days=6, hours=5)),  # Monday
        price_row(ts=day + timedelta(days=4), interval="1d"),  # daily bars have no session
    ]
    s = Reason.OUTSIDE_SESSION
    assert prices(*rows) == [None, None, s, s, s, s, None, None]


def test_text_length_counts_characters_not_bytes() -> None:
    rows = [
        post_row(post_id="1", text="🚀🚀🚀🚀"),  # 4 characters, 16 bytes
        post_row(post_id="2", text="भारतम"),  # 5 characters, 15 bytes
        post_row(post_id="3", text="   abcd   "),  # 4 after trim
        post_row(post_id="4", text="भ" * 10_000),  # 10000 characters, 30000 bytes
        post_row(post_id="5", text="a" * 10_001),
    ]
    t = Reason.TEXT_LENGTH
    assert posts(*rows) == [t, None, t, None, t]


def test_duplicate_keeps_first() -> None:
    assert prices(price_row(), price_row(close=100.7), price_row(source="yahoo")) == [
        None, Reason.DUPLICATE, None,
    ]
    assert posts(post_row(), post_row(text="edited later"), post_row(platform="x")) == [
        None, Reason.DUPLICATE, None,
    ]


def test_copy_of_a_rejected_row_keeps_its_own_reason() -> None:
    bad = price_row(volume=-5)
    assert prices(bad, bad) == [Reason.NEGATIVE_VOLUME, Reason.NEGATIVE_VOLUME]
    # a rejected first row does not make a later good row with its key a duplicate
    assert prices(bad, price_row(), price_row()) == [Reason.NEGATIVE_VOLUME, None, Reason.DUPLICATE]


def test_priority_first_failing_rule_wins() -> None:
    rows = [
        price_row(ticker=None, volume=-1),  # missing_field before negative_volume
        price_row(exchange="NYSE", ticker="AAPL"),  # unknown_exchange before unknown_ticker
        price_row(ticker="TCS", open=-1.0, volume=-1),  # non_positive_price before negative_volume
        price_row(ticker="INFY", volume=-1, high=1.0),  # negative_volume before ohlc_inconsistent
        price_row(ticker="ITC", high=1.0, ts=NOW + timedelta(days=1)),  # ohlc before future
        price_row(ticker="RELIANCE", ts=NOW + timedelta(days=2, hours=-12)),  # future before session
    ]
    assert prices(*rows) == [
        Reason.MISSING_FIELD, Reason.UNKNOWN_EXCHANGE, Reason.NON_POSITIVE_PRICE,
        Reason.NEGATIVE_VOLUME, Reason.OHLC_INCONSISTENT, Reason.FUTURE_TIMESTAMP,
    ]


def test_bad_type_is_reported_rather_than_missing() -> None:
    # conform nulls the unreadable value; the row's reason is still the type, not absence
    assert prices(price_row(), volume=pa.array(["lots"])) == [Reason.BAD_TYPE]


def test_bad_type_outranks_every_value_rule() -> None:
    assert prices(price_row(exchange="NYSE"), open=pa.array(["abc"])) == [Reason.BAD_TYPE]


def test_without_bad_type_mask_and_empty_table() -> None:
    schema = pa.schema([pa.field(f.name, f.kind.arrow) for f in PRICES.fields])
    empty = schema.empty_table()
    out = reject_reasons(empty, PRICES, now=NOW, known_tickers=KNOWN)
    assert out.type == pa.string() and len(out) == 0
    one = pa.Table.from_pylist([price_row(ticker="AAPL")], schema=schema)
    assert reject_reasons(one, PRICES, now=NOW, known_tickers=KNOWN).to_pylist() == [Reason.UNKNOWN_TICKER]


def test_rules_argument(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sentinel_ray.quality.rules import load_rules

    schema = pa.schema([pa.field(f.name, f.kind.arrow) for f in PRICES.fields])
    table = pa.Table.from_pylist([price_row(interval="1d", ts=NOW + timedelta(minutes=3)),
                                  price_row(ticker="AAPL", interval="1d")], schema=schema)
    assert reject_reasons(table, PRICES, now=NOW, known_tickers=KNOWN).to_pylist() == [None, Reason.UNKNOWN_TICKER]
    path = tmp_path / "rules.yaml"
    path.write_text("prices:\n  - name: unknown_ticker\n    enabled: false\n")
    assert reject_reasons(table, PRICES, now=NOW, known_tickers=KNOWN, rules=load_rules(path)).to_pylist() == [
        None, None]


# --- values no real market produces -----------------------------------------------------


def test_implausible_timestamp_floor_per_dataset() -> None:
    def at(t: datetime, **kw: object) -> dict[str, object]:
        return price_row(interval="1d", ts=t, **kw)

    t = Reason.IMPLAUSIBLE_TIMESTAMP
    floor = datetime(1990, 1, 1, tzinfo=UTC)
    assert prices(at(floor - timedelta(milliseconds=1)), at(floor, ticker="TCS"),
                  at(datetime(1970, 1, 1, tzinfo=UTC), ticker="INFY"), at(datetime(1899, 12, 30, tzinfo=UTC),
                                                                       ticker="ITC"),
                  at(datetime(1, 1, 1, tzinfo=UTC), exchange="BSE")) == [t, None, t, t, t]
    posts_floor = datetime(2000, 1, 1, tzinfo=UTC)
    assert posts(post_row(ts=posts_floor - timedelta(milliseconds=1)), post_row(post_id="p2", ts=posts_floor)) == [
        t, None]
    assert filings(filing_row(ts=floor - timedelta(days=1)), filing_row(filing_id="f2", ts=floor)) == [t, None]


def test_ingested_at_is_bounded_both_ways() -> None:
    # the platform's own stamp: not before the floor, not more than a day ahead of validation
    t = Reason.IMPLAUSIBLE_TIMESTAMP
    rows = [price_row(ingested_at=NOW + timedelta(days=1)), price_row(ticker="TCS", ingested_at=NOW + timedelta(
        days=1, milliseconds=1)), price_row(ticker="INFY", ingested_at=datetime(9999, 12, 31, tzinfo=UTC)),
            price_row(ticker="ITC", ingested_at=datetime(1970, 1, 1, tzinfo=UTC))]
    assert prices(*rows) == [None, t, t, t]
    assert posts(post_row(ingested_at=datetime(1999, 1, 1, tzinfo=UTC))) == [t]


def test_the_future_beyond_skew_stays_future_timestamp() -> None:
    assert prices(price_row(interval="1d", ts=datetime(9999, 12, 31, tzinfo=UTC))) == [Reason.FUTURE_TIMESTAMP]


def test_implausible_price_and_counts() -> None:
    p, c = Reason.IMPLAUSIBLE_PRICE, Reason.IMPLAUSIBLE_COUNT
    big = {"open": 9e6, "high": 1e7, "low": 8e6, "close": 9e6}
    assert prices(price_row(**big), price_row(ticker="TCS", **{**big, "high": 1e7 + 1}),
                  price_row(ticker="INFY", open=1e308, high=1e308, low=1e308, close=1e308)) == [None, p, p]
    assert prices(price_row(volume=10**12), price_row(ticker="TCS", volume=10**12 + 1),
                  price_row(ticker="INFY", volume=2**63 - 1), price_row(ticker="ITC", volume=-(2**63))) == [
        None, c, c, Reason.NEGATIVE_VOLUME]
    rows = [post_row(post_id=str(i), engagement=e) for i, e in enumerate([None, 0, 10**10, -1, 10**10 + 1, 2**63 - 1])]
    assert posts(*rows) == [None, None, None, c, c, c]


def test_non_text_in_text_fields() -> None:
    n = Reason.NON_TEXT
    texts = ["{}{}{}", "[ ] [ ]", "------", " undefined ", "[object Object]", "UNDEFINED",
             "\u200b" * 6, "🚀🚀🚀🚀🚀", "12345", "null or not, TCS flies", "भारतम", "₹₹₹₹₹"]
    rows = [post_row(post_id=str(i), text=t) for i, t in enumerate(texts)]
    assert posts(*rows) == [n, n, n, n, n, n, n, None, None, None, None, n]
    assert filings(filing_row(company="{}"), filing_row(filing_id="f2", subject="null"),
                   filing_row(filing_id="f3", company="3M India Ltd", subject="Outcome of Board Meeting"),
                   filing_row(filing_id="f4", subject="[]"), filing_row(filing_id="f5", company="\u00a0None\u00a0"),
                   filing_row(filing_id="f6", company="Nil Ltd")) == [n, n, None, n, n, None]


def test_links_are_http_or_https() -> None:
    b = Reason.BAD_URL
    urls = [None, "", "https://www.reddit.com/r/x/comments/1/", "HTTP://EXAMPLE.COM", "https://x.com/@handle",
            "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "//evil.example/x",
            "/relative", "https://", "https://nseindia.com@evil.example/", "https://ok.example/x\njavascript:y",
            " https://ok.example/", "ftp://files.example/"]
    rows = [post_row(post_id=str(i), url=u) for i, u in enumerate(urls)]
    assert posts(*rows) == [None, None, None, None, None, b, b, b, b, b, b, b, b, b, b]
    assert filings(filing_row(attachment_url="javascript:void(0)"), filing_row(filing_id="f2")) == [b, None]


def test_earlier_rules_keep_priority_over_the_new_ones() -> None:
    old = datetime(1970, 1, 1, tzinfo=UTC)
    assert prices(price_row(interval="1d", ts=old, volume=-1)) == [Reason.NEGATIVE_VOLUME]
    assert posts(post_row(text="{}", ts=old)) == [Reason.TEXT_LENGTH]
    assert posts(post_row(text="{}{}{}", ts=old, url="javascript:x")) == [Reason.IMPLAUSIBLE_TIMESTAMP]
    assert posts(post_row(text="{}{}{}", url="javascript:x")) == [Reason.NON_TEXT]
