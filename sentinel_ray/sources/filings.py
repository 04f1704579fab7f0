"""Corporate announcements filed with NSE and BSE (filings).

Listed companies must disclose price-sensitive news (results, orders, pledges, board
meetings...) to both exchanges, which publish it within minutes. Filings next to a price
spike and a chatter burst tell news-driven moves apart from pumps.

- NSE: `GET /api/corporate-announcements?index=equities&from_date=dd-mm-yyyy
  &to_date=dd-mm-yyyy` on www.nseindia.com, behind the same cookie handshake as the
  price API (`nse.NseSession`). One JSON list for the whole date range, no pages:
  `[{"symbol", "sm_name", "desc", "attchmntText", "attchmntFile", "an_dt":
  "18-Oct-2023 22:11:42", "exchdisstime", "sort_date", "seq_id", ...}]` (times IST).
- BSE: `GET api.bseindia.com/BseIndiaAPI/api/AnnSubCategoryGetData/w?pageno=N&strCat=-1
  &subcategory=-1&strPrevDate=YYYYMMDD&strToDate=YYYYMMDD&strScrip=&strSearch=P&strType=C`
  -> `{"Table": [{"NEWSID", "SCRIP_CD", "SLONGNAME", "NEWSSUB", "HEADLINE", "NEWS_DT":
  "2023-10-20T23:44:22.95", "DissemDT", "ATTACHMENTNAME", ...}],
  "Table1": [{"ROWCNT": 1292}]}`, newest first, 50 to a page (times IST). BSE's API
  answers only with a Referer/Origin from www.bseindia.com. Attachments live at
  https://www.bseindia.com/xml-data/corpfiling/AttachLive/<ATTACHMENTNAME> (BSE moves
  them to AttachHis/ after some days).

Cursor per exchange: the newest dissemination time emitted and the ids emitted at exactly
that time (an `Incremental` mark), so a poll never re-emits and never misses an item
sharing the boundary second.
BSE's pages are walked newest first until a page reaches what the cursor has already
seen, the last page, or `page_cap` pages.

Records are read from the kept answers by `parse_payload`, what a replay from the raw zone
calls too (see `lineage`): an answer's request URL says which exchange's list it is, and its
text notes (`#skip=`) the announcements an earlier poll had emitted.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

import pyarrow as pa

from sentinel_ray import reference
from sentinel_ray.config import FilingsSettings
from sentinel_ray.market import EXCHANGES, ist_date, parse_ist
from sentinel_ray.records import FetchResult, RawPayload, SourceError, utc_now
from sentinel_ray.schemas import FILINGS
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import HttpClient
from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, finish, payload_schema, positioned,
                                          read_whole, request_url, skipping, withholding)
from sentinel_ray.sources.nse import (
    NSE_DATE,
    NSE_DATETIME,
    NseSession,
    exchange_http_client,
    from_iso,
    iso_utc,
    payload_json,
    received,
)
from sentinel_ray.sources.paging import Pager
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    UnreadablePayload,
    as_of,
    clean_text,
    http_url,
    in_range,
    note_unparseable,
    note_unreadable,
    off_loop,
    record_error,
)

log = logging.getLogger(__name__)

BSE_SITE = "https://www.bseindia.com"  # BSE's API checks that requests come from its site
BSE_ANNOUNCEMENTS_PATH = "/BseIndiaAPI/api/AnnSubCategoryGetData/w"
BSE_ATTACHMENT_URL = BSE_SITE + "/xml-data/corpfiling/AttachLive/"
NSE_ANNOUNCEMENTS_PATH = "/api/corporate-announcements"
NSE_ANNOUNCEMENTS_PAGE = "/companies-listing/corporate-filings-announcements"
BSE_DATE = "%Y%m%d"
BSE_HEADERS = {"Accept": "application/json, text/plain, */*", "Accept-Language": "en-US,en;q=0.9",
               "Origin": BSE_SITE, "Referer": BSE_SITE + "/"}

Clock = Callable[[], dt.datetime]


@dataclass
class Filing:
    exchange: str
    filing_id: str
    ticker: str | None
    company: str | None
    subject: str | None
    details: str | None
    ts: dt.datetime
    attachment_url: str | None


Mark = Incremental[dt.datetime]  # where an exchange's stream was left (filing ts, filing ids at it)


# --- parsing --------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None  # a container or a flag is no text ("{}" as a company name)
    text = clean_text(str(value)).strip()
    return text or None


def nse_filing(item: Mapping[str, Any]) -> Filing:
    """One NSE announcement. Raises KeyError/ValueError/TypeError when id or time is unreadable."""
    when = _text(item.get("exchdisstime")) or _text(item.get("an_dt"))
    ts = in_range(parse_ist(when, NSE_DATETIME) if when else parse_ist(item["sort_date"], "%Y-%m-%d %H:%M:%S"))
    filing_id = _text(item["seq_id"])
    if filing_id is None:
        raise ValueError("no seq_id")
    symbol = _text(item.get("symbol"))
    return Filing("NSE", filing_id, symbol.upper() if symbol else None, _text(item.get("sm_name")),
                  _text(item.get("desc")), _text(item.get("attchmntText")), ts, http_url(item.get("attchmntFile")))


def _bse_time(text: str) -> dt.datetime:
    # "2023-10-20T23:44:22.95": IST, fractions of a second of varying length; kept to the
    # millisecond, the precision the table stores, so cursor and rows compare alike.
    head, _, frac = text.strip().partition(".")
    moment = parse_ist(head, "%Y-%m-%dT%H:%M:%S")
    millis = (frac + "000")[:3]
    if frac and not (millis.isascii() and millis.isdigit()):
        raise ValueError(f"unreadable fraction of a second: {frac[:10]!r}")
    return in_range(moment + dt.timedelta(milliseconds=int(millis)) if frac else moment)


def bse_filing(item: Mapping[str, Any]) -> Filing:
    """One BSE announcement. Raises KeyError/ValueError/TypeError when id or time is unreadable."""
    when = _text(item.get("DissemDT")) or _text(item.get("NEWS_DT")) or _text(item["DT_TM"])
    if when is None:
        raise ValueError("no time")
    filing_id = _text(item["NEWSID"])
    if filing_id is None:
        raise ValueError("no NEWSID")
    company = _text(item.get("SLONGNAME"))
    attachment = _text(item.get("ATTACHMENTNAME"))
    url = http_url(BSE_ATTACHMENT_URL + urllib.parse.quote(attachment, safe="/._-")) if attachment else None
    return Filing("BSE", filing_id, ticker_for_company(company), company, _text(item.get("NEWSSUB")),
                  _text(item.get("HEADLINE")) or _text(item.get("MORE")), _bse_time(when), url)


_NAME_NOISE = re.compile(r"[^A-Z0-9 ]+")
_SUFFIXES = (" LIMITED", " LTD")


def normalise_company(name: str) -> str:
    """Company name reduced to what BSE and NSE spellings share: 'RELIANCE INDUSTRIES LTD.'
    and 'Reliance Industries Limited' both become 'RELIANCE INDUSTRIES'."""
    text = _NAME_NOISE.sub("", name.upper().replace("&", " AND ").replace("-", " "))
    text = " ".join(text.split())
    text = text.removeprefix("THE ")
    for suffix in _SUFFIXES:
        text = text.removesuffix(suffix)
    return text


@lru_cache(maxsize=1)
def _tickers_by_name() -> dict[str, str]:
    table = reference.symbol_table()
    by_name: dict[str, str | None] = {}
    for symbol, name in zip(table.column("symbol").to_pylist(), table.column("name").to_pylist(), strict=True):
        key = normalise_company(name)
        by_name[key] = None if key in by_name else symbol  # ambiguous names map to nothing
    return {k: v for k, v in by_name.items() if v}


def ticker_for_company(company: str | None) -> str | None:
    """NSE symbol of a BSE filer, from the shipped symbol list by exact normalised name.

    BSE files by scrip code and the list has no BSE codes, so the name is all there is;
    anything not matched exactly stays null rather than guessed."""
    return _tickers_by_name().get(normalise_company(company)) if company else None


def filings_table(filings: list[Filing], received: list[dt.datetime]) -> pa.Table:
    cols = {
        "exchange": [f.exchange for f in filings],
        "filing_id": [f.filing_id for f in filings],
        "ticker": [f.ticker for f in filings],
        "company": [f.company for f in filings],
        "subject": [f.subject for f in filings],
        "details": [f.details for f in filings],
        "ts": [f.ts for f in filings],
        "attachment_url": [f.attachment_url for f in filings],
        "source": [FilingsSource.name] * len(filings),
        "run_id": [None] * len(filings),
        "ingested_at": received,
    }
    return pa.Table.from_pydict(cols, schema=payload_schema(FILINGS))


@dataclass
class Announcements:
    """One announcements answer as read: per item, in the answer's order, its filing or why it
    could not be read; and how many announcements the query matches (BSE says, NSE does not)."""

    outcomes: list[Filing | str]
    total: int | None = None


def read_announcements(payload: RawPayload) -> Announcements:
    """The announcements of a kept NSE or BSE answer (which one, its request URL says); SourceError
    when the body is not JSON of the list expected."""
    url = request_url(payload.request)
    path = urllib.parse.urlsplit(url).path
    if path.endswith(NSE_ANNOUNCEMENTS_PATH):
        items, parse, total = _nse_items(_json(payload, "NSE announcements")), nse_filing, None
    elif path.endswith(BSE_ANNOUNCEMENTS_PATH):
        number = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query)).get("pageno", "?")
        what = f"BSE announcements page {number}"
        doc, items = _bse_rows(_json(payload, what), number)
        parse, total = bse_filing, _bse_total_rows(doc)
    else:
        raise SourceError(f"filings: {url[:200]} is no announcements list the adapter reads")
    outcomes: list[Filing | str] = []
    with as_of(payload.received_at):
        for item in items:
            try:
                outcomes.append(parse(item))
            except RECORD_ERRORS as e:
                outcomes.append(record_error(e))
    return Announcements(outcomes, total)


def _json(payload: RawPayload, what: str) -> Any:
    return payload_json(payload.body, payload.request, payload.content_type, FilingsSource.name, what)


def announcement_records(payload: RawPayload, read: Announcements) -> ParsedPayload:
    """The filings of an answer read by `read_announcements`, as its poll emitted them."""
    readable = [(position, f) for position, f in enumerate(read.outcomes) if isinstance(f, Filing)]
    table = filings_table([f for _, f in readable], [payload.received_at] * len(readable))
    return finish(payload, {FILINGS.name: positioned(table, [position for position, _ in readable])},
                  [(position, error) for position, error in enumerate(read.outcomes) if isinstance(error, str)])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The filings of one kept NSE or BSE announcements answer (see `lineage`)."""
    return announcement_records(payload, read_whole(payload, read_announcements))


# --- the source -----------------------------------------------------------------------


@dataclass
class _Batch:
    tables: list[pa.Table] = field(default_factory=list)
    raw: list[RawPayload] = field(default_factory=list)
    skipped: int = 0
    unparseable: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    truncated: bool = False

    async def read(self, what: str) -> Announcements:
        """The last payload of `raw`, read (off the event loop when big); UnreadablePayload when it
        cannot be."""
        payload = self.raw[-1]
        try:
            return await off_loop(lambda _body: read_announcements(payload), payload.body)
        except SourceError as e:  # the whole body: kept in the raw zone by the poller, reported
            raise UnreadablePayload(str(e), self.raw) from None

    def take(self, read: Announcements, mark: Mark) -> bool:
        """Keep the filings of the last payload past `mark` (unreadable ones are counted as
        skipped); True when some were not (they were emitted before)."""
        index = len(self.raw) - 1
        reached_seen, skip = False, []
        for position, filing in enumerate(read.outcomes):
            if isinstance(filing, str):
                self.skipped += 1
                notes: dict[str, Any] = {}
                note_unparseable(notes, index, position, filing)
                self.unparseable.extend(notes["unparseable"])
                continue
            if mark.is_new(filing.ts, filing.filing_id):
                mark.emit(filing.ts, filing.filing_id)
            else:
                skip.append(position)
                reached_seen = True
        self.raw[index] = skipping(self.raw[index], skip)
        self.tables.append(announcement_records(self.raw[index], read)[FILINGS.name])
        return reached_seen


class FilingsSource(Source):
    """New corporate announcements from NSE and BSE each poll.

    The two exchanges are independent upstreams: when one fails, the other's filings are
    still returned (its cursor advances, the failed one's stays put and the error is in
    `meta["errors"]`); only when every exchange fails does `fetch` raise. An exchange that
    answered something unreadable keeps its payloads in the poll's `raw` (for the raw zone)
    and is noted in `meta["unreadable"]`; when both did, `fetch` raises UnreadablePayload
    carrying them.
    """

    name = "filings"
    datasets = (FILINGS.name,)
    settings_class = FilingsSettings

    def __init__(self, settings: FilingsSettings, *, nse_http: HttpClient | None = None,
                 bse_http: HttpClient | None = None, exchanges: tuple[str, ...] = EXCHANGES,
                 clock: Clock = utc_now) -> None:
        unknown = set(exchanges) - set(EXCHANGES)
        if unknown or not exchanges:
            raise SourceError(f"filings: exchanges must be among {EXCHANGES}, got {exchanges}")
        self.nse = NseSession(nse_http or exchange_http_client(settings, f"{self.name}/nse"), settings.nse_base_url)
        self.bse_http = bse_http or exchange_http_client(settings, f"{self.name}/bse", rate_per_s=2.0, burst=2)
        self.bse_base_url = settings.bse_base_url.rstrip("/")
        self.page_cap = settings.page_cap
        self.exchanges = exchanges
        self.clock = clock

    async def close(self) -> None:
        await self.nse.close()
        await self.bse_http.close()

    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """Cursor: {"NSE": {"ts": ISO UTC, "ids": [...]}, "BSE": {...}}; a missing exchange
        starts at 00:00 IST today."""
        cursor = cursor or {}
        fetchers = {"NSE": self._nse, "BSE": self._bse}
        batches: dict[str, _Batch] = {}
        errors: dict[str, SourceError] = {}
        unreadable: dict[str, _Batch] = {}  # exchanges whose answer could not be read: their payloads
        next_cursor = dict(cursor)
        for exchange in self.exchanges:
            mark: Mark = Incremental.load(cursor.get(exchange), decode=from_iso)
            batch = _Batch()
            try:
                await fetchers[exchange](mark, batch)
            except SourceError as e:
                log.warning("filings: %s failed: %s", exchange, e)
                errors[exchange] = e
                if isinstance(e, UnreadablePayload):
                    unreadable[exchange] = batch  # kept for the raw zone; its filings wait for a readable answer
                continue
            batches[exchange] = batch
            advanced = mark.dump(encode=iso_utc)
            if advanced is not None:
                next_cursor[exchange] = advanced
        if errors and not batches and len(unreadable) < len(errors):
            # nothing read, and something other than a bad answer (network, credentials) to retry for
            raise next(e for e in errors.values() if not isinstance(e, UnreadablePayload))
        meta: dict[str, Any] = {"skipped": sum(b.skipped for b in batches.values()),
                                "pages": {ex: b.pages for ex, b in batches.items()},
                                "truncated": [ex for ex, b in batches.items() if b.truncated],
                                "errors": {ex: str(e) for ex, e in errors.items()}}
        raw: list[RawPayload] = []
        for b in batches.values():
            meta.setdefault("unparseable", []).extend({**u, "payload": u["payload"] + len(raw)} for u in b.unparseable)
            raw.extend(b.raw)
        for exchange, b in unreadable.items():
            # its readable pages' filings wait for the exchange's next readable answer: none emitted
            raw.extend([withholding(p) for p in b.raw[:-1]] + b.raw[-1:])
            note_unreadable(meta, len(raw) - 1, errors[exchange])  # the exchange's last payload is the bad one
        if not meta.get("unparseable"):
            meta.pop("unparseable", None)
        if not batches:
            raise UnreadablePayload(str(next(iter(errors.values()))), raw)
        tables = [t for b in batches.values() for t in b.tables]
        return FetchResult(raw=raw, records={FILINGS.name: concat_records(tables, FILINGS)},
                           next_cursor=next_cursor or None, meta=meta)

    def _window(self, mark: Mark) -> tuple[dt.date, dt.date]:
        today = ist_date(self.clock())
        start = ist_date(mark.start_value) if mark.start_value else today
        return min(start, today), today

    async def _nse(self, mark: Mark, batch: _Batch) -> None:
        start, end = self._window(mark)
        params = {"index": "equities", "from_date": start.strftime(NSE_DATE), "to_date": end.strftime(NSE_DATE)}
        await received(self.nse.get(NSE_ANNOUNCEMENTS_PATH, params, referer_path=NSE_ANNOUNCEMENTS_PAGE),
                       self.name, FILINGS.name, batch.raw)
        batch.pages = 1
        batch.take(await batch.read("NSE announcements"), mark)

    async def _bse(self, mark: Mark, batch: _Batch) -> None:
        start, end = self._window(mark)
        page_size = 0

        async def page(number: int | None) -> tuple[int, Announcements]:
            assert number is not None
            request = self.bse_http.get(
                self.bse_base_url + BSE_ANNOUNCEMENTS_PATH, headers=BSE_HEADERS,
                params={"pageno": number, "strCat": "-1", "subcategory": "-1",
                        "strPrevDate": start.strftime(BSE_DATE), "strToDate": end.strftime(BSE_DATE),
                        "strScrip": "", "strSearch": "P", "strType": "C"})
            await received(request, self.name, FILINGS.name, batch.raw)
            return number, await batch.read(f"BSE announcements page {number}")

        def next_page(fetched: tuple[int, Announcements]) -> int | None:
            number, read = fetched
            total = read.total
            return None if not read.outcomes or (total is not None and number * page_size >= total) else number + 1

        pages = Pager(page, next_page, limit=self.page_cap, first=1)
        async for _, read in pages:
            reached_seen = batch.take(read, mark)
            page_size = page_size or len(read.outcomes)
            if reached_seen:
                break  # newest first: every later page is older still
        batch.pages = pages.pages
        if pages.truncated:
            batch.truncated = True
            log.warning("filings: BSE has more than %d pages of new announcements since %s; the older ones beyond "
                        "the page cap are skipped (raise page_cap or poll more often)", self.page_cap, start)


def _nse_items(doc: Any) -> list[Any]:
    """The announcements of NSE's answer; SourceError when it holds no list of them."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]  # some NSE listings wrap their rows; accept both shapes
    if not isinstance(doc, list):
        raise SourceError(f"filings: NSE announcements are a {type(doc).__name__}, expected a list")
    return doc


def _bse_rows(doc: Any, number: int) -> tuple[Any, list[Any]]:
    """(document, announcement rows) of a BSE page; SourceError when it holds no 'Table' list."""
    rows = doc.get("Table") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise SourceError(f"filings: BSE announcements page {number} has no 'Table' list")
    return doc, rows


def _bse_total_rows(doc: Mapping[str, Any]) -> int | None:
    """How many announcements BSE says the query matches (Table1[0].ROWCNT), if it says."""
    totals = doc.get("Table1")
    if isinstance(totals, list) and totals and isinstance(totals[0], dict) and isinstance(totals[0].get("ROWCNT"), int):
        return totals[0]["ROWCNT"]
    return None
