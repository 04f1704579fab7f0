"""Kept responses of the read routes (serve/response_cache.py): served while the data's
version holds, never after it moves, only for requests answered by stored data alone."""
from __future__ import annotations

import asyncio
import gzip
import json
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from sentinel_ray.serve.response_cache import ResponseCache, ResponseCacheMiddleware, cacheable


class _Client:
    """Requests straight into an ASGI app (no server, no HTTP client library needed)."""

    def __init__(self, app) -> None:
        self.app = app

    def get(self, path: str, params: dict | None = None, headers: dict | None = None) -> "_Answer":
        return asyncio.run(self.aget(path, params, headers))

    async def aget(self, path: str, params: dict | None = None, headers: dict | None = None) -> "_Answer":
        """The same request, on the caller's event loop (for concurrent requests)."""
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
                 "query_string": urlencode(params or {}).encode(), "scheme": "http", "server": ("test", 80),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
                 "http_version": "1.1", "client": ("127.0.0.1", 1)}
        messages: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)
        await self.app(scope, receive, send)
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return _Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body)


class _Answer:
    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content

    def json(self):
        body = gzip.decompress(self.content) if self.headers.get("content-encoding") == "gzip" else self.content
        return json.loads(body)


def _app(cache: ResponseCache) -> tuple[FastAPI, dict[str, int]]:
    calls = {"n": 0}
    app = FastAPI()

    @app.get("/api/stocks")
    async def stocks() -> list[dict]:
        calls["n"] += 1
        return [{"ticker": f"T{i}", "calls": calls["n"]} for i in range(200)]

    @app.get("/api/stocks/{ticker}/prices")
    async def prices(ticker: str, end: str | None = None) -> JSONResponse:
        calls["n"] += 1
        if ticker == "MISSING":
            return JSONResponse({"detail": "unknown ticker"}, status_code=404)
        return JSONResponse({"ticker": ticker, "end": end, "calls": calls["n"]})

    app.add_middleware(ResponseCacheMiddleware, cache=cache)
    return app, calls


@pytest.fixture
def version() -> dict[str, str | None]:
    return {"now": "build-1#1"}


def _cache(version: dict, **kwargs) -> ResponseCache:
    """A ResponseCache whose data version is version["now"]."""
    cache = ResponseCache(**kwargs)

    async def current() -> str | None:
        return version["now"]
    cache.version_source = current
    return cache


def _slow_app(cache: ResponseCache) -> tuple[_Client, dict[str, int]]:
    """/api/stocks answering the number of times it was read, after a 50 ms 'warehouse query'."""
    calls = {"n": 0}
    app = FastAPI()

    @app.get("/api/stocks")
    async def stocks() -> list[int]:
        calls["n"] += 1
        await asyncio.sleep(0.05)
        return [calls["n"]]

    app.add_middleware(ResponseCacheMiddleware, cache=cache)
    return _Client(app), calls


@pytest.fixture
def client(version: dict) -> tuple[_Client, dict[str, int], ResponseCache]:
    cache = _cache(version)
    app, calls = _app(cache)
    return _Client(app), calls, cache


def test_kept_while_the_version_holds_and_never_after(client, version) -> None:
    http, calls, _ = client
    first = (http.get("/api/stocks")).json()
    assert (http.get("/api/stocks")).json() == first and calls["n"] == 1
    version["now"] = "build-1#2"  # a writer stored a batch
    assert (http.get("/api/stocks")).json()[0]["calls"] == 2
    version["now"] = None  # the cache is not built (or Redis is down): nothing is kept or served
    http.get("/api/stocks")
    http.get("/api/stocks")
    assert calls["n"] == 4


def test_only_answers_of_stored_data_alone_are_kept(client) -> None:
    http, calls, _ = client
    for _ in range(2):
        http.get("/api/stocks/TCS/prices")  # a range ending now moves with the clock
    assert calls["n"] == 2
    for _ in range(2):
        http.get("/api/stocks/TCS/prices", params={"end": "2026-11-06"})
    assert calls["n"] == 3
    for _ in range(2):  # errors are not kept
        assert (http.get("/api/stocks/MISSING/prices", params={"end": "2026-11-06"})).status_code == 404
    assert calls["n"] == 5
    assert not cacheable("/api/data/freshness", b"") and not cacheable("/api/lineage/prices", b"end=x")
    assert cacheable("/api/stocks/TCS/risk", b"") and not cacheable("/api/stocks/TCS/risk/history", b"")


def test_a_kept_body_is_gzipped_once_for_clients_that_accept_it(client) -> None:
    http, calls, _ = client
    plain = http.get("/api/stocks", headers={"accept-encoding": "identity"})
    zipped = http.get("/api/stocks", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert zipped.json() == plain.json() and calls["n"] == 1
    raw = http.get("/api/stocks", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers and raw.content == plain.content
    assert gzip.decompress(zipped.content) == plain.content  # the same bytes, compressed


def test_an_unchanged_answer_is_not_sent_again_to_a_client_that_holds_it(client, version) -> None:
    """ETag on the first answer (read from the source) and on kept ones, the same for both
    encodings; If-None-Match with it: 304 and no body, until the answer changes."""
    http, calls, _ = client
    first = http.get("/api/stocks")
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and calls["n"] == 1
    kept = http.get("/api/stocks", headers={"accept-encoding": "gzip"})
    assert kept.headers["etag"] == tag and kept.headers["content-encoding"] == "gzip"
    for sent in (tag, f'"other", {tag}', tag.removeprefix("W/"), "*"):
        again = http.get("/api/stocks", headers={"if-none-match": sent, "accept-encoding": "gzip"})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", tag), sent
    assert calls["n"] == 1
    assert http.get("/api/stocks", headers={"if-none-match": 'W/"other"'}).content == first.content
    version["now"] = "build-1#2"  # a writer stored a batch: the answer changed (its calls count did)
    changed = http.get("/api/stocks", headers={"if-none-match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag and calls["n"] == 2
    # read from the source, still 304 when the body is the one the client holds
    version["now"] = "build-1#3"
    calls["n"] -= 1  # the source answers what it answered at #2
    same = http.get("/api/stocks", headers={"if-none-match": changed.headers["etag"]})
    assert (same.status_code, same.content) == (304, b"") and calls["n"] == 2
    # errors carry no ETag and are answered in full
    missing = http.get("/api/stocks/MISSING/prices", params={"end": "2026-11-06"}, headers={"if-none-match": "*"})
    assert missing.status_code == 404 and "etag" not in missing.headers and missing.json()


def test_memory_is_bounded_least_recently_used_out(version) -> None:
    cache = _cache(version, max_bytes=200)  # about four of these bodies
    app, calls = _app(cache)
    http = _Client(app)
    for ticker in ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J"):
        http.get(f"/api/stocks/{ticker}/prices", params={"end": "2026-11-06"})
    assert cache._bytes <= 200 and len(cache._kept) < 10
    http.get("/api/stocks/J/prices", params={"end": "2026-11-06"})  # the newest is still kept
    http.get("/api/stocks/A/prices", params={"end": "2026-11-06"})  # the oldest went first
    assert calls["n"] == 11


def test_concurrent_misses_at_one_version_ask_the_source_once(version) -> None:
    """After a write every client of a hot route misses at once: one of them asks, the rest wait."""
    cache = _cache(version)
    client, calls = _slow_app(cache)

    async def many() -> list[list[int]]:
        return [a.json() for a in await asyncio.gather(*(client.aget("/api/stocks") for _ in range(16)))]

    assert asyncio.run(many()) == [[1]] * 16 and calls["n"] == 1 and not cache.pending


def test_while_a_new_version_is_read_the_previous_answer_serves_for_a_second_at_most(version, monkeypatch) -> None:
    import sentinel_ray.serve.response_cache as rc

    client, calls = _slow_app(_cache(version))
    assert client.get("/api/stocks").json() == [1]
    version["now"] = "build-1#2"

    async def two() -> list:
        async def one(delay: float) -> list[int]:
            await asyncio.sleep(delay)
            return (await client.aget("/api/stocks")).json()
        return await asyncio.gather(one(0), one(0.01))

    assert asyncio.run(two()) == [[2], [1]]  # the reader gets the new answer, a client meanwhile the previous one
    assert client.get("/api/stocks").json() == [2] and calls["n"] == 2
    version["now"] = "build-1#3"
    monkeypatch.setattr(rc, "MAX_STALE_S", 0.0)  # the previous answer is too old: wait for the new one
    assert asyncio.run(two()) == [[3], [3]] and calls["n"] == 3


def test_the_replica_hears_of_every_version_move_on_the_cache_channel(embedded_redis: str) -> None:
    """VersionWatch: no Redis call per request once subscribed, and no answer of an old
    version after a move is announced."""
    import redis
    import redis.asyncio as aioredis

    from sentinel_ray.serve.reads import VersionWatch
    from sentinel_ray.storage.latest import LatestCache

    writer = LatestCache(redis.Redis.from_url(embedded_redis), "watch-test", "db")
    writer.replace_all([], [], {})

    async def scenario() -> list[str | None]:
        client = aioredis.Redis.from_url(embedded_redis)
        watch = VersionWatch(writer, lambda: client)
        seen = [await watch.version()]  # not subscribed yet: asks Redis
        for _ in range(100):
            if watch.live:
                break
            await asyncio.sleep(0.01)
        seen.append(await watch.version())
        writer.touch()
        for _ in range(100):
            if await watch.version() not in (None, seen[-1]):
                break
            await asyncio.sleep(0.01)
        seen.append(await watch.version())
        writer.invalidate()  # not built: nothing kept may be served
        for _ in range(100):
            if await watch.version() is None:
                break
            await asyncio.sleep(0.01)
        seen.append(await watch.version())
        await watch.close()
        await client.aclose()
        return seen

    first, subscribed, moved, invalidated = asyncio.run(scenario())
    assert first == subscribed and first.endswith("#1")
    assert moved.endswith("#2") and moved.split("#")[0] == first.split("#")[0]
    assert invalidated is None
