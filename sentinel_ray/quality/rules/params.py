"""Parameter types of rule specs: durations, clock times, UTC offsets and weekdays as YAML writes them."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


def _parse_duration(value: Any) -> Any:
    """'90s', '5m', '2h', '30d', '1w' or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*", value)
        if m:
            unit = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
            return timedelta(**{unit[m.group(2)]: float(m.group(1))})
        raise ValueError(f"duration {value!r}: write e.g. '90s', '5m', '2h' or '30d'")
    return value


def _parse_clock(value: Any) -> Any:
    # YAML 1.1 reads an unquoted 9:15 as the base-60 integer 555, i.e. minutes: take it as such.
    if isinstance(value, int) and not isinstance(value, bool):
        return time(value // 60, value % 60)
    return value


def _parse_offset(value: Any) -> Any:
    if isinstance(value, str):
        m = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", value.strip())
        if not m:
            raise ValueError(f"utc_offset {value!r}: write e.g. '+05:30'")
        sign = -1 if m.group(1) == "-" else 1
        return timedelta(minutes=sign * (int(m.group(2)) * 60 + int(m.group(3))))
    return _parse_duration(value)


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_weekday(value: Any) -> Any:
    if isinstance(value, str) and value[:3].lower() in _WEEKDAYS:
        return _WEEKDAYS.index(value[:3].lower())
    return value


def _parse_moment(value: Any) -> Any:
    """A fixed moment: YAML's `1990-01-01` is a date (its midnight UTC), or an ISO date/time
    string; a naive time is UTC, the platform's convention."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"moment {value!r}: write an ISO date or time, e.g. 1990-01-01") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(), timezone.utc)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
Clock = Annotated[time, BeforeValidator(_parse_clock)]
Weekday = Annotated[int, BeforeValidator(_parse_weekday), Field(ge=0, le=6)]
UtcOffset = Annotated[timedelta, BeforeValidator(_parse_offset)]
Moment = Annotated[datetime, BeforeValidator(_parse_moment)]
