"""Reading what a service sent without trusting it: bounded JSON, safe numbers, times, texts and links.

Every adapter parses upstream bytes through these, so bad upstream data (NaN, 2^63
counts, year-1 dates, lone surrogates, Unicode digits, JSON nested 1,000 deep, 10 MB
bodies) ends as a declared outcome, at one of two levels:

- a record: a record-level ValueError (`RECORD_ERRORS`) that the adapter's record loop
  catches, counts and notes in `meta["unparseable"]` (`note_unparseable`); the poller makes
  it a quarantine row (reason `unparseable`) pointing at its raw payload, and the poll moves on;
- a whole payload: a `PayloadError` (a ValueError) that the adapter turns into
  `UnreadablePayload`, with the payload appended to the poll's `raw` (so it is kept in the
  raw zone). An adapter that makes several requests per poll (per symbol, subreddit, feed,
  channel, video, exchange, query) notes it in `meta["unreadable"]` (`note_unreadable`) and
  goes on with its other requests; only when nothing it received could be read does the
  poll raise (`unreadable_poll`).

Values that no real market or platform produces become None (optional fields) or a
ValueError (required ones): times before 1990 or after tomorrow, counts below 0 or from
2^53 up, non-finite numbers, links that are not http(s). "Tomorrow" is the day after the
payload was received when a parser says so (`as_of`), so a payload read again from the raw
zone months later gives the records it gave when it arrived.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import math
import re
from typing import Any, Callable, Iterator, TypeVar

from sentinel_ray.records import SourceError

T = TypeVar("T")

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024  # no listing page of any adapted service comes near; 10 MB is an attack
MAX_DEPTH = 64  # the deepest real payload (YouTube comment threads) nests under 10
MAX_COUNT = 2 ** 53  # counts from here up are not counts (and lose precision as doubles)
EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)
FUTURE_SLACK = dt.timedelta(days=1)  # clocks differ; later than this is not a real time
OFF_LOOP_BYTES = 64 * 1024  # documents larger than this are parsed in a worker thread

# What reading one record may raise: the record is skipped and noted, the poll goes on.
RECORD_ERRORS: tuple[type[Exception], ...] = (KeyError, TypeError, ValueError, AttributeError, IndexError,
                                              OverflowError, ArithmeticError, RecursionError)


class PayloadError(ValueError):
    """A whole payload cannot be read (too big, too deep, not the format): adapters turn it into a SourceError."""


class UnreadablePayload(SourceError):
    """A poll met a payload it cannot read at all. `raw` holds the payloads received so far in
    this poll, that one included (last), for the raw zone; the poll's rows are not emitted.

    Raised out of `fetch` it means nothing the poll received could be read: the poller keeps
    `raw`, reports it, and polls again at the usual interval from `next_cursor` (None: the
    cursor stays where it was). A retry with backoff would only fetch the same bytes again.
    """

    def __init__(self, message: str, raw: list[Any] | None = None, *,
                 next_cursor: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.raw = list(raw or [])
        self.next_cursor = next_cursor


# --- payloads ---------------------------------------------------------------------------------


def check_size(body: bytes | str, what: str = "payload", max_bytes: int = MAX_PAYLOAD_BYTES) -> None:
    if len(body) > max_bytes:
        raise PayloadError(f"{what} is {len(body):,} bytes, more than the {max_bytes:,} a payload may hold")


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # 1e999 parses as inf


def loads_json(body: bytes | str, what: str = "payload", *, max_bytes: int = MAX_PAYLOAD_BYTES,
               max_depth: int = MAX_DEPTH) -> Any:
    """JSON from a service. NaN/Infinity (and numbers too large for a double) become null: no
    field takes them. Lone surrogates become U+FFFD. PayloadError when the body is larger
    than `max_bytes`, nests deeper than `max_depth`, or is not JSON."""
    check_size(body, what, max_bytes)
    try:
        doc = json.loads(body, parse_constant=lambda _: None, parse_float=_finite_float)
    except RecursionError:
        raise PayloadError(f"{what} nests deeper than {max_depth} levels") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise PayloadError(f"{what} is not JSON ({type(e).__name__}: {str(e)[:120]})") from None
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    _check_tree(doc, what, max_depth, fix_strings=_SURROGATE_ESCAPE.search(raw) is not None)
    return doc


def _check_tree(doc: Any, what: str, max_depth: int, *, fix_strings: bool) -> None:
    """Depth bound without recursion; with `fix_strings`, lone surrogates replaced in place."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise PayloadError(f"{what} nests deeper than {max_depth} levels")
        if isinstance(node, dict):
            if fix_strings:
                for key in list(node):
                    value = node[key]
                    clean_key = clean_text(key) if isinstance(key, str) else key
                    if isinstance(value, str):
                        value = clean_text(value)
                    if clean_key != key:
                        del node[key]
                    node[clean_key] = value
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            if fix_strings:
                for i, value in enumerate(node):
                    if isinstance(value, str):
                        node[i] = clean_text(value)
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


async def off_loop(parse: Callable[..., T], body: bytes | str, *args: Any) -> T:
    """`parse(body, *args)`: in a worker thread when the body is big enough to hold the event loop up."""
    if len(body) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(parse, body, *args)
    return parse(body, *args)


# --- values -----------------------------------------------------------------------------------


def clean_text(value: str) -> str:
    """`value` as valid Unicode: lone surrogates (from \\ud800 escapes, char refs) become U+FFFD."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def optional_text(value: Any) -> str | None:
    """A string field: cleaned and stripped; None when absent, empty or not a string."""
    if not isinstance(value, str):
        return None
    text = clean_text(value).strip()
    return text or None


def count(value: Any) -> int | None:
    """A count (likes, views, volume): an int, an integral finite float, or ASCII digits;
    None when absent, unreadable, negative or from 2^53 up."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.replace(",", "").strip()
        if not text.isascii() or not text.isdigit():
            return None
        value = int(text)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if not isinstance(value, int):
        return None
    return value if 0 <= value < MAX_COUNT else None


def number(value: Any) -> float | None:
    """A price-like number: int, finite float, or an ASCII decimal string ("1,234.50");
    None when absent ("", "-") or unreadable. Never NaN or infinite."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.replace(",", "").strip()
        if not text or text == "-":
            return None
        if not text.isascii():
            raise ValueError(f"not an ASCII number: {text[:20]!r}")  # float() reads Unicode digits
        value = float(text)
    elif isinstance(value, int):
        if abs(value) >= MAX_COUNT:
            raise ValueError("number out of range")
        value = float(value)
    elif not isinstance(value, float):
        raise TypeError(f"not a number: {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def ascii_int(value: Any) -> int:
    """An id or count written as ASCII digits (or an int); ValueError otherwise (`"١٢٣".isdigit()` is True)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"not an integer: {str(value)[:20]!r}")


_AS_OF: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("parsing_as_of", default=None)


@contextlib.contextmanager
def as_of(moment: dt.datetime) -> Iterator[None]:
    """Within the block, times are judged as of `moment` (a payload's received_at), not the clock."""
    token = _AS_OF.set(moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc))
    try:
        yield
    finally:
        _AS_OF.reset(token)


def latest_allowed() -> dt.datetime:
    """The latest time a real record can carry: a day after now (or after the `as_of` moment)."""
    return (_AS_OF.get() or dt.datetime.now(dt.timezone.utc)) + FUTURE_SLACK


def in_range(ts: dt.datetime) -> dt.datetime:
    """`ts` (aware) when it is a time a real record can carry (1990 to tomorrow); ValueError otherwise."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    if not EARLIEST <= ts <= latest_allowed():
        raise ValueError(f"time out of range: {ts.isoformat()}")
    return ts


def epoch_seconds(value: Any) -> dt.datetime:
    """Epoch seconds (int or finite float) as an aware UTC datetime in range; ValueError/TypeError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("epoch seconds must be a number")
    if not math.isfinite(value) or not EARLIEST.timestamp() <= value <= latest_allowed().timestamp():
        raise ValueError(f"epoch seconds out of range: {value!r}")
    return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def http_url(value: Any) -> str | None:
    """`value` when it is an absolute http(s) link with a host; None otherwise (javascript:, data:, relative)."""
    if not isinstance(value, str):
        return None
    url = clean_text(value).strip()
    return url if re.match(r"(?i)^https?://[^/\s?#]+", url) else None


# --- records that could not be read ------------------------------------------------------------


def record_error(error: BaseException) -> str:
    """Why a record could not be read, as its note says it (a parser keeps it with the record's position)."""
    return f"{type(error).__name__}: {str(error)[:200]}"


def note_unparseable(meta: dict[str, Any], payload: int, position: int, error: BaseException | str) -> None:
    """Note in `meta["unparseable"]` that record `position` of raw payload `payload` (its index in
    FetchResult.raw) could not be read, and why; a follow-up quarantines them (reason `unparseable`)."""
    reason = error if isinstance(error, str) else record_error(error)
    meta.setdefault("unparseable", []).append({"payload": payload, "position": position,
                                               "error": clean_text(reason)})


# --- payloads that could not be read -------------------------------------------------------------


def note_unreadable(meta: dict[str, Any], payload: int, error: BaseException | str) -> None:
    """Note in `meta["unreadable"]` that raw payload `payload` (its index in FetchResult.raw) could
    not be read at all, and why: the poll went on with its other requests, the poller keeps the
    payload in the raw zone and reports it."""
    reason = error if isinstance(error, str) else str(error) or type(error).__name__
    meta.setdefault("unreadable", []).append({"payload": payload, "error": clean_text(reason)[:500]})


def unreadable_poll(raw: list[Any], meta: dict[str, Any]) -> UnreadablePayload | None:
    """The error to raise when every payload this poll received was unreadable (`meta["unreadable"]`
    names them all): nothing to return, every cursor where it was. None when anything was read."""
    notes = meta.get("unreadable") or []
    if not raw or len({note["payload"] for note in notes}) < len(raw):
        return None
    shown = 3
    more = f"; and {len(notes) - shown} more unreadable payloads" if len(notes) > shown else ""
    return UnreadablePayload("; ".join(note["error"] for note in notes[:shown]) + more, raw)
