"""Risk score 0-100 per ticker per minute, with the reasons that drove it.

Four families of evidence, each a 0-1 sub-score from the point-in-time features of the bar:

    volume   max(ramp(volume_z, 2, 8), ramp(ln volume_ratio, ln 2, ln 10))
    price    max(ramp(|ret_15m|, 2%, 8%), ramp(|ret_60m|, 3%, 15%), ramp(|ret_prev_close|, 5%, 20%))
    promo    ramp(promo_z, 2, 6) (ramp(promo_posts_60m, 3, 12) when there is no baseline yet)
             x (0.5 + 0.5 breadth), breadth = max(ramp(platforms_60m, 1, 3), ramp(authors_60m, 2, 10))
    chatter  ramp(posts_z, 2, 6)

`ramp(x, lo, hi)` is 0 at or below lo, 1 at or above hi, linear between; a missing feature
(too little history) is 0: no evidence, not suspicion.

The combiner is logistic with interaction terms, because a pump is the co-occurrence of
promotion with a market reaction, and no single family is:

    z = B0 + 1.0 volume + 1.0 price + 1.5 promo + 0.5 chatter
           + 1.5 price*volume + 2.5 promo*max(price, volume)
    score = 100 (sigmoid(z) - sigmoid(B0)) / (1 - sigmoid(B0))      (0 when nothing is unusual)

which places the cases surveillance has to tell apart (all families at 1 unless said):
a pump (all four) ~97; promotion with volume but no price move yet (a pump's start) ~73;
earnings (price + volume + news chatter, no promotion) ~37, ~57 with mild promotion (0.2);
price and volume alone ~26; promotion and chatter with no market reaction ~7; viral
large-cap chatter (chatter 1, promo 0.5, volume 0.2) ~5; any single market family ~2. The alert thresholds (alerts.py) open at 60, between earnings and
a pump. The weights are set by hand to these cases, not fitted: there is no labelled
history yet; `detect/evaluate.py` measures them against replay ground truth, and a
logistic regression over the same sub-scores can refit them when labels exist.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    "volume_z": Ramp(2.0, 8.0),
    "volume_ratio": Ramp(2.0, 10.0, log=True),
    "ret_15m": Ramp(0.02, 0.08, absolute=True),
    "ret_60m": Ramp(0.03, 0.15, absolute=True),
    "ret_prev_close": Ramp(0.05, 0.20, absolute=True),
    "promo_z": Ramp(2.0, 6.0),
    "promo_posts_60m": Ramp(3.0, 12.0),
    "posts_z": Ramp(2.0, 6.0),
}
PLATFORMS_RAMP = Ramp(1.0, 3.0)  # the same push on 3 platforms is a campaign, on 1 it may be one forum
AUTHORS_RAMP = Ramp(2.0, 10.0)

FAMILIES: tuple[str, ...] = ("volume", "price", "promo", "chatter")
FAMILY_FEATURES: dict[str, tuple[str, ...]] = {
    "volume": ("volume_ratio", "volume_z"),
    "price": ("ret_15m", "ret_60m", "ret_prev_close"),
    "promo": ("promo_z", "promo_posts_60m"),
    "chatter": ("posts_z",),
}

# The logistic combiner (see the module docstring for the cases it was set to).
B0 = -4.5
WEIGHTS: dict[str, float] = {"volume": 1.0, "price": 1.0, "promo": 1.5, "chatter": 0.5}
W_PRICE_VOLUME = 1.5  # the market reacting on both price and volume, as in news and pumps alike
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


def feature_strengths(table: pa.Table) -> dict[str, np.ndarray]:
    """Each scored feature's 0-1 strength per row (promo already scaled by breadth)."""
    x = {name: _floats(table, name) for name in _INPUT_COLUMNS}
    s = {name: RAMPS[name](x[name]) for name in RAMPS}
    breadth = np.maximum(PLATFORMS_RAMP(x["platforms_60m"]), AUTHORS_RAMP(x["authors_60m"]))
    scale = 0.5 + 0.5 * breadth
    has_baseline = ~np.isnan(x["promo_z"])
    s["promo_z"] = np.where(has_baseline, s["promo_z"], 0.0) * scale
    s["promo_posts_60m"] = np.where(has_baseline, 0.0, s["promo_posts_60m"]) * scale  # counts speak only without z
    return s


def family_scores(strengths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {family: np.maximum.reduce([strengths[f] for f in features]) if len(features) > 1
            else strengths[features[0]] for family, features in FAMILY_FEATURES.items()}


def combine(volume: np.ndarray, price: np.ndarray, promo: np.ndarray, chatter: np.ndarray) -> np.ndarray:
    """The 0-100 score of the family sub-scores."""
    z = (B0 + WEIGHTS["volume"] * volume + WEIGHTS["price"] * price + WEIGHTS["promo"] * promo
         + WEIGHTS["chatter"] * chatter + W_PRICE_VOLUME * price * volume
         + W_PROMO_MARKET * promo * np.maximum(price, volume))
    floor = _sigmoid(B0)
    return np.clip(100.0 * (_sigmoid(z) - floor) / (1.0 - floor), 0.0, 100.0)


def risk_scores(features_1m: pa.Table, *, computed_at: dt.datetime | None = None) -> pa.Table:
    """RISK_1M rows, one per features_1m row (same ticker, exchange, ts)."""
    computed_at = computed_at or utc_now()
    n = features_1m.num_rows
    if n == 0:
        return RISK_1M.arrow_schema.empty_table()
    strengths = feature_strengths(features_1m)
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
        "reasons": pa.array(reasons, pa.string()),
        "computed_at": pa.array(np.full(n, computed_at), TIMESTAMP_TYPE),
    }
    return pa.table(columns, schema=RISK_1M.arrow_schema)


def _reasons(table: pa.Table, strengths: dict[str, np.ndarray]) -> list[str]:
    """Reasons JSON per row: the strongest feature of each family, the family adding most
    to the score first (strength x the family's weight).

    Text is built in Python, but only for the rows where some feature is unusual (a few
    per cent of bars); every other row gets the same "[]"."""
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
    out = np.full(n, "[]", dtype=object)
    rows = np.flatnonzero((strength_matrix >= REASON_MIN_STRENGTH).any(axis=0))
    if rows.size == 0:
        return out.tolist()
    sub = table.take(pa.array(rows))
    values = {name: sub.column(name).to_pylist() for name in _INPUT_COLUMNS}
    ts_ms = pc.cast(sub.column("ts"), pa.int64()).to_numpy(zero_copy_only=False)
    ist_minute = ((ts_ms + int(IST_OFFSET.total_seconds() * 1000)) % MS_PER_DAY) // MS_PER_MIN
    for k, row in enumerate(rows):
        order = np.argsort(-strength_matrix[:, row] * _FAMILY_WEIGHT, kind="stable")
        reasons = []
        for fam in order[:MAX_REASONS]:
            strength = float(strength_matrix[fam, row])
            if strength < REASON_MIN_STRENGTH:
                break
            feature = feature_matrix[fam, row]
            value = values[feature][k]
            reasons.append({"feature": feature, "value": _rounded(value), "strength": round(strength, 3),
                            "text": reason_text(feature, {c: values[c][k] for c in values}, int(ist_minute[k]))})
        out[row] = json.dumps(reasons, separators=(",", ":"))
    return out.tolist()


def _rounded(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


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
    if feature == "ret_15m":
        return f"{v * 100:+.1f}% in 15 min"
    if feature == "ret_60m":
        return f"{v * 100:+.1f}% in 60 min"
    if feature == "ret_prev_close":
        return f"{v * 100:+.1f}% vs previous close"
    if feature == "promo_z":
        return f"promo posts z {v:.1f}{on}"
    if feature == "promo_posts_60m":
        authors = row.get("authors_60m") or 0
        return f"{v} promo posts in 60 min from {authors} author{'s' if authors != 1 else ''}{on}"
    if feature == "posts_z":
        return f"chatter z {v:.1f} ({row.get('posts_60m') or 0} posts in 60 min)"
    raise KeyError(feature)
