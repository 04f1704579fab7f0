"""Derive what a batch's own columns imply, for every batch whatever its source.

Posts: the tickers each text mentions (`pipeline/tickers.py`), and how the text reads:
`sentiment` (`pipeline/sentiment.py`), `promo_score`, `is_pump_signal` and `promo_evidence`
(`pipeline/promo.py`), all vectorised over the batch.

Tickers: Adapters hand over text
with `tickers` null; webhook senders may leave it out. A row whose `tickers` is null gets
the tickers found in its text. A row that carries a list keeps it as given, `[]` included:
the sender stated what the post is about (a bot may know it from its channel, a replay
from its ground truth), and re-enriching a stored row then changes nothing.

Sentiment and promotion are the pipeline's own (sources and webhooks do not send them):
rows where any of them is null get all four from the text; rows that carry them (a stored
row re-enriched) keep them. They are filled in the columns the table has: a conformed
table has them all.

Runs after conform/normalise (columns typed, text trimmed) and before validation, so
`tickers` is only missing there when the row has no readable text.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.pipeline import promo
from sentinel_ray.pipeline.sentiment import sentiment
from sentinel_ray.pipeline.tickers import extract_tickers
from sentinel_ray.pipeline.words import words
from sentinel_ray.schemas import POSTS, Dataset

PROMO_COLUMNS = ("sentiment", "promo_score", "is_pump_signal", "promo_evidence")


def enrich(table: pa.Table, ds: Dataset, *, promo_threshold: float | None = None) -> pa.Table:
    """`table`, conformed to `ds`, with its derived columns filled in.

    `promo_threshold`: the promo_score at which a post is a pump signal (settings'
    `promo_threshold`); default: the one the shipped model was tuned to."""
    if ds.name == POSTS.name:
        return fill_promotion(fill_tickers(table), promo_threshold)
    return table


def fill_promotion(table: pa.Table, threshold: float | None = None) -> pa.Table:
    """Null sentiment / promo columns filled from `text`, for the rows missing any of them."""
    present = [c for c in PROMO_COLUMNS if c in table.column_names]
    if not present or table.num_rows == 0:
        return table
    is_missing = np.zeros(table.num_rows, dtype=bool)
    for name in present:
        col = table.column(name)
        if col.null_count:
            is_missing |= pc.is_null(col).to_numpy(zero_copy_only=False)
    if not is_missing.any():  # stored rows re-enriched: nothing to compute
        return table
    every = bool(is_missing.all())
    texts = table.column("text") if every else table.column("text").filter(pa.array(is_missing))
    w = words(texts)
    scores = promo.score(w, threshold=threshold)
    found = {"sentiment": sentiment(w), "promo_score": scores.score, "is_pump_signal": scores.is_pump_signal,
             "promo_evidence": scores.evidence}
    position = None if every else pa.array(np.cumsum(is_missing) - 1, pa.int64(), mask=~is_missing)
    for name in present:
        field = table.schema.field(name)
        values = found[name].cast(field.type)
        if position is not None:  # row i takes the k-th found value where it is the k-th missing row
            values = pc.coalesce(table.column(name), values.take(position))
        table = _set(table, field, values)
    return table


def fill_tickers(table: pa.Table) -> pa.Table:
    """Null `tickers` replaced by those found in `text`; given lists kept."""
    given = table.column("tickers")
    field = table.schema.field("tickers")
    missing = given.null_count
    if missing == 0:  # replays, stored rows, senders that tag their posts: nothing to find
        return table
    if missing == table.num_rows:  # every adapter's batch: all texts in one call, no merging
        found = pa.array(extract_tickers(table.column("text").to_pylist()), field.type)
        return _set(table, field, found)
    is_missing = pc.is_null(given).to_numpy(zero_copy_only=False)
    texts = table.column("text").filter(pa.array(is_missing)).to_pylist()
    found = pa.array(extract_tickers(texts), field.type)
    # Row i takes found[k] where it is the k-th missing row, its given list otherwise.
    position = pa.array(np.cumsum(is_missing) - 1, pa.int64(), mask=~is_missing)
    return _set(table, field, pc.coalesce(given, found.take(position)))


def _set(table: pa.Table, field: pa.Field, col: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(field.name), field, col)
