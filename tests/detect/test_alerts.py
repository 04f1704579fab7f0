"""Episodes and alerts: one alert per episode, hysteresis, quiet gaps, idempotence; the workflow."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.detect.alerts import (Episode, TransitionError, advance, alerts_table, attach_post_ids,
                                        events_table, session_index, trading_gap_min, transition)
from sentinel_ray.schemas import ALERT_EVENTS, ALERTS
from tests.detect.rows import MIN, T0, UTC, risk

NOW = dt.datetime(2026, 11, 6, 12, tzinfo=UTC)


def run(*batches: pa.Table, state: dict | None = None, by: str = "backfill"):
    state = state or {}
    touched, opened, events = {}, [], []
    for batch in batches:
        result = advance(batch, state, detected_by=by)
        state = result.state
        touched.update(result.touched)
        opened += result.opened
        events += result.events
    return state, touched, opened, events


def test_a_running_episode_updates_one_alert() -> None:
    state, touched, opened, _ = run(risk([10, 65, 70, 55, 45, 80, 30, 20]))
    assert opened == ["SUZLON-NSE-20261105T0513Z"] and list(touched) == opened
    ep = touched[opened[0]]
    assert (ep.opened_at, ep.peak_score, ep.peak_ts, ep.last_bar_ts) == (T0 + MIN, 80.0, T0 + 5 * MIN, T0 + 5 * MIN)
    assert (ep.evidence_start, ep.evidence_end) == (T0 + MIN - dt.timedelta(minutes=60), T0 + 5 * MIN)
    assert ep.reasons == '[{"feature": "volume_ratio", "value": 80.0, "text": "score 80.0"}]'  # the peak's
    assert (ep.state, ep.detected_by, ep.last_seen_ts) == ("open", "backfill", T0 + 7 * MIN)
    assert state[("SUZLON", "NSE")] is ep  # still running: the quiet gap has not passed


def test_hysteresis_never_opens_below_the_open_threshold() -> None:
    _, touched, opened, events = run(risk([45, 55, 59.9, 30, 59, 41]))
    assert (touched, opened, events) == ({}, [], [])


def test_a_dip_shorter_than_the_quiet_gap_continues_the_episode() -> None:
    _, touched, opened, _ = run(risk([65] + [35] * 29 + [61]))
    assert len(opened) == 1 and touched[opened[0]].last_bar_ts == T0 + 30 * MIN


def test_after_the_quiet_gap_a_new_crossing_opens_a_new_alert_and_a_stay_level_bar_does_not() -> None:
    _, _, opened, _ = run(risk([65] + [35] * 31 + [50]))
    assert len(opened) == 1
    state, touched, opened, _ = run(risk([65] + [35] * 31 + [61]))
    assert opened == ["SUZLON-NSE-20261105T0512Z", "SUZLON-NSE-20261105T0544Z"]
    assert touched[opened[0]].last_bar_ts == T0 and state[("SUZLON", "NSE")].alert_id == opened[1]


def test_the_quiet_gap_counts_trading_minutes_across_the_night_and_weekend() -> None:
    friday_close = dt.datetime(2026, 11, 6, 9, 59, tzinfo=UTC)  # 15:29 IST, the last bar
    monday_open = dt.datetime(2026, 11, 9, 3, 45, tzinfo=UTC)  # 09:15 IST
    assert trading_gap_min(friday_close, monday_open) == 1
    assert session_index([int(monday_open.timestamp() * 1000)])[0] % 375 == 0
    _, touched, opened, _ = run(risk([70, 50], times=[friday_close, monday_open]))
    assert len(opened) == 1 and touched[opened[0]].last_bar_ts == monday_open


def test_tickers_are_independent_and_input_order_does_not_matter() -> None:
    batch = pa.concat_tables([risk([70, 20], ticker="AAA"), risk([10, 90], ticker="BBB")])
    _, touched, opened, _ = run(batch.take(pa.array([3, 0, 2, 1])))
    assert sorted(opened) == ["AAA-NSE-20261105T0512Z", "BBB-NSE-20261105T0513Z"]


def test_stream_batches_give_the_same_alerts_as_one_backfill() -> None:
    scores = [10, 65, 70, 55, 20, 20, 80, 45, 30]
    whole = run(risk(scores))
    table = risk(scores)
    parts = run(table.slice(0, 3), table.slice(3, 4), table.slice(7))
    assert _rows(whole[1]) == _rows(parts[1]) and whole[3] == parts[3]  # alerts and detector events


def test_redelivered_batches_change_nothing() -> None:
    table = risk([10, 65, 70, 55, 80])
    state, _, opened, _ = run(table)
    again = advance(table.slice(1, 3), state, detected_by="stream")
    assert (again.touched, again.opened, again.events) == ({}, [], [])
    # re-running from scratch derives the same alert id: the table replaces, never adds
    assert run(table)[2] == opened


def test_advance_does_not_change_the_state_it_is_given() -> None:
    state, _, _, _ = run(risk([65, 70]))
    before = {k: dataclasses.replace(v) for k, v in state.items()}
    advance(risk([95], start=T0 + 2 * MIN), state, detected_by="stream")
    assert state == before


def test_detector_events_opened_and_peak_bands_with_deterministic_ids() -> None:
    _, _, opened, events = run(risk([65, 70, 72, 85, 84]))
    aid = opened[0]
    assert [(e["event_id"], e["action"], e["at"]) for e in events] == [
        (f"{aid}/opened", "opened", T0 + MIN),
        (f"{aid}/peak/20261105T0513Z", "updated", T0 + 2 * MIN),
        (f"{aid}/peak/20261105T0515Z", "updated", T0 + 4 * MIN)]
    assert events[0]["note"] == "score 65.0 at 2026-11-05 10:42 IST: score 65.0"
    assert events[2]["note"] == "peak 72.0 -> 85.0 at 2026-11-05 10:45 IST"
    assert events_table(events).schema == ALERT_EVENTS.arrow_schema


def test_post_ids_are_the_posts_in_the_evidence_range() -> None:
    _, touched, _, _ = run(risk([65, 70]))
    ep = next(iter(touched.values()))
    posts = pa.table({"ticker": ["SUZLON", "SUZLON", "SUZLON", "OTHER"],
                      "ref": ["x:late", "reddit:a", "x:old", "x:other"],
                      "ts": pa.array([T0 + 2 * MIN, T0 - dt.timedelta(minutes=30), T0 - dt.timedelta(minutes=61),
                                      T0], pa.timestamp("ms", tz="UTC"))})
    attach_post_ids([ep], posts)
    assert ep.post_ids == ["reddit:a"]  # x:late after the last bar closed, x:old before the lookback


def _alert(**over) -> dict:
    _, touched, _, _ = run(risk([65]))
    row = next(iter(touched.values())).row(NOW)
    row.update(over)
    return row


def test_transitions_write_a_new_version_and_an_audit_row() -> None:
    alert = _alert()
    acked, event = transition(alert, "acknowledged", None, "asha", "looking", at=NOW + MIN)
    assert (acked["state"], acked["disposition"], acked["updated_at"]) == ("acknowledged", None, NOW + MIN)
    assert {k: event[k] for k in ("alert_id", "at", "actor", "action", "from_state", "to_state", "note")} == {
        "alert_id": alert["alert_id"], "at": NOW + MIN, "actor": "asha", "action": "acknowledged",
        "from_state": "open", "to_state": "acknowledged", "note": "looking"}
    closed, event = transition(acked, "closed", "true_positive", "asha", at=NOW + 2 * MIN)
    assert (closed["state"], closed["disposition"], event["action"]) == ("closed", "true_positive", "closed")
    relabel, event = transition(closed, None, "unsure", "ravi", at=NOW + 3 * MIN)
    assert (relabel["state"], relabel["disposition"], event["action"]) == ("closed", "unsure", "updated")
    reopened, event = transition(relabel, "open", None, "ravi", at=NOW + 4 * MIN)
    assert (reopened["state"], event["action"], event["from_state"]) == ("open", "reopened", "closed")
    assert alerts_table([alert, acked, closed]).schema == ALERTS.arrow_schema


def test_a_new_version_always_wins_over_the_one_it_changes() -> None:
    acked, _ = transition(_alert(updated_at=NOW), "acknowledged", None, "asha", at=NOW - MIN)
    assert acked["updated_at"] == NOW + dt.timedelta(milliseconds=1)


@pytest.mark.parametrize("state, new_state, disposition, actor, fragment", [
    ("closed", "acknowledged", None, "asha", "can go to open, not acknowledged"),
    ("open", "closed", None, "asha", "closing needs a disposition"),
    ("open", "open", None, "asha", "already open: nothing to change"),
    ("open", "snoozed", None, "asha", "unknown state 'snoozed'"),
    ("open", "closed", "maybe", "asha", "unknown disposition 'maybe'"),
    ("open", "acknowledged", None, "  ", "an actor"),
])
def test_bad_transitions_are_refused(state: str, new_state: str, disposition, actor: str, fragment: str) -> None:
    with pytest.raises(TransitionError, match=fragment):
        transition(_alert(state=state), new_state, disposition, actor)


def _rows(touched: dict[str, Episode]) -> list[dict]:
    return sorted((ep.row(NOW) for ep in touched.values()), key=lambda r: r["alert_id"])
