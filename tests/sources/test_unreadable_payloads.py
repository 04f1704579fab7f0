"""A payload an adapter cannot read at all: kept (in `raw`), noted, and the poll goes on without it.

- Every adapter, when nothing it received could be read, raises UnreadablePayload carrying
  the bytes as received (for the raw zone), so the poller can keep them and move on.
- An adapter making several requests per poll (yahoo per listing, reddit per subreddit,
  youtube per search and video, rss per feed, telegram per channel, filings per exchange,
  x per query) notes the unreadable one in `meta["unreadable"]` (its index in `raw`) and
  still returns the other requests' records; the bad request's cursor stays where it was.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from sentinel_ray.config import FilingsSettings, RedditSettings, RssSettings, TelegramSettings, XSettings, YahooSettings
from sentinel_ray.records import FetchResult, SourceError
from sentinel_ray.sources.filings import BSE_ANNOUNCEMENTS_PATH, NSE_ANNOUNCEMENTS_PATH, FilingsSource
from sentinel_ray.sources.http import RetryPolicy
from sentinel_ray.sources.parsing import MAX_PAYLOAD_BYTES, UnreadablePayload
from sentinel_ray.sources.reddit import RedditSource
from sentinel_ray.sources.rss import RssSource
from sentinel_ray.sources.telegram import TelegramSource
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource, build_queries
from sentinel_ray.sources.yahoo import YahooSource
from tests.fakes.server import Reply
from tests.sources import fuzz
from tests.sources.helpers import UTC, RecordingSleep, fast_client, fetch_once, json_reply, payloads, poll_chain
from tests.sources.test_fuzz_adapters import TARGETS
from tests.sources.test_youtube import FakeYouTube, make_source as youtube_source

BLOCKED = b"<html><head><title>Access Denied</title></head><body>Reference #18.5c</body></html>"


def _noted_once(result: FetchResult, served: bytes, request_part: str) -> int:
    """The index of the one payload noted unreadable: it is the bytes served, for the request asked."""
    [note] = result.meta["unreadable"]
    kept = result.raw[note["payload"]]
    assert kept.body == served and request_part in kept.request
    return note["payload"]


# --- nothing readable: the poll raises, carrying every payload ------------------------------------


# payloads each adapter's poll asks for (the fuzz targets' routes): yahoo one chart, nse history and
# quote, filings NSE and BSE, reddit submissions and comments, youtube the search (no video found, no
# comments asked), rss two feeds
PAYLOADS_ASKED = {"yahoo": 1, "nse": 2, "filings": 2, "reddit": 2, "x": 1, "telegram": 1, "youtube": 1, "rss": 2}


@pytest.mark.parametrize("name", list(TARGETS))
def test_nothing_readable_raises_unreadable_payload_with_the_bytes(name: str, tmp_path: Path) -> None:
    target = TARGETS[name](tmp_path)
    # every answer blocked; Reddit's token answer stays good: it is no payload (never kept: it holds a token)
    routes = {path: fuzz.Route(BLOCKED, "text/html") if route.mutable and not path.endswith("access_token") else route
              for path, route in target.routes.items()}
    with fuzz.FuzzService(routes) as service:
        source = target.make(service.url)
        with pytest.raises(UnreadablePayload) as e:
            poll_chain(source, 1, target.cursor)
    # every payload asked for is kept as received, for the raw zone; the cursor stays (none given)
    assert [p.body for p in e.value.raw] == [BLOCKED] * PAYLOADS_ASKED[name] and e.value.next_cursor is None
    assert isinstance(e.value, SourceError)


# --- one unreadable request among readable ones ------------------------------------------------------


def test_yahoo_one_listing_unreadable(fake_service, tmp_path: Path) -> None:
    good = payloads("yahoo")("chart_1m_first.json")
    fake_service.route("GET", "/", Reply(body=b"", headers={"Set-Cookie": "A3=d=fixture; Path=/"}))
    fake_service.route("GET", "/v1/test/getcrumb", Reply(body=b"fixture-crumb", content_type="text/plain"))
    fake_service.route("GET", "/v8/finance/chart/RELIANCE.NS", json_reply(good))
    fake_service.route("GET", "/v8/finance/chart/TCS.NS", Reply(body=BLOCKED, content_type="text/html"))
    source = YahooSource(YahooSettings(tickers=["TCS.NS", "RELIANCE.NS"], base_url=fake_service.url),
                         intervals=("1m",), retry=RetryPolicy(max_attempts=2), rate_per_s=1000, burst=1000,
                         cache_dir=tmp_path / "yfinance", sleep=RecordingSleep(),
                         clock=lambda: dt.datetime(2025, 2, 3, 10, 30, tzinfo=UTC), seed=1)
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, "/TCS.NS") == 0
    assert [p.body for p in result.raw] == [BLOCKED, good]
    assert result.records["prices"].num_rows == 5 and set(result.records["prices"].column("ticker").to_pylist()) == {
        "RELIANCE"}
    assert list(result.next_cursor["last_ts"]) == ["RELIANCE.NS"]  # TCS.NS: asked again from where it was


REDDIT_LIMITS = {"x-ratelimit-remaining": "996.0", "x-ratelimit-used": "4", "x-ratelimit-reset": "312"}


def test_reddit_one_subreddit_unreadable(fake_service) -> None:
    fake_service.route("POST", "/api/v1/access_token", json_reply(payloads("reddit")("token.json")))
    for listing in ("new", "comments/"):
        fake_service.route("GET", f"/r/bad/{listing}", Reply(body=BLOCKED, content_type="text/html"))
    fake_service.route("GET", "/r/good/new", json_reply(payloads("reddit")("new_page2.json"), REDDIT_LIMITS))
    fake_service.route("GET", "/r/good/comments/", json_reply(payloads("reddit")("comments.json"), REDDIT_LIMITS))
    settings = RedditSettings(client_id="app-id", client_secret="app-secret", subreddits=["bad", "good"],
                              base_url=fake_service.url, oauth_url=fake_service.url,
                              user_agent="linux:sentinel-ray-test:0.1", page_cap=1)
    result = fetch_once(RedditSource(settings, retry=RetryPolicy(max_attempts=2), rate_per_s=1000, burst=1000,
                                     sleep=RecordingSleep(), seed=1))
    notes = result.meta["unreadable"]
    assert [result.raw[n["payload"]].request.split("/r/", 1)[1] for n in notes] == ["bad/new", "bad/comments/"]
    assert all(result.raw[n["payload"]].body == BLOCKED and "not JSON" in n["error"] for n in notes)
    assert len(result.raw) == 4 and result.rows("posts") == 2 + 2  # page 2's submissions, the comments
    assert list(result.next_cursor["subreddits"]) == ["good"]


def test_youtube_one_videos_comments_unreadable(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    token = json.loads(payloads("youtube")("comments_h5Rk2mNqT0w_page1.json"))["nextPageToken"]
    fake.comments[("h5Rk2mNqT0w", token)] = Reply(body=BLOCKED, content_type="text/html")
    (result,) = poll_chain(youtube_source(fake), 1)
    _noted_once(result, BLOCKED, "videoId=h5Rk2mNqT0w")
    # 3 videos and Vb9cT4yHn2Q's 1 comment; h5Rk2mNqT0w's page 1 comments wait with its mark (newest first)
    assert sorted(result.records["posts"].column("post_id").to_pylist()) == sorted(
        ["video:h5Rk2mNqT0w", "video:Zq3pL8sVx1E", "video:Vb9cT4yHn2Q", "UgyB5nM7qW9eR1tY3uI5AaABAg"])
    videos = {v["id"]: v for v in result.next_cursor["videos"]}
    assert videos["h5Rk2mNqT0w"]["newest"] is None and videos["Vb9cT4yHn2Q"]["newest"] is not None


def test_youtube_an_unreadable_search_page_keeps_the_search_cursor_and_emits_nothing_twice(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    fake.search["CDIQAA"] = [Reply(body=BLOCKED, content_type="text/html"), payloads("youtube")("search_page2.json")]
    first, second = poll_chain(youtube_source(fake), 2)
    _noted_once(first, BLOCKED, "pageToken=CDIQAA")
    page1 = {"video:h5Rk2mNqT0w", "video:Zq3pL8sVx1E"}
    assert page1 <= set(first.records["posts"].column("post_id").to_pylist())
    assert first.next_cursor["published_after"] is None  # the search resumes where it was
    assert set(first.next_cursor["recent"]) >= {"h5Rk2mNqT0w", "Zq3pL8sVx1E"}
    # page 2 read next poll: its video arrives, page 1's are not emitted again
    videos = [p for p in second.records["posts"].column("post_id").to_pylist() if p.startswith("video:")]
    assert videos == ["video:Vb9cT4yHn2Q"] and "unreadable" not in second.meta


ET, MC = "/markets/rssfeeds/1977021501.cms", "/rss/marketreports.xml"


def test_rss_one_feed_unreadable(fake_service) -> None:
    fake_service.route("GET", ET, Reply(body=payloads("rss")("et_markets.xml"), content_type="text/xml"))
    fake_service.route("GET", MC, Reply(body=BLOCKED, content_type="text/html"))
    source = RssSource(RssSettings(feeds=[fake_service.url + MC, fake_service.url + ET]), http=fast_client("rss"))
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, MC) == 0
    assert len(result.raw) == 2 and result.rows("posts") == 3
    assert list(result.next_cursor["feeds"][fake_service.url + MC].values()) == [None, None, None, []]  # as it was


def test_rss_a_body_too_large_is_kept_as_its_head_and_noted(fake_service) -> None:
    huge = b"<rss>" + b"x" * (MAX_PAYLOAD_BYTES + 1024 * 1024)
    fake_service.route("GET", ET, Reply(body=payloads("rss")("et_markets.xml"), content_type="text/xml"))
    fake_service.route("GET", MC, Reply(body=huge, content_type="application/rss+xml"))
    source = RssSource(RssSettings(feeds=[fake_service.url + MC, fake_service.url + ET]), http=fast_client("rss"))
    result = fetch_once(source)
    [note] = result.meta["unreadable"]
    kept = result.raw[note["payload"]].body
    assert "more than the 8,388,608" in note["error"] and huge.startswith(kept) and 0 < len(kept) <= 64 * 1024
    assert result.rows("posts") == 3


def test_telegram_one_channel_unreadable(fake_service) -> None:
    fake_service.route("GET", "/s/gone", Reply(body=BLOCKED, content_type="text/html"))
    fake_service.route("GET", "/s/dalal_rockets", Reply(body=payloads("telegram")("latest.html"),
                                                        content_type="text/html"))
    source = TelegramSource(TelegramSettings(channels=["gone", "dalal_rockets"], base_url=fake_service.url),
                            http=fast_client("telegram"))
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, "/s/gone") == 0
    assert len(result.raw) == 2 and result.rows("posts") == 3
    assert result.next_cursor == {"last_id": {"dalal_rockets": 104}}


def test_telegram_an_unreadable_later_page_keeps_what_the_earlier_ones_emitted(fake_service) -> None:
    after = {"104": payloads("telegram")("after_104.html"), "106": BLOCKED}

    def pages(request) -> Reply:
        return Reply(body=after.get(request.query.get("after", ""), payloads("telegram")("empty.html")),
                     content_type="text/html")

    fake_service.route("GET", "/s/dalal_rockets", pages)
    source = TelegramSource(TelegramSettings(channels=["dalal_rockets"], base_url=fake_service.url),
                            http=fast_client("telegram"))
    result = fetch_once(source, {"last_id": {"dalal_rockets": 104}})
    assert _noted_once(result, BLOCKED, "/s/dalal_rockets") == 1
    # oldest first: after_104's posts stand and the cursor moves with them; the next poll asks after 106
    assert result.rows("posts") == 2 and result.next_cursor == {"last_id": {"dalal_rockets": 106}}


def test_filings_one_exchange_unreadable(fake_service) -> None:
    fake_service.route("GET", "/", Reply(body=b"<html>NSE</html>", content_type="text/html",
                                         headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake_service.route("GET", NSE_ANNOUNCEMENTS_PATH, json_reply(payloads("filings")("nse_announcements.json")))
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(body=BLOCKED, content_type="text/html"))
    source = FilingsSource(FilingsSettings(nse_base_url=fake_service.url, bse_base_url=fake_service.url),
                           nse_http=fast_client("filings/nse"), bse_http=fast_client("filings/bse"),
                           clock=lambda: dt.datetime(2025, 4, 1, 12, 15, tzinfo=UTC))
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, BSE_ANNOUNCEMENTS_PATH) == 1
    assert len(result.raw) == 2 and result.rows("filings") == 3
    assert "NSE" in result.next_cursor and "BSE" not in result.next_cursor
    assert "BSE" in result.meta["errors"]


def test_x_one_query_unreadable(fake_service) -> None:
    queries = build_queries(["SUZLON", "RELIANCE"], 80)
    assert len(queries) == 2  # one query per ticker

    def search(request) -> Reply:
        if "SUZLON" in request.query["query"]:
            return json_reply(payloads("x")("search_page2.json"))
        return Reply(body=BLOCKED, content_type="text/html")

    fake_service.route("GET", SEARCH_PATH, search)
    source = XSource(XSettings(bearer_token="AAAA-test", tickers=["SUZLON", "RELIANCE"], base_url=fake_service.url),
                     max_query_length=80, http=fast_client("x", **RATE_LIMIT_HEADERS))
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, SEARCH_PATH) == 1
    expected = len(json.loads(payloads("x")("search_page2.json"))["data"])
    assert len(result.raw) == 2 and result.rows("posts") == expected
    assert list(result.next_cursor["since_id"]) == [queries[0]]


def test_x_an_unreadable_second_page_gives_back_the_first(fake_service) -> None:
    # newest first: posts between page 2 and since_id may be on page 2, so the query's page 1 waits too
    fake_service.route("GET", SEARCH_PATH, json_reply(payloads("x")("search_page1.json")),
                       Reply(body=BLOCKED, content_type="text/html"))
    source = XSource(XSettings(bearer_token="AAAA-test", tickers=["SUZLON"], base_url=fake_service.url),
                     http=fast_client("x", **RATE_LIMIT_HEADERS))
    result = fetch_once(source)
    assert _noted_once(result, BLOCKED, SEARCH_PATH) == 1
    assert len(result.raw) == 2 and result.rows("posts") == 0 and result.next_cursor is None
