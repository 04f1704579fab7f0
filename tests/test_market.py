"""market.py: the session arithmetic derived from its facts, and the time helpers."""
from __future__ import annotations

import datetime as dt

from sentinel_ray import market

UTC = dt.timezone.utc


def test_session_constants_follow_the_session_times() -> None:
    assert market.IST.utcoffset(None) == market.IST_OFFSET == dt.timedelta(hours=5, minutes=30)
    assert market.SESSION_BARS == 375  # 09:15 .. 15:29 IST
    day = dt.datetime(2024, 1, 2, tzinfo=UTC)
    opens = dt.datetime.combine(day.date(), market.SESSION_OPEN, market.IST)
    closes = dt.datetime.combine(day.date(), market.SESSION_CLOSE, market.IST)
    assert day + dt.timedelta(milliseconds=market.SESSION_OPEN_MS) == opens
    assert day + dt.timedelta(milliseconds=market.SESSION_CLOSE_MS) == closes


def test_as_utc_reads_a_naive_time_as_utc_and_converts_an_aware_one() -> None:
    naive = dt.datetime(2026, 10, 5, 5, 12)
    assert market.as_utc(naive) == dt.datetime(2026, 10, 5, 5, 12, tzinfo=UTC)
    ist = dt.datetime(2026, 10, 5, 10, 42, tzinfo=market.IST)
    converted = market.as_utc(ist)
    assert converted == ist and converted.tzinfo is UTC and converted.hour == 5


def test_format_ist_shows_the_analysts_clock() -> None:
    assert market.format_ist(dt.datetime(2026, 10, 5, 5, 12, tzinfo=UTC)) == "2026-10-05 10:42 IST"
    assert market.format_ist(dt.datetime(2026, 10, 5, 5, 12)) == "2026-10-05 10:42 IST"  # naive: UTC
    assert market.format_ist(dt.datetime(2026, 10, 5, 20, 0, tzinfo=UTC)) == "2026-10-06 01:30 IST"
    assert market.format_ist(None) == "-"
