"""A record an adapter cannot read is noted, not dropped: every adapter, one good and one unreadable record.

Each case serves, from the local fixture server, one payload holding exactly two records:
one readable, one that cannot be read. The poll must return exactly the readable one as a
row and exactly one `meta["unparseable"]` note naming the payload (its index in `raw`,
whose body is what was served) and the record's position in it; the poller turns that
note into a quarantine row, reason `unparseable` (tests/ingest/test_unparseable.py).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

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
from sentinel_ray.records import FetchResult
from sentinel_ray.sources.filings import NSE_ANNOUNCEMENTS_PATH, FilingsSource
from sentinel_ray.sources.http import RetryPolicy
from sentinel_ray.sources.nse import HISTORY_PATH, QUOTE_PATH, NseSource
from sentinel_ray.sources.reddit import RedditSource
from sentinel_ray.sources.rss import RssSource
from sentinel_ray.sources.telegram import TelegramSource
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource
from sentinel_ray.sources.yahoo import YahooSource
from sentinel_ray.sources.youtube import YouTubeSource
from tests.fakes.server import Reply
from tests.sources.helpers import UTC, RecordingSleep, fast_client, fetch_once, json_reply, payloads, poll_chain


def _one_good_one_noted(result: FetchResult, dataset: str, payload: int, position: int, served: bytes) -> dict:
    """Exactly one row, exactly one note, pointing at raw payload `payload` (the bytes `served`), record `position`."""
    assert result.records[dataset].num_rows == 1
    [note] = result.meta["unparseable"]
    assert (note["payload"], note["position"]) == (payload, position)
    assert result.raw[note["payload"]].body == served
    assert "unreadable" not in result.meta
    return result.records[dataset].to_pylist()[0]


def test_yahoo_a_bar_whose_time_is_not_real(fake_service, tmp_path: Path) -> None:
    chart = json.loads(payloads("yahoo")("chart_1m_first.json"))
    result_doc = chart["chart"]["result"][0]
    result_doc["timestamp"] = [result_doc["timestamp"][0], 1]  # 1970-01-01T00:00:01Z: no bar of NSE's
    quote = result_doc["indicators"]["quote"][0]
    for name in quote:
        quote[name] = quote[name][:2]
    served = json.dumps(chart).encode()
    fake_service.route("GET", "/", Reply(body=b"", headers={"Set-Cookie": "A3=d=fixture; Path=/"}))
    fake_service.route("GET", "/v1/test/getcrumb", Reply(body=b"fixture-crumb", content_type="text/plain"))
    fake_service.route("GET", "/v8/finance/chart/RELIANCE.NS", json_reply(served))
    source = YahooSource(YahooSettings(tickers=["RELIANCE.NS"], base_url=fake_service.url), intervals=("1m",),
                         retry=RetryPolicy(max_attempts=2), rate_per_s=1000, burst=1000,
                         cache_dir=tmp_path / "yfinance", sleep=RecordingSleep(),
                         clock=lambda: dt.datetime(2025, 2, 3, 10, 30, tzinfo=UTC), seed=1)
    row = _one_good_one_noted(fetch_once(source), "prices", 0, 1, served)
    assert row["ts"] == dt.datetime.fromtimestamp(result_doc["timestamp"][0], UTC) and row["open"] == 1230.0


def test_nse_a_history_row_without_a_readable_date(fake_service) -> None:
    history = json.loads(payloads("nse")("history_reliance.json"))
    bad = copy.deepcopy(history["data"][0])
    bad["CH_TIMESTAMP"] = "0001-01-31"  # a date, but no session of NSE's
    history["data"] = [history["data"][0], bad]
    served = json.dumps(history).encode()
    fake_service.route("GET", "/", Reply(body=payloads("nse")("home.html"), content_type="text/html",
                                         headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake_service.route("GET", HISTORY_PATH, json_reply(served))
    fake_service.route("GET", QUOTE_PATH, json_reply(payloads("nse")("quote_unknown.json")))  # no quote bar
    source = NseSource(NseSettings(tickers=["RELIANCE"], base_url=fake_service.url), http=fast_client("nse"),
                       clock=lambda: dt.datetime(2025, 2, 3, 5, 40, tzinfo=UTC))
    row = _one_good_one_noted(fetch_once(source), "prices", 0, 1, served)
    assert row["close"] == 1255.7 and row["volume"] == 12039455


def test_filings_an_announcement_without_an_id(fake_service) -> None:
    items = json.loads(payloads("filings")("nse_announcements.json"))[:2]
    items[1]["seq_id"] = None
    served = json.dumps(items).encode()
    fake_service.route("GET", "/", Reply(body=b"<html>NSE</html>", content_type="text/html",
                                         headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake_service.route("GET", NSE_ANNOUNCEMENTS_PATH, json_reply(served))
    source = FilingsSource(FilingsSettings(nse_base_url=fake_service.url, bse_base_url=fake_service.url),
                           nse_http=fast_client("filings/nse"), bse_http=fast_client("filings/bse"),
                           exchanges=("NSE",), clock=lambda: dt.datetime(2025, 4, 1, 12, 15, tzinfo=UTC))
    row = _one_good_one_noted(fetch_once(source), "filings", 0, 1, served)
    assert row["filing_id"] == "107312981"


REDDIT_LIMITS = {"x-ratelimit-remaining": "996.0", "x-ratelimit-used": "4", "x-ratelimit-reset": "312"}


def test_reddit_a_submission_from_1970(fake_service) -> None:
    new = json.loads(payloads("reddit")("new_page1.json"))
    good, bad = copy.deepcopy(new["data"]["children"][:2])
    bad["data"]["created_utc"] = 1  # a real number, but no time of Reddit's
    new["data"].update(children=[good, bad], after=None, dist=2)
    served = json.dumps(new).encode()
    empty = {"kind": "Listing", "data": {"after": None, "dist": 0, "children": [], "modhash": None, "before": None}}
    sub = "IndianStreetBets"
    fake_service.route("POST", "/api/v1/access_token", json_reply(payloads("reddit")("token.json")))
    fake_service.route("GET", f"/r/{sub}/new", json_reply(served, REDDIT_LIMITS))
    fake_service.route("GET", f"/r/{sub}/comments/", json_reply(empty, REDDIT_LIMITS))
    settings = RedditSettings(client_id="app-id", client_secret="app-secret", subreddits=[sub],
                              base_url=fake_service.url, oauth_url=fake_service.url,
                              user_agent="linux:sentinel-ray-test:0.1")
    source = RedditSource(settings, retry=RetryPolicy(max_attempts=2), rate_per_s=1000, burst=1000,
                          sleep=RecordingSleep(), seed=1)
    row = _one_good_one_noted(fetch_once(source), "posts", 0, 1, served)
    assert row["post_id"] == good["data"]["name"]


def test_x_a_post_whose_id_carries_no_time(fake_service) -> None:
    page = json.loads(payloads("x")("search_page1.json"))
    bad = {"id": "9" * 25, "text": "$SUZLON no time at all"}  # no created_at, and an id past any snowflake
    page["data"] = [page["data"][0], bad]
    page["meta"] = {"newest_id": page["data"][0]["id"], "result_count": 2}  # no next page
    served = json.dumps(page).encode()
    fake_service.route("GET", SEARCH_PATH, json_reply(served))
    source = XSource(XSettings(bearer_token="AAAA-test", tickers=["SUZLON"], base_url=fake_service.url),
                     http=fast_client("x", **RATE_LIMIT_HEADERS))
    row = _one_good_one_noted(fetch_once(source), "posts", 0, 1, served)
    assert row["post_id"] == page["data"][0]["id"]


def _telegram_block(post: str, text: str) -> str:
    return f"""
            <div class="tgme_widget_message_wrap js-widget_message_wrap">
                <div class="tgme_widget_message js-widget_message" data-post="{post}">
                    <div class="tgme_widget_message_text js-message_text" dir="auto">{text}</div>
                    <span class="tgme_widget_message_views">950</span>
                    <a class="tgme_widget_message_date" href="https://t.me/{post}">
                        <time datetime="2026-11-26T03:50:12+00:00" class="time">03:50</time></a>
                </div>
            </div>"""


def test_telegram_a_message_whose_id_is_no_message_id(fake_service) -> None:
    page = f"""<!DOCTYPE html><html><head><title>Dalal Street Rockets – Telegram</title></head><body>
        <section class="tgme_channel_history js-message_history">
            {_telegram_block("dalal_rockets/101", "$SUZLON breakout loading")}
            {_telegram_block("dalal_rockets/99999999999999999999", "an id no channel reaches")}
        </section></body></html>"""
    served = page.encode()
    fake_service.route("GET", "/s/dalal_rockets", Reply(body=served, content_type="text/html"))
    source = TelegramSource(TelegramSettings(channels=["dalal_rockets"], base_url=fake_service.url),
                            http=fast_client("telegram"))
    row = _one_good_one_noted(fetch_once(source), "posts", 0, 1, served)
    assert row["post_id"] == "dalal_rockets/101" and row["engagement"] == 950


def test_youtube_a_video_published_in_year_1(fake_service) -> None:
    search = json.loads(payloads("youtube")("search_page1.json"))
    good = search["items"][0]
    bad = copy.deepcopy(good)
    bad["id"]["videoId"], bad["snippet"]["publishedAt"] = "Bad0Year0001", "0001-01-01T00:00:00Z"
    search["items"] = [good, bad]
    search.pop("nextPageToken")
    served = json.dumps(search).encode()
    fake_service.route("GET", "/youtube/v3/search", json_reply(served))
    # the found video's comments: none yet (an empty first page)
    fake_service.route("GET", "/youtube/v3/commentThreads", json_reply({"kind": "youtube#commentThreadListResponse",
                                                                        "items": []}))
    source = YouTubeSource(YouTubeSettings(api_key="AIza-test", base_url=fake_service.url + "/youtube/v3"),
                           terms=["RELIANCE"], http=fast_client("youtube"),
                           clock=lambda: dt.datetime(2024, 5, 6, 12, 0, tzinfo=UTC))
    result = fetch_once(source)
    row = _one_good_one_noted(result, "posts", 0, 1, served)
    assert row["post_id"] == f"video:{good['id']['videoId']}"
    # the cursor remembers the item it noted: a later poll reading it again does not quarantine it twice
    assert len(result.next_cursor["noted"]) == 1
    again = fetch_once(YouTubeSource(YouTubeSettings(api_key="AIza-test", base_url=fake_service.url + "/youtube/v3"),
                                     terms=["RELIANCE"], http=fast_client("youtube"),
                                     clock=lambda: dt.datetime(2024, 5, 6, 12, 5, tzinfo=UTC)), result.next_cursor)
    assert again.records["posts"].num_rows == 0 and "unparseable" not in again.meta


def _rss_item(title: str, description: str, guid: str) -> str:
    return (f"<item><title>{title}</title><description>{description}</description><link>{guid}</link>"
            f"<guid>{guid}</guid><pubDate>Mon, 06 May 2024 09:21:05 +0530</pubDate></item>")


def test_rss_an_item_with_neither_title_nor_description(fake_service) -> None:
    feed = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Markets</title>'
            f'{_rss_item("Suzlon bags a 642 MW order", "Shares rose 4%.", "https://example.com/a/1")}'
            f'{_rss_item("", "", "https://example.com/a/2")}'
            "</channel></rss>")
    served = feed.encode()
    fake_service.route("GET", "/markets.xml", Reply(body=served, content_type="application/rss+xml"))
    source = RssSource(RssSettings(feeds=[fake_service.url + "/markets.xml"]), http=fast_client("rss"))
    result = fetch_once(source)
    row = _one_good_one_noted(result, "posts", 0, 1, served)
    assert row["post_id"] == "https://example.com/a/1" and row["text"] == "Suzlon bags a 642 MW order\nShares rose 4%."
    # remembered with the emitted ids: the same feed read again notes it no more
    again = fetch_once(RssSource(RssSettings(feeds=[fake_service.url + "/markets.xml"]), http=fast_client("rss")),
                       result.next_cursor)
    assert again.records["posts"].num_rows == 0 and "unparseable" not in again.meta



def test_rss_an_unreadable_item_mended_by_its_publisher_is_then_emitted(fake_service) -> None:
    broken = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Markets</title>'
              f'{_rss_item("", "", "https://example.com/a/2")}</channel></rss>')
    mended = broken.replace("<title></title>", "<title>Sensex ends flat</title>")
    fake_service.route("GET", "/markets.xml", Reply(body=broken.encode(), content_type="application/rss+xml"),
                       Reply(body=mended.encode(), content_type="application/rss+xml"))
    first, second = poll_chain(RssSource(RssSettings(feeds=[fake_service.url + "/markets.xml"]),
                                         http=fast_client("rss")), 2)
    assert first.records["posts"].num_rows == 0 and len(first.meta["unparseable"]) == 1
    assert second.records["posts"].column("post_id").to_pylist() == ["https://example.com/a/2"]
    assert "unparseable" not in second.meta
