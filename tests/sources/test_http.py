"""The shared HTTP client against a local fixture server: retries, Retry-After, auth, timeouts."""
from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import time

import pytest

from sentinel_ray.config import HttpSourceSettings, Settings
from sentinel_ray.sources.http import (AuthError, FetchError, HttpClient, HttpStatusError, Retry, RetryPolicy,
    TokenBucket, reset_wait_seconds, retry_after_seconds, with_retries)
from tests.fakes.server import FakeService, Reply
from tests.sources.helpers import RecordingSleep

NOW = 1_800_000_000.0  # the wall clock of the rate-limit window tests, epoch seconds
X_WINDOW = {"reset_header": "x-rate-limit-reset", "remaining_header": "x-rate-limit-remaining"}


def _client(**kw) -> tuple[HttpClient, RecordingSleep]:
    sleep = RecordingSleep()
    return HttpClient("test", rate_per_s=1000, burst=1000, sleep=sleep, seed=1, **kw), sleep


async def _get(client: HttpClient, url: str, n: int = 1, **kw):
    """The last of `n` GETs of `url`."""
    try:
        for _ in range(n):
            response = await client.get(url, **kw)
        return response
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


def test_auth_error_keeps_status_and_whole_body_out_of_its_message(fake_service) -> None:
    body = b'{"error": {"code": 403, "errors": [{"reason": "quotaExceeded"}], "message": "' + b"q" * 500 + b'"}}'
    fake_service.route("GET", "/x", Reply(403, body=body, content_type="application/json"))
    client, _ = _client()
    with pytest.raises(AuthError) as e:
        asyncio.run(_get(client, f"{fake_service.url}/x?key=SECRET"))
    assert e.value.status == 403 and e.value.body == body
    assert "SECRET" not in str(e.value) and "quotaExceeded" not in str(e.value) and len(str(e.value)) < 200


def test_other_4xx_fail_at_once(fake_service) -> None:
    body = b"nope " * 100
    fake_service.route("GET", "/x", Reply(404, body=body))
    client, _ = _client()
    with pytest.raises(HttpStatusError, match="HTTP 404") as e:
        asyncio.run(_get(client, f"{fake_service.url}/x?key=SECRET"))
    assert e.value.status == 404 and e.value.body == body  # whole, while the message quotes 200 bytes
    assert e.value.url == f"{fake_service.url}/x" and "SECRET" not in str(e.value) and len(str(e.value)) < 300
    assert len(fake_service.seen("/x")) == 1


def test_accepted_statuses_come_back_as_responses(fake_service) -> None:
    fake_service.route("GET", "/feed", Reply(304, headers={"ETag": '"v1"'}))
    client, sleep = _client()
    response = asyncio.run(_get(client, f"{fake_service.url}/feed", accept_statuses=frozenset({304})))
    assert response.status == 304 and response.body == b"" and sleep.calls == []
    assert response.headers["etag"] == '"v1"'  # header names in any case
    client, _ = _client()
    with pytest.raises(HttpStatusError, match="HTTP 304"):  # not accepted unless asked for
        asyncio.run(_get(client, f"{fake_service.url}/feed"))


def test_429_without_retry_after_waits_for_the_reset_header(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"x-rate-limit-reset": str(int(NOW) + 40)}), Reply(body=b"ok"))
    client, sleep = _client(reset_header="x-rate-limit-reset", clock=lambda: NOW)
    assert asyncio.run(_get(client, f"{fake_service.url}/x")).body == b"ok"
    assert sleep.calls == [41.0]  # until the reset, plus a second of margin (the header is whole seconds)


def test_retry_after_wins_over_the_reset_header(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"Retry-After": "3", "x-rate-limit-reset": str(int(NOW) + 40)}),
                       Reply(body=b"ok"))
    client, sleep = _client(reset_header="x-rate-limit-reset", clock=lambda: NOW)
    asyncio.run(_get(client, f"{fake_service.url}/x"))
    assert sleep.calls == [3.0]


def test_reset_header_is_ignored_unless_named_or_already_past(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"x-rate-limit-reset": str(int(NOW) + 40)}), Reply(body=b"ok"))
    client, sleep = _client(retry=RetryPolicy(base_delay_s=1.0), clock=lambda: NOW)
    asyncio.run(_get(client, f"{fake_service.url}/x"))
    assert len(sleep.calls) == 1 and sleep.calls[0] <= 1.0  # plain backoff
    fake_service.route("GET", "/y", Reply(429, headers={"x-rate-limit-reset": str(int(NOW) - 60)}), Reply(body=b"ok"))
    client, sleep = _client(retry=RetryPolicy(base_delay_s=1.0), reset_header="x-rate-limit-reset", clock=lambda: NOW)
    asyncio.run(_get(client, f"{fake_service.url}/y"))
    assert len(sleep.calls) == 1 and sleep.calls[0] <= 1.0  # a reset in the past: backoff too


def test_too_distant_reset_on_429_gives_up(fake_service) -> None:
    fake_service.route("GET", "/x", Reply(429, headers={"x-rate-limit-reset": str(int(NOW) + 900)}))
    client, sleep = _client(reset_header="x-rate-limit-reset", clock=lambda: NOW)
    with pytest.raises(FetchError, match="retry after 901s"):
        asyncio.run(_get(client, f"{fake_service.url}/x"))
    assert len(fake_service.seen("/x")) == 1 and sleep.calls == []


def test_used_up_window_waits_for_its_reset_before_the_next_request(fake_service) -> None:
    used_up = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 40)}
    fake_service.route("GET", "/x", Reply(body=b"1", headers=used_up),
                       Reply(body=b"2", headers={"x-rate-limit-remaining": "449"}), Reply(body=b"3"))
    client, sleep = _client(clock=lambda: NOW, **X_WINDOW)
    assert asyncio.run(_get(client, f"{fake_service.url}/x", n=3)).body == b"3"
    assert sleep.calls == [41.0]  # before the second request only


def test_used_up_window_too_far_from_its_reset_gives_up_before_asking(fake_service) -> None:
    used_up = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 900)}
    fake_service.route("GET", "/x", Reply(body=b"1", headers=used_up))
    client, sleep = _client(clock=lambda: NOW, **X_WINDOW)
    with pytest.raises(FetchError, match="rate limit window used up, it resets in 901s"):
        asyncio.run(_get(client, f"{fake_service.url}/x", n=2))
    assert len(fake_service.seen("/x")) == 1 and sleep.calls == []


def test_429_with_a_used_up_window_waits_once(fake_service) -> None:
    used_up = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 40)}
    fake_service.route("GET", "/x", Reply(429, headers=used_up), Reply(body=b"ok"))
    client, sleep = _client(clock=lambda: NOW, **X_WINDOW)
    assert asyncio.run(_get(client, f"{fake_service.url}/x")).body == b"ok"
    assert sleep.calls == [41.0]


def test_reset_wait_seconds() -> None:
    assert reset_wait_seconds(str(int(NOW) + 10), NOW) == 11.0
    assert reset_wait_seconds(str(int(NOW) - 10), NOW) == 0.0
    assert reset_wait_seconds("soon", NOW) is None and reset_wait_seconds(None, NOW) is None


def test_from_settings_takes_the_platform_settings() -> None:
    settings = HttpSourceSettings.of(Settings(http_timeout_s=7, http_max_attempts=2, http_user_agent="UA/1"))
    client = HttpClient.from_settings("src", settings, rate_per_s=0.5, burst=3, headers={"Accept": "text/xml"},
                                      reset_header="x-reset")
    assert (client.source, client.rate_per_s, client.burst, client.timeout_s) == ("src", 0.5, 3, 7)
    assert client.retry.max_attempts == 2 and client.reset_header == "x-reset"
    assert dict(client.headers) == {"User-Agent": "UA/1", "Accept": "text/xml"}


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


def test_with_retries_is_the_one_retry_loop() -> None:
    sleep = RecordingSleep()
    outcomes: list = [Retry("HTTP 503"), Retry("HTTP 429", wait=4.0), "done"]
    calls: list[int] = []

    async def attempt():
        calls.append(1)
        return outcomes.pop(0)

    async def run(what: str, attempt, attempts: int = 5):
        return await with_retries(what, attempt, retry=RetryPolicy(max_attempts=attempts, base_delay_s=1.0),
                                  bucket=TokenBucket(1000, 1000), sleep=sleep, rng=random.Random(1))

    assert asyncio.run(run("svc: /a", attempt)) == "done"
    assert len(calls) == 3 and len(sleep.calls) == 2 and sleep.calls[0] <= 1.0 and sleep.calls[1] == 4.0

    async def always_503():
        return Retry("HTTP 503")

    with pytest.raises(FetchError, match=r"^svc: /b failed after 2 attempts \(last: HTTP 503\)$"):
        asyncio.run(run("svc: /b", always_503, attempts=2))

    async def refused():
        raise AuthError("svc: HTTP 401")

    with pytest.raises(AuthError, match="HTTP 401"):  # what an attempt raises is not retried
        asyncio.run(run("svc: /c", refused))


def test_connection_errors_never_carry_query_secrets() -> None:
    import aiohttp

    from sentinel_ray.sources.http import _describe_error

    err = aiohttp.TooManyRedirects(request_info=None, history=(), status=302,
                                   message="redirects: https://x/api?part=a&key=SECRET123")
    assert "SECRET123" not in _describe_error(err)
    assert "SECRET123" not in _describe_error(OSError("GET https://x/search?q=t&api_key=SECRET123 failed"))


# --- the body bound: a body past max_body_bytes is not read to its end ---------------------------

NINE_MB = 9 * 1024 * 1024


class StreamingService(FakeService):
    """A fixture server whose routes are coroutines writing their answer as it goes (streamed bodies)."""

    def __init__(self, **routes) -> None:
        super().__init__()
        self.routes = {f"/{path}": handler for path, handler in routes.items()}
        self.asked: list[str] = []

    async def _handle(self, request):
        self.asked.append(request.path)
        return await self.routes[request.path](request)


def test_a_body_declared_too_large_is_refused_without_reading_it() -> None:
    from aiohttp import web

    from sentinel_ray.records import ErrorKind, classify
    from sentinel_ray.sources.http import TOO_LARGE_HEAD_BYTES, BodyTooLarge

    async def nine_megabytes_then_silence(request):
        # Content-Length says 9 MB; 1 MB comes, then nothing: a client reading to the end waits for its timeout
        response = web.StreamResponse(headers={"Content-Length": str(NINE_MB), "Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b"[" + b"1," * (512 * 1024))
        await asyncio.sleep(30)
        return response

    client, sleep = _client(timeout_s=10.0)
    started = time.monotonic()
    with StreamingService(big=nine_megabytes_then_silence) as service, \
            pytest.raises(BodyTooLarge, match="declares 9,437,184 bytes, more than the 8,388,608") as e:
        asyncio.run(_get(client, f"{service.url}/big?key=SECRET"))
    assert time.monotonic() - started < 5.0  # not the 10 s timeout: nothing past the head was waited for
    head = e.value.response.body
    assert 0 < len(head) <= TOO_LARGE_HEAD_BYTES and head.startswith(b"[1,1,")  # kept for the raw zone
    assert e.value.response.status == 200 and "SECRET" not in str(e.value)
    assert classify(e.value) is ErrorKind.TERMINAL and service.asked == ["/big"] and sleep.calls == []


def test_a_body_without_length_is_cut_at_the_bound() -> None:
    from aiohttp import web

    from sentinel_ray.sources.http import TOO_LARGE_HEAD_BYTES, BodyTooLarge

    written = []

    async def endless(request):
        # chunked and never-ending: only a client that stops at its bound ever returns
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"x" * (256 * 1024)
        while True:
            await response.write(chunk)
            written.append(len(chunk))

    with StreamingService(endless=endless) as service:
        client, _ = _client(timeout_s=20.0)
        started = time.monotonic()
        with pytest.raises(BodyTooLarge, match="ran past 8,388,608 bytes"):
            asyncio.run(_get(client, f"{service.url}/endless"))
        assert time.monotonic() - started < 10.0
        assert sum(written) >= 8 * 1024 * 1024  # the server had sent past the bound when the client stopped

        # with a smaller bound of the client's own: the head it keeps stays within TOO_LARGE_HEAD_BYTES
        client, _ = _client(timeout_s=20.0, max_body_bytes=1024 * 1024)
        with pytest.raises(BodyTooLarge, match="ran past 1,048,576 bytes") as e:
            asyncio.run(_get(client, f"{service.url}/endless"))
        assert len(e.value.response.body) == TOO_LARGE_HEAD_BYTES


def test_an_error_answer_with_a_huge_body_is_judged_by_its_status(fake_service) -> None:
    # a 503 is retried whatever its body; only its head is read (its reason), never 9 MB of it
    fake_service.route("GET", "/x", Reply(503, body=b"e" * NINE_MB), Reply(body=b"fine"))
    client, sleep = _client()
    assert asyncio.run(_get(client, f"{fake_service.url}/x")).body == b"fine"
    assert len(sleep.calls) == 1 and len(fake_service.seen("/x")) == 2
    fake_service.route("GET", "/y", Reply(404, body=b"n" * NINE_MB))
    client, _ = _client()
    with pytest.raises(HttpStatusError, match="HTTP 404") as e:
        asyncio.run(_get(client, f"{fake_service.url}/y"))
    assert len(e.value.body) <= 64 * 1024


def test_defaults_are_the_settings_defaults() -> None:
    # one place for each default (config.py): a client built without settings behaves like one built with them
    from sentinel_ray.config import SourceSettings

    defaults = SourceSettings()
    policy, client = RetryPolicy(), HttpClient("src")
    assert (policy.max_attempts, policy.max_retry_after_s, client.timeout_s) == (
        defaults.max_attempts, defaults.max_server_wait_s, defaults.timeout_s)
    built = HttpClient.from_settings("src", HttpSourceSettings(), rate_per_s=1.0)
    assert (built.retry, built.timeout_s) == (client.retry, client.timeout_s)
