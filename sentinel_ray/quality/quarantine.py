"""Reading quarantined rows: which files hold them, and the rows themselves.

Re-running them after a rule change is the pipeline's job (`pipeline/quarantine_replay.py`).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.compute as pc

from sentinel_ray.records import Reason
from sentinel_ray.storage.lake import Lake, partition_day

# Never re-run: a duplicate's original is already curated; an unparseable row has no values to re-validate
# (its run_id points at the raw payload to re-parse instead).
NEVER_REPLAYED = (Reason.DUPLICATE.value, Reason.UNPARSEABLE.value)


def quarantine_files(lake: Lake, dataset: str, *, start: dt.date | None = None,
                     end: dt.date | None = None) -> list[str]:
    files = []
    for path in lake.list_files("quarantine", dataset):
        day = partition_day(path)
        if path.endswith(".parquet") and (start is None or (day and day >= start)) and (
                end is None or (day and day <= end)):
            files.append(path)
    return files


def list_quarantined(lake: Lake, dataset: str, *, rule: str | None = None, start: dt.date | None = None,
                     end: dt.date | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Quarantined rows, newest batch first, with the day of the batch that rejected them."""
    out: list[dict[str, Any]] = []
    for path in reversed(quarantine_files(lake, dataset, start=start, end=end)):
        table = lake.read_file(path)
        if rule is not None:
            table = table.filter(pc.equal(table.column("reject_reason"), rule))
        for row in table.slice(0, limit - len(out)).to_pylist():
            out.append({**row, "batch_date": partition_day(path)})
        if len(out) >= limit:
            break
    return out
