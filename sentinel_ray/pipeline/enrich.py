"""Derive what a batch's own columns imply, for every batch whatever its source.

Posts: the tickers each text mentions (`pipeline/tickers.py`). Adapters hand over text
with `tickers` null; webhook senders may leave it out. A row whose `tickers` is null gets
the tickers found in its text. A row that carries a list keeps it as given, `[]` included:
the sender stated what the post is about (a bot may know it from its channel, a replay
from its ground truth), and re-enriching a stored row then changes nothing.

Runs after conform/normalise (columns typed, text trimmed) and before validation, so
`tickers` is only missing there when the row has no readable text.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.pipeline.tickers import extract_tickers
from sentinel_ray.schemas import POSTS, Dataset


def enrich(table: pa.Table, ds: Dataset) -> pa.Table:
    """`table`, conformed to `ds`, with its derived columns filled in."""
    if ds.name == POSTS.name:
        return fill_tickers(table)
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
