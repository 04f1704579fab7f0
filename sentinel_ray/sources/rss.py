"""News: market headlines from RSS and Atom feeds (Economic Times, Moneycontrol, Business Standard, ...).

The services are the publishers' own feeds (`settings.rss_feeds`): RSS 2.0 for the
Indian market desks, Atom for some others, each fetched with a plain `GET <feed url>`.
Parsing is feedparser's: it reads RSS 0.9x/1.0/2.0 and Atom, the many date spellings
feeds use ("Mon, 06 May 2024 12:27:59 +0530"), encodings and entities. The HTML inside
descriptions is reduced to its text here (tags, scripts and styles dropped).

Per poll, every feed is fetched with a conditional GET (`If-None-Match` /
`If-Modified-Since` from the ETag / Last-Modified the feed sent last time): a 304 means
nothing new and costs the publisher nothing. Each entry becomes a post on platform
"news": its guid/id (else link, else a hash of title + date), title + summary as plain
text, the publish time in UTC, the link. The cursor remembers, per feed, the validators
and the ids of the entries it has emitted, so a poll never emits an entry twice.

One broken feed does not stop the others: its failure is reported in
`meta["failed_feeds"]` and its cursor stays where it was; a feed that answered something
that is not a feed is kept in `raw` and noted in `meta["unreadable"]`. Only when every
feed fails does the poll raise: UnreadablePayload (carrying them) when every feed was
unreadable, else the first other error. An entry that cannot be read (an `<item>` with
neither title nor description, which RSS 2.0 requires one of) is noted in
`meta["unparseable"]` once: the feed's `seen` ids remember it (as noted, not as emitted).

Records are read from the kept documents by `parse_payload`, what a replay from the raw zone
calls too (see `lineage`). A document's request text notes (`#skip=`) the entries it lists
that were emitted before, and, when they differ from the request's, the feed URL links are
resolved against (`feed=`, a redirected feed; never its query) and the Content-Type header
as sent (`content_type=`, when it named a charset).
"""
from __future__ import annotations

import asyncio
import calendar
import dataclasses
import datetime as dt
import hashlib
import io
import logging
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Mapping, Sequence

import feedparser
import pyarrow as pa

from sentinel_ray.config import RssSettings
from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import BodyTooLarge, HttpClient
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, positioned, read_whole,
                                          request_context, request_url, request_with, skipping)
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    as_of,
    check_size,
    clean_text,
    http_url,
    in_range,
    note_unparseable,
    note_unreadable,
    off_loop,
    optional_text,
    record_error,
    unreadable_poll,
)
from sentinel_ray.sources.posts import PostItem, posts_table

log = logging.getLogger(__name__)

PLATFORM = "news"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.5"
# Ids remembered per feed: all of the latest document's, plus older ones up to this many
# (feeds list 20-100 items, so an entry that scrolls off and back is still recognised).
SEEN_PER_FEED = 300
NOT_MODIFIED = frozenset({304})  # the answer to a conditional GET when the feed has not changed
RATE_PER_S, BURST = 2.0, 3  # feeds of several publishers, a few each: polite to every one
NOTED_PREFIX = "unreadable:"  # in `seen`: an entry noted as unparseable, not emitted


# --- parsing (pure: bytes in, posts out) ------------------------------------------------


@dataclass(frozen=True)
class ParsedFeed:
    """One feed document: its posts in document order and what was wrong with it."""

    title: str | None
    posts: list[PostItem]  # ts None where the feed's date could not be read (validation decides)
    problem: str | None  # feedparser's complaint when the XML was not well formed (entries kept)
    skipped: int  # entries that could not be read (those in `unparseable`)
    undated: int  # entries whose date could not be read
    unparseable: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)  # (position, key, error)
    positions: list[int] = dataclasses.field(default_factory=list)  # of each post's entry in the document


def parse_feed(body: bytes, feed_url: str, received_at: dt.datetime, content_type: str | None = None) -> ParsedFeed:
    """An RSS/Atom document -> posts. SourceError when nothing at all could be read from it."""
    try:
        check_size(body, f"rss: feed {feed_url}")
    except PayloadError as e:
        raise SourceError(str(e)) from None
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    # A stream, never bytes or str: feedparser would try a str as a URL or a file name.
    # No HTML sanitising or URI rewriting inside descriptions: the text is stripped of all
    # markup below anyway, and those passes re-parse every description (1.6x slower).
    # Entry links are still resolved against the feed URL.
    doc = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                           resolve_relative_uris=False)
    problem = _problem(doc)
    if not doc.entries and (problem or not doc.get("version")):
        raise SourceError(f"rss: feed {feed_url} is not a readable RSS/Atom document "
                          f"({problem or 'no feed element found'}): {body[:80]!r}")
    feed_title = optional_text(html_to_text(doc.feed.get("title", "") or ""))
    posts, positions, undated, unparseable = [], [], 0, []
    for position, entry in enumerate(doc.entries):
        try:
            post = entry_post(entry, feed_title, received_at)
        except RECORD_ERRORS as e:
            unparseable.append((position, entry_key(entry), record_error(e)))
            continue
        undated += post.ts is None
        posts.append(post)
        positions.append(position)
    return ParsedFeed(feed_title, posts, problem, len(unparseable), undated, unparseable, positions)


def read_feed(payload: RawPayload) -> ParsedFeed:
    """`parse_feed` of a kept document, with what its request text says: the feed URL and the
    Content-Type header it was fetched with."""
    context = request_context(payload.request)
    with as_of(payload.received_at):
        return parse_feed(payload.body, context.get("feed") or request_url(payload.request), payload.received_at,
                          context.get("content_type", payload.content_type) or None)


def feed_records(payload: RawPayload, parsed: ParsedFeed) -> ParsedPayload:
    """The posts of a document read by `read_feed`, as its poll emitted them."""
    table = posts_table(parsed.posts, platform=PLATFORM, source=RssSource.name)
    return finish(payload, {POSTS.name: positioned(table, parsed.positions)},
                  [(position, error) for position, _, error in parsed.unparseable])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The posts of one kept feed document (see `lineage`)."""
    return feed_records(payload, read_whole(payload, read_feed))


def entry_key(entry: Mapping[str, Any]) -> str:
    """What recognises an entry in a later poll: its id, else its link, else a hash of all of it."""
    key = optional_text(entry.get("id")) or optional_text(entry.get("link"))
    if key:
        return key
    return "entry:" + hashlib.sha1(clean_text(repr(entry)).encode()).hexdigest()[:20]


def entry_post(entry: Mapping[str, Any], feed_title: str | None, received_at: dt.datetime) -> PostItem:
    """One feedparser entry -> a post; ValueError when it has no text to speak of (RSS 2.0
    requires a title or a description, Atom a title: such an entry is not a readable one)."""
    title = html_to_text(_str(entry.get("title")))
    summary = html_to_text(_str(_summary_html(entry)))
    text = title if not summary or summary == title else (f"{title}\n{summary}" if title else summary)
    if not text:
        raise ValueError("an entry with neither title nor description")
    ts = entry_time(entry)
    link = http_url(entry.get("link"))  # javascript:, data: and relative links are no link
    post_id = optional_text(entry.get("id")) or optional_text(entry.get("link"))
    if not post_id:
        stamp = clean_text(_str(entry.get("published") or entry.get("updated")))
        post_id = "sha1:" + hashlib.sha1(f"{title}\n{stamp}".encode()).hexdigest()
    author = html_to_text(_str(entry.get("author"))) or feed_title
    # feeds carry no engagement counts
    return PostItem(post_id, author, text, ts, link, None, received_at)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _summary_html(entry: Mapping[str, Any]) -> str:
    # RSS <description> and Atom <summary> land in `summary`; Atom-only feeds may carry just <content>
    summary = entry.get("summary") or ""
    if summary:
        return summary
    for content in entry.get("content") or []:
        if content.get("value"):
            return content["value"]
    return ""


def entry_time(entry: Mapping[str, Any]) -> dt.datetime | None:
    """Publish time (else last update) in UTC; None when the feed's date is unreadable."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        # dict.get: FeedParserDict.get("updated_parsed") would fall back to the published date, with a warning
        parsed = dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)
        if parsed:
            # feedparser has already converted the date to UTC (struct_time); year 1 or 9999 is no date
            try:
                return in_range(dt.datetime.fromtimestamp(calendar.timegm(parsed), dt.timezone.utc))
            except (ValueError, OverflowError, OSError, TypeError):
                return None
    return None


# feedparser flags these too, but they say nothing about the XML being broken
_BENIGN = (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride)


def _problem(doc: Any) -> str | None:
    """What made the document not well formed, or None when it was fine."""
    if not doc.get("bozo"):
        return None
    exc = doc.get("bozo_exception")
    if isinstance(exc, _BENIGN):
        return None
    return f"{type(exc).__name__}: {exc}" if exc is not None else "not well formed"


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment: tags dropped, entities resolved, scripts skipped."""

    BREAKS = frozenset({"br", "p", "div", "li", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                        "ul", "ol", "table", "section", "article"})
    HIDDEN = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.BREAKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(value: str) -> str:
    """An HTML fragment (or plain text) -> one line of plain text."""
    if "<" not in value and "&" not in value:
        return clean_text(" ".join(value.split()))
    parser = _TextOnly()
    parser.feed(value)
    parser.close()
    # char refs like &#xD800; come out as lone surrogates
    return clean_text(" ".join("".join(parser.parts).split()))


# --- cursor -------------------------------------------------------------------------------


@dataclass
class FeedState:
    """Per feed: HTTP validators for the conditional GET and the entries already emitted.

    `seen` holds ids rather than only "ids at the newest timestamp": feeds are not reliably
    in time order, publishers backdate and re-date items, and some entries have no
    readable date; an id is the one thing that says "emitted before".
    """

    etag: str | None = None
    last_modified: str | None = None
    newest: str | None = None  # newest entry time seen (ISO, UTC), for freshness monitoring
    seen: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> "FeedState":
        if not value:
            return cls()
        return cls(value.get("etag"), value.get("last_modified"), value.get("newest"), list(value.get("seen") or []))

    def dump(self) -> dict[str, Any]:
        return {"etag": self.etag, "last_modified": self.last_modified, "newest": self.newest,
                "seen": list(self.seen)}

    def conditional_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


@dataclass
class FeedPoll:
    """The outcome of one feed in one poll."""

    url: str
    state: FeedState
    raw: RawPayload | None = None
    parsed: ParsedFeed | None = None
    not_modified: bool = False


# --- the adapter --------------------------------------------------------------------------


class RssSource(Source):
    """Market news headlines from RSS/Atom feeds."""

    name = "rss"
    datasets = (POSTS.name,)
    settings_class = RssSettings

    def __init__(self, settings: RssSettings, *, http: HttpClient | None = None) -> None:
        self.feeds = list(dict.fromkeys(f.strip() for f in settings.feeds if f.strip()))
        if not self.feeds:
            raise SourceError("rss: no feeds configured (set rss_feeds)")
        self.http = http or HttpClient.from_settings(self.name, settings, rate_per_s=RATE_PER_S, burst=BURST,
                                                     headers={"Accept": ACCEPT})

    async def close(self) -> None:
        await self.http.close()

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """New entries of every feed since `cursor` = {"feeds": {url: FeedState}} (None: all entries listed now)."""
        previous = self._load(cursor)
        outcomes = await asyncio.gather(*(self._poll(url, previous.get(url, FeedState())) for url in self.feeds),
                                        return_exceptions=True)
        failed = {url: out for url, out in zip(self.feeds, outcomes) if isinstance(out, BaseException)}
        for out in failed.values():
            if not isinstance(out, Exception):
                raise out  # cancellation and the like are not a feed's fault
        others = [e for e in failed.values() if not isinstance(e, UnreadablePayload)]
        if len(failed) == len(self.feeds) and others:
            raise others[0]  # nothing read, and something to retry for (network, credentials)
        for url, err in failed.items():
            log.warning("rss: feed %s failed this poll: %s", url, err)

        # an entry already emitted from any feed is old news in every feed
        emitted: set[str] = {i for state in previous.values() for i in state.seen}
        tables: list[pa.Table] = []
        states: dict[str, FeedState] = {}
        raw: list[RawPayload] = []
        meta: dict[str, Any] = {"feeds": len(self.feeds), "not_modified": [], "malformed_feeds": {},
                                "failed_feeds": {u: str(e) for u, e in failed.items()}, "skipped": 0, "undated": 0}
        for url, out in zip(self.feeds, outcomes):
            if isinstance(out, BaseException):
                states[url] = previous.get(url, FeedState())
                if isinstance(out, UnreadablePayload):  # kept in the raw zone by the poller, reported
                    raw.extend(out.raw)
                    note_unreadable(meta, len(raw) - 1, out)
                continue
            if out.raw is not None:
                raw.append(out.raw)
            states[url] = self._advance(out, emitted, tables, raw, meta)
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable

        next_cursor = {"feeds": {url: s.dump() for url, s in states.items()}}
        if next_cursor == self._dump(previous, self.feeds) and not sum(t.num_rows for t in tables):
            next_cursor = cursor  # nothing new: the cursor stays as it was
        return FetchResult(raw=raw, records={POSTS.name: concat_records(tables, POSTS)},
                           next_cursor=next_cursor, meta=meta)

    def _advance(self, out: FeedPoll, emitted: set[str], tables: list[pa.Table], raw: list[RawPayload],
                 meta: dict[str, Any]) -> FeedState:
        """Take the feed's new entries into `tables` (its unreadable ones into `meta["unparseable"]`,
        pointing at its payload, the last of `raw`); return its next state."""
        if out.not_modified or out.parsed is None:
            meta["not_modified"].append(out.url)
            return out.state
        payload = len(raw) - 1
        parsed = out.parsed
        if parsed.problem:
            meta["malformed_feeds"][out.url] = parsed.problem
        meta["skipped"] += parsed.skipped
        fresh, skip = [], []
        for post, position in zip(parsed.posts, parsed.positions, strict=True):
            if post.post_id not in emitted:
                emitted.add(post.post_id)
                fresh.append(post)
            else:
                skip.append(position)
        raw[payload] = skipping(raw[payload], skip)
        tables.append(feed_records(raw[payload], parsed)[POSTS.name])
        # A feed lists the same entries poll after poll: an unreadable one is noted (and quarantined)
        # once, then remembered in `seen` under a key of its own, so that the entry, once the
        # publisher mends it, is still new as a post.
        noted = [NOTED_PREFIX + key for _, key, _ in parsed.unparseable]
        for (position, _, error), key in zip(parsed.unparseable, noted):
            if key not in emitted:
                emitted.add(key)
                note_unparseable(meta, payload, position, error)
        meta["undated"] += sum(p.ts is None for p in fresh)
        in_doc = list(dict.fromkeys([*(p.post_id for p in parsed.posts), *noted]))
        keep = max(SEEN_PER_FEED, len(in_doc))
        seen = list(dict.fromkeys([*in_doc, *out.state.seen]))[:keep]
        dated = [p.ts for p in parsed.posts if p.ts is not None]
        newest = out.state.newest
        if dated:
            top = max(dated).isoformat(timespec="seconds").replace("+00:00", "Z")
            newest = max(newest, top) if newest else top
        return FeedState(out.state.etag, out.state.last_modified, newest, seen)

    async def _poll(self, url: str, state: FeedState) -> FeedPoll:
        """The feed's answer; UnreadablePayload (carrying it) when it is not a feed."""
        try:
            response = await self.http.get(url, headers=state.conditional_headers(), accept_statuses=NOT_MODIFIED)
        except BodyTooLarge as e:
            raise UnreadablePayload(str(e), [cut_short(RawPayload.of(self.name, POSTS.name, e.response))]) from None
        if response.status == 304:
            return FeedPoll(url, state, not_modified=True)
        headers = response.headers  # HttpClient's: names in any case
        raw = RawPayload.of(self.name, POSTS.name, response)
        # what parsing needs that the payload's own fields lose: the URL asked for (links resolve against
        # it; a redirect changes the response's) and a charset named in the Content-Type header
        feed, content_type = url.split("?", 1)[0], headers.get("Content-Type")
        raw = dataclasses.replace(raw, request=request_with(
            raw.request, feed=feed if feed != request_url(raw.request) else None,
            content_type=None if content_type == raw.content_type else content_type or ""))  # "": none was sent
        try:
            # feedparser takes seconds on big or deeply nested documents: off the event loop
            parsed = await off_loop(lambda _body: read_feed(raw), raw.body)
        except SourceError as e:
            raise UnreadablePayload(str(e), [raw]) from None
        validators = FeedState(headers.get("ETag"), headers.get("Last-Modified"), state.newest, state.seen)
        return FeedPoll(url, validators, raw, parsed)

    @staticmethod
    def _load(cursor: Mapping[str, Any] | None) -> dict[str, FeedState]:
        if not cursor:
            return {}
        feeds = cursor.get("feeds")
        if not isinstance(feeds, Mapping):
            raise SourceError("rss: unreadable cursor (no 'feeds' mapping)")
        try:
            return {str(url): FeedState.load(value) for url, value in feeds.items()}
        except (TypeError, AttributeError) as e:
            raise SourceError(f"rss: unreadable cursor ({e})") from None

    @staticmethod
    def _dump(states: Mapping[str, FeedState], feeds: Sequence[str]) -> dict[str, Any]:
        return {"feeds": {url: states.get(url, FeedState()).dump() for url in feeds}}
