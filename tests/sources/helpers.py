"""What the source adapter tests share: a sleep that only records, a fast HttpClient, polling helpers,
and the checks of a replay from the raw zone (`assert_replays`, `skipped`)."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from sentinel_ray.records import RAW_ID, RAW_POS, FetchResult, RawPayload
from sentinel_ray.schemas import DATA_DATASETS
from sentinel_ray.sources import parser_for
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import HttpClient, RetryPolicy
from sentinel_ray.sources.lineage import concat_records, request_context, request_url, request_with
from sentinel_ray.sources.parsing import UnreadablePayload
from tests.fakes.server import Reply

PAYLOADS = Path(__file__).resolve().parents[1] / "fakes" / "payloads"
UTC = dt.timezone.utc


class RecordingSleep:
    """Stands in for asyncio.sleep: records each wait, never waits, so retry tests stay fast."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def fast_client(source: str, sleep: RecordingSleep | None = None, *, timeout_s: float = 5.0, max_attempts: int = 3,
                base_delay_s: float = 1.0, seed: int = 1, **options: Any) -> HttpClient:
    """The real HttpClient with no rate limit to speak of, a recording sleep and a fixed jitter seed."""
    return HttpClient(source, rate_per_s=1000, burst=1000, sleep=sleep or RecordingSleep(), seed=seed,
                      timeout_s=timeout_s, retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=base_delay_s),
                      **options)


def payloads(source: str) -> Callable[[str], bytes]:
    """A reader of the hand-made fixtures in tests/fakes/payloads/<source>/."""
    folder = PAYLOADS / source

    def read(name: str) -> bytes:
        return (folder / name).read_bytes()

    return read


def json_reply(payload: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    """A 200 JSON answer: bytes as they are, or a dict serialised."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Reply(body=body, content_type="application/json", headers=headers or {})


def poll_chain(source: Source, n: int, cursor: dict | None = None,
               between: Callable[[int], Any] | None = None) -> list[FetchResult]:
    """n polls, each from the cursor the previous one returned; `between(i)` runs before poll i (i >= 1).
    The source is closed after the last."""
    async def run() -> list[FetchResult]:
        results, current = [], cursor
        try:
            for i in range(n):
                if i and between is not None:
                    between(i)
                results.append(await source.fetch(current))
                current = results[-1].next_cursor
            return results
        finally:
            await source.close()

    return asyncio.run(run())


def fetch_once(source: Source, cursor: dict | None = None) -> FetchResult:
    """One poll from `cursor`, then the source is closed."""
    return poll_chain(source, 1, cursor)[0]


def polls(source: Source, *cursors: dict | None) -> list[FetchResult]:
    """One poll from each given cursor in turn (not chained), then the source is closed."""
    async def run() -> list[FetchResult]:
        try:
            return [await source.fetch(c) for c in cursors]
        finally:
            await source.close()

    return asyncio.run(run())


def rows(result: FetchResult, dataset: str = "posts") -> list[dict[str, Any]]:
    return result.records[dataset].to_pylist()


# --- replay from the raw zone ------------------------------------------------------------------


def same_table(got: pa.Table, want: pa.Table) -> None:
    """Same schema, rows, order and values; NaN equals NaN, a null only a null (Table.equals has
    NaN != NaN, and chunking is no difference)."""
    assert got.schema == want.schema, f"{got.schema}\n!=\n{want.schema}"
    assert got.num_rows == want.num_rows, (got.num_rows, want.num_rows)
    for name in want.column_names:
        a, b = got.column(name).combine_chunks(), want.column(name).combine_chunks()
        assert a.is_null().equals(b.is_null()), f"{name}: nulls differ"
        if pa.types.is_floating(a.type):
            x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
            valid = ~np.asarray(a.is_null())
            assert np.array_equal(x[valid], y[valid], equal_nan=True), f"{name}: values differ"
        else:
            assert a.equals(b), f"{name}: values differ\n{a}\n{b}"


def assert_replays(source: str, result: FetchResult,
                   record_at: Callable[[RawPayload, int], Any] | None = None,
                   key: Callable[[dict[str, Any]], Any] | None = None) -> dict[str, int]:
    """What a replay from the raw zone would give: `parse_payload` of every payload the poll kept
    gives exactly the poll's records (same rows in the same order, same raw_id and raw_pos), the
    unreadable ones (meta["unreadable"]) raise, and every record it noted unparseable is one the
    parser lists. With `record_at(payload, position)` and `key(row)`, each row's raw_pos points
    at its own record: `record_at` finds what `key` finds in the row. Returns rows per dataset."""
    parse = parser_for(source)
    unreadable = {note["payload"] for note in result.meta.get("unreadable", [])}
    parsed: list[dict[str, pa.Table]] = []
    for index, payload in enumerate(result.raw):
        if index in unreadable:
            try:
                parse(payload)
            except UnreadablePayload:
                continue
            raise AssertionError(f"payload {index} was noted unreadable, and its parser reads it: {payload.request}")
        parsed.append(parse(payload))
    for name, table in result.records.items():
        same_table(concat_records([p[name] for p in parsed if name in p], DATA_DATASETS[name]), table)
    for note in result.meta.get("unparseable", []):
        listed = parse(result.raw[note["payload"]]).unparseable
        assert note["position"] in [position for position, _ in listed], note
    if record_at is not None and key is not None:
        by_id = {p.payload_id: p for i, p in enumerate(result.raw) if i not in unreadable}
        for table in result.records.values():
            for row in table.to_pylist():
                assert record_at(by_id[row[RAW_ID]], row[RAW_POS]) == key(row), row
    return {name: table.num_rows for name, table in result.records.items()}


def skipped(source: str, payload: RawPayload, dataset: str = "posts") -> list[dict[str, Any]]:
    """The records of `payload` its poll read and did not emit (its request's `#skip=`): the
    payload parsed as though the poll had emitted all it read, at the positions skipped."""
    context = request_context(payload.request)
    skip = context.pop("skip", "")
    everything = parser_for(source)(dataclasses.replace(payload, request=request_with(request_url(payload.request),
                                                                                      **context)))
    positions = {p for part in filter(None, skip.split(",")) for p in range(int(part.split("-")[0]),
                                                                            int(part.split("-")[-1]) + 1)}
    return [row for row in everything[dataset].to_pylist() if row[RAW_POS] in positions]
