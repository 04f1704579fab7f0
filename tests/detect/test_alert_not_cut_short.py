"""Writing an alert again from fewer bars than its stored version saw (a replay computing
sessions inside a longer episode) never cuts it short."""
from __future__ import annotations

import datetime as dt

from sentinel_ray.detect.run import _not_cut_short

UTC = dt.timezone.utc
T = dt.datetime(2026, 11, 5, 4, 0, tzinfo=UTC)


def _row(last: dt.datetime, peak: float, peak_ts: dt.datetime, reasons: str = "new") -> dict:
    return {"alert_id": "A", "last_bar_ts": last, "evidence_end": last, "peak_score": peak, "peak_ts": peak_ts,
            "reasons": reasons, "post_ids": ["x:1"], "state": "open"}


def test_a_stored_alert_that_went_on_keeps_its_end_evidence_and_later_peak() -> None:
    rewritten = _row(T, 70.0, T)
    stored = {**_row(T + dt.timedelta(days=1), 90.0, T + dt.timedelta(days=1), "old"), "post_ids": ["x:1", "x:2"]}
    stored["last_bar_ts"] = stored["last_bar_ts"].replace(tzinfo=None)  # as the warehouse hands it back
    row = _not_cut_short(rewritten, stored)
    assert row["last_bar_ts"] == row["evidence_end"] == T + dt.timedelta(days=1)
    assert (row["peak_score"], row["reasons"], row["post_ids"]) == (90.0, "old", ["x:1", "x:2"])


def test_a_peak_inside_the_bars_computed_again_is_theirs() -> None:
    stored = _row(T + dt.timedelta(days=1), 95.0, T - dt.timedelta(hours=1), "old")  # peaked in the recomputed bars
    row = _not_cut_short(_row(T, 70.0, T), stored)
    assert row["last_bar_ts"] == T + dt.timedelta(days=1) and (row["peak_score"], row["reasons"]) == (70.0, "new")


def test_an_alert_written_from_newer_bars_is_written_as_it_is() -> None:
    row = _row(T, 70.0, T)
    assert _not_cut_short(row, _row(T - dt.timedelta(minutes=5), 90.0, T - dt.timedelta(minutes=5))) == row
    assert _not_cut_short(row, None) == row
