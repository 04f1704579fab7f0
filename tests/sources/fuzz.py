"""A seeded mutation fuzzer for source adapters: bad upstream payloads served from 127.0.0.1 to a real `fetch`.

Each adapter is described by a `Target`: the fixture payloads it is normally served
(tests/fakes/payloads/), which routes may be mutated, and how to build the adapter at a
server. A case mutates one route's payload with one to three of the kinds attackers
(and broken upstreams) produce: truncated bodies, wrong JSON types, NaN/Infinity, 2^63
counts, year-1 and year-9999 dates, lone surrogates, Unicode digits, deep nesting, HTML
for JSON, unclosed tags, 10 MB bodies, trickled bodies, huge server-asked waits.

A case passes when `fetch` returns or raises a declared error (`SourceError` and its
subclasses) within `HANG_S`, and every row it returns is in range (`row_problems`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
from aiohttp import web

from sentinel_ray.records import FetchResult, RawPayload, SourceError
from sentinel_ray.sources.base import Source
from tests.fakes.server import FakeService

HANG_S = 10.0  # a correctness bound (no hang), not a speed assertion
EARLIEST_MS = int(dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
MAX_COUNT = 2 ** 53
BIG_BYTES = 10 * 1024 * 1024

# --- what a mutation may put in a value ------------------------------------------------------

BAD_DATES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01", "9999-12-31", "1899-12-31T00:00:00Z",
             "1970-01-01T00:00:00Z", "01-Jan-0001 00:00:00", "31-Dec-9999 23:59:59", "0001-01-01T00:00:00.95",
             "9999-12-31T23:59:59.999", "Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 +0000",
             "Sun, 31 Dec 1899 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT", "2026-02-30T00:00:00Z",
             "+275760-09-13T00:00:00Z", "31-Dec-1899 10:00:00"]
BAD_NUMBERS: list[Any] = [float("nan"), float("inf"), float("-inf"), 2 ** 63, 2 ** 63 - 1, -(2 ** 63), 2 ** 64,
                          10 ** 400, -1, -5, 0, 1e308, -1e308, 1.5, 0.0, 253402300800, -62135596800, 1e20,
                          2 ** 53, 9.999e15]
BAD_STRINGS = ["", " ", "{}", "[]", "null", "NaN", "Infinity", "\ud800", "a\udfffb", "\udc80\ud800", "١٢٣٤",
               "²³", "１２３", "٣٣.٤K", "javascript:alert(1)", "data:text/html,<b>x</b>", "/relative/path",
               "//no-scheme.example", "<script>alert(1)</script>", "x" * 5000, "\x00\x01", "1,234.50",
               "-", "33.4K", "99999999999999999999999", "-7", "1e999", "\u202e\u0000"]
TYPE_SWAPS: list[Any] = [None, True, False, [], {}, [1, 2], {"a": 1}, "x", 0, 1.5]
LINE_BREAKS = ["\n", "\u2028", "\r\n"]


def deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


def bad_value(rng: random.Random) -> Any:
    pool = rng.choice([BAD_DATES, BAD_NUMBERS, BAD_STRINGS, TYPE_SWAPS, BAD_NUMBERS])
    return rng.choice(pool)


# --- JSON mutations ----------------------------------------------------------------------------


def _paths(doc: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
    """(container, key) of every value in `doc` (iteratively)."""
    out, stack = [], [doc]
    while stack and len(out) < limit:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            out.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return out


def _dumps(doc: Any) -> bytes:
    # ensure_ascii: lone surrogates go out as \ud800 escapes, as a broken upstream writes them
    text = json.dumps(doc, allow_nan=True, ensure_ascii=True, default=str)
    return text.encode()


def mutate_json_values(body: bytes, rng: random.Random) -> bytes:
    doc = json.loads(body)
    paths = _paths(doc)
    if not paths:
        return _dumps(bad_value(rng))
    for _ in range(rng.randint(1, 4)):
        container, key = rng.choice(paths)
        roll = rng.random()
        try:
            if roll < 0.08 and isinstance(container, dict):
                del container[key]
            elif roll < 0.12:
                container[key] = deep(rng.choice([50, 200, 1000]))
            else:
                container[key] = bad_value(rng)
        except (KeyError, IndexError):
            pass
        paths = _paths(doc)
        if not paths:
            break
    out = _dumps(doc)
    if rng.random() < 0.1:  # a number no double holds, written as the upstream would
        out = re.sub(rb"(?<=[:\[,])\s*\d+(\.\d+)?(?=[,\]}])", b"1e999", out, count=1)
    return out


def _garble(kind: str, body: bytes, rng: random.Random) -> bytes:
    """Random bytes flipped, or a byte sequence that is not UTF-8 inserted."""
    if kind == "flip":
        data = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    at = rng.randint(0, len(body))
    return body[:at] + rng.choice([b"\xff\xfe", b"\xed\xa0\x80", b"\xc3", b"\x80"]) + body[at:]


def mutate_json_body(body: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["truncate", "html", "empty", "scalar", "deep", "unclosed", "flip", "badutf8", "wrap",
                       "array", "bom"])
    if kind == "truncate":
        return body[:rng.randint(0, max(0, len(body) - 1))]
    if kind == "html":
        return b"<html><head><title>Access Denied</title></head><body>blocked</body></html>"
    if kind == "empty":
        return b""
    if kind == "scalar":
        return rng.choice([b"null", b"true", b"0", b'"x"', b"NaN", b"Infinity", b"[]", b"{}", b"1e999"])
    if kind == "deep":
        n = rng.choice([100, 1000, 5000])
        return b"[" * n + b"]" * n if rng.random() < 0.5 else b'{"a":' * n + b"1" + b"}" * n
    if kind == "unclosed":
        return b"[" * rng.choice([1000, 20000])
    if kind in ("flip", "badutf8"):
        return _garble(kind, body, rng)
    if kind == "wrap":
        return b'{"data": ' + body + b"}"
    if kind == "array":
        return b"[" + body + b"]"
    return b"\xef\xbb\xbf" + body  # bom


# --- markup (HTML, RSS/Atom) mutations ----------------------------------------------------------

_TEXT_SPAN = re.compile(rb">([^<>]{1,200})<")
_ATTR_VALUE = re.compile(rb'="([^"]{0,200})"')
MARKUP_VALUES = [*BAD_DATES, "\ud800", "&#xD800;", "&#55296;", "&#0;", "&#x110000;", "١٢٣٤", "٣٣.٤K", "99999999999999999999B",
                 "-5", "NaN", "javascript:alert(1)", "data:x", "/rel", "", "{}", "9" * 40, "2.5M", "1e999K",
                 "dalal_rockets/١٠٥", "dalal_rockets/99999999999999999999999", "dalal_rockets/-1", "&amp;lt;",
                 "<![CDATA[x]]>"]


def _markup_value(rng: random.Random) -> bytes:
    value = rng.choice(MARKUP_VALUES)
    return value.encode("utf-8", "surrogatepass")


def mutate_markup_values(body: bytes, rng: random.Random) -> bytes:
    out = body
    for _ in range(rng.randint(1, 4)):
        pattern = _TEXT_SPAN if rng.random() < 0.5 else _ATTR_VALUE
        spans = list(pattern.finditer(out))
        if not spans:
            continue
        m = rng.choice(spans)
        out = out[:m.start(1)] + _markup_value(rng) + out[m.end(1):]
    return out


def mutate_markup_body(body: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["truncate", "json", "empty", "deep", "unclosed", "flip", "badutf8", "entities", "dup",
                       "nul"])
    if kind == "truncate":
        return body[:rng.randint(0, max(0, len(body) - 1))]
    if kind == "json":
        return b'{"error": "not html"}'
    if kind == "empty":
        return b""
    if kind == "deep":
        n = rng.choice([200, 1000, 3000])
        at = body.find(b"<body") if b"<body" in body else body.find(b"<channel>")
        at = max(at, 0)
        return body[:at] + b"<div>" * n + body[at:]
    if kind == "unclosed":
        at = rng.randint(0, len(body))
        return body[:at] + b"<b>" * rng.choice([1000, 10000]) + body[at:]
    if kind in ("flip", "badutf8"):
        return _garble(kind, body, rng)
    if kind == "entities":  # a small "billion laughs": an XML parser must not expand it
        laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;'
                  b'&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'
                  b'&lol2;&lol2;">]>')
        return laughs + re.sub(rb"^<\?xml[^>]*\?>", b"", body).replace(b"</title>", b"&lol3;</title>", 1)
    if kind == "dup":
        return body + body
    return body.replace(b">", b">\x00", 3)  # nul


# --- cases ----------------------------------------------------------------------------------


@dataclass
class Route:
    """A route the fuzzer serves: its fixture body, content type and headers."""

    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    mutable: bool = True


@dataclass
class Case:
    index: int
    route: str
    kinds: list[str]
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    trickle_s: float = 0.0  # spread the body over this long


@dataclass
class Target:
    """An adapter under fuzz: its routes (path -> Route) and how to build it at a server URL."""

    name: str
    routes: dict[str, Route]
    make: Callable[[str], Source]
    markup: bool = False  # HTML/XML payloads rather than JSON
    wait_headers: list[dict[str, str]] = field(default_factory=list)  # huge server-asked waits to try
    cursor: dict[str, Any] | None = None


def make_cases(target: Target, n: int, seed: int, *, big: int = 2, trickle: int = 1) -> list[Case]:
    """`n` cases for `target`, reproducible from `seed`: the last `big` serve 10 MB or deep bodies,
    `trickle` trickle their body, a few ask for huge waits; the rest mutate small fixtures."""
    rng = random.Random(f"{target.name}:{seed}")
    mutable = [p for p, r in target.routes.items() if r.mutable]
    cases: list[Case] = []
    for i in range(n):
        path = rng.choice(mutable)
        base = target.routes[path].body
        kinds: list[str] = []
        body = base
        if i >= n - big:
            kinds = ["big"]
            if target.markup:
                body = base + b"<b>" * (100_000) + b"x" * (BIG_BYTES - len(base) - 300_000)
            else:
                body = b'{"pad": "' + b"x" * BIG_BYTES + b'", "data": ' + base + b"}"
            cases.append(Case(i, path, kinds, body))
            continue
        if i >= n - big - trickle:
            cases.append(Case(i, path, ["trickle"], base, trickle_s=30.0))
            continue
        if target.wait_headers and i % 40 == 7:
            headers = target.wait_headers[(i // 40) % len(target.wait_headers)]
            cases.append(Case(i, path, ["wait"], base, status=int(headers.get(":status", "429")),
                              headers={k: v for k, v in headers.items() if k != ":status"}))
            continue
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if target.markup:
                if rng.random() < 0.7:
                    kinds.append("values")
                    body = mutate_markup_values(body, rng)
                else:
                    kinds.append("body")
                    body = mutate_markup_body(body, rng)
            else:
                try:
                    json.loads(body)
                    structured = True
                except (ValueError, RecursionError):
                    structured = False
                if structured and rng.random() < 0.75:
                    kinds.append("values")
                    try:
                        body = mutate_json_values(body, rng)
                    except RecursionError:  # deep enough already
                        pass
                else:
                    kinds.append("body")
                    body = mutate_json_body(body, rng)
        cases.append(Case(i, path, kinds, body))
    return cases


# --- serving ----------------------------------------------------------------------------------


class FuzzService(FakeService):
    """Serves a target's routes; the current case replaces one route's answer (or trickles it)."""

    def __init__(self, routes: dict[str, Route]) -> None:
        super().__init__()
        self.routes = routes
        self.case: Case | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404, text="no route")
        case = self.case
        if case is None or case.route != request.path:
            return web.Response(status=route.status, body=route.body, headers=route.headers,
                                content_type=route.content_type)
        headers = {**route.headers, **case.headers}
        if case.trickle_s:
            response = web.StreamResponse(status=200, headers={**headers, "Content-Type": route.content_type})
            await response.prepare(request)
            step = max(1, len(case.body) // 100)
            pause = case.trickle_s / 100
            for at in range(0, len(case.body), step):
                await response.write(case.body[at:at + step])
                await asyncio.sleep(pause)
            await response.write_eof()
            return response
        return web.Response(status=case.status, body=case.body, headers=headers, content_type=route.content_type)


# --- judging --------------------------------------------------------------------------------


def _url_ok(value: str) -> bool:
    return re.match(r"(?i)^https?://[^/\s?#]+", value) is not None


def row_problems(result: FetchResult) -> list[str]:
    """What is out of range in the result: times outside 1990..tomorrow, counts below 0 or from 2^53,
    non-finite numbers, strings Arrow cannot hold, links that are not http(s), a cursor JSON cannot hold."""
    problems: list[str] = []
    latest_ms = int((time.time() + 86400 + 60) * 1000)
    if not isinstance(result, FetchResult):
        return [f"fetch returned {type(result).__name__}"]
    if not all(isinstance(r, RawPayload) for r in result.raw):
        problems.append("raw holds something other than RawPayloads")
    try:
        json.dumps(result.next_cursor, allow_nan=False)
    except (TypeError, ValueError) as e:
        problems.append(f"cursor not JSON-safe: {e}")
    for dataset, table in result.records.items():
        if not isinstance(table, pa.Table):
            problems.append(f"{dataset}: not a table")
            continue
        for name in table.column_names:
            column = table.column(name)
            if column.null_count == len(column):
                continue
            kind = column.type
            try:
                for chunk in column.chunks:
                    chunk.validate(full=True)
            except pa.ArrowInvalid as e:
                problems.append(f"{dataset}.{name}: invalid array ({e})")
                continue
            if pa.types.is_timestamp(kind):
                ms = column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
                lo, hi = pc.min(ms).as_py(), pc.max(ms).as_py()
                if lo < EARLIEST_MS or hi > latest_ms:
                    problems.append(f"{dataset}.{name}: time out of range ({lo}..{hi} ms)")
            elif pa.types.is_integer(kind):
                lo, hi = pc.min(column).as_py(), pc.max(column).as_py()
                if lo < 0 or hi >= MAX_COUNT:
                    problems.append(f"{dataset}.{name}: count out of range ({lo}..{hi})")
            elif pa.types.is_floating(kind):
                values = [v for v in column.to_pylist() if v is not None]
                if not all(math.isfinite(v) for v in values):
                    problems.append(f"{dataset}.{name}: non-finite number")
            elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
                values = [v for v in column.to_pylist() if v is not None]
                for v in values:
                    try:
                        v.encode("utf-8")
                    except UnicodeEncodeError:
                        problems.append(f"{dataset}.{name}: lone surrogate")
                        break
                if "url" in name and not all(_url_ok(v) for v in values):
                    bad = next(v for v in values if not _url_ok(v))
                    problems.append(f"{dataset}.{name}: not an http(s) link: {bad[:60]!r}")
    return problems


@dataclass
class Outcome:
    case: Case
    verdict: str  # "ok", "declared", "crash", "hang", "out_of_range"
    detail: str = ""
    seconds: float = 0.0


async def run_case(target: Target, service: FuzzService, case: Case) -> Outcome:
    service.case = case
    source = target.make(service.url)
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(source.fetch(target.cursor), HANG_S)
    except SourceError as e:
        return Outcome(case, "declared", f"{type(e).__name__}: {str(e)[:120]}", time.monotonic() - started)
    except asyncio.TimeoutError:
        return Outcome(case, "hang", f"no answer within {HANG_S:.0f}s", time.monotonic() - started)
    except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
        return Outcome(case, "crash", f"{type(e).__name__}: {str(e)[:160]}", time.monotonic() - started)
    finally:
        try:
            await asyncio.wait_for(source.close(), HANG_S)
        except Exception:  # noqa: BLE001 - closing is not under test
            pass
    problems = row_problems(result)
    if problems:
        return Outcome(case, "out_of_range", "; ".join(problems)[:300], time.monotonic() - started)
    return Outcome(case, "ok", "", time.monotonic() - started)


def run_target(target: Target, cases: list[Case]) -> list[Outcome]:
    """Every case against a fresh adapter (one server for all), sequentially in one event loop."""
    with FuzzService(target.routes) as service:
        async def run_all() -> list[Outcome]:
            return [await run_case(target, service, case) for case in cases]

        return asyncio.run(run_all())


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    return counts


def failures(outcomes: list[Outcome]) -> list[str]:
    return [f"case {o.case.index} ({'+'.join(o.case.kinds)} on {o.case.route}): {o.verdict}: {o.detail}"
            for o in outcomes if o.verdict in ("crash", "hang", "out_of_range")]
