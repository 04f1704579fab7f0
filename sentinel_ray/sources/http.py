"""Polite, robust HTTP for source adapters (aiohttp).

- a token bucket per source caps the request rate;
- timeouts, connection errors, 429 and 5xx are retried with exponential backoff and
  full jitter, honouring `Retry-After` (seconds or an HTTP date) when the server sends it;
- 401/403 raise `AuthError` at once: retrying cannot fix credentials;
- other 4xx raise `HttpStatusError` at once;
- the body is returned byte for byte, for the lake's raw zone.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import aiohttp

from sentinel_ray.sources.base import SourceError

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]


class FetchError(SourceError):
    """Retries are exhausted, or the service answered something no retry will change."""


class AuthError(FetchError):
    """401/403: the credentials are missing, wrong or not allowed this."""


class HttpStatusError(FetchError):
    def __init__(self, status: int, url: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200].decode(errors='replace')}")
        self.status = status


@dataclass(frozen=True)
class HttpResponse:
    status: int
    url: str
    headers: Mapping[str, str]
    body: bytes
    received_at: dt.datetime

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class TokenBucket:
    """`rate` requests per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate, self.capacity, self._clock = rate, float(burst), clock
        self._tokens, self._last = float(burst), clock()
        self._lock = asyncio.Lock()

    async def acquire(self, sleep: Sleep = asyncio.sleep) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await sleep((1 - self._tokens) / self.rate)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer Retry-After means "come back later": give up now

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)]."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * (2 ** attempt)))


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Parse Retry-After: delta seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass
class HttpClient:
    """One per source: its own session (cookies), rate limit and retry policy."""

    source: str
    rate_per_s: float = 1.0
    burst: int = 1
    timeout_s: float = 20.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    headers: Mapping[str, str] = field(default_factory=dict)
    sleep: Sleep = asyncio.sleep
    seed: int | None = None

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate_per_s, self.burst)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random(self.seed)
        self.requests_made = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and self._session_loop is not loop:
            # a session belongs to the loop that made it; a new asyncio.run needs a new one
            self._session = None
        if self._session is None or self._session.closed:
            self._session_loop = loop
            # unsafe=True keeps cookies set by IP-address hosts too (fixture servers, proxies)
            self._session = aiohttp.ClientSession(
                headers=dict(self.headers), cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def get(self, url: str, *, params: Mapping[str, Any] | None = None,
                  headers: Mapping[str, str] | None = None) -> HttpResponse:
        return await self.request("GET", url, params=params, headers=headers)

    async def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, data: Any = None) -> HttpResponse:
        last_problem = ""
        for attempt in range(self.retry.max_attempts):
            await self._bucket.acquire(self.sleep)
            self.requests_made += 1
            wait: float | None = None
            try:
                async with self.session.request(method, url, params=params, headers=headers, data=data) as resp:
                    body = await resp.read()
                    response = HttpResponse(resp.status, str(resp.url), dict(resp.headers), body,
                                            dt.datetime.now(dt.timezone.utc))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                last_problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.status < 300:
                    return response
                if response.status in (401, 403):
                    raise AuthError(f"{self.source}: HTTP {response.status} from {_without_query(url)}: "
                                    f"credentials missing, wrong or not allowed; not retrying")
                if response.status not in RETRY_STATUSES:
                    raise HttpStatusError(response.status, _without_query(url), response.body)
                last_problem = f"HTTP {response.status}"
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if wait is not None and wait > self.retry.max_retry_after_s:
                    raise FetchError(f"{self.source}: {_without_query(url)} asks to retry after {wait:.0f}s; "
                                     f"giving up for now")
            if attempt + 1 == self.retry.max_attempts:
                break
            delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
            log.info("%s: %s from %s, retry %d in %.1fs", self.source, last_problem, _without_query(url),
                     attempt + 1, delay)
            await self.sleep(delay)
        raise FetchError(f"{self.source}: {_without_query(url)} failed after {self.retry.max_attempts} attempts "
                         f"(last: {last_problem})")


def _without_query(url: str) -> str:
    # query strings may carry API keys: keep them out of errors and logs
    return url.split("?", 1)[0]
