"""A backfill computes the signals of its days: features, risk and alerts from history,
the same alerts again on a re-run (same ids, the analyst's state kept)."""
from __future__ import annotations

import datetime as dt

import pytest

from sentinel_ray.config import Settings
from sentinel_ray.detect.run import apply_transition, get_alert
from sentinel_ray.ingest.backfill import finished_days, run_backfill
from sentinel_ray.ingest.supervisor import stream_store
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import DAY, features_of_stored_bars, stored_of_day

pytestmark = pytest.mark.ray
START, END = dt.date(2026, 10, 19), dt.date(2026, 11, 4)  # ends with two loud pumps (3 and 4 November)


def _alerts(settings: Settings) -> list[dict]:
    return connect_warehouse(settings).query_rows(
        "SELECT alert_id, ticker, opened_at, peak_score, state, detected_by, length(post_ids) AS posts "
        "FROM {db}.alerts FINAL ORDER BY alert_id")


def test_a_backfill_opens_the_alerts_of_the_pumps_in_its_range_and_a_rerun_keeps_them(
        ray_session, embedded_redis, isolated_settings: Settings) -> None:
    summary = run_backfill(isolated_settings, "replay", START, END)
    episodes = ReplaySource.from_settings(isolated_settings).episodes(END - dt.timedelta(days=2), END)
    pumps = {r["ticker"]: r for r in episodes.to_pylist() if r["kind"] == "pump_dump"}
    assert set(pumps) == {"GTLINFRA", "SUBEXLTD"}
    alerts = _alerts(isolated_settings)
    by_ticker = {a["ticker"]: a for a in alerts}
    for ticker, pump in pumps.items():
        alert = by_ticker[ticker]
        opened = alert["opened_at"].replace(tzinfo=dt.timezone.utc)
        assert pump["start"] - dt.timedelta(minutes=30) <= opened <= pump["peak_ts"], (ticker, opened, pump)
        assert alert["detected_by"] == "backfill" and alert["peak_score"] >= 60 and alert["posts"] > 0
    assert summary.alerts_opened == len(alerts) and summary.feature_rows > 0

    wh = connect_warehouse(isolated_settings)
    risk = wh.query_rows("SELECT count() AS n, uniqExact(ticker, exchange, ts) AS k FROM {db}.risk_1m FINAL")[0]
    assert risk["n"] == risk["k"] == summary.feature_rows

    apply_transition(wh, by_ticker["GTLINFRA"]["alert_id"], "acknowledged", None, "asha", "looking")
    again = run_backfill(isolated_settings, "replay", START, END, force=True)
    assert again.alerts_opened == summary.alerts_opened
    after = _alerts(isolated_settings)
    assert [a["alert_id"] for a in after] == [a["alert_id"] for a in alerts]  # no second alert for any episode
    assert get_alert(wh, by_ticker["GTLINFRA"]["alert_id"])["state"] == "acknowledged"  # the analyst's state kept
    assert wh.query_rows("SELECT count() AS n FROM {db}.risk_1m FINAL")[0]["n"] == summary.feature_rows


def test_a_backfill_filling_a_gap_computes_again_the_later_sessions_whose_baselines_hold_it(
        ray_session, embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    """History with a day missing: the sessions stored after it had baselines without it.
    Backfilling the day computes their signals again, to what the features give on every
    stored bar, and the summary counts them. A run stopped before that is done has not
    finished the day: started again, it redoes it, and the later sessions with it."""
    later = DAY + dt.timedelta(days=4)  # the Monday after
    run_backfill(isolated_settings, "replay", DAY - dt.timedelta(days=10), DAY - dt.timedelta(days=1))
    run_backfill(isolated_settings, "replay", DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=6))
    before = stored_of_day(isolated_settings, "features_1m", day=later)
    assert before.equals(features_of_stored_bars(isolated_settings, later))

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while the later sessions are computed

    monkeypatch.setattr("sentinel_ray.ingest.backfill.recompute_sessions", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_backfill(isolated_settings, "replay", DAY, DAY)
    assert DAY not in finished_days(connect_warehouse(isolated_settings), "replay", DAY, DAY)
    monkeypatch.undo()

    summary = run_backfill(isolated_settings, "replay", DAY, DAY)

    assert (summary.days, summary.skipped) == (1, 0)
    assert summary.later_sessions == 4 and "4 later session(s)" in summary.render()  # Fri, Mon-Wed
    after = stored_of_day(isolated_settings, "features_1m", day=later)
    assert after.num_rows == before.num_rows and not after.equals(before)
    assert after.equals(features_of_stored_bars(isolated_settings, later))
    days = stored_of_day(isolated_settings, "features_1d", "day", day=later)
    assert days.num_rows and days.equals(features_of_stored_bars(isolated_settings, later, "features_1d"))
    risk = stored_of_day(isolated_settings, "risk_1m", day=later)
    assert risk.select(["ticker", "exchange", "ts"]).equals(after.select(["ticker", "exchange", "ts"]))


def test_a_backfill_of_old_history_leaves_the_live_stream_alone(
        ray_session, embedded_redis, isolated_settings: Settings) -> None:
    """Days older than any live state's sessions, with nothing stored after them: no later
    session to compute, and the stream's consumers are not made to rebuild their states."""
    store = stream_store(isolated_settings)
    epoch = store.signals_epoch()
    summary = run_backfill(isolated_settings, "replay", dt.date(2025, 3, 3), dt.date(2025, 3, 3))
    assert summary.feature_rows > 0 and summary.later_sessions == 0
    assert store.signals_epoch() == epoch
