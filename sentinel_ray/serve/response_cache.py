"""Responses of the read routes, kept in each ingress replica until the data changes.

Every writer moves the latest-value cache's version when it has stored a batch (prices,
posts, filings, features, risk, alerts: ingest/serving.py), so a response read at version
V answers every identical request while the version is still V. After it moves, the first
request reads again; requests arriving while it does get the previous answer if that was
read within MAX_STALE_S (1 s), else wait for the new one: an answer is never more than a
second older than the data, and a client that has seen a write finish gets it. Only requests whose answer depends on nothing
but the stored data are kept: `/api/stocks`, a ticker's latest risk, and reads with an
explicit `end` (or `ts`); a range ending "now" moves with the clock, operations routes
(freshness ages, runs, quality) with time and the lake.

A plain ASGI middleware (like http_metrics): misses pass through and are copied as they
stream; a hit is sent from memory, gzipped once when the client accepts it. Kept per
replica, bounded by bytes, least recently used first out.

Kept answers carry an ETag (a digest of the body; weak, one for both encodings), on a miss
too when the body comes in one piece (FastAPI's do): a client that sends it back in
If-None-Match gets 304 and no body while the answer is the same (a dashboard polling
`/api/stocks?all=true` re-reads 350 kB otherwise).
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_ALWAYS = re.compile(r"^/api/stocks(/[^/]+/risk)?$")  # answers that depend on the stored data only
_WITH_END = re.compile(r"^/api/(stocks/[^/]+/(prices|posts|features|filings|risk/history)|alerts|trending|features/asof)$")
_GZIP_FROM_BYTES = 2048
# While a route's answer at a new version is being read, its other clients get the answer of
# the version before if it was read at most this long ago: a hot route does not stall on
# every write, and no answer is more than this older than the data.
MAX_STALE_S = 1.0


def etag_of(body: bytes) -> bytes:
    return b'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest().encode() + b'"'


def _not_modified(scope: Scope, etag: bytes) -> bool:
    """Whether the request's If-None-Match names `etag` (or is `*`): weak comparison, as for GET."""
    for name, value in scope.get("headers", []):
        if name == b"if-none-match":
            tags = {t.strip().removeprefix(b"W/") for t in value.split(b",")}
            return b"*" in tags or etag.removeprefix(b"W/") in tags
    return False


@dataclass
class _Kept:
    version: str
    headers: list[tuple[bytes, bytes]]  # without content-length and etag
    body: bytes
    gzipped: bytes | None = field(default=None)
    read_at: float = field(default_factory=time.monotonic)
    etag: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.etag = etag_of(self.body)

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


class ResponseCache:
    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.version_source: Callable[[], Awaitable[str | None]] | None = None  # set by the ingress replica
        self._kept: OrderedDict[tuple[str, bytes], _Kept] = OrderedDict()
        self._bytes = 0
        self.pending: dict[tuple[tuple[str, bytes], str], asyncio.Future[_Kept | None]] = {}
        self.hits = self.misses = 0

    async def version(self) -> str | None:
        if self.version_source is None:
            return None
        try:
            return await self.version_source()
        except Exception as e:  # noqa: BLE001 - no version, no caching: the request is answered from the source
            log.debug("response cache: no version (%s)", e)
            return None

    def get(self, key: tuple[str, bytes], version: str) -> _Kept | None:
        kept = self._kept.get(key)
        if kept is None or kept.version != version:
            return None
        self._kept.move_to_end(key)
        return kept

    def recent(self, key: tuple[str, bytes]) -> _Kept | None:
        """The answer kept for `key` at an earlier version, if it was read within MAX_STALE_S."""
        kept = self._kept.get(key)
        return kept if kept is not None and time.monotonic() - kept.read_at <= MAX_STALE_S else None

    def put(self, key: tuple[str, bytes], kept: _Kept) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._kept[key] = kept
        self._bytes += kept.size
        while self._bytes > self.max_bytes and self._kept:
            _, evicted = self._kept.popitem(last=False)
            self._bytes -= evicted.size

    def grow(self, extra: int) -> None:
        """A kept answer took `extra` bytes more (its gzipped copy)."""
        self._bytes += extra


def cacheable(path: str, query_string: bytes) -> bool:
    if _ALWAYS.match(path):
        return True
    if not _WITH_END.match(path):
        return False
    names = {name for name, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)}
    return "end" in names or "ts" in names


class ResponseCacheMiddleware:
    def __init__(self, app: ASGIApp, cache: ResponseCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not cacheable(scope["path"],
                                                                                     scope.get("query_string", b"")):
            await self.app(scope, receive, send)
            return
        version = await self.cache.version()
        if version is None:
            await self.app(scope, receive, send)
            return
        # the token is not part of the key: these routes answer everyone the same
        key = (scope["path"], scope.get("query_string", b""))
        kept = self.cache.get(key, version)
        if kept is None and (key, version) in self.cache.pending:
            # the same request is being answered at this version (after each write every client
            # of a hot route misses at once): take the answer kept at the version before, if it
            # was read within MAX_STALE_S, else wait for the one being read
            kept = self.cache.recent(key) or await asyncio.shield(self.cache.pending[(key, version)])
        if kept is not None:
            self.cache.hits += 1
            await self._send_kept(scope, kept, send)
            return
        self.cache.misses += 1
        answered: asyncio.Future[_Kept | None] = asyncio.get_running_loop().create_future()
        self.cache.pending[(key, version)] = answered
        start: Message | None = None
        started = False
        chunks: list[bytes] = []

        async def copy(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                start = message  # held until the first body message: a whole body gets its ETag first
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                whole = not message.get("more_body", False)
                if whole and start["status"] == 200:
                    body = b"".join(chunks)
                    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",
                                                                                                  b"etag")]
                    done = _Kept(version, headers, body)
                    self.cache.put(key, done)
                    answered.set_result(done)
                    if not started:  # the body came in one piece
                        started = True
                        if _not_modified(scope, done.etag):
                            await _send_not_modified(done, send)
                            return
                        await send({**start, "headers": [*start.get("headers", []), (b"etag", done.etag)]})
                if not started:
                    started = True
                    await send(start)
            await send(message)

        try:
            await self.app(scope, receive, copy)
        finally:
            if self.cache.pending.get((key, version)) is answered:
                del self.cache.pending[(key, version)]
            if not answered.done():  # an error, or not a 200: the waiters ask for themselves
                answered.set_result(None)

    async def _send_kept(self, scope: Scope, kept: _Kept, send: Send) -> None:
        if _not_modified(scope, kept.etag):
            await _send_not_modified(kept, send)
            return
        accepts = any(k == b"accept-encoding" and b"gzip" in v for k, v in scope.get("headers", []))
        body, headers = kept.body, [*kept.headers, (b"etag", kept.etag)]
        if accepts and len(kept.body) >= _GZIP_FROM_BYTES:
            if kept.gzipped is None:
                kept.gzipped = gzip.compress(kept.body, compresslevel=5)
                self.cache.grow(len(kept.gzipped))
            body = kept.gzipped
            headers += [(b"content-encoding", b"gzip"), (b"vary", b"accept-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _send_not_modified(kept: _Kept, send: Send) -> None:
    await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", kept.etag)]})
    await send({"type": "http.response.body", "body": b""})
