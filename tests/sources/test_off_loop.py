"""Big bodies are parsed off the event loop: a poll reading megabytes of JSON does not stall the loop.

Pollers share one event loop per process; a JSON body near the 8 MiB bound takes most of a
second to parse and check. Each adapter below is served one such body (a readable payload
padded with 1.9 million floats, each of which goes through the bounded parser's number
check) while a ticker task counts how long the loop went without running it. The same poll
with off-loop parsing switched off (`OFF_LOOP_BYTES` raised past the body) shows the stall
the worker thread avoids, so the test proves the body is slow enough to matter.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sentinel_ray.config import FilingsSettings, NseSettings, XSettings, YouTubeSettings
from sentinel_ray.sources import parsing
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.filings import BSE_ANNOUNCEMENTS_PATH, NSE_ANNOUNCEMENTS_PATH, FilingsSource
from sentinel_ray.sources.nse import HISTORY_PATH, QUOTE_PATH, NseSource
from sentinel_ray.sources.x import RATE_LIMIT_HEADERS, SEARCH_PATH, XSource
from sentinel_ray.sources.youtube import YouTubeSource
from tests.fakes.server import FakeService, Reply
from tests.sources.helpers import UTC, fast_client, json_reply, payloads

PAD = 1_900_000  # floats: about 7.6 MB of JSON, under the 8 MiB a payload may hold


def padded(doc: dict[str, Any]) -> bytes:
    body = json.dumps({**doc, "pad": [1.5] * PAD}, separators=(",", ":")).encode()
    assert len(body) < parsing.MAX_PAYLOAD_BYTES
    return body


def x(fake: FakeService, _: Path) -> Source:
    fake.route("GET", SEARCH_PATH, json_reply(padded(json.loads(payloads("x")("search_page2.json")))))
    return XSource(XSettings(bearer_token="AAAA-test", tickers=["SUZLON"], base_url=fake.url),
                   http=fast_client("x", timeout_s=30, **RATE_LIMIT_HEADERS))


def youtube(fake: FakeService, _: Path) -> Source:
    search = json.loads(payloads("youtube")("search_page1.json"))
    search.pop("nextPageToken")
    fake.route("GET", "/youtube/v3/search", json_reply(padded(search)))
    fake.route("GET", "/youtube/v3/commentThreads", json_reply({"items": []}))
    return YouTubeSource(YouTubeSettings(api_key="AIza-test", base_url=fake.url + "/youtube/v3"), terms=["RELIANCE"],
                         http=fast_client("youtube", timeout_s=30),
                         clock=lambda: dt.datetime(2024, 5, 6, 12, tzinfo=UTC))


def nse(fake: FakeService, _: Path) -> Source:
    fake.route("GET", "/", Reply(body=b"<html>NSE</html>", content_type="text/html",
                                 headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake.route("GET", HISTORY_PATH, json_reply(padded(json.loads(payloads("nse")("history_reliance.json")))))
    fake.route("GET", QUOTE_PATH, json_reply(payloads("nse")("quote_unknown.json")))
    return NseSource(NseSettings(tickers=["RELIANCE"], base_url=fake.url), http=fast_client("nse", timeout_s=30),
                     clock=lambda: dt.datetime(2025, 2, 3, 5, 40, tzinfo=UTC))


def filings(fake: FakeService, _: Path) -> Source:
    fake.route("GET", "/", Reply(body=b"<html>NSE</html>", content_type="text/html",
                                 headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake.route("GET", NSE_ANNOUNCEMENTS_PATH,
               json_reply(padded({"data": json.loads(payloads("filings")("nse_announcements.json"))})))
    fake.route("GET", BSE_ANNOUNCEMENTS_PATH, json_reply(payloads("filings")("bse_empty.json")))
    return FilingsSource(FilingsSettings(nse_base_url=fake.url, bse_base_url=fake.url),
                         nse_http=fast_client("filings/nse", timeout_s=30),
                         bse_http=fast_client("filings/bse", timeout_s=30),
                         clock=lambda: dt.datetime(2025, 4, 1, 12, 15, tzinfo=UTC))


# Yahoo's chart check runs off the loop too, but is not measured here: yfinance parses the same
# body itself in its worker thread with plain json.loads, C code that holds the GIL throughout, so
# the loop still stalls for that part whatever the adapter does.
ADAPTERS: dict[str, Callable[[FakeService, Path], Source]] = {"x": x, "youtube": youtube, "nse": nse,
                                                              "filings": filings}


async def _poll_with_ticker(source: Source) -> tuple[int, float]:
    """(rows returned, longest time in seconds the event loop went without running a 5 ms ticker)."""
    longest, done = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    task = asyncio.create_task(ticker())
    try:
        result = await source.fetch(None)
    finally:
        done.set()
        await task
        await source.close()
    return sum(t.num_rows for t in result.records.values()), longest


@pytest.mark.no_replay_check  # the replay check (conftest.py) would parse the body again, on the loop
@pytest.mark.parametrize("name", list(ADAPTERS))
def test_a_big_body_does_not_stall_the_event_loop(name: str, tmp_path: Path, monkeypatch) -> None:
    # on the loop first: what a first poll in a process pays once (imports, the first session, the
    # worker threads) lands in the run that is meant to stall
    with FakeService() as fake, monkeypatch.context() as patched:
        patched.setattr(parsing, "OFF_LOOP_BYTES", 2 * parsing.MAX_PAYLOAD_BYTES)  # parse on the loop
        rows_on, stall_on = asyncio.run(_poll_with_ticker(ADAPTERS[name](fake, tmp_path)))
    with FakeService() as fake:
        rows_off, stall_off = asyncio.run(_poll_with_ticker(ADAPTERS[name](fake, tmp_path)))
    assert rows_off == rows_on > 0  # the padded payload was read, the same either way
    assert stall_on >= 0.25, f"{name}: parsing on the loop stalled it only {stall_on:.3f}s: the body is too light"
    assert stall_off < stall_on / 3, f"{name}: off the loop {stall_off:.3f}s vs on the loop {stall_on:.3f}s"
