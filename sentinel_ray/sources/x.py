"""X (Twitter): recent posts that mention the watched tickers, from the X API v2 recent search.

    GET {x_base_url}/2/tweets/search/recent
        ?query=(<cashtags and company names>) -is:retweet (lang:en OR lang:hi)
        &max_results=100&tweet.fields=created_at,author_id,public_metrics,lang,conversation_id,note_tweet
        &expansions=author_id&user.fields=username[&since_id=<newest id seen>][&next_token=<meta.next_token>]
    Authorization: Bearer <app-only token>

The answer is JSON: {"data": [tweet, ...], "includes": {"users": [...]}, "meta": {"newest_id",
"oldest_id", "result_count", "next_token"}}, newest first. A query may hold at most
`max_query_length` characters (512 on the Basic tier), so the watch list is split over
as many queries as needed, each with its own `since_id` cursor.

X reports its rate limit in `x-rate-limit-remaining` and `x-rate-limit-reset` (epoch
seconds) on every answer, and its 429s carry no Retry-After. The adapter's HttpClient is
told those header names (`RATE_LIMIT_HEADERS`): when an answer says the window is used
up it waits for the reset before the next request, a 429 waits for the reset before its
retry, and a reset further away than the retry policy allows gives up for now. A
Retry-After, when one is sent, still wins.

Records are read from the kept answers by `parse_payload`, what a replay from the raw zone
calls too (see `lineage`); a page's request text notes (`#skip=`) the posts an earlier query
of the same poll had already emitted (a post can match two of the split queries).
"""
from __future__ import annotations

import datetime as dt
import html
import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa

from sentinel_ray.config import XSettings
from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source, require_secrets
from sentinel_ray.sources.http import BodyTooLarge, HttpClient, HttpResponse, HttpStatusError
from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, positioned, read_whole,
                                          skipping, withholding)
from sentinel_ray.sources.paging import Pager
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    as_of,
    count,
    in_range,
    loads_json,
    note_unparseable,
    note_unreadable,
    off_loop,
    optional_text,
    record_error,
    unreadable_poll,
)
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.tickers import company_names

log = logging.getLogger(__name__)

SEARCH_PATH = "/2/tweets/search/recent"
PUBLIC_URL = "https://x.com"
MAX_QUERY_LENGTH = 512  # Basic tier; Pro allows 1024
QUERY_SUFFIX = " -is:retweet (lang:en OR lang:hi)"  # OR binds looser than AND in X queries: keep the parentheses
TWEET_FIELDS = "created_at,author_id,public_metrics,lang,conversation_id,note_tweet"
TWITTER_EPOCH_MS = 1_288_834_974_657  # snowflake ids carry their creation time since this instant
# What the shared HttpClient reads to wait for X's rate-limit window (its 429s carry no Retry-After).
RATE_LIMIT_HEADERS = {"reset_header": "x-rate-limit-reset", "remaining_header": "x-rate-limit-remaining"}
# App-only recent search allows 450 requests per 15 minutes: 0.5/s stays under it.
RATE_PER_S, BURST = 0.5, 3
re_username = re.compile(r"^[A-Za-z0-9_]{1,50}$")


def _search_terms(tickers: Sequence[str]) -> list[list[str]]:
    """Per ticker: its cashtag, and its company name when that differs from the symbol."""
    names = company_names()
    groups: list[list[str]] = []
    for ticker in tickers:
        terms = [f"${ticker}"]
        name = names.get(ticker, "")
        if name and name.upper() != ticker.upper():
            terms.append(f'"{name}"' if " " in name else name)
        groups.append(terms)
    return groups


def build_queries(tickers: Sequence[str], max_length: int = MAX_QUERY_LENGTH) -> list[str]:
    """Search queries covering every ticker, each within `max_length` characters.

    A ticker's cashtag and name stay in one query, so each ticker is searched as a whole.
    """
    queries: list[str] = []
    group: list[str] = []

    def render(terms: list[str]) -> str:
        return f"({' OR '.join(terms)}){QUERY_SUFFIX}"

    for terms in _search_terms(tickers):
        if len(render(terms)) > max_length:
            raise SourceError(f"x: search terms {terms} alone exceed the {max_length}-character query limit")
        if group and len(render([*group, *terms])) > max_length:
            queries.append(render(group))
            group = []
        group.extend(terms)
    if group:
        queries.append(render(group))
    return queries


def _snowflake_time(tweet_id: str) -> dt.datetime:
    """The creation time a snowflake id carries; ValueError when that is not a real time."""
    ms = (int(tweet_id) >> 22) + TWITTER_EPOCH_MS
    if not 0 < ms < 2 ** 53:
        raise ValueError(f"id {tweet_id[:30]} carries no real time")
    return in_range(dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc))


@dataclass
class _Page:
    tweets: list[dict[str, Any]]
    users: dict[str, str]  # author_id -> username
    newest_id: str | None
    next_token: str | None


def _parse_page(body: bytes, where: str) -> _Page:
    try:
        payload = loads_json(body, f"x: {where}")
    except PayloadError as e:
        raise SourceError(f"x: {where}: the response is not JSON: {body[:200]!r} ({str(e)[:200]})") from None
    if not isinstance(payload, dict):
        raise SourceError(f"x: {where}: expected a JSON object, got {type(payload).__name__}")
    data = payload.get("data", [])
    if isinstance(data, dict):  # single-post lookups answer an object; search answers a list
        data = [data]
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    if not isinstance(data, list):
        raise SourceError(f"x: {where}: 'data' is {type(data).__name__}, expected a list of posts")
    if "data" not in payload and "meta" not in payload:
        problems = payload.get("errors") or payload
        raise SourceError(f"x: {where}: neither data nor meta in the answer: {str(problems)[:300]}")
    users = {}
    includes = payload.get("includes") if isinstance(payload.get("includes"), dict) else {}
    listed = includes.get("users") if isinstance(includes.get("users"), list) else []
    for user in listed:
        if isinstance(user, dict) and isinstance(user.get("id"), str) and isinstance(user.get("username"), str):
            users[user["id"]] = user["username"]
    newest, token = meta.get("newest_id"), meta.get("next_token")
    return _Page(data, users, newest if isinstance(newest, str) else None, token if isinstance(token, str) else None)


@dataclass
class SearchPage:
    """One search answer as read: per post, in the answer's order, its id as sent (None when not a
    string) and its record (None: malformed; a string: why it could not be read)."""

    page: _Page
    ids: list[str | None]
    outcomes: list[PostItem | str | None]


def read_search_page(payload: RawPayload) -> SearchPage:
    """A search answer's posts; SourceError when it is not a search answer."""
    page = _parse_page(payload.body, SEARCH_PATH)
    ids: list[str | None] = []
    outcomes: list[PostItem | str | None] = []
    with as_of(payload.received_at):
        for tweet in page.tweets:
            tweet_id = tweet.get("id") if isinstance(tweet, dict) else None
            ids.append(tweet_id if isinstance(tweet_id, str) else None)
            try:
                outcomes.append(_post(tweet, page.users, payload.received_at))
            except RECORD_ERRORS as e:
                outcomes.append(record_error(e))
    return SearchPage(page, ids, outcomes)


def page_records(payload: RawPayload, read: SearchPage) -> ParsedPayload:
    """The posts of a search answer read by `read_search_page`, as its poll emitted them."""
    readable = [(position, post) for position, post in enumerate(read.outcomes) if isinstance(post, PostItem)]
    table = posts_table([post for _, post in readable], platform=XSource.platform, source=XSource.name)
    return finish(payload, {POSTS.name: positioned(table, [position for position, _ in readable])},
                  [(position, error) for position, error in enumerate(read.outcomes) if isinstance(error, str)])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The posts of one kept search answer (see `lineage`)."""
    return page_records(payload, read_whole(payload, read_search_page))


def _post(tweet: Any, users: dict[str, str], received_at: dt.datetime) -> PostItem | None:
    """One post of a search answer; None when it is malformed."""
    if not isinstance(tweet, dict):
        return None
    tweet_id, text = tweet.get("id"), tweet.get("text")
    note = tweet.get("note_tweet")
    if isinstance(note, dict) and isinstance(note.get("text"), str):
        text = note["text"]  # `text` of a long post is cut at 280 characters; the note holds all of it
    if not isinstance(tweet_id, str) or not tweet_id.isascii() or not tweet_id.isdigit() or not isinstance(text, str):
        return None
    ts = _created_at(tweet.get("created_at")) or _snowflake_time(tweet_id)
    author_id = optional_text(tweet.get("author_id"))
    username = optional_text(users.get(author_id)) if author_id else None
    if username is not None and not re_username.match(username):
        username = None  # a link is built from it: only what X allows in a handle
    url = f"{PUBLIC_URL}/{username}/status/{tweet_id}" if username else f"{PUBLIC_URL}/i/web/status/{tweet_id}"
    # X escapes &, < and > in post text
    return PostItem(tweet_id, username or author_id, optional_text(html.unescape(text)) or "", ts, url,
                    _engagement(tweet.get("public_metrics")), received_at)


def _created_at(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = dt.datetime.fromisoformat(value)
        return in_range(ts if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc))
    except (ValueError, OverflowError):
        return None  # the id's own time stands in


def _engagement(metrics: Any) -> int | None:
    if not isinstance(metrics, dict):
        return None
    counts = [metrics.get(k) for k in ("like_count", "reply_count", "retweet_count", "quote_count")]
    counts = [c for c in (count(c) for c in counts) if c is not None]
    return count(sum(counts)) if counts else None


class XSource(Source):
    """Recent X posts mentioning the watched tickers, incrementally by since_id per query."""

    name = "x"
    platform = "x"
    datasets = (POSTS.name,)
    settings_class = XSettings

    def __init__(self, settings: XSettings, *, max_query_length: int = MAX_QUERY_LENGTH,
                 http: HttpClient | None = None) -> None:
        self.bearer_token = require_secrets(self.name, settings)["bearer_token"]
        self.base_url = settings.base_url.rstrip("/")
        self.queries = build_queries(settings.tickers, max_query_length)
        self.page_cap = settings.page_cap
        self.http = http or HttpClient.from_settings(self.name, settings, rate_per_s=RATE_PER_S, burst=BURST,
                                                     **RATE_LIMIT_HEADERS)

    async def _search(self, params: dict[str, Any]) -> HttpResponse:
        return await self.http.get(f"{self.base_url}{SEARCH_PATH}", params=params,
                                   headers={"Authorization": f"Bearer {self.bearer_token}"})

    async def _poll_query(self, query: str, since_id: str | None, tables: list[pa.Table], seen: list[str],
                          raw: list[RawPayload], meta: dict[str, Any]) -> str | None:
        """Posts matching `query` newer than `since_id`; returns the query's next since_id. `seen`: the
        ids of the posts this poll has emitted so far, in order."""
        # X compares ids as numbers; since_id is exclusive, so the mark needs no boundary ids
        mark: Incremental[int] = Incremental(int(since_id) if since_id else None)
        emitted = set(seen)

        async def page(next_token: str | None) -> tuple[int, SearchPage]:
            params = {"query": query, "max_results": 100, "tweet.fields": TWEET_FIELDS,
                      "expansions": "author_id", "user.fields": "username"}
            if since_id:
                params["since_id"] = since_id
            if next_token:
                params["next_token"] = next_token
            try:
                response = await self._search(params)
            except BodyTooLarge as e:  # its head: kept in the raw zone by the poller, reported
                raw.append(cut_short(RawPayload.of(self.name, POSTS.name, e.response)))
                raise UnreadablePayload(str(e), raw) from None
            payload = RawPayload.of(self.name, POSTS.name, response)
            raw.append(payload)
            try:
                # a page may be megabytes of JSON: parsed off the event loop, which other pollers share
                return len(raw) - 1, await off_loop(lambda _body: read_search_page(payload), payload.body)
            except SourceError as e:  # the whole page: kept in the raw zone by the poller, reported
                raise UnreadablePayload(str(e), raw) from None

        pages = Pager(page, lambda fetched: fetched[1].page.next_token, limit=self.page_cap)
        async for index, listing in pages:
            skip: list[int] = []  # read, and not emitted: the page's request text says so, for replays
            for position, (tweet_id, post) in enumerate(zip(listing.ids, listing.outcomes)):
                if tweet_id is not None and tweet_id in emitted:  # the same post can match two split queries
                    skip.append(position)
                    continue
                if isinstance(post, str):
                    note_unparseable(meta, index, position, post)
                    post = None
                if post is None:
                    meta["skipped"] += 1
                    continue
                seen.append(post.post_id)
                emitted.add(post.post_id)
                mark.emit(int(post.post_id))
            raw[index] = skipping(raw[index], skip)
            tables.append(page_records(raw[index], listing)[POSTS.name])
            newest_id = listing.page.newest_id
            if pages.pages == 1 and newest_id and newest_id.isascii() and newest_id.isdigit() \
                    and int(newest_id) < 2 ** 63:
                mark.emit(int(newest_id))
        if pages.truncated and since_id is not None:
            log.warning("x: page cap %d reached for query %r before since_id; older new posts are not fetched",
                        self.page_cap, query)
            meta["truncated"].append(query)
        return str(mark.last_value) if mark.moved else since_id

    async def _poll_query_or_restart(self, query: str, since_id: str | None, tables: list[pa.Table], seen: list[str],
                                     raw: list[RawPayload], meta: dict[str, Any]) -> str | None:
        try:
            return await self._poll_query(query, since_id, tables, seen, raw, meta)
        except HttpStatusError as e:
            # Recent search covers 7 days and answers 400 to an older since_id (after a long outage):
            # everything it still holds is newer than that cursor, so start over from the newest.
            if e.status != 400 or since_id is None or "since_id" not in str(e):
                raise
            log.warning("x: since_id %s is older than recent search reaches; reading query %r afresh", since_id, query)
            meta["expired_since_id"].append(query)
            return await self._poll_query(query, None, tables, seen, raw, meta)

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """New posts of every query since `cursor` = {"since_id": {<query>: <newest post id seen>}}."""
        previous: dict[str, str] = dict((cursor or {}).get("since_id", {}))
        tables: list[pa.Table] = []
        raw: list[RawPayload] = []
        seen: list[str] = []
        meta: dict[str, Any] = {"skipped": 0, "truncated": [], "expired_since_id": [], "queries": len(self.queries)}
        since = dict(previous)
        for query in self.queries:
            emitted, noted, first, posted = len(tables), len(meta.get("unparseable", [])), len(raw), len(seen)
            try:
                newest = await self._poll_query_or_restart(query, previous.get(query), tables, seen, raw, meta)
            except UnreadablePayload as e:
                # Newest first: the unreadable page (and any after it) holds posts between what was
                # read and the query's since_id, so the query keeps its since_id and gives back what
                # it read this poll (all of it comes again next poll); the other queries go on.
                log.warning("x: query %r: %s; its since_id stays, the other queries go on", query, e)
                del seen[posted:], tables[emitted:]
                raw[first:-1] = [withholding(p) for p in raw[first:-1]]
                if "unparseable" in meta:
                    del meta["unparseable"][noted:]
                note_unreadable(meta, len(raw) - 1, e)
                continue
            if newest:
                since[query] = newest
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        return FetchResult(raw=raw, records={POSTS.name: concat_records(tables, POSTS)},
                           next_cursor={"since_id": since} if since else cursor, meta=meta)

    async def close(self) -> None:
        await self.http.close()

