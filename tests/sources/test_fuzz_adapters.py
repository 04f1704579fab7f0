"""Bad upstream data never stops a source: every adapter's real `fetch` against mutated payloads.

Per adapter a seeded mutation loop (tests/sources/fuzz.py) serves its fixture payloads,
mutated, from 127.0.0.1. A case fails on an undeclared exception (anything but a
SourceError), on no answer within fuzz.HANG_S, or on a returned row out of range.
`SENTINEL_FUZZ_CASES` / `SENTINEL_FUZZ_SEED` run more cases or other seeds locally.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from sentinel_ray.config import (
    FilingsSettings,
    NseSettings,
    RedditSettings,
    RssSettings,
    TelegramSettings,
    XSettings,
    YahooSettings,
    YouTubeSettings,
)
from sentinel_ray.sources.filings import BSE_ANNOUNCEMENTS_PATH, NSE_ANNOUNCEMENTS_PATH, FilingsSource
from sentinel_ray.sources.http import RetryPolicy
from sentinel_ray.sources.nse import HISTORY_PATH, QUOTE_PATH, NseSource
from sentinel_ray.sources.reddit import RedditSource
from sentinel_ray.sources.rss import RssSource
from sentinel_ray.sources.telegram import TelegramSource
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource
from sentinel_ray.sources.yahoo import YahooSource
from sentinel_ray.sources.youtube import YouTubeSource
from tests.sources import fuzz
from tests.sources.fuzz import Route, Target
from tests.sources.helpers import PAYLOADS, RecordingSleep, fast_client

UTC = dt.timezone.utc
CASES = int(os.environ.get("SENTINEL_FUZZ_CASES", "200"))
SEED = int(os.environ.get("SENTINEL_FUZZ_SEED", "20261202"))
TIMEOUT_S = 1.0  # the adapters' per-request bound: what ends a trickled body
FAR = str(int(time.time()) + 100_000)
HUGE_WAITS = [{":status": "429", "Retry-After": "100000"}, {":status": "503", "Retry-After": "100000"}]


def fixture(source: str, name: str) -> bytes:
    return (PAYLOADS / source / name).read_bytes()


def client(name: str, **options):
    return fast_client(name, RecordingSleep(), timeout_s=TIMEOUT_S, max_attempts=2, **options)


def yahoo(tmp: Path) -> Target:
    def make(url: str):
        settings = YahooSettings(tickers=["RELIANCE.NS"], base_url=url, timeout_s=TIMEOUT_S)
        return YahooSource(settings, intervals=("1m",), retry=RetryPolicy(max_attempts=2, base_delay_s=1.0),
                           rate_per_s=1000, burst=1000, cache_dir=tmp / "yfinance", sleep=RecordingSleep(),
                           clock=lambda: dt.datetime(2025, 2, 3, 10, 30, tzinfo=UTC), seed=1)

    return Target("yahoo", {
        "/": Route(b"", "text/plain", {"Set-Cookie": "A3=d=fixture; Path=/"}, mutable=False),
        "/v1/test/getcrumb": Route(b"fixture-crumb", "text/plain", mutable=False),
        "/v8/finance/chart/RELIANCE.NS": Route(fixture("yahoo", "chart_1m_first.json")),
    }, make, wait_headers=HUGE_WAITS)


def nse(_: Path) -> Target:
    def make(url: str):
        return NseSource(NseSettings(tickers=["RELIANCE"], base_url=url), http=client("nse"),
                         clock=lambda: dt.datetime(2025, 2, 3, 5, 40, tzinfo=UTC))

    return Target("nse", {
        "/": Route(fixture("nse", "home.html"), "text/html", {"Set-Cookie": "nsit=f; Path=/"}, mutable=False),
        QUOTE_PATH: Route(fixture("nse", "quote_reliance.json")),
        HISTORY_PATH: Route(fixture("nse", "history_reliance.json")),
    }, make, wait_headers=HUGE_WAITS)


def filings(_: Path) -> Target:
    def make(url: str):
        settings = FilingsSettings(nse_base_url=url, bse_base_url=url, page_cap=2)
        return FilingsSource(settings, nse_http=client("filings/nse"), bse_http=client("filings/bse"),
                             clock=lambda: dt.datetime(2025, 4, 1, 12, 15, tzinfo=UTC))

    return Target("filings", {
        "/": Route(b"<html>NSE</html>", "text/html", {"Set-Cookie": "nsit=f; Path=/"}, mutable=False),
        NSE_ANNOUNCEMENTS_PATH: Route(fixture("filings", "nse_announcements.json")),
        BSE_ANNOUNCEMENTS_PATH: Route(fixture("filings", "bse_page1.json")),
    }, make, wait_headers=HUGE_WAITS)


REDDIT_LIMITS = {"x-ratelimit-remaining": "996.0", "x-ratelimit-used": "4", "x-ratelimit-reset": "312"}


def reddit(_: Path) -> Target:
    sub = "IndianStreetBets"

    def make(url: str):
        settings = RedditSettings(client_id="app-id", client_secret="app-secret", subreddits=[sub], base_url=url,
                                  oauth_url=url, user_agent="linux:sentinel-ray-fuzz:0.1", timeout_s=TIMEOUT_S,
                                  page_cap=2)
        return RedditSource(settings, retry=RetryPolicy(max_attempts=2, base_delay_s=1.0), rate_per_s=1000,
                            burst=1000, sleep=RecordingSleep(), seed=1)

    return Target("reddit", {
        "/api/v1/access_token": Route(fixture("reddit", "token.json")),
        f"/r/{sub}/new": Route(fixture("reddit", "new_page1.json"), headers=REDDIT_LIMITS),
        f"/r/{sub}/comments/": Route(fixture("reddit", "comments.json"), headers=REDDIT_LIMITS),
    }, make, wait_headers=[
        {":status": "200", "x-ratelimit-remaining": "0", "x-ratelimit-used": "100", "x-ratelimit-reset": "100000"},
        {":status": "429", "retry-after": "100000"},
        {":status": "200", "x-ratelimit-remaining": "NaN", "x-ratelimit-used": "1", "x-ratelimit-reset": "1e999"},
    ])


def x(_: Path) -> Target:
    def make(url: str):
        settings = XSettings(bearer_token="AAAA-test", tickers=["SUZLON", "RELIANCE"], base_url=url, page_cap=2)
        return XSource(settings, http=client("x", **RATE_LIMIT_HEADERS))

    return Target("x", {SEARCH_PATH: Route(fixture("x", "search_page1.json"))}, make, wait_headers=[
        {":status": "429", "x-rate-limit-reset": FAR, "x-rate-limit-remaining": "0"},
        {":status": "200", "x-rate-limit-reset": FAR, "x-rate-limit-remaining": "0"},
        {":status": "429", "x-rate-limit-reset": "١٢٣", "x-rate-limit-remaining": "0"},
        *HUGE_WAITS,
    ])


def telegram(_: Path) -> Target:
    def make(url: str):
        return TelegramSource(TelegramSettings(channels=["dalal_rockets"], base_url=url, page_cap=2),
                              http=client("telegram"))

    return Target("telegram", {"/s/dalal_rockets": Route(fixture("telegram", "latest.html"), "text/html")},
                  make, markup=True, wait_headers=HUGE_WAITS)


def youtube(_: Path) -> Target:
    def make(url: str):
        settings = YouTubeSettings(api_key="AIza-fuzz", base_url=url + "/youtube/v3", page_cap=2)
        return YouTubeSource(settings, terms=["RELIANCE"], http=client("youtube"),
                             clock=lambda: dt.datetime(2024, 5, 6, 12, 0, tzinfo=UTC))

    return Target("youtube", {
        "/youtube/v3/search": Route(fixture("youtube", "search_page1.json")),
        "/youtube/v3/commentThreads": Route(fixture("youtube", "comments_h5Rk2mNqT0w_page1.json")),
    }, make, wait_headers=HUGE_WAITS)


def rss(_: Path) -> Target:
    def make(url: str):
        return RssSource(RssSettings(feeds=[url + "/et.xml", url + "/atom.xml"]), http=client("rss"))

    return Target("rss", {
        "/et.xml": Route(fixture("rss", "et_markets.xml"), "text/xml"),
        "/atom.xml": Route(fixture("rss", "atom_markets.xml"), "application/atom+xml"),
    }, make, markup=True, wait_headers=HUGE_WAITS)


TARGETS = {"yahoo": yahoo, "nse": nse, "filings": filings, "reddit": reddit, "x": x, "telegram": telegram,
           "youtube": youtube, "rss": rss}


def test_the_mutations_are_what_they_claim() -> None:
    """The fuzzer itself: cases are reproducible, varied, and the big ones are big."""
    target = nse(Path("."))
    first, again = fuzz.make_cases(target, 60, SEED), fuzz.make_cases(target, 60, SEED)
    assert [c.body for c in first] == [c.body for c in again]
    assert len({c.body for c in first}) > 50
    assert len(first[-1].body) > fuzz.BIG_BYTES and first[-3].trickle_s > 0
    kinds = {k for c in first for k in c.kinds}
    assert {"values", "body", "big", "trickle", "wait"} <= kinds


def test_row_problems_catch_out_of_range_rows() -> None:
    from sentinel_ray.records import FetchResult
    from sentinel_ray.schemas import POSTS

    row = {"platform": "x", "post_id": "1", "author": None, "text": "hi", "ts": dt.datetime(1970, 1, 1, tzinfo=UTC),
           "url": "javascript:alert(1)", "engagement": -3, "tickers": [], "source": "x", "run_id": None,
           "ingested_at": dt.datetime.now(UTC)}
    import pyarrow as pa

    table = pa.Table.from_pylist([row], schema=POSTS.record_schema)
    problems = " ".join(fuzz.row_problems(FetchResult([], {"posts": table}, None)))
    assert "posts.ts: time out of range" in problems and "posts.url" in problems
    assert "posts.engagement: count out of range" in problems


@pytest.mark.parametrize("name", list(TARGETS))
def test_bad_upstream_data_never_stops_a_source(name: str, tmp_path: Path) -> None:
    target = TARGETS[name](tmp_path)
    cases = fuzz.make_cases(target, CASES, SEED)
    outcomes = fuzz.run_target(target, cases)
    counts = fuzz.summary(outcomes)
    print(f"{name}: {len(cases)} cases: {counts}")
    assert counts.get("ok", 0) > 0, f"{name}: no case returned rows at all: the fixtures are not being read"
    problems = fuzz.failures(outcomes)
    assert not problems, f"{name}: {len(problems)} of {len(cases)} cases failed:\n" + "\n".join(problems[:40])
