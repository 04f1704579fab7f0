"""Polite, robust HTTP for source adapters (aiohttp).

- a token bucket per source caps the request rate;
- timeouts, connection errors, 429 and 5xx are retried with exponential backoff and
  full jitter, honouring `Retry-After` (seconds or an HTTP date) when the server sends it;
  services that announce their rate-limit window in headers instead (X: `x-rate-limit-reset`,
  epoch seconds) name those headers (`reset_header`, `remaining_header`) and are waited for;
- 401/403 raise `AuthError` at once: retrying cannot fix credentials;
- other 4xx raise `HttpStatusError` at once; statuses a caller handles itself (304 Not
  Modified for a conditional GET) come back as responses when passed in `accept_statuses`;
- errors keep the status and the whole response body (`.status`, `.body`) for the caller
  to read the service's reason; their messages carry no query string (keys live there);
- the body is returned byte for byte, for the lake's raw zone; a body larger than
  `max_body_bytes` is not read to its end: the read stops at the bound (at once when
  Content-Length says so) and `BodyTooLarge` carries the head that was read.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Collection, Mapping, TypeVar

import aiohttp

from sentinel_ray.config import HttpSourceSettings, SourceSettings
from sentinel_ray.records import SourceError, TerminalError
from sentinel_ray.sources.parsing import MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


def _settings_default(name: str) -> Any:
    # config.py writes each default once; clients built without settings (tests, tools) use the same
    return SourceSettings.model_fields[name].get_default(call_default_factory=True)


DEFAULT_TIMEOUT_S: float = _settings_default("timeout_s")
DEFAULT_MAX_ATTEMPTS: int = _settings_default("max_attempts")
DEFAULT_MAX_SERVER_WAIT_S: float = _settings_default("max_server_wait_s")
# What a too-large body keeps of itself for the raw zone: enough to see what it was (an error
# page, a dump), not megabytes of it on every poll.
TOO_LARGE_HEAD_BYTES = 64 * 1024
READ_CHUNK_BYTES = 64 * 1024


class FetchError(SourceError):
    """Retries are exhausted, or the service answered something no retry will change."""


class AuthError(FetchError, TerminalError):
    """401/403: the credentials are missing, wrong or not allowed this.

    `status` and `body` are the refusing response's (None and b"" when the refusal did
    not come as an HTTP answer), so an adapter can read the service's reason from the body
    (YouTube: quotaExceeded vs commentsDisabled); the message stays short and key-free.
    """

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status, self.body = status, body


class HttpStatusError(FetchError, TerminalError):
    """A 4xx (other than 401/403) that no retry will change; `body` is the whole response body."""

    def __init__(self, status: int, url: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200].decode(errors='replace')}")
        self.status, self.url, self.body = status, url, body


class BodyTooLarge(TerminalError, FetchError):
    """A response body larger than the client reads (`HttpClient.max_body_bytes`): the same
    request would answer the same, so no retry. `response` holds the status, headers and
    the head of the body that was read (at most TOO_LARGE_HEAD_BYTES), for the raw zone.

    TerminalError comes first so that `records.classify` finds it before FetchError (transient)."""

    def __init__(self, message: str, response: "HttpResponse") -> None:
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class HttpResponse:
    status: int
    url: str
    headers: Mapping[str, str]  # case-insensitive when it comes from HttpClient
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
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = DEFAULT_MAX_SERVER_WAIT_S  # a longer Retry-After means "come back later": give up now

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^attempt)]."""
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * (2 ** attempt)))


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Retry:
    """An attempt's outcome that another attempt may fix: what went wrong, and how long
    the service asked to wait (None: back off)."""

    problem: str
    wait: float | None = None


async def with_retries(what: str, attempt: Callable[[], Awaitable[T | Retry]], *, retry: RetryPolicy,
                       bucket: TokenBucket, sleep: Sleep, rng: random.Random) -> T:
    """`attempt` until it returns something other than a Retry, at most `retry.max_attempts`
    times, each after a token from `bucket`; between attempts the service's wait, else
    backoff with jitter. FetchError when attempts run out or the service asks to wait longer
    than `retry.max_retry_after_s`; whatever `attempt` raises goes through untouched.
    `what` names the call in errors and logs (never with a query string: keys live there).

    HttpClient requests, and the adapters whose library does the HTTP (praw, yfinance),
    all retry through this one loop.
    """
    last_problem = ""
    for n in range(retry.max_attempts):
        await bucket.acquire(sleep)
        outcome = await attempt()
        if not isinstance(outcome, Retry):
            return outcome
        last_problem, wait = outcome.problem, outcome.wait
        if wait is not None and wait > retry.max_retry_after_s:
            raise FetchError(f"{what} asks to retry after {wait:.0f}s; giving up for now")
        if n + 1 == retry.max_attempts:
            break
        delay = wait if wait is not None else retry.backoff(n, rng)
        log.info("%s: %s, retry %d in %.1fs", what, last_problem, n + 1, delay)
        await sleep(delay)
    raise FetchError(f"{what} failed after {retry.max_attempts} attempts (last: {last_problem})")


def reset_wait_seconds(value: str | None, now: float) -> float | None:
    """Seconds until a rate-limit window given as epoch seconds reopens (`x-rate-limit-reset`),
    with one second of margin (the header is whole seconds); None when absent or unreadable."""
    if not value or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return max(0.0, float(value.strip()) - now + 1.0)


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Parse Retry-After: delta seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too, and float() refuses it
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass
class HttpClient:
    """One per source: its own session (cookies), rate limit and retry policy.

    `reset_header` names a response header holding the epoch second when the service's
    rate-limit window reopens (X: `x-rate-limit-reset`): a 429 without Retry-After waits
    until then. With `remaining_header` too (X: `x-rate-limit-remaining`), an answer that
    says the window is used up makes the next request wait for the reset, rather than
    spend a request on a certain 429. Either wait is capped by `retry.max_retry_after_s`:
    a longer one gives up with FetchError. `clock` is the wall clock (epoch seconds) those
    resets are compared with.
    """

    source: str
    rate_per_s: float = 1.0
    burst: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    headers: Mapping[str, str] = field(default_factory=dict)
    sleep: Sleep = asyncio.sleep
    seed: int | None = None
    reset_header: str | None = None
    remaining_header: str | None = None
    clock: Callable[[], float] = time.time
    max_body_bytes: int = MAX_PAYLOAD_BYTES

    def __post_init__(self) -> None:
        self._bucket = TokenBucket(self.rate_per_s, self.burst)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random(self.seed)
        self._window_reset: str | None = None  # reset header of an answer that used the window up
        self.requests_made = 0

    @classmethod
    def from_settings(cls, source: str, settings: HttpSourceSettings, *, rate_per_s: float, burst: int = 1,
                      headers: Mapping[str, str] | None = None, **options: Any) -> "HttpClient":
        """A client with the source's timeout, attempts and User-Agent (`settings`), its own
        rate, and any further `headers` (Accept, ...) or options."""
        return cls(source, rate_per_s=rate_per_s, burst=burst, timeout_s=settings.timeout_s,
                   retry=RetryPolicy(max_attempts=settings.max_attempts,
                                     max_retry_after_s=settings.max_server_wait_s),
                   headers={"User-Agent": settings.user_agent, **(headers or {})}, **options)

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
                  headers: Mapping[str, str] | None = None, accept_statuses: Collection[int] = ()) -> HttpResponse:
        return await self.request("GET", url, params=params, headers=headers, accept_statuses=accept_statuses)

    async def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, data: Any = None,
                      accept_statuses: Collection[int] = ()) -> HttpResponse:
        """The response (2xx, or a status in `accept_statuses`), after retries; see the module doc."""
        where = _without_query(url)

        async def attempt() -> HttpResponse | Retry:
            await self._wait_for_window()
            self.requests_made += 1
            try:
                async with self.session.request(method, url, params=params, headers=headers, data=data) as resp:
                    try:
                        body = await self._read_bounded(resp, where)
                    except BodyTooLarge as e:
                        if resp.status < 300 or resp.status in accept_statuses:
                            raise
                        body = e.response.body  # an error answer is read for its reason only: its head will do
                    # resp.headers: case-insensitive (X sends x-rate-limit-* in lower case, others Retry-After)
                    response = HttpResponse(resp.status, str(resp.url), resp.headers, body,
                                            dt.datetime.now(dt.timezone.utc))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                return Retry(_describe_error(e))
            self._note_window(response)
            if response.status < 300 or response.status in accept_statuses:
                return response
            if response.status in (401, 403):
                raise AuthError(f"{self.source}: HTTP {response.status} from {where}: "
                                f"credentials missing, wrong or not allowed; not retrying",
                                status=response.status, body=response.body)
            if response.status not in RETRY_STATUSES:
                raise HttpStatusError(response.status, where, response.body)
            wait = self._server_wait(response)
            if wait is not None:
                self._window_reset = None  # the service's own wait covers the window it reported
            return Retry(f"HTTP {response.status}", wait)

        return await with_retries(f"{self.source}: {where}", attempt, retry=self.retry, bucket=self._bucket,
                                  sleep=self.sleep, rng=self._rng)

    async def _read_bounded(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        """The body, read chunk by chunk: past `max_body_bytes` reading stops (a 10 MB answer
        must not be held in memory, nor trickle in until the timeout) and BodyTooLarge says so."""
        declared = resp.content_length
        if declared is not None and declared > self.max_body_bytes:
            head = await resp.content.read(TOO_LARGE_HEAD_BYTES)
            raise self._too_large(resp, where, head, f"declares {declared:,} bytes")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_body_bytes:
                head = b"".join(chunks)[:TOO_LARGE_HEAD_BYTES]
                raise self._too_large(resp, where, head, f"ran past {self.max_body_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, resp: aiohttp.ClientResponse, where: str, head: bytes, how: str) -> BodyTooLarge:
        response = HttpResponse(resp.status, str(resp.url), resp.headers, head, dt.datetime.now(dt.timezone.utc))
        return BodyTooLarge(f"{self.source}: the answer from {where} {how}, more than the {self.max_body_bytes:,} "
                            f"a payload may hold; not read further", response)

    def _server_wait(self, response: HttpResponse) -> float | None:
        """How long the service asks to wait before retrying: Retry-After, else (on 429) its window reset."""
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is None and response.status == 429 and self.reset_header:
            # a reset already past says nothing about how long to wait: back off instead
            wait = reset_wait_seconds(response.headers.get(self.reset_header), self.clock()) or None
        return wait

    def _note_window(self, response: HttpResponse) -> None:
        if self.remaining_header and self.reset_header:
            remaining = response.headers.get(self.remaining_header)
            used_up = remaining is not None and remaining.strip() == "0"
            self._window_reset = response.headers.get(self.reset_header) if used_up else None

    async def _wait_for_window(self) -> None:
        """Before a request: when the last answer used the rate-limit window up, wait for its reset."""
        if self._window_reset is None:
            return
        wait, self._window_reset = reset_wait_seconds(self._window_reset, self.clock()), None
        if wait is None or wait <= 0:
            return
        if wait > self.retry.max_retry_after_s:
            raise FetchError(f"{self.source}: rate limit window used up, it resets in {wait:.0f}s; giving up for now")
        log.info("%s: rate limit window used up, waiting %.0fs for its reset", self.source, wait)
        await self.sleep(wait)


_SECRET_QUERY = re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|sig|signature)=)[^&\s'\"]*")


def _describe_error(e: BaseException) -> str:
    """A connection error for logs and status: aiohttp puts the request URL, query string
    and so any API key included, into some of its messages; keep the class and status only."""
    if isinstance(e, aiohttp.ClientResponseError):
        return f"{type(e).__name__} (HTTP {e.status})"
    text = _SECRET_QUERY.sub(r"\1***", str(e))
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _without_query(url: str) -> str:
    # query strings may carry API keys: keep them out of errors and logs
    return url.split("?", 1)[0]
