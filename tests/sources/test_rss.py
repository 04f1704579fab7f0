"""RSS/Atom news adapter against local fixture servers serving publishers' feed formats."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import feedparser
import pytest
from aiohttp import web

from sentinel_ray.config import RssSettings, Settings
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.schemas import POSTS
from sentinel_ray.records import RAW_POS, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError
from sentinel_ray.sources.rss import RssSource, html_to_text, parse_feed
from tests.fakes.server import Reply
from tests.sources.helpers import (UTC, RecordingSleep, assert_replays, fast_client, payloads, poll_chain, rows,
                                   skipped)

ET = "/markets/rssfeeds/1977021501.cms"
MC = "/rss/marketreports.xml"
BS = "/rss/markets-106.rss"
ATOM = "/markets/feed.atom"
CONTENT_TYPES = {ET: "text/xml", MC: "application/rss+xml", BS: "application/rss+xml", ATOM: "application/atom+xml"}
FILES = {ET: "et_markets.xml", MC: "moneycontrol_marketreports.xml", BS: "business_standard_markets.rss",
         ATOM: "atom_markets.xml"}


payload = payloads("rss")


class Publisher:
    """A feed that answers conditional GETs the way real publishers' servers do:
    ETag and Last-Modified on 200, 304 when the client already has the current version."""

    def __init__(self, body: bytes, content_type: str, version: int = 1, validators: bool = True) -> None:
        self.content_type, self.validators = content_type, validators
        self.publish(body, version)

    def publish(self, body: bytes, version: int) -> None:
        self.body = body
        self.etag = f'W/"feed-v{version}"'
        self.last_modified = f"Mon, 06 May 2024 {10 + version:02d}:00:00 GMT"

    def __call__(self, request: web.Request) -> Reply:
        if self.validators and (request.headers.get("If-None-Match") == self.etag
                                or request.headers.get("If-Modified-Since") == self.last_modified):
            return Reply(304)
        headers = {"ETag": self.etag, "Last-Modified": self.last_modified} if self.validators else {}
        return Reply(body=self.body, content_type=self.content_type, headers=headers)


def serve_all(service: Any) -> dict[str, Publisher]:
    publishers = {path: Publisher(payload(FILES[path]), CONTENT_TYPES[path]) for path in FILES}
    for path, publisher in publishers.items():
        service.route("GET", path, publisher)
    return publishers


def make_source(service: Any, paths: list[str], sleep: RecordingSleep | None = None, timeout_s: float = 5.0,
                max_attempts: int = 4) -> RssSource:
    http = fast_client("rss", sleep, timeout_s=timeout_s, max_attempts=max_attempts, base_delay_s=0.5, seed=5)
    return RssSource(RssSettings(feeds=[service.url + p for p in paths]), http=http)


# --- happy path -------------------------------------------------------------------------------------


def test_happy_path_rss_and_atom(fake_service) -> None:
    serve_all(fake_service)
    (result,) = poll_chain(make_source(fake_service, [ET, MC, BS, ATOM]), 1)

    table = result.records[POSTS.name]
    assert table.schema == record_schema(POSTS)
    assert table.num_rows == 3 + 2 + 2 + 2
    assert set(table.column("platform").to_pylist()) == {"news"}
    assert set(table.column("source").to_pylist()) == {"rss"}
    assert table.column("run_id").null_count == table.num_rows
    assert table.column("engagement").null_count == table.num_rows
    assert table.column("tickers").null_count == table.num_rows  # found by the pipeline's enrich step
    tickers = dict(zip(table.column("post_id").to_pylist(), enrich(table, POSTS).column("tickers").to_pylist()))
    by_id = {r["post_id"]: r for r in rows(result)}

    et = by_id["https://economictimes.indiatimes.com/markets/stocks/news/stocks-in-news-reliance-industries-"
               "hdfc-bank-mm-suzlon-vodafone-idea/articleshow/109881283.cms"]
    assert et["text"] == ("Stocks in news: Reliance Industries, HDFC Bank, M&M, Suzlon Energy, Vodafone Idea\n"
                          "Shares of Reliance Industries, HDFC Bank and Mahindra & Mahindra will be in focus on "
                          "Monday after their March-quarter results, while Suzlon Energy bagged a 642 MW order.")
    assert et["author"] == "Markets-Economic Times"  # no byline: the feed's title
    assert et["ts"] == dt.datetime(2024, 5, 6, 2, 17, 36, tzinfo=UTC)  # 07:47:36 +0530
    assert et["url"] == et["post_id"]
    assert tickers[et["post_id"]][:5] == ["RELIANCE", "HDFCBANK", "M&M", "SUZLON", "IDEA"]

    bs = by_id["124050600312_1"]  # guid isPermaLink="false": the guid is still the id
    assert bs["author"] == "Abhishek Kumar"
    assert bs["url"].endswith("-124050600312_1.html")
    assert tickers[bs["post_id"]] == ["IDEA"]

    atom = by_id["tag:dalalstreetdesk.in,2024:/markets/auto-sales-preview-april-2024"]
    assert atom["text"].startswith("Tata Motors & Maruti: auto sales preview for April\nAnalysts expect Tata Motors")
    assert atom["author"] == "Meera Iyer"
    assert atom["url"] == f"{fake_service.url}/markets/auto-sales-preview-april-2024/"  # relative link resolved
    assert atom["ts"] == dt.datetime(2024, 5, 6, 6, 10, tzinfo=UTC)  # published, not updated
    suzlon = by_id["tag:dalalstreetdesk.in,2024:/markets/suzlon-upper-circuit"]
    assert suzlon["ts"] == dt.datetime(2024, 5, 6, 4, 32, tzinfo=UTC)  # no <published>: <updated>
    assert "SUZLON locked in a 5% upper circuit" in suzlon["text"] and tickers[suzlon["post_id"]] == ["SUZLON"]

    # raw: every body byte for byte, with its content type and where it came from
    assert [(p.body, p.content_type) for p in result.raw] == [(payload(FILES[p]), CONTENT_TYPES[p])
                                                              for p in (ET, MC, BS, ATOM)]
    assert result.raw[0].request == fake_service.url + ET
    received = {p.received_at.replace(microsecond=p.received_at.microsecond // 1000 * 1000) for p in result.raw}
    assert set(table.column("ingested_at").to_pylist()) <= received

    cursor = result.next_cursor
    json.dumps(cursor)
    state = cursor["feeds"][fake_service.url + ET]
    assert state["etag"] == 'W/"feed-v1"' and state["last_modified"] == "Mon, 06 May 2024 11:00:00 GMT"
    assert state["newest"] == "2024-05-06T04:35:12Z" and len(state["seen"]) == 3
    assert result.meta["malformed_feeds"] == {} and result.meta["failed_feeds"] == {}


def test_html_in_descriptions_becomes_plain_text(fake_service) -> None:
    serve_all(fake_service)
    (result,) = poll_chain(make_source(fake_service, [ET, MC]), 1)
    for row in rows(result):
        assert "<" not in row["text"] and ">" not in row["text"], row["text"]
        assert "&amp;" not in row["text"] and "&#" not in row["text"] and "&rsquo;" not in row["text"]
        assert "img.etimg.com" not in row["text"] and "trackImpression" not in row["text"]  # no attributes, no script
    texts = " ".join(r["text"] for r in rows(result))
    assert "HDFC Bank’s Q4 net profit rose 37% YoY; TCS signed a £500 million deal" in texts
    assert "Suzlon Energy rallied 5% on order wins" in texts
    assert "Infosys and TCS were the top drags – the IT index fell 0.8%." in texts


def test_html_to_text() -> None:
    assert html_to_text('<p>ITC &amp; <b>L&amp;T</b></p><p>up 2%</p>') == "ITC & L&T up 2%"
    assert html_to_text("Nifty < 22,000 & Sensex > 73k") == "Nifty < 22,000 & Sensex > 73k"
    assert html_to_text("a<br/>b<script>x()</script><style>p{}</style>c") == "a bc"


# --- conditional GET, cursor ---------------------------------------------------------------------


def test_304_not_modified_means_nothing_new(fake_service) -> None:
    serve_all(fake_service)
    first, second = poll_chain(make_source(fake_service, [ET, BS]), 2)
    assert first.rows(POSTS.name) == 5

    again = fake_service.seen(ET)[-1]
    assert again.headers["If-None-Match"] == 'W/"feed-v1"'
    assert again.headers["If-Modified-Since"] == "Mon, 06 May 2024 11:00:00 GMT"
    assert second.rows(POSTS.name) == 0 and second.raw == []
    assert second.records[POSTS.name].schema == record_schema(POSTS)
    assert sorted(second.meta["not_modified"]) == sorted(fake_service.url + p for p in (ET, BS))
    assert second.next_cursor is first.next_cursor  # unchanged


def test_cursor_resume_emits_only_new_entries(fake_service) -> None:
    publishers = serve_all(fake_service)
    newer = payload(FILES[MC]).replace(b"<item>", b"""<item>
<title><![CDATA[Closing Bell: Sensex sheds 400 points; Reliance, Infosys drag]]></title>
<link>https://www.moneycontrol.com/news/business/markets/closing-bell-sensex-sheds-400-points-12686000.html</link>
<guid>https://www.moneycontrol.com/news/business/markets/closing-bell-sensex-sheds-400-points-12686000.html</guid>
<description><![CDATA[<p>Benchmarks ended lower for a second day.</p>]]></description>
<pubDate>Mon, 06 May 2024 15:45:00 +0530</pubDate>
</item>
<item>""", 1)

    first, second, third = poll_chain(make_source(fake_service, [ET, MC]), 3,
                                      between=lambda i: i == 1 and publishers[MC].publish(newer, 2))
    first_ids = {r["post_id"] for r in rows(first)}
    second_ids = {r["post_id"] for r in rows(second)}
    closing_bell = "https://www.moneycontrol.com/news/business/markets/closing-bell-sensex-sheds-400-points-12686000.html"
    assert second_ids == {closing_bell}
    assert not first_ids & second_ids
    assert enrich(second.records[POSTS.name], POSTS).column("tickers").to_pylist() == [["RELIANCE", "INFY"]]
    assert third.rows(POSTS.name) == 0
    mc_state = second.next_cursor["feeds"][fake_service.url + MC]
    assert mc_state["etag"] == 'W/"feed-v2"' and len(mc_state["seen"]) == 3


def test_a_server_without_validators_is_deduplicated_by_id(fake_service) -> None:
    fake_service.route("GET", BS, Publisher(payload(FILES[BS]), "application/rss+xml", validators=False))
    first, second = poll_chain(make_source(fake_service, [BS]), 2)
    assert first.rows(POSTS.name) == 2 and second.rows(POSTS.name) == 0
    assert "If-None-Match" not in fake_service.seen(BS)[-1].headers
    assert second.next_cursor == first.next_cursor


def test_the_same_article_in_two_feeds_is_emitted_once(fake_service) -> None:
    serve_all(fake_service)
    fake_service.route("GET", "/markets/stocks/rssfeeds/2146842.cms",
                       Publisher(payload(FILES[ET]), "text/xml"))  # ET's stocks feed repeats the market stories
    first, second = poll_chain(make_source(fake_service, [ET, "/markets/stocks/rssfeeds/2146842.cms"]), 2)
    ids = [r["post_id"] for r in rows(first)]
    assert len(ids) == len(set(ids)) == 3
    assert second.rows(POSTS.name) == 0


# --- bad input --------------------------------------------------------------------------------------


def test_a_bad_date_leaves_ts_empty_and_is_counted(fake_service) -> None:
    fake_service.route("GET", "/rss/buzzingstocks.xml", Reply(body=payload("bad_date.xml"),
                                                              content_type="application/rss+xml"))
    (result,) = poll_chain(make_source(fake_service, ["/rss/buzzingstocks.xml"]), 1)
    by_title = {r["text"].split("\n")[0]: r for r in rows(result)}
    bad = by_title["Buzzing: IDEA share price jumps 9% after tariff hike talk"]
    assert bad["ts"] is None  # validation quarantines it with a reason, its tickers found all the same:
    checked = process_batch(result.records[POSTS.name], POSTS, now=dt.datetime.now(UTC), run_id="r")
    [quarantined] = checked.quarantined.to_pylist()
    assert quarantined["post_id"] == bad["post_id"] and quarantined["tickers"] == ["IDEA"]
    assert quarantined["reject_reason"] == "missing_field"
    good = by_title["Buzzing: ITC slips after Q4 miss"]
    assert good["ts"] == dt.datetime(2024, 5, 6, 8, 40, tzinfo=UTC)
    assert result.meta["undated"] == 1
    state = result.next_cursor["feeds"][fake_service.url + "/rss/buzzingstocks.xml"]
    assert state["newest"] == "2024-05-06T08:40:00Z" and len(state["seen"]) == 2


def test_unparseable_feed_is_a_source_error_naming_it(fake_service) -> None:
    fake_service.route("GET", MC, Reply(body=b"<html><head><title>Access Denied</title></head>"
                                             b"<body>Reference #18.5c</body></html>", content_type="text/html"))
    with pytest.raises(SourceError, match=f"feed {fake_service.url}{MC} is not a readable RSS/Atom document"):
        poll_chain(make_source(fake_service, [MC]), 1)


def test_partly_malformed_feed_keeps_what_parsed(fake_service) -> None:
    broken = payload(FILES[ET]).replace(b"</channel>\n</rss>\n", b"")  # cut off mid-document
    broken = broken.replace(b"Sensex, Nifty open flat;", b"Sensex & Nifty open flat;")  # a bare '&'
    fake_service.route("GET", ET, Reply(body=broken, content_type="text/xml"))
    (result,) = poll_chain(make_source(fake_service, [ET]), 1)
    assert result.rows(POSTS.name) >= 1
    assert list(result.meta["malformed_feeds"]) == [fake_service.url + ET]
    assert "not well-formed" in result.meta["malformed_feeds"][fake_service.url + ET]


def test_one_broken_feed_does_not_stop_the_others(fake_service) -> None:
    serve_all(fake_service)
    fake_service.route("GET", MC, Reply(body=b"\x00\x01 not xml", content_type="application/rss+xml"))
    fake_service.route("GET", BS, Reply(404, body=b"Not Found"))
    (result,) = poll_chain(make_source(fake_service, [ET, MC, BS]), 1)
    assert result.rows(POSTS.name) == 3
    failed = result.meta["failed_feeds"]
    assert set(failed) == {fake_service.url + MC, fake_service.url + BS}
    assert "not a readable RSS/Atom document" in failed[fake_service.url + MC]
    assert "404" in failed[fake_service.url + BS]
    # the broken feeds' cursors stay empty, so the next poll tries them afresh
    assert result.next_cursor["feeds"][fake_service.url + MC]["seen"] == []


def test_empty_feed_gives_an_empty_table_and_keeps_the_cursor(fake_service) -> None:
    empty = (b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Moneycontrol Market '
             b'Reports News</title><link>https://www.moneycontrol.com/</link><description>x</description>'
             b'</channel></rss>')
    fake_service.route("GET", MC, Reply(body=empty, content_type="application/rss+xml"))
    cursor = {"feeds": {}}
    first, second = (poll_chain(make_source(fake_service, [MC]), 1, c)[0] for c in (None, cursor))
    for result in (first, second):
        assert result.rows(POSTS.name) == 0 and result.records[POSTS.name].schema == record_schema(POSTS)
    assert first.next_cursor is None and second.next_cursor is cursor


def test_unreadable_cursor_is_a_source_error(fake_service) -> None:
    serve_all(fake_service)
    with pytest.raises(SourceError, match="unreadable cursor"):
        poll_chain(make_source(fake_service, [ET]), 1, {"feeds": ["not", "a", "mapping"]})


# --- HTTP trouble -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(fake_service) -> None:
    fake_service.route("GET", BS, Reply(429, headers={"Retry-After": "12"}),
                       Reply(body=payload(FILES[BS]), content_type="application/rss+xml"))
    sleep = RecordingSleep()
    (result,) = poll_chain(make_source(fake_service, [BS], sleep), 1)
    assert sleep.calls == [12.0] and result.rows(POSTS.name) == 2


def test_500_then_success(fake_service) -> None:
    fake_service.route("GET", ET, Reply(503), Reply(body=payload(FILES[ET]), content_type="text/xml"))
    sleep = RecordingSleep()
    (result,) = poll_chain(make_source(fake_service, [ET], sleep), 1)
    assert result.rows(POSTS.name) == 3 and len(sleep.calls) == 1 and len(fake_service.seen(ET)) == 2


def test_timeout_is_retried_then_fails(fake_service) -> None:
    fake_service.route("GET", ET, Reply(delay_s=1.0), Reply(body=payload(FILES[ET]), content_type="text/xml"))
    (result,) = poll_chain(make_source(fake_service, [ET], timeout_s=0.2), 1)
    assert result.rows(POSTS.name) == 3

    fake_service.route("GET", MC, Reply(delay_s=1.0))
    with pytest.raises(FetchError, match="failed after 2 attempts"):
        poll_chain(make_source(fake_service, [MC], timeout_s=0.2, max_attempts=2), 1)


def test_401_is_a_clear_auth_error_after_one_request(fake_service) -> None:
    fake_service.route("GET", MC, Reply(401, body=b"Unauthorized"))
    with pytest.raises(AuthError, match="HTTP 401"):
        poll_chain(make_source(fake_service, [MC]), 1)
    assert len(fake_service.seen(MC)) == 1


# --- settings ---------------------------------------------------------------------------------------


def test_from_settings_needs_no_credentials() -> None:
    source = RssSource.from_settings(Settings(rss_feeds="https://a.example/rss, https://b.example/atom"))
    assert RssSource.credentials == () and source.name == "rss"
    assert source.feeds == ["https://a.example/rss", "https://b.example/atom"]
    assert source.http.headers["Accept"].startswith("application/rss+xml")
    asyncio.run(source.close())
    with pytest.raises(SourceError, match="no feeds configured"):
        RssSource(RssSettings(feeds=[]))


def test_parse_feed_without_content_type_is_not_malformed() -> None:
    parsed = parse_feed(payload(FILES[BS]), "https://www.business-standard.com/rss/markets-106.rss",
                        dt.datetime(2024, 5, 6, tzinfo=UTC))
    assert parsed.problem is None and len(parsed.posts) == 2
    assert parsed.title == "Business Standard News :: Markets"


# --- replay from the raw zone -------------------------------------------------------------------


def _entry_id(payload: RawPayload, position: int) -> str:
    entry = feedparser.parse(payload.body).entries[position]
    return entry.get("id") or entry.get("link")


def test_kept_documents_parse_to_the_polls_records(fake_service) -> None:
    publishers = serve_all(fake_service)
    newer = payload(FILES[MC]).replace(b"<item>", b"""<item>
<title><![CDATA[Closing Bell: Sensex sheds 400 points]]></title>
<guid>https://www.moneycontrol.com/news/business/markets/closing-bell-12686000.html</guid>
<description><![CDATA[<p>Benchmarks ended lower for a second day.</p>]]></description>
<pubDate>Mon, 06 May 2024 15:45:00 +0530</pubDate>
</item>
<item>""", 1)
    first, second = poll_chain(make_source(fake_service, [ET, MC, BS, ATOM]), 2,
                               between=lambda i: publishers[MC].publish(newer, 2))
    # every row is the entry at its raw_pos in the document its raw_id names
    assert assert_replays("rss", first, _entry_id, lambda row: row["post_id"]) == {"posts": 9}
    assert assert_replays("rss", second, _entry_id, lambda row: row["post_id"]) == {"posts": 1}
    [mc] = second.raw  # the others answered 304: no payload
    assert [(r["post_id"], r[RAW_POS]) for r in rows(second)] == [
        ("https://www.moneycontrol.com/news/business/markets/closing-bell-12686000.html", 0)]
    # the document lists the new entry, then those the first poll emitted: read, not emitted, and said so
    assert request_context(mc.request) == {"skip": "1-2"} and request_url(mc.request) == fake_service.url + MC
    assert {r["post_id"] for r in skipped("rss", mc)} == {r["post_id"] for r in rows(first) if r["url"] and
                                                          "moneycontrol" in r["url"]}


def test_a_redirected_feed_keeps_its_url_and_charset_for_the_parser(fake_service) -> None:
    fake_service.route("GET", "/moved.atom", Reply(301, headers={"Location": "/markets/feed/latest.atom"}))
    fake_service.route("GET", "/markets/feed/latest.atom", lambda request: web.Response(
        body=payload(FILES[ATOM]), headers={"Content-Type": "application/atom+xml; charset=utf-8"}))
    (result,) = poll_chain(make_source(fake_service, ["/moved.atom"]), 1)
    assert assert_replays("rss", result, _entry_id, lambda row: row["post_id"]) == {"posts": 2}
    [kept] = result.raw
    assert request_url(kept.request) == fake_service.url + "/markets/feed/latest.atom"
    # links resolve against the feed asked for, as the poll resolved them; the charset the header named
    assert request_context(kept.request) == {"feed": fake_service.url + "/moved.atom",
                                             "content_type": "application/atom+xml; charset=utf-8"}
    relative = [r["url"] for r in rows(result) if r["post_id"].endswith("auto-sales-preview-april-2024")]
    assert relative == [f"{fake_service.url}/markets/auto-sales-preview-april-2024/"]
