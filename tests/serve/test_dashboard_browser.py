"""The dashboard and /docs in a real browser: Debian's chromium, headless, driven by Playwright,
against the real Serve app over a replay backfill whose last days hold two loud pumps
(2026-10-19..2026-11-04 opens alerts for GTLINFRA and SUBEXLTD, as tests/ingest/test_backfill_signals.py
shows). Every request the pages make to anything but the app is refused and recorded: the page
and the docs must work with no internet. One backfill, one Serve app, one browser per module."""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from sentinel_ray.config import Settings
from tests.fakes.net import serve_locally

pytestmark = pytest.mark.ray

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps trying to reach Google's services. The
# resolver rule is the missing internet: every host name but the app's address fails to resolve.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
START, END = dt.date(2026, 10, 19), dt.date(2026, 11, 4)  # ends with pumps of GTLINFRA (3 Nov) and SUBEXLTD (4 Nov)
TICKER = "SUBEXLTD"  # its alert is on the last backfilled day, so its timeline opens live
TOKEN = "test-token"


def _wait(what: str, check: Callable[[], Any], timeout_s: float = 20.0,
          pause: Callable[[], None] = lambda: time.sleep(0.25)) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        pause()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} and this run could not install it "
                    f"(.ci/run does: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra's playwright package is missing")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def platform(ray_session: None, embedded_redis: str, base_settings: Settings,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    from sentinel_ray.ingest.backfill import run_backfill
    from sentinel_ray.serve.deployments import build_app

    settings = base_settings.model_copy(update={
        "warehouse_database": "dashboard_browser", "lake_uri": str(tmp_path_factory.mktemp("dashboard-lake")),
        "redis_key_prefix": "dashboard-test"})
    summary = run_backfill(settings, "replay", START, END)
    assert summary.alerts_opened >= 2
    with serve_locally(build_app(settings), name="sentinel-dashboard", ready_path="/health") as base:
        yield settings, base


class Browsing:
    """A page of the module's browser that records every request leaving the app (none can
    reach anything: see CHROMIUM_ARGS), console errors and uncaught exceptions. Recording only:
    a Python route handler would hold every request while the test is not in a Playwright call."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.page = browser.new_page(viewport={"width": 1500, "height": 1300})
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", self._note)

    def _note(self, request: Any) -> None:
        if not (request.url.startswith(self.base + "/") or request.url.startswith("data:")):
            self.outside.append(request.url)

    def attr(self, selector: str, name: str) -> str | None:
        return self.page.get_attribute(selector, name)

    def wait(self, what: str, check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
        """`_wait`, letting the page's events through to us meanwhile."""
        return _wait(what, check, timeout_s, pause=lambda: self.page.wait_for_timeout(250))

    def assert_clean(self) -> None:
        self.page.wait_for_timeout(100)  # the events still on their way
        assert self.outside == [], f"the page asked for things outside the app: {self.outside}"
        assert self.errors == [], "\n".join(self.errors)


@pytest.fixture(scope="module")
def dashboard(chromium: Any, platform: tuple[Settings, str]) -> Iterator[Browsing]:
    _, base = platform
    browsing = Browsing(chromium, base)
    browsing.page.goto(f"{base}/#ticker={TICKER}&interval=1m")
    browsing.page.wait_for_selector("body[data-ready='1']", state="attached", timeout=60_000)
    yield browsing
    browsing.page.close()


def _api_bars(base: str, ticker: str, start: str, end: str, interval: str) -> list[dict]:
    response = requests.get(f"{base}/api/stocks/{ticker}/prices",
                            params={"start": start, "end": end, "interval": interval}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["bars"]


def _alert_ids(base: str) -> dict[str, str]:
    alerts = requests.get(f"{base}/api/alerts", params={"start": "2026-10-01", "limit": 100}, timeout=30).json()
    return {a["ticker"]: a["alert_id"] for a in alerts}


def test_docs_render_offline(chromium: Any, platform: tuple[Settings, str]) -> None:
    _, base = platform
    docs = Browsing(chromium, base)
    try:
        docs.page.goto(f"{base}/docs")
        docs.page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        spec = requests.get(f"{base}/openapi.json", timeout=30).json()
        operations = sum(len([m for m in item if m in ("get", "post", "put", "delete")])
                         for item in spec["paths"].values())
        docs.wait("every operation drawn", lambda: docs.page.locator(".swagger-ui .opblock").count() == operations)
        assert docs.page.locator(".swagger-ui .info .title").inner_text().startswith("Sentinel Ray")
        docs.assert_clean()
    finally:
        docs.page.close()


def test_page_loads_with_the_bars_of_the_ticker(dashboard: Browsing, platform: tuple[Settings, str]) -> None:
    _, base = platform
    chart = "#price-chart"
    assert dashboard.attr(chart, "data-ticker") == TICKER and dashboard.attr(chart, "data-interval") == "1m"
    # the latest session of the ticker: 4 Nov, 09:15-15:29 IST (a few injected bad bars are quarantined)
    assert dashboard.attr(chart, "data-start") == "2026-11-03T18:30:00.000Z"  # 00:00 IST
    bars = int(dashboard.attr(chart, "data-bars"))
    expected = _api_bars(base, TICKER, dashboard.attr(chart, "data-start"), dashboard.attr(chart, "data-end"), "1m")
    assert bars == len(expected) and 370 <= bars <= 375
    assert dashboard.attr(chart, "data-last-ts") == expected[-1]["ts"].replace("Z", ".000Z")
    assert int(dashboard.attr("#risk-chart", "data-points")) == bars  # one risk score per feature row
    title = dashboard.page.inner_text("#timeline-title")
    assert "IST" in title and f"{bars} bars" in title

    # daily bars: the page asks for a year to the latest bar, and shows every bar the API has for it
    dashboard.page.click(".seg button[data-interval='1d']")
    dashboard.wait("daily bars", lambda: dashboard.attr(chart, "data-interval") == "1d")
    daily = _api_bars(base, TICKER, dashboard.attr(chart, "data-start"), dashboard.attr(chart, "data-end"), "1d")
    dashboard.wait("the daily bars drawn", lambda: int(dashboard.attr(chart, "data-bars")) == len(daily))
    assert len(daily) == 13  # trading days of 19 Oct .. 4 Nov
    dashboard.page.click(".seg button[data-interval='1m']")
    dashboard.wait("back to 1m bars", lambda: dashboard.attr(chart, "data-interval") == "1m" and
          int(dashboard.attr(chart, "data-bars")) == bars)
    dashboard.assert_clean()


def test_the_alerts_of_the_replay_episodes_are_in_the_queue(dashboard: Browsing,
                                                            platform: tuple[Settings, str]) -> None:
    _, base = platform
    ids = _alert_ids(base)
    assert {"GTLINFRA", "SUBEXLTD"} <= set(ids)
    for ticker in ("GTLINFRA", "SUBEXLTD"):
        item = dashboard.page.locator(f"#alert-queue li[data-alert-id='{ids[ticker]}']")
        assert item.count() == 1 and item.get_attribute("data-state") == "open"
        text = item.inner_text()
        assert ticker in text and "IST" in text and "promo posts z" in text  # its reasons
    scores = [float(s) for s in dashboard.page.locator("#alert-queue > li .score").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)  # by score
    dashboard.assert_clean()


def test_a_marker_opens_the_post_or_the_alert_evidence(dashboard: Browsing, platform: tuple[Settings, str],
                                                      tmp_path: Path) -> None:
    page = dashboard.page
    over = page.locator("#price-chart .u-over").bounding_box()
    hits = page.evaluate("() => window.sentinelDashboard.markerHits.map(m => ({kind: m.kind, x: m.x, y: m.y, "
                         "id: m.item ? m.item.alert_id : null, n: m.items ? m.items.length : 0, "
                         "text: m.items ? m.items[0].text : null}))")
    alert = next(h for h in hits if h["kind"] == "alert")
    page.mouse.click(over["x"] + alert["x"], over["y"] + alert["y"])
    dashboard.wait("the alert's evidence", lambda: page.get_attribute("#detail", "data-alert-id") == alert["id"])
    detail = page.locator("#detail")
    dashboard.wait("its evidence posts", lambda: detail.locator(".evidence-posts .post").count() > 0)
    text = detail.inner_text()
    assert "Reasons at the peak" in text and "Evidence: bars" in text and "Audit trail" in text and "IST" in text
    page.screenshot(path=str(tmp_path / "dashboard-alert.png"), full_page=True)

    posts = max((h for h in hits if h["kind"] == "posts"), key=lambda h: h["n"])
    page.mouse.click(over["x"] + posts["x"], over["y"] + posts["y"])
    dashboard.wait("the posts of the bar", lambda: detail.locator(".post").count() == min(posts["n"], 200))
    assert posts["text"] in detail.inner_text()
    dashboard.assert_clean()


def test_acknowledge_and_close_from_the_page(dashboard: Browsing, platform: tuple[Settings, str]) -> None:
    _, base = platform
    page = dashboard.page
    alert_id = _alert_ids(base)["GTLINFRA"]
    page.fill("#actor", "asha")
    page.fill("#token", TOKEN)
    page.click("#token-save")
    assert page.evaluate("() => sessionStorage.getItem('sentinel.token')") == TOKEN  # kept for the session
    page.click(f"#alert-queue li[data-alert-id='{alert_id}'] button.ack")

    def state() -> dict:
        return requests.get(f"{base}/api/alerts/{alert_id}", timeout=30).json()

    acknowledged = dashboard.wait("the alert acknowledged in the API",
                                  lambda: state()["state"] == "acknowledged" and state())
    assert acknowledged["events"][-1]["actor"] == "asha" and acknowledged["events"][-1]["to_state"] == "acknowledged"
    # the open queue no longer holds it; the acknowledged one does, and closes it with a verdict
    dashboard.wait("the open queue without it",
          lambda: page.locator(f"#alert-queue li[data-alert-id='{alert_id}']").count() == 0)
    page.select_option("#queue-state", "acknowledged")
    item = page.locator(f"#alert-queue li[data-alert-id='{alert_id}']")
    dashboard.wait("the acknowledged queue", lambda: item.count() == 1)
    item.locator("select.close-as").select_option("true_positive")
    closed = dashboard.wait("the alert closed in the API", lambda: state()["state"] == "closed" and state())
    assert closed["disposition"] == "true_positive"
    page.select_option("#queue-state", "open")
    dashboard.wait("the open queue", lambda: page.locator("#alert-queue li[data-alert-id]").count() >= 1)
    dashboard.assert_clean()


def test_a_streamed_bar_appears_without_a_reload(dashboard: Browsing, platform: tuple[Settings, str],
                                                 tmp_path: Path) -> None:
    from sentinel_ray.ingest.consumer import StreamConsumer
    from sentinel_ray.ingest.supervisor import stream_store
    from sentinel_ray.market import SESSION_OPEN, IST, next_trading_day
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, base = platform
    page = dashboard.page
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads
    before = int(dashboard.attr("#price-chart", "data-bars"))
    last = _api_bars(base, TICKER, "2026-11-04", "2026-11-05", "1m")[-1]
    day = next_trading_day(END)
    ts = dt.datetime.combine(day, SESSION_OPEN, IST).astimezone(dt.timezone.utc)
    bar = {"ticker": TICKER, "exchange": "NSE", "interval": "1m", "ts": ts.isoformat(), "open": last["close"],
           "high": last["close"] * 1.01, "low": last["close"] * 0.99, "close": last["close"] * 1.005, "volume": 12_345}
    response = requests.post(f"{base}/ingest/prices", json={"source": "dashboard-test", "records": [bar]},
                             headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 202, response.text
    # a stream consumer stores it, as the platform's would (signals off: the bar is what this is about)
    quiet = settings.model_copy(update={"stream_signals": False})
    consumer = StreamConsumer(quiet, "prices", "dashboard-test-consumer", store=stream_store(quiet),
                              lake=Lake(quiet.resolved_lake_uri), warehouse=connect_warehouse(quiet))
    batch = dashboard.wait("the bar in the stream", lambda: consumer.next_batch(block_s=1.0), timeout_s=15)
    result = consumer.store_batch(batch)
    assert result.rows_valid == 1, result

    expected = ts.isoformat().replace("+00:00", ".000Z")
    dashboard.wait("the new bar on the page", lambda: dashboard.attr("#price-chart", "data-last-ts") == expected,
                   timeout_s=15)
    assert int(dashboard.attr("#price-chart", "data-bars")) == before + 1
    assert page.evaluate("() => window.__sameDocument") is True  # no reload
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000
    dashboard.assert_clean()


def test_health_panel_shows_each_dataset_and_the_quality_charts(dashboard: Browsing) -> None:
    page = dashboard.page
    tiles = {t.get_attribute("data-dataset"): t.get_attribute("data-status")
             for t in page.locator("#datasets .tile").all()}
    assert set(tiles) == {"prices", "posts", "filings"}, tiles
    assert set(tiles.values()) <= {"healthy", "degraded", "unhealthy"}, tiles
    assert page.locator("#freshness tbody tr").count() >= 3
    assert "backfill" in page.inner_text("#pipelines")
    for chart in ("q-validity", "q-volume", "q-freshness"):
        assert int(page.get_attribute(f"#{chart}", "data-series")) >= 3  # one line per dataset/source
        assert page.locator(f"#{chart} canvas").count() == 1
    assert page.locator("#trending tbody tr[data-ticker]").count() >= 1
    dashboard.assert_clean()


def test_risk_history_follows_the_bars(platform: tuple[Settings, str]) -> None:
    """GET /api/stocks/{ticker}/risk/history: the line under the chart, on the bars' own time buckets."""
    _, base = platform

    def history(**params: str) -> requests.Response:
        return requests.get(f"{base}/api/stocks/{TICKER}/risk/history", params=params, timeout=30)

    day = {"start": "2026-11-04T09:15:00+05:30", "end": "2026-11-05T00:00:00+05:30"}
    minute = history(**day).json()
    assert minute["ticker"] == TICKER and minute["interval"] == "1m" and minute["start"] == "2026-11-04T03:45:00Z"
    points = minute["points"]
    bars = _api_bars(base, TICKER, day["start"], day["end"], "1m")
    assert [p["ts"] for p in points] == [b["ts"] for b in bars]  # one score per bar, same times (UTC, with Z)
    assert max(p["score"] for p in points) >= 60  # the pump's alert opened on this day
    hourly = history(**day, interval="1h").json()["points"]
    by_hour: dict[str, list[dict]] = {}
    for p in points:
        by_hour.setdefault(p["ts"][:13], []).append(p)
    assert [h["ts"][:13] for h in hourly] == sorted(by_hour)
    for h in hourly:  # each hour: the highest score, and each sub-score its own highest
        group = by_hour[h["ts"][:13]]
        assert h["score"] == max(p["score"] for p in group)
        assert h["promo_score"] == max(p["promo_score"] for p in group)
    daily = history(start="2026-10-19", end="2026-11-05", interval="1d").json()["points"]
    assert len(daily) == 13 and daily[-1]["ts"] == "2026-11-03T18:30:00Z"  # IST trading days
    assert daily[-1]["score"] == max(p["score"] for p in points)
    assert history(start="2026-11-05", end="2026-11-06").json()["points"] == []  # nothing scored: empty
    for params, status, fragment in (({"interval": "5m"}, 422, "interval"),
                                     ({"start": "2026-11-04T09:15"}, 422, "start"),  # naive: refused
                                     ({"start": "2026-11-05", "end": "2026-11-04"}, 422, "must be before end")):
        response = history(**params)
        assert response.status_code == status and fragment in response.json()["detail"], response.text
    unknown = requests.get(f"{base}/api/stocks/NOTREAL/risk/history", timeout=30)
    assert unknown.status_code == 404 and list(unknown.json()) == ["detail"]
