"""Bad input at the source: an unreadable record is quarantined (reason unparseable) pointing
at its raw payload; an unreadable payload is kept in the raw zone, reported and skipped: the
other requests of the poll go on, and the poller polls again at its usual interval."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pyarrow.compute as pc
import pytest

from sentinel_ray.config import RssSettings, XSettings
from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.records import FetchResult, RawPayload, Reason, utc_now
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.rss import RssSource
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource
from sentinel_ray.storage.lake import Lake
from tests.fakes.server import Reply
from tests.ingest.conftest import drain, make_consumer
from tests.sources.helpers import fast_client, json_reply, payloads

pytestmark = pytest.mark.ray


def _tweet(n: int, created: dt.datetime) -> dict[str, Any]:
    return {"id": str(2125803024143093761 + n), "author_id": "98120434", "created_at": created.isoformat(),
            "text": f"$RELIANCE results tomorrow, post {n}", "public_metrics": {"like_count": n}}


def _x_source(fake_service, *replies: Reply) -> XSource:
    fake_service.route("GET", SEARCH_PATH, *replies)
    http = fast_client("x", timeout_s=2.0, max_attempts=1, **RATE_LIMIT_HEADERS)
    return XSource(XSettings(bearer_token="AAAA-test", tickers=["RELIANCE"], base_url=fake_service.url), http=http)


def _poller(settings, source: Source, store) -> SourcePoller:
    return SourcePoller(settings, source, store=store, lake=Lake(settings.resolved_lake_uri))


def test_unreadable_records_are_quarantined_pointing_at_their_raw_payload(ray_session, ingest_settings, store,
                                                                          fake_service) -> None:
    now = utc_now().replace(microsecond=0) - dt.timedelta(hours=1)
    # 5 records: 3 readable posts; a post whose id carries no real time and no created_at; a post
    # whose created_at and id are both unreadable (the adapter notes both as unparseable)
    tweets = [_tweet(1, now), _tweet(2, now), {"id": "9" * 25, "text": "no time at all"}, _tweet(3, now),
              {"id": "9" * 30, "created_at": "year 1", "text": "nor here"}]
    page = {"data": tweets, "includes": {"users": [{"id": "98120434", "username": "bazaarbaba"}]},
            "meta": {"newest_id": tweets[3]["id"], "result_count": 5}}
    source = _x_source(fake_service, json_reply(page), json_reply(page))
    poller = _poller(ingest_settings, source, store)

    assert asyncio.run(poller.poll_once()) == 3
    assert poller.stats.unparseable == 2 and poller.stats.errors == 0
    drain(make_consumer(ingest_settings, store, "posts-0", "posts"))

    lake = Lake(ingest_settings.resolved_lake_uri)
    curated, quarantined = lake.read("curated", "posts"), lake.read("quarantine", "posts")
    unparseable = quarantined.filter(pc.equal(quarantined.column("reject_reason"), Reason.UNPARSEABLE.value))
    assert curated.num_rows == 3 and quarantined.num_rows == unparseable.num_rows == 2
    assert curated.num_rows + unparseable.num_rows == len(tweets)
    [raw_file] = lake.list_files("raw", "posts")
    relative = raw_file[len(lake.root) + 1:]
    pointers = unparseable.column("run_id").to_pylist()
    assert [p.split(": ", 1)[0] for p in pointers] == [f"{relative}#2", f"{relative}#4"]
    assert all("ValueError" in p for p in pointers)
    assert unparseable.column("source").to_pylist() == ["x", "x"]
    assert json.loads(lake.read_bytes(raw_file))["data"][2]["id"] == "9" * 25  # the record, as received

    # the same answer polled again (a poller that died before its publish): the same quarantine file
    store.redis.delete(store.cursor_key("x"))
    assert asyncio.run(poller.poll_once()) == 3
    assert lake.read("quarantine", "posts").num_rows == 2 and len(lake.list_files("raw", "posts")) == 1


BLOCKED = Reply(body=b"<html><body>Access Denied</body></html>", content_type="text/html")


async def _run_for(poller: SourcePoller, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_an_unreadable_payload_is_kept_reported_and_polled_again_at_the_usual_interval(
        ray_session, ingest_settings, store, fake_service) -> None:
    # X with one query: the poll's only payload is an HTML block page
    settings = ingest_settings.model_copy(update={"poll_intervals": {"x": 0.2}})
    poller = _poller(settings, _x_source(fake_service, BLOCKED), store)
    lake = Lake(settings.resolved_lake_uri)

    async def poll_then_run_briefly() -> None:
        assert await poller.poll_once() == 0  # done, not raised: a retry would fetch the same bytes
        [raw_file] = lake.list_files("raw", "posts")
        assert lake.read_bytes(raw_file) == BLOCKED.body
        assert poller.stats.unreadable_payloads == 1 and poller.stats.polls == 1 and poller.stats.errors == 0
        assert store.load_cursor("x") is None  # the cursor as it was
        assert raw_file[len(lake.root) + 1:] in poller.stats.last_error
        await _run_for(poller, 1.2)  # the poll loop: reports it, polls on at the usual interval

    asyncio.run(poll_then_run_briefly())
    asked = len(fake_service.seen(SEARCH_PATH))
    # every 0.2 s, not backing off (backoff would have polled once in the loop, then waited 2 s)
    assert asked >= 4 and poller.stats.polls == poller.stats.unreadable_payloads == asked
    assert poller.stats.errors == 0 and poller.stats.records == 0 and store.load_cursor("x") is None
    assert len(lake.list_files("raw", "posts")) == 1  # the same bytes: the same file
    status = store.statuses("poller")["x"]
    assert "unreadable payload kept at raw/" in status["last_error"] and status["errors"] == 0


ET, MC = "/markets/rssfeeds/1977021501.cms", "/rss/marketreports.xml"


def test_one_unreadable_feed_among_good_ones_does_not_hold_back_the_poll(ray_session, ingest_settings, store,
                                                                        fake_service) -> None:
    good = payloads("rss")("et_markets.xml")
    fake_service.route("GET", ET, Reply(body=good, content_type="text/xml"))
    fake_service.route("GET", MC, BLOCKED)
    settings = ingest_settings.model_copy(update={"poll_intervals": {"rss": 0.2}})
    source = RssSource(RssSettings(feeds=[fake_service.url + MC, fake_service.url + ET]),
                       http=fast_client("rss", timeout_s=2.0, max_attempts=1))
    poller = _poller(settings, source, store)
    lake = Lake(settings.resolved_lake_uri)

    async def poll_then_run_briefly() -> None:
        assert await poller.poll_once() == 3  # the good feed's 3 headlines
        assert poller.stats.unreadable_payloads == 1 and poller.stats.raw_payloads == 2
        kept = sorted(lake.read_bytes(f) for f in lake.list_files("raw", "posts"))
        assert kept == sorted([good, BLOCKED.body])  # both kept, the unreadable one as received
        cursor = store.load_cursor("rss")["feeds"]
        assert len(cursor[fake_service.url + ET]["seen"]) == 3 and cursor[fake_service.url + MC]["seen"] == []
        await _run_for(poller, 1.2)

    asyncio.run(poll_then_run_briefly())
    asked = len(fake_service.seen(MC))
    assert asked >= 4 and poller.stats.polls == poller.stats.unreadable_payloads == asked
    assert poller.stats.records == 3 and poller.stats.errors == 0  # nothing new after the first poll, nothing twice
    assert len(lake.list_files("raw", "posts")) == 2
    drain(make_consumer(settings, store, "posts-0", "posts"))
    curated, quarantined = lake.read("curated", "posts"), lake.read("quarantine", "posts")
    assert curated.num_rows == 3 and quarantined.num_rows == 0


class _Skippable(Source):
    """Page 1 cannot be read but the source knows what comes next; page 2 holds two posts."""

    name = "fakesrc"
    datasets = (POSTS.name,)

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        now = utc_now() - dt.timedelta(minutes=5)
        page = (cursor or {}).get("page", 1)
        body = f"page {page}".encode()
        raw = RawPayload(self.name, POSTS.name, now, body, "text/plain")
        if page == 1:
            error = UnreadablePayload("fakesrc: page 1 is not a page", [raw])
            error.next_cursor = {"page": 2}  # type: ignore[attr-defined]
            raise error
        if page > 2:
            return FetchResult([], {}, cursor)
        posts = [PostItem(f"p{i}", "someone", f"$TCS post {i}", now, None, None, now) for i in range(2)]
        return FetchResult([raw], {POSTS.name: posts_table(posts, platform="news", source=self.name)}, {"page": 3})


def test_an_unreadable_payload_with_a_next_cursor_is_skipped(ray_session, ingest_settings, store) -> None:
    settings = ingest_settings
    poller = _poller(settings, _Skippable(), store)
    assert asyncio.run(poller.poll_once()) == 0
    assert poller.stats.unreadable_payloads == 1 and poller.stats.state == "idle"
    assert store.load_cursor("fakesrc") == {"page": 2}
    assert asyncio.run(poller.poll_once()) == 2
    assert asyncio.run(poller.poll_once()) == 0
    lake = Lake(settings.resolved_lake_uri)
    assert sorted(lake.read_bytes(f) for f in lake.list_files("raw", "posts")) == [b"page 1", b"page 2"]
    drain(make_consumer(settings, store, "posts-0", "posts"))
    assert lake.read("curated", "posts").num_rows == 2
