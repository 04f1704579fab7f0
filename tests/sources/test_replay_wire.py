"""The replay's NDJSON bodies: the column-wise encoder spells exactly what pandas' to_json did."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from sentinel_ray.records import RAW_ID, RAW_POS
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.sources.replay.wire import _to_ndjson_pandas, to_ndjson

NOW = dt.datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("day", [dt.date(2026, 11, 5), dt.date(2026, 11, 7), dt.date(2026, 11, 9)])
def test_replay_bodies_are_byte_identical_to_pandas(day: dt.date) -> None:
    result = ReplaySource(bad_rate=0.05).generate_day(day, run_id='run/"x"', ingested_at=NOW)
    assert [p.dataset for p in result.raw] == ["prices", "posts", "filings"]
    for payload in result.raw:
        table = result.records[payload.dataset].drop_columns([RAW_ID, RAW_POS])
        # the platform's lineage is no part of the service's answer (the request text carries the run's)
        answer = table.drop_columns(["run_id", "ingested_at"])
        assert payload.body == (_to_ndjson_pandas(answer) if answer.num_rows else b"")
        for part in (table.slice(3, 200), table.slice(0, 1)):
            if part.num_rows:  # a day's filings may be fewer than 4
                assert to_ndjson(part) == _to_ndjson_pandas(part)
        assert to_ndjson(table.slice(0, 0)) == b""


def test_odd_values_spell_like_pandas_or_take_its_path() -> None:
    rng = np.random.default_rng(7)
    floats = np.concatenate([np.round(rng.uniform(0, 900_000, 3000), 2), rng.uniform(0, 10, 300),
                             [0.0, -0.0, 1e-7, np.nan, 2.5e16, 524287.99, 524288.01, 1546.0]])
    for chunk in np.array_split(floats, 20):
        n = len(chunk)
        table = pa.table({
            "x": pa.array(chunk),
            "i": pa.array([None if j % 7 == 0 else j * 1001 for j in range(n)], pa.int64()),
            "s": pa.array([None if j % 5 == 0 else ["a/b", '"q"\\', "é\n🚀", "\x01\u2028"][j % 4] for j in range(n)]),
            "l": pa.array([None if j % 3 == 0 else ["X/Y", None][: j % 2 + 1] for j in range(n)], pa.list_(pa.string())),
            "t": pa.array([1_790_000_000_000 + j * 61_001 for j in range(n)], pa.timestamp("ms", tz="UTC")),
        })
        assert to_ndjson(table) == _to_ndjson_pandas(table)
