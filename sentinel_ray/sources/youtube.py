"""YouTube: videos about the watched tickers and their viewers' comments (YouTube Data API v3).

The service is Google's YouTube Data API v3 (`settings.youtube_base_url`), JSON over
HTTPS, authenticated by an API key sent as the `key` query parameter. Per poll:

1. `GET /search?part=snippet&type=video&order=date&q=<terms>&publishedAfter=<t>&maxResults=50`
   finds videos published since the cursor whose title or description names a watched
   ticker or its company (`q` ORs terms with `|`), following `nextPageToken` up to
   `page_cap` pages. Each new video becomes a post (`video:<videoId>`, title + description).
2. `GET /commentThreads?part=snippet&videoId=<id>&order=time&maxResults=100&textFormat=plainText`
   for every video found now and every video remembered from earlier polls (the newest
   `max_tracked_videos`, kept in the cursor): top-level comments newest first, paged
   until comments already seen show up. Each comment becomes a post.

Quota matters more than rate here: a search costs 100 units and a comments page 1, out
of 10,000 a day by default. The reason of a refusal is read from Google's error body
(`{"error": {"errors": [{"reason": ...}]}}`, kept whole on the HTTP client's errors): a 403
`quotaExceeded` fails the poll with an AuthError that says "API quota exhausted"; a 403
`commentsDisabled` (or a 404 for a deleted video) closes that video in the cursor, so no
later poll spends quota asking for its comments again.

The API key never leaves the query string of the request itself: errors and logs drop
query strings (http.py) and the raw payloads record the request without it.

Records are read from the kept answers by `parse_payload`, what a replay from the raw zone
calls too (see `lineage`): an answer's request text (endpoint and query, the key left out)
says which list it is, and notes (`#skip=`) the items an earlier poll or page had emitted.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from sentinel_ray.config import YouTubeSettings
from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source, require_secrets
from sentinel_ray.sources.http import AuthError, BodyTooLarge, HttpClient, HttpResponse, HttpStatusError
from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, positioned, read_whole,
                                          request_url, skipping, withholding)
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
    unreadable_poll,
)
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.tickers import company_names, ticker_index

log = logging.getLogger(__name__)

PLATFORM = "youtube"
WATCH_URL = "https://www.youtube.com/watch?v="
SEARCH_PAGE_SIZE = 50  # the API's maximum for search.list
COMMENTS_PAGE_SIZE = 100  # the API's maximum for commentThreads.list
MAX_QUERY_CHARS = 400  # long OR-queries lose recall on YouTube; split them instead
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded", "rateLimitExceeded", "userRateLimitExceeded"})
# 403/404 reasons that concern one video only: skip it, keep polling the others.
VIDEO_CLOSED_REASONS = frozenset({"commentsDisabled", "forbidden", "videoNotFound"})
RATE_PER_S, BURST = 5.0, 5  # the daily quota, not the rate, is what binds
# Unreadable items remembered in the cursor (fingerprints): a video's newest comments and the
# search's overlap are read again every poll, and an item noted once must not be quarantined again.
MAX_NOTED = 200


# --- parsing (pure: bytes in, posts out) ------------------------------------------------


@dataclass(frozen=True)
class Video:
    video_id: str
    published: dt.datetime
    post: PostItem
    position: int = 0  # in the response's `items`


@dataclass(frozen=True)
class Comment:
    comment_id: str
    published: dt.datetime
    post: PostItem
    position: int = 0  # in the response's `items`


@dataclass(frozen=True)
class Unparseable:
    """An item of a list response that could not be read: where it is, what it is, and why."""

    position: int  # in the response's `items`
    fingerprint: str  # of its JSON: the same item read again by a later poll is recognised
    error: str


@dataclass(frozen=True)
class Page:
    """One parsed list response: its items, the token of the next page, items skipped as malformed."""

    items: list[Any]
    next_page_token: str | None
    skipped: int
    unparseable: list[Unparseable] = dataclasses.field(default_factory=list)


def parse_search(body: bytes, received_at: dt.datetime) -> Page:
    """A search.list response body -> its videos (items that are not videos are ignored)."""
    doc = _load(body, "search")
    videos, unparseable = [], []
    for position, item in enumerate(_items(doc, "search")):
        if isinstance(item, dict) and isinstance(item.get("id"), dict) and \
                item["id"].get("kind", "youtube#video") != "youtube#video":
            continue
        try:
            videos.append(dataclasses.replace(_video(item, received_at), position=position))
        except RECORD_ERRORS as e:
            unparseable.append(_unparseable(position, item, e))
    return Page(videos, _token(doc), len(unparseable), unparseable)


def parse_comment_threads(body: bytes, received_at: dt.datetime) -> Page:
    """A commentThreads.list response body -> its top-level comments."""
    doc = _load(body, "commentThreads")
    comments, unparseable = [], []
    for position, item in enumerate(_items(doc, "commentThreads")):
        try:
            comments.append(dataclasses.replace(_comment(item, received_at), position=position))
        except RECORD_ERRORS as e:
            unparseable.append(_unparseable(position, item, e))
    return Page(comments, _token(doc), len(unparseable), unparseable)


ENDPOINTS = {"search": parse_search, "commentThreads": parse_comment_threads}


def read_page(payload: RawPayload) -> Page:
    """A kept list response, read as the endpoint its request names (search or commentThreads)."""
    endpoint = request_url(payload.request).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    parse = ENDPOINTS.get(endpoint)
    if parse is None:
        raise SourceError(f"youtube: {request_url(payload.request)[:200]} is no list the adapter reads")
    with as_of(payload.received_at):
        return parse(payload.body, payload.received_at)


def page_records(payload: RawPayload, page: Page) -> ParsedPayload:
    """The posts (videos or comments) of a response read by `read_page`, as its poll emitted them."""
    table = posts_table([item.post for item in page.items], platform=PLATFORM, source=YouTubeSource.name)
    return finish(payload, {POSTS.name: positioned(table, [item.position for item in page.items])},
                  [(u.position, u.error) for u in page.unparseable])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The posts of one kept search or commentThreads response (see `lineage`)."""
    return page_records(payload, read_whole(payload, read_page))


def _unparseable(position: int, item: Any, error: BaseException) -> Unparseable:
    # loads_json has bounded the depth and replaced lone surrogates: the item serialises
    text = json.dumps(item, sort_keys=True, ensure_ascii=True, default=str)
    return Unparseable(position, hashlib.sha1(text.encode()).hexdigest()[:20],
                       f"{type(error).__name__}: {str(error)[:200]}")


def _load(body: bytes, endpoint: str) -> dict[str, Any]:
    try:
        doc = loads_json(body, f"youtube: {endpoint}")
    except PayloadError as e:
        raise SourceError(f"youtube: {endpoint} answered something that is not JSON ({e}): "
                          f"{body[:120]!r}") from None
    if not isinstance(doc, dict):
        raise SourceError(f"youtube: {endpoint} answered JSON that is not an object: {body[:120]!r}")
    return doc


def _items(doc: dict[str, Any], endpoint: str) -> list[Any]:
    items = doc.get("items", [])
    if not isinstance(items, list):
        raise SourceError(f"youtube: {endpoint} response has no list of items (keys: {sorted(doc)[:8]})")
    return items


def _token(doc: dict[str, Any]) -> str | None:
    token = doc.get("nextPageToken")
    return token if isinstance(token, str) and token else None


def _video(item: dict[str, Any], received_at: dt.datetime) -> Video:
    video_id = item["id"]["videoId"]
    snippet = item["snippet"]
    if not isinstance(video_id, str) or not _ID.match(video_id):
        raise ValueError("no videoId")
    published = parse_time(snippet["publishedAt"])
    # search.list returns titles and descriptions HTML-escaped ("&#39;", "&amp;")
    title = optional_text(html.unescape(snippet.get("title") or "")) or ""
    description = optional_text(html.unescape(snippet.get("description") or "")) or ""
    text = f"{title}\n{description}" if description else title
    if not text:
        raise ValueError("video without title or description")
    channel = optional_text(html.unescape(snippet.get("channelTitle") or ""))
    post = PostItem(f"video:{video_id}", channel, text, published, WATCH_URL + video_id, None, received_at)
    return Video(video_id, published, post)


def _comment(item: dict[str, Any], received_at: dt.datetime) -> Comment:
    thread = item["snippet"]
    top = thread["topLevelComment"]
    snippet = top["snippet"]
    comment_id = top.get("id") or item["id"]
    video_id = snippet.get("videoId") or thread["videoId"]
    if not isinstance(comment_id, str) or not _ID.match(comment_id) or not isinstance(video_id, str) \
            or not _ID.match(video_id):
        raise ValueError("no comment or video id")
    # textOriginal is what the author typed; textDisplay is HTML when textFormat=html
    text = snippet.get("textOriginal") or html_to_text(snippet.get("textDisplay") or "")
    text = optional_text(text)
    if not text:
        raise ValueError("comment without text")
    published = parse_time(snippet["publishedAt"])
    likes, replies = snippet.get("likeCount") or 0, thread.get("totalReplyCount") or 0
    if count(likes) is None or count(replies) is None:
        raise ValueError(f"unreadable counts: {str(likes)[:20]!r}, {str(replies)[:20]!r}")
    engagement = count(count(likes) + count(replies))  # type: ignore[operator]
    url = f"{WATCH_URL}{video_id}&lc={comment_id}"
    post = PostItem(comment_id, optional_text(snippet.get("authorDisplayName")), text, published, url, engagement,
                    received_at)
    return Comment(comment_id, published, post)


_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")  # video and comment ids: they go into links and queries
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")


def html_to_text(value: str) -> str:
    """textDisplay in HTML form ('<br>', '<a href=..>', entities) -> plain text."""
    return html.unescape(_TAG.sub("", _BR.sub("\n", value))).strip()


def parse_time(value: str) -> dt.datetime:
    """RFC 3339 as the API writes it ("2023-12-08T15:51:10Z") -> aware UTC datetime."""
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return in_range(when.astimezone(dt.timezone.utc))


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- search terms -------------------------------------------------------------------------


def search_terms(tickers: Iterable[str]) -> list[str]:
    """Each ticker's symbol and company name as search terms ('"HDFC Bank"', 'HDFCBANK').

    Company names come from the reference symbol table (people title videos "Reliance
    Industries share price", rarely "RELIANCE"). A symbol that is an everyday word
    (IDEA) is searched only as '"IDEA share"', or the search drowns in unrelated videos.
    """
    names = company_names()
    aliases = ticker_index().aliases
    terms: list[str] = []
    for ticker in tickers:
        symbol = ticker.strip().upper()
        if not symbol:
            continue
        name = names.get(symbol, "")
        if name and name.upper() != symbol:
            terms.append(_quoted(name))
        alias = aliases.get(symbol.lower())
        terms.append(f'"{symbol} share"' if alias is not None and alias.rule == "context" else _quoted(symbol))
    return list(dict.fromkeys(terms))


def _quoted(term: str) -> str:
    return f'"{term}"' if re.search(r"[\s&|-]", term) else term


def search_queries(terms: Sequence[str], max_chars: int = MAX_QUERY_CHARS) -> list[str]:
    """Terms OR-ed together ('a|b|c'), split into queries of at most `max_chars`."""
    queries: list[str] = []
    current = ""
    for term in terms:
        candidate = f"{current}|{term}" if current else term
        if current and len(candidate) > max_chars:
            queries.append(current)
            candidate = term
        current = candidate
    if current:
        queries.append(current)
    return queries


# --- cursor -------------------------------------------------------------------------------


@dataclass
class TrackedVideo:
    """A video whose new comments each poll collects; `newest` and `ids_at_newest` mark what was emitted."""

    video_id: str
    published: str
    newest: str | None = None
    ids_at_newest: list[str] = dataclasses.field(default_factory=list)
    closed: str | None = None  # why its comments cannot be read (commentsDisabled, ...): not polled again

    @classmethod
    def load(cls, value: Mapping[str, Any]) -> "TrackedVideo":
        return cls(str(value["id"]), str(value["published"]), value.get("newest"),
                   list(value.get("ids_at_newest") or []), value.get("closed"))

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.video_id, "published": self.published, "newest": self.newest,
                               "ids_at_newest": self.ids_at_newest}
        if self.closed:
            out["closed"] = self.closed
        return out

    def mark(self) -> Incremental[dt.datetime]:
        """Where its comments were left: the newest publish time emitted, and the comment ids at it."""
        return Incremental(parse_time(self.newest) if self.newest else None, self.ids_at_newest)

    def advance(self, mark: Incremental[dt.datetime]) -> None:
        """Keep the mark after this poll's comments (unchanged when none were new)."""
        if mark.moved:
            self.newest, self.ids_at_newest = iso(mark.last_value), mark.last_ids  # type: ignore[arg-type]


@dataclass
class YouTubeCursor:
    """What the next poll needs: where search resumes and which videos' comments to follow.

    `published_after`: the newest video publish time seen. Search asks from a little
    before it (`overlap`), because videos reach the search index minutes after they are
    published; `recent` (video id -> publish time, within that overlap) keeps the
    overlap from re-emitting videos.
    """

    published_after: str | None = None
    recent: dict[str, str] = dataclasses.field(default_factory=dict)
    videos: list[TrackedVideo] = dataclasses.field(default_factory=list)
    noted: list[str] = dataclasses.field(default_factory=list)  # fingerprints of items noted unparseable

    @classmethod
    def load(cls, cursor: Mapping[str, Any] | None) -> "YouTubeCursor":
        if not cursor:
            return cls()
        try:
            return cls(cursor.get("published_after"), dict(cursor.get("recent") or {}),
                       [TrackedVideo.load(v) for v in cursor.get("videos") or []],
                       [str(f) for f in cursor.get("noted") or []])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SourceError(f"youtube: unreadable cursor ({type(e).__name__}: {e})") from None

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"published_after": self.published_after, "recent": dict(self.recent),
                               "videos": [v.dump() for v in self.videos]}
        if self.noted:
            out["noted"] = list(self.noted)
        return out


# --- the adapter --------------------------------------------------------------------------


class YouTubeSource(Source):
    """Videos and comments that name watched tickers, from the YouTube Data API v3."""

    name = "youtube"
    datasets = (POSTS.name,)
    settings_class = YouTubeSettings

    def __init__(self, settings: YouTubeSettings, *, terms: Sequence[str] | None = None,
                 http: HttpClient | None = None, max_tracked_videos: int = 50,
                 lookback: dt.timedelta = dt.timedelta(days=1), overlap: dt.timedelta = dt.timedelta(hours=1),
                 clock: Any = None) -> None:
        """`terms`: what to search for (default: `search_terms` of the settings' tickers)."""
        self._key = require_secrets(self.name, settings)["api_key"]
        self.queries = search_queries(list(search_terms(settings.tickers) if terms is None else terms))
        if not self.queries:
            raise SourceError("youtube: no search terms (set watch_tickers)")
        self.base_url = settings.base_url.rstrip("/")
        self.page_cap = settings.page_cap
        self.max_tracked_videos = max_tracked_videos
        self.lookback, self.overlap = lookback, overlap
        self.http = http or HttpClient.from_settings(self.name, settings, rate_per_s=RATE_PER_S, burst=BURST,
                                                     headers={"Accept": "application/json"})
        self._now = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    async def close(self) -> None:
        await self.http.close()

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """New videos and new comments since `cursor` (see YouTubeCursor; None: the last `lookback`)."""
        state = YouTubeCursor.load(cursor)
        raw: list[RawPayload] = []
        tables: list[pa.Table] = []
        meta: dict[str, Any] = {"skipped": 0, "videos": 0, "comments": 0, "closed_videos": [],
                                "truncated": []}
        noted = list(state.noted)

        known = set(state.recent) | {v.video_id for v in state.videos}
        found, searched = await self._search(state, known, tables, raw, meta, noted)
        meta["videos"] = sum(t.num_rows for t in tables)
        tracked = self._track(state, found)

        for video in tracked:
            if not video.closed:
                await self._new_comments(video, tables, raw, meta, noted)

        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        meta["comments"] = sum(t.num_rows for t in tables) - meta["videos"]
        next_state = self._next_state(state, found, tracked, searched)
        next_state.noted = noted[:MAX_NOTED]
        unchanged = next_state.dump() == YouTubeCursor.load(cursor).dump()
        return FetchResult(raw=raw, records={POSTS.name: concat_records(tables, POSTS)},
                           next_cursor=cursor if unchanged else next_state.dump(), meta=meta)

    # -- step 1: search -------------------------------------------------------------------

    async def _search(self, state: YouTubeCursor, known: set[str], tables: list[pa.Table], raw: list[RawPayload],
                      meta: dict[str, Any], noted: list[str]) -> tuple[dict[str, Video], bool]:
        """Videos found by every query (those not `known` and not found before become posts in
        `tables`), and whether every search page could be read."""
        if state.published_after:
            since = parse_time(state.published_after) - self.overlap
        else:
            since = self._now() - self.lookback
        found: dict[str, Video] = {}
        complete = True
        for query in self.queries:
            params = {"part": "snippet", "type": "video", "order": "date", "q": query,
                      # the API takes whole seconds; flooring only widens the window (deduplicated)
                      "publishedAfter": since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "maxResults": SEARCH_PAGE_SIZE}
            unparseable: list[tuple[int, Unparseable]] = []
            pages = self._pages("search", params, raw, meta, unparseable)
            try:
                async for index, page in pages:
                    skip = []
                    for video in page.items:
                        if video.video_id in found or video.video_id in known:
                            skip.append(video.position)  # found by an earlier page or query, or emitted before
                        found.setdefault(video.video_id, video)
                    raw[index] = skipping(raw[index], skip)
                    tables.append(page_records(raw[index], page)[POSTS.name])
            except UnreadablePayload as e:
                # What the readable pages found stands (remembered in `recent`, so never emitted
                # twice), but the search resumes from where it was (see _next_state); the other
                # queries go on.
                log.warning("youtube: search %r: %s; the search cursor stays, the other queries go on", query, e)
                note_unreadable(meta, len(raw) - 1, e)
                complete = False
                continue
            _note_new(unparseable, meta, noted)
            if pages.truncated:
                meta["truncated"].append(f"search:{query}")
        return found, complete

    # -- step 2: comments -----------------------------------------------------------------

    async def _new_comments(self, video: TrackedVideo, tables: list[pa.Table], raw: list[RawPayload],
                            meta: dict[str, Any], noted: list[str]) -> None:
        """The video's new comments into `tables` (none when its pages could not all be read)."""
        params = {"part": "snippet", "videoId": video.video_id, "order": "time",
                  "maxResults": COMMENTS_PAGE_SIZE, "textFormat": "plainText"}
        mark = video.mark()
        emitted: dict[str, Comment] = {}
        read: list[tuple[int, Page, list[int]]] = []  # (payload index, page, positions skipped)
        unparseable: list[tuple[int, Unparseable]] = []
        first = len(raw)
        pages = self._pages("commentThreads", params, raw, meta, unparseable)
        try:
            async for index, page in pages:
                fresh = [c for c in page.items if mark.is_new(c.published, c.comment_id)]
                # a comment may come twice when pages shift while new comments arrive: the first is kept
                taken = set()
                for comment in fresh:
                    if comment.comment_id not in emitted:
                        emitted[comment.comment_id] = comment
                        taken.add(comment.position)
                skip = [c.position for c in page.items if c.position not in taken]
                read.append((index, page, skip))
                if len(fresh) < len(page.items):
                    break  # order=time: the rest is older than what earlier polls emitted
        except _VideoClosed as e:
            # one video's comments being off (or the video gone) must not fail the poll
            log.info("youtube: comments of video %s cannot be read (%s); not asking again", video.video_id, e.reason)
            meta["skipped"] += 1
            meta["closed_videos"].append({"video_id": video.video_id, "reason": e.reason})
            video.closed = e.reason
            raw[first:] = [withholding(p) for p in raw[first:]]
            return
        except UnreadablePayload as e:
            # Newest first: comments between the unreadable page and the video's mark may be on
            # it, so the mark stays and what this poll read of the video comes again next poll
            # (its unreadable items are noted then); the other videos go on.
            log.warning("youtube: comments of video %s: %s; its mark stays", video.video_id, e)
            note_unreadable(meta, len(raw) - 1, e)
            raw[first:-1] = [withholding(p) for p in raw[first:-1]]
            return
        _note_new(unparseable, meta, noted)
        if pages.truncated:
            meta["truncated"].append(f"commentThreads:{video.video_id}")
        for index, page, skip in read:
            raw[index] = skipping(raw[index], skip)
            tables.append(page_records(raw[index], page)[POSTS.name])
        for comment in emitted.values():
            mark.emit(comment.published, comment.comment_id)
        video.advance(mark)

    def _track(self, state: YouTubeCursor, found: Mapping[str, Video]) -> list[TrackedVideo]:
        """Videos whose comments this poll reads: every video found now plus the remembered ones."""
        tracked = {v.video_id: dataclasses.replace(v, ids_at_newest=list(v.ids_at_newest)) for v in state.videos}
        for video in found.values():
            # a video in `recent` but no longer tracked was dropped for newer ones; taking it back
            # with no comment mark would emit its comments a second time
            if video.video_id not in state.recent:
                tracked.setdefault(video.video_id, TrackedVideo(video.video_id, iso(video.published)))
        return sorted(tracked.values(), key=lambda v: (parse_time(v.published), v.video_id), reverse=True)

    def _next_state(self, state: YouTubeCursor, found: Mapping[str, Video],
                    tracked: Sequence[TrackedVideo], searched: bool = True) -> YouTubeCursor:
        published = {**state.recent, **{v.video_id: iso(v.published) for v in found.values()}}
        if not searched:
            # A search page could not be read: videos between it and the search cursor may be
            # missing, so the search resumes where it was; every video found meanwhile stays in
            # `recent` (bounded by what the unchanged window lists), so none is emitted twice.
            return YouTubeCursor(state.published_after, published, list(tracked[: self.max_tracked_videos]))
        newest = max([parse_time(t) for t in published.values()]
                     + ([parse_time(state.published_after)] if state.published_after else []), default=None)
        if newest is None:
            return YouTubeCursor(None, {}, list(tracked[: self.max_tracked_videos]))
        floor = newest - self.overlap
        recent = {vid: t for vid, t in published.items() if parse_time(t) >= floor}
        return YouTubeCursor(iso(newest), recent, list(tracked[: self.max_tracked_videos]))

    # -- HTTP -------------------------------------------------------------------------------

    def _pages(self, endpoint: str, params: dict[str, Any], raw: list[RawPayload], meta: dict[str, Any],
               unparseable: list[tuple[int, Unparseable]]) -> Pager[str, tuple[int, Page]]:
        """Parsed pages of one list call (with their payload's index in `raw`), following
        nextPageToken up to `page_cap` pages. Items that cannot be read go to `unparseable` (with
        their payload's index), for the caller to note once the whole list was read; a page that
        cannot be read at all is an UnreadablePayload (the page appended to `raw`)."""

        async def page(token: str | None) -> tuple[int, Page]:
            page_params = {**params, **({"pageToken": token} if token else {})}
            try:
                response = await self._get(endpoint, page_params)
            except BodyTooLarge as e:  # its head: kept in the raw zone by the poller, reported
                raw.append(cut_short(self._raw(endpoint, page_params, e.response)))
                raise UnreadablePayload(str(e), raw) from None
            payload = self._raw(endpoint, page_params, response)
            raw.append(payload)
            try:
                # up to 8 MiB of JSON: parsed off the event loop, which other pollers share
                parsed = await off_loop(lambda _body: read_page(payload), payload.body)
            except SourceError as e:  # the whole page: kept in the raw zone by the poller, reported
                raise UnreadablePayload(str(e), raw) from None
            meta["skipped"] += parsed.skipped
            unparseable.extend((len(raw) - 1, item) for item in parsed.unparseable)
            return len(raw) - 1, parsed

        return Pager(page, lambda fetched: fetched[1].next_page_token, limit=self.page_cap, stop_on_repeat=True)

    async def _get(self, endpoint: str, params: Mapping[str, Any]) -> HttpResponse:
        url = f"{self.base_url}/{endpoint}"
        try:
            return await self.http.get(url, params={**params, "key": self._key})
        except (AuthError, HttpStatusError) as e:
            raise _explain(e, endpoint) from None

    def _raw(self, endpoint: str, params: Mapping[str, Any], response: HttpResponse) -> RawPayload:
        # RawPayload.of drops the whole query; keep what was asked (never the key) for audit and replay
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k != "key"})
        return dataclasses.replace(RawPayload.of(self.name, POSTS.name, response),
                                   request=f"{self.base_url}/{endpoint}?{query}")


def _note_new(unparseable: Sequence[tuple[int, Unparseable]], meta: dict[str, Any], noted: list[str]) -> None:
    """Note the unreadable items of a list read in full, except those an earlier poll noted
    (`noted`, newest first: their quarantine rows exist)."""
    for payload, item in unparseable:
        if item.fingerprint not in noted:
            note_unparseable(meta, payload, item.position, item.error)
            noted.insert(0, item.fingerprint)


class _VideoClosed(SourceError):
    """One video's comments cannot be read, for good (comments off, video gone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def error_reason(error: AuthError | HttpStatusError) -> str | None:
    """The `reason` of a Google API error body ({"error": {"errors": [{"reason": ...}]}}), if readable.

    Newer APIs answer {"error": {"status": "PERMISSION_DENIED", ...}} instead: then the status.
    """
    text = error.body.decode("utf-8", "replace")
    try:
        doc = loads_json(text, "youtube error")
        errors = doc["error"].get("errors") or []
        if errors and isinstance(errors[0], dict) and errors[0].get("reason"):
            return str(errors[0]["reason"])
        if doc["error"].get("status"):
            return str(doc["error"]["status"])
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    match = re.search(r'"reason"\s*:\s*"([A-Za-z]+)"', text)  # a body cut short or wrapped in something else
    return match.group(1) if match else None


def _mentions_key(error: AuthError | HttpStatusError) -> bool:
    text = error.body.decode("utf-8", "replace")
    return "keyInvalid" in text or "API key" in text or "API_KEY" in text


def _explain(error: AuthError | HttpStatusError, endpoint: str) -> Exception:
    """An API refusal, said plainly: quota, the key, or one video whose comments cannot be read."""
    reason = error_reason(error)
    if reason in QUOTA_REASONS:
        return AuthError(f"youtube: API quota exhausted ({reason}) on {endpoint}; the daily quota resets at "
                         f"midnight Pacific time (or raise it in the Google Cloud console)",
                         status=error.status, body=error.body)
    if endpoint == "commentThreads" and (reason in VIDEO_CLOSED_REASONS or error.status == 404):
        # comments off, or the video gone: for good, so the cursor closes the video
        return _VideoClosed(reason or f"HTTP {error.status}")
    if isinstance(error, HttpStatusError):
        if error.status == 400 and _mentions_key(error):
            return AuthError(f"youtube: the API key was rejected ({reason}): check SENTINEL_YOUTUBE_API_KEY "
                             f"and that YouTube Data API v3 is enabled for it", status=error.status, body=error.body)
        return error
    hint = f" ({reason})" if reason else (" (the key is wrong, not enabled for YouTube Data API v3, or its "
                                          "daily quota is exhausted)")
    return AuthError(f"{error}{hint}", status=error.status, body=error.body)
