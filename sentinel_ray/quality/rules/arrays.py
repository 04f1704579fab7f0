"""Array helpers shared by the rule kinds: rule masks between Arrow and numpy, columns as numpy."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Mask = pa.Array | pa.ChunkedArray | np.ndarray


def any_of(masks: list[Mask]) -> Mask:
    out: Mask | None = None
    for m in masks:
        if isinstance(m, np.ndarray):
            m = pa.array(m)
        out = m if out is None else pc.or_kleene(out, m)
    assert out is not None
    return out


def definite(mask: Mask, n: int) -> pa.Array:
    """A null comparison (null input) is 'rule not violated': absence is not_null's job."""
    if isinstance(mask, np.ndarray):
        return pa.array(mask, pa.bool_())
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    if len(mask) != n:
        raise AssertionError(f"rule mask has {len(mask)} rows, table {n}")
    return pc.fill_null(mask, False) if mask.null_count else mask


def union(masks: list[pa.Array | np.ndarray], n: int) -> np.ndarray:
    """Rows failing any of `masks`: Arrow masks are OR-ed as bitmaps, then converted once."""
    arrow = [m for m in masks if not isinstance(m, np.ndarray)]
    out = bool_numpy(any_of(arrow)) if arrow else np.zeros(n, dtype=bool)
    for m in masks:
        if isinstance(m, np.ndarray):
            out = out | m
    return out


def arrow_mask(mask: pa.Array | np.ndarray) -> pa.Array:
    return pa.array(mask, pa.bool_()) if isinstance(mask, np.ndarray) else mask


def bool_numpy(mask: Mask) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        return mask
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks else pa.array([], pa.bool_())
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return mask.to_numpy(zero_copy_only=False)


def single_chunk(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks() if col.num_chunks else pa.array([], col.type)


def int_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = single_chunk(arr)
    if arr.null_count:
        arr = pc.fill_null(arr, 0)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def float_numpy(col: pa.ChunkedArray | pa.Array, fill: float = math.nan) -> np.ndarray:
    arr = single_chunk(col)
    if not pa.types.is_floating(arr.type):
        arr = pc.cast(arr, pa.float64())
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False)


def valid_numpy(arr: pa.Array) -> np.ndarray:
    return bool_numpy(pc.is_valid(arr))


def or_optional(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b
