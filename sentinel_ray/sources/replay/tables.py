"""A simulated day's columns as the datasets' records tables, lineage columns included.

Column names, order and Arrow types are the dataset's, but every field is nullable
(`Dataset.record_schema`): the injected bad rows hold nulls in required columns, which
is exactly what validation must find. `raw_id` / `raw_pos` are not among them: they say
where a record was read from, so they are set once its payload exists (`lineage.with_raw`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from sentinel_ray.schemas import FILINGS, POSTS, PRICES, TIMESTAMP_TYPE
from sentinel_ray.sources.lineage import payload_schema


def prices_table(cols: dict[str, np.ndarray], masks: dict[str, np.ndarray], lineage: dict[str, Any]) -> pa.Table:
    n = len(cols["ts"])

    def num(name: str, typ: pa.DataType) -> pa.Array:
        mask = masks.get(name)
        return pa.array(cols[name], typ, mask=mask if mask is not None and mask.any() else None)

    arrays = [
        pa.array(cols["ticker"], pa.string()),
        pa.repeat(pa.scalar("NSE", pa.string()), n),
        pa.repeat(pa.scalar("1m", pa.string()), n),
        _timestamps(cols["ts"]),
        num("open", pa.float64()),
        num("high", pa.float64()),
        num("low", pa.float64()),
        num("close", pa.float64()),
        num("volume", pa.int64()),
        *_lineage(n, lineage),
    ]
    return pa.Table.from_arrays(arrays, schema=payload_schema(PRICES))


def posts_table(posts: dict[str, list[Any]], lineage: dict[str, Any]) -> pa.Table:
    n = len(posts["ts"])
    arrays = [
        pa.array(posts["platform"], pa.string()),
        pa.array(posts["post_id"], pa.string()),
        pa.array(posts["author"], pa.string()),
        pa.array(posts["text"], pa.string()),
        _timestamps(np.array(posts["ts"], dtype=np.int64)),
        pa.array(posts["url"], pa.string()),
        pa.array(posts["engagement"], pa.int64()),
        pa.array(posts["tickers"], pa.list_(pa.string())),
        *_lineage(n, lineage),
    ]
    return pa.Table.from_arrays(arrays, schema=payload_schema(POSTS))


def filings_table(filings: list[dict[str, Any]], lineage: dict[str, Any]) -> pa.Table:
    n = len(filings)
    arrays = [
        pa.array([f[name] for f in filings], pa.string())
        for name in ("exchange", "filing_id", "ticker", "company", "subject", "details")
    ]
    arrays += [
        _timestamps(np.array([f["ts"] for f in filings], dtype=np.int64)),
        pa.array([f["attachment_url"] for f in filings], pa.string()),
        *_lineage(n, lineage),
    ]
    return pa.Table.from_arrays(arrays, schema=payload_schema(FILINGS))


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64), type=pa.int64()).cast(TIMESTAMP_TYPE)


def _lineage(n: int, lineage: dict[str, Any]) -> list[pa.Array]:
    return [
        pa.repeat(pa.scalar(lineage["source"], pa.string()), n),
        pa.repeat(pa.scalar(lineage["run_id"], pa.string()), n),
        _timestamps(np.full(n, lineage["ingested_ms"], dtype=np.int64)),
    ]
