"""Where each record's raw payload is kept: the lineage the writers of the raw zone stamp.

An adapter names the payload a record came from by its content (`RawPayload.payload_id`);
whoever keeps the payload in the lake's raw zone (a poller, a backfill's day worker, the
webhook) knows where it put it, and stamps that path on the records, relative to the lake
root (`raw/source=S/dataset=D/date=YYYY-MM-DD/<file>`), before they go anywhere. A stored
row's `raw_id` then opens its payload directly (`Lake.read_raw`), and `raw_pos` says which
record of it the row is. `trace` follows a stored row back: what `sentinel-ray lineage` and
`GET /api/lineage/{dataset}` answer.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import as_utc
from sentinel_ray.records import RAW_ID, RAW_POS, RawPayload
from sentinel_ray.schemas import DATA_DATASETS, Dataset, Kind
from sentinel_ray.sources import parser_for
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse


def raw_zone_id(lake: Lake, path: str) -> str:
    """A kept payload's path relative to the lake root: what rows carry as `raw_id`."""
    root = lake.root + "/"
    return path[len(root):] if path.startswith(root) else path


def stamp_raw_ids(records: Mapping[str, pa.Table], kept: Mapping[str, str]) -> dict[str, pa.Table]:
    """The records with `raw_id` replaced by where their payload is kept (`kept`: payload id ->
    raw-zone id). A record whose payload was not kept gets null, never an id that opens nothing."""
    if not kept:
        return dict(records)
    ids, places = pa.array(list(kept), pa.string()), pa.array(list(kept.values()), pa.string())
    out = {}
    for name, table in records.items():
        if RAW_ID in table.column_names:
            i = table.schema.get_field_index(RAW_ID)
            column = table.column(i)
            given = column.cast(pa.string()) if not pa.types.is_string(column.type) else column
            stamped = pc.take(places, pc.index_in(given, value_set=ids))
            table = table.set_column(i, table.schema.field(i), stamped.cast(table.schema.field(i).type))
        out[name] = table
    return out


def keep_payloads(lake: Lake, payloads: list[RawPayload], *, day, batch_key: str) -> dict[str, str]:
    """Each payload in the raw zone under `batch_key` (its index the sequence number); payload id
    -> raw-zone id. Re-keeping the same payloads rewrites the same files."""
    kept: dict[str, str] = {}
    for seq, payload in enumerate(payloads):
        kept[payload.payload_id] = raw_zone_id(lake, lake.write_raw(payload, day=day, batch_key=batch_key, seq=seq))
    return kept


# --- tracing a stored row back -------------------------------------------------------------

MAX_BODY_CHARS = 65_536  # of a payload's body in a trace; the whole payload is in the raw zone


class LineageError(ValueError):
    """The dataset or the key cannot name a row (a 4xx for the API)."""


class RowNotFound(LookupError):
    pass


def parse_key(ds: Dataset, key: Sequence[str]) -> dict[str, Any]:
    """The natural key of `ds` from its values as text, in `ds.natural_key` order (times as
    RFC 3339 with an offset, or a date: midnight UTC)."""
    if len(key) != len(ds.natural_key):
        raise LineageError(f"{ds.name} rows are keyed by {', '.join(ds.natural_key)}: give {len(ds.natural_key)} "
                           f"values, got {len(key)}")
    values: dict[str, Any] = {}
    for name, text in zip(ds.natural_key, key):
        kind = ds.field(name).kind
        if kind is Kind.TIMESTAMP:
            try:
                moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            except ValueError:
                raise LineageError(f"{name}: not an RFC 3339 time ({text[:40]!r})") from None
            if moment.tzinfo is None and len(text.strip()) > 10:
                raise LineageError(f"{name}: give the time with its offset (e.g. 2026-11-05T04:10:00Z)")
            try:
                values[name] = as_utc(moment)
            except OverflowError:
                raise LineageError(f"{name}: out of the supported range (years 1 to 9999 in UTC)") from None
        elif kind is Kind.INT:
            try:
                values[name] = int(text)
            except ValueError:
                raise LineageError(f"{name}: not an integer ({text[:40]!r})") from None
        else:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise LineageError(f"{name}: not valid Unicode (lone surrogate)") from None
            values[name] = text
    return values


def trace(dataset_name: str, key: Sequence[str], *, warehouse: Warehouse, lake: Lake) -> dict[str, Any]:
    """Where a stored row came from: the row, the raw payload it was read from (its request,
    arrival, body and the record at the row's position, read again by today's parser), the
    run that wrote it (parameters, the rules version it applied, status) and the row's
    quarantine history (every time a row with this key was rejected, and why)."""
    if dataset_name not in DATA_DATASETS:
        raise LineageError(f"unknown dataset {dataset_name[:40]!r}: one of {', '.join(DATA_DATASETS)}")
    ds = DATA_DATASETS[dataset_name]
    values = parse_key(ds, key)
    where = " AND ".join(f"`{name}` = {{k{i}:{_param_type(ds, name)}}}" for i, name in enumerate(ds.natural_key))
    rows = warehouse.query_rows(f"SELECT * FROM {{db}}.`{ds.name}` FINAL WHERE {where}",
                                {f"k{i}": values[name] for i, name in enumerate(ds.natural_key)})
    if not rows:
        raise RowNotFound(f"no {ds.name} row with {_describe(values)}")
    row = {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in rows[0].items()}
    runs = warehouse.query_rows(
        "SELECT run_id, pipeline, params, started_at, ended_at, status, rows_in, rows_valid, rows_quarantined, error "
        "FROM {db}.pipeline_runs FINAL WHERE run_id = {run:String}", {"run": row.get("run_id") or ""})
    run = None
    if runs:
        run = {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in runs[0].items()}
        try:
            run["params"] = json.loads(run.get("params") or "{}")
        except ValueError:
            pass
    return {"dataset": ds.name, "key": {k: v.isoformat() if isinstance(v, dt.datetime) else v
                                        for k, v in values.items()},
            "row": row, "raw": _raw_of(lake, row.get(RAW_ID), row.get(RAW_POS), ds), "run": run,
            "quarantine": _quarantine_history(lake, ds, values)}


def _param_type(ds: Dataset, name: str) -> str:
    kind = ds.field(name).kind
    return "DateTime64(3, 'UTC')" if kind is Kind.TIMESTAMP else "Int64" if kind is Kind.INT else "String"


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v.isoformat() if isinstance(v, dt.datetime) else v}" for k, v in values.items())


def _raw_of(lake: Lake, raw_id: str | None, raw_pos: int | None, ds: Dataset) -> dict[str, Any] | None:
    if not raw_id:
        return None  # stored before rows named their payload (migration 4)
    try:
        payload = lake.read_raw(raw_id)
    except (FileNotFoundError, OSError):
        return {"raw_id": raw_id, "raw_pos": raw_pos, "missing": True}
    text = payload.body.decode("utf-8", errors="replace")
    return {"raw_id": raw_id, "raw_pos": raw_pos, "source": payload.source, "received_at": as_utc(payload.received_at),
            "request": payload.request, "content_type": payload.content_type, "bytes": len(payload.body),
            "body": text[:MAX_BODY_CHARS], "body_truncated": len(text) > MAX_BODY_CHARS,
            "record": _record_at(payload, raw_pos, ds)}


def _record_at(payload: RawPayload, raw_pos: int | None, ds: Dataset) -> dict[str, Any] | None:
    """The record at `raw_pos` as today's parser reads the payload (None when it cannot)."""
    if raw_pos is None:
        return None
    if payload.request.startswith("POST /ingest/"):  # a pushed body: the records list itself
        try:
            return json.loads(payload.body)["records"][raw_pos]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    try:
        parsed = parser_for(payload.source)(payload)
    except Exception:  # noqa: BLE001 - a trace shows what it can; the body is there to read
        return None
    table = parsed.get(ds.name)
    if table is None or RAW_POS not in table.column_names:
        return None
    match = table.filter(pc.equal(table.column(RAW_POS), raw_pos))
    if match.num_rows == 0:
        return None
    record = match.slice(0, 1).to_pylist()[0]
    record.pop(RAW_ID, None)  # the adapter's content id; the trace names the kept file
    return {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in record.items()}


def _quarantine_history(lake: Lake, ds: Dataset, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every quarantined row with this key: one filtered scan of the dataset's quarantine files
    (a rejected row is filed under its batch's day, not its own: any day may hold one)."""
    schema = ds.quarantine_schema
    where = None
    for name, value in values.items():
        part = pc.field(name) == pa.scalar(value, schema.field(name).type)
        where = part if where is None else where & part
    table = lake.read("quarantine", ds.name, filter=where,
                      columns=["__filename", "reject_reason", "run_id", RAW_ID, RAW_POS, "ingested_at"])
    table = table.sort_by([("__filename", "ascending")])  # in file order, as listed (batch keys sort by time)
    return [{"batch_file": row["__filename"].rsplit("/", 1)[-1], "reject_reason": row["reject_reason"],
             "run_id": row["run_id"], "raw_id": row[RAW_ID], "raw_pos": row[RAW_POS],
             "ingested_at": as_utc(row["ingested_at"]) if row["ingested_at"] else None}
            for row in table.to_pylist()]
