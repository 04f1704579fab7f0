"""detect_days and the replay evaluation end to end on a short range of one seed: the
pump of those days alerted, early and once; the viral large-cap chatter, the index
rebalance and every quiet ticker-day not."""
from __future__ import annotations

import datetime as dt

import pyarrow.compute as pc
import pytest

from sentinel_ray.detect.pipeline import combine, run_seed, summary
from sentinel_ray.schemas import ALERTS

START = dt.date(2026, 3, 2)  # seed 1: viral large-cap chatter on the 2nd, an index rebalance on the 3rd,
DAYS = 4                     # a pump of a small cap on the 4th


@pytest.fixture(scope="module")
def run():
    return run_seed(1, START, DAYS, warmup_days=21)


def test_the_short_range_holds_the_cases_it_is_about(run) -> None:
    kinds = dict(zip(run.episodes.column("episode_id").to_pylist(), run.episodes.column("kind").to_pylist()))
    assert kinds == {"viral_largecap-20260302": "viral_largecap", "index_rebalance-20260303": "index_rebalance",
                     "pump_dump-20260304": "pump_dump"}
    assert run.days == [START + dt.timedelta(days=i) for i in range(4)] and run.tickers == 70
    assert run.earlier.column("episode_id").to_pylist() == ["filing_move-20260227"]  # begun in the warm-up


def test_the_pump_is_alerted_once_before_its_peak_and_nothing_else_is(run) -> None:
    alerts = run.alerts
    assert alerts.schema == ALERTS.arrow_schema
    pump, viral = (run.episodes.filter(pc.equal(run.episodes.column("kind"), kind)).to_pylist()[0]
                   for kind in ("pump_dump", "viral_largecap"))
    assert alerts.column("ticker").to_pylist() == [pump["ticker"]] != [viral["ticker"]]
    row = alerts.to_pylist()[0]
    assert (pump["start"] if pump["chatter_start"] is None else min(pump["start"], pump["chatter_start"])) \
        - dt.timedelta(minutes=30) <= row["opened_at"] < pump["peak_ts"] - dt.timedelta(minutes=15)
    assert row["alert_id"] == f"{pump['ticker']}-NSE-{row['opened_at']:%Y%m%dT%H%MZ}" and row["peak_score"] >= 60


def test_the_evaluation_of_the_range(run) -> None:
    report, timing = combine([run])
    assert (report.alerts, report.true_alerts, report.false_alerts) == (1, 1, 0)
    assert (report.precision, report.recall, report.f1) == (1.0, 1.0, 1.0)
    kinds = {k.kind: k for k in report.by_kind}
    assert (kinds["viral_largecap"].episodes, kinds["viral_largecap"].alerted) == (1, 0)
    assert (kinds["index_rebalance"].alerted, kinds["pump_dump"].alerted) == (0, 1)
    # 4 trading days x 70 tickers, less the ticker-days any episode touched (in range or not)
    by_kind = {e["kind"]: e for e in run.episodes.to_pylist()}
    earlier = run.earlier.to_pylist()[0]
    touched = ({(by_kind["viral_largecap"]["ticker"], 2)} | {(t, 3) for t in by_kind["index_rebalance"]["tickers"]}
               | {(by_kind["pump_dump"]["ticker"], d) for d in range(4, 4 + by_kind["pump_dump"]["days_spanned"])
                  if d <= 5}
               | {(earlier["ticker"], d) for d in range(2, earlier["end"].day + 1)})
    assert report.quiet_ticker_days == 280 - len(touched)
    assert report.false_per_1k_ticker_days == 0.0
    out = summary(report, timing)
    assert out["f1"] == 1.0 and out["median_lead_s"] >= 15 * 60
    assert timing.posts > 0 and out["posts_s"] > 0 and out["features_rows_s"] > 0
    # every valid session bar of the range, once (the replay's few bad bars are quarantined)
    assert 0.99 * 4 * 70 * 375 < timing.feature_rows < 4 * 70 * 375
