"""Errors that say whether a retry helps: the hierarchy, and `classify` over foreign classes."""
from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest

from sentinel_ray.records import (ErrorKind, MissingCredentials, RedisUnavailable, SentinelError, SourceError,
                                  TerminalError, TransientError, WarehouseError, WarehouseRefused,
                                  WarehouseUnavailable, classify, is_transient)

T, X, U = ErrorKind.TRANSIENT, ErrorKind.TERMINAL, ErrorKind.UNKNOWN


def test_the_platforms_errors_say_it_by_their_class() -> None:
    assert issubclass(TransientError, SentinelError) and issubclass(TerminalError, SentinelError)
    for cls in (WarehouseUnavailable, WarehouseRefused):
        assert issubclass(cls, WarehouseError)  # `except WarehouseError` still catches both
    cases = {WarehouseUnavailable("suspended"): T, RedisUnavailable("down"): T, WarehouseRefused("bad"): X,
             MissingCredentials("SENTINEL_X"): X, SourceError("not JSON"): X}
    assert {type(e).__name__: classify(e) for e in cases} == {type(e).__name__: k for e, k in cases.items()}
    assert classify(WarehouseError("?")) is U  # no cause known


def test_unknown_errors_are_retried_and_causes_are_followed() -> None:
    assert classify(RuntimeError("boom")) is U and is_transient(RuntimeError("boom"))
    assert classify(KeyError("x")) is U
    for cause, kind in ((ConnectionResetError(), T), (ValueError("bad"), X)):
        try:
            try:
                raise cause
            except Exception as e:
                raise WarehouseError("wrapped") from e
        except WarehouseError as wrapped:
            assert classify(wrapped) is kind


def test_builtins_and_pyarrow() -> None:
    cases = {
        ConnectionRefusedError(): T, ConnectionResetError(): T, TimeoutError(): T, asyncio.TimeoutError(): T,
        OSError("disk full"): T, pa.ArrowIOError("s3 down"): T,
        ValueError(): X, TypeError(): X, MemoryError(): X, UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"): X,
        pa.ArrowInvalid("bad ipc"): X, pa.ArrowTypeError("cast"): X, pa.ArrowNotImplementedError("type"): X,
        pa.lib.ArrowCapacityError("too big"): X,
    }
    assert [classify(e) for e in cases] == list(cases.values())
    assert not is_transient(pa.ArrowInvalid("bad")) and is_transient(OSError())


def test_redis() -> None:
    import redis.exceptions as r

    cases = {r.ConnectionError(): T, r.TimeoutError(): T, r.BusyLoadingError(): T, r.ReadOnlyError(): T,
             r.TryAgainError(): T, r.OutOfMemoryError(): T, r.AuthenticationError(): X, r.AuthorizationError(): X,
             r.NoPermissionError(): X, r.DataError(): X, r.ResponseError("ERR odd"): U}
    assert [classify(e) for e in cases] == list(cases.values())


def test_clickhouse_connect() -> None:
    import clickhouse_connect.driver.exceptions as ch

    cases = {
        ch.OperationalError("connection refused"): T, ch.StreamFailureError("broken"): T,
        ch.DatabaseError("Code: 469. DB::Exception: Constraint violated", code=469): X,
        ch.DatabaseError("Code: 60. DB::Exception: Unknown table"): X,  # code read from the message
        ch.ProgrammingError("syntax"): X, ch.DataError("out of range"): X, ch.InterfaceError("driver"): X,
        ch.DatabaseError("Code: 252. Too many parts"): T, ch.DatabaseError("timeout", code=159): T,
        ch.DatabaseError("Code: 241. Memory limit exceeded"): U,
    }
    assert [classify(e) for e in cases] == list(cases.values())


def test_http() -> None:
    import aiohttp
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    from sentinel_ray.sources.http import AuthError, FetchError, HttpStatusError

    info = aiohttp.RequestInfo(URL("http://x/"), "GET", CIMultiDictProxy(CIMultiDict()), URL("http://x/"))
    cases = {
        FetchError("svc: /a failed after 3 attempts (last: HTTP 503)"): T, AuthError("HTTP 401", status=401): X,
        AuthError("HTTP 403", status=403): X, HttpStatusError(404, "/a", b"no"): X, HttpStatusError(503, "/a", b""): T,
        aiohttp.ServerDisconnectedError(): T, aiohttp.ServerTimeoutError(): T, aiohttp.ClientPayloadError(): T,
        aiohttp.ClientResponseError(info, (), status=503): T, aiohttp.ClientResponseError(info, (), status=429): T,
        aiohttp.ClientResponseError(info, (), status=400): X, aiohttp.InvalidURL("::"): X,
    }
    assert [classify(e) for e in cases] == list(cases.values())


def test_ray_errors_are_classified_by_what_the_remote_call_raised() -> None:
    import ray.exceptions as rx

    for cause, kind in ((WarehouseRefused("bad"), X), (ConnectionError("down"), T), (RuntimeError("?"), U)):
        wrapped = rx.RayTaskError("call", "traceback", cause)
        assert classify(wrapped) is kind and classify(wrapped.as_instanceof_cause()) is kind
    assert classify(rx.RayActorError()) is T


@pytest.mark.parametrize("raised, mapped", [
    ("OperationalError", WarehouseUnavailable), ("DatabaseError", WarehouseRefused), ("RuntimeError", WarehouseError)])
def test_warehouse_driver_errors_are_mapped_with_the_original_as_cause(raised: str, mapped: type) -> None:
    import clickhouse_connect.driver.exceptions as ch

    from sentinel_ray.storage.warehouse import mapped_errors

    original = getattr(ch, raised, None) or RuntimeError
    with pytest.raises(WarehouseError) as info:
        with mapped_errors("insert into prices"):
            raise original("Code: 469. refused")
    assert type(info.value) is mapped and type(info.value.__cause__) is original
    assert str(info.value).startswith(f"insert into prices: {original.__name__}: Code: 469")
