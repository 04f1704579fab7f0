"""The simulated service's wire format: NDJSON bodies, timestamps in IST as the service spells them."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa

from sentinel_ray.market import IST, IST_OFFSET

_IST_OFFSET_MS = int(IST_OFFSET.total_seconds()) * 1000
_IST_SUFFIX = dt.datetime(2000, 1, 1, tzinfo=IST).isoformat()[-6:]  # "+05:30"


def _iso_ist(ts: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as the service spells them: ISO-8601 in IST with its offset."""
    ms = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    local = (ms + _IST_OFFSET_MS).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(local, unit="ms").astype(str), _IST_SUFFIX).astype(object)


def to_ndjson(table: pa.Table) -> bytes:
    """The body the simulated service sends: one JSON object per record."""
    if table.num_rows == 0:
        return b""
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            frame[field.name] = _iso_ist(table.column(field.name))
    body = frame.to_json(orient="records", lines=True, force_ascii=False)
    # pandas escapes every '/' ('https:\/\/'); legal JSON, but no real service sends it.
    body = body.replace("\\/", "/")
    return body.encode("utf-8") if body.endswith("\n") else (body + "\n").encode("utf-8")
