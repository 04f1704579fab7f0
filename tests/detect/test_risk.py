"""Risk scores: sub-scores by their formulas, co-occurrence rewarded, moves explained by
filings, the market or the company's size discounted, reasons as text with values."""
from __future__ import annotations

import datetime as dt
import json
import math

import pyarrow as pa
import pytest

from sentinel_ray.detect.alerts import OPEN_THRESHOLD
from sentinel_ray.detect.risk import risk_scores
from sentinel_ray.schemas import RISK_1M, TIMESTAMP_TYPE
from tests.detect.rows import COMPUTED, MIN, T0, features


def _logistic_score(volume: float, price: float, promo: float, chatter: float) -> float:
    """The combiner written out again, independently of the module's vector code."""
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    z = (-4.5 + volume + price + 1.5 * promo + 0.5 * chatter + 4.0 * price * volume
         + 2.5 * promo * max(price, volume))
    return 100 * (sig(z) - sig(-4.5)) / (1 - sig(-4.5))


PUMP = {"volume_ratio": 9.3, "volume_z": 7.0, "ret_15m": 0.14, "ret_60m": 0.1, "promo_z": 6.1,
        "promo_posts_60m": 14, "platforms_60m": 3, "authors_60m": 11, "posts_z": 6.5, "posts_60m": 40}
QUIET_PUMP = {"volume_ratio": 6.0, "ret_15m": 0.05}  # price and volume, nobody promoting, no filing
VIRAL = {"volume_ratio": 1.2, "volume_z": 3.2, "ret_15m": 0.004, "posts_z": 8.0, "posts_60m": 900, "promo_z": 2.0,
         "platforms_60m": 2, "authors_60m": 600}
PUMP_START = {"volume_ratio": 6.0, "ret_15m": 0.005, "promo_z": 6.0, "platforms_60m": 3, "posts_z": 6.0,
              "posts_60m": 30}


def filings(*rows: tuple[str, str, str | None, dt.datetime]) -> pa.Table:
    return pa.table({"ticker": pa.array([r[0] for r in rows], pa.string()),
                     "subject": pa.array([r[1] for r in rows], pa.string()),
                     "details": pa.array([r[2] for r in rows], pa.string()),
                     "ts": pa.array([r[3] for r in rows], TIMESTAMP_TYPE)})


RESULTS = ("SUZLON", "Financial Results", "Outcome of Board Meeting: audited financial results", T0 - 10 * MIN)


def test_quiet_bar_scores_zero_with_no_reasons() -> None:
    out = risk_scores(features({}), computed_at=COMPUTED)
    assert out.schema == RISK_1M.arrow_schema
    row = out.to_pylist()[0]
    assert row["score"] == 0.0 and row["reasons"] == "[]"
    assert (row["ticker"], row["exchange"], row["ts"], row["computed_at"]) == ("SUZLON", "NSE", T0, COMPUTED)


def test_a_pump_scores_near_the_top_with_its_reasons_as_text() -> None:
    row = risk_scores(features(PUMP)).to_pylist()[0]
    # volume: 9.3x is past 6x: 1; one row is no market, so the returns are their own
    assert [row[f"{f}_score"] for f in ("volume", "price", "promo", "chatter")] == [1.0, 1.0, 1.0, 1.0]
    assert row["score"] == pytest.approx(_logistic_score(1, 1, 1, 1), abs=0.01)
    assert row["score"] == pytest.approx(99.75, abs=0.01)
    reasons = json.loads(row["reasons"])
    # ordered by what each adds to the score: promo (weight 1.5), volume, price, chatter (0.5)
    assert [r["text"] for r in reasons] == ["promo posts z 6.1 on 3 platforms", "volume 9.3x usual for 10:42 IST",
                                            "+14.0% in 15 min", "chatter z 6.5 (40 posts in 60 min)"]
    assert [(r["feature"], r["value"], r["strength"]) for r in reasons] == [
        ("promo_z", 6.1, 1.0), ("volume_ratio", 9.3, 1.0), ("excess_ret_15m", 0.14, 1.0), ("posts_z", 6.5, 1.0)]


def test_sub_scores_follow_their_ramps() -> None:
    # volume z 6.5 is half way from 3 to 10; a 6% fall in 60 min half way from 2% to 10%; 5
    # promo posts with no baseline (promo_z missing) half way from 2 to 8, but one platform
    # and one author give breadth 0, so promo is halved again
    row = risk_scores(features({"volume_z": 6.5, "ret_60m": -0.06, "promo_posts_60m": 5, "platforms_60m": 1,
                                "authors_60m": 1})).to_pylist()[0]
    assert (row["volume_score"], row["price_score"], row["promo_score"], row["chatter_score"]) == (
        0.5, 0.5, 0.25, 0.0)
    assert row["score"] == pytest.approx(_logistic_score(0.5, 0.5, 0.25, 0.0), abs=0.01)
    assert [r["text"] for r in json.loads(row["reasons"])] == [
        "volume z 6.5 for 10:42 IST", "-6.0% in 60 min",
        "5 promo posts in 60 min from 1 author on 1 platform"]


def test_promo_counts_do_not_speak_when_there_is_a_baseline() -> None:
    # a ticker's 12 promo posts an hour are its normal (z 0.5): no promo evidence
    row = risk_scores(features({"promo_posts_60m": 12, "promo_z": 0.5, "platforms_60m": 3})).to_pylist()[0]
    assert row["promo_score"] == 0.0 and row["score"] == 0.0


def test_co_occurrence_separates_pumps_from_viral_chatter() -> None:
    rows = risk_scores(features(PUMP, QUIET_PUMP, PUMP_START, VIRAL)).to_pylist()
    pump, quiet, start, viral = (r["score"] for r in rows)
    assert pump > quiet > start >= OPEN_THRESHOLD > 10 > viral
    assert quiet == pytest.approx(_logistic_score(1, 1, 0, 0), abs=0.01)  # unexplained price + volume
    assert start == pytest.approx(_logistic_score(1, 0, 1, 1), abs=0.01)  # promotion + volume, no move yet
    # volume z 3.2 is 0.2 / 7 of its ramp, too weak a reason; promo z 2 is 0.5 / 4.5 of its ramp, with breadth 1
    assert viral == pytest.approx(_logistic_score(0.2 / 7, 0, 0.5 / 4.5, 1), abs=0.01)
    assert [r["text"] for r in json.loads(rows[3]["reasons"])] == ["chatter z 8.0 (900 posts in 60 min)"]


def test_a_price_sensitive_filing_explains_the_move_and_says_so() -> None:
    bar = features(QUIET_PUMP)
    explained = risk_scores(bar, filings=filings(RESULTS)).to_pylist()[0]
    # the market families are scaled by 0.2: what is left scores like nothing unusual
    assert (explained["volume_score"], explained["price_score"]) == (0.2, 0.2)
    assert explained["score"] == pytest.approx(_logistic_score(0.2, 0.2, 0, 0), abs=0.01)
    assert explained["score"] < 5 < OPEN_THRESHOLD < risk_scores(bar).to_pylist()[0]["score"]
    assert json.loads(explained["reasons"])[-1] == {
        "feature": "filing_age_min", "value": 10, "strength": 0.0,
        "text": "explained: price-sensitive filing 10 trading min earlier"}


def test_routine_later_or_old_filings_and_other_tickers_explain_nothing() -> None:
    unexplained = risk_scores(features(QUIET_PUMP)).to_pylist()[0]["score"]
    for filing in (
        ("SUZLON", "Board Meeting Intimation", "Intimation of board meeting to consider quarterly results",
         T0 - 10 * MIN),  # procedural, though it names results
        ("SUZLON", "Financial Results", None, T0 + 2 * MIN),  # after the bar's close: not yet known
        ("SUZLON", "Financial Results", None, T0 - dt.timedelta(days=7)),  # more than 3 sessions before
        ("IDEA", "Financial Results", None, T0 - 10 * MIN),
    ):
        assert risk_scores(features(QUIET_PUMP), filings=filings(filing)).to_pylist()[0]["score"] == unexplained


def test_a_large_cap_move_is_discounted() -> None:
    row = risk_scores(features({**QUIET_PUMP, "ticker": "RELIANCE"})).to_pylist()[0]
    assert (row["volume_score"], row["price_score"]) == (0.5, 0.5)
    assert row["score"] == pytest.approx(_logistic_score(0.5, 0.5, 0, 0), abs=0.01) and row["score"] < 10
    assert json.loads(row["reasons"])[-1]["feature"] == "large_cap"


def test_returns_count_beyond_the_market_of_the_same_minute() -> None:
    # 12 tickers up 6% in 15 minutes (a rally) and one up 10%: only the 4% beyond the median is evidence
    names = ["SUZLON", "IDEA", "HFCL", "HCC", "IFCI", "MTNL", "JPPOWER", "RPOWER", "TRIDENT", "UCOBANK",
             "SOUTHBANK", "DISHTV"]
    rally = features(*[{"ticker": t, "ts": T0, "ret_15m": 0.06} for t in names],
                     {"ticker": "YESBANK", "ts": T0, "ret_15m": 0.10})
    rows = risk_scores(rally).to_pylist()
    assert [r["price_score"] for r in rows[:-1]] == [0.0] * 12
    assert rows[-1]["price_score"] == pytest.approx(0.75)  # 4% is three quarters from 1% to 5%
    # the reason quotes the ticker's own move, and the market's beside it
    assert json.loads(rows[-1]["reasons"])[0] == {"feature": "excess_ret_15m", "value": 0.04, "strength": 0.75,
                                                  "text": "+10.0% in 15 min (market +6.0%)"}


def test_missing_features_are_no_evidence() -> None:
    row = risk_scores(features({"volume_ratio": None, "volume_z": None, "ret_15m": None, "posts_z": None,
                                "promo_z": None})).to_pylist()[0]
    assert row["score"] == 0.0 and row["reasons"] == "[]"


def test_empty_input_gives_an_empty_table() -> None:
    out = risk_scores(features().slice(0, 0))
    assert out.num_rows == 0 and out.schema == RISK_1M.arrow_schema
