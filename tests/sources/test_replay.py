"""ReplaySource: the offline market + chatter simulator, and the shipped symbol list."""
from __future__ import annotations

import datetime as dt
import json
import re
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray import reference
from sentinel_ray.records import RAW_ID, RAW_POS
from sentinel_ray.schemas import FILINGS, POSTS, PRICES
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.market import MS_PER_DAY, MS_PER_MIN, NSE_HOLIDAYS, SESSION_BARS, SESSION_OPEN_MS, is_trading_day
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.sources.replay.episodes import KINDS

UTC = dt.timezone.utc
INGESTED = dt.datetime(2025, 6, 1, tzinfo=UTC)
TRADING_DAY = dt.date(2025, 3, 5)  # a Wednesday, not a holiday
SATURDAY = dt.date(2025, 3, 8)
HOLIDAY = dt.date(2025, 8, 15)  # Independence Day, a Friday
FUTURE_CUTOFF_MS = int(dt.datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)  # bad rows sit ~10 years on
PROMO_WORDS = re.compile(r"multibagger|upper circuit|target \d|operator|sure shot|jackpot|buy before|🚀|abhi kharido|"
                         r"paisa double", re.IGNORECASE)
NO_EPISODES = dict.fromkeys(KINDS, 0.0)


def _day(source: ReplaySource, day: dt.date):
    return source.generate_day(day, run_id="test-run", ingested_at=INGESTED)


def _ms(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _good_prices(table: pa.Table) -> pa.Table:
    """Rows no bad-record kind touched: close present, in session, positive, consistent."""
    not_future = _ms(table.column("ts")) < FUTURE_CUTOFF_MS
    ok = pc.and_(pc.is_valid(table.column("close")), pa.array(not_future))
    ok = pc.and_(ok, pc.greater(table.column("low"), 0.0))
    ok = pc.and_(ok, pc.less_equal(table.column("low"), table.column("high")))
    return table.filter(ok)


@pytest.fixture(scope="module")
def source() -> ReplaySource:
    return ReplaySource(seed=42)


@pytest.fixture(scope="module")
def pumped() -> ReplaySource:
    return ReplaySource(seed=7, pump_probability=1.0)


@pytest.fixture(scope="module")
def trading(source: ReplaySource):
    return _day(source, TRADING_DAY)


# --- determinism -------------------------------------------------------------------------


def test_same_seed_and_day_give_identical_tables(trading) -> None:
    again = _day(ReplaySource(seed=42), TRADING_DAY)
    for i, name in enumerate(("prices", "posts", "filings")):
        assert again.records[name].equals(trading.records[name])
        assert again.raw[i].body == trading.raw[i].body
    assert again.meta == trading.meta


def test_different_seed_gives_different_data(trading) -> None:
    other = _day(ReplaySource(seed=43), TRADING_DAY)
    assert not other.records["prices"].column("close").equals(trading.records["prices"].column("close"))
    assert not other.records["posts"].column("text").equals(trading.records["posts"].column("text"))


def test_a_symbol_subset_sees_the_same_bars() -> None:
    # episodes pick their tickers from the universe; without them a symbol's bars are its own
    subset = ReplaySource(seed=42, symbols=["RELIANCE", "TCS"], pump_probability=0.0, episode_rates=NO_EPISODES)
    whole = ReplaySource(seed=42, pump_probability=0.0, episode_rates=NO_EPISODES)
    mine = _good_prices(_day(subset, TRADING_DAY).records["prices"])
    full = _good_prices(_day(whole, TRADING_DAY).records["prices"])
    full = full.filter(pc.is_in(full.column("ticker"), pa.array(["RELIANCE", "TCS"])))
    key = ["ticker", "ts"]
    joined = mine.select([*key, "open"]).join(full.select([*key, "open"]), key, join_type="inner", right_suffix="_full")
    assert joined.num_rows > 700
    assert joined.column("open").equals(joined.column("open_full"))


# --- prices ------------------------------------------------------------------------------


def test_trading_day_has_375_bars_per_symbol_within_session(source: ReplaySource, trading) -> None:
    good = _good_prices(trading.records["prices"])
    counts = dict(zip(*np.unique(good.column("ticker").to_numpy(zero_copy_only=False), return_counts=True)))
    assert set(counts) == set(source.symbols)
    # bad rows are taken from the day's bars (future ones moved 3650 days on), so the
    # distinct (ticker, bar) keys are exactly 375 per symbol
    prices = trading.records["prices"]
    ms_all = _ms(prices.column("ts"))
    ms_all = np.where(ms_all >= FUTURE_CUTOFF_MS, ms_all - 3650 * 86_400_000, ms_all)
    keys = set(zip(prices.column("ticker").to_pylist(), ms_all.tolist()))
    assert len(keys) == len(source.symbols) * SESSION_BARS
    ms = _ms(good.column("ts"))
    day_start = int(dt.datetime(2025, 3, 5, tzinfo=UTC).timestamp() * 1000)
    assert ms.min() == day_start + SESSION_OPEN_MS  # 09:15 IST
    assert ms.max() == day_start + (9 * 60 + 59) * 60_000  # 15:29 IST, the last bar open
    assert set(trading.records["prices"].column("exchange").to_pylist()) == {"NSE"}
    assert set(trading.records["prices"].column("interval").to_pylist()) == {"1m"}
    assert set(trading.records["prices"].column("source").to_pylist()) == {"replay"}


@pytest.mark.parametrize("day", [SATURDAY, HOLIDAY])
def test_no_bars_on_weekends_and_holidays_but_some_posts(source: ReplaySource, day: dt.date) -> None:
    assert day in NSE_HOLIDAYS or day.weekday() >= 5
    assert not is_trading_day(day)
    result = _day(source, day)
    assert result.rows("prices") == 0
    assert 0 < result.rows("posts") < source.posts_per_day
    # only an episode running across the closed day (a multi-day one) is listed on it
    lo = dt.datetime.combine(day, dt.time(), UTC)
    for ep in result.meta["episodes"]:
        assert ep["day"] < day < ep["last_day"] and ep["start"] < lo
    assert result.meta["expected"]["prices"] == {"rows": 0, "valid": 0, "rejected": {}}


def test_good_bars_are_consistent_and_on_tick(trading) -> None:
    good = _good_prices(trading.records["prices"])
    o, h, l, c = (good.column(x).to_numpy() for x in ("open", "high", "low", "close"))
    assert (l > 0).all()
    assert ((l <= o) & (o <= h) & (l <= c) & (c <= h)).all()
    for x in (o, h, l, c):
        assert np.allclose(np.round(x / 0.05) * 0.05, x, atol=1e-9)
    assert (good.column("volume").to_numpy() > 0).all()


def test_base_prices_are_plausible(trading) -> None:
    good = _good_prices(trading.records["prices"])
    table = good.group_by("ticker").aggregate([("open", "mean")])
    price = dict(zip(table.column("ticker").to_pylist(), table.column("open_mean").to_pylist()))
    for sym in reference.symbols("nifty50"):
        assert 80 < price[sym] < 10_000, sym
    for sym in reference.symbols("smallcap"):
        assert 1 < price[sym] < 500, sym


def test_volume_is_u_shaped(trading) -> None:
    good = _good_prices(trading.records["prices"])
    minute = (_ms(good.column("ts")) % MS_PER_DAY - SESSION_OPEN_MS) // MS_PER_MIN
    volume = good.column("volume").to_numpy().astype(float)
    # normalise per symbol so large-volume small caps do not dominate
    tickers = good.column("ticker").to_numpy(zero_copy_only=False)
    for sym in np.unique(tickers)[:10]:
        v, m = volume[tickers == sym], minute[tickers == sym]
        edges = v[(m < 30) | (m >= SESSION_BARS - 30)].mean()
        midday = v[(m >= 160) & (m < 220)].mean()
        assert edges > midday, sym


def test_open_continues_from_previous_close(source: ReplaySource) -> None:
    days = [dt.date(2025, 3, 6), dt.date(2025, 3, 7), dt.date(2025, 3, 10)]  # Thu, Fri, Mon
    closes, opens = {}, {}
    for day in days:
        quiet = ReplaySource(seed=42, pump_probability=0.0, episode_rates=NO_EPISODES)
        good = _good_prices(_day(quiet, day).records["prices"])
        ms = _ms(good.column("ts"))
        tickers = good.column("ticker").to_pylist()
        first, last = ms.min(), ms.max()
        opens[day] = {t: o for t, o, s in zip(tickers, good.column("open").to_pylist(), ms) if s == first}
        closes[day] = {t: c for t, c, s in zip(tickers, good.column("close").to_pylist(), ms) if s == last}
    for prev, nxt in zip(days, days[1:]):
        for sym, close in closes[prev].items():
            if sym in opens[nxt]:
                assert abs(opens[nxt][sym] / close - 1) < 0.10, (sym, prev, nxt)


def test_any_day_can_be_generated_alone(source: ReplaySource) -> None:
    day = dt.date(2024, 11, 12)
    alone = _day(ReplaySource(seed=42), day)
    _day(source, dt.date(2024, 11, 11))  # the shared instance has generated other days first
    assert _day(source, day).records["prices"].equals(alone.records["prices"])


# --- bad records and ground-truth counts ------------------------------------------------


def test_expected_counts_add_up(trading) -> None:
    for name, expected in trading.meta["expected"].items():
        assert expected["rows"] == trading.rows(name)
        assert expected["rows"] == expected["valid"] + sum(expected["rejected"].values())


def test_every_bad_kind_is_injected(trading) -> None:
    prices, posts = trading.records["prices"], trading.records["posts"]
    exp = trading.meta["expected"]
    assert set(exp["prices"]["rejected"]) == {
        "missing_field", "non_positive_price", "ohlc_inconsistent", "future_timestamp", "duplicate"
    }
    assert set(exp["posts"]["rejected"]) == {"missing_field", "text_length", "future_timestamp", "duplicate"}
    assert exp["filings"] == {"rows": trading.rows("filings"), "valid": trading.rows("filings"), "rejected": {}}
    assert all(v >= 1 for e in exp.values() for v in e["rejected"].values())

    k = exp["prices"]["rejected"]
    assert prices.column("close").null_count == k["missing_field"]
    assert pc.sum(pc.less_equal(prices.column("low"), 0.0)).as_py() == k["non_positive_price"]
    assert pc.sum(pc.less(prices.column("high"), prices.column("low"))).as_py() == k["ohlc_inconsistent"]
    horizon = dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert pc.sum(pc.greater(prices.column("ts"), pa.scalar(horizon, prices.schema.field("ts").type))).as_py() == k["future_timestamp"]
    keys = prices.select(["ticker", "ts"]).to_pylist()
    assert len(keys) - len({(r["ticker"], r["ts"]) for r in keys}) == k["duplicate"]

    k = exp["posts"]["rejected"]
    assert posts.column("post_id").null_count == k["missing_field"]
    trimmed = pc.utf8_length(pc.utf8_trim_whitespace(posts.column("text")))
    assert pc.sum(pc.less(trimmed, 5)).as_py() == k["text_length"]
    assert pc.sum(pc.greater(posts.column("ts"), pa.scalar(horizon, posts.schema.field("ts").type))).as_py() == k["future_timestamp"]
    rows = [r for r in posts.select(["platform", "post_id"]).to_pylist() if r["post_id"] is not None]
    assert len(rows) - len({(r["platform"], r["post_id"]) for r in rows}) == k["duplicate"]


def test_bad_rate_scales_injected_rows() -> None:
    few = _day(ReplaySource(seed=1, bad_rate=0.0), TRADING_DAY).meta["expected"]["prices"]
    many = _day(ReplaySource(seed=1, bad_rate=0.02), TRADING_DAY).meta["expected"]["prices"]
    assert set(few["rejected"].values()) == {1}  # at least one of each kind, even at rate 0
    assert sum(many["rejected"].values()) > 10 * sum(few["rejected"].values())


def test_expected_counts_sum_over_days(source: ReplaySource) -> None:
    start, end = dt.date(2025, 3, 7), dt.date(2025, 3, 10)
    total = source.expected_counts(start, end)
    rows = sum(_day(source, start + dt.timedelta(days=i)).rows("posts") for i in range(4))
    assert total["posts"]["rows"] == rows
    for counts in total.values():
        assert counts["rows"] == counts["valid"] + sum(counts["rejected"].values())


@pytest.mark.parametrize("name", ["prices", "posts", "filings"])
def test_pipeline_validation_agrees_with_ground_truth(trading, name: str) -> None:
    from sentinel_ray.pipeline.transform import process_batch

    ds = {"prices": PRICES, "posts": POSTS, "filings": FILINGS}[name]
    assert trading.rows(name) > 0
    result = process_batch(trading.records[name], ds, now=dt.datetime(2026, 1, 1, tzinfo=UTC),
                           known_tickers=reference.known_tickers())
    expected = trading.meta["expected"][name]
    assert result.rows_valid == expected["valid"]
    assert result.reason_counts() == expected["rejected"]


# --- episodes ------------------------------------------------------------------------------


def test_episodes_show_pump_and_promo(pumped: ReplaySource) -> None:
    start, end = dt.date(2025, 3, 3), dt.date(2025, 3, 7)
    episodes = pumped.episodes(start, end)
    pumps = [ep for ep in episodes.to_pylist() if ep["kind"] == "pump_dump" and start <= ep["day"]]
    # probability 1 and five trading days; a pump still running on its ticker blocks a new one there
    assert 3 <= len(pumps) <= 5 and len({ep["day"] for ep in pumps}) == len(pumps)
    smallcaps = set(reference.symbols("smallcap"))
    for ep in pumps:
        assert ep["ticker"] in smallcaps and ep["is_manipulation"]
        assert ep["start"] < ep["peak_ts"] < ep["end"]
        result = _day(pumped, ep["day"])
        quiet = _day(ReplaySource(seed=7, episode_rates=NO_EPISODES, pump_probability=0.0), ep["day"]).records["prices"]
        assert ep in result.meta["episodes"]
        assert result.meta["episodes"][0]["kind"] == "pump_dump"  # manipulation first

        prices = result.records["prices"]
        bars = prices.filter(pc.equal(prices.column("ticker"), ep["ticker"]))
        at = {t: o for t, o in zip(bars.column("ts").to_pylist(), bars.column("open").to_pylist())}
        if ep["days_spanned"] == 1 and ep["size"] >= 0.2:  # all of it on this day's bars
            assert at[ep["peak_ts"]] > (1 + ep["size"] / 2) * at[ep["start"]]
            assert at[ep["end"]] < 1.08 * at[ep["start"]]  # dumped back
        # against the same day without episodes: the per-symbol noise is the same
        base = quiet.filter(pc.equal(quiet.column("ticker"), ep["ticker"]))
        base_vol = dict(zip(base.column("ts").to_pylist(), base.column("volume").to_pylist()))
        vol = dict(zip(bars.column("ts").to_pylist(), bars.column("volume").to_pylist()))
        run_up = [t for t in vol if ep["start"] <= t < ep["peak_ts"]]
        assert np.mean([vol[t] / base_vol[t] for t in run_up]) > 2.5

        posts = [p for p in result.records["posts"].to_pylist() if p["post_id"] in set(ep["post_ids"])]
        assert all(ep["ticker"] in p["tickers"] and PROMO_WORDS.search(p["text"]) for p in posts)
        if ep["chatter"] == "loud":
            assert len(posts) >= 10
            assert sum(p["platform"] in ("telegram", "x") for p in posts) > len(posts) / 2


def test_no_episodes_at_rate_zero_or_starting_off_trading_days() -> None:
    quiet = ReplaySource(seed=7, pump_probability=0.0)
    kinds = set(quiet.episodes(dt.date(2025, 3, 1), dt.date(2025, 5, 31)).column("kind").to_pylist())
    assert "pump_dump" not in kinds and kinds  # the hard negatives stay
    silent = ReplaySource(seed=7, pump_probability=0.0, episode_rates=NO_EPISODES)
    assert silent.episodes(dt.date(2025, 3, 1), dt.date(2025, 3, 31)).num_rows == 0
    loud = ReplaySource(seed=7, pump_probability=1.0)
    days = loud.episodes(dt.date(2025, 8, 9), dt.date(2025, 8, 17)).column("day").to_pylist()
    assert days and all(is_trading_day(d) for d in days) and HOLIDAY not in days
    with pytest.raises(ValueError, match="unknown episode kinds"):
        ReplaySource(episode_rates={"insider_trading": 0.1})


# --- posts ---------------------------------------------------------------------------------


def test_posts_look_like_chatter(source: ReplaySource, trading) -> None:
    posts = trading.records["posts"]
    assert posts.num_rows >= source.posts_per_day
    assert set(posts.column("platform").to_pylist()) == {"reddit", "x", "telegram", "youtube", "news"}
    tickers = posts.column("tickers").to_pylist()
    assert any(t == [] for t in tickers) and any(len(t) == 2 for t in tickers)
    known = set(reference.symbols())
    assert all(set(t) <= known for t in tickers)
    ms = _ms(posts.column("ts"))
    day_start = int(dt.datetime(2025, 3, 5, tzinfo=UTC).timestamp() * 1000)
    normal = ms[ms < day_start + 86_400_000]
    assert (normal >= day_start).all()
    in_session = (normal >= day_start + 13_500_000) & (normal < day_start + 36_000_000)
    assert in_session.mean() > 0.5  # chatter follows the market
    ids = dict(zip(posts.column("platform").to_pylist(), posts.column("post_id").to_pylist()))
    assert re.fullmatch(r"t3_[0-9a-z]+", ids["reddit"])
    assert re.fullmatch(r"\d{18,19}", ids["x"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{11}", ids["youtube"])


def test_post_ids_are_unique_across_days(source: ReplaySource) -> None:
    seen: set[tuple[str, str]] = set()
    for day in (dt.date(2025, 3, 6), dt.date(2025, 3, 7)):
        rows = _day(source, day).records["posts"].select(["platform", "post_id"]).to_pylist()
        keys = {(r["platform"], r["post_id"]) for r in rows if r["post_id"] is not None}
        assert not keys & seen
        seen |= keys


# --- raw payloads and schema ---------------------------------------------------------------


def test_records_use_the_dataset_columns_and_types(trading) -> None:
    for name, ds in (("prices", PRICES), ("posts", POSTS), ("filings", FILINGS)):
        table = trading.records[name]
        assert table.schema == record_schema(ds)
        ingested = [f for f in ds.arrow_schema if not ds.field(f.name).derived  # derived: the pipeline's to fill
                    and f.name not in (RAW_ID, RAW_POS)]
        # then where each record was read from: its payload's id and its line in that payload
        assert table.schema.names == [f.name for f in ingested] + [RAW_ID, RAW_POS]
        assert [f.type for f in table.schema][:-2] == [f.type for f in ingested]
        assert pa.types.is_string(table.schema.field(RAW_ID).type)
        assert pa.types.is_integer(table.schema.field(RAW_POS).type)
        assert set(table.column("run_id").to_pylist()) == {"test-run"}
        assert set(table.column("ingested_at").to_pylist()) == {INGESTED}


def test_raw_payload_parses_back_to_the_records(trading) -> None:
    assert [p.dataset for p in trading.raw] == ["prices", "posts", "filings"]
    for payload in trading.raw:
        assert payload.content_type == "application/x-ndjson"
        assert request_url(payload.request) == f"replay://{payload.dataset}/2025-03-05"
        # the run's lineage rides in the request text, not in the service's answer
        assert request_context(payload.request) == {"run_id": "test-run", "ingested_at": INGESTED.isoformat()}
        assert payload.source == "replay"
        lines = [json.loads(line) for line in payload.body.decode("utf-8").splitlines()]
        table = trading.records[payload.dataset]
        assert len(lines) == table.num_rows
        assert list(lines[0]) + ["run_id", "ingested_at", RAW_ID, RAW_POS] == table.schema.names
        first = table.slice(0, 1).to_pylist()[0]
        assert dt.datetime.fromisoformat(lines[0]["ts"]) == first["ts"]
        for col in ("ticker", "open", "close", "volume", "post_id", "text", "tickers", "filing_id", "subject"):
            if col in first:
                assert lines[0][col] == first[col]
    nulls = [json.loads(line) for line in trading.raw[0].body.splitlines() if b'"close":null' in line]
    assert len(nulls) == trading.meta["expected"]["prices"]["rejected"]["missing_field"]


async def _fetch_twice(source: ReplaySource):
    first = await source.fetch(None)
    second = await source.fetch(first.next_cursor)
    return first, second


def test_fetch_walks_day_by_day() -> None:
    import asyncio

    source = ReplaySource(seed=3, start=dt.date(2025, 3, 7))
    first, second = asyncio.run(_fetch_twice(source))
    assert first.next_cursor == {"day": "2025-03-07"}
    assert second.next_cursor == {"day": "2025-03-08"}
    assert first.rows("prices") > 0 and second.rows("prices") == 0


def test_a_day_generates_fast(source: ReplaySource) -> None:
    _day(source, dt.date(2025, 4, 1))  # warm: the walk is computed once per instance
    began = time.perf_counter()
    _day(source, dt.date(2025, 4, 2))
    assert time.perf_counter() - began < 1.0


# --- symbols CSV -----------------------------------------------------------------------------


def test_symbol_csv_loads_with_nifty50_and_smallcaps() -> None:
    table = reference.symbol_table()
    symbols = table.column("symbol").to_pylist()
    assert len(symbols) >= 65
    assert len(set(symbols)) == len(symbols)
    segments = table.column("segment").to_pylist()
    assert segments.count("nifty50") == 50
    assert segments.count("smallcap") >= 15
    assert set(segments) == set(reference.SEGMENTS)
    for sym in ("RELIANCE", "HDFCBANK", "TCS", "INFY", "ICICIBANK", "M&M", "BAJAJ-AUTO"):
        assert segments[symbols.index(sym)] == "nifty50"
    for isin in table.column("isin").to_pylist():
        assert isin == "" or re.fullmatch(r"IN[A-Z0-9]{10}", isin)
    isins = [i for i in table.column("isin").to_pylist() if i]
    assert len(isins) == len(set(isins))
    assert dict(zip(symbols, table.column("isin").to_pylist()))["RELIANCE"] == "INE002A01018"
    assert set(table.column("exchanges").to_pylist()) <= {"NSE", "BSE", "NSE;BSE"}
    assert all(table.column("name").to_pylist())
