"""Webhook intake: records pushed over HTTP join the stream the pollers feed.

The HTTP layer checks the request (token, body shape); here the records are checked
against the dataset's intake model, stamped with their source and arrival time and
published as one stream entry, so the pipeline handles them exactly like a poll's:
bad values are quarantined there with a reason, not refused here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import DATA_DATASETS

# One request becomes one stream entry; this bounds the entry (and the request body).
MAX_RECORDS = 10_000


@dataclass(frozen=True)
class Intake:
    dataset: str
    accepted: int
    entry_id: str  # the Redis stream entry that carries the records


def records_table(dataset: str, source: str, records: list[Any], received_at: dt.datetime) -> pa.Table:
    """The records as one table of the dataset's record schema, lineage columns set.

    Raises pydantic.ValidationError for a record of the wrong shape or type."""
    ds = DATA_DATASETS[dataset]
    rows = [ds.intake_model.model_validate(r).model_dump() for r in records]
    table = pa.Table.from_pylist(rows, schema=ds.record_schema)  # lineage columns come out null
    for name, value in (("source", source), ("ingested_at", received_at)):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.repeat(pa.scalar(value, field.type), table.num_rows))
    return table


def publish_records(streams: StreamStore, dataset: str, source: str, records: list[Any]) -> Intake:
    """Validate `records` and append them to `dataset`'s stream as one entry (no cursor: a push has none)."""
    table = records_table(dataset, source, records, utc_now())
    [entry_id] = streams.publish(source, {dataset: table}, update_cursor=False)
    return Intake(dataset=dataset, accepted=table.num_rows, entry_id=entry_id)
