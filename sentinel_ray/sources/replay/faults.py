"""Bad records injected into a simulated day, and how many of each kind validation must reject.

The bars of the tickers an episode moves and the episodes' posts are never touched: they are
the detectors' ground truth.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from sentinel_ray.market import MS_PER_DAY
from sentinel_ray.records import Reason

FUTURE_SHIFT_DAYS = 3650  # a "future" bad row: same wall time ten years on


def with_bad_prices(
    cols: dict[str, np.ndarray], protected: np.ndarray | None, rng: np.random.Generator, bad_rate: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Good bars plus injected bad rows: (columns, null masks, expected counts).

    `protected`: rows to keep intact (the bars episodes move), unless too few others are left.
    """
    n = len(cols["ts"])
    if n == 0:
        return cols, {}, {"rows": 0, "valid": 0, "rejected": {}}
    # OHLC swap needs high > low to make a difference.
    swappable = cols["high"] > cols["low"]
    k = _bad_per_kind(bad_rate, n, 5)
    if protected is None or int((~protected & swappable).sum()) < 5 * k:
        protected = np.zeros(n, dtype=bool)  # the exact counts come first
    pools = [~protected, ~protected, ~protected & swappable, ~protected]
    picks = _pick_disjoint(rng, pools, k)
    nonpos, missing, ohlc, future = picks
    cols["low"][nonpos] = 0.0  # still low <= open, close <= high: only non_positive_price fires
    close_null = np.zeros(n, dtype=bool)
    close_null[missing] = True
    cols["high"][ohlc], cols["low"][ohlc] = cols["low"][ohlc].copy(), cols["high"][ohlc].copy()
    cols["ts"][future] += FUTURE_SHIFT_DAYS * MS_PER_DAY
    used = np.zeros(n, dtype=bool)
    used[np.concatenate(picks)] = True
    dup = np.sort(rng.choice(np.flatnonzero(~used & ~protected), size=k, replace=False))
    cols = {name: np.concatenate([c, c[dup]]) for name, c in cols.items()}
    masks = {"close": np.concatenate([close_null, np.zeros(k, dtype=bool)])}
    expected = {
        "rows": n + k,
        "valid": n - 4 * k,
        "rejected": {
            Reason.MISSING_FIELD.value: k,
            Reason.NON_POSITIVE_PRICE.value: k,
            Reason.OHLC_INCONSISTENT.value: k,
            Reason.FUTURE_TIMESTAMP.value: k,
            Reason.DUPLICATE.value: k,
        },
    }
    return cols, masks, expected


def with_bad_posts(
    posts: dict[str, list[Any]], rng: np.random.Generator, bad_rate: float
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Good posts plus injected bad ones, in place: (posts, expected counts)."""
    n = len(posts["ts"])
    if n == 0:
        return posts, {"rows": 0, "valid": 0, "rejected": {}}
    k = _bad_per_kind(bad_rate, n, 4)
    pool = ~np.array(posts["episode"], dtype=bool)  # episode posts are ground truth
    if pool.sum() < 4 * k:
        k = max(0, int(pool.sum()) // 4)
    missing, short, future = _pick_disjoint(rng, [pool, pool, pool], k)
    for i in missing:
        posts["post_id"][i] = None
    # 1-4 characters after trimming. Not empty or whitespace-only: validation trims
    # text first and an empty string counts as missing_field, not text_length.
    for j, i in enumerate(short):
        posts["text"][i] = ("gm!", " ok ", "🚀🚀🚀", "hi\n")[j % 4]
    for i in future:
        posts["ts"][i] += FUTURE_SHIFT_DAYS * MS_PER_DAY
    used = np.zeros(n, dtype=bool)
    used[np.concatenate([missing, short, future])] = True
    dup = np.sort(rng.choice(np.flatnonzero(~used & pool), size=k, replace=False)) if k else np.empty(0, np.int64)
    for key, values in posts.items():
        values.extend([list(values[i]) if key == "tickers" else values[i] for i in dup])
    rejected = {
        Reason.MISSING_FIELD.value: k,
        Reason.TEXT_LENGTH.value: k,
        Reason.FUTURE_TIMESTAMP.value: k,
        Reason.DUPLICATE.value: k,
    }
    return posts, {"rows": n + k, "valid": n - 3 * k, "rejected": rejected if k else {}}


def _bad_per_kind(bad_rate: float, n_good: int, kinds: int) -> int:
    # At least one of each kind so validation is exercised on every batch.
    return max(1, int(round(bad_rate * n_good / kinds)))


def _pick_disjoint(rng: np.random.Generator, pools: list[np.ndarray], k: int) -> list[np.ndarray]:
    """`k` distinct row indexes from each boolean pool, no index picked twice overall."""
    taken = np.zeros(len(pools[0]) if pools else 0, dtype=bool)
    picks = []
    for pool in pools:
        candidates = np.flatnonzero(pool & ~taken)
        chosen = np.sort(rng.choice(candidates, size=min(k, len(candidates)), replace=False))
        taken[chosen] = True
        picks.append(chosen)
    return picks
