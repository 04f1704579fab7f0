"""Alerts scored against ground-truth episodes (the replay simulator's, or labelled history).

An alert matches an episode when it is for the same ticker and opened within
[episode start - slack, episode end], where the start is the earlier of the price move's
and the first post's (`chatter_start`, when given: a pump's promotion campaign that runs
ahead of the move is the pump). An alert matching a manipulation episode is that
episode's, even if a hard negative (a market rally) covers the ticker too. Then:

    precision   alerts matching a manipulation episode / all alerts (an alert that only
                matches a hard negative, such as earnings or viral large-cap chatter, is false)
    recall      manipulation episodes with at least one matching alert / manipulation episodes
    F1          2 P R / (P + R)
    lead time   per detected episode, its peak - the first matching alert's opening, in
                seconds (positive: before the peak); median and 10th percentile
    false alerts per 1,000 ticker-days, counted on the ticker-days (IST dates) with no
                episode at all: alerts matching no episode there / those ticker-days x 1000

and per kind of episode: how many were alerted (recall for manipulation kinds, the false
alarm rate for hard negatives) and the lead times.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Collection

import numpy as np
import pyarrow as pa

from sentinel_ray.market import IST, as_utc

MARKET_WIDE = "*"
DEFAULT_SLACK = dt.timedelta(minutes=30)  # an alert just before the episode's labelled start still caught it


@dataclass
class KindResult:
    kind: str
    is_manipulation: bool
    episodes: int
    alerted: int
    alerts: int  # alerts matching episodes of this kind
    lead_median_s: float | None
    lead_p10_s: float | None

    @property
    def alerted_rate(self) -> float | None:
        return self.alerted / self.episodes if self.episodes else None


@dataclass
class Evaluation:
    alerts: int
    true_alerts: int
    false_alerts: int
    manipulation_episodes: int
    detected_episodes: int
    precision: float | None
    recall: float | None
    f1: float | None
    lead_median_s: float | None
    lead_p10_s: float | None
    quiet_ticker_days: int | None
    quiet_false_alerts: int
    false_per_1k_ticker_days: float | None
    by_kind: list[KindResult] = field(default_factory=list)
    matches: dict[str, list[str]] = field(default_factory=dict)  # alert_id -> episode_ids

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("by_kind", "matches")}
        out["by_kind"] = [{**k.__dict__, "alerted_rate": k.alerted_rate} for k in self.by_kind]
        return out


def _lead_stats(leads: list[float]) -> tuple[float | None, float | None]:
    if not leads:
        return None, None
    arr = np.asarray(leads, dtype=np.float64)
    return float(np.median(arr)), float(np.percentile(arr, 10))


def _ist_days(start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    first, last = start.astimezone(IST).date(), end.astimezone(IST).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _episode_rows(episodes: pa.Table) -> list[dict[str, Any]]:
    if "peak" not in episodes.column_names and "peak_ts" in episodes.column_names:  # the replay's ground truth
        episodes = episodes.append_column("peak", episodes.column("peak_ts"))
    columns = ["episode_id", "kind", "is_manipulation", "ticker", "start", "peak", "end"]
    columns += [c for c in ("tickers", "chatter_start") if c in episodes.column_names]
    rows = [{**e, "start": as_utc(e["start"]), "peak": as_utc(e["peak"]), "end": as_utc(e["end"])}
            for e in episodes.select(columns).to_pylist()]
    for e in rows:  # a promotion campaign before the price move is part of the episode
        chatter = e.get("chatter_start")
        e["first"] = min(e["start"], as_utc(chatter)) if chatter is not None else e["start"]
    return rows


def _by_ticker(eps: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_ticker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in eps:
        # a market-wide episode (ticker "*", as the replay writes them) is about each symbol it touches
        for ticker in ({e["ticker"]} | set(e.get("tickers") or [])) - {MARKET_WIDE}:
            by_ticker[ticker].append(e)
    return by_ticker


def evaluate(episodes: pa.Table, alerts: pa.Table, *, ticker_days: int | None = None,
             slack: dt.timedelta = DEFAULT_SLACK, days: Collection[dt.date] | None = None,
             ignored: pa.Table | None = None) -> Evaluation:
    """`episodes`: episode_id, kind, is_manipulation, ticker, start, peak (or peak_ts), end, and
    optionally tickers (the symbols a market-wide episode, ticker "*", touches).
    `alerts`: alert_id, ticker, opened_at. `ticker_days`: tickers x trading days evaluated
    (the false-alert rate is left out without it); `days`, when given, the trading days
    (IST dates) those are: episode ticker-days outside them are not subtracted.
    `ignored`: episodes outside the evaluation (begun before its range): alerts matching
    them count neither way, and their ticker-days are not quiet."""
    eps = _episode_rows(episodes)
    skipped = _by_ticker(_episode_rows(ignored)) if ignored is not None and ignored.num_rows else {}
    als = [{**a, "opened_at": as_utc(a["opened_at"])} for a in alerts.select(["alert_id", "ticker", "opened_at"])
           .to_pylist()]
    als = [a for a in als if not any(e["first"] - slack <= a["opened_at"] <= e["end"]
                                     for e in skipped.get(a["ticker"], []))]
    by_ticker = _by_ticker(eps)

    matches: dict[str, list[str]] = {}
    first_alert: dict[str, dt.datetime] = {}  # episode_id -> first matching alert's opening
    alerts_per_episode: dict[str, int] = defaultdict(int)
    true_alerts = 0
    unmatched: list[dict[str, Any]] = []
    for a in als:
        hit = [e for e in by_ticker.get(a["ticker"], []) if e["first"] - slack <= a["opened_at"] <= e["end"]]
        matches[a["alert_id"]] = [e["episode_id"] for e in hit]
        if any(e["is_manipulation"] for e in hit):  # a pump during a rally: the alert is the pump's
            hit = [e for e in hit if e["is_manipulation"]]
        for e in hit:
            alerts_per_episode[e["episode_id"]] += 1
            if e["episode_id"] not in first_alert or a["opened_at"] < first_alert[e["episode_id"]]:
                first_alert[e["episode_id"]] = a["opened_at"]
        if any(e["is_manipulation"] for e in hit):
            true_alerts += 1
        elif not hit:
            unmatched.append(a)

    manipulation = [e for e in eps if e["is_manipulation"]]
    detected = [e for e in manipulation if e["episode_id"] in first_alert]
    precision = true_alerts / len(als) if als else None
    recall = len(detected) / len(manipulation) if manipulation else None
    f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
          and precision + recall > 0 else (0.0 if precision is not None and recall is not None else None))
    lead_median, lead_p10 = _lead_stats([(e["peak"] - first_alert[e["episode_id"]]).total_seconds()
                                         for e in detected])

    allowed = set(days) if days is not None else None
    episode_days = {(ticker, day) for of in (by_ticker, skipped) for ticker, of_ticker in of.items()
                    for e in of_ticker for day in _ist_days(e["start"], e["end"])
                    if allowed is None or day in allowed}
    quiet_false = sum(1 for a in unmatched if (a["ticker"], a["opened_at"].astimezone(IST).date()) not in episode_days)
    quiet_days = None if ticker_days is None else max(ticker_days - len(episode_days), 0)
    false_rate = quiet_false / quiet_days * 1000 if quiet_days else None

    by_kind = []
    for kind in sorted({e["kind"] for e in eps}):
        of_kind = [e for e in eps if e["kind"] == kind]
        alerted = [e for e in of_kind if e["episode_id"] in first_alert]
        is_manip = bool(of_kind[0]["is_manipulation"])
        median, p10 = _lead_stats([(e["peak"] - first_alert[e["episode_id"]]).total_seconds() for e in alerted])
        by_kind.append(KindResult(kind=kind, is_manipulation=is_manip, episodes=len(of_kind), alerted=len(alerted),
                                  alerts=sum(alerts_per_episode[e["episode_id"]] for e in of_kind),
                                  lead_median_s=median, lead_p10_s=p10))
    return Evaluation(alerts=len(als), true_alerts=true_alerts, false_alerts=len(als) - true_alerts,
                      manipulation_episodes=len(manipulation), detected_episodes=len(detected),
                      precision=precision, recall=recall, f1=f1, lead_median_s=lead_median, lead_p10_s=lead_p10,
                      quiet_ticker_days=quiet_days, quiet_false_alerts=quiet_false,
                      false_per_1k_ticker_days=false_rate, by_kind=by_kind, matches=matches)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x / 60:.1f} min"


def render(report: Evaluation) -> str:
    """The evaluation as a plain-text table."""
    rate = "-" if report.false_per_1k_ticker_days is None else f"{report.false_per_1k_ticker_days:.2f}"
    lines = [
        f"alerts {report.alerts} (true {report.true_alerts}, false {report.false_alerts})   "
        f"precision {_pct(report.precision)}   recall {_pct(report.recall)} "
        f"({report.detected_episodes}/{report.manipulation_episodes} manipulation episodes)   F1 {_pct(report.f1)}",
        f"lead time (peak - alert) median {_secs(report.lead_median_s)}, p10 {_secs(report.lead_p10_s)}   "
        f"false alerts per 1,000 quiet ticker-days {rate} ({report.quiet_false_alerts} in "
        f"{report.quiet_ticker_days if report.quiet_ticker_days is not None else '-'})",
        "",
        f"{'kind':<24} {'manip':<6} {'episodes':>8} {'alerted':>8} {'rate':>7} {'alerts':>7} "
        f"{'lead median':>12} {'lead p10':>10}",
    ]
    for k in report.by_kind:
        lines.append(f"{k.kind:<24} {'yes' if k.is_manipulation else 'no':<6} {k.episodes:>8} {k.alerted:>8} "
                     f"{_pct(k.alerted_rate):>7} {k.alerts:>7} {_secs(k.lead_median_s):>12} "
                     f"{_secs(k.lead_p10_s):>10}")
    return "\n".join(lines)
