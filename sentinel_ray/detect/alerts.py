"""Alerts: one per ticker per episode, and the analyst's workflow on them.

An episode opens at the first bar whose risk score reaches OPEN_THRESHOLD. It runs while
bars keep reaching STAY_THRESHOLD (hysteresis: a score wavering around the open line does
not open and close alerts), and it survives dips below STAY_THRESHOLD as long as the next
bar at or above it comes within QUIET_GAP_MIN trading minutes of the last one. Gaps are
counted in session minutes, so an episode still running at 15:29 IST goes on at 09:15 the
next trading day. Every bar of a running episode updates the same alert (last bar, peak,
evidence range); once an episode has ended, a new crossing opens a new alert.

`alert_id` is ticker, exchange and opening bar, so re-running a backfill or redelivering a
stream batch derives the same id and writes a newer version of the same row (the table
is a ReplacingMergeTree on `updated_at`), never a second alert. Detector events get
deterministic ids and times too (the bar's close), so re-inserting them changes nothing.

Everything here is pure over Arrow and a small state: the running episode per
(ticker, exchange), loadable from the alerts table (`run.load_open_episodes`). The stream
and the backfill call the same `advance`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import IST_OFFSET, MS_PER_DAY, MS_PER_MIN, SESSION_BARS, SESSION_OPEN_MS, as_utc, format_ist
from sentinel_ray.pipeline.features import session_ordinal
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import ALERT_EVENTS, ALERTS, TIMESTAMP_TYPE

# Open at 60: above earnings-like moves (price + volume + news chatter score ~37, ~57 with
# a little promotion) and below a pump's start (promotion + volume ~73); see risk.py.
OPEN_THRESHOLD = 60.0
# Stay open down to 40: a running pump's score swings by 10-20 points minute to minute.
STAY_THRESHOLD = 40.0
# A dip longer than this (trading minutes) ends the episode: pumps run in waves minutes
# apart; half an hour of calm is a new story.
QUIET_GAP_MIN = 30
# Evidence starts this long before the opening bar: the features look back 60 minutes.
EVIDENCE_LOOKBACK = dt.timedelta(minutes=60)
MAX_EVIDENCE_POSTS = 100
# A detector "updated" event each time the peak enters a higher band of this many points
# (not every new peak: a rising score would write one audit row a minute).
PEAK_EVENT_BAND = 10.0

STATES: tuple[str, ...] = ("open", "acknowledged", "closed")
DISPOSITIONS: tuple[str, ...] = ("true_positive", "false_positive", "unsure")
# (from, to) -> the audit action. Acknowledging a closed alert makes no sense; reopening does.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("open", "acknowledged"): "acknowledged",
    ("open", "closed"): "closed",
    ("acknowledged", "closed"): "closed",
    ("acknowledged", "open"): "reopened",
    ("closed", "open"): "reopened",
}

Key = tuple[str, str]  # (ticker, exchange)
_BAR = dt.timedelta(minutes=1)


class TransitionError(ValueError):
    """A workflow change the alert's current state does not allow (or that changes nothing)."""


@dataclass
class Episode:
    """The running episode of one ticker, and the alert it writes."""
    alert_id: str
    ticker: str
    exchange: str
    opened_at: dt.datetime
    last_bar_ts: dt.datetime
    peak_score: float
    peak_ts: dt.datetime
    reasons: str
    evidence_start: dt.datetime
    evidence_end: dt.datetime
    detected_by: str
    last_seen_ts: dt.datetime  # newest bar of the ticker processed: older bars are redeliveries
    state: str = "open"
    disposition: str | None = None
    post_ids: list[str] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return self.ticker, self.exchange

    def row(self, updated_at: dt.datetime) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ALERTS.column_names if name != "updated_at"} | {
            "updated_at": updated_at}


@dataclass
class Advance:
    """What one batch of risk rows did: the new state, the alerts it opened or updated, the audit rows."""
    state: dict[Key, Episode]
    touched: dict[str, Episode]  # alert_id -> episode as of the end of the batch
    opened: list[str]
    events: list[dict[str, Any]]


def alert_id(ticker: str, exchange: str, opened_at: dt.datetime) -> str:
    return f"{ticker}-{exchange}-{opened_at.astimezone(dt.timezone.utc):%Y%m%dT%H%MZ}"


def session_index(ts_ms: np.ndarray) -> np.ndarray:
    """Minutes of trading since 1970 (weekends and NSE holidays skipped) at each time: two
    bars' difference is the trading time between them. Outside the session it is the
    session's open or close of that day."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    day = (ts_ms + int(IST_OFFSET.total_seconds() * 1000)) // MS_PER_DAY
    minute = np.clip((ts_ms - (day * MS_PER_DAY + SESSION_OPEN_MS)) // MS_PER_MIN, 0, SESSION_BARS)
    return session_ordinal(day.astype("datetime64[D]")).astype(np.int64) * SESSION_BARS + minute


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _dt(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


def trading_gap_min(earlier: dt.datetime, later: dt.datetime) -> int:
    a, b = session_index(np.array([_ms(earlier), _ms(later)]))
    return int(b - a)


def advance(risk: pa.Table, state: dict[Key, Episode], *, detected_by: str) -> Advance:
    """Run the episodes of `state` through a batch of RISK_1M rows (any order, any tickers).

    Returns a new state (the input is not changed): the caller keeps the old one if the
    writes fail, and retries the batch."""
    state = {key: dataclasses.replace(ep, post_ids=list(ep.post_ids)) for key, ep in state.items()}
    touched: dict[str, Episode] = {}
    opened: list[str] = []
    events: list[dict[str, Any]] = []
    if risk.num_rows:
        risk = risk.sort_by([("ticker", "ascending"), ("exchange", "ascending"), ("ts", "ascending")])
        ts_ms = pc.cast(pc.cast(risk.column("ts"), TIMESTAMP_TYPE), pa.int64()).to_numpy(zero_copy_only=False)
        score = risk.column("score").to_numpy(zero_copy_only=False)
        sidx = session_index(ts_ms)
        starts = _group_starts(risk)
        tickers = risk.column("ticker").take(pa.array(starts[:-1])).to_pylist()
        exchanges = risk.column("exchange").take(pa.array(starts[:-1])).to_pylist()
        reasons = risk.column("reasons")
        for key, lo, hi in zip(zip(tickers, exchanges), starts[:-1].tolist(), starts[1:].tolist()):
            ep = state.get(key)
            watermark = _ms(ep.last_seen_ts) if ep else -(2**62)
            active = lo + np.flatnonzero((score[lo:hi] >= STAY_THRESHOLD) & (ts_ms[lo:hi] > watermark))
            for i in active:
                ts, s = _dt(int(ts_ms[i])), float(score[i])
                if ep is not None and sidx[i] - session_index(np.array([_ms(ep.last_bar_ts)]))[0] <= QUIET_GAP_MIN:
                    ep.last_bar_ts = ep.evidence_end = ts
                    if s > ep.peak_score:
                        if np.floor(s / PEAK_EVENT_BAND) > np.floor(ep.peak_score / PEAK_EVENT_BAND):
                            events.append(_peak_event(ep, s, ts))
                        ep.peak_score, ep.peak_ts, ep.reasons = s, ts, reasons[i].as_py()
                    touched[ep.alert_id] = ep
                elif s >= OPEN_THRESHOLD:
                    ep = Episode(alert_id=alert_id(key[0], key[1], ts), ticker=key[0], exchange=key[1], opened_at=ts,
                                 last_bar_ts=ts, peak_score=s, peak_ts=ts, reasons=reasons[i].as_py(),
                                 evidence_start=ts - EVIDENCE_LOOKBACK, evidence_end=ts, detected_by=detected_by,
                                 last_seen_ts=ts)
                    state[key] = ep
                    touched[ep.alert_id] = ep
                    opened.append(ep.alert_id)
                    events.append(_opened_event(ep))
            newest = _dt(int(ts_ms[hi - 1]))
            if key in state:
                ep = state[key]
                ep.last_seen_ts = max(ep.last_seen_ts, newest)
                if sidx[hi - 1] - session_index(np.array([_ms(ep.last_bar_ts)]))[0] > QUIET_GAP_MIN:
                    del state[key]  # the episode has ended; its alert stays as written
    return Advance(state=state, touched=touched, opened=opened, events=events)


def _group_starts(risk: pa.Table) -> np.ndarray:
    """Where each (ticker, exchange) run of a sorted batch starts, and its length at the end."""
    n = risk.num_rows
    changed = np.zeros(max(n - 1, 0), dtype=bool)
    for name in ("ticker", "exchange"):
        col = risk.column(name)
        changed |= pc.not_equal(col.slice(1), col.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    return np.concatenate(([0], np.flatnonzero(changed) + 1, [n]))


def _reason_texts(reasons: str, limit: int = 3) -> str:
    try:
        return "; ".join(r["text"] for r in json.loads(reasons)[:limit])
    except (ValueError, TypeError, KeyError):
        return ""


def _opened_event(ep: Episode) -> dict[str, Any]:
    return {"event_id": f"{ep.alert_id}/opened", "alert_id": ep.alert_id, "at": ep.opened_at + _BAR,
            "actor": ep.detected_by, "action": "opened", "from_state": None, "to_state": "open",
            "disposition": None,
            "note": f"score {ep.peak_score:.1f} at {format_ist(ep.opened_at)}: {_reason_texts(ep.reasons)}"}


def _peak_event(ep: Episode, score: float, ts: dt.datetime) -> dict[str, Any]:
    return {"event_id": f"{ep.alert_id}/peak/{ts:%Y%m%dT%H%MZ}", "alert_id": ep.alert_id, "at": ts + _BAR,
            "actor": ep.detected_by, "action": "updated", "from_state": ep.state, "to_state": ep.state,
            "disposition": ep.disposition,
            "note": f"peak {ep.peak_score:.1f} -> {score:.1f} at {format_ist(ts)}"}


def attach_post_ids(episodes: Iterable[Episode], posts: pa.Table) -> None:
    """Set each episode's post_ids: posts (columns ticker, ref, ts) mentioning its ticker
    within its evidence range, earliest first, at most MAX_EVIDENCE_POSTS."""
    episodes = list(episodes)
    if not episodes:
        return
    if posts.num_rows == 0:
        for ep in episodes:
            ep.post_ids = []
        return
    posts = posts.sort_by([("ts", "ascending"), ("ref", "ascending")])
    tickers = posts.column("ticker")
    ts = pc.cast(posts.column("ts"), TIMESTAMP_TYPE)
    for ep in episodes:
        mask = pc.and_(pc.and_(pc.equal(tickers, ep.ticker), pc.greater_equal(ts, pa.scalar(ep.evidence_start,
                                                                                               TIMESTAMP_TYPE))),
                       pc.less(ts, pa.scalar(ep.evidence_end + _BAR, TIMESTAMP_TYPE)))
        ep.post_ids = posts.column("ref").filter(mask).to_pylist()[:MAX_EVIDENCE_POSTS]


def alerts_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ALERTS.arrow_schema)


def events_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ALERT_EVENTS.arrow_schema)


def transition(alert: dict[str, Any], new_state: str | None, disposition: str | None, actor: str,
               note: str | None = None, *, at: dt.datetime | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analyst's change to an alert: its new version and the audit row.

    `new_state` None keeps the state (a disposition change only). Closing needs a
    disposition, given now or set before. A change that changes nothing is refused."""
    at = at or utc_now()
    current = alert["state"]
    target = new_state or current
    if target not in STATES:
        raise TransitionError(f"unknown state {target!r}: one of {', '.join(STATES)}")
    if disposition is not None and disposition not in DISPOSITIONS:
        raise TransitionError(f"unknown disposition {disposition!r}: one of {', '.join(DISPOSITIONS)}")
    if not actor or not actor.strip():
        raise TransitionError("an actor (who makes the change) is required")
    new_disposition = disposition if disposition is not None else alert.get("disposition")
    if target == current:
        if new_disposition == alert.get("disposition"):
            raise TransitionError(f"alert {alert['alert_id']} is already {current}"
                                  + (f" with disposition {new_disposition}" if new_disposition else "")
                                  + ": nothing to change")
        action = "updated"
    else:
        action = TRANSITIONS.get((current, target))
        if action is None:
            allowed = sorted(to for (frm, to) in TRANSITIONS if frm == current)
            raise TransitionError(f"alert {alert['alert_id']} is {current}: it can go to "
                                  f"{' or '.join(allowed)}, not {target}")
    if target == "closed" and new_disposition is None:
        raise TransitionError(f"closing needs a disposition: one of {', '.join(DISPOSITIONS)}")
    previous = as_utc(alert["updated_at"])
    if at <= previous:  # the new version must win over the one it changes
        at = previous + dt.timedelta(milliseconds=1)
    updated = {**alert, "state": target, "disposition": new_disposition, "updated_at": at}
    event = {"event_id": f"{alert['alert_id']}/{uuid.uuid4().hex}", "alert_id": alert["alert_id"], "at": at,
             "actor": actor.strip(), "action": action, "from_state": current, "to_state": target,
             "disposition": new_disposition, "note": note}
    return updated, event
