"""Lineage of source records: which raw payload each record was read from (`raw_id`), where in
it (`raw_pos`), and what a payload's request text tells its parser.

Every adapter reads its records through one function per payload, `parse_payload(payload)`
(registered in `sources.PARSERS`, found by `sources.parser_for`): a poll calls it on what it
has just received, a replay from the raw zone calls it on what the lake kept, and both get
the same records, so a parser change changes both alike. A parser needs nothing but the
payload: its body, `received_at` and `request`. What only the poll knew is written into the
request text after a `#`, a URL fragment, which no service ever sees (and no secret goes in):

    https://oauth.reddit.com/r/IndianStockMarket/new#skip=7-99
    https://query2.finance.yahoo.com/v8/finance/chart/TCS.NS?interval=1d&range=5d#skip=4

- `skip`: positions of records the poll read and did not emit: emitted by an earlier poll (or
  an earlier payload of this one), a bar still forming, a row outside a backfill's day. A
  record that could not be read is never in it, so a mended parser replays it.
- `withheld`: the poll gave every record of the payload back (a later page of the same listing
  could not be read, so the whole listing is read again next poll, from its old cursor).
- `run_id`, `ingested_at`: a backfill's lineage, stamped on every record (a poll's records
  carry no run id and were ingested when their payload was received); the replay simulator's
  answers carry theirs so, not in the body, so that a day's answer is the same bytes every run.
- `cut_short`: the body is only the head of an answer larger than a payload may be: no parser
  reads it (a feed's head may well parse; the poll read none of it).
- what an adapter adds for its own parser (the feed URL a redirected RSS feed was asked for).

A record's position is its index in the list the payload holds (a listing's children, a
chart's timestamps, a page's message blocks, an NDJSON body's lines), the same coordinate
the unparseable-record notes use (`parsing.note_unparseable`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pyarrow as pa

from sentinel_ray.records import RAW_ID, RAW_POS, RawPayload, SourceError
from sentinel_ray.schemas import DATA_DATASETS, Dataset
from sentinel_ray.sources.parsing import UnreadablePayload

T = TypeVar("T")
RAW_ID_TYPE = pa.string()
RAW_POS_TYPE = pa.int32()
_LINEAGE = (RAW_ID, RAW_POS)


# --- schemas ------------------------------------------------------------------------------------


def payload_schema(ds: Dataset) -> pa.Schema:
    """What a parser reads out of a payload: the dataset's record columns, lineage aside."""
    schema = ds.record_schema
    for name in _LINEAGE:
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
    return schema


def record_schema(ds: Dataset) -> pa.Schema:
    """What an adapter returns in FetchResult.records: the dataset's record columns plus
    `raw_id` and `raw_pos`, as the dataset declares them, or (until it does) at the end, a
    string and an int32."""
    schema = ds.record_schema
    for name, typ in ((RAW_ID, RAW_ID_TYPE), (RAW_POS, RAW_POS_TYPE)):
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ, nullable=True))
    return schema


def empty_records(ds: Dataset) -> pa.Table:
    return record_schema(ds).empty_table()


def concat_records(tables: Sequence[pa.Table], ds: Dataset) -> pa.Table:
    """Record tables of one dataset as one (an empty one when there are none)."""
    tables = [t for t in tables if t.num_rows] or [empty_records(ds)]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


# --- the lineage columns ----------------------------------------------------------------------


def positioned(table: pa.Table, positions: Sequence[int] | np.ndarray) -> pa.Table:
    """`table` (one row per record read from a payload) with each record's position in the payload."""
    return _set(table, RAW_POS, pa.array(np.asarray(positions, dtype=np.int32), RAW_POS_TYPE))


def with_raw(table: pa.Table, ds: Dataset, payload_id: str, positions: Sequence[int] | np.ndarray | None = None
             ) -> pa.Table:
    """`table` (`ds`'s payload columns) as records of payload `payload_id`: `raw_pos` from
    `positions` (None: the rows are the payload's records in order, 0, 1, 2, ...) or from the
    table's own `raw_pos`, and `raw_id` on every row; columns in `record_schema(ds)` order."""
    n = table.num_rows
    schema = record_schema(ds)
    if positions is not None:
        pos = pa.array(np.asarray(positions, dtype=np.int32), RAW_POS_TYPE)
    elif RAW_POS in table.column_names:
        pos = table.column(RAW_POS)
    else:
        pos = pa.array(np.arange(n, dtype=np.int32), RAW_POS_TYPE)
    lineage = {RAW_ID: pa.repeat(pa.scalar(payload_id, schema.field(RAW_ID).type), n),
               RAW_POS: pos.cast(schema.field(RAW_POS).type)}
    return pa.Table.from_arrays([lineage[f.name] if f.name in lineage else table.column(f.name) for f in schema],
                                schema=schema)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


# --- what a parser returns ----------------------------------------------------------------------


class ParsedPayload(dict[str, pa.Table]):
    """The records of one raw payload: dataset name -> table (`record_schema`, `raw_id` and
    `raw_pos` set), as the poll that received the payload emitted them; `unparseable` lists the
    records that could not be read, as (position, error)."""

    def __init__(self, tables: Mapping[str, pa.Table] = (), unparseable: Iterable[tuple[int, str]] = ()) -> None:
        super().__init__(tables)
        self.unparseable: list[tuple[int, str]] = list(unparseable)


def read_whole(payload: RawPayload, read: Callable[[RawPayload], T]) -> T:
    """`read(payload)`, the first step of a parser; UnreadablePayload (carrying the payload) when
    it raises a SourceError, or when the payload is only the head of a larger answer."""
    if "cut_short" in request_context(payload.request):
        raise UnreadablePayload(f"{request_url(payload.request)[:200]}: only the first {len(payload.body):,} bytes "
                                f"of the answer were kept (it was larger than a payload may be)", [payload])
    try:
        return read(payload)
    except SourceError as e:
        raise UnreadablePayload(str(e), [payload]) from None


def finish(payload: RawPayload, tables: Mapping[str, pa.Table],
           unparseable: Iterable[tuple[int, str]] = ()) -> ParsedPayload:
    """The records of `payload` as its poll emitted them, from `tables` (dataset -> every record
    read from the payload, `raw_pos` set): without the positions the request says the poll
    skipped, none when it withheld them, a backfill's `run_id` / `ingested_at` stamped when the
    request carries them, and `raw_id` on every row. The one last step of every parser."""
    context = request_context(payload.request)
    skip = _positions(context.get("skip", ""))
    withheld = "withheld" in context
    stamps = _stamps(context)
    out = {}
    for name, table in tables.items():
        ds = DATA_DATASETS[name]
        if withheld:
            table = table.slice(0, 0)
        elif skip:
            keep = ~np.isin(table.column(RAW_POS).to_numpy(zero_copy_only=False), np.fromiter(skip, np.int64))
            table = table.filter(pa.array(keep))
        for column, value in stamps.items():
            typ = payload_schema(ds).field(column).type
            table = _set(table, column, pa.repeat(pa.scalar(value, typ), table.num_rows))
        out[name] = with_raw(table, ds, payload.payload_id)
    return ParsedPayload(out, unparseable)


def _stamps(context: Mapping[str, str]) -> dict[str, Any]:
    stamps: dict[str, Any] = {}
    if "run_id" in context:
        stamps["run_id"] = context["run_id"]
    if "ingested_at" in context:
        stamps["ingested_at"] = dt.datetime.fromisoformat(context["ingested_at"])
    return stamps


# --- the request text ---------------------------------------------------------------------------


def request_url(request: str) -> str:
    """The request text without its context: what was asked of the service."""
    return request.split("#", 1)[0]


def request_context(request: str) -> dict[str, str]:
    """What the poll wrote after the `#` of a request text (see the module doc)."""
    _, _, fragment = request.partition("#")
    return dict(parse_qsl(fragment, keep_blank_values=True))


def request_with(request: str, **context: Any) -> str:
    """`request` with `context` added to (or replacing in) its fragment; None values are left out."""
    merged = {**request_context(request), **{k: _spell(v) for k, v in context.items() if v is not None}}
    return f"{request_url(request)}#{urlencode(merged, safe=',-:/')}" if merged else request_url(request)


def _spell(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def skipping(payload: RawPayload, positions: Iterable[int]) -> RawPayload:
    """`payload` with `positions` (and those it already skipped) noted as read but not emitted."""
    skip = set(positions)
    if not skip:
        return payload
    skip |= _positions(request_context(payload.request).get("skip", ""))
    return dataclasses.replace(payload, request=request_with(payload.request, skip=spell_positions(skip)))


def withholding(payload: RawPayload) -> RawPayload:
    """`payload` noted as having given none of its records: the poll read them again later."""
    return dataclasses.replace(payload, request=request_with(payload.request, withheld=1))


def cut_short(payload: RawPayload) -> RawPayload:
    """`payload` (the head of an answer too large to read) noted as such: no parser reads it."""
    return dataclasses.replace(payload, request=request_with(payload.request, cut_short=1))


def stamped(payload: RawPayload, *, run_id: str | None, ingested_at: dt.datetime) -> RawPayload:
    """`payload` with a backfill's lineage for its records."""
    return dataclasses.replace(payload, request=request_with(payload.request, run_id=run_id, ingested_at=ingested_at))


def spell_positions(positions: Iterable[int]) -> str:
    """Positions as ranges: {0, 1, 2, 5, 7, 8} -> "0-2,5,7-8"."""
    ordered = sorted(set(positions))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _positions(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
