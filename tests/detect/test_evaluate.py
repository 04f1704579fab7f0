"""Evaluation math on a tiny example worked out by hand."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.detect.evaluate import evaluate, render

UTC = dt.timezone.utc
DAY = dt.datetime(2026, 11, 5, tzinfo=UTC)


def at(hh: int, mm: int, day: dt.datetime = DAY) -> dt.datetime:
    return day.replace(hour=hh, minute=mm)


TS = pa.timestamp("ms", tz="UTC")
EPISODE_SCHEMA = pa.schema([("episode_id", pa.string()), ("kind", pa.string()), ("is_manipulation", pa.bool_()),
                            ("ticker", pa.string()), ("start", TS), ("peak", TS), ("end", TS)])
ALERT_SCHEMA = pa.schema([("alert_id", pa.string()), ("ticker", pa.string()), ("opened_at", TS)])


def episodes(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(EPISODE_SCHEMA.names, r)) for r in rows], schema=EPISODE_SCHEMA)


def alerts(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(ALERT_SCHEMA.names, r)) for r in rows], schema=ALERT_SCHEMA)


EPISODES = episodes(
    ("E1", "pump_and_dump", True, "AAA", at(5, 0), at(5, 40), at(6, 0)),
    ("E2", "pump_and_dump", True, "BBB", at(5, 0), at(5, 30), at(6, 0)),
    ("E3", "earnings", False, "CCC", at(5, 0), at(5, 20), at(6, 0)),
)
ALERTS = alerts(
    ("a1", "AAA", at(4, 40)),  # 20 min before E1's start: inside the 30 min slack
    ("a2", "AAA", at(5, 20)),  # a second alert on E1: true, but E1's lead comes from a1
    ("a3", "CCC", at(5, 10)),  # on a hard negative: false
    ("a4", "DDD", at(5, 10, DAY + dt.timedelta(days=1))),  # nothing that day: a quiet-day false alert
    ("a5", "BBB", at(6, 30)),  # after E2 ended: false, but on a ticker-day with an episode
)


def test_precision_recall_f1_lead_and_false_rate() -> None:
    r = evaluate(EPISODES, ALERTS, ticker_days=100)
    assert (r.alerts, r.true_alerts, r.false_alerts) == (5, 2, 3)
    assert (r.precision, r.recall) == (0.4, 0.5)
    assert r.f1 == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert (r.detected_episodes, r.manipulation_episodes) == (1, 2)
    assert (r.lead_median_s, r.lead_p10_s) == (3600.0, 3600.0)  # E1 peak 05:40 - a1 04:40
    # episode ticker-days: AAA, BBB, CCC on 5 Nov -> 97 quiet; only a4 is on one of them
    assert (r.quiet_ticker_days, r.quiet_false_alerts) == (97, 1)
    assert r.false_per_1k_ticker_days == pytest.approx(1000 / 97)
    assert r.matches == {"a1": ["E1"], "a2": ["E1"], "a3": ["E3"], "a4": [], "a5": []}
    kinds = {k.kind: k for k in r.by_kind}
    assert (kinds["pump_and_dump"].episodes, kinds["pump_and_dump"].alerted, kinds["pump_and_dump"].alerts) == (2, 1, 2)
    assert kinds["pump_and_dump"].alerted_rate == 0.5 and kinds["pump_and_dump"].lead_median_s == 3600.0
    assert (kinds["earnings"].is_manipulation, kinds["earnings"].alerted, kinds["earnings"].alerted_rate) == (
        False, 1, 1.0)
    table = render(r)
    assert "precision 40.0%" in table and "recall 50.0% (1/2 manipulation episodes)" in table
    assert "earnings" in table and "60.0 min" in table


def test_an_alert_before_the_slack_or_on_another_ticker_does_not_match() -> None:
    r = evaluate(EPISODES, alerts(("x", "AAA", at(4, 29)), ("y", "ZZZ", at(5, 10))), slack=dt.timedelta(minutes=30))
    assert r.matches == {"x": [], "y": []} and r.recall == 0.0 and r.precision == 0.0 and r.f1 == 0.0
    assert r.false_per_1k_ticker_days is None  # no ticker_days given


def test_lead_time_percentiles_over_detected_episodes() -> None:
    eps = episodes(*[(f"E{i}", "pump_and_dump", True, f"T{i}", at(5, 0), at(5, 0) + dt.timedelta(seconds=lead),
                      at(7, 0)) for i, lead in enumerate((600, 1200, 3000))])
    als = alerts(*[(f"a{i}", f"T{i}", at(5, 0)) for i in range(3)])
    r = evaluate(eps, als)
    assert r.lead_median_s == 1200.0
    assert r.lead_p10_s == pytest.approx(600 + 0.2 * 600)  # linear between the two lowest
    assert (r.precision, r.recall, r.f1) == (1.0, 1.0, 1.0)


def test_no_alerts_and_no_episodes() -> None:
    r = evaluate(episodes(), alerts(), ticker_days=10)
    assert (r.precision, r.recall, r.f1, r.lead_median_s) == (None, None, None, None)
    assert r.false_per_1k_ticker_days == 0.0


def test_market_wide_episodes_cover_the_tickers_they_touch_and_peak_ts_is_read() -> None:
    eps = pa.Table.from_pylist([
        {"episode_id": "R", "kind": "market_rally", "is_manipulation": False, "ticker": "*", "tickers": ["AAA", "BBB"],
         "start": at(5, 0), "peak_ts": at(5, 30), "end": at(6, 0)},
        {"episode_id": "P", "kind": "pump_dump", "is_manipulation": True, "ticker": "CCC", "tickers": ["CCC"],
         "start": at(5, 0), "peak_ts": at(5, 50), "end": at(6, 0)}])
    r = evaluate(eps, alerts(("a", "BBB", at(5, 10)), ("b", "CCC", at(5, 20))), ticker_days=10)
    assert r.matches == {"a": ["R"], "b": ["P"]}
    assert (r.true_alerts, r.false_alerts, r.lead_median_s) == (1, 1, 1800.0)
    assert r.quiet_ticker_days == 7  # AAA, BBB and CCC on 5 Nov had an episode


def test_a_promotion_campaign_ahead_of_the_move_belongs_to_the_episode() -> None:
    schema = EPISODE_SCHEMA.append(pa.field("chatter_start", TS))
    eps = pa.Table.from_pylist([dict(zip(schema.names, ("E1", "pump_dump", True, "AAA", at(6, 0), at(7, 0), at(8, 0),
                                                        at(4, 0))))], schema=schema)
    r = evaluate(eps, alerts(("a", "AAA", at(4, 10)), ("b", "AAA", at(3, 20))))
    assert r.matches == {"a": ["E1"], "b": []}  # 3:20 is before the first post less the 30 min slack
    assert (r.recall, r.lead_median_s) == (1.0, 3 * 3600 - 600)


def test_a_pump_inside_a_rally_takes_the_alert_and_ignored_episodes_count_neither_way() -> None:
    schema = EPISODE_SCHEMA.append(pa.field("tickers", pa.list_(pa.string())))
    eps = pa.Table.from_pylist([dict(zip(schema.names, r)) for r in (
        ("P", "pump_dump", True, "AAA", at(5, 0), at(5, 40), at(6, 0), ["AAA"]),
        ("R", "market_rally", False, "*", at(4, 0), at(6, 0), at(9, 0), ["AAA", "BBB"]))], schema=schema)
    earlier = episodes(("X", "earnings", False, "CCC", at(3, 0), at(4, 0), at(9, 0)))
    r = evaluate(eps, alerts(("a", "AAA", at(5, 5)), ("b", "BBB", at(5, 5)), ("c", "CCC", at(5, 5))),
                 ticker_days=10, days=[DAY.date()], ignored=earlier)
    assert r.matches == {"a": ["P", "R"], "b": ["R"]}  # c is on an ignored episode: not scored
    kinds = {k.kind: k for k in r.by_kind}
    assert (kinds["pump_dump"].alerted, kinds["market_rally"].alerted) == (1, 1)  # b, not a, alerted the rally
    assert (r.true_alerts, r.false_alerts) == (1, 1)
    # AAA, BBB (the rally's) and CCC (ignored) are not quiet on the day
    assert (r.quiet_ticker_days, r.quiet_false_alerts) == (7, 0)
