"""Replay from the raw zone: kept payloads re-read through today's parser and rules replace what
they produced, exactly once; a report counts rows added, changed and removed."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray import sources
from sentinel_ray.config import Settings
from sentinel_ray.detect.alerts import alerts_table
from sentinel_ray.ingest.backfill import run_backfill
from sentinel_ray.ingest.replay import ReplayError, replay_raw, sessions_touched
from sentinel_ray.ingest.supervisor import stream_store
from sentinel_ray.market import as_utc, ist_date, ist_midnight_utc
from sentinel_ray.schemas import FILINGS, POSTS, PRICES, TIMESTAMP_TYPE
from sentinel_ray.sources.replay import parse_payload as replay_parser
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import features_of_stored_bars, stored_of_day

pytestmark = pytest.mark.ray
DAY = dt.date(2026, 11, 5)
CHANGED, DROPPED, BROKEN = "TCS", "INFY", "RELIANCE"


def changed_parser(payload):
    """Today's replay parser, changed: TCS bars read 1% higher, INFY's records are no longer read,
    RELIANCE's volumes come out negative (which the rules reject)."""
    parsed = replay_parser(payload)
    prices = parsed.get("prices")
    if prices is not None and prices.num_rows:
        prices = prices.filter(pc.fill_null(pc.not_equal(prices.column("ticker"), DROPPED), True))
        is_changed = pc.fill_null(pc.equal(prices.column("ticker"), CHANGED), False)
        for name in ("open", "high", "low", "close"):  # the whole bar 1% up: still a consistent bar
            column = prices.column(name)
            prices = prices.set_column(prices.schema.get_field_index(name), name,
                                       pc.if_else(is_changed, pc.multiply(column, 1.01), column))
        is_broken = pc.fill_null(pc.equal(prices.column("ticker"), BROKEN), False)
        volume = prices.column("volume")
        prices = prices.set_column(prices.schema.get_field_index("volume"), "volume",
                                   pc.if_else(is_broken, pc.negate(volume), volume))
        parsed["prices"] = prices
    return parsed


def _counts(settings: Settings) -> dict[str, int]:
    wh, lake = connect_warehouse(settings), Lake(settings.resolved_lake_uri)
    rows = wh.query_rows("SELECT count() AS n, countIf(ticker = {t:String}) AS dropped, "
                         "countIf(ticker = {b:String}) AS broken FROM {db}.prices FINAL",
                         {"t": DROPPED, "b": BROKEN})[0]
    quarantine = lake.read("quarantine", "prices")
    return {"warehouse": rows["n"], "dropped": rows["dropped"], "broken": rows["broken"],
            "curated": lake.read("curated", "prices").num_rows, "quarantine": quarantine.num_rows,
            "negative_volume": sum(1 for r in quarantine.column("reject_reason").to_pylist() if r == "negative_volume"),
            "dropped_quarantined": sum(1 for t in quarantine.column("ticker").to_pylist() if t == DROPPED)}


def _tcs_close(settings: Settings) -> float:
    return connect_warehouse(settings).query_rows(
        "SELECT sum(close) AS s FROM {db}.prices FINAL WHERE ticker = {t:String}", {"t": CHANGED})[0]["s"]


def test_a_replay_with_todays_parser_replaces_what_the_payloads_produced_once(
        ray_session, embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    run_backfill(isolated_settings, "replay", DAY, DAY)
    before, close_before = _counts(isolated_settings), _tcs_close(isolated_settings)
    assert before["warehouse"] == before["curated"] > 0 and before["dropped"] > 0 and before["broken"] > 0

    same = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)
    assert (same.payloads, same.added, same.changed, same.removed) == (1, 0, 0, 0)
    assert same.rows_before == same.rows_valid == before["warehouse"]
    assert _counts(isolated_settings) == before  # the same parser gives back the same rows

    monkeypatch.setitem(sources.PARSERS, "replay", f"{__name__}:changed_parser")
    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)
    after = _counts(isolated_settings)
    tcs = connect_warehouse(isolated_settings).query_rows(
        "SELECT count() AS n FROM {db}.prices FINAL WHERE ticker = {t:String}", {"t": CHANGED})[0]["n"]
    assert report.changed == tcs and report.removed == before["dropped"] + before["broken"] and report.added == 0
    assert after["warehouse"] == after["curated"] == before["warehouse"] - before["dropped"] - before["broken"]
    assert after["dropped"] == after["broken"] == 0
    # every RELIANCE bar now rejected, and quarantined once (a bar that an injected fault already
    # had rejected is now rejected for its volume first: the first failing reason is the one
    # kept); INFY's records are not read at all, its rejected ones included
    assert after["quarantine"] == before["quarantine"] + before["broken"] - before["dropped_quarantined"]
    assert after["dropped_quarantined"] == 0
    assert after["negative_volume"] - before["negative_volume"] >= before["broken"]
    assert _tcs_close(isolated_settings) == pytest.approx(close_before * 1.01)

    again = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)
    assert (again.added, again.changed, again.removed) == (0, 0, 0)
    assert _counts(isolated_settings) == after  # twice: the same rows, nothing doubled


def test_bad_ranges_and_datasets_are_refused(isolated_settings: Settings) -> None:
    with pytest.raises(ReplayError, match="unknown dataset"):
        replay_raw(isolated_settings, source="replay", dataset="nope", start=DAY, end=DAY)
    with pytest.raises(ReplayError, match="before start"):
        replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY - dt.timedelta(days=1))


def test_a_replay_replaces_rows_stored_before_they_named_their_payload(
        ray_session, embedded_redis, isolated_settings: Settings) -> None:
    """Rows stored before migration 4 carry no raw_id, and their lake files have no such column:
    a replay of their day finds them by their natural key, so they are replaced, not doubled."""
    import pyarrow.parquet as pq

    run_backfill(isolated_settings, "replay", DAY, DAY)
    before = _counts(isolated_settings)
    lake, wh = Lake(isolated_settings.resolved_lake_uri), connect_warehouse(isolated_settings)
    for zone in ("curated", "quarantine"):  # the files as an older release wrote them
        for path in lake.list_files(zone, "prices"):
            pq.write_table(lake.read_file(path).drop_columns(["raw_id", "raw_pos"]), path)
    wh.command("ALTER TABLE {db}.prices UPDATE raw_id = NULL, raw_pos = NULL WHERE 1 SETTINGS mutations_sync = 2")
    assert wh.query_rows("SELECT count() AS n FROM {db}.prices WHERE raw_id IS NOT NULL")[0]["n"] == 0
    # a rejection of the same key filed by a batch of another day: not what these payloads produced
    [rejected] = [p for p in lake.list_files("quarantine", "prices") if f"/date={DAY}/" in p]
    later = rejected.replace(f"/date={DAY}/", f"/date={DAY + dt.timedelta(days=3)}/")
    Path(later).parent.mkdir(parents=True)
    pq.write_table(lake.read_file(rejected).slice(0, 1), later)

    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)

    assert report.rows_valid == before["curated"] and report.files_rewritten >= 2
    [extra] = lake.read_file(later).to_pylist()  # kept, and counted beside the rows once
    assert _counts(isolated_settings) == {
        **before, "quarantine": before["quarantine"] + 1,
        "dropped_quarantined": before["dropped_quarantined"] + (extra["ticker"] == DROPPED),
        "negative_volume": before["negative_volume"] + (extra["reject_reason"] == "negative_volume")}
    curated = lake.read("curated", "prices")
    keys = curated.group_by(["ticker", "exchange", "interval", "source", "ts"]).aggregate([])
    assert keys.num_rows == curated.num_rows and curated.column("raw_id").null_count == 0


def test_a_prices_replay_computes_its_sessions_signals_again_from_the_stored_bars(
        ray_session, embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    """Features, risk and alerts are of the bars stored after the replay: no rows of bars it
    removed, and every feature value what the features give on the stored bars."""
    run_backfill(isolated_settings, "replay", DAY, DAY)
    monkeypatch.setitem(sources.PARSERS, "replay", f"{__name__}:changed_parser")
    # a live state's sessions reach back to DAY (on any later date a replay of DAY moves no epoch)
    monkeypatch.setattr("sentinel_ray.ingest.serving.utc_now", lambda: as_utc(dt.datetime(2026, 11, 20)))

    store = stream_store(isolated_settings)
    epoch = store.signals_epoch()
    untouched = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY, signals=False)
    assert store.signals_epoch() == epoch
    assert untouched.removed > 0 and untouched.signal_sessions == 0
    stale = stored_of_day(isolated_settings, "features_1m")
    assert pc.sum(pc.is_in(stale.column("ticker"), pa.array([DROPPED, BROKEN]))).as_py() > 0  # left as they were
    assert not stale.equals(features_of_stored_bars(isolated_settings))
    kept = stale.filter(pc.invert(pc.is_in(stale.column("ticker"), pa.array([DROPPED, BROKEN]))))
    assert not kept.equals(features_of_stored_bars(isolated_settings))  # the market's median moved too

    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)
    # one block (the later sessions hold no bars: none stored after DAY), its epoch moved once:
    # the running stream's consumers rebuild their states
    assert store.signals_epoch() == epoch + 1
    features = stored_of_day(isolated_settings, "features_1m")
    risk = stored_of_day(isolated_settings, "risk_1m")
    days = stored_of_day(isolated_settings, "features_1d", "day")
    assert report.signal_sessions == 1 and report.feature_rows == features.num_rows > 0
    for table in (features, risk, days):
        assert not pc.any(pc.is_in(table.column("ticker"), pa.array([DROPPED, BROKEN]))).as_py()
    assert risk.select(["ticker", "exchange", "ts"]).equals(features.select(["ticker", "exchange", "ts"]))
    assert features.equals(features_of_stored_bars(isolated_settings))  # every value, every row
    assert features.num_rows < stale.num_rows

    again = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)
    assert again.signal_sessions == 1 and stored_of_day(isolated_settings, "features_1m").equals(features)
    assert stored_of_day(isolated_settings, "risk_1m").num_rows == risk.num_rows


def test_a_prices_replay_computes_the_later_sessions_whose_baselines_hold_its_bars_again(
        ray_session, embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    """DAY's bars are in the volume and daily baselines of the 20 sessions after it: a replay
    that changes them computes those sessions' signals again too, to what the features give
    on the stored bars, and counts only the sessions that hold bars."""
    later = DAY + dt.timedelta(days=4)  # the Monday after
    # seven sessions before DAY (volume baselines need five), and DAY..Wednesday: five sessions
    run_backfill(isolated_settings, "replay", DAY - dt.timedelta(days=10), DAY + dt.timedelta(days=6))
    monkeypatch.setitem(sources.PARSERS, "replay", f"{__name__}:changed_parser")
    before = stored_of_day(isolated_settings, "features_1m", day=later)
    assert before.equals(features_of_stored_bars(isolated_settings, later))

    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)

    assert report.signal_sessions == 5
    after = stored_of_day(isolated_settings, "features_1m", day=later)
    assert after.num_rows == before.num_rows  # the Monday's bars are the same ...
    assert not after.equals(before)  # ... their baselines are not
    assert after.equals(features_of_stored_bars(isolated_settings, later))


def test_an_alert_the_replayed_rows_no_longer_raise_is_kept_and_its_history_says_so(
        ray_session, embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    """An alert opened on DAY from bars a parser fix then drops: the analyst's alert stays as
    they left it (acknowledged), its history gets the replay's event, the report names it."""
    run_backfill(isolated_settings, "replay", DAY, DAY)
    warehouse = connect_warehouse(isolated_settings)
    opened = ist_midnight_utc(DAY) + dt.timedelta(hours=10)  # 10:00 IST on DAY
    alert = {"alert_id": f"{DROPPED}/NSE/test", "ticker": DROPPED, "exchange": "NSE", "opened_at": opened,
             "last_bar_ts": opened, "peak_score": 80.0, "peak_ts": opened, "state": "acknowledged",
             "disposition": None, "reasons": "[]", "evidence_start": opened, "evidence_end": opened,
             "post_ids": [], "detected_by": "backfill", "updated_at": opened}
    warehouse.insert("alerts", alerts_table([alert]))
    monkeypatch.setitem(sources.PARSERS, "replay", f"{__name__}:changed_parser")  # INFY's bars are no longer read

    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=DAY, end=DAY)

    assert report.alerts_not_raised_again == [alert["alert_id"]]
    assert "no longer raised by the rows" in report.render()
    [kept] = warehouse.query_rows("SELECT state, detected_by FROM {db}.alerts FINAL WHERE alert_id = {a:String}",
                                  {"a": alert["alert_id"]})
    assert kept == {"state": "acknowledged", "detected_by": "backfill"}
    [event] = warehouse.query_rows("SELECT actor, action, from_state, to_state, note FROM {db}.alert_events FINAL "
                                   "WHERE alert_id = {a:String}", {"a": alert["alert_id"]})
    assert (event["actor"], event["action"], event["from_state"], event["to_state"]) == (
        "replay", "not_raised_again", "acknowledged", "acknowledged")
    assert report.run_id in event["note"]


def _ts(*moments: dt.datetime) -> pa.Array:
    return pa.array(moments, TIMESTAMP_TYPE)


def test_the_sessions_a_replay_recomputes_are_those_its_rows_reach(monkeypatch) -> None:
    utc = dt.timezone.utc
    monkeypatch.setattr("sentinel_ray.ingest.replay.utc_now", lambda: dt.datetime(2027, 2, 1, tzinfo=utc))
    bars = pa.table({"interval": ["1m", "1m", "1d"],
                     "ts": _ts(dt.datetime(2026, 11, 5, 4, tzinfo=utc), dt.datetime(2026, 11, 5, 18, 40, tzinfo=utc),
                               dt.datetime(2026, 10, 1, 18, 30, tzinfo=utc))})  # a daily bar has no signals
    # their sessions (11-05, and 11-06 for 00:10 IST) and every day to the 20th session after
    # the last (the NSE calendar has no holiday between): Friday 2026-12-04
    assert sessions_touched(PRICES, bars, bars.slice(0, 0)) == [dt.date(2026, 11, 5) + dt.timedelta(days=k)
                                                                for k in range(30)]
    # across a holiday (2026-12-25): the 20th session after Thursday 12-10 is Friday 2027-01-08
    december = pa.table({"interval": ["1m"], "ts": _ts(dt.datetime(2026, 12, 10, 4, 30, tzinfo=utc))})
    assert sessions_touched(PRICES, december, december.slice(0, 0)) == [
        dt.date(2026, 12, 10) + dt.timedelta(days=k) for k in range(30)]
    monkeypatch.setattr("sentinel_ray.ingest.replay.utc_now", lambda: dt.datetime(2027, 1, 6, 6, tzinfo=utc))
    assert sessions_touched(PRICES, december, december.slice(0, 0))[-1] == dt.date(2027, 1, 6)  # up to today
    monkeypatch.setattr("sentinel_ray.ingest.replay.utc_now", lambda: dt.datetime(2027, 2, 1, tzinfo=utc))
    post = pa.table({"ts": _ts(dt.datetime(2026, 11, 5, 18, 0, tzinfo=utc))})  # 23:30 IST
    # its day, the 20 after it (the minute rows' posts baseline) and the 20 sessions after
    # it (the day rows'): to Thursday 2026-12-03
    assert sessions_touched(POSTS, post, post.slice(0, 0)) == [dt.date(2026, 11, 5) + dt.timedelta(days=k)
                                                                for k in range(29)]
    filing = pa.table({"ts": _ts(dt.datetime(2026, 11, 5, 6, 0, tzinfo=utc))})
    assert sessions_touched(FILINGS, filing.slice(0, 0), filing) == [
        dt.date(2026, 11, 5) + dt.timedelta(days=k) for k in range(8)]
    assert sessions_touched(PRICES, bars.slice(0, 0), bars.slice(0, 0)) == []


def test_a_replay_of_a_day_with_real_alerts_raises_them_again_and_flags_none(
        ray_session, embedded_redis, isolated_settings: Settings) -> None:
    """The positive case: a month of history gives the detector its baselines and opens alerts;
    replaying the prices of a day holding one, with the same parser, raises it again (same id,
    same state) and marks nothing not_raised_again."""
    first = DAY - dt.timedelta(days=30)
    run_backfill(isolated_settings, "replay", first, DAY)
    warehouse = connect_warehouse(isolated_settings)
    alerts = warehouse.query_rows("SELECT alert_id, opened_at, last_bar_ts, peak_score FROM {db}.alerts FINAL "
                                  "ORDER BY opened_at")
    assert alerts, "a month of replay opens alerts (the replay's pumps)"
    day = ist_date(as_utc(alerts[-1]["opened_at"]))
    before = {a["alert_id"]: a for a in alerts}

    report = replay_raw(isolated_settings, source="replay", dataset="prices", start=day, end=day)

    assert report.signal_sessions >= 1 and report.alerts_not_raised_again == []
    after = {a["alert_id"]: a for a in warehouse.query_rows(
        "SELECT alert_id, opened_at, last_bar_ts, peak_score FROM {db}.alerts FINAL ORDER BY opened_at")}
    assert after == before  # the same alerts, not cut short, none new
    assert warehouse.query_rows("SELECT count() AS n FROM {db}.alert_events FINAL "
                                "WHERE action = 'not_raised_again'")[0]["n"] == 0
