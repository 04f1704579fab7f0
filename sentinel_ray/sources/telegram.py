"""Telegram: posts of public channels, read from the web preview (no account, no API key).

    GET {telegram_base_url}/s/<channel>               the newest ~20 posts (first poll)
    GET {telegram_base_url}/s/<channel>?after=<id>    posts after message <id>, oldest first
    GET {telegram_base_url}/s/<channel>?before=<id>   posts before message <id> (older history)

The answer is HTML. Each post is a `div.tgme_widget_message` with `data-post="<channel>/<id>"`;
its text is in `.tgme_widget_message_text` (markup: <br>, <b>, <a>, emoji images), its time in
`.tgme_widget_message_date time[datetime]`, its view count in `.tgme_widget_message_views`
("33.4K"). Pages link to their neighbours with `a.tme_messages_more[data-before|data-after]`
and `<link rel="prev|next">`; the newest page has no "next".

Channel previews publish views, not likes or shares, so `engagement` is the view count.
Posts without text (stickers, photos or videos without a caption, voice notes) are
skipped and counted in `meta["skipped"]`; a poll's question and options count as text.

Records are read from the kept pages by `parse_payload`, what a replay from the raw zone calls
too (see `lineage`): a post's position is its block's in the page, and a page's request text
notes (`#skip=`) the posts it shows that an earlier poll or page had emitted (the channel is
in every post's `data-post`, so the page alone says whose posts they are).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import dataclasses
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from selectolax.lexbor import LexborHTMLParser, LexborNode

from sentinel_ray.config import TelegramSettings
from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import BodyTooLarge, HttpClient
from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, positioned, read_whole,
                                          request_url, skipping)
from sentinel_ray.sources.paging import Pager
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    as_of,
    check_size,
    clean_text,
    count,
    in_range,
    note_unparseable,
    note_unreadable,
    off_loop,
    record_error,
    unreadable_poll,
)
from sentinel_ray.sources.posts import PostItem, posts_table

log = logging.getLogger(__name__)

PUBLIC_URL = "https://t.me"
_SPACE = re.compile(r"[ \t\r\n\f\v]+")  # HTML collapses these; \xa0 (&nbsp;) stays
_VIEWS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMB]?)\s*$", re.IGNORECASE)
_CHANNEL = re.compile(r"^[A-Za-z0-9_]{1,64}$")  # what Telegram allows in a public channel name
_SCALE = {"": 1, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
# The preview is a public web page: stay gentle, one request every two seconds.
RATE_PER_S, BURST = 0.5, 2


@dataclass(frozen=True)
class Message:
    """One post of a channel preview page."""

    channel: str
    message_id: int
    text: str | None  # None: the post has no text (sticker, uncaptioned media, ...)
    ts: dt.datetime
    views: int | None
    forwarded_from: str | None
    position: int = 0  # of its block among the page's message blocks

    @property
    def url(self) -> str:
        return f"{PUBLIC_URL}/{self.channel}/{self.message_id}"

    def post(self, received_at: dt.datetime) -> PostItem:
        """As a post (only for messages with text); a channel preview shows views, not likes or shares."""
        assert self.text is not None
        return PostItem(f"{self.channel}/{self.message_id}", self.forwarded_from or self.channel, self.text,
                        self.ts, self.url, self.views, received_at)


@dataclass
class Page:
    messages: list[Message]
    malformed: int  # message blocks that could not be read
    has_newer: bool  # the page links to newer posts
    before: int | None  # the id to ask `?before=` for older posts, when the page links to them
    unparseable: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (block position, error)


def parse_views(value: str | None) -> int | None:
    """'33.4K' -> 33400, '1.2M' -> 1200000, '950' -> 950; None when absent or unreadable."""
    match = _VIEWS.match(value or "")
    if not match:
        return None
    return count(round(float(match.group(1)) * _SCALE[match.group(2).upper()]))


def _visible_text(node: LexborNode) -> str:
    """Text as a reader sees it: markup dropped, <br> as a line break, source whitespace collapsed."""
    parts: list[str] = []
    for child in node.traverse(include_text=True):
        if child.tag == "-text":
            parts.append(_SPACE.sub(" ", child.text_content or ""))
        elif child.tag == "br":
            parts.append("\n")
    lines = clean_text("".join(parts)).replace("\xa0", " ").split("\n")
    return "\n".join(line.strip() for line in lines).strip()


def _outside_reply(node: LexborNode) -> bool:
    # a reply shows a quote of the replied-to post, with its own text block: not this post's text
    parent = node.parent
    while parent is not None and parent.tag != "html":
        if "tgme_widget_message_reply" in (parent.attributes.get("class") or "").split():
            return False
        parent = parent.parent
    return True


def _message_text(block: LexborNode) -> str | None:
    # the first text block in document order is the outermost (some posts nest a second one inside)
    texts = [n for n in block.css(".tgme_widget_message_text") if _outside_reply(n)]
    text = _visible_text(texts[0]) if texts else ""
    if not text:
        question = block.css_first(".tgme_widget_message_poll_question")
        if question is not None:
            options = [_visible_text(o) for o in block.css(".tgme_widget_message_poll_option_text")]
            text = "\n".join(t for t in [_visible_text(question), *options] if t)
    return text or None


def _message(block: LexborNode) -> Message | None:
    post = block.attributes.get("data-post") or ""
    channel, _, raw_id = post.partition("/")
    time_node = block.css_first(".tgme_widget_message_date time[datetime]")
    if not channel or not raw_id.isascii() or not raw_id.isdigit() or time_node is None:
        return None
    if not _CHANNEL.match(channel) or int(raw_id) >= 2 ** 53:
        raise ValueError(f"not a channel post: {post[:60]!r}")
    try:
        ts = dt.datetime.fromisoformat(time_node.attributes.get("datetime") or "")
    except ValueError:
        return None
    ts = in_range(ts.astimezone(dt.timezone.utc) if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc))
    views = block.css_first(".tgme_widget_message_views")
    forwarded = block.css_first(".tgme_widget_message_forwarded_from_name")
    return Message(channel, int(raw_id), _message_text(block), ts,
                   parse_views(views.text() if views is not None else None),
                   _visible_text(forwarded) or None if forwarded is not None else None)


def parse_page(body: bytes | str, where: str = "page") -> Page:
    """The posts of one preview page, oldest first. SourceError if it is not a channel preview
    (or larger than a payload may be)."""
    try:
        check_size(body, f"telegram: {where}")
    except PayloadError as e:
        raise SourceError(str(e)) from None
    tree = LexborHTMLParser(body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body)
    blocks = tree.css("div.tgme_widget_message")
    if not blocks and tree.css_first(".tgme_channel_history") is None:
        title = tree.css_first("title")
        raise SourceError(f"telegram: {where}: not a public channel preview page (no posts, no channel history; "
                          f"title {title.text().strip() if title is not None else None!r}): a private or "
                          f"unknown channel, or a changed page layout")
    messages, malformed, unparseable = [], 0, []
    for position, block in enumerate(blocks):
        try:
            message = _message(block)
        except RECORD_ERRORS as e:
            unparseable.append((position, record_error(e)))
            message = None
        if message is None:
            malformed += 1
        else:
            messages.append(dataclasses.replace(message, position=position))
    messages.sort(key=lambda m: m.message_id)
    has_newer = (tree.css_first("a.tme_messages_more[data-after]") is not None
                 or tree.css_first('link[rel="next"]') is not None)
    older = tree.css_first("a.tme_messages_more[data-before]")
    before = (older.attributes.get("data-before") or "") if older is not None else ""
    readable = before.isascii() and before.isdigit() and int(before) < 2 ** 53
    return Page(messages, malformed, has_newer, int(before) if readable else None, unparseable)


def read_page(payload: RawPayload) -> Page:
    """`parse_page` of a kept page."""
    with as_of(payload.received_at):
        return parse_page(payload.body, request_url(payload.request))


def page_records(payload: RawPayload, page: Page) -> ParsedPayload:
    """The posts of a preview page read by `parse_page` (those with text), as its poll emitted them."""
    posted = [m for m in page.messages if m.text is not None]
    table = posts_table([m.post(payload.received_at) for m in posted], platform=TelegramSource.platform,
                        source=TelegramSource.name)
    return finish(payload, {POSTS.name: positioned(table, [m.position for m in posted])}, page.unparseable)


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The posts of one kept preview page (see `lineage`)."""
    return page_records(payload, read_whole(payload, read_page))


class TelegramSource(Source):
    """Posts of public Telegram channels, incrementally by message id per channel."""

    name = "telegram"
    platform = "telegram"
    datasets = (POSTS.name,)
    settings_class = TelegramSettings

    def __init__(self, settings: TelegramSettings, *, http: HttpClient | None = None) -> None:
        self.channels = [c.strip().lstrip("@") for c in settings.channels if c.strip()]
        self.base_url = settings.base_url.rstrip("/")
        self.page_cap = settings.page_cap
        self.http = http or HttpClient.from_settings(self.name, settings, rate_per_s=RATE_PER_S, burst=BURST)

    async def _page(self, channel: str, after: int | None, raw: list[RawPayload]) -> tuple[Page, int]:
        """One preview page and its payload's index in `raw`; UnreadablePayload when it is no preview page."""
        try:
            response = await self.http.get(f"{self.base_url}/s/{channel}",
                                           params={"after": after} if after is not None else None)
        except BodyTooLarge as e:  # its head: kept in the raw zone by the poller, reported
            raw.append(cut_short(RawPayload.of(self.name, POSTS.name, e.response)))
            raise UnreadablePayload(str(e), raw) from None
        payload = RawPayload.of(self.name, POSTS.name, response)
        raw.append(payload)
        try:
            # big or deeply nested pages take seconds to parse: off the event loop
            return await off_loop(lambda _body: read_page(payload), payload.body), len(raw) - 1
        except SourceError as e:  # the whole page: kept in the raw zone by the poller, reported
            raise UnreadablePayload(str(e), raw) from None

    async def _poll_channel(self, channel: str, last_id: int | None, tables: list[pa.Table], raw: list[RawPayload],
                            meta: dict[str, Any]) -> int | None:
        """Posts newer than `last_id` (the newest page when None); returns the newest id seen."""
        mark: Incremental[int] = Incremental(last_id)

        async def page(after: int | None) -> tuple[Page, int]:
            return await self._page(channel, after, raw)

        # oldest first: the next page is the one after the newest post seen
        pages = Pager(page, lambda fetched: mark.last_value if fetched[0].has_newer else None, limit=self.page_cap,
                      first=last_id)
        try:
            await self._read_pages(pages, last_id, mark, tables, raw, meta)
        except UnreadablePayload as e:
            # Oldest first: what the pages before it emitted stands (the cursor moves with it), and
            # the next poll asks again for what follows; the other channels go on.
            log.warning("telegram: %s: %s; the next poll asks again after %s", channel, e, mark.last_value)
            note_unreadable(meta, len(raw) - 1, e)
        if pages.truncated:
            log.info("telegram: %s: page cap %d reached; the next poll continues after %s", channel,
                     self.page_cap, mark.last_value)
        return mark.last_value

    async def _read_pages(self, pages: Pager[int, tuple[Page, int]], last_id: int | None,
                          mark: Incremental[int], tables: list[pa.Table], raw: list[RawPayload],
                          meta: dict[str, Any]) -> None:
        async for listing, index in pages:
            meta["skipped"] += listing.malformed
            for position, error in listing.unparseable:
                note_unparseable(meta, index, position, error)
            fresh = [m for m in listing.messages if mark.last_value is None or m.message_id > mark.last_value]
            for message in fresh:
                if message.text is None:
                    meta["skipped"] += 1
                # textless posts advance the cursor too: they are not worth asking for again
                mark.emit(message.message_id)
            fresh_positions = {m.position for m in fresh}
            raw[index] = skipping(raw[index], [m.position for m in listing.messages
                                               if m.position not in fresh_positions and m.text is not None])
            tables.append(page_records(raw[index], listing)[POSTS.name])
            if not fresh or last_id is None:
                break  # nothing newer; or the first poll, which starts from the newest page

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """New posts of every channel since `cursor` = {"last_id": {<channel>: <newest message id seen>}}."""
        previous: dict[str, int] = dict((cursor or {}).get("last_id", {}))
        tables: list[pa.Table] = []
        raw: list[RawPayload] = []
        meta: dict[str, Any] = {"skipped": 0}
        last_ids = dict(previous)
        for channel in self.channels:
            newest = await self._poll_channel(channel, previous.get(channel), tables, raw, meta)
            if newest is not None:
                last_ids[channel] = newest
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        return FetchResult(raw=raw, records={POSTS.name: concat_records(tables, POSTS)},
                           next_cursor={"last_id": last_ids} if last_ids else cursor, meta=meta)

    async def close(self) -> None:
        await self.http.close()
