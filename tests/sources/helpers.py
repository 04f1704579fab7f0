"""What the source adapter tests share: a sleep that only records, a fast HttpClient, polling helpers."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

from sentinel_ray.records import FetchResult
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import HttpClient, RetryPolicy
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
