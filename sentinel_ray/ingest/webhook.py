"""Webhook intake: records pushed over HTTP join the stream the pollers feed.

The HTTP layer checks the request (token, size); here the body is parsed, the records are
checked against the dataset's intake model, stamped with their source and arrival time
and published as one stream entry, so the pipeline handles them exactly like a poll's.

What cannot be stored at all is refused here, with a message naming the record and field
(`IntakeError`): the wrong shape or type, NaN/Infinity, integers beyond int64, times that
do not exist in UTC (year 0, year 10000), text that is not valid Unicode (lone surrogates).
Implausible but storable values (year 1, negative prices, empty text) are the pipeline's
to quarantine with a reason, not refused here. No message echoes a value it refuses.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
from pydantic import ConfigDict, TypeAdapter, ValidationError, field_validator

from sentinel_ray.ingest.lineage import raw_zone_id
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.records import RAW_ID, RAW_POS, RawPayload, utc_now
from sentinel_ray.schemas import DATA_DATASETS, Kind
from sentinel_ray.storage.lake import Lake

# One request becomes one stream entry; this bounds the entry (the body size is the HTTP layer's).
MAX_RECORDS = 10_000
MAX_SOURCE_CHARS = 64
MAX_LISTED_ERRORS = 10  # an error message names this many bad values, then counts the rest


class IntakeError(ValueError):
    """A body the webhook refuses; the message is safe to send back (no input echoed)."""

    status_code = 422


@dataclass(frozen=True)
class Intake:
    dataset: str
    accepted: int
    entry_id: str  # the Redis stream entry that carries the records


def parse_body(raw: bytes) -> tuple[str, list[Any]]:
    """The `source` and `records` of a JSON body `{"source": "...", "records": [{...}, ...]}`."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, ints of > 4300 digits, nested too deep
        raise IntakeError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise IntakeError("body must be a JSON object: {\"source\": \"...\", \"records\": [{...}]}")
    source, records = body.get("source", "webhook"), body.get("records")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise IntakeError(f"'source' must be a non-empty string of at most {MAX_SOURCE_CHARS} characters")
    if not isinstance(records, list) or not records:
        raise IntakeError("'records' must be a non-empty list of objects")
    if len(records) > MAX_RECORDS:
        raise IntakeError(f"at most {MAX_RECORDS} records per request, got {len(records)}")
    return source.strip(), records


def records_table(dataset: str, source: str, records: list[Any], received_at: dt.datetime) -> pa.Table:
    """The records as one table of the dataset's record schema, lineage columns set.

    Raises IntakeError naming each bad record and field (`records[3].text: ...`)."""
    ds = DATA_DATASETS[dataset]
    if not _is_unicode(source):
        raise IntakeError("source: not valid Unicode (lone surrogate)")
    adapter = _intake_adapter(dataset)
    try:
        rows = adapter.dump_python(adapter.validate_python(records))
    except ValidationError as e:
        raise IntakeError(_summary([f"{_where(err['loc'])}: {_message(err)}" for err in e.errors()])) from None
    try:
        table = pa.Table.from_pylist(rows, schema=ds.record_schema)  # lineage columns come out null
    except UnicodeEncodeError:  # Arrow stores UTF-8: find the lone surrogates only when there are some
        raise IntakeError(_summary(_lone_surrogates(rows, ds.record_schema))) from None
    for name, value in (("source", source), ("ingested_at", received_at)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.repeat(pa.scalar(value, field.type), table.num_rows))
    return table


def publish_records(streams: StreamStore, dataset: str, source: str, records: list[Any], *,
                    body: bytes | None = None, lake: Lake | None = None) -> Intake:
    """Validate `records` and append them to `dataset`'s stream as one entry (no cursor: a push has none).

    With a lake, the request `body` is kept first in the raw zone like a polled payload (named
    by its content, under the day it arrived), and each row names it (`raw_id`) and its index
    in `records` (`raw_pos`): a pushed row traces back to the request that brought it."""
    received_at = utc_now()
    table = records_table(dataset, source, records, received_at)
    if lake is not None and body is not None:
        payload = RawPayload(source, dataset, received_at, body, "application/json", f"POST /ingest/{dataset}")
        digest = hashlib.sha256(body).hexdigest()[:20]
        path = lake.write_raw(payload, day=received_at.date(), batch_key=f"webhook-{digest}")
        for name, column in ((RAW_ID, pa.repeat(pa.scalar(raw_zone_id(lake, path)), table.num_rows)),
                             (RAW_POS, pa.array(range(table.num_rows), pa.int64()))):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, table.schema.field(index), column.cast(table.schema.field(index).type))
    [entry_id] = streams.publish(source, {dataset: table}, update_cursor=False)
    return Intake(dataset=dataset, accepted=table.num_rows, entry_id=entry_id)


# -- checks -----------------------------------------------------------------------------
def _in_utc(cls: type, value: dt.datetime | None) -> dt.datetime | None:
    """Naive means UTC (as Arrow reads it); an aware time must exist in UTC (not year 0 or 10000)."""
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("out of the supported range (years 1 to 9999 in UTC)") from None


@cache
def _intake_adapter(dataset: str) -> TypeAdapter:
    """The dataset's intake model, refusing NaN/Infinity and times beyond UTC's range, for a list of records."""
    base = DATA_DATASETS[dataset].intake_model
    times = [f.name for f in DATA_DATASETS[dataset].fields if f.kind is Kind.TIMESTAMP and f.name in base.model_fields]
    namespace: dict[str, Any] = {"__module__": __name__, "model_config": ConfigDict(allow_inf_nan=False)}
    if times:
        namespace["utc_times"] = field_validator(*times)(_in_utc)
    return TypeAdapter(list[type(base.__name__, (base,), namespace)])  # type: ignore[misc]


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogates(rows: list[dict[str, Any]], schema: pa.Schema) -> list[str]:
    text_columns = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_list(f.type)]
    bad = []
    for i, row in enumerate(rows):
        for name in text_columns:
            value = row.get(name)
            if any(isinstance(s, str) and not _is_unicode(s) for s in (value if isinstance(value, list) else [value])):
                bad.append(f"records[{i}].{name}: not valid Unicode (lone surrogate)")
    return bad or ["records: not valid Unicode (lone surrogate)"]


# -- messages ---------------------------------------------------------------------------
def _where(loc: tuple[int | str, ...]) -> str:
    """`records[3].text`, `records[3].tickers[0]`; a key that is no identifier is quoted, escaped and cut."""
    out = "records"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and len(part) <= 64:
            out += f".{part}"
        else:
            out += f"[{json.dumps(part[:64])}]"  # ASCII: lone surrogates come out as \ud800
    return out


def _message(error: Any) -> str:
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if error["type"] == "string_unicode":  # pydantic reads a record's keys so: a key is a lone surrogate
        return "a field name is not valid Unicode (lone surrogate)"
    return str(error["msg"]).removeprefix("Value error, ")[:200]


def _summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED_ERRORS])
    more = len(problems) - MAX_LISTED_ERRORS
    return f"{shown}; and {more} more" if more > 0 else shown
