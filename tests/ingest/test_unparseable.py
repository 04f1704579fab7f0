"""Bad input at the source: an unreadable record is quarantined (reason unparseable) pointing
at its raw payload; an unreadable payload is kept in the raw zone, reported and skipped."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pyarrow.compute as pc
import pytest

from sentinel_ray.config import XSettings
from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.records import FetchResult, RawPayload, Reason, utc_now
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource
from sentinel_ray.storage.lake import Lake
from tests.fakes.server import Reply
from tests.ingest.conftest import drain, make_consumer
from tests.sources.helpers import fast_client, json_reply

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


def test_an_unreadable_payload_is_kept_reported_and_retried_not_crashed_on(ray_session, ingest_settings, store,
                                                                            fake_service) -> None:
    blocked = Reply(body=b"<html><body>Access Denied</body></html>", content_type="text/html")
    poller = _poller(ingest_settings, _x_source(fake_service, *[blocked] * 10), store)

    lake = Lake(ingest_settings.resolved_lake_uri)

    async def poll_then_run_briefly() -> None:
        with pytest.raises(UnreadablePayload):
            await poller.poll_once()
        [raw_file] = lake.list_files("raw", "posts")
        assert lake.read_bytes(raw_file) == blocked.body
        assert poller.stats.unreadable_payloads == 1 and store.load_cursor("x") is None
        assert raw_file[len(lake.root) + 1:] in poller.stats.last_error
        stop = asyncio.Event()  # the poll loop: reports it, backs off, keeps going
        task = asyncio.create_task(poller.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(poll_then_run_briefly())
    [raw_file] = lake.list_files("raw", "posts")  # the same bytes: the same file
    assert poller.stats.errors == 1 and poller.stats.unreadable_payloads == 2  # one retry in 0.5 s: backoff
    assert "unreadable payload kept at raw/" in store.statuses("poller")["x"]["last_error"]


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
