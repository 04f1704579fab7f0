"""Facts of the Indian equity market, written once.

NSE and BSE share one time zone (IST, UTC+05:30, no daylight saving), one cash-market
session (09:15-15:30 IST) and one trading calendar. Yahoo Finance spells the exchange of
a listing as a ticker suffix (`.NS`, `.BO`). Everything that needs one of these facts
imports it from here, and so does everything that turns a moment into the market's day or
clock (`ist_date`, `ist_dates`, `format_ist`) or a naive warehouse time into an aware one
(`as_utc`).
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

EXCHANGES: tuple[str, ...] = ("NSE", "BSE")

IST_OFFSET = dt.timedelta(hours=5, minutes=30)
IST = dt.timezone(IST_OFFSET, "IST")
EXCHANGE_TZ = "Asia/Kolkata"  # the IANA name, for ClickHouse SQL and yfinance

SESSION_OPEN = dt.time(9, 15)  # IST
SESSION_CLOSE = dt.time(15, 30)  # IST; the last 1m bar opens at 15:29
# A daily bar (stamped 00:00 IST) is final at 16:00 IST: close 15:30, post-close session to 16:00.
DAILY_BAR_FINAL_AFTER = dt.timedelta(hours=16)
TRADING_WEEKDAYS: tuple[int, ...] = (0, 1, 2, 3, 4)

MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
# 09:15 IST as ms after 00:00 UTC of the same date (IST is ahead of UTC).
SESSION_OPEN_MS = ((SESSION_OPEN.hour * 60 + SESSION_OPEN.minute) * 60 - int(IST_OFFSET.total_seconds())) * 1000
# 1m bars of a session: 375, opening 09:15 .. 15:29 IST
SESSION_BARS = (SESSION_CLOSE.hour * 60 + SESSION_CLOSE.minute) - (SESSION_OPEN.hour * 60 + SESSION_OPEN.minute)
SESSION_CLOSE_MS = SESSION_OPEN_MS + SESSION_BARS * MS_PER_MIN

# Yahoo Finance's listing suffix of each exchange, and the way back.
YAHOO_SUFFIX: dict[str, str] = {"NSE": ".NS", "BSE": ".BO"}
SUFFIX_EXCHANGE: dict[str, str] = {suffix: exchange for exchange, suffix in YAHOO_SUFFIX.items()}

# NSE cash-market trading holidays that fall on weekdays. Only dates published in the
# NSE holiday circulars are listed; 2026 has only its fixed-date holidays because the
# lunar-calendar ones were not certain when this was written. An unlisted holiday just
# counts as a trading day.
NSE_HOLIDAYS: frozenset[dt.date] = frozenset(
    dt.date.fromisoformat(d)
    for d in (
        # 2024
        "2024-01-22", "2024-01-26", "2024-03-08", "2024-03-25", "2024-03-29", "2024-04-11",
        "2024-04-17", "2024-05-01", "2024-05-20", "2024-06-17", "2024-07-17", "2024-08-15",
        "2024-10-02", "2024-11-01", "2024-11-15", "2024-11-20", "2024-12-25",
        # 2025
        "2025-02-26", "2025-03-14", "2025-03-31", "2025-04-10", "2025-04-14", "2025-04-18",
        "2025-05-01", "2025-08-15", "2025-08-27", "2025-10-02", "2025-10-21", "2025-10-22",
        "2025-11-05", "2025-12-25",
        # 2026 (fixed-date only)
        "2026-01-26", "2026-05-01", "2026-10-02", "2026-12-25",
    )
)


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() in TRADING_WEEKDAYS and day not in NSE_HOLIDAYS


def next_trading_day(day: dt.date) -> dt.date:
    nxt = day + dt.timedelta(days=1)
    while not is_trading_day(nxt):
        nxt += dt.timedelta(days=1)
    return nxt


def as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware UTC datetime. A naive one is taken to be UTC already: the warehouse stores UTC
    and hands it back without saying so, and the API reads a naive query time as UTC."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def format_ist(moment: dt.datetime | None) -> str:
    """A time as analysts read it: '2026-10-05 10:42 IST' ('-' for none; naive means UTC)."""
    if moment is None:
        return "-"
    return f"{as_utc(moment).astimezone(IST):%Y-%m-%d %H:%M} IST"


def ist_date(moment: dt.datetime) -> dt.date:
    """The IST calendar date of an aware moment."""
    return moment.astimezone(IST).date()


def ist_dates(ts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The IST calendar date of each timestamp of an Arrow column (UTC instants)."""
    return pc.cast(pc.add(ts, pa.scalar(IST_OFFSET)), pa.date32())


def ist_midnight_utc(day: dt.date) -> dt.datetime:
    """00:00 IST of `day`, in UTC: the `ts` daily bars of that session are stamped with."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=IST).astimezone(dt.timezone.utc)


def parse_ist(text: str, fmt: str) -> dt.datetime:
    """An IST wall-clock string (NSE and BSE print no offset) as an aware UTC datetime."""
    return dt.datetime.strptime(text.strip(), fmt).replace(tzinfo=IST).astimezone(dt.timezone.utc)


def split_suffix(symbol: str) -> tuple[str, str | None]:
    """`RELIANCE.NS` -> ("RELIANCE", "NSE"); a symbol without a known suffix -> (symbol, None)."""
    base, dot, suffix = symbol.rpartition(".")
    exchange = SUFFIX_EXCHANGE.get(f".{suffix}") if dot and base else None
    return (base, exchange) if exchange else (symbol, None)
