"""Small hand-made FEATURES_1M and RISK_1M tables for the detect tests."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from sentinel_ray.schemas import FEATURES_1M, RISK_1M

UTC = dt.timezone.utc
# 05:12 UTC is 10:42 IST, inside the session
T0 = dt.datetime(2026, 11, 5, 5, 12, tzinfo=UTC)
COMPUTED = dt.datetime(2026, 11, 6, tzinfo=UTC)
MIN = dt.timedelta(minutes=1)

_INTS = ("posts_15m", "posts_60m", "promo_posts_15m", "promo_posts_60m", "authors_60m", "platforms_60m")


def features(*rows: dict[str, Any]) -> pa.Table:
    """FEATURES_1M rows: every feature missing or zero unless given."""
    out = []
    for i, given in enumerate(rows):
        row: dict[str, Any] = {f: None for f in FEATURES_1M.column_names}
        row.update({"ticker": "SUZLON", "exchange": "NSE", "ts": T0 + i * MIN, "close": 50.0, "volume": 1000,
                    "computed_at": COMPUTED, **{c: 0 for c in _INTS}})
        row.update(given)
        out.append(row)
    return pa.Table.from_pylist(out, schema=FEATURES_1M.arrow_schema)


def risk(scores: list[float], *, ticker: str = "SUZLON", start: dt.datetime = T0,
         times: list[dt.datetime] | None = None) -> pa.Table:
    """RISK_1M rows of one ticker with these scores, a bar a minute from `start` (or at `times`)."""
    times = times or [start + i * MIN for i in range(len(scores))]
    return pa.Table.from_pylist([
        {"ticker": ticker, "exchange": "NSE", "ts": ts, "score": float(s), "volume_score": 0.0, "price_score": 0.0,
         "promo_score": 0.0, "chatter_score": 0.0,
         "reasons": json.dumps([{"feature": "volume_ratio", "value": float(s), "text": f"score {float(s)}"}]),
         "computed_at": COMPUTED} for ts, s in zip(times, scores)], schema=RISK_1M.arrow_schema)
