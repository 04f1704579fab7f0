"""Parse throughput of every source adapter, and ticker extraction throughput.

    .venv/bin/python bench/sources_parse.py [--seconds 1.0] [--posts 100000] [--real DIR]

Adapters: each one that exists in sentinel_ray/sources/ (imported lazily; one that does
not import yet is reported "missing") is fed its real recorded payloads from the shared
fixtures (`../shared/fixtures/real`), or the repository's hand-made fixtures in the
services' formats where no real recording exists. What is timed is the adapter's own
code from response body to records table (JSON/HTML/XML parsing, row building, Arrow
table), called directly; tickers are not the adapters' to find any more (the pipeline's
enrich step is timed below). Yahoo's parsing happens inside yfinance,
not separable from its HTTP, so Yahoo is timed through `fetch` against an in-process
aiohttp fixture server on 127.0.0.1 serving the recorded chart responses.

Ticker extraction: `pipeline.tickers.extract_tickers` over --posts synthetic posts written
like Indian market chatter and headlines (cashtags, symbols, company names, Hinglish,
noise), one process, one core, and the pipeline's `enrich` step over the same posts as a
table with `tickers` null (what every adapter hands over: Arrow to Python and back
included). Target: >= 50,000 posts/s; below it, the profile is printed.

Every figure is the best of 3 rounds: other processes on a shared machine only slow a
round down, never speed it up. The last line printed is one JSON object: `ticker_extraction_posts_s`,
`enrich_posts_s` and one `<adapter>_records_s` per adapter (null when missing or failing).
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gzip
import importlib
import io
import json
import pstats
import random
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sentinel_ray import market
from sentinel_ray.config import YahooSettings
from sentinel_ray.sources.posts import posts_table

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "fixtures" / "real"
FAKES = ROOT / "tests" / "fakes" / "payloads"
NOW = dt.datetime(2025, 2, 21, tzinfo=dt.timezone.utc)
TARGET_POSTS_S = 50_000
ROUNDS = 3  # best of: the machine may be shared with other work
ADAPTERS = ("yahoo", "nse", "filings", "reddit", "x", "telegram", "youtube", "rss")  # = sentinel_ray.sources.<name>


class Unavailable(Exception):
    """The adapter (or its payloads) is not there to be measured."""


@dataclass
class Case:
    adapter: str
    method: str  # "parse": the adapter's parse code called directly; "fetch": through a local server
    payload: str  # what it was fed
    run: Callable[[], int]  # one pass over all payloads -> records produced
    close: Callable[[], None] = lambda: None


# --- payloads -----------------------------------------------------------------------------


def real_or_fake(real: Path, real_glob: str, fake_names: list[str], fake_dir: str) -> tuple[list[bytes], str]:
    files = sorted(real.glob(real_glob)) if real.is_dir() else []
    if files:
        return [f.read_bytes() for f in files], f"real: {real.name}/{real_glob} ({len(files)} files)"
    paths = [FAKES / fake_dir / n for n in fake_names]
    if not all(p.exists() for p in paths):
        raise Unavailable(f"no payloads ({real / real_glob} absent, repo fixtures absent)")
    return [p.read_bytes() for p in paths], f"repo fixtures: {fake_dir}/ ({len(paths)} files)"


# --- one builder per adapter: the module -> a Case ------------------------------------------


def case_youtube(mod: Any, real: Path) -> Case:
    bodies, what = real_or_fake(real / "youtube_commentthreads", "commentThreads_*.json",
                                ["comments_h5Rk2mNqT0w_page1.json", "comments_h5Rk2mNqT0w_page2.json",
                                 "comments_Vb9cT4yHn2Q.json"], "youtube")

    def run() -> int:
        n = 0
        for body in bodies:
            page = mod.parse_comment_threads(body, NOW)
            n += posts_table([c.post for c in page.items], platform=mod.PLATFORM, source="youtube").num_rows
        return n
    return Case("youtube", "parse", what, run)


def case_rss(mod: Any, real: Path) -> Case:
    # no real feed recording among the shared fixtures: the repo's feeds in the publishers' formats
    names = {"et_markets.xml": "text/xml", "moneycontrol_marketreports.xml": "application/rss+xml",
             "business_standard_markets.rss": "application/rss+xml", "atom_markets.xml": "application/atom+xml"}
    feeds = [((FAKES / "rss" / n).read_bytes(), ct) for n, ct in names.items() if (FAKES / "rss" / n).exists()]
    if not feeds:
        raise Unavailable("no feed payloads")

    def run() -> int:
        n = 0
        for body, content_type in feeds:
            parsed = mod.parse_feed(body, "https://example.invalid/feed", NOW, content_type)
            n += posts_table(parsed.posts, platform=mod.PLATFORM, source="rss").num_rows
        return n
    return Case("rss", "parse", f"repo fixtures: rss/ ({len(feeds)} feeds)", run)


def case_telegram(mod: Any, real: Path) -> Case:
    bodies, what = real_or_fake(real / "telegram_preview_html", "full.html", ["latest.html", "after_104.html"],
                                "telegram")

    def run() -> int:
        n = 0
        for body in bodies:
            page = mod.parse_page(body, "bench")
            posts = [message.post(NOW) for message in page.messages if message.text is not None]
            n += posts_table(posts, platform="telegram", source="telegram").num_rows
        return n
    return Case("telegram", "parse", what, run)


def _cassette_bodies(folder: Path) -> list[bytes]:
    """First response body of each tweepy cassette (vcrpy YAML, gzip bodies in !!binary)."""
    import yaml

    bodies = []
    for path in sorted(folder.glob("test_client_*.yaml")):
        response = yaml.safe_load(path.read_text())["interactions"][0]["response"]
        body = response["body"]["string"]
        body = body if isinstance(body, bytes) else body.encode()
        if "gzip" in response["headers"].get("content-encoding", []):
            body = gzip.decompress(body)
        bodies.append(body)
    return bodies


def case_x(mod: Any, real: Path) -> Case:
    folder = real / "tweepy_cassettes"
    if folder.is_dir():
        bodies, what = _cassette_bodies(folder), "real: tweepy_cassettes/*.yaml"
    else:
        bodies, what = real_or_fake(folder, "-", ["search_page1.json", "search_page2.json"], "x")

    def run() -> int:
        n = 0
        for body in bodies:
            page = mod._parse_page(body, "bench")
            posts = [post for tweet in page.tweets if (post := mod._post(tweet, page.users, NOW)) is not None]
            n += posts_table(posts, platform="x", source="x").num_rows
        return n
    return Case("x", "parse", what, run)


def case_reddit(mod: Any, real: Path) -> Case:
    # no real Reddit recording among the shared fixtures
    names = ["new_page1.json", "new_page2.json", "comments.json"]
    bodies, what = real_or_fake(real / "reddit", "-", names, "reddit")

    def run() -> int:
        n = 0
        for body in bodies:
            children, _ = mod._listing(json.loads(body), "bench")
            items = [mod._item(child) for child in children]
            posts = [mod._post(item, NOW) for item in items if item is not None]
            n += posts_table(posts, platform="reddit", source="reddit").num_rows
        return n
    return Case("reddit", "parse", what, run)


def case_nse(mod: Any, real: Path) -> Case:
    folder = real / "NseIndiaApi_samples"
    if folder.is_dir():
        # NseIndiaApi stores equityResponse[0] of getSymbolData and the bare history list; the API wraps both
        quote = json.dumps({"equityResponse": [json.loads((folder / "quote.json").read_text())]}).encode()
        history = json.dumps({"data": json.loads((folder / "fetch_equity_historical_data.json").read_text())}).encode()
        what = "real: NseIndiaApi_samples quote + historical"
    else:
        quote, history = (FAKES / "nse" / "quote_reliance.json").read_bytes(), \
            (FAKES / "nse" / "history_reliance.json").read_bytes()
        what = "repo fixtures: nse/"

    def run() -> int:
        bars = mod._Bars()
        updated, ohlcv = mod.quote_bar(mod.quote_record(json.loads(quote), "HDFCBANK"))
        bars.add("HDFCBANK", market.ist_midnight_utc(market.ist_date(updated)), ohlcv, NOW)
        for row in mod.history_rows(json.loads(history), "HDFCBANK"):
            day, ohlcv = mod.history_bar(row)
            bars.add("HDFCBANK", market.ist_midnight_utc(day), ohlcv, NOW)
        return bars.table().num_rows
    return Case("nse", "parse", what, run)


def case_filings(mod: Any, real: Path) -> Case:
    announcements = real / "NseIndiaApi_samples" / "announcements.json"
    nse_body = announcements.read_bytes() if announcements.exists() else \
        (FAKES / "filings" / "nse_announcements.json").read_bytes()
    bse_bodies = [(FAKES / "filings" / n).read_bytes() for n in ("bse_page1.json", "bse_page2.json", "bse_page3.json")
                  if (FAKES / "filings" / n).exists()]  # no real BSE recording among the shared fixtures

    def run() -> int:
        filings = [mod.nse_filing(item) for item in json.loads(nse_body)]
        for body in bse_bodies:
            filings.extend(mod.bse_filing(item) for item in json.loads(body)["Table"])
        return mod.filings_table(filings, [NOW] * len(filings)).num_rows
    what = ("real: NseIndiaApi_samples/announcements.json" if announcements.exists() else "repo: nse_announcements")
    return Case("filings", "parse", f"{what} + repo fixtures: filings/bse_page*.json", run)


def case_yahoo(mod: Any, real: Path) -> Case:
    """yfinance parses the chart inside its HTTP call: time `fetch` against a local server."""
    from aiohttp import web

    # pandas deprecation notes from inside yfinance would bury the table; yfinance's import put
    # its own 'default' filter for them in front, so this one goes in after it
    warnings.filterwarnings("ignore", module=r"yfinance(\.|$)")
    files = sorted((real / "yahoo_finance2_chart").glob("chart-*.json")) if real.is_dir() else []
    bodies = []
    for path in files:
        doc = json.loads(path.read_text())["response"]["bodyJson"]
        result = doc["chart"]["result"][0]
        if result["meta"].get("dataGranularity") == "1d" and result.get("timestamp"):
            bodies.append(json.dumps(doc).encode())
    what = f"real: yahoo_finance2_chart daily charts ({len(bodies)} files)"
    if not bodies:
        bodies, what = [(FAKES / "yahoo" / "chart_1d.json").read_bytes()], "repo fixtures: yahoo/chart_1d.json"
    served = {"n": 0}

    async def chart(request: web.Request) -> web.Response:
        body = bodies[served["n"] % len(bodies)]
        served["n"] += 1
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/", lambda r: web.Response(body=b"", headers={"Set-Cookie": "A3=d=bench; Path=/"}))
    app.router.add_get("/v1/test/getcrumb", lambda r: web.Response(text="bench-crumb"))
    app.router.add_get("/v8/finance/chart/{symbol}", chart)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cache = tempfile.TemporaryDirectory(prefix="bench-yfinance-")
    settings = YahooSettings(tickers=["RELIANCE.NS"], base_url=f"http://127.0.0.1:{port}")
    source = mod.YahooSource(settings, intervals=("1d",), rate_per_s=1e6, burst=1_000_000, cache_dir=cache.name,
                             clock=lambda: NOW)

    def run() -> int:
        n = 0
        for _ in bodies:  # one chart per fetch, the server rotates through them
            n += loop.run_until_complete(source.fetch(None)).records["prices"].num_rows
        return n

    def close() -> None:
        loop.run_until_complete(source.close())
        loop.run_until_complete(runner.cleanup())
        loop.close()
        cache.cleanup()
    return Case("yahoo", "fetch", what, run, close)


BUILDERS: dict[str, Callable[[Any, Path], Case]] = {
    "yahoo": case_yahoo, "nse": case_nse, "filings": case_filings, "reddit": case_reddit, "x": case_x,
    "telegram": case_telegram, "youtube": case_youtube, "rss": case_rss,
}


def measure(run: Callable[[], int], seconds: float, rounds: int = ROUNDS) -> tuple[float, int, int]:
    """(records/s, records per pass, passes): full passes repeated for `seconds` in all, split in
    `rounds`; the best round counts (other processes on a shared machine only ever slow a round)."""
    per_pass = run()  # warm-up (imports, caches) and the record count
    if per_pass == 0:
        raise Unavailable("the payloads produced no records")
    best, total_passes = 0.0, 0
    for _ in range(rounds):
        passes, records, start = 0, 0, time.perf_counter()
        while True:
            records += run()
            passes += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds and passes >= 2:
                break
        best, total_passes = max(best, records / elapsed), total_passes + passes
    return best, per_pass, total_passes


def bench_adapters(real: Path, seconds: float) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
    lines, figures = [], {}
    for name in ADAPTERS:
        line: dict[str, Any] = {"adapter": name, "method": "-", "payload": "-", "per_pass": None, "rate": None}
        try:
            module = importlib.import_module(f"sentinel_ray.sources.{name}")
        except ImportError as e:
            line["status"] = f"missing ({e})"
            lines.append(line)
            figures[name] = None
            continue
        case = None
        try:
            case = BUILDERS[name](module, real)
            line.update(method=case.method, payload=case.payload)
            rate, per_pass, passes = measure(case.run, seconds)
            line.update(rate=rate, per_pass=per_pass, status=f"ok ({passes} passes)")
            figures[name] = rate
        except Unavailable as e:
            line["status"] = f"unavailable: {e}"
            figures[name] = None
        except Exception as e:  # an adapter still being written must not stop the others' figures
            line["status"] = f"error: {type(e).__name__}: {e}"
            figures[name] = None
            traceback.print_exc(limit=3)
        finally:
            if case is not None:
                case.close()
        lines.append(line)
    return lines, figures


# --- ticker extraction ---------------------------------------------------------------------------

_SOCIAL = [
    "{a} looking strong today, breakout above resistance 🚀",
    "bhai {a} me entry le lo, target {n} sl {m}",
    "${s} to the moon!! operator ne pakad liya hai",
    "Anyone holding {a}? Q{q} results next week, what do you expect",
    "#{s} {n} CE bought at {m}, lets see",
    "sold my {a} at {n}, booked {q}0% profit. now looking at {b}",
    "{a} vs {b} — which is better for long term SIP?",
    "kal {s} upper circuit lagega, mark my words",
    "why is {a} falling so much today?? anybody knows",
    "Portfolio update: {s} {n}, {t} {m}, cash 20%",
    "great idea but the market is closed today lol",
    "nifty 22500 pe resistance hai, bank nifty weak",
    "this guy is a fraud, telegram tips se paisa doob gaya",
    "Good morning traders, gap down opening expected",
    "{a} share price target {n} by Diwali, buy on dips",
    "I think Titan submarine story was crazy. anyway {s} buy",
]
_NEWS = [
    "{a} shares rise {q}% after Q{q} profit beats estimates",
    "Stocks to watch: {a}, {b}, {c} and {d}",
    "{a} board approves dividend of Rs {q} per share; record date announced",
    "Sensex, Nifty end flat; {a} and {b} top gainers, {c} drags",
    "Brokerages raise target price on {a} to Rs {n}; maintain buy",
    "{a} Q{q} results: net profit up {q}{q}% YoY at Rs {n} crore",
    "SEBI bars entities from market in {a} share price manipulation case",
    "Markets open higher tracking global cues; IT stocks lead",
    "FPI outflows continue for third week as rupee weakens",
    "{a} signs MoU with {b} for renewable energy projects",
]
_BODY = [
    "As per the latest exchange filing, the company said demand stayed healthy in the quarter.",
    "Management commentary on margins remains positive.",
    "Analysts expect volumes to improve going forward while input costs ease.",
    "The stock has outperformed the Nifty over the past month.",
    ("Retail investors should wait for a dip before adding, and traders can keep a strict stop loss below the "
     "recent swing low."),
    "Disclaimer: views are personal, not investment advice, please consult your advisor.",
]


def synthetic_posts(n: int, seed: int = 7) -> list[str]:
    """Posts written like the chatter and headlines the platform reads: some name tickers by
    cashtag, symbol or company name, some name none; lengths from a tweet to a paragraph."""
    from sentinel_ray.reference import symbol_table

    table = symbol_table()
    symbols = table.column("symbol").to_pylist()
    names = [n.replace(" Ltd", "").replace(" Limited", "") for n in table.column("name").to_pylist()]
    rng = random.Random(seed)
    posts = []
    for i in range(n):
        picks = [rng.randrange(len(symbols)) for _ in range(4)]
        mention = [names[j] if rng.random() < 0.5 else symbols[j] for j in picks]
        template = rng.choice(_NEWS if i % 3 == 0 else _SOCIAL)
        text = template.format(a=mention[0], b=mention[1], c=mention[2], d=mention[3], s=symbols[picks[0]],
                               t=symbols[picks[1]], n=rng.randrange(50, 5000), m=rng.randrange(50, 5000),
                               q=rng.randrange(1, 5))
        if rng.random() < 0.4:  # a longer body after the headline / first line
            start = rng.randrange(len(_BODY))
            text += " " + " ".join(_BODY[start:start + rng.randrange(1, 4)])
        posts.append(text)
    return posts


def bench_tickers(n: int) -> tuple[float, float, float, list[str]]:
    """(posts/s extracting, posts/s through enrich, tickers found per post, profile lines when below target)."""
    import pyarrow as pa

    from sentinel_ray.pipeline.enrich import enrich
    from sentinel_ray.pipeline.tickers import extract_tickers
    from sentinel_ray.schemas import POSTS
    from sentinel_ray.sources.tickers import ticker_index

    posts = synthetic_posts(n)
    ticker_index()  # built once per process; not what is being measured
    extract_tickers(posts[:1000])
    table = pa.table({"text": pa.array(posts), "tickers": pa.nulls(n, POSTS.record_schema.field("tickers").type)})
    elapsed = enriched = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        found = extract_tickers(posts)
        elapsed = min(elapsed, time.perf_counter() - start)
        start = time.perf_counter()
        enrich(table, POSTS)
        enriched = min(enriched, time.perf_counter() - start)
    rate, enrich_rate = n / elapsed, n / enriched
    per_post = sum(map(len, found)) / n
    profile: list[str] = []
    if min(rate, enrich_rate) < TARGET_POSTS_S:
        profiler = cProfile.Profile()
        profiler.enable()
        extract_tickers(posts[:20_000])
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
        profile = out.getvalue().splitlines()
    return rate, enrich_rate, per_post, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per adapter (default 1.0)")
    parser.add_argument("--posts", type=int, default=100_000, help="synthetic posts for ticker extraction")
    parser.add_argument("--real", type=Path, default=REAL, help=f"real recorded payloads (default {REAL})")
    args = parser.parse_args()
    if not args.real.is_dir():
        print(f"note: {args.real} absent; adapters fall back to the repo's hand-made fixtures")

    lines, figures = bench_adapters(args.real, args.seconds)
    print(f"\n{'adapter':<9} {'method':<6} {'records/pass':>12} {'records/s':>12}  status / payload")
    for line in lines:
        rate = f"{line['rate']:,.0f}" if line["rate"] else "-"
        per_pass = str(line["per_pass"]) if line["per_pass"] else "-"
        print(f"{line['adapter']:<9} {line['method']:<6} {per_pass:>12} {rate:>12}  {line['status']}; "
              f"{line['payload']}")

    rate, enrich_rate, per_post, profile = bench_tickers(args.posts)
    verdict = "meets" if min(rate, enrich_rate) >= TARGET_POSTS_S else "BELOW"
    print(f"\nticker extraction: {args.posts:,} synthetic posts, {rate:,.0f} posts/s on one core "
          f"({enrich_rate:,.0f} posts/s through the enrich step), best of {ROUNDS} "
          f"({verdict} the {TARGET_POSTS_S:,} posts/s target); {per_post:.2f} tickers per post")
    if profile:
        print("profile (cProfile, 20,000 posts, by own time):")
        print("\n".join(profile))

    summary: dict[str, Any] = {"ticker_extraction_posts_s": round(rate), "enrich_posts_s": round(enrich_rate)}
    for name in ADAPTERS:
        value = figures.get(name)
        summary[f"{name}_records_s"] = round(value) if value else None
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
