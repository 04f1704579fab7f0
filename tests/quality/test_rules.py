"""The rules engine: each kind on crafted tables, severities, ordering, loading and overrides."""
from __future__ import annotations

import os
import random
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.pipeline.clean import conform
from sentinel_ray.quality.rules import (Context, Evaluation, QualityRules, RulesError, RuleSet, build_rule,
    default_rules, evaluate, load_rules, rules_for)
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, Dataset
from tests.pipeline.rows import KNOWN, NOW, TS, UTC, post_row, price_row, table_of

CTX = Context(now=NOW, known_tickers=KNOWN)


def fails(spec: dict[str, object], rows: list[dict[str, object]], ds: Dataset = PRICES,
          ctx: Context = CTX) -> list[int]:
    """Indexes of the rows one rule (built from `spec`) fails."""
    rule = build_rule(spec, ds)
    mask = rule.mask(table_of(ds, rows), ctx)
    assert mask.type == pa.bool_() and mask.null_count == 0 and len(mask) == len(rows)
    return [i for i, failed in enumerate(mask.to_pylist()) if failed]


def reasons(rows: list[dict[str, object]], rules: RuleSet, ds: Dataset = PRICES) -> list[str | None]:
    table, bad = conform(table_of(ds, rows), ds)
    return rules.evaluate(table, Context(now=NOW, known_tickers=KNOWN, bad_type=bad)).reject_reason.to_pylist()


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- kinds ---------------------------------------------------------------------------


def test_not_null_counts_empty_text_as_missing() -> None:
    spec = {"name": "missing_field", "kind": "not_null", "columns": "required"}
    rows = [price_row(), price_row(close=None), price_row(source=""), price_row(ticker=None), price_row(run_id=" ")]
    assert fails(spec, rows) == [1, 2, 3]
    assert fails({**spec, "blank_is_null": True}, rows) == [1, 2, 3, 4]
    # optional columns are not in `required`; a listed one is checked
    assert fails(spec, [post_row(author=None, url=None)], POSTS) == []
    assert fails({**spec, "columns": ["author"]}, [post_row(author=None), post_row(author="")], POSTS) == [0, 1]


def test_not_null_leaves_unreadable_values_to_bad_type() -> None:
    rows = [price_row(), price_row(close=None)]
    bad = pa.array([False, True])
    ctx = Context(now=NOW, known_tickers=KNOWN, bad_type=bad)
    assert fails({"name": "m", "kind": "not_null", "columns": "required"}, rows, ctx=ctx) == []
    assert fails({"name": "t", "kind": "type"}, rows, ctx=ctx) == [1]
    assert fails({"name": "t", "kind": "type"}, rows) == []  # no conform mask: nothing to report


def test_range_bounds_inclusive_and_exclusive() -> None:
    rows = [price_row(low=0.0), price_row(low=0.01), price_row(low=None), price_row(volume=-1), price_row(volume=0)]
    assert fails({"name": "p", "kind": "range", "columns": ["low"], "min": 0, "min_inclusive": False}, rows) == [0]
    assert fails({"name": "p", "kind": "range", "columns": ["low"], "min": 0}, rows) == []
    assert fails({"name": "v", "kind": "range", "column": "volume", "min": 0}, rows) == [3]
    assert fails({"name": "v", "kind": "range", "column": "volume", "min": 0, "max": 5,
                  "max_inclusive": False}, [price_row(volume=4), price_row(volume=5)]) == [1]
    # any listed column failing fails the row; null never does
    assert fails({"name": "p", "kind": "range", "columns": ["open", "close"], "max": 100.2},
                 [price_row(), price_row(open=100.3), price_row(close=None)]) == [0, 1]


def test_allowed_values_and_reference_sets() -> None:
    rows = [price_row(), price_row(exchange="NYSE"), price_row(exchange=None), price_row(ticker="AAPL")]
    assert fails({"name": "x", "kind": "allowed", "column": "exchange", "values_from": "exchanges"}, rows) == [1]
    assert fails({"name": "t", "kind": "allowed", "column": "ticker", "values_from": "known_tickers"}, rows) == [3]
    assert fails({"name": "i", "kind": "allowed", "column": "interval", "values": ["1d"]}, rows) == [0, 1, 2, 3]
    # ctx.known_tickers is the reference; without it the shipped symbol list is
    assert fails({"name": "t", "kind": "allowed", "column": "ticker", "values_from": "known_tickers"},
                 [price_row(ticker="TCS")], ctx=Context(now=NOW, known_tickers=pa.array(["INFY"]))) == [0]


def test_allowed_maps_many_distinct_values_and_chunks_correctly() -> None:
    rng = random.Random(3)
    symbols = [f"S{i}" for i in range(300)]
    values = [rng.choice(symbols + ["BAD1", "BAD2", None]) for _ in range(5_000)]
    table = pa.Table.from_pylist([price_row(ticker=v) for v in values], schema=PRICES.record_schema)
    chunked = pa.concat_tables([table.slice(0, 1234), table.slice(1234)])
    rule = build_rule({"name": "t", "kind": "allowed", "column": "ticker", "values": symbols}, PRICES)
    for t in (table, chunked):
        got = rule.mask(t, Context(now=NOW)).to_pylist()
        assert got == [v in ("BAD1", "BAD2") for v in values]


def test_regex_and_bad_pattern() -> None:
    spec = {"name": "ticker_pattern", "kind": "regex", "column": "ticker", "pattern": "^[A-Z][A-Z0-9&-]{0,19}$"}
    rows = [price_row(), price_row(ticker="M&M"), price_row(ticker="reliance"), price_row(ticker="A B"),
            price_row(ticker=None)]
    assert fails(spec, rows) == [2, 3]
    with pytest.raises(ValueError, match="does not compile"):
        build_rule({**spec, "pattern": "(unclosed"}, PRICES)


def test_text_length_counts_characters_after_trim() -> None:
    spec = {"name": "text_length", "kind": "text_length", "column": "text", "min": 5, "max": 10}
    rows = [post_row(text="🚀🚀🚀🚀"), post_row(text="भारतम"), post_row(text="   abcd  "), post_row(text="a" * 10),
            post_row(text="a" * 11), post_row(text=None)]
    assert fails(spec, rows, POSTS) == [0, 2, 4]


@pytest.mark.parametrize("bar, bad", [({}, False), ({"high": 99.5}, True), ({"low": 100.6}, True),
                                       ({"close": 101.5}, True), ({"open": 98.0}, True),
                                       ({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0}, False),
                                       ({"high": None}, False)])
def test_cross_field_ohlc(bar: dict[str, float], bad: bool) -> None:
    assert fails({"name": "o", "kind": "cross_field", "check": "ohlc"}, [price_row(**bar)]) == ([0] if bad else [])


def test_cross_field_compare() -> None:
    spec = {"name": "c", "kind": "cross_field", "check": "compare", "left": "ingested_at", "op": ">=", "right": "ts"}
    rows = [price_row(), price_row(ingested_at=TS - timedelta(seconds=1))]
    assert fails(spec, rows) == [1]
    with pytest.raises(ValueError, match="left"):
        build_rule({"name": "c", "kind": "cross_field", "check": "compare"}, PRICES)


def test_freshness_future_and_max_age() -> None:
    rows = [price_row(ts=NOW + timedelta(minutes=4)), price_row(ts=NOW + timedelta(minutes=6)),
            price_row(ts=NOW - timedelta(days=31)), price_row(ts=None)]
    assert fails({"name": "f", "kind": "freshness", "max_future": "5m"}, rows) == [1]
    assert fails({"name": "s", "kind": "freshness", "max_age": "30d"}, rows) == [2]
    assert fails({"name": "f", "kind": "freshness", "max_future": 300, "max_age": "30d"}, rows) == [1, 2]
    assert fails({"name": "f", "kind": "freshness", "max_future": "3m"}, rows) == [0, 1]
    # naive `now` means UTC
    assert fails({"name": "f", "kind": "freshness", "max_future": "5m"}, rows,
                 ctx=Context(now=NOW.replace(tzinfo=None))) == [1]
    with pytest.raises(ValueError, match="duration"):
        build_rule({"name": "f", "kind": "freshness", "max_future": "5 parsecs"}, PRICES)


def test_freshness_not_before_a_fixed_moment() -> None:
    rows = [price_row(ts=datetime(1989, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
            price_row(ts=datetime(1990, 1, 1, tzinfo=UTC)), price_row(ts=None), price_row()]
    for floor in (date(1990, 1, 1), "1990-01-01", "1990-01-01T05:30:00+05:30", datetime(1990, 1, 1)):
        assert fails({"name": "f", "kind": "freshness", "not_before": floor}, rows) == [0], floor
    rule = build_rule({"name": "f", "kind": "freshness", "not_before": "1990-01-01"}, PRICES)
    assert rule.not_before == datetime(1990, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="moment"):
        build_rule({"name": "f", "kind": "freshness", "not_before": "the dawn of time"}, PRICES)
    with pytest.raises(ValueError, match="not_before"):
        build_rule({"name": "f", "kind": "freshness"}, PRICES)


def test_regex_forbid_and_pattern_together() -> None:
    spec = {"name": "t", "kind": "regex", "column": "text", "pattern": "[a-z]", "forbid": "(?i)^null$"}
    rows = [post_row(text="ok then"), post_row(text="null"), post_row(text="NULL"), post_row(text="{}"),
            post_row(text=None)]
    assert fails(spec, rows, POSTS) == [1, 2, 3]
    assert fails({"name": "t", "kind": "regex", "column": "text", "forbid": "^null$"}, rows, POSTS) == [1]
    # on a symbol column too (matched once per distinct value)
    assert fails({"name": "x", "kind": "regex", "column": "exchange", "forbid": "^B"},
                 [price_row(), price_row(exchange="BSE"), price_row(exchange=None)]) == [1]
    with pytest.raises(ValueError, match="pattern.*forbid"):
        build_rule({"name": "t", "kind": "regex", "column": "text"}, POSTS)
    with pytest.raises(ValueError, match="forbid .* does not compile"):
        build_rule({"name": "t", "kind": "regex", "column": "text", "forbid": "(unclosed"}, POSTS)


def test_range_with_int64_extremes_and_a_bound_beyond_int64() -> None:
    rows = [price_row(volume=2**63 - 1), price_row(volume=-(2**63)), price_row(volume=0)]
    assert fails({"name": "v", "kind": "range", "column": "volume", "max": 1e30}, rows) == []
    assert fails({"name": "v", "kind": "range", "column": "volume", "min": -1e30, "max": 2.0**63}, rows) == []
    assert fails({"name": "v", "kind": "range", "column": "volume", "max": 2**63 - 1024}, rows) == [0]


def _with_ts(rows: list[dict[str, object]], raw_ms: list[int | None]) -> pa.Table:
    table = table_of(PRICES, rows)
    ts = pa.array(raw_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    return table.set_column(table.schema.get_field_index("ts"), "ts", ts)


I64_MIN, I64_MAX = -(2**63), 2**63 - 1
TS_MS = int(TS.timestamp() * 1000)


def test_session_and_unique_on_int64_extreme_times() -> None:
    # Yahoo's null time came as numpy NaT (int64 min): the session rule sized a per-day calendar
    # from it (~795 GiB). Extremes are judged per row now; the ordinary rows keep their verdicts.
    session = build_rule(default_rules()["prices"].rule("outside_session").model_dump(by_alias=True), PRICES)
    year1, year9999 = -62_135_596_800_000, 253_402_300_799_999
    saturday = TS_MS + 4 * 86_400_000
    raw = [I64_MIN, TS_MS, I64_MAX, year1, saturday, None, year9999, I64_MIN + 1]
    table = _with_ts([price_row() for _ in raw], raw)
    got = session.mask(table, CTX).to_pylist()
    assert got[1] is False and got[4] is True and got[5] is False
    assert session.mask(table.slice(1, 1), CTX).to_pylist() == [False]
    # the same values twice: duplicates found, nothing else (codes rank values too far apart to offset)
    unique = build_rule({"name": "duplicate", "kind": "unique", "columns": "natural_key"}, PRICES)
    raw = [I64_MIN, I64_MAX, TS_MS, I64_MIN, TS_MS + 60_000, I64_MAX, TS_MS, None, None]
    table = _with_ts([price_row() for _ in raw], raw)
    assert [i for i, f in enumerate(unique.mask(table, CTX).to_pylist()) if f] == [3, 5, 6]
    wide = build_rule({"name": "u", "kind": "unique", "columns": ["ingested_at", "ts", "ticker"]}, PRICES)
    table = table.set_column(table.schema.get_field_index("ingested_at"), "ingested_at", table.column("ts"))
    assert [i for i, f in enumerate(wide.mask(table, CTX).to_pylist()) if f] == [3, 5, 6]


def test_price_jump_on_extreme_prices_warns_nothing() -> None:
    import warnings

    rule = default_rules()["prices"].rule("implausible_price_jump")
    prices = [100.0] * 6 + [1e308, 5e-324, 100.0, 1e-300]
    rows = [price_row(ts=TS + timedelta(minutes=i), open=p, high=p, low=p, close=p) for i, p in enumerate(prices)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flagged = rule.mask(table_of(PRICES, rows), CTX).to_pylist()
    assert [i for i, f in enumerate(flagged) if f] == [6, 7, 9]


def test_session_inside_the_trading_day_only_for_minute_bars() -> None:
    day = datetime(2024, 1, 2, tzinfo=UTC)  # Tuesday
    stamps = [day + timedelta(hours=3, minutes=45), day + timedelta(hours=9, minutes=59, seconds=59),
              day + timedelta(hours=3, minutes=44, seconds=59), day + timedelta(hours=10),
              day + timedelta(days=4, hours=5), day + timedelta(days=5, hours=5), day + timedelta(days=6, hours=5),
              datetime(1964, 1, 14, 5, tzinfo=UTC)]  # a Tuesday, in session: times before 1970 floor right
    rows = [price_row(ts=t) for t in stamps] + [price_row(ts=day + timedelta(days=4), interval="1d")]
    spec = default_rules()["prices"].rule("outside_session").model_dump(by_alias=True)
    assert fails(spec, rows) == [2, 3, 4, 5]
    # another market: 10:00-16:00 at UTC+1, Monday to Saturday
    other = {**spec, "open": "10:00", "close": "16:00", "utc_offset": "+01:00", "weekdays": ["mon", "tue", "wed",
                                                                                          "thu", "fri", "sat"]}
    rows = [price_row(ts=day + timedelta(hours=9)), price_row(ts=day + timedelta(hours=8, minutes=59)),
            price_row(ts=day + timedelta(days=4, hours=9)), price_row(ts=day + timedelta(days=5, hours=9))]
    assert fails(other, rows) == [1, 3]
    assert fails({**other, "open": 555}, [price_row(ts=day + timedelta(hours=8, minutes=15))]) == []  # YAML 9:15


def test_the_shipped_session_rule_takes_its_bounds_from_market() -> None:
    import yaml

    from sentinel_ray import market
    from sentinel_ray.quality.rules import default_rules_text

    # market.py is the one place the session is written: the YAML restates none of it
    entry = next(r for r in yaml.safe_load(default_rules_text())["prices"] if r["name"] == "outside_session")
    assert not {"open", "close", "utc_offset", "weekdays"} & set(entry)
    rule = default_rules()["prices"].rule("outside_session")
    assert (rule.open, rule.close, rule.utc_offset, rule.weekdays) == (
        market.SESSION_OPEN, market.SESSION_CLOSE, market.IST_OFFSET, list(market.TRADING_WEEKDAYS))
    day = date(2024, 1, 2)  # a Tuesday
    opens = datetime.combine(day, market.SESSION_OPEN, market.IST)
    closes = datetime.combine(day, market.SESSION_CLOSE, market.IST)
    stamps = [opens, opens - timedelta(seconds=1), closes - timedelta(minutes=1), closes,
              opens + timedelta(days=4)]  # Saturday
    spec = rule.model_dump(by_alias=True)
    assert fails(spec, [price_row(ts=t.astimezone(UTC)) for t in stamps]) == [1, 3, 4]


def test_unique_keeps_the_first_among_rows_passing_the_others() -> None:
    rules = default_rules()["prices"]
    bad = price_row(volume=-5)
    assert reasons([price_row(), price_row(close=100.7), price_row(source="yahoo")], rules) == [
        None, "duplicate", None]
    assert reasons([bad, price_row(), price_row()], rules) == ["negative_volume", None, "duplicate"]
    # a null key part never makes a duplicate (the row is missing_field anyway)
    assert reasons([price_row(source=None), price_row(source=None)], rules) == ["missing_field", "missing_field"]
    posts = default_rules()["posts"]
    assert reasons([post_row(), post_row(text="edited later"), post_row(platform="x")], posts, POSTS) == [
        None, "duplicate", None]


def test_unique_matches_a_plain_python_dedup_on_shuffled_keys() -> None:
    rng = random.Random(11)
    rows = []
    for _ in range(3_000):
        rows.append(price_row(ticker=rng.choice(["RELIANCE", "TCS", "INFY"]), source=rng.choice(["a", "b"]),
                              ts=TS + timedelta(minutes=rng.randrange(40)), volume=rng.choice([1, 1, 1, -1])))
    expected, seen = [], set()
    for r in rows:
        if r["volume"] < 0:
            expected.append("negative_volume")
            continue
        key = (r["ticker"], r["source"], r["ts"])
        expected.append("duplicate" if key in seen else None)
        seen.add(key)
    rules = RuleSet("prices", tuple(build_rule(s, PRICES) for s in [
        {"name": "negative_volume", "kind": "range", "column": "volume", "min": 0},
        {"name": "duplicate", "kind": "unique", "columns": "natural_key"}]))
    assert reasons(rows, rules) == expected


# --- severity and order ---------------------------------------------------------------


def test_warn_rules_keep_rows_and_count_them() -> None:
    rules = RuleSet("prices", tuple(build_rule(s, PRICES) for s in [
        {"name": "negative_volume", "kind": "range", "column": "volume", "min": 0},
        {"name": "thin_volume", "kind": "range", "column": "volume", "min": 100, "severity": "warn"},
        {"name": "r_ticker", "kind": "regex", "column": "ticker", "pattern": "^[^R]", "severity": "warn"},
    ]))
    rows = [price_row(volume=500, ticker="TCS"), price_row(volume=5, ticker="TCS"), price_row(volume=5),
            price_row(volume=-1), price_row(volume=500, ticker="INFY")]
    table, bad = conform(table_of(PRICES, rows), PRICES)
    result = rules.evaluate(table, Context(now=NOW, bad_type=bad))
    assert result.reject_reason.to_pylist() == [None, None, None, "negative_volume", None]
    # warn counts cover kept rows only: the rejected row 3 (volume -1 < 100, RELIANCE) is not counted;
    # row 2 has two warnings and counts once in rows_warned
    assert result.warn_counts == {"thin_volume": 2, "r_ticker": 1}
    assert result.rows_warned == 2
    assert result.warn_masks["thin_volume"].to_pylist() == [False, True, True, False, False]


def test_first_failing_reject_rule_wins_and_order_is_the_rule_sets() -> None:
    rows = [
        price_row(ticker=None, volume=-1),  # missing_field before negative_volume
        price_row(exchange="NYSE", ticker="AAPL"),  # unknown_exchange before unknown_ticker
        price_row(ticker="TCS", open=-1.0, volume=-1),  # non_positive_price before negative_volume
        price_row(ticker="INFY", volume=-1, high=1.0),  # negative_volume before ohlc_inconsistent
        price_row(ticker="ITC", high=1.0, ts=NOW + timedelta(days=1)),  # ohlc before future
        price_row(ticker="RELIANCE", ts=NOW + timedelta(days=2, hours=-12)),  # future before session
    ]
    shipped = default_rules()["prices"]
    assert reasons(rows, shipped) == ["missing_field", "unknown_exchange", "non_positive_price",
                                      "negative_volume", "ohlc_inconsistent", "future_timestamp"]
    flipped = RuleSet("prices", tuple(reversed(shipped.rules)))
    assert reasons(rows, flipped)[2:4] == ["ohlc_inconsistent", "ohlc_inconsistent"]


def test_empty_table_and_dataset_without_rules() -> None:
    result = evaluate(PRICES.record_schema.empty_table(), PRICES, CTX)
    assert isinstance(result, Evaluation) and len(result.reject_reason) == 0
    assert result.reject_reason.type == pa.string()
    nothing = QualityRules({}).for_dataset(PRICES)
    assert nothing.evaluate(table_of(PRICES, [price_row(volume=-1)]), CTX).reject_reason.to_pylist() == [None]


# --- loading and overrides ---------------------------------------------------------------


def test_shipped_rules_cover_every_data_dataset() -> None:
    rules = default_rules()
    assert set(rules) == {"prices", "posts", "filings"}
    assert rules is default_rules()  # parsed once
    assert rules["prices"].rule("implausible_price_jump").severity == "reject"
    assert all(r.dataset == name for name, rs in rules.items() for r in rs.rules)
    assert rules.for_dataset(FILINGS).names == ["missing_field", "bad_type", "unknown_exchange",
                                                "future_timestamp", "duplicate", "implausible_timestamp",
                                                "non_text", "bad_url"]


def test_override_changes_disables_and_adds(tmp_path: Path) -> None:
    path = write(tmp_path, """
prices:
  - name: negative_volume        # change a range: fewer than 10 shares is not a bar
    min: 10
  - name: unknown_ticker         # drop a rule
    enabled: false
  - name: ticker_pattern         # add one, placed before the price checks
    kind: regex
    column: ticker
    pattern: "^[A-Z]+$"
    before: non_positive_price
  - name: odd_close
    kind: range
    column: close
    max: 1000
    severity: warn
posts:
  - name: text_length
    max: 20
""")
    rules = load_rules(path)
    assert rules.files == (str(path.resolve()),)
    prices = rules["prices"]
    assert "unknown_ticker" not in prices.names
    assert prices.names.index("ticker_pattern") == prices.names.index("non_positive_price") - 1
    assert prices.names[-1] == "odd_close"
    assert reasons([price_row(volume=5), price_row(ticker="AAPL"), price_row(ticker="NIFTY50", close=-1.0)],
                   prices) == ["negative_volume", None, "ticker_pattern"]
    assert rules["posts"].rule("text_length").model_dump()["min"] == 5  # merged field by field
    assert reasons([post_row(text="x" * 21)], rules["posts"], POSTS) == ["text_length"]
    assert rules["filings"].names == default_rules()["filings"].names
    # the defaults are untouched by an override
    assert "unknown_ticker" in default_rules()["prices"].names


def test_override_with_another_kind_replaces_the_rule(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, """
prices:
  - name: unknown_ticker
    kind: regex
    column: ticker
    pattern: "^[A-Z]{2,}$"
"""))
    assert rules["prices"].rule("unknown_ticker").kind == "regex"
    assert reasons([price_row(ticker="AAPL"), price_row(ticker="X")], rules["prices"]) == [None, "unknown_ticker"]


@pytest.mark.parametrize("text, message", [
    ("prices:\n  - name: p\n    kind: teleport\n", "rule 'p': unknown kind 'teleport'"),
    ("prices:\n  - name: negative_volume\n    minimum: 3\n", "rule 'negative_volume': unknown parameter 'minimum'"),
    ("prices:\n  - name: r\n    kind: regex\n    column: ticker\n    pattern: '(x'\n", "rule 'r': pattern"),
    ("prices:\n  - name: r\n    kind: range\n    column: closing\n    min: 0\n", "has no column 'closing'"),
    ("prices:\n  - name: r\n    kind: range\n    column: ticker\n    min: 0\n", "column 'ticker' is symbol"),
    ("prices:\n  - name: r\n    kind: range\n    column: close\n", "needs `min`, `max`"),
    ("prices:\n  - name: nope\n    enabled: false\n", "rule 'nope': no such rule to disable"),
    ("prices:\n  - name: fresh\n    column: ts\n", "rule 'fresh': a new rule needs a `kind`"),
    ("prices:\n  - name: fresh\n    kind: range\n    column: close\n    min: 0\n    before: nowhere\n",
     "names no rule 'nowhere'"),
    ("prices:\n  - name: Bad-Name\n    kind: type\n", "rule 'Bad-Name': name"),
    ("prices:\n  - name: negative_volume\n    severity: fatal\n", "severity"),
    ("trades:\n  - name: x\n    kind: type\n", "unknown dataset 'trades'"),
    ("prices:\n  - kind: type\n", "each rule is a mapping with a `name`"),
    ("prices:\n  - name: a\n    kind: type\n  - name: a\n    kind: type\n", "rule 'a': listed twice"),
    ("prices: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "must map dataset names"),
])
def test_bad_rules_file_names_file_dataset_and_rule(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert message in str(info.value)
    assert str(path.name) in str(info.value)
    if "rule '" in message:
        assert "dataset 'prices'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_rules_for_settings_and_reload_on_edit(tmp_path: Path) -> None:
    assert rules_for(Settings()) is default_rules()
    path = write(tmp_path, "prices:\n  - name: negative_volume\n    min: 10\n")
    settings = Settings(quality_rules_file=path)
    first = rules_for(settings)
    assert first["prices"].rule("negative_volume").model_dump()["min"] == 10
    assert rules_for(settings) is first  # cached while the file is unchanged
    path.write_text("prices:\n  - name: negative_volume\n    min: 20   # edited\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert rules_for(settings)["prices"].rule("negative_volume").model_dump()["min"] == 20


def test_rule_sets_travel_to_workers() -> None:
    import pickle

    rules = pickle.loads(pickle.dumps(default_rules()))
    rows = [price_row(), price_row(volume=-1)]
    assert reasons(rows, rules["prices"]) == [None, "negative_volume"]


def test_sorted_keys_handle_late_rows_and_wide_keys() -> None:
    rules = RuleSet("prices", (build_rule({"name": "duplicate", "kind": "unique", "columns": "natural_key"},
                                          PRICES),))
    # rows out of time order within their series (late arrivals), many repeats
    rng = random.Random(5)
    rows = [price_row(ticker=f"T{rng.randrange(30)}", source=f"s{rng.randrange(3)}",
                      ts=TS + timedelta(minutes=rng.randrange(200))) for _ in range(4_000)]
    expected, seen = [], set()
    for r in rows:
        key = (r["ticker"], r["source"], r["ts"])
        expected.append("duplicate" if key in seen else None)
        seen.add(key)
    assert reasons(rows, rules) == expected
    # two century-wide time columns in the key: their codes overflow int64 and are re-numbered
    years = [datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)]
    wide = RuleSet("prices", (build_rule({"name": "u", "kind": "unique",
                                          "columns": ["ingested_at", "ts", "ticker"]}, PRICES),))
    rows = [price_row(ingested_at=rng.choice(years), ts=rng.choice(years)) for _ in range(60)]
    expected, seen = [], set()
    for r in rows:
        key = (r["ingested_at"], r["ts"])
        expected.append("u" if key in seen else None)
        seen.add(key)
    assert reasons(rows, wide) == expected
