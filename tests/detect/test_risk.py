"""Risk scores: sub-scores by their formulas, co-occurrence rewarded, reasons as text with values."""
from __future__ import annotations

import json
import math

import pytest

from sentinel_ray.detect.alerts import OPEN_THRESHOLD
from sentinel_ray.detect.risk import risk_scores
from sentinel_ray.schemas import RISK_1M
from tests.detect.rows import COMPUTED, T0, features


def _logistic_score(volume: float, price: float, promo: float, chatter: float) -> float:
    """The combiner written out again, independently of the module's vector code."""
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    z = (-4.5 + volume + price + 1.5 * promo + 0.5 * chatter + 1.5 * price * volume
         + 2.5 * promo * max(price, volume))
    return 100 * (sig(z) - sig(-4.5)) / (1 - sig(-4.5))


PUMP = {"volume_ratio": 9.3, "volume_z": 7.0, "ret_15m": 0.14, "ret_60m": 0.1, "promo_z": 6.1,
        "promo_posts_60m": 14, "platforms_60m": 3, "authors_60m": 11, "posts_z": 6.5, "posts_60m": 40}
EARNINGS = {"volume_ratio": 12.0, "ret_15m": 0.09, "posts_z": 7.0, "posts_60m": 300, "promo_z": 0.3,
            "platforms_60m": 4, "authors_60m": 200}
VIRAL = {"volume_ratio": 1.2, "volume_z": 3.2, "ret_15m": 0.004, "posts_z": 8.0, "posts_60m": 900, "promo_z": 4.0,
         "platforms_60m": 2, "authors_60m": 600}
PUMP_START = {"volume_ratio": 10.0, "ret_15m": 0.01, "promo_z": 6.0, "platforms_60m": 3, "posts_z": 6.0,
              "posts_60m": 30}


def test_quiet_bar_scores_zero_with_no_reasons() -> None:
    out = risk_scores(features({}), computed_at=COMPUTED)
    assert out.schema == RISK_1M.arrow_schema
    row = out.to_pylist()[0]
    assert row["score"] == 0.0 and row["reasons"] == "[]"
    assert (row["ticker"], row["exchange"], row["ts"], row["computed_at"]) == ("SUZLON", "NSE", T0, COMPUTED)


def test_a_pump_scores_near_the_top_with_its_reasons_as_text() -> None:
    row = risk_scores(features(PUMP)).to_pylist()[0]
    # volume: ln 9.3x between ln 2x and ln 10x -> 0.9549 (volume z 7 gives less, 0.833)
    assert [row[f"{f}_score"] for f in ("volume", "price", "promo", "chatter")] == [0.9549, 1.0, 1.0, 1.0]
    assert row["score"] == pytest.approx(_logistic_score(math.log(9.3 / 2) / math.log(5), 1, 1, 1), abs=0.01)
    assert row["score"] == pytest.approx(96.69, abs=0.01)
    reasons = json.loads(row["reasons"])
    # ordered by what each adds to the score: promo (weight 1.5), price, volume, chatter (0.5)
    assert [r["text"] for r in reasons] == ["promo posts z 6.1 on 3 platforms", "+14.0% in 15 min",
                                            "volume 9.3x usual for 10:42 IST", "chatter z 6.5 (40 posts in 60 min)"]
    assert [(r["feature"], r["value"], r["strength"]) for r in reasons] == [
        ("promo_z", 6.1, 1.0), ("ret_15m", 0.14, 1.0), ("volume_ratio", 9.3, 0.955), ("posts_z", 6.5, 1.0)]


def test_sub_scores_follow_their_ramps() -> None:
    # volume z 5 is half way from 2 to 8; a 9% fall in 60 min half way from 3% to 15%; 12
    # promo posts with no baseline (promo_z missing) saturate the count ramp, but one
    # platform and two authors give breadth 0, so promo is halved
    row = risk_scores(features({"volume_z": 5.0, "ret_60m": -0.09, "promo_posts_60m": 12, "platforms_60m": 1,
                                "authors_60m": 2})).to_pylist()[0]
    assert (row["volume_score"], row["price_score"], row["promo_score"], row["chatter_score"]) == (0.5, 0.5, 0.5, 0.0)
    assert row["score"] == pytest.approx(_logistic_score(0.5, 0.5, 0.5, 0.0), abs=0.01)
    assert [r["text"] for r in json.loads(row["reasons"])] == [
        "12 promo posts in 60 min from 2 authors on 1 platform", "volume z 5.0 for 10:42 IST", "-9.0% in 60 min"]


def test_promo_counts_do_not_speak_when_there_is_a_baseline() -> None:
    # a large cap's 12 promo posts an hour are its normal (z 0.5): no promo evidence
    row = risk_scores(features({"promo_posts_60m": 12, "promo_z": 0.5, "platforms_60m": 3})).to_pylist()[0]
    assert row["promo_score"] == 0.0 and row["score"] == 0.0


def test_co_occurrence_separates_pumps_from_news_and_viral_chatter() -> None:
    rows = risk_scores(features(PUMP, PUMP_START, EARNINGS, VIRAL)).to_pylist()
    pump, start, earnings, viral = (r["score"] for r in rows)
    assert pump > start >= OPEN_THRESHOLD > earnings > viral
    assert earnings == pytest.approx(_logistic_score(1, 1, 0, 1), abs=0.01)  # price + volume + chatter, no promo
    assert viral < 10
    assert [r["text"] for r in json.loads(rows[3]["reasons"])] == [
        "promo posts z 4.0 on 2 platforms", "chatter z 8.0 (900 posts in 60 min)"]  # volume z 3.2: 0.2, too weak


def test_missing_features_are_no_evidence() -> None:
    row = risk_scores(features({"volume_ratio": None, "volume_z": None, "ret_15m": None, "posts_z": None,
                                "promo_z": None})).to_pylist()[0]
    assert row["score"] == 0.0 and row["reasons"] == "[]"


def test_empty_input_gives_an_empty_table() -> None:
    out = risk_scores(features().slice(0, 0))
    assert out.num_rows == 0 and out.schema == RISK_1M.arrow_schema
