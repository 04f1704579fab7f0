"""Risk score 0-100 per ticker per minute, with the reasons that drove it.

Four families of evidence, each a 0-1 sub-score from the point-in-time features of the bar
and its context (`context.py`):

    volume   max(ramp(volume_z, 3, 10), ramp(ln volume_ratio, ln 2, ln 6))
    price    max(ramp(|x15|, 1%, 5%), ramp(|x60|, 2%, 10%), ramp(|xprev|, 4%, 20%)), where x is the
             return beyond the market: the ticker's minus the median of all tickers that minute
    promo    ramp(promo_z, 1.5, 6) (ramp(promo_posts_60m, 2, 8) when there is no baseline yet)
             x (0.5 + 0.5 breadth), breadth = max(ramp(platforms_60m, 1, 3), ramp(authors_60m, 1, 5))
    chatter  ramp(posts_z, 2, 6)

`ramp(x, lo, hi)` is 0 at or below lo, 1 at or above hi, linear between; a missing feature
(too little history) is 0: no evidence, not suspicion. The market families (volume, price)
are then scaled down by what explains a move: x0.2 when the company made a price-sensitive
filing (results, an order, a buyback...) within 3 sessions before the bar, x0.5 for a
NIFTY 50 company (too deep to pump).

The combiner is logistic with interaction terms, because a pump is the co-occurrence of
an unexplained market reaction with promotion, and no single family is:

    z = B0 + 1.0 volume + 1.0 price + 1.5 promo + 0.5 chatter
           + 4.0 price*volume + 2.5 promo*max(price, volume)
    score = 100 (sigmoid(z) - sigmoid(B0)) / (1 - sigmoid(B0))      (0 when nothing is unusual)

which places the cases surveillance has to tell apart (families at 1 unless said): a pump
(all four) ~100; a quiet pump (price and volume, no filing, no promotion) ~82; promotion
with volume before the price moves (a pump's start) ~62; price and volume of a large cap
~7; half-strength price and volume ~7; promotion and chatter with no market reaction ~7;
viral large-cap chatter ~5; earnings (price, volume, news chatter) explained by the results
filing ~2; volume alone (an index rebalance) ~2. The alert thresholds (alerts.py) open at 60.

The weights are rules set by hand to these cases; the one weight the cases leave open
(price x volume) and the alert thresholds were then chosen on replay ground truth of
tuning seeds 1-3 (60 days each, `bench/detection.py --seeds 1 2 3`): price x volume
from {1.5, 2.5, 3.0, 3.5, 4.0, 4.5} (F1 0.85 at 1.5, where quiet pumps scored like earnings,
1.0 from 3.0 up), the open threshold from 30..80 (F1 1.0 from 50 to 60). The result is
reported on held-back seeds 11-13 (README, "Detection, measured"). A rule table, not a
fitted model, because every score must be explainable to an analyst as "these features,
this much, nothing explains them", and the hard negatives are told apart by context
(filings, market, size) that a few hand rules state exactly.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.detect.context import filing_age_min, is_smallcap, market_relative
from sentinel_ray.market import IST_OFFSET, MS_PER_DAY, MS_PER_MIN
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import RISK_1M, TIMESTAMP_TYPE


@dataclass(frozen=True)
class Ramp:
    """A feature's 0-1 strength: linear from `lo` (nothing unusual) to `hi` (as unusual as it gets)."""
    lo: float
    hi: float
    log: bool = False  # ratios: 2x -> 4x counts as much as 4x -> 8x
    absolute: bool = False  # returns: a dump is as suspicious as a pump

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.absolute:
                x = np.abs(x)
            lo, hi = self.lo, self.hi
            if self.log:
                x, lo, hi = np.log(np.where(x > 0, x, np.nan)), np.log(lo), np.log(hi)
            s = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        return np.nan_to_num(s, nan=0.0)


# Where each feature starts and stops adding evidence. Volume: z 2 is a normal busy
# minute, 8 is rare outside events; 10x the usual minute volume is a saturated signal.
# Price: 2%/15 min, 3%/60 min and 5% on the day are ordinary for small caps; 8%, 15% and
# 20% (the NSE's widest price band) are not. Promo: z 2..6 against the ticker's own
# trailing days; without a baseline, 3..12 flagged posts in an hour. Chatter: z 2..6.
RAMPS: dict[str, Ramp] = {
    "volume_z": Ramp(3.0, 10.0),
    "volume_ratio": Ramp(2.0, 6.0, log=True),
    "excess_ret_15m": Ramp(0.01, 0.05, absolute=True),
    "excess_ret_60m": Ramp(0.02, 0.10, absolute=True),
    "excess_ret_prev_close": Ramp(0.04, 0.20, absolute=True),
    "promo_z": Ramp(1.5, 6.0),
    "promo_posts_60m": Ramp(2.0, 8.0),
    "posts_z": Ramp(2.0, 6.0),
}
PLATFORMS_RAMP = Ramp(1.0, 3.0)  # the same push on 3 platforms is a campaign, on 1 it may be one forum
AUTHORS_RAMP = Ramp(1.0, 5.0)

FAMILIES: tuple[str, ...] = ("volume", "price", "promo", "chatter")
FAMILY_FEATURES: dict[str, tuple[str, ...]] = {
    "volume": ("volume_ratio", "volume_z"),
    "price": ("excess_ret_15m", "excess_ret_60m", "excess_ret_prev_close"),
    "promo": ("promo_z", "promo_posts_60m"),
    "chatter": ("posts_z",),
}
# What explains a market reaction away: the market family scores are scaled by these.
EXPLAINED_BY_FILING = 0.2  # a results / order / buyback filing within 3 sessions before the bar
LARGE_CAP = 0.5  # a NIFTY 50 company: too deep a float to pump

# The logistic combiner (see the module docstring for the cases it was set to).
B0 = -4.5
WEIGHTS: dict[str, float] = {"volume": 1.0, "price": 1.0, "promo": 1.5, "chatter": 0.5}
W_PRICE_VOLUME = 4.0  # an unexplained move on price and volume together: news explains one, a pump does not
W_PROMO_MARKET = 2.5  # promotion that moves the market: what separates a pump from news

_FAMILY_WEIGHT = np.array([WEIGHTS[f] for f in FAMILY_FEATURES])

# A feature is named as a reason when its strength reaches this; at most MAX_REASONS, one per family.
REASON_MIN_STRENGTH = 0.25
MAX_REASONS = 4

_INPUT_COLUMNS = ("volume_z", "volume_ratio", "ret_15m", "ret_60m", "ret_prev_close", "promo_z",
                  "promo_posts_60m", "posts_z", "platforms_60m", "authors_60m", "posts_60m")


def _floats(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    return pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def feature_strengths(table: pa.Table, filings: pa.Table | None = None) -> dict[str, np.ndarray]:
    """Each scored feature's 0-1 strength per row (promo already scaled by breadth), and
    `market_scale`: what the filings and the company's size leave of the market families."""
    x = {name: _floats(table, name) for name in _INPUT_COLUMNS}
    x.update(market_relative(table))
    s = {name: RAMPS[name](x[name]) for name in RAMPS}
    breadth = np.maximum(PLATFORMS_RAMP(x["platforms_60m"]), AUTHORS_RAMP(x["authors_60m"]))
    scale = 0.5 + 0.5 * breadth
    has_baseline = ~np.isnan(x["promo_z"])
    s["promo_z"] = np.where(has_baseline, s["promo_z"], 0.0) * scale
    s["promo_posts_60m"] = np.where(has_baseline, 0.0, s["promo_posts_60m"]) * scale  # counts speak only without z
    age = filing_age_min(table, filings)
    s["filing_age_min"] = age
    s["market_scale"] = (np.where(np.isnan(age), 1.0, EXPLAINED_BY_FILING)
                         * np.where(is_smallcap(table.column("ticker")), 1.0, LARGE_CAP))
    for name in ("excess_ret_15m", "excess_ret_60m", "excess_ret_prev_close"):
        s[f"{name}:value"] = x[name]  # what the reasons quote
        s[f"{name}:market"] = x[name] - np.nan_to_num(x[name.removeprefix("excess_")], nan=0.0)
    return s


def family_scores(strengths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {family: np.maximum.reduce([strengths[f] for f in features]) if len(features) > 1
           else strengths[features[0]] for family, features in FAMILY_FEATURES.items()}
    if "market_scale" in strengths:
        out["volume"] = out["volume"] * strengths["market_scale"]
        out["price"] = out["price"] * strengths["market_scale"]
    return out


def combine(volume: np.ndarray, price: np.ndarray, promo: np.ndarray, chatter: np.ndarray) -> np.ndarray:
    """The 0-100 score of the family sub-scores."""
    z = (B0 + WEIGHTS["volume"] * volume + WEIGHTS["price"] * price + WEIGHTS["promo"] * promo
         + WEIGHTS["chatter"] * chatter + W_PRICE_VOLUME * price * volume
         + W_PROMO_MARKET * promo * np.maximum(price, volume))
    floor = _sigmoid(B0)
    return np.clip(100.0 * (_sigmoid(z) - floor) / (1.0 - floor), 0.0, 100.0)


def risk_scores(features_1m: pa.Table, *, computed_at: dt.datetime | None = None,
                filings: pa.Table | None = None) -> pa.Table:
    """RISK_1M rows, one per features_1m row (same ticker, exchange, ts)."""
    computed_at = computed_at or utc_now()
    n = features_1m.num_rows
    if n == 0:
        return RISK_1M.arrow_schema.empty_table()
    strengths = feature_strengths(features_1m, filings)
    families = family_scores(strengths)
    score = np.round(combine(**families), 2)
    reasons = _reasons(features_1m, strengths)
    ts = pc.cast(features_1m.column("ts"), TIMESTAMP_TYPE)
    columns = {
        "ticker": features_1m.column("ticker"),
        "exchange": features_1m.column("exchange"),
        "ts": ts,
        "score": pa.array(score, pa.float64()),
        **{f"{family}_score": pa.array(np.round(families[family], 4), pa.float64()) for family in FAMILIES},
        "reasons": reasons,
        "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE), n),
    }
    return pa.table(columns, schema=RISK_1M.arrow_schema)


def _reasons(table: pa.Table, strengths: dict[str, np.ndarray]) -> pa.Array:
    """Reasons JSON per row: the strongest feature of each family, the family adding most
    to the score first (strength x the family's weight).

    Text is built in Python, but only for the rows where some feature is unusual (a few
    per cent of bars); every other row takes the same "[]" (an Arrow take: no Python
    object per row)."""
    n = table.num_rows
    best_feature: list[np.ndarray] = []
    best_strength: list[np.ndarray] = []
    for features in FAMILY_FEATURES.values():
        stack = np.vstack([strengths[f] for f in features])
        pick = np.argmax(stack, axis=0)
        best_feature.append(np.asarray(features, dtype=object)[pick])
        best_strength.append(stack[pick, np.arange(n)])
    feature_matrix = np.vstack(best_feature)  # families x rows
    strength_matrix = np.vstack(best_strength)
    rows = np.flatnonzero((strength_matrix >= REASON_MIN_STRENGTH).any(axis=0))
    texts = ["[]"]
    which = np.zeros(n, np.int32)  # per row, its text in `texts`
    which[rows] = np.arange(1, rows.size + 1, dtype=np.int32)
    sub = table.take(pa.array(rows))
    values = {name: sub.column(name).to_pylist() for name in _INPUT_COLUMNS}
    for name in ("excess_ret_15m", "excess_ret_60m", "excess_ret_prev_close"):
        values[name] = [None if np.isnan(v) else float(v) for v in strengths[f"{name}:value"][rows]]
        values[f"market:{name}"] = [0.0 if np.isnan(v) else -float(v) for v in strengths[f"{name}:market"][rows]]
    age = strengths["filing_age_min"][rows]
    scale = strengths["market_scale"][rows]
    ts_ms = pc.cast(sub.column("ts"), pa.int64()).to_numpy(zero_copy_only=False)
    ist_minute = ((ts_ms + int(IST_OFFSET.total_seconds() * 1000)) % MS_PER_DAY) // MS_PER_MIN
    # per row, the families by what they add to the score (a stable sort: ties keep family order)
    orders = np.argsort(-strength_matrix[:, rows] * _FAMILY_WEIGHT[:, None], axis=0, kind="stable")[:MAX_REASONS].T
    for k, row in enumerate(rows):
        reasons = []
        row_values = {c: values[c][k] for c in values}
        for fam in orders[k]:
            strength = float(strength_matrix[fam, row])
            if strength < REASON_MIN_STRENGTH:
                break
            feature = feature_matrix[fam, row]
            reasons.append({"feature": feature, "value": _rounded(row_values[feature]), "strength": round(strength, 3),
                            "text": reason_text(feature, row_values, int(ist_minute[k]))})
        if scale[k] < 1.0 and reasons:  # what discounted the market's reaction, said as plainly
            if not np.isnan(age[k]):
                reasons.append({"feature": "filing_age_min", "value": int(age[k]), "strength": 0.0,
                                "text": f"explained: price-sensitive filing {int(age[k])} trading min earlier"})
            else:
                reasons.append({"feature": "large_cap", "value": 1, "strength": 0.0,
                                "text": "large cap (NIFTY 50): hard to move by promotion"})
        texts.append(json.dumps(reasons, separators=(",", ":")))
    return pc.take(pa.array(texts, pa.string()), pa.array(which))


def _rounded(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


_EXCESS_TEXT = {"excess_ret_15m": "in 15 min", "excess_ret_60m": "in 60 min",
                "excess_ret_prev_close": "vs previous close"}
MARKET_MENTION = 0.005  # the median move at which a reason names the market's move beside the ticker's


def reason_text(feature: str, row: dict[str, float | int | None], ist_minute_of_day: int) -> str:
    """One reason as an analyst reads it: 'volume 9.3x usual for 10:42 IST'."""
    clock = f"{ist_minute_of_day // 60:02d}:{ist_minute_of_day % 60:02d} IST"
    v = row[feature]
    platforms = row.get("platforms_60m") or 0
    on = f" on {platforms} platform{'s' if platforms != 1 else ''}" if platforms else ""
    if feature == "volume_ratio":
        return f"volume {v:.1f}x usual for {clock}"
    if feature == "volume_z":
        return f"volume z {v:.1f} for {clock}"
    if feature in _EXCESS_TEXT:
        raw, market = row.get(feature.removeprefix("excess_")), row.get(f"market:{feature}") or 0.0
        own = v + market if raw is None else raw
        text = f"{own * 100:+.1f}% {_EXCESS_TEXT[feature]}"
        # the market's own move is named when there is one to speak of
        return text + (f" (market {market * 100:+.1f}%)" if abs(market) >= MARKET_MENTION else "")
    if feature == "promo_z":
        return f"promo posts z {v:.1f}{on}"
    if feature == "promo_posts_60m":
        authors = row.get("authors_60m") or 0
        return f"{v} promo posts in 60 min from {authors} author{'s' if authors != 1 else ''}{on}"
    if feature == "posts_z":
        return f"chatter z {v:.1f} ({row.get('posts_60m') or 0} posts in 60 min)"
    raise KeyError(feature)
