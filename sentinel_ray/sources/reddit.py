"""Reddit: new submissions and comments of chosen subreddits, through praw (read-only, application-only OAuth).

The real praw/prawcore stack does the talking: the client-credentials token
(POST {reddit_url}/api/v1/access_token, HTTP basic client id:secret, grant_type=client_credentials),
the bearer header, the required User-Agent, `raw_json=1` on every call and the pacing that
follows Reddit's `x-ratelimit-remaining/used/reset` headers. Per subreddit and poll it reads

    GET {oauth_url}/r/<sub>/new?limit=100[&after=<fullname>]&raw_json=1        Listing of t3 (submissions)
    GET {oauth_url}/r/<sub>/comments/?limit=100[&after=<fullname>]&raw_json=1  Listing of t1 (comments)

newest first, following `data.after` until it reaches what the previous poll emitted or
`page_cap` pages. Both base URLs are settings, so tests (and proxies) point the real
library at a local server; prawcore takes any scheme, http://127.0.0.1 included.

Two praw defaults are replaced through praw's documented `requestor_class` hook, not by
patching praw: prawcore retries 5xx and timeouts itself with `time.sleep` (2 retries,
fixed schedule) and would stack under our retries, so the requestor turns those answers
into exceptions and `RetryPolicy` retries them with an injectable sleep; and prawcore
sends its own 16 s default timeout on every API call, so the requestor applies ours.
The same hook keeps every API response body for the lake (never the token response:
it holds a bearer token). Records are read from those bodies by `parse_payload`, what a
replay from the raw zone calls too (see `lineage`): a page's request text notes (`#skip=`)
the children an earlier poll or page had emitted.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import praw
import prawcore
import pyarrow as pa
import requests
from prawcore import exceptions as pce

from sentinel_ray.config import RedditSettings
from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source, require_secrets
from sentinel_ray.sources.http import (DEFAULT_MAX_SERVER_WAIT_S, TOO_LARGE_HEAD_BYTES, AuthError, FetchError,
                                      HttpResponse, HttpStatusError, Retry, RetryPolicy, Sleep, TokenBucket,
                                      retry_after_seconds, with_retries)
from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, positioned, read_whole,
                                          request_url, skipping, withholding)
from sentinel_ray.sources.paging import Pager
from sentinel_ray.sources.parsing import (
    MAX_PAYLOAD_BYTES,
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    as_of,
    count,
    epoch_seconds,
    loads_json,
    note_unparseable,
    note_unreadable,
    off_loop,
    optional_text,
    record_error,
    unreadable_poll,
)
from sentinel_ray.sources.posts import PostItem, posts_table

log = logging.getLogger(__name__)

PUBLIC_URL = "https://www.reddit.com"  # permalinks are relative to the public site, whatever host we fetch from
PAGE_SIZE = 100  # Reddit's maximum `limit` per listing page
STREAMS = {"submissions": "new", "comments": "comments/"}  # stream -> listing under r/<sub>/
_GONE_TEXT = frozenset({"[removed]", "[deleted]"})
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 522})


class _TransportError(pce.PrawcoreException):
    """A timeout or connection failure. Deliberately not a prawcore RequestException,
    which prawcore would retry itself with blocking sleeps."""


class _Unreadable(pce.PrawcoreException):
    """A body that cannot be read (too big, too deep, not JSON): not retried. `head` is what was
    read of it (all of it, unless it was too big: `cut_short`)."""

    def __init__(self, message: str, head: bytes = b"", *, cut_short: bool = False) -> None:
        super().__init__(message)
        self.head, self.cut_short = head, cut_short
        self.answer: HttpResponse | None = None  # set for reads (GET) only: a token answer is never kept


class _UnreadableAnswer(SourceError):
    """A listing answer praw could not read; `response` holds it (a read, never the token answer)
    for the raw zone, all of it unless `cut_short`."""

    def __init__(self, message: str, response: HttpResponse | None, *, cut_short: bool = False) -> None:
        super().__init__(message)
        self.response, self.cut_short = response, cut_short


class _WaitTooLong(pce.PrawcoreException):
    """Reddit's rate-limit headers ask for a wait beyond the cap: prawcore would sleep it in a thread."""


_LIMIT_HEADERS = ("x-ratelimit-remaining", "x-ratelimit-used", "x-ratelimit-reset")


def _read_body(response: Any, deadline: float) -> None:
    """Read a streamed body under a total time and size bound (requests' timeout is per read:
    a trickled body would never time out)."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_PAYLOAD_BYTES:
                raise _Unreadable(f"body larger than {MAX_PAYLOAD_BYTES:,} bytes",
                                  b"".join(chunks)[:TOO_LARGE_HEAD_BYTES], cut_short=True)
            if time.monotonic() > deadline:
                raise _TransportError("the body took longer than the timeout to arrive")
    except requests.RequestException as e:
        raise _TransportError(f"{type(e).__name__}: {e}") from None
    finally:
        response.close()
    response._content = b"".join(chunks)  # what requests' own .content does once read
    response._content_consumed = True


def _checked_limits(headers: Any, max_wait_s: float) -> None:
    """Drop rate-limit headers prawcore cannot read (it would raise on NaN or 1e999), and refuse a
    window reset further away than `max_wait_s` (prawcore would sleep it, blocking)."""
    values = [headers.get(h) for h in _LIMIT_HEADERS]
    if values[0] is None:
        return
    try:
        remaining, used, reset = float(values[0]), int(values[1]), int(values[2])
        if not math.isfinite(remaining) or used < 0 or reset < 0:
            raise ValueError
    except (TypeError, ValueError):
        for h in _LIMIT_HEADERS:
            headers.pop(h, None)
        return
    if remaining < 1 and reset > max_wait_s:
        raise _WaitTooLong(f"rate limit window used up, it resets in {reset}s (more than {max_wait_s:.0f}s)")


class _Requestor(prawcore.Requestor):
    """prawcore's requestor with our timeout, no hidden retries, and a copy of each API response."""

    def __init__(self, *args: Any, sink: list[HttpResponse], timeout_s: float,
                 max_wait_s: float = DEFAULT_MAX_SERVER_WAIT_S, **kwargs: Any) -> None:
        super().__init__(*args, timeout=timeout_s, **kwargs)
        self.sink = sink
        self.max_wait_s = max_wait_s

    def request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        # Only reads are kept: the token endpoint is a POST and its body holds a bearer token.
        is_read = str(args[0] if args else kwargs.get("method", "")).upper() == "GET"
        try:
            # prawcore passes its module default timeout on API calls; ours wins.
            response = super().request(*args, timeout=self.timeout, stream=True, **kwargs)
        except pce.RequestException as e:
            raise _TransportError(f"{type(e.original_exception).__name__}: {e.original_exception}") from None
        try:
            _read_body(response, deadline)
            _checked_limits(response.headers, self.max_wait_s)
            status = response.status_code
            if 200 <= status < 300:
                try:
                    loads_json(response.content, "reddit response")  # prawcore's response.json() has no bounds
                except PayloadError as e:
                    raise _Unreadable(str(e), response.content) from None
        except _Unreadable as e:
            if is_read:
                e.answer = HttpResponse(response.status_code, response.url, response.headers, e.head,
                                        dt.datetime.now(dt.timezone.utc))
            raise
        if status in (401, 403):
            # Raised here, not by prawcore: prawcore would retry a 401 after a blocking sleep, and
            # its mapping fails with KeyError on a 401 that lacks a www-authenticate header.
            raise (pce.Forbidden if status == 403 else pce.InvalidToken)(response)
        if status == 429:
            raise pce.TooManyRequests(response)
        if status in _RETRY_STATUSES:
            raise pce.ServerError(response)
        if 200 <= status < 300 and is_read:
            self.sink.append(HttpResponse(status, response.url, response.headers, response.content,
                                          dt.datetime.now(dt.timezone.utc)))
        return response


@dataclass(frozen=True)
class _Verdict:
    """What to do about a failed call: give up with `error`, or retry (after `wait` when known)."""

    retry: bool
    error: Exception
    wait: float | None = None


def _classify(exc: Exception, where: str) -> _Verdict:
    """Map praw/prawcore exceptions onto the platform's error classes."""
    if isinstance(exc, (pce.InvalidToken, pce.Forbidden, pce.InsufficientScope, pce.OAuthException)) or (
            isinstance(exc, pce.ResponseException) and exc.response.status_code in (401, 403)):
        response = exc.response if isinstance(exc, pce.ResponseException) else None
        status = response.status_code if response is not None else "token error"
        return _Verdict(False, AuthError(f"reddit: {where}: HTTP {status}: client id/secret missing, wrong or not "
                                         f"allowed this; not retrying",
                                         status=response.status_code if response is not None else None,
                                         body=response.content if response is not None else b""))
    if isinstance(exc, pce.TooManyRequests):
        headers = exc.response.headers
        # Reddit rarely sends Retry-After; x-ratelimit-reset (seconds until the window resets) says the same.
        wait = retry_after_seconds(headers.get("retry-after")) or retry_after_seconds(headers.get("x-ratelimit-reset"))
        return _Verdict(True, FetchError(f"reddit: {where}: HTTP 429"), wait)
    if isinstance(exc, pce.ServerError):
        return _Verdict(True, FetchError(f"reddit: {where}: HTTP {exc.response.status_code}"))
    if isinstance(exc, _TransportError):
        return _Verdict(True, FetchError(f"reddit: {where}: {exc}"))
    if isinstance(exc, _WaitTooLong):
        return _Verdict(False, FetchError(f"reddit: {where}: {exc}; giving up for now"))
    if isinstance(exc, _Unreadable):
        return _Verdict(False, _UnreadableAnswer(f"reddit: {where}: the response cannot be read: {exc}", exc.answer,
                                                 cut_short=exc.cut_short))
    if isinstance(exc, pce.BadJSON):
        answer = exc.response
        is_read = getattr(answer.request, "method", "") == "GET"  # never the token answer: it may hold a token
        kept = HttpResponse(answer.status_code, answer.url, answer.headers, answer.content,
                            dt.datetime.now(dt.timezone.utc)) if is_read else None
        return _Verdict(False, _UnreadableAnswer(f"reddit: {where}: the response is not JSON: "
                                                 f"{answer.content[:200]!r}", kept))
    if isinstance(exc, pce.Redirect):
        # Reddit answers an unknown or banned subreddit with a redirect to its search page.
        return _Verdict(False, HttpStatusError(exc.response.status_code, f"{where} (no such subreddit?)",
                                               exc.response.content))
    if isinstance(exc, pce.ResponseException):
        return _Verdict(False, HttpStatusError(exc.response.status_code, where, exc.response.content))
    if isinstance(exc, (pce.PrawcoreException, praw.exceptions.PRAWException)):
        return _Verdict(False, FetchError(f"reddit: {where}: {type(exc).__name__}: {exc}"))
    raise exc


@dataclass
class _Item:
    post_id: str
    author: str | None
    text: str
    ts: float  # created_utc, seconds
    url: str | None
    engagement: int | None
    when: dt.datetime  # created_utc as a time


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2 ** 53 else None


def _item(child: Any) -> _Item | None:
    """One listing child (t3 submission or t1 comment) as a post; None when malformed."""
    if not isinstance(child, dict) or not isinstance(child.get("data"), dict):
        return None
    kind, data = child.get("kind"), child["data"]
    created, item_id = data.get("created_utc"), data.get("id")
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not isinstance(item_id, str) \
            or kind not in ("t3", "t1"):
        return None
    when = epoch_seconds(created)  # ValueError when not a real time (Infinity, year 1, 1970): the record is unparseable
    author = optional_text(data.get("author"))
    author = author if author != "[deleted]" else None
    permalink = optional_text(data.get("permalink"))
    url = PUBLIC_URL + permalink if isinstance(permalink, str) and permalink.startswith("/") else None
    if kind == "t3":
        title, body = data.get("title"), data.get("selftext") or ""
        if not isinstance(title, str) or not isinstance(body, str):
            return None
        title, body = optional_text(title) or "", optional_text(body) or ""
        # raw_json=1 means Reddit sends the text unescaped: it is used as is.
        text = title if body in _GONE_TEXT or not body.strip() else f"{title}\n\n{body}"
        score, comments = _int(data.get("score")), _int(data.get("num_comments"))
        engagement = None if score is None and comments is None else (score or 0) + (comments or 0)
    else:
        text = data.get("body")
        if not isinstance(text, str):
            return None
        engagement = _int(data.get("score"))
    name = data.get("name")
    post_id = optional_text(name if isinstance(name, str) and name else f"{kind}_{item_id}")
    if post_id is None:
        return None
    # a net-downvoted post has a negative score: no engagement to speak of, not a negative count
    return _Item(post_id, author, optional_text(text) or "", float(created), url, count(engagement), when)


def _post(item: _Item, received_at: dt.datetime) -> PostItem:
    return PostItem(item.post_id, item.author, item.text, item.when, item.url, item.engagement, received_at)


def _listing(payload: Any, where: str) -> tuple[list[Any], str | None]:
    """(children, after) of a Reddit Listing, or SourceError when the payload is not one."""
    data = payload.get("data") if isinstance(payload, dict) and payload.get("kind") == "Listing" else None
    if not isinstance(data, dict) or not isinstance(data.get("children"), list):
        raise SourceError(f"reddit: {where}: expected a Listing ({{'kind': 'Listing', 'data': {{'children': [...]}}}}),"
                          f" got {str(payload)[:200]}")
    after = data.get("after")
    return data["children"], after if isinstance(after, str) and after else None


@dataclass
class Listing:
    """One listing page as read: per child, in the page's order, its item (None: not a post at
    all; a string: why it could not be read), and the page's `after` token."""

    outcomes: list[_Item | str | None]
    after: str | None


def read_listing(payload: RawPayload) -> Listing:
    """The children of a listing page; SourceError when the body is not a Listing."""
    where = request_url(payload.request)
    try:
        doc = loads_json(payload.body, f"reddit: {where}")
    except PayloadError as e:
        raise SourceError(f"reddit: {where}: the response cannot be read: {e}") from None
    children, after = _listing(doc, where)
    outcomes: list[_Item | str | None] = []
    with as_of(payload.received_at):
        for child in children:
            try:
                outcomes.append(_item(child))
            except RECORD_ERRORS as e:
                outcomes.append(record_error(e))
    return Listing(outcomes, after)


def listing_records(payload: RawPayload, listing: Listing) -> ParsedPayload:
    """The posts of a listing page read by `read_listing`, as its poll emitted them."""
    readable = [(position, item) for position, item in enumerate(listing.outcomes) if isinstance(item, _Item)]
    table = posts_table([_post(item, payload.received_at) for _, item in readable], platform=RedditSource.platform,
                        source=RedditSource.name)
    return finish(payload, {POSTS.name: positioned(table, [position for position, _ in readable])},
                  [(position, error) for position, error in enumerate(listing.outcomes) if isinstance(error, str)])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The posts of one kept listing page (see `lineage`)."""
    return listing_records(payload, read_whole(payload, read_listing))


class RedditSource(Source):
    """New posts and comments of `subreddits`, incrementally, through praw in read-only mode."""

    name = "reddit"
    platform = "reddit"
    datasets = (POSTS.name,)
    settings_class = RedditSettings

    def __init__(self, settings: RedditSettings, *, retry: RetryPolicy | None = None,
                 rate_per_s: float = 1.0,  # Reddit allows 100 requests a minute per client id; stay well under
                 burst: int = 5, sleep: Sleep = asyncio.sleep, seed: int | None = None) -> None:
        secrets = require_secrets(self.name, settings)
        self.client_id, self.client_secret = secrets["client_id"], secrets["client_secret"]
        self.subreddits = list(settings.subreddits)
        self.base_url, self.oauth_url = settings.base_url.rstrip("/"), settings.oauth_url.rstrip("/")
        self.user_agent, self.page_cap, self.timeout_s = settings.user_agent, settings.page_cap, settings.timeout_s
        self.retry = retry or RetryPolicy(max_attempts=settings.max_attempts,
                                          max_retry_after_s=settings.max_server_wait_s)
        self.sleep = sleep
        self._bucket = TokenBucket(rate_per_s, burst)
        self._rng = random.Random(seed)
        self._reddit: praw.Reddit | None = None
        self._session: requests.Session | None = None
        self._captured: list[HttpResponse] = []
        self.requests_made = 0

    # ---- praw --------------------------------------------------------------------

    @property
    def reddit(self) -> praw.Reddit:
        if self._reddit is None:
            self._session = requests.Session()  # ours, so close() can release its connections
            self._reddit = praw.Reddit(
                client_id=self.client_id, client_secret=self.client_secret, user_agent=self.user_agent,
                reddit_url=self.base_url, oauth_url=self.oauth_url,
                check_for_updates=False,  # no PyPI look-up from a poller
                check_for_async=False,  # praw runs in a worker thread (asyncio.to_thread), never on the loop
                requestor_class=_Requestor,
                requestor_kwargs={"sink": self._captured, "timeout_s": self.timeout_s, "session": self._session,
                                  "max_wait_s": self.retry.max_retry_after_s})
            # With a client secret and no user credentials praw runs application-only, read-only.
            assert self._reddit.read_only
        return self._reddit

    def _get_blocking(self, path: str, params: dict[str, Any]) -> tuple[Any, HttpResponse]:
        self._captured.clear()
        payload = self.reddit.request(method="GET", path=path, params=params)
        if not self._captured:
            raise SourceError(f"reddit: {path}: praw returned without a response")  # cannot happen on 2xx
        return payload, self._captured[-1]

    async def _get(self, path: str, params: dict[str, Any]) -> tuple[Any, HttpResponse]:
        """One listing page, with RetryPolicy semantics on 429/5xx/timeouts and none on 401/403."""
        where = f"{self.oauth_url}/{path}"

        async def attempt() -> tuple[Any, HttpResponse] | Retry:
            self.requests_made += 1
            try:
                return await asyncio.to_thread(self._get_blocking, path, params)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
                # prawcore reads the token answer with plain dict access: a malformed one lands here
                raise SourceError(f"reddit: {where}: unexpected answer ({type(e).__name__}: {e})") from None
            except Exception as e:  # noqa: BLE001 - classified below, unknown ones re-raised
                verdict = _classify(e, where)
            if verdict.retry:
                return Retry(str(verdict.error), verdict.wait)
            if isinstance(verdict.error, AuthError):
                self._drop_client()  # a stale or revoked token: the next poll authenticates afresh
            raise verdict.error

        return await with_retries(f"reddit: {where}", attempt, retry=self.retry, bucket=self._bucket,
                                  sleep=self.sleep, rng=self._rng)

    # ---- polling -----------------------------------------------------------------

    async def _poll_stream(self, subreddit: str, stream: str, state: dict[str, Any] | None, tables: list[pa.Table],
                           raw: list[RawPayload], meta: dict[str, Any]) -> dict[str, Any] | None:
        """New items of one listing since `state` ({"ts": newest created_utc, "ids": fullnames at it})."""
        path = f"r/{subreddit}/{STREAMS[stream]}"
        mark: Incremental[float] = Incremental.load(state)

        async def page(after: str | None) -> tuple[int, Listing]:
            try:
                _, response = await self._get(path, {"limit": PAGE_SIZE, **({"after": after} if after else {})})
            except _UnreadableAnswer as e:
                if e.response is None:  # the token answer: never kept (it may hold a token), not a listing
                    raise SourceError(str(e)) from None
                payload = RawPayload.of(self.name, POSTS.name, e.response)
                raw.append(cut_short(payload) if e.cut_short else payload)  # kept in the raw zone
                if e.cut_short:
                    raise UnreadablePayload(str(e), raw) from None
                try:  # praw could not read it (its JSON decoder is not the adapter's): the parser may
                    return len(raw) - 1, await off_loop(lambda _body: read_listing(payload), payload.body)
                except SourceError:
                    raise UnreadablePayload(str(e), raw) from None
            payload = RawPayload.of(self.name, POSTS.name, response)
            raw.append(payload)
            try:
                return len(raw) - 1, await off_loop(lambda _body: read_listing(payload), payload.body)
            except SourceError as e:  # the whole page: kept in the raw zone by the poller, reported
                raise UnreadablePayload(str(e), raw) from None

        pages = Pager(page, lambda fetched: fetched[1].after, limit=self.page_cap)
        async for index, listing in pages:
            reached_cursor = False
            skip: list[int] = []  # read, and not emitted: the page's request text says so, for replays
            for position, item in enumerate(listing.outcomes):
                if isinstance(item, str):
                    meta["skipped"] += 1
                    note_unparseable(meta, index, position, item)
                    continue
                if item is None:
                    meta["skipped"] += 1
                    continue
                if mark.is_older(item.ts):
                    reached_cursor = True  # newest first: everything further down was emitted before
                    skip.extend(range(position, len(listing.outcomes)))
                    break
                if not mark.is_new(item.ts, item.post_id) or item.post_id in mark.emitted_ids:
                    skip.append(position)
                    continue  # emitted before; or a repeat, as listings shift while paging
                mark.emit(item.ts, item.post_id)
            raw[index] = skipping(raw[index], skip)
            tables.append(listing_records(raw[index], listing)[POSTS.name])
            if reached_cursor:
                break
        if pages.truncated and mark.start_value is not None:
            log.warning("reddit: %s: page cap %d reached before the previous poll's newest item; "
                        "older new items are not fetched", path, self.page_cap)
            meta["truncated"].append(path)
        return mark.dump() if mark.moved else state

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """Every subreddit's new submissions and comments since `cursor`.

        Cursor: {"subreddits": {<sub>: {"submissions": {"ts": float, "ids": [...]}, "comments": {...}}}}:
        per listing, the newest created_utc emitted and the fullnames emitted at that second
        (several items can share one second).
        """
        previous = (cursor or {}).get("subreddits", {})
        tables: list[pa.Table] = []
        raw: list[RawPayload] = []
        meta: dict[str, Any] = {"skipped": 0, "truncated": []}
        states: dict[str, dict[str, Any]] = {}
        for subreddit in self.subreddits:
            sub_states = dict(previous.get(subreddit, {}))
            for stream in STREAMS:
                emitted, noted, first = len(tables), len(meta.get("unparseable", [])), len(raw)
                try:
                    state = await self._poll_stream(subreddit, stream, sub_states.get(stream), tables, raw, meta)
                except UnreadablePayload as e:
                    # Newest first: the unreadable page (and any after it) holds items between what was
                    # read and the listing's mark, so the listing keeps its mark and gives back what it
                    # read this poll (all of it comes again next poll); the other listings go on.
                    log.warning("reddit: r/%s %s: %s; its cursor stays, the other listings go on", subreddit,
                                stream, e)
                    del tables[emitted:]
                    raw[first:-1] = [withholding(p) for p in raw[first:-1]]
                    if "unparseable" in meta:
                        del meta["unparseable"][noted:]
                    note_unreadable(meta, len(raw) - 1, e)
                    continue
                if state is not None:
                    sub_states[stream] = state
            if sub_states:
                states[subreddit] = sub_states
        meta["pages"] = len(raw)
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        next_cursor = {"subreddits": {**previous, **states}} if (states or cursor) else None
        return FetchResult(raw=raw, records={POSTS.name: concat_records(tables, POSTS)}, next_cursor=next_cursor,
                           meta=meta)

    def _drop_client(self) -> None:
        if self._session is not None:
            self._session.close()
        self._reddit = self._session = None

    async def close(self) -> None:
        self._drop_client()

