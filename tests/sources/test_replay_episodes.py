"""The replay's episodes: pump-and-dumps of every size, length and chatter, the hard
negatives that are not manipulation, and ground truth that holds whatever range is asked.

Price and volume effects are checked against the same market with no episodes at all
(same seed: the per-symbol random streams do not depend on the episodes), so a test sees
exactly what an episode did."""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray import reference
from sentinel_ray.market import MS_PER_DAY, MS_PER_MIN, SESSION_BARS, SESSION_OPEN_MS, is_trading_day
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.sources.replay.episodes import EPISODE_SCHEMA, KINDS

UTC = dt.timezone.utc
INGESTED = dt.datetime(2025, 6, 1, tzinfo=UTC)
FUTURE_CUTOFF_MS = int(dt.datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)
START = dt.date(2025, 1, 6)
END = dt.date(2025, 4, 2)  # 60 trading days from START
NO_EPISODES = dict.fromkeys(KINDS, 0.0)
PROMO = re.compile(r"multibagger|upper circuit|target \d|operator|sure shot|jackpot|buy before|🚀|abhi kharido|"
                   r"paisa double", re.IGNORECASE)


@lru_cache(maxsize=None)
def _source(seed: int) -> ReplaySource:
    return ReplaySource(seed=seed)


@lru_cache(maxsize=None)
def _quiet(seed: int) -> ReplaySource:
    return ReplaySource(seed=seed, pump_probability=0.0, episode_rates=NO_EPISODES)


_days: dict = {}


def _day(source: ReplaySource, day: dt.date):
    key = (id(source), day)
    if key not in _days:
        _days[key] = (source, source.generate_day(day, run_id="t", ingested_at=INGESTED))  # keeps id(source) taken
    return _days[key][1]


def _bars(source: ReplaySource, day: dt.date) -> dict[tuple[str, int], tuple[float, int]]:
    """(ticker, ts ms) -> (open, volume) of the day's bars; faults never change either."""
    prices = _day(source, day).records["prices"]
    ms = prices.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
    ms = np.where(ms >= FUTURE_CUTOFF_MS, ms - 3650 * MS_PER_DAY, ms)  # "future" bad rows: their bar moved on
    keep = pc.is_valid(prices.column("ts")).to_numpy(zero_copy_only=False)
    return {(t, int(m)): (o, v) for t, m, o, v, k in zip(
        prices.column("ticker").to_pylist(), ms, prices.column("open").to_pylist(),
        prices.column("volume").to_pylist(), keep) if k}


def _ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def _trading_days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)
            if is_trading_day(first + dt.timedelta(days=i))]


def _session(day: dt.date) -> list[int]:
    open_ms = (day - dt.date(1970, 1, 1)).days * MS_PER_DAY + SESSION_OPEN_MS
    return [open_ms + b * MS_PER_MIN for b in range(SESSION_BARS)]


def _path(source: ReplaySource, ep: dict, ticker: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """ts, opens and volumes of `ticker` over the episode's trading days."""
    ts, opens, volumes = [], [], []
    for day in _trading_days(ep["day"], ep["last_day"]):
        bars = _bars(source, day)
        for t in _session(day):
            o, v = bars[(ticker, t)]
            ts.append(t)
            opens.append(o)
            volumes.append(v)
    return ts, np.array(opens), np.array(volumes, dtype=float)


def _alone(table: pa.Table, ep: dict) -> bool:
    """No other episode moves `ep`'s tickers while it runs (so the quiet market is its counterfactual)."""
    return not any(o["episode_id"] != ep["episode_id"] and o["kind"] != "viral_largecap"
                   and set(o["tickers"]) & set(ep["tickers"]) and o["day"] <= ep["last_day"] and o["last_day"] >= ep["day"]
                   for o in table.to_pylist())


def _posts_of(source: ReplaySource, ep: dict) -> list[dict]:
    ids = set(ep["post_ids"])
    first = ep["chatter_start"].date() if ep["chatter_start"] else ep["day"]
    out = []
    for i in range((ep["last_day"] - first).days + 1):
        posts = _day(source, first + dt.timedelta(days=i)).records["posts"].to_pylist()
        out += [p for p in posts if p["post_id"] in ids]
    return out


@pytest.fixture(scope="module")
def truth() -> dict[int, pa.Table]:
    return {seed: _source(seed).episodes(START, END) for seed in (1, 2, 3)}


# --- what there is ------------------------------------------------------------------------


def test_every_kind_appears_over_60_trading_days_and_3_seeds(truth) -> None:
    assert len(_trading_days(START, END)) == 60
    kinds = Counter(k for t in truth.values() for k in t.column("kind").to_pylist())
    assert set(kinds) == set(KINDS)
    assert all(kinds[k] >= 3 for k in KINDS), kinds
    for seed, table in truth.items():
        assert table.schema == EPISODE_SCHEMA
        assert len(set(table.column("kind").to_pylist())) >= 5, seed
        for ep in table.to_pylist():
            assert ep["is_manipulation"] == (ep["kind"] == "pump_dump")
            assert ep["start"] <= ep["peak_ts"] <= ep["end"]
            assert ep["days_spanned"] == len(_trading_days(ep["day"], ep["last_day"]))
            assert ep["posts"] == len(ep["post_ids"]) == len(set(ep["post_ids"]))
            assert ep["ticker"] == ("*" if ep["kind"] in ("market_rally", "index_rebalance") else ep["tickers"][0])


def test_pumps_vary_in_size_length_and_chatter(truth) -> None:
    pumps = [ep for t in truth.values() for ep in t.to_pylist() if ep["kind"] == "pump_dump"]
    sizes = [ep["size"] for ep in pumps]
    minutes = [(ep["end"] - ep["start"]).total_seconds() / 60 for ep in pumps]
    assert 0.0999 <= min(sizes) < 0.2 and max(sizes) > 1.0 and max(sizes) <= 3.0 + 1e-9
    assert min(minutes) < 90 and max(ep["days_spanned"] for ep in pumps) >= 4
    assert max(ep["days_spanned"] for ep in pumps) <= 5
    assert {ep["chatter"] for ep in pumps} == {"loud", "quiet", "late"}
    small = set(reference.symbols("smallcap"))
    assert all(ep["ticker"] in small for ep in pumps)


# --- pumps ----------------------------------------------------------------------------------


def test_a_pump_rises_by_its_size_to_its_peak_and_falls_after(truth) -> None:
    pumps = _of(truth, "pump_dump")[:12]
    assert len(pumps) == 12 and {ep["chatter"] for _, ep in pumps} == {"loud", "quiet", "late"}
    assert max(ep["days_spanned"] for _, ep in pumps) >= 3 and max(ep["size"] for _, ep in pumps) > 0.5
    for seed, ep in pumps:
        source, quiet = _source(seed), _quiet(seed)
        ts, opens, volumes = _path(source, ep, ep["ticker"])
        _, base, base_volumes = _path(quiet, ep, ep["ticker"])
        at = {t: i for i, t in enumerate(ts)}
        s, p, e = at[_ms(ep["start"])], at[_ms(ep["peak_ts"])], at[_ms(ep["end"])]
        tol = 0.025 * (2 + ep["size"]) + 1e-9  # two tick roundings
        assert abs(opens[p] - base[p] * (1 + ep["size"])) <= tol, ep["episode_id"]
        assert abs(opens[s] - base[s]) <= 0.05 + 1e-9 and abs(opens[e] - base[e]) <= 0.05 + 1e-9
        ratio = opens / base
        assert np.argmax(ratio) in range(p - 2, p + 3)  # the peak is where the ground truth says
        assert (ratio[:s] < 1.01).all() and (ratio[e:] < 1.01).all()  # nothing before, dumped after
        assert (np.diff(ratio[s:p + 1]) > -0.02).all()  # a run-up, not a zigzag
        assert (volumes[s:p] / base_volumes[s:p]).mean() > 2.5
        if ep["size"] >= 0.3:  # big enough to see on the raw prices through the noise
            assert opens[p] > opens[s] * (1 + ep["size"] / 2) and opens[e] < opens[p] / (1 + ep["size"] / 3)


def test_pump_chatter_is_promotional_loud_quiet_or_late(truth) -> None:
    source = _source(2)
    pumps = [ep for ep in truth[2].to_pylist() if ep["kind"] == "pump_dump" and ep["day"] >= START][:8]
    for ep in pumps:
        posts = _posts_of(source, ep)
        assert len(posts) == ep["posts"]  # every post the ground truth names is in the posts table
        assert all(p["tickers"] == [ep["ticker"]] and PROMO.search(p["text"]) for p in posts)
        times = [p["ts"] for p in posts]
        if ep["chatter"] == "loud":
            assert len(posts) >= 30
            assert sum(t < ep["start"] for t in times) >= len(posts) / 4  # the tip channels go first
            assert sum(p["platform"] in ("telegram", "x") for p in posts) > len(posts) / 2
        elif ep["chatter"] == "quiet":
            assert len(posts) <= 5
        else:
            assert len(posts) >= 20 and min(times) > ep["start"] + (ep["peak_ts"] - ep["start"]) / 3
    words = " ".join(p["text"] for ep in pumps for p in _posts_of(source, ep)).lower()
    for word in ("multibagger", "upper circuit", "operator", "jackpot", "sure shot", "🚀"):
        assert word in words, word


# --- hard negatives -----------------------------------------------------------------------


def _of(truth, kind: str) -> list[tuple[int, dict]]:
    return [(seed, ep) for seed, t in truth.items() for ep in t.to_pylist()
            if ep["kind"] == kind and ep["day"] >= START and (kind == "market_rally" or _alone(t, ep))]


@pytest.mark.parametrize("kind", ["earnings", "filing_move"])
def test_news_moves_come_with_a_filing_and_news(truth, kind: str) -> None:
    for seed, ep in _of(truth, kind)[:5]:
        source, quiet = _source(seed), _quiet(seed)
        filings = _day(source, ep["day"]).records["filings"].to_pylist()
        filing = [f for f in filings if f["filing_id"] in ep["filing_ids"]]
        assert len(filing) == 1 and filing[0]["ticker"] == ep["ticker"] and filing[0]["ts"] <= ep["start"]
        assert filing[0]["subject"] and filing[0]["attachment_url"].startswith("https://")
        ts, opens, volumes = _path(source, ep, ep["ticker"])
        _, base, base_volumes = _path(quiet, ep, ep["ticker"])
        p = ts.index(_ms(ep["peak_ts"]))
        assert abs(ep["size"]) >= 0.03
        assert abs(opens[p] - base[p] * (1 + ep["size"])) <= 0.025 * (2 + abs(ep["size"])) + 1e-9
        s = ts.index(_ms(ep["start"]))
        assert (volumes[s:s + 30] / base_volumes[s:s + 30]).mean() > 2.0
        posts = _posts_of(source, ep)
        assert len(posts) == ep["posts"] >= 5 and ep["chatter"] == "news"
        assert not any(PROMO.search(p["text"]) for p in posts)
        assert any(p["platform"] == "news" for p in posts)
        assert min(p["ts"] for p in posts) >= filing[0]["ts"]


def test_viral_large_cap_chatter_moves_nothing(truth) -> None:
    cases = _of(truth, "viral_largecap")
    assert cases
    large = set(reference.symbols("nifty50"))
    for seed, ep in cases[:4]:
        assert ep["ticker"] in large and ep["size"] == 0.0 and ep["days_spanned"] == 1
        source, quiet = _source(seed), _quiet(seed)
        _, opens, volumes = _path(source, ep, ep["ticker"])
        _, base, base_volumes = _path(quiet, ep, ep["ticker"])
        assert (opens == base).all() and (volumes == base_volumes).all()
        posts = _posts_of(source, ep)
        assert len(posts) == ep["posts"] >= 80 and ep["chatter"] == "loud"
        assert not any(PROMO.search(p["text"]) for p in posts)
        assert all(p["tickers"] == [ep["ticker"]] for p in posts)


def test_a_market_rally_moves_every_symbol_together(truth) -> None:
    cases = _of(truth, "market_rally")
    assert cases
    for seed, ep in cases[:3]:
        source, quiet = _source(seed), _quiet(seed)
        assert ep["ticker"] == "*" and set(ep["tickers"]) == set(source.symbols)
        assert 0.015 <= ep["size"] <= 0.04
        peak = _ms(ep["peak_ts"])
        bars, base = _bars(source, ep["day"]), _bars(quiet, ep["day"])
        for sym in source.symbols:
            ratio = bars[(sym, peak)][0] / base[(sym, peak)][0]
            assert ratio > 1 + 0.8 * ep["size"] - 0.05 / base[(sym, peak)][0], sym
        assert all(p["tickers"] == [] for p in _posts_of(source, ep))


def test_index_rebalance_is_close_volume_on_a_few_large_caps_without_chatter(truth) -> None:
    cases = _of(truth, "index_rebalance")
    assert cases
    large = set(reference.symbols("nifty50"))
    for seed, ep in cases[:4]:
        assert ep["ticker"] == "*" and 3 <= len(ep["tickers"]) <= 8 and set(ep["tickers"]) <= large
        assert ep["posts"] == 0 and ep["chatter"] == "none" and abs(ep["size"]) < 0.01
        source, quiet = _source(seed), _quiet(seed)
        for sym in ep["tickers"]:
            ts, opens, volumes = _path(source, ep, sym)
            _, base, base_volumes = _path(quiet, ep, sym)
            s = ts.index(_ms(ep["start"]))
            assert s >= SESSION_BARS - 20
            assert (volumes[s:] / base_volumes[s:] >= 7.9).all()
            assert (volumes[:s] == base_volumes[:s]).all() and (opens[:s] == base[:s]).all()


# --- ground truth -----------------------------------------------------------------------


def test_ground_truth_is_the_same_whatever_range_is_asked() -> None:
    source = _source(5)
    month = source.episodes(dt.date(2025, 3, 1), dt.date(2025, 3, 31)).to_pylist()
    by_id = {ep["episode_id"]: ep for ep in month}
    seen = set()
    for i in range(31):
        day = dt.date(2025, 3, 1) + dt.timedelta(days=i)
        alone = ReplaySource(seed=5).episodes(day, day).to_pylist()  # a fresh instance: nothing cached
        for ep in alone:
            assert by_id[ep["episode_id"]] == ep
        seen |= {ep["episode_id"] for ep in alone}
        assert _day(source, day).meta["episodes"] == sorted(
            alone, key=lambda e: (not e["is_manipulation"], e["start"], KINDS.index(e["kind"])))
    assert seen == set(by_id)
    multi = [ep for ep in month if ep["days_spanned"] > 1]
    assert multi  # spanning days is exactly what could go wrong
    later = source.episodes(dt.date(2025, 3, 20), dt.date(2025, 4, 30)).to_pylist()
    for ep in later:
        if ep["episode_id"] in by_id:
            assert by_id[ep["episode_id"]] == ep


def test_seeds_give_different_markets(truth) -> None:
    ids = {seed: set(zip(t.column("episode_id").to_pylist(), t.column("ticker").to_pylist()))
           for seed, t in truth.items()}
    assert ids[1] != ids[2] != ids[3] != ids[1]
    again = ReplaySource(seed=1).episodes(START, END)
    assert again.equals(truth[1])
    a, b = _day(_source(1), START).records, _day(_source(2), START).records
    assert not a["prices"].column("close").equals(b["prices"].column("close"))
    assert not a["filings"].column("ticker").equals(b["filings"].column("ticker"))


def test_the_universe_is_a_parameter() -> None:
    symbols = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ABC", "XYZ", "PQR"]
    source = ReplaySource(seed=3, symbols=symbols, smallcaps=["ABC", "XYZ", "TCS"], pump_probability=1.0)
    table = source.episodes(START, END)
    pumps = table.filter(pc.equal(table.column("kind"), "pump_dump"))
    assert pumps.num_rows > 10 and set(pumps.column("ticker").to_pylist()) <= {"ABC", "XYZ", "TCS"}
    viral = table.filter(pc.equal(table.column("kind"), "viral_largecap")).column("ticker").to_pylist()
    assert set(viral) <= {"RELIANCE", "INFY", "HDFCBANK", "PQR"}
    prices = _day(source, dt.date(2025, 3, 5)).records["prices"]
    assert set(prices.column("ticker").to_pylist()) == set(symbols)
    # two pumps never hit one ticker at once
    for sym in ("ABC", "XYZ", "TCS"):
        spans = sorted((ep["start"], ep["end"]) for ep in pumps.to_pylist() if ep["ticker"] == sym)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def test_volume_stays_u_shaped_for_every_symbol() -> None:
    source = _source(2)
    for day in _trading_days(dt.date(2025, 3, 3), dt.date(2025, 3, 7)):
        moved = {t for ep in _day(source, day).meta["episodes"]
                 if ep["kind"] in ("pump_dump", "earnings", "filing_move") for t in ep["tickers"]}
        bars = _bars(source, day)
        session = _session(day)
        for sym in set(source.symbols) - moved:
            v = np.array([bars[(sym, t)][1] for t in session], dtype=float)
            assert v[:30].mean() > v[160:220].mean() and v[-30:].mean() > v[160:220].mean(), (sym, day)


def test_ground_truth_rows_are_never_faulted() -> None:
    source = ReplaySource(seed=2, bad_rate=0.05)
    for day in _trading_days(dt.date(2025, 3, 3), dt.date(2025, 3, 7)):
        result = _day(source, day)
        guarded = {t for ep in result.meta["episodes"] if ep["kind"] != "market_rally" for t in ep["tickers"]}
        prices = result.records["prices"]
        faulty = pc.or_(pc.or_(pc.is_null(prices.column("close")), pc.less_equal(prices.column("low"), 0.0)),
                        pc.less(prices.column("high"), prices.column("low")))
        assert not guarded & set(prices.filter(faulty).column("ticker").to_pylist())
        ids = {i for ep in result.meta["episodes"] for i in ep["post_ids"]}
        posts = result.records["posts"].to_pylist()
        mine = [p for p in posts if p["post_id"] in ids]
        assert len(mine) == len({p["post_id"] for p in mine})  # never duplicated
        assert all(len(p["text"].strip()) >= 5 and _ms(p["ts"]) < FUTURE_CUTOFF_MS for p in mine)
