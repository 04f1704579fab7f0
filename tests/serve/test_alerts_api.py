"""Risk and alerts end to end: features in a real warehouse -> detect_range / detect_batch ->
risk_1m, alerts, alert_events; then the routes over HTTP on 127.0.0.1 (Ray Serve)."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterator

import pyarrow as pa
import pytest
import requests

from sentinel_ray.config import Settings
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M, FILINGS, POSTS
from tests.fakes.net import serve_locally

pytestmark = pytest.mark.ray

UTC = dt.timezone.utc
TOKEN = {"Authorization": "Bearer test-token"}
DAY = dt.datetime(2026, 11, 5, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)
COMPUTED = dt.datetime(2026, 11, 6, tzinfo=UTC)
PUMP = {"volume_ratio": 9.3, "volume_z": 7.0, "ret_15m": 0.14, "ret_60m": 0.1, "promo_z": 6.1,
        "promo_posts_60m": 14, "platforms_60m": 3, "authors_60m": 11, "posts_z": 6.5, "posts_60m": 40}
# 40 bars from these times: 10 quiet, 11 pumping, 19 quiet
EPISODES = {"SUZLON": DAY.replace(hour=4), "YESBANK": DAY.replace(hour=5)}
RANGE = (DAY, DAY + dt.timedelta(days=1))


def feature_rows(ticker: str, first: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for i in range(40):
        row: dict[str, Any] = dict.fromkeys(FEATURES_1M.column_names)
        row.update(ticker=ticker, exchange="NSE", ts=first + i * MIN, close=50.0 + i, volume=1000, computed_at=COMPUTED,
                   posts_15m=0, posts_60m=1, promo_posts_15m=0, promo_posts_60m=0, authors_60m=1, platforms_60m=1,
                   posts_z=0.5, volume_z=0.1, volume_ratio=1.0, ret_15m=0.001)
        if 10 <= i <= 20:
            row.update(PUMP)
        rows.append(row)
    return rows


def seed(warehouse) -> None:
    warehouse.ensure_schema()
    features = [r for t, first in EPISODES.items() for r in feature_rows(t, first)]
    warehouse.insert("features_1m", pa.Table.from_pylist(features, schema=FEATURES_1M.arrow_schema))
    daily = [{**dict.fromkeys(FEATURES_1D.column_names), "ticker": "SUZLON", "exchange": "NSE",
              "day": dt.datetime(2026, 11, d, tzinfo=UTC) - dt.timedelta(hours=5, minutes=30), "close": 50.0 + d,
              "volume": 10_000 * d, "posts": d, "promo_posts": 0, "computed_at": COMPUTED} for d in (4, 5)]
    warehouse.insert("features_1d", pa.Table.from_pylist(daily, schema=FEATURES_1D.arrow_schema))
    lineage = {"source": "test", "run_id": "seed", "ingested_at": COMPUTED}
    s = EPISODES["SUZLON"]
    posts = [("x", "p1", s + 5 * MIN, ["SUZLON"]), ("reddit", "p2", s + 15 * MIN, ["SUZLON", "TCS"]),
             ("x", "late", s + 60 * MIN, ["SUZLON"]), ("x", "tcs", s + 10 * MIN, ["TCS"])]
    warehouse.insert("posts", pa.Table.from_pylist([
        {"platform": p, "post_id": i, "author": "a", "text": "buy", "ts": ts, "url": None, "engagement": 1,
         "tickers": t, **lineage} for p, i, ts, t in posts], schema=POSTS.arrow_schema))
    warehouse.insert("filings", pa.Table.from_pylist([
        {"exchange": "NSE", "filing_id": f"f{i}", "ticker": "SUZLON", "company": "Suzlon Energy",
         "subject": f"Board meeting {i}", "details": None, "ts": DAY + dt.timedelta(hours=i), "attachment_url": None,
         **lineage} for i in (1, 2)], schema=FILINGS.arrow_schema))


@pytest.fixture(scope="module")
def settings(ray_session: None, embedded_redis: str, base_settings: Settings,
             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return base_settings.model_copy(update={"warehouse_database": "alerts_api",
                                            "lake_uri": str(tmp_path_factory.mktemp("alerts-lake"))})


@pytest.fixture(scope="module")
def warehouse(settings: Settings):
    from sentinel_ray.detect.run import detect_range
    from sentinel_ray.storage.warehouse import connect_warehouse

    wh = connect_warehouse(settings)
    seed(wh)
    detect_range(wh, *RANGE)
    return wh


@pytest.fixture(scope="module")
def api(settings: Settings, warehouse) -> Iterator[str]:
    from sentinel_ray.serve.deployments import build_app

    with serve_locally(build_app(settings), name="sentinel-alerts-test", ready_path="/health") as base:
        yield base


def _alerts(wh) -> list[dict[str, Any]]:
    return wh.query_rows("SELECT * FROM {db}.alerts FINAL ORDER BY alert_id")


def _events(wh, alert_id: str) -> list[dict[str, Any]]:
    return wh.query_rows("SELECT * FROM {db}.alert_events FINAL WHERE alert_id = {id:String} ORDER BY at, event_id",
                         {"id": alert_id})


# -- detection against the warehouse -------------------------------------------------------
def test_detect_range_opens_one_alert_per_episode_with_its_evidence(warehouse) -> None:
    alerts = _alerts(warehouse)
    assert [a["alert_id"] for a in alerts] == ["SUZLON-NSE-20261105T0410Z", "YESBANK-NSE-20261105T0510Z"]
    suzlon = alerts[0]
    assert suzlon["state"] == "open" and suzlon["detected_by"] == "backfill"
    assert suzlon["peak_score"] == pytest.approx(99.75, abs=0.01)
    assert suzlon["last_bar_ts"].replace(tzinfo=UTC) == EPISODES["SUZLON"] + 20 * MIN
    assert suzlon["post_ids"] == ["x:p1", "reddit:p2"]  # x:late after the range, x:tcs another ticker
    assert [e["action"] for e in _events(warehouse, suzlon["alert_id"])] == ["opened"]
    assert warehouse.query_rows("SELECT count() AS n FROM {db}.risk_1m FINAL")[0]["n"] == 80


def test_re_running_a_range_changes_nothing_and_keeps_the_analysts_state(warehouse) -> None:
    from sentinel_ray.detect.run import apply_transition, detect_range

    apply_transition(warehouse, "SUZLON-NSE-20261105T0410Z", "acknowledged", None, "asha", "checking")
    before = {a["alert_id"]: a for a in _alerts(warehouse)}
    summary = detect_range(warehouse, *RANGE)
    assert summary.alerts_opened == 2 and summary.bars == 80
    after = {a["alert_id"]: a for a in _alerts(warehouse)}
    assert list(after) == list(before)
    strip = lambda a: {k: v for k, v in a.items() if k != "updated_at"}  # noqa: E731
    assert [strip(a) for a in after.values()] == [strip(a) for a in before.values()]
    assert after["SUZLON-NSE-20261105T0410Z"]["state"] == "acknowledged"
    assert [e["action"] for e in _events(warehouse, "SUZLON-NSE-20261105T0410Z")] == ["opened", "acknowledged"]
    # a re-run of a range starting inside the episode continues the alert, opens no other
    detect_range(warehouse, EPISODES["SUZLON"] + 15 * MIN, RANGE[1])
    assert [a["alert_id"] for a in _alerts(warehouse)] == list(before)
    assert _alerts(warehouse)[0]["last_bar_ts"].replace(tzinfo=UTC) == EPISODES["SUZLON"] + 20 * MIN


def test_the_stream_in_batches_gives_the_backfills_alerts(settings: Settings, warehouse) -> None:
    from sentinel_ray.detect.run import detect_batch, read_features
    from sentinel_ray.storage.warehouse import connect_warehouse

    stream_wh = connect_warehouse(settings.model_copy(update={"warehouse_database": "alerts_api_stream"}))
    seed(stream_wh)
    features = read_features(warehouse, *RANGE).sort_by("ts")
    state = None
    for offset in range(0, features.num_rows, 7):  # batches of 7 bars in time order, tickers mixed
        state, _ = detect_batch(stream_wh, features.slice(offset, 7), state)
    _, again = detect_batch(stream_wh, features.slice(14, 7), state)  # a redelivered batch
    assert (again.alerts_opened, again.alerts_written) == (0, 0)
    state, _ = detect_batch(stream_wh, features.slice(14, 7))  # a restarted consumer: state from the table
    fields = ("alert_id", "opened_at", "last_bar_ts", "peak_score", "peak_ts", "evidence_start", "evidence_end",
              "post_ids")
    assert [{f: a[f] for f in fields} for a in _alerts(stream_wh)] == [
        {f: a[f] for f in fields} for a in _alerts(warehouse)]
    assert {a["detected_by"] for a in _alerts(stream_wh)} == {"stream"}


# -- the routes -----------------------------------------------------------------------------
def test_alerts_list_filters(api: str) -> None:
    everything = requests.get(f"{api}/api/alerts", params={"start": "2026-11-05", "end": "2026-11-06"})
    assert everything.status_code == 200, everything.text
    assert [a["alert_id"] for a in everything.json()] == ["YESBANK-NSE-20261105T0510Z", "SUZLON-NSE-20261105T0410Z"]
    one = requests.get(f"{api}/api/alerts", params={"ticker": "yesbank", "start": "2026-11-05", "end": "2026-11-06"})
    assert [a["ticker"] for a in one.json()] == ["YESBANK"]
    assert one.json()[0]["reasons"][0]["text"] == "promo posts z 6.1 on 3 platforms"
    none = requests.get(f"{api}/api/alerts", params={"start": "2026-11-07", "end": "2026-11-08"})
    assert none.json() == []


def test_alert_detail_has_reasons_evidence_and_events(api: str) -> None:
    body = requests.get(f"{api}/api/alerts/SUZLON-NSE-20261105T0410Z").json()
    assert body["evidence"] == {"start": "2026-11-05T03:10:00Z", "end": "2026-11-05T04:20:00Z",
                                "post_ids": ["x:p1", "reddit:p2"]}
    assert body["posts"] == 2 and body["opened_at"] == "2026-11-05T04:10:00Z"
    assert {r["text"] for r in body["reasons"]} >= {"volume 9.3x usual for 09:40 IST", "+14.0% in 15 min"}
    assert body["events"][0]["action"] == "opened" and body["events"][0]["actor"] == "backfill"


def test_post_changes_the_state_and_records_an_event(api: str, warehouse) -> None:
    aid = "YESBANK-NSE-20261105T0510Z"
    r = requests.post(f"{api}/api/alerts/{aid}", json={"state": "closed", "disposition": "true_positive",
                                                       "actor": "ravi", "note": "pump confirmed"}, headers=TOKEN)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["disposition"]) == ("closed", "true_positive")
    events = _events(warehouse, aid)
    assert [(e["actor"], e["action"], e["from_state"], e["to_state"], e["disposition"], e["note"])
            for e in events][-1] == ("ravi", "closed", "open", "closed", "true_positive", "pump confirmed")
    assert requests.get(f"{api}/api/alerts/{aid}").json()["events"][-1]["action"] == "closed"
    closed = requests.get(f"{api}/api/alerts", params={"state": "closed", "start": "2026-11-05", "end": "2026-11-06"})
    assert [a["alert_id"] for a in closed.json()] == [aid]
    again = requests.post(f"{api}/api/alerts/{aid}", json={"state": "acknowledged"}, headers=TOKEN)
    assert again.status_code == 409 and "can go to open, not acknowledged" in again.json()["detail"]
    assert "Traceback" not in again.json()["detail"]  # the refusal, not the error of the handle it came through


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_post_needs_the_token(api: str, headers: dict) -> None:
    r = requests.post(f"{api}/api/alerts/SUZLON-NSE-20261105T0410Z", json={"state": "closed"}, headers=headers)
    assert r.status_code == 401 and "token" in r.json()["detail"]


@pytest.mark.parametrize("method, path, kwargs, status, fragment", [
    ("get", "/api/alerts/NOPE-NSE-20261105T0410Z", {}, 404, "no alert"),
    ("post", "/api/alerts/NOPE-NSE-20261105T0410Z", {"json": {"state": "closed", "disposition": "unsure"}}, 404,
     "no alert"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"json": {"state": "snoozed"}}, 422, "state"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"json": {}}, 422, "give a state"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"json": {"state": "closed", "colour": "red"}}, 422, "colour"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"data": "not json"}, 422, "the body is not JSON"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"json": {"state": None}}, 422, "give a state"),
    ("post", "/api/alerts/SUZLON-NSE-20261105T0410Z", {"json": {"state": "closed", "actor": "ásha"}}, 422,
     "actor: String should match pattern"),
    ("get", "/api/alerts/bad id!", {}, 422, "path parameter alert_id: String should match pattern"),
    ("get", "/api/alerts", {"params": {"end": "2026-11-05T04:00"}}, 422, "query parameter end: not a valid time"),
    ("get", "/api/alerts", {"params": {"state": "snoozed"}}, 422, "state"),
    ("get", "/api/alerts", {"params": {"ticker": "NOTREAL"}}, 404, "unknown ticker"),
    ("get", "/api/alerts", {"params": {"start": "2026-11-06", "end": "2026-11-05"}}, 422, "must be before end"),
    ("get", "/api/alerts", {"params": {"limit": "0"}}, 422, "limit"),
    ("get", "/api/stocks/SUZLON/features", {"params": {"interval": "5m"}}, 422, "interval"),
    ("get", "/api/stocks/NOTREAL/features", {}, 404, "unknown ticker"),
    ("get", "/api/stocks/SUZLON/features", {"params": {"start": "2026-01-01", "end": "2026-11-05"}}, 422,
     "narrow start/end"),
    ("get", "/api/stocks/TCS/risk", {}, 404, "no risk score"),
    ("get", "/api/stocks/NOTREAL/risk", {}, 404, "unknown ticker"),
    ("get", "/api/stocks/SUZLON/risk", {"params": {"exchange": "LSE"}}, 422, "exchange"),
    ("get", "/api/features/asof", {"params": {"tickers": "SUZLON"}}, 422, "query parameter ts: required"),
    ("get", "/api/features/asof", {"params": {"tickers": "SUZLON,", "ts": "2026-11-05"}}, 422,
     "query parameter tickers: give 1 to 100 comma-separated symbols"),
    ("get", "/api/features/asof", {"params": {"tickers": "SUZLON,NOTREAL", "ts": "2026-11-05T04:00:00Z"}}, 404,
     "NOTREAL"),
    ("get", "/api/features/asof", {"params": {"tickers": ",".join(["TCS"] * 101), "ts": "2026-11-05"}}, 422,
     "at most 100"),
    ("get", "/api/trending", {"params": {"hours": "0"}}, 422, "query parameter hours"),
    ("get", "/api/stocks/NOTREAL/filings", {}, 404, "unknown ticker"),
])
def test_bad_input_gets_a_clear_4xx(api: str, method: str, path: str, kwargs: dict, status: int,
                                    fragment: str) -> None:
    r = getattr(requests, method)(f"{api}{path}", headers=TOKEN, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body  # one error shape
    assert fragment in body["detail"]


_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _times(value: object) -> list[str]:
    """Every string in a JSON value that reads as a date-time."""
    if isinstance(value, str):
        return [value] if _TIME_TEXT.match(value) else []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [t for item in items for t in _times(item)]


@pytest.mark.parametrize("path, params", [
    ("/api/alerts", {"start": "2026-11-05", "end": "2026-11-06"}),
    ("/api/alerts/SUZLON-NSE-20261105T0410Z", {}),
    ("/api/stocks/SUZLON/risk", {}),
    ("/api/stocks/SUZLON/features", {"start": "2026-11-05T04:00:00Z", "end": "2026-11-05T05:00:00Z"}),
    ("/api/features/asof", {"tickers": "SUZLON,YESBANK", "ts": "2026-11-05T06:00:00+05:30"}),
    ("/api/trending", {"end": "2026-11-06T00:00:00Z"}),
    ("/api/stocks/SUZLON/filings", {"start": "2026-11-05", "end": "2026-11-06"}),
    ("/api/stocks/SUZLON/posts", {"start": "2026-11-05", "end": "2026-11-06"}),
])
def test_every_time_in_a_response_says_it_is_utc(api: str, path: str, params: dict) -> None:
    response = requests.get(f"{api}{path}", params=params)
    assert response.status_code == 200, response.text
    times = _times(response.json())
    assert times, f"{path} answered no time to check"
    assert [t for t in times if not t.endswith("Z")] == []


def test_features_by_minute_and_day(api: str) -> None:
    minute = requests.get(f"{api}/api/stocks/SUZLON/features",
                          params={"start": "2026-11-05T04:10:00Z", "end": "2026-11-05T04:12:00Z"}).json()
    assert minute["interval"] == "1m" and [r["ts"] for r in minute["rows"]] == ["2026-11-05T04:10:00Z",
                                                                                 "2026-11-05T04:11:00Z"]
    assert minute["rows"][0]["volume_ratio"] == 9.3 and minute["rows"][0]["promo_z"] == 6.1
    daily = requests.get(f"{api}/api/stocks/SUZLON/features",
                         params={"start": "2026-11-01", "end": "2026-11-06", "interval": "1d"}).json()
    assert [r["volume"] for r in daily["rows"]] == [40_000, 50_000]


def test_latest_risk_with_reasons(api: str) -> None:
    body = requests.get(f"{api}/api/stocks/SUZLON/risk").json()
    assert body["ts"] == "2026-11-05T04:39:00Z" and body["score"] < 10  # the last bar, after the episode
    peak = requests.get(f"{api}/api/alerts/SUZLON-NSE-20261105T0410Z").json()
    assert peak["peak_score"] > 90 and len(peak["reasons"]) == 4


def test_features_as_of_a_time_only_use_closed_bars(api: str) -> None:
    # at 04:12:00 the 04:11 bar has just closed; the 04:12 bar has not
    body = requests.get(f"{api}/api/features/asof", params={"tickers": "SUZLON,TCS", "ts": "2026-11-05T04:12:00Z"})
    assert body.status_code == 200, body.text
    rows = {r["ticker"]: r["features"] for r in body.json()["rows"]}
    assert rows["SUZLON"]["ts"] == "2026-11-05T04:11:00Z" and rows["TCS"] is None
    early = requests.get(f"{api}/api/features/asof", params={"tickers": "SUZLON", "ts": "2026-11-05T04:11:59Z"})
    assert early.json()["rows"][0]["features"]["ts"] == "2026-11-05T04:10:00Z"


def test_trending_by_chatter_z(api: str) -> None:
    body = requests.get(f"{api}/api/trending", params={"hours": 24, "end": "2026-11-06T00:00:00Z"}).json()
    assert [(t["ticker"], t["max_posts_z"]) for t in body["tickers"]] == [("SUZLON", 6.5), ("YESBANK", 6.5)]
    assert body["tickers"][0]["peak_ts"] == "2026-11-05T04:10:00Z"


def test_filings_of_a_stock(api: str) -> None:
    body = requests.get(f"{api}/api/stocks/suzlon/filings", params={"start": "2026-11-05", "end": "2026-11-06"}).json()
    assert [f["filing_id"] for f in body["filings"]] == ["f2", "f1"]


def test_openapi_lists_the_surveillance_routes(api: str) -> None:
    paths = requests.get(f"{api}/openapi.json").json()["paths"]
    for path in ("/api/alerts", "/api/alerts/{alert_id}", "/api/stocks/{ticker}/features", "/api/stocks/{ticker}/risk",
                 "/api/features/asof", "/api/trending", "/api/stocks/{ticker}/filings"):
        assert path in paths, path


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_alerts_list_show_ack_close(settings: Settings, warehouse, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    from sentinel_ray import cli

    monkeypatch.setattr(cli, "join_platform", lambda s, **_: s)  # this test's warehouse, not a platform's

    def run(*argv: str) -> tuple[int, str]:
        args = cli.build_parser().parse_args(["alerts", *argv])
        code = args.func(args, settings)
        return code, capsys.readouterr().out

    code, out = run("list", "--ticker", "suzlon", "--start", "2026-11-05", "--end", "2026-11-05")
    assert code == 0 and out.startswith("SUZLON-NSE-20261105T0410Z")
    assert "opened 2026-11-05 09:40 IST" in out and "last bar 2026-11-05 09:50 IST" in out
    code, out = run("show", "SUZLON-NSE-20261105T0410Z")
    assert "peak      99.8 at 2026-11-05 09:40 IST" in out and "volume 9.3x usual for 09:40 IST" in out
    assert "evidence  bars 2026-11-05 08:40 IST .. 2026-11-05 09:50 IST, 2 posts: x:p1, reddit:p2" in out
    with pytest.raises(ValueError, match="needs --disposition"):
        run("close", "SUZLON-NSE-20261105T0410Z")
    code, out = run("close", "SUZLON-NSE-20261105T0410Z", "--disposition", "false_positive", "--actor", "cli-test",
                    "--note", "a promoter's own news")
    assert code == 0 and "closed / false_positive" in out
    assert "cli-test   closed" in out and "a promoter's own news" in out
    with pytest.raises(ValueError, match="no alert"):
        run("ack", "NOPE-NSE-20261105T0410Z")
