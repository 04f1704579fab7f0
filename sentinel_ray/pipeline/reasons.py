"""Why a row was rejected. One code per rejected row: the first failing rule in this order."""
from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    MISSING_FIELD = "missing_field"  # a required column is absent or null
    BAD_TYPE = "bad_type"  # a value could not be read as its column's type
    UNKNOWN_EXCHANGE = "unknown_exchange"  # exchange is not NSE or BSE
    UNKNOWN_TICKER = "unknown_ticker"  # ticker is not in the shipped symbol list
    NON_POSITIVE_PRICE = "non_positive_price"  # open/high/low/close <= 0
    NEGATIVE_VOLUME = "negative_volume"
    OHLC_INCONSISTENT = "ohlc_inconsistent"  # not low <= open, close <= high
    FUTURE_TIMESTAMP = "future_timestamp"  # ts later than the validation clock (+ small skew)
    OUTSIDE_SESSION = "outside_session"  # intraday bar outside 09:15-15:30 IST or not a trading day
    TEXT_LENGTH = "text_length"  # post text shorter than 5 or longer than 10000 characters (after trim)
    DUPLICATE = "duplicate"  # same natural key as an earlier row in the batch


REASON_ORDER: tuple[Reason, ...] = tuple(Reason)
