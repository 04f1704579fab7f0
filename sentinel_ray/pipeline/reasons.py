"""Why a row was rejected: the reason codes the shipped rules use.

Quarantined rows store the code as a string, so a code keeps its spelling for good. Which
code a row gets is decided by the rule order of its dataset (`quality/default_rules.yaml`,
first failing rule wins); a rules override file may add codes of its own.
"""
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
    IMPLAUSIBLE_PRICE_JUMP = "implausible_price_jump"  # price > factor away from its series' level, volume ordinary
    STALE_TIMESTAMP = "stale_timestamp"  # older than a freshness rule's max_age (not in the shipped rules)


# The shipped rules' priority order: each dataset's rules use a subsequence of it.
REASON_ORDER: tuple[Reason, ...] = tuple(r for r in Reason if r is not Reason.STALE_TIMESTAMP)
