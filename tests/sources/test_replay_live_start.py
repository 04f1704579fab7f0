"""The day the live replay starts on by default: the latest session opened by now, so `up` on a
weekend, a holiday or before the open still plays a session (and backfills the days before it)."""
from __future__ import annotations

import datetime as dt

import pytest

from sentinel_ray.sources.replay.live import default_live_start

UTC = dt.timezone.utc


@pytest.mark.parametrize(("now", "day"), [
    (dt.datetime(2026, 12, 3, 3, 45, tzinfo=UTC), dt.date(2026, 12, 3)),  # Thursday 09:15 IST: its session opened
    (dt.datetime(2026, 12, 3, 23, 0, tzinfo=UTC), dt.date(2026, 12, 3)),  # after the close, the same day
    (dt.datetime(2026, 12, 3, 3, 44, tzinfo=UTC), dt.date(2026, 12, 2)),  # a minute before the open
    (dt.datetime(2026, 12, 6, 12, 0, tzinfo=UTC), dt.date(2026, 12, 4)),  # Sunday: Friday's
    (dt.datetime(2026, 12, 7, 2, 0, tzinfo=UTC), dt.date(2026, 12, 4)),  # Monday before the open: still Friday's
    (dt.datetime(2026, 10, 2, 6, 0, tzinfo=UTC), dt.date(2026, 10, 1)),  # Gandhi Jayanti, an NSE holiday
])
def test_the_live_replay_starts_on_the_latest_session_opened_by_now(now: dt.datetime, day: dt.date) -> None:
    assert default_live_start(now) == day
