"""The shared HTTP client against a local fixture server: retries, Retry-After, auth, timeouts."""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils

import pytest

from sentinel_ray.sources.http import (AuthError, FetchError, HttpClient, HttpStatusError, RetryPolicy, TokenBucket,
                                       retry_after_seconds)
from tests.fakes.server import Reply


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _client(**kw) -> tuple[HttpClient, RecordingSleep]:
    sleep = RecordingSleep()
    return HttpClient("test", rate_per_s=1000, burst=1000, sleep=sleep, seed=1, **kw), sleep


async def _get(client: HttpClient, url: str):
    try:
        return await client.get(url)
    finally:
        await client.close()


def test_429_with_retry_after_then_success(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"Retry-After": "7"}), Reply(json={"ok": 1}))
    client, sleep = _client()
    response = asyncio.run(_get(client, f"{fake_service.url}/x"))
    assert response.status == 200 and response.body == b'{"ok": 1}'
    assert sleep.calls == [7.0]
    assert len(fake_service.seen("/x")) == 2


def test_5xx_backs_off_with_jitter_then_succeeds(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(500), Reply(503), Reply(body=b"fine"))
    client, sleep = _client(retry=RetryPolicy(max_attempts=5, base_delay_s=1.0))
    assert asyncio.run(_get(client, f"{fake_service.url}/x")).body == b"fine"
    assert len(sleep.calls) == 2 and 0 <= sleep.calls[0] <= 1.0 and 0 <= sleep.calls[1] <= 2.0


def test_gives_up_after_max_attempts(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(502))
    client, _ = _client(retry=RetryPolicy(max_attempts=3))
    with pytest.raises(FetchError, match="failed after 3 attempts .last: HTTP 502"):
        asyncio.run(_get(client, f"{fake_service.url}/x?key=secret"))
    assert len(fake_service.seen("/x")) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(fake_service, status: int) -> None:
    fake_service.route("GET", "/x", Reply(status))
    client, sleep = _client()
    with pytest.raises(AuthError, match=f"HTTP {status}") as e:
        asyncio.run(_get(client, f"{fake_service.url}/x?api_key=SECRET"))
    assert "SECRET" not in str(e.value)
    assert len(fake_service.seen("/x")) == 1 and sleep.calls == []


def test_other_4xx_fail_at_once(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(404, body=b"nope"))
    client, _ = _client()
    with pytest.raises(HttpStatusError, match="HTTP 404"):
        asyncio.run(_get(client, f"{fake_service.url}/x"))


def test_timeout_is_retried(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(delay_s=2.0), Reply(body=b"late but fine"))
    client, sleep = _client(timeout_s=0.3)
    assert asyncio.run(_get(client, f"{fake_service.url}/x")).body == b"late but fine"
    assert len(sleep.calls) == 1


def test_too_long_retry_after_gives_up(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"Retry-After": "3600"}))
    client, _ = _client()
    with pytest.raises(FetchError, match="retry after 3600s"):
        asyncio.run(_get(client, f"{fake_service.url}/x"))


def test_retry_after_http_date() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(later, now) == 30.0
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_token_bucket_spaces_requests() -> None:
    clock = [0.0]
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    async def take(n: int) -> None:
        bucket = TokenBucket(rate=2.0, burst=2, clock=lambda: clock[0])
        for _ in range(n):
            await bucket.acquire(fake_sleep)

    asyncio.run(take(5))
    assert waits == [0.5, 0.5, 0.5]  # 2 from the burst, then one every 1/rate
