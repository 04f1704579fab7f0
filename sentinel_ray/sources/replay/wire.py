"""The simulated service's wire format: NDJSON bodies, timestamps in IST as the service spells them.

The bytes are pandas' `to_json(orient="records", lines=True, force_ascii=False)` with
unescaped slashes: that is what the service has always sent, and raw payloads are kept
byte for byte. `to_ndjson` builds the same bytes column-wise with Arrow compute (each
distinct string or time spelled once, then taken), about 10x faster; tables it cannot
prove it spells identically (floats pandas would print with float noise, NaN, -0.0)
take the pandas path. `read_ndjson` reads a body back into the table it was written from,
same values and types (a replay from the raw zone reads the simulator's payloads with it).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from sentinel_ray.market import IST, IST_OFFSET

_IST_OFFSET_MS = int(IST_OFFSET.total_seconds()) * 1000
_IST_SUFFIX = dt.datetime(2000, 1, 1, tzinfo=IST).isoformat()[-6:]  # "+05:30"
# pandas prints floats with 10 decimals, trailing zeros trimmed. Below 2**19 half an ulp
# is under 0.5e-10, so a shortest repr with <= 10 decimals is exactly what it prints.
_EXACT_FLOAT_LIMIT = float(2**19)


def _iso_ist(ts: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as the service spells them: ISO-8601 in IST with its offset."""
    ms = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    local = (ms + _IST_OFFSET_MS).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(local, unit="ms").astype(str), _IST_SUFFIX).astype(object)


def to_ndjson(table: pa.Table) -> bytes:
    """The body the simulated service sends: one JSON object per record."""
    if table.num_rows == 0:
        return b""
    values = [_json_values(table.column(i).combine_chunks(), field.type) for i, field in enumerate(table.schema)]
    if any(v is None for v in values):
        return _to_ndjson_pandas(table)
    parts: list[pa.Array | str] = []
    for i, (field, value) in enumerate(zip(table.schema, values)):
        _append(parts, ("{" if i == 0 else ",") + json.dumps(field.name) + ":")
        _append(parts, value)
    _append(parts, "}\n")
    if len(parts) == 1:  # every column constant
        parts = [pa.array([parts[0]] * table.num_rows, pa.string())]
    lines = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


def read_ndjson(body: bytes, schema: pa.Schema) -> pa.Table:
    """The table `to_ndjson` wrote `body` from, in `schema` (a field a line lacks is null; a field
    `schema` lacks, or a line that is not JSON of it, is a pyarrow.ArrowInvalid)."""
    if not body:
        return schema.empty_table()
    table = pj.read_json(pa.BufferReader(body), read_options=pj.ReadOptions(block_size=_READ_BLOCK_BYTES),
                         parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"))
    return table.select(schema.names)


_READ_BLOCK_BYTES = 4 << 20  # a few blocks a day of prices: read on as many threads


def _append(parts: list[pa.Array | str], part: pa.Array | str) -> None:
    if isinstance(part, str) and parts and isinstance(parts[-1], str):
        parts[-1] += part
    else:
        parts.append(part)


def _json_values(col: pa.Array, typ: pa.DataType, whole: bool = False) -> pa.Array | str | None:
    """Each value of `col` spelled as pandas' JSON spells it (no nulls left), or None;
    a column of one value (source, run_id, ...) as that value's text alone."""
    if pa.types.is_timestamp(typ):
        spelled = _spell_distinct(col, lambda d: [f'"{s}"' for s in _iso_ist(pa.chunked_array([d]))], whole)
    elif pa.types.is_string(typ):
        spelled = _spell_distinct(col, lambda d: [_json_string(s) for s in d.to_pylist()], whole)
    elif pa.types.is_integer(typ):
        spelled = col.cast(pa.string())
    elif pa.types.is_floating(typ):
        spelled = _json_floats(col)
    elif pa.types.is_list(typ) and pa.types.is_string(typ.value_type):
        first, last = col.offsets[0].as_py(), col.offsets[-1].as_py()
        items = _json_values(col.values.slice(first, last - first), typ.value_type, whole=True)
        if items is None:
            return None
        offsets = pc.subtract(col.offsets, first)
        joined = pc.binary_join(pa.ListArray.from_arrays(offsets, items, mask=col.is_null()), ",")
        spelled = pc.binary_join_element_wise("[", joined, "]", "")
    else:
        return None
    if spelled is None or isinstance(spelled, str):
        return spelled
    return pc.fill_null(spelled, "null")


def _spell_distinct(col: pa.Array, spell: Callable[[pa.Array], list[str]], whole: bool) -> pa.Array | str:
    encoded = col.dictionary_encode()
    spelled = spell(encoded.dictionary)
    if len(spelled) == 1 and col.null_count == 0 and not whole:
        return spelled[0]
    return pc.take(pa.array(spelled, pa.string()), encoded.indices)


def _json_string(text: str) -> str:
    # pandas escapes every '/' ('https:\/\/'); legal JSON, but no real service sends it.
    return pd.io.json.ujson_dumps(text, ensure_ascii=False).replace("\\/", "/")


def _json_floats(col: pa.Array) -> pa.Array | None:
    present = pc.drop_null(col)
    if len(present) and not pc.all(pc.less(pc.abs(present), _EXACT_FLOAT_LIMIT)).as_py():
        return None  # NaN, or large enough for pandas to print float noise
    if len(present) and pc.any(pc.less(pc.divide(1.0, present), 0.0)).as_py() and \
            pc.any(pc.equal(present, 0.0)).as_py():
        return None  # -0.0
    text = col.cast(pa.string())  # shortest repr: '1546.05', '1546', '1e-07'
    # Prices are in paise: a value equal to itself rounded to 2 decimals spells with at
    # most 2, and never in exponent form. Anything else is checked on its text.
    cents = pc.divide(pc.round(pc.multiply(present, 100.0)), 100.0)
    if not pc.all(pc.equal(cents, present)).as_py():
        if pc.any(pc.match_substring(text, "e")).as_py():
            return None
        point = pc.find_substring(text, ".")
        if pc.any(pc.greater(pc.subtract(pc.utf8_length(text), point), 11)).as_py():
            return None  # more than 10 decimals: pandas rounds them
    integral = pc.equal(pc.floor(col), col)
    return pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)


def _to_ndjson_pandas(table: pa.Table) -> bytes:
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            frame[field.name] = _iso_ist(table.column(field.name))
    body = frame.to_json(orient="records", lines=True, force_ascii=False)
    body = body.replace("\\/", "/")
    return body.encode("utf-8") if body.endswith("\n") else (body + "\n").encode("utf-8")
