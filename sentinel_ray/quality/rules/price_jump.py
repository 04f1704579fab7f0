"""`price_jump`: prices far from the rest of their series without the volume of a real move."""
from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from sentinel_ray.quality.rules.arrays import Mask, bool_numpy, float_numpy
from sentinel_ray.quality.rules.base import NUMBER_KINDS, Rule, require
from sentinel_ray.quality.rules.context import Context
from sentinel_ray.schemas import Dataset, Kind


class PriceJumpRule(Rule):
    """Prices more than `factor` away from the rest of their series, without matching volume.

    Each series (`series` columns) is ordered by `time`. Where `price` changes by more than
    `factor` either way between consecutive bars, the series *jumps*; the jumps cut it into
    segments, each at a price level (the sum of the jumps before it). The *anchor* is the
    latest segment of at least `min_anchor_bars` bars that traded (volume > 0), else the
    longest segment (the latest of equals): the last price level the market held. Bars whose
    level is more than `factor` away from the anchor's fail - a one-bar spike, a run of
    mis-scaled bars, the older side of a unit switch alike - unless their run traded like a
    real move: a run of such bars whose mean volume is at least `volume_factor` x the anchor
    segment's mean volume is let through (unit errors - paise for rupees, pence for pounds -
    leave volume untouched). A bar whose own `high` exceeds `factor` x its `low` fails too
    (a mis-scaled high or low alone; the other one-column errors already break OHLC order).

    Bars rejected by other rules take no part. Only neighbours within the batch are seen.
    """

    kind: Literal["price_jump"] = "price_jump"
    series: list[str] = Field(default_factory=lambda: ["ticker", "exchange", "interval", "source"], min_length=1)
    time: str = "ts"
    price: str = "close"
    high: str | None = "high"
    low: str | None = "low"
    volume: str | None = "volume"
    factor: float = Field(20.0, gt=1.0)
    volume_factor: float = Field(10.0, gt=1.0)
    min_anchor_bars: int = Field(5, ge=1)

    after_others: ClassVar[bool] = True

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        n = table.num_rows
        out = np.zeros(n, dtype=bool)
        if n == 0:
            return out
        kept = ctx.kept()
        if self.high is not None and self.low is not None:
            spread = bool_numpy(pc.greater(table.column(self.high),
                                            pc.multiply(table.column(self.low), self.factor)))
            out |= spread if kept is None else spread & kept
        if n < 2:
            return out
        order, group, _ = ctx.sorted_keys(table, (*self.series, self.time)).kept(ctx)
        price = float_numpy(table.column(self.price))[order]
        with np.errstate(all="ignore"):
            ratio = price[1:] / price[:-1]
        same = group[1:] == group[:-1]
        big = ((ratio > self.factor) | (ratio < 1.0 / self.factor)) & same
        if not big.any():
            return out  # the common case: no price anywhere near a jump
        volume = float_numpy(table.column(self.volume), fill=0.0) if self.volume else None
        with np.errstate(all="ignore"):  # extreme prices (1e308, denormals) make inf/nan steps, not errors
            out[self._off_anchor(order, same, price, np.flatnonzero(big) + 1, volume)] = True
        return out

    def _off_anchor(self, order: np.ndarray, same: np.ndarray, price: np.ndarray, big: np.ndarray,
                    volume: np.ndarray | None) -> np.ndarray:
        """Rows whose level is more than `factor` away from their series' anchor, volume unmatched.

        `order`/`price`: the kept rows in (series, time) order, `same[i]`: positions i and i+1
        are one series; `big`: positions of the bars right after a jump.
        """
        # Only series with a jump need segments: typically a handful of a batch's thousands.
        bounds = np.flatnonzero(~same) + 1  # where a new series starts
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(order)]])
        touched = np.unique(np.searchsorted(bounds, big, side="right"))
        length = ends[touched] - starts[touched]
        offset = np.cumsum(length) - length  # where each touched series begins in the subset
        local = np.repeat(np.arange(len(touched)), length)  # series number within the subset
        pos = np.arange(int(length.sum())) - offset[local] + starts[touched][local]
        first = np.zeros(len(pos), dtype=bool)
        first[offset] = True
        jump = np.zeros(len(pos), dtype=bool)
        jump[np.searchsorted(pos, big)] = True  # never at a series' first bar
        with np.errstate(divide="ignore", invalid="ignore"):
            # a difference of logs, not the log of a ratio: 1e-300 / 1e308 underflows to 0
            log_step = np.where(jump, np.log(price[pos]) - np.log(price[np.maximum(pos - 1, 0)]), 0.0)
        climb = np.cumsum(log_step)
        level = climb - climb[np.flatnonzero(first)][local]
        vol = volume[order[pos]] if volume is not None else np.ones(len(pos))
        # segments: the runs between jumps; the anchor segment of each series
        seg_start = first | jump
        seg_of = np.cumsum(seg_start) - 1
        starts = np.flatnonzero(seg_start)
        count = np.bincount(seg_of)
        seg_volume = np.bincount(seg_of, weights=vol)
        ordinal = np.arange(len(starts), dtype=np.int64)
        qualified = (count >= self.min_anchor_bars) & (seg_volume > 0)
        score = np.where(qualified, (1 << 50) + ordinal, count.astype(np.int64) * (1 << 25) + ordinal)
        seg_series = local[starts]
        best = np.maximum.reduceat(score, np.flatnonzero(np.concatenate([[True], seg_series[1:] != seg_series[:-1]])))
        anchor = np.flatnonzero(score == best[seg_series])  # one segment per series: scores are unique
        off = np.abs(level - level[starts[anchor]][local]) > math.log(self.factor)
        if volume is not None and off.any():
            # a run of off-level bars that traded like a real move is let through
            run_start = off & (first | ~np.concatenate([[False], off[:-1]]))
            run_of = (np.cumsum(run_start) - 1)[off]
            run_volume = np.bincount(run_of, weights=vol[off]) / np.bincount(run_of)
            typical = (seg_volume[anchor] / count[anchor])[local[run_start]]
            real = run_volume >= self.volume_factor * np.maximum(typical, 1.0)
            if real.any():
                off[np.flatnonzero(off)[real[run_of]]] = False
        return order[pos[off]]

    def columns_used(self) -> list[str]:
        return [c for c in (*self.series, self.time, self.price, self.high, self.low, self.volume) if c]

    def check(self, ds: Dataset) -> None:
        super().check(ds)
        for name in self.series:
            require(ds, name, tuple(k for k in Kind if k is not Kind.SYMBOLS), "series")
        require(ds, self.time, (Kind.TIMESTAMP, Kind.INT), "time")
        for name in (self.price, self.high, self.low, self.volume):
            if name:
                require(ds, name, NUMBER_KINDS, "price/high/low/volume")
