"""Webhook intake without Ray or Redis: what `parse_body` and `records_table` accept, row for
row, and the exact message of each refusal (the record and field, never the value)."""
from __future__ import annotations

import datetime as dt
import json
import time

import pyarrow as pa
import pytest

from sentinel_ray.ingest.webhook import MAX_RECORDS, IntakeError, parse_body, records_table
from sentinel_ray.schemas import DATA_DATASETS

RECEIVED = dt.datetime(2026, 11, 6, 6, 0, tzinfo=dt.timezone.utc)
POST = {"platform": "telegram", "post_id": "hook/1", "author": "bot", "text": "$SUZLON target 80 by Friday",
        "ts": "2026-11-06T05:00:00+05:30", "tickers": ["SUZLON"], "engagement": 12}
BAR = {"ticker": "TCS", "exchange": "NSE", "interval": "1m", "ts": "2026-11-05T04:00:00Z", "open": 1.0,
       "high": 2.0, "low": 0.5, "close": 1.5, "volume": 100}


def post(i: int, **changes) -> dict:
    return {**POST, "post_id": f"hook/{i}", **changes}


def refusal(dataset: str, records: list, source: str = "tg-bot") -> str:
    with pytest.raises(IntakeError) as caught:
        records_table(dataset, source, records, RECEIVED)
    return str(caught.value)


def test_good_records_become_exactly_those_rows_with_lineage() -> None:
    table = records_table("posts", "tg-bot", [post(1), post(2, author=None, tickers=[]), {"text": "only text"}],
                          RECEIVED)
    assert table.schema == DATA_DATASETS["posts"].record_schema
    assert table.num_rows == 3
    assert table.column("post_id").to_pylist() == ["hook/1", "hook/2", None]
    assert set(table.column("source").to_pylist()) == {"tg-bot"}
    assert set(table.column("ingested_at").to_pylist()) == {RECEIVED}
    assert table.column("run_id").null_count == 3
    assert table.column("ts")[0].as_py() == dt.datetime(2026, 11, 5, 23, 30, tzinfo=dt.timezone.utc)  # +05:30 -> UTC


def test_a_thousand_records_are_cheap() -> None:
    records = [post(i) for i in range(1000)]
    started = time.perf_counter()
    table = records_table("posts", "tg-bot", records, RECEIVED)
    assert table.num_rows == 1000 and table.column("post_id").to_pylist() == [f"hook/{i}" for i in range(1000)]
    assert time.perf_counter() - started < 1.0  # about 5 ms here; a per-value Python scan would be ~100x


@pytest.mark.parametrize("field", ["text", "author", "post_id", "platform", "url"])
def test_a_lone_surrogate_names_the_record_and_field(field: str) -> None:
    records = [post(0), post(1), post(2), post(3, **{field: "ok \ud800 then"})]
    assert refusal("posts", records) == f"records[3].{field}: not valid Unicode (lone surrogate)"


def test_lone_surrogates_in_lists_several_records_and_the_source() -> None:
    records = [post(0, tickers=["SUZLON", "\udfff"]), post(1), post(2, text="\udc00", author="\ud83d")]
    assert refusal("posts", records) == ("records[0].tickers: not valid Unicode (lone surrogate); "
                                         "records[2].author: not valid Unicode (lone surrogate); "
                                         "records[2].text: not valid Unicode (lone surrogate)")
    assert refusal("posts", [post(0)], source="bot\ud800") == "source: not valid Unicode (lone surrogate)"
    # A surrogate pair is one valid character (an emoji), not a lone surrogate.
    assert records_table("posts", "tg-bot", [post(0, text=json.loads('"pump \\ud83d\\ude80"'))],
                         RECEIVED).num_rows == 1


@pytest.mark.parametrize("dataset, records, message", [
    ("posts", [post(0), 7, "x", None, []], ("records[1]: must be a JSON object; records[2]: must be a JSON object; "
                                            "records[3]: must be a JSON object; records[4]: must be a JSON object")),
    ("posts", [post(0, text=123.5)], "records[0].text: Input should be a valid string"),
    ("posts", [post(0, text=[[["deep"]]])], "records[0].text: Input should be a valid string"),
    ("posts", [post(0, tickers="SUZLON")], "records[0].tickers: Input should be a valid list"),
    ("posts", [post(0, tickers=["A", 5])], "records[0].tickers[1]: Input should be a valid string"),
    ("posts", [post(0, likes=3)], "records[0].likes: Extra inputs are not permitted"),
    ("posts", [post(0, source="spoofed")], "records[0].source: Extra inputs are not permitted"),
    ("posts", [post(0, **{"bad key": 1})], 'records[0]["bad key"]: Extra inputs are not permitted'),
    ("posts", [post(0, **{"k\ud800": 1})], "records[0]: a field name is not valid Unicode (lone surrogate)"),
    ("posts", [post(0, ts="not a time")],
     "records[0].ts: Input should be a valid datetime or date, invalid character in year"),
    ("posts", [post(0, engagement=1.5)],
     "records[0].engagement: Input should be a valid integer, got a number with a fractional part"),
    ("posts", [post(0, engagement=2**63)],
     "records[0].engagement: Input should be less than or equal to 9223372036854775807"),
    ("posts", [post(0, engagement=-(2**63) - 1)],
     "records[0].engagement: Input should be greater than or equal to -9223372036854775808"),
    ("prices", [{**BAR, "volume": 10**30}], ("records[0].volume: Input should be less than or equal to "
                                             "9223372036854775807")),
    ("prices", [{**BAR, "open": 10**400}], "records[0].open: Input should be a valid number"),
    ("posts", [post(0, ts="0001-01-01T00:00:00+05:00")],
     "records[0].ts: out of the supported range (years 1 to 9999 in UTC)"),
    ("posts", [post(0, ts="9999-12-31T23:59:59-05:00")],
     "records[0].ts: out of the supported range (years 1 to 9999 in UTC)"),
    ("posts", [post(0, ts=10**18)],
     "records[0].ts: Input should be a valid datetime, dates after 9999 are not supported as unix timestamps"),
])
def test_values_that_cannot_be_stored_are_refused_by_record_and_field(dataset: str, records: list,
                                                                       message: str) -> None:
    assert refusal(dataset, records) == message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused(literal: str) -> None:
    [bar] = json.loads(f'[{{"ticker": "TCS", "close": {literal}, "volume": {literal}}}]')
    assert refusal("prices", [BAR, bar]) == ("records[1].close: Input should be a finite number; "
                                              "records[1].volume: Input should be a finite number")


def test_implausible_but_storable_values_are_left_to_quarantine() -> None:
    records = [{**BAR, "ts": "0001-01-01T00:00:00Z"}, {**BAR, "ts": "9999-12-31T23:59:59Z"},
               {**BAR, "open": -1.0, "volume": 2**63 - 1}, {**BAR, "ticker": ""}, {}]
    table = records_table("prices", "hook", records, RECEIVED)
    assert table.num_rows == 5
    assert table.column("ts").to_pylist()[:2] == [dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc),
                                                  dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)]
    assert table.column("volume").to_pylist()[2] == 2**63 - 1


def test_many_bad_values_are_listed_ten_then_counted() -> None:
    message = refusal("posts", [post(i, text=i) for i in range(25)])
    assert message.count("Input should be a valid string") == 10
    assert message.startswith("records[0].text: ") and message.endswith("; and 15 more")


def test_a_huge_string_inside_the_body_limit_is_kept_for_the_pipeline() -> None:
    table = records_table("posts", "tg-bot", [post(0, text="x" * 2_000_000)], RECEIVED)
    assert table.num_rows == 1 and len(table.column("text")[0].as_py()) == 2_000_000  # text_length quarantines it


@pytest.mark.parametrize("raw, message", [
    (b"", "body is not valid JSON"),
    (b"{not json", "body is not valid JSON"),
    (b"\xff\xfe\x00", "body is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "body is not valid JSON"),  # nested too deep for the parser
    (b'{"records": [' + b"1" * 5000 + b"]}", "body is not valid JSON"),  # int of more than 4300 digits
    (b"[]", 'body must be a JSON object: {"source": "...", "records": [{...}]}'),
    (b'"records"', 'body must be a JSON object: {"source": "...", "records": [{...}]}'),
    (b"null", 'body must be a JSON object: {"source": "...", "records": [{...}]}'),
    (b"{}", "'records' must be a non-empty list of objects"),
    (b'{"records": []}', "'records' must be a non-empty list of objects"),
    (b'{"records": {"text": "hi"}}', "'records' must be a non-empty list of objects"),
    (b'{"source": "", "records": [{}]}', "'source' must be a non-empty string of at most 64 characters"),
    (b'{"source": "   ", "records": [{}]}', "'source' must be a non-empty string of at most 64 characters"),
    (b'{"source": 5, "records": [{}]}', "'source' must be a non-empty string of at most 64 characters"),
    (b'{"source": "' + b"s" * 65 + b'", "records": [{}]}',
     "'source' must be a non-empty string of at most 64 characters"),
    (json.dumps({"records": [{}] * (MAX_RECORDS + 1)}).encode(),
     f"at most {MAX_RECORDS} records per request, got {MAX_RECORDS + 1}"),
])
def test_bodies_of_the_wrong_shape(raw: bytes, message: str) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_body(raw)
    assert str(caught.value) == message


def test_a_good_body_parses_to_source_and_records() -> None:
    assert parse_body(json.dumps({"records": [POST]}).encode()) == ("webhook", [POST])
    assert parse_body(json.dumps({"source": " tg-bot ", "records": [POST]}).encode()) == ("tg-bot", [POST])
    assert parse_body(b'{"source": "bot\\ud800", "records": [{}]}')[0] == "bot\ud800"  # records_table refuses it


FUZZ = [b'{"records": [' + item + b"]}" for item in (
    b'{"text": "\\ud800"}', b'{"\\udfff": 1}', b'{"ts": NaN}', b'{"engagement": -Infinity}',
    b'{"tickers": [[[[[[[[[[]]]]]]]]]]}', b'{"url": {"a": NaN}}', b'{"ts": "0001-01-01T00:00:00+14:00"}',
    b'{"ts": 9e99}', b'{"ts": true}', b'{"engagement": "12x"}', b'{"engagement": 9223372036854775808}',
    b'{"post_id": null, "text": null}', b'{"text": "' + b"\\ud800" * 1000 + b'"}', b"1e400",
)] + [b'{"source": "\\ud800"}', b'{"source": NaN, "records": [{}]}', b'{"records": NaN}']


@pytest.mark.parametrize("raw", FUZZ)
def test_every_refusal_is_a_short_message_that_encodes(raw: bytes) -> None:
    """What the route sends back: UTF-8 and strict JSON must encode it (no NaN, no surrogate echoed)."""
    try:
        source, records = parse_body(raw)
        table = records_table("posts", source, records, RECEIVED)
    except IntakeError as e:
        message = str(e)
        json.dumps({"detail": message}, allow_nan=False).encode("utf-8")
        message.encode("utf-8")
        assert 0 < len(message) < 2000
    else:
        assert isinstance(table, pa.Table) and table.num_rows == len(records)
