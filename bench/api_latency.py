"""Read-path latency of the HTTP API under live ingestion: each data route against Serve's own floor.

    RAY_USAGE_STATS_ENABLED=0 .venv/bin/python bench/api_latency.py [--seconds 10] [--clients 32] [--keep]

Starts the platform as a user does, `sentinel-ray up` in a subprocess, on a temporary data
dir with the embedded defaults (Redis, chdb, Ray started by `up`) and the replay source
streaming live (from LIVE_START 09:15 IST, --replay-speed simulated seconds per second),
backfills the BACKFILL days through `sentinel-ray backfill` against it (bars, posts,
features, risk and alerts), and waits until /ready answers and ingested rows are growing.
Then, one route at a time, --clients aiohttp clients on keep-alive connections request it
for --seconds (after --warmup seconds not counted), with ingestion still running:

- the floor: `/health` of the same Serve app (no backend call);
- each data route of ROUTES, on a ticker with bars (the one with the strongest alert of the
  backfilled days) and over time ranges the backfilled days cover;
- the same routes, right after, from a plain uvicorn + FastAPI process (bench/plain_api.py,
  one worker) that joins up's Ray cluster and makes the same reads (sentinel_ray/serve/reads.py:
  the latest-value cache, the warehouse queries) on the same Redis and warehouse: what the
  route costs without Serve.

The floor is measured in turns with each route: over a route's --seconds, --slices turns
of the floor and of the route (2.5 s each by default, F R R F F R R F, on the same keep-alive
connections), and the route is held against the floor's turns between its own. Live
ingestion, compactions and the box's other work move the floor by a third within a run here
(and 318-543 req/s between runs), so a route is compared with the floor of its own seconds,
not with one measured minutes before. The "floor" of the JSON line pools every turn of it
(req/s: their mean; p50/p99: of all their latencies); each route carries its own floor_rps
and floor_p99_ms.

Only 200 answers count: req/s is 200s per second, p50/p99 are theirs, and any other answer
(or a failed request) is counted and fails the route's target. Targets: a route serves at
least 0.7x its floor's req/s (0.9x for the cached routes of ROUTES) with a p99 at most 1.5x
its floor's. A table is printed as it goes; after `up` and uvicorn are stopped, the last line
is one JSON object:
{"floor": {"rps", "p50_ms", "p99_ms"}, "routes": {"<route>": {"rps", "p50_ms", "p99_ms", "cached",
 "floor_rps", "floor_p99_ms"}}, "clients": 32, "plain": {"<route>": {"rps", "p50_ms", "p99_ms", "errors"}}, ...}.

Anything that starts Ray on a shared machine goes under the machine's lock:
    flock /tmp/sentinel-ray.lock env RAY_USAGE_STATS_ENABLED=0 .venv/bin/python bench/api_latency.py
The platform runs whichever `sentinel_ray` this interpreter imports (the editable install:
the working tree; the first table line says which). To measure a commit while the tree
changes, put a copy of it first on PYTHONPATH (the children inherit it):
    mkdir /tmp/at && git archive <commit> | tar -x -C /tmp/at
    PYTHONPATH=/tmp/at flock /tmp/sentinel-ray.lock .venv/bin/python bench/api_latency.py
Takes about 11 x (2 x seconds + 2 x warmup) plus a minute or two to start up and backfill.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# Each measured data route, and whether it is served from the Redis latest-value cache (the
# read-path work puts /api/stocks and the latest risk there): cached routes aim higher.
ROUTES: dict[str, bool] = {
    "/api/stocks": True,
    "/api/stocks/{T}/risk": True,
    "/api/stocks/{T}/prices?interval=1m": False,
    "/api/stocks/{T}/prices?interval=1h": False,
    "/api/stocks/{T}/prices?interval=1d": False,
    "/api/stocks/{T}/posts": False,
    "/api/stocks/{T}/risk/history": False,
    "/api/alerts": False,
    "/api/stocks/{T}/features": False,
    "/api/trending": False,
}
FLOOR = "/health"
TARGET_RPS = {False: 0.7, True: 0.9}  # of the floor's req/s, by ROUTES' cached flag
TARGET_P99 = 1.5  # of the floor's p99

# Fixed replay days, so that every run (before and after a change) reads the same data: two
# backfilled trading days (features have a day of history, alerts have episodes), and the
# next trading day streamed live.
BACKFILL = (dt.date(2026, 11, 4), dt.date(2026, 11, 5))
LIVE_START = dt.date(2026, 11, 6)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UP_TIMEOUT_S = 300.0
BACKFILL_TIMEOUT_S = 900.0


def say(line: str = "") -> None:
    print(line, flush=True)


def note(line: str) -> None:
    """Progress that is not a figure: stderr, so stdout is the table and the JSON line."""
    print(line, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def utc_midnight(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def route_urls(ticker: str, first: dt.date, last: dt.date) -> dict[str, str]:
    """The request each ROUTES entry makes: 1m series over the last backfilled day, the rest
    over all backfilled days (both servers accept these RFC 3339 times)."""
    day, start, end = utc_midnight(last), utc_midnight(first), utc_midnight(last + dt.timedelta(days=1))
    stock = f"/api/stocks/{ticker}"
    urls = {
        "/api/stocks": "/api/stocks",
        "/api/stocks/{T}/risk": f"{stock}/risk",
        "/api/stocks/{T}/prices?interval=1m": f"{stock}/prices?start={day}&end={end}&interval=1m",
        "/api/stocks/{T}/prices?interval=1h": f"{stock}/prices?start={start}&end={end}&interval=1h",
        "/api/stocks/{T}/prices?interval=1d": f"{stock}/prices?start={start}&end={end}&interval=1d",
        "/api/stocks/{T}/posts": f"{stock}/posts?start={start}&end={end}&limit=100",
        "/api/stocks/{T}/risk/history": f"{stock}/risk/history?start={day}&end={end}&interval=1m",
        "/api/alerts": f"/api/alerts?start={start}&end={end}&limit=100",
        "/api/stocks/{T}/features": f"{stock}/features?start={day}&end={end}&interval=1m",
        "/api/trending": f"/api/trending?hours=24&end={end}&limit=20",
    }
    assert urls.keys() == ROUTES.keys()
    return urls


# -- HTTP load ----------------------------------------------------------------------------
@dataclass
class Figures:
    rps: float  # 200 answers per second
    p50_ms: float | None
    p99_ms: float | None
    ok: int
    errors: Counter[str] = field(default_factory=Counter)  # status (or exception) -> count
    latencies: list[float] = field(default_factory=list, repr=False)  # of the 200s, seconds, sorted

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        return {"rps": round(self.rps, 1), "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}


def percentile_ms(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in ms."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] * 1000, 1)


async def _load(session: aiohttp.ClientSession, url: str, seconds: float, clients: int) -> Figures:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    status: int | str = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                status = type(e).__name__
                await asyncio.sleep(0.05)  # a refused connection fails at once: do not spin
            if status == 200:
                latencies.append(time.perf_counter() - began)
            else:
                errors[str(status)] += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began  # until the last request started before the deadline ended
    latencies.sort()
    return Figures(len(latencies) / elapsed, percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99),
                   len(latencies), errors, latencies)


def pooled(runs: list[Figures]) -> Figures:
    """Several measurements of one route as one: mean req/s, percentiles of all their latencies."""
    latencies = sorted(t for run in runs for t in run.latencies)
    return Figures(sum(run.rps for run in runs) / len(runs), percentile_ms(latencies, 0.5),
                   percentile_ms(latencies, 0.99), sum(run.ok for run in runs),
                   sum((run.errors for run in runs), Counter()), latencies)


async def _drive(url: str, seconds: float, clients: int, warmup: float) -> Figures:
    connector = aiohttp.TCPConnector(limit=clients)  # one keep-alive connection per client
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        if warmup > 0:  # opens the connections and the first queries, not counted
            await _load(session, url, warmup, clients)
        return await _load(session, url, seconds, clients)


def drive(url: str, seconds: float, clients: int, warmup: float) -> Figures:
    return asyncio.run(_drive(url, seconds, clients, warmup))


def slice_order(slices: int) -> list[int]:
    """Which of (floor, route) each slice loads: F R R F F R R F ..., so that each is as often
    first as second of a pair, and a load that rises or falls through the minute favours neither."""
    return [(i + 1) // 2 % 2 for i in range(2 * slices)]


async def _alternate(floor_url: str, url: str, seconds: float, slices: int, clients: int,
                     warmup: float) -> tuple[list[Figures], list[Figures]]:
    """The floor and a route in turns of seconds/slices each, `slices` turns apiece, on the
    same keep-alive connections: (the floor's turns, the route's)."""
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        if warmup > 0:
            await _load(session, floor_url, warmup / 2, clients)
            await _load(session, url, warmup / 2, clients)
        turns: tuple[list[Figures], list[Figures]] = ([], [])
        for which in slice_order(slices):
            turns[which].append(await _load(session, (floor_url, url)[which], seconds / slices, clients))
        return turns


def alternate(floor_url: str, url: str, seconds: float, slices: int, clients: int,
              warmup: float) -> tuple[list[Figures], list[Figures]]:
    return asyncio.run(_alternate(floor_url, url, seconds, slices, clients, warmup))


def get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


# -- the platform and the plain server, as subprocesses ---------------------------------------
class Child:
    """A subprocess in its own session (a Ctrl-C at the terminal reaches only this script, which
    stops it in order), its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float) -> None:
        """SIGINT (Ctrl-C: `up` stops its parts newest first), then SIGKILL of its session after grace_s."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                note(f"{self.name} did not stop within {grace_s:.0f} s: killing its process group")
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        note(f"stopped {self.name} (exit {self.proc.returncode})")


def wait_for(what: str, check: Any, timeout_s: float, child: Child, interval_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}) while waiting for {what}:\n"
                               f"{child.tail()}")
        time.sleep(interval_s)
    raise RuntimeError(f"no {what} within {timeout_s:.0f} s; {child.name} said:\n{child.tail()}")


def start_up(work: Path, env: dict[str, str]) -> tuple[Child, str]:
    """`sentinel-ray up` with no backfill of its own (the bench's days are fixed, `up`'s are
    relative to today); returns it and the Ray address it printed."""
    up = Child("sentinel-ray up", [sys.executable, "-m", "sentinel_ray.cli", "up", "--days", "0"], env, work,
               work / "up.log")

    def started() -> str | None:
        text = up.output()
        if "Press Ctrl-C to stop." not in text:
            return None
        return next(line.split()[1] for line in text.splitlines() if line.startswith("ray "))

    return up, wait_for("`up` to start", started, UP_TIMEOUT_S, up)


def ingested_rows(api: str) -> int:
    """Rows of prices and posts in the warehouse (all sources), from the API's freshness route."""
    return sum(int(r["rows"]) for r in get_json(f"{api}/api/data/freshness", timeout=60)
               if r["dataset"] in ("prices", "posts"))


def pick_ticker(api: str, first: dt.date, last: dt.date) -> str:
    """The ticker of the strongest alert of the backfilled days that has bars and a risk score;
    else the one with the most bars."""
    with_bars = {s["ticker"]: s["bars"] for s in get_json(f"{api}/api/stocks") if s["bars"]}
    if not with_bars:
        raise RuntimeError("no ticker has bars: the backfill stored nothing?")
    alerts = get_json(f"{api}/api/alerts?start={utc_midnight(first)}&end={utc_midnight(last + dt.timedelta(days=1))}"
                      f"&limit=1000")
    ranked = [a["ticker"] for a in sorted(alerts, key=lambda a: (-a["peak_score"], a["ticker"]))]
    ranked += sorted(with_bars, key=lambda t: (-with_bars[t], t))
    for ticker in ranked:
        if ticker in with_bars and answers(f"{api}/api/stocks/{ticker}/risk"):
            return ticker
    raise RuntimeError("no ticker with bars has a risk score")


# -- report ---------------------------------------------------------------------------------
def meets(fig: Figures, floor: Figures, cached: bool) -> bool:
    return (fig.failed == 0 and floor.p99_ms is not None and fig.p99_ms is not None and floor.rps > 0
            and fig.rps >= TARGET_RPS[cached] * floor.rps and fig.p99_ms <= TARGET_P99 * floor.p99_ms)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


HEADER = (f"{'route':<36} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'floor/s':>7} {'fl p99':>7} {'rps/fl':>6} "
          f"{'p99/fl':>6} {'target':>6} {'meets':>5} {'errors':>6} | {'plain/s':>7} {'plain p99':>9} {'err':>4} | "
          f"{'ingest/s':>8}")


def row(name: str, fig: Figures, floor: Figures, cached: bool | None, plain: Figures, ingest: float | None) -> str:
    """A route against `floor` (the floor measured either side of it); a floor measurement
    (cached None) against the floor of the whole run."""
    rps_ratio = fig.rps / floor.rps if floor.rps else 0.0
    p99_ratio = fig.p99_ms / floor.p99_ms if fig.p99_ms is not None and floor.p99_ms else float("nan")
    target = "floor" if cached is None else f"{TARGET_RPS[cached]:.1f}x"
    verdict = "-" if cached is None else ("yes" if meets(fig, floor, cached) else "no")
    return (f"{name:<36} {fig.rps:>7,.1f} {_ms(fig.p50_ms):>8} {_ms(fig.p99_ms):>8} {floor.rps:>7,.1f} "
            f"{_ms(floor.p99_ms):>7} {rps_ratio:>6.2f} {p99_ratio:>6.2f} {target:>6} {verdict:>5} {fig.failed:>6} | "
            f"{plain.rps:>7,.1f} {_ms(plain.p99_ms):>9} {plain.failed:>4} | {'-' if ingest is None else f'{ingest:,.0f}':>8}")


def error_note(server: str, name: str, fig: Figures) -> None:
    if fig.failed:
        say(f"  ! {server} {name}: {fig.failed} failed answers: "
            f"{', '.join(f'{status} x{n}' for status, n in fig.errors.most_common())}")


# -- the run ----------------------------------------------------------------------------------
def measure(args: argparse.Namespace, work: Path, children: list[Child]) -> dict[str, Any]:
    api_port, plain_port = free_port(), free_port()
    api, plain_api = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{plain_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTINEL_", "RAY_ADDRESS", "RAY_AUTH_MODE"))}
    env.update({"SENTINEL_DATA_DIR": str(work / "data"), "SENTINEL_API_HOST": "127.0.0.1",
                "SENTINEL_API_PORT": str(api_port), "SENTINEL_REPLAY_SPEED": str(args.replay_speed),
                "SENTINEL_REPLAY_LIVE_START": LIVE_START.isoformat(), "RAY_USAGE_STATS_ENABLED": "0",
                "PYTHONUNBUFFERED": "1",
                # as ./scripts/up does: this environment's python, ray and serve first on PATH
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})

    note(f"data dir {work}\nstarting `sentinel-ray up` (replay live from {LIVE_START} 09:15 IST at "
         f"{args.replay_speed:g}x; log {work / 'up.log'}) ...")
    began = time.monotonic()
    up, ray_address = start_up(work, env)
    children.append(up)
    note(f"up in {time.monotonic() - began:.0f} s: API {api}, Ray {ray_address}")
    # what the README gives a second terminal: the cluster's address, and token auth for the CLI
    cli_env = {**env, "RAY_ADDRESS": ray_address, "RAY_AUTH_MODE": "token"}

    first, last = BACKFILL
    note(f"backfilling replay {first}..{last} into the running platform ...")
    began = time.monotonic()
    backfill = subprocess.run([sys.executable, "-m", "sentinel_ray.cli", "backfill", "--source", "replay",
                               "--start", str(first), "--end", str(last)], env=cli_env, cwd=work,
                              capture_output=True, text=True, timeout=BACKFILL_TIMEOUT_S)
    (work / "backfill.log").write_text(backfill.stdout + backfill.stderr)
    if backfill.returncode != 0:
        raise RuntimeError(f"backfill failed ({backfill.returncode}):\n{(backfill.stdout + backfill.stderr)[-4000:]}")
    summary = [line for line in backfill.stdout.splitlines() if line.startswith("backfill backfill-")]
    note(f"backfilled in {time.monotonic() - began:.0f} s: {summary[-1] if summary else backfill.stdout[-300:]}")

    wait_for("/ready", lambda: answers(f"{api}/ready"), 120, up)
    rows_before = ingested_rows(api)
    wait_for("live ingestion (rows growing)", lambda: ingested_rows(api) > rows_before, 180, up, interval_s=3)
    ticker = pick_ticker(api, first, last)
    urls = {name: url for name, url in route_urls(ticker, first, last).items()
            if not args.only or any(part in name for part in args.only)}

    plain = Child("plain uvicorn", [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "--factory",
                                    "plain_api:create_app", "--host", "127.0.0.1", "--port", str(plain_port),
                                    "--workers", "1", "--no-access-log", "--log-level", "warning"],
                  cli_env, work, work / "plain.log")
    children.append(plain)
    wait_for("the plain server", lambda: answers(f"{plain_api}/health"), 120, plain)
    for name, url in urls.items():  # both answer every request before anything is measured
        for base in (api, plain_api):
            if not answers(base + url):
                raise RuntimeError(f"{base}{url} ({name}) does not answer 200: fix the bench or the route")

    spec = importlib.util.find_spec("sentinel_ray")  # found, not imported: the children import it
    say(f"platform code {Path(spec.origin).parent if spec and spec.origin else '?'}")
    say(f"{args.clients} clients x {args.seconds:g} s per route (after {args.warmup:g} s warm-up), "
        f"{os.cpu_count()} CPUs, live replay at {args.replay_speed:g}x; ticker {ticker}; "
        f"1m series over {last}, the rest over {first}..{last} (UTC)")
    say(f"floor/s, fl p99: Serve's /health in turns with the route ({args.slices} x {args.seconds / args.slices:g} s "
        f"each); rps/fl, p99/fl: the route "
        "against them; plain: the same route on uvicorn + FastAPI, no Serve; ingest/s: prices+posts rows stored "
        "per second meanwhile")
    say(HEADER)
    say("-" * len(HEADER))

    def both(name: str, url: str) -> tuple[list[Figures], Figures, Figures, float]:
        """(the floor's turns, the route's figures, the plain server's, rows ingested per second)."""
        began, rows = time.monotonic(), ingested_rows(api)
        floor_turns, turns = alternate(api + FLOOR, api + url, args.seconds, args.slices, args.clients, args.warmup)
        plain_fig = drive(plain_api + url, args.seconds, args.clients, args.warmup)
        rate = (ingested_rows(api) - rows) / (time.monotonic() - began)
        for fig in floor_turns:
            error_note("serve", FLOOR, fig)
        for fig in turns:
            error_note("serve", name, fig)
        error_note("plain", name, plain_fig)
        return floor_turns, pooled(turns), plain_fig, rate

    plain_floor = drive(plain_api + FLOOR, args.seconds, args.clients, args.warmup)
    floor_turns: list[Figures] = []
    served: dict[str, Figures] = {}
    adjacent: dict[str, Figures] = {}  # per route: the floor's turns between its own
    plain_figs: dict[str, Figures] = {FLOOR: plain_floor}
    ingest: dict[str, float] = {}
    for name, url in urls.items():
        turns, served[name], plain_figs[name], ingest[name] = both(name, url)
        floor_turns += turns
        adjacent[name] = pooled(turns)
        say(row(name, served[name], adjacent[name], ROUTES[name], plain_figs[name], ingest[name]))
        if ingest[name] <= 0:
            say(f"  ! no rows ingested while {name} was measured: live ingestion has stopped "
                f"(try a lower --replay-speed)")
    floor = pooled(floor_turns)
    by_route = [adjacent[name].rps for name in urls]
    say(row(f"{FLOOR} (all {len(floor_turns)} turns)", floor, floor, None, plain_floor, None))
    say(f"the floor's req/s beside each route: {min(by_route):,.0f}-{max(by_route):,.0f}")
    passed = [name for name in urls if meets(served[name], adjacent[name], ROUTES[name])]
    say(f"{len(passed)} of {len(urls)} data routes meet their target "
        f"(>= {TARGET_RPS[False]}x floor req/s, {TARGET_RPS[True]}x if cached; p99 <= {TARGET_P99}x floor p99; "
        f"no errors; against the floor measured in turns with each route)")
    return {
        "floor": floor.as_json(),
        "routes": {name: {**served[name].as_json(), "cached": ROUTES[name], "floor_rps": round(adjacent[name].rps, 1),
                          "floor_p99_ms": adjacent[name].p99_ms} for name in urls},
        "clients": args.clients,
        "plain": {name: {**fig.as_json(), "errors": fig.failed} for name, fig in plain_figs.items()},
        "errors": {name: fig.failed for name, fig in {FLOOR: floor, **served}.items()},
        "meets_target": {name: name in passed for name in urls},
        "ingest_rows_per_s": {name: round(r, 1) for name, r in ingest.items()},
        "slices": args.slices,
        "ticker": ticker,
        "seconds": args.seconds,
        "replay_speed": args.replay_speed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per route and server")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measurement")
    parser.add_argument("--slices", type=int, default=4,
                        help="turns apiece of the floor and the route within --seconds (default 4: 2.5 s turns)")
    parser.add_argument("--replay-speed", type=float, default=20.0,
                        help="live replay's simulated seconds per wall second (default 20: its 6 h 15 min session "
                             "lasts about 19 min, longer than the run, so bars arrive throughout)")
    parser.add_argument("--only", action="append", metavar="PART",
                        help="measure only the routes whose name contains PART (repeatable; default all)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and up.log, backfill.log, plain.log)")
    args = parser.parse_args()

    def terminate(*_: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C stops the children in order even when a shell started us with SIGINT ignored (a
    # background job), and so does a SIGTERM
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    work = Path(tempfile.mkdtemp(prefix="sentinel-api-bench-"))
    children: list[Child] = []
    result: dict[str, Any] | None = None
    code = 1
    try:
        result = measure(args, work, children)
        code = 0
    except KeyboardInterrupt:
        note("interrupted")
        code = 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        note(f"api_latency: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("stopping ...")
        for child in reversed(children):  # the plain server (a driver on up's cluster) first, then up
            try:
                child.stop(grace_s=30 if child.name.startswith("plain") else 180)
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                note(f"could not stop {child.name}: {e}")
        if args.keep:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if result is not None:
        say(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
