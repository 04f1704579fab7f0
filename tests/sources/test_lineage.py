"""Lineage and replay from the raw zone: payload ids, the raw_id/raw_pos columns, the request text a
parser reads, the parser registry, and the replay simulator's payloads read back into its records.

Each adapter's own test file checks its parser against its polls (`test_kept_*`); and every poll
in tests/sources is replayed from its raw payloads (conftest.py).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray.market import IST
from sentinel_ray.records import RAW_ID, RAW_POS, RawPayload, SourceError
from sentinel_ray.schemas import DATA_DATASETS, FILINGS, POSTS, PRICES
from sentinel_ray.sources import PARSERS, SOURCE_NAMES, parser_for
from sentinel_ray.sources.lineage import (finish, payload_schema, positioned, record_schema, request_context,
                                          request_url, request_with, skipping, spell_positions, stamped, withholding)
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.replay import LiveReplaySource, ReplaySource
from sentinel_ray.sources.replay.faults import FUTURE_SHIFT_DAYS
from tests.sources.helpers import assert_replays, same_table

UTC = dt.timezone.utc
RECEIVED = dt.datetime(2025, 3, 5, 10, 0, 0, 123456, tzinfo=UTC)


def payload(body: bytes = b"[]", **kw) -> RawPayload:
    return RawPayload(**{"source": "x", "dataset": "posts", "received_at": RECEIVED, "body": body,
                         "request": "https://api.x.com/2/tweets/search/recent", **kw})


# --- payload ids ------------------------------------------------------------------------------


def test_a_payload_id_names_source_dataset_day_and_content() -> None:
    one = payload(b'{"data": []}')
    assert re.fullmatch(r"x/posts/2025-03-05/[0-9a-f]{16}", one.payload_id)
    assert one.payload_id.endswith(hashlib.sha1(b'{"data": []}').hexdigest()[:16])
    # the same bytes fetched again the same day: the same id, whatever else differs
    again = payload(b'{"data": []}', received_at=RECEIVED + dt.timedelta(hours=5), request="elsewhere#skip=0",
                    content_type="text/plain")
    assert again.payload_id == one.payload_id
    # other bytes, another day, another source or dataset: another id
    assert payload(b'{"data": [1]}').payload_id != one.payload_id
    assert payload(b'{"data": []}', received_at=RECEIVED + dt.timedelta(days=1)).payload_id.startswith(
        "x/posts/2025-03-06/")
    assert payload(b'{"data": []}', source="reddit").payload_id.startswith("reddit/posts/2025-03-05/")


def test_the_day_of_a_payload_id_is_the_utc_day_it_was_received() -> None:
    late_evening_ist = dt.datetime(2025, 3, 6, 1, 30, tzinfo=IST)  # 2025-03-05 20:00 UTC
    assert payload(received_at=late_evening_ist).payload_id.startswith("x/posts/2025-03-05/")
    naive = dt.datetime(2025, 3, 5, 23, 59)  # naive means UTC
    assert payload(received_at=naive).payload_id.startswith("x/posts/2025-03-05/")


# --- the two columns --------------------------------------------------------------------------


@pytest.mark.parametrize("ds", [PRICES, POSTS, FILINGS])
def test_records_carry_raw_id_and_raw_pos_after_the_dataset_columns(ds) -> None:
    assert (RAW_ID, RAW_POS) == ("raw_id", "raw_pos")
    columns = [f for f in ds.record_schema if f.name not in (RAW_ID, RAW_POS)]
    assert payload_schema(ds) == pa.schema(columns)
    if RAW_ID in ds.record_schema.names:  # the dataset declares them (schemas.py): as it says
        assert record_schema(ds) == ds.record_schema
    else:  # until it does: at the end, a string and an int32
        assert record_schema(ds) == pa.schema([*columns, pa.field(RAW_ID, pa.string()), pa.field(RAW_POS, pa.int32())])
    assert pa.types.is_string(record_schema(ds).field(RAW_ID).type)
    assert pa.types.is_integer(record_schema(ds).field(RAW_POS).type)


def _posts(*ids: str) -> pa.Table:
    return posts_table([PostItem(i, "a", f"text {i}", RECEIVED, None, None, RECEIVED) for i in ids],
                       platform="x", source="x")


def test_finish_drops_what_the_poll_skipped_and_stamps_lineage() -> None:
    table = positioned(_posts("a", "b", "c", "d"), [3, 1, 0, 2])  # positions need not be in row order
    given = skipping(payload(), [1, 2])
    out = finish(given, {"posts": table}, [(4, "ValueError: no id")])
    got = out["posts"]
    assert got.schema == record_schema(POSTS)
    assert got.column("post_id").to_pylist() == ["a", "c"] and got.column(RAW_POS).to_pylist() == [3, 0]
    assert set(got.column(RAW_ID).to_pylist()) == {given.payload_id}
    assert out.unparseable == [(4, "ValueError: no id")]
    assert finish(withholding(given), {"posts": table})["posts"].num_rows == 0
    backfilled = finish(stamped(payload(), run_id="bf/1 \"x\"", ingested_at=dt.datetime(2024, 1, 2, tzinfo=UTC)),
                        {"posts": table})["posts"]
    assert set(backfilled.column("run_id").to_pylist()) == {'bf/1 "x"'}
    assert set(backfilled.column("ingested_at").to_pylist()) == {dt.datetime(2024, 1, 2, tzinfo=UTC)}


def test_the_request_text_keeps_the_url_and_carries_the_context_after_a_fragment() -> None:
    url = "https://www.nseindia.com/api/historical/cm/equity?symbol=M%26M&from=01-02-2025"
    text = request_with(url, skip="0-2,5", run_id="bf 1/2#&=x", feed=None)
    assert request_url(text) == url
    assert request_context(text) == {"skip": "0-2,5", "run_id": "bf 1/2#&=x"}
    assert request_context(url) == {} and request_url(url) == url
    merged = skipping(skipping(payload(request=url), [7, 1]), [2, 0, 9])
    assert request_context(merged.request) == {"skip": "0-2,7,9"} and request_url(merged.request) == url
    assert skipping(payload(request=url), []).request == url  # nothing skipped: nothing said
    assert spell_positions([5, 0, 1, 2, 8, 7]) == "0-2,5,7-8" and spell_positions([]) == ""


# --- the registry -----------------------------------------------------------------------------


def test_every_source_has_a_parser() -> None:
    assert set(PARSERS) == set(SOURCE_NAMES)
    for name in SOURCE_NAMES:
        assert callable(parser_for(name))
    with pytest.raises(SourceError, match="unknown source 'nope'"):
        parser_for("nope")


def test_a_parser_judges_times_as_of_when_the_payload_was_received() -> None:
    def child(name: str, created: dt.datetime) -> dict:
        return {"kind": "t3", "data": {"id": name, "name": f"t3_{name}", "created_utc": created.timestamp(),
                                       "title": f"post {name}", "selftext": "", "permalink": f"/r/x/{name}/"}}

    received = dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    body = json.dumps({"kind": "Listing", "data": {"after": None, "children": [
        child("ok", received - dt.timedelta(hours=1)), child("future", received + dt.timedelta(days=3))]}}).encode()
    kept = RawPayload("reddit", "posts", received, body, request="https://oauth.reddit.com/r/x/new")
    parsed = parser_for("reddit")(kept)
    # two years on both times are past, but the second was three days ahead of the clock that received it
    assert parsed["posts"].column("post_id").to_pylist() == ["t3_ok"]
    assert [position for position, _ in parsed.unparseable] == [1]


# --- the replay simulator -----------------------------------------------------------------------


DAYS = [dt.date(2025, 3, 5), dt.date(2025, 3, 6), dt.date(2025, 3, 8), dt.date(2025, 8, 15), dt.date(2025, 11, 26)]


@pytest.fixture(scope="module")
def replay() -> ReplaySource:
    return ReplaySource(seed=11, bad_rate=0.05, pump_probability=1.0)  # many bad rows, a pump every trading day


@pytest.mark.parametrize("day", DAYS)
def test_replay_payloads_parse_back_into_the_days_records(replay: ReplaySource, day: dt.date) -> None:
    ingested = dt.datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=UTC)
    result = replay.generate_day(day, run_id=f'bf-{day}/"x"', ingested_at=ingested)
    parse = parser_for("replay")
    for kept in result.raw:
        # exactly the records generate_day returned: same values, types, order, raw_id and raw_pos
        same_table(parse(kept)[kept.dataset], result.records[kept.dataset])
        assert parse(kept).unparseable == []
    assert_replays("replay", result)
    prices, posts = result.records["prices"], result.records["posts"]
    if prices.num_rows:  # the injected bad rows came through as they were made (faults.py)
        expected = result.meta["expected"]["prices"]["rejected"]
        horizon = dt.datetime(2030, 1, 1, tzinfo=UTC)
        assert prices.column("close").null_count == expected["missing_field"] > 0
        assert pc.sum(pc.equal(prices.column("low"), 0.0)).as_py() >= expected["non_positive_price"] > 0
        assert pc.sum(pc.greater(prices.column("ts"), pa.scalar(horizon, prices.schema.field("ts").type))).as_py() \
            == expected["future_timestamp"]
        keys = prices.select(["ticker", "ts"]).to_pylist()
        assert len(keys) - len({(k["ticker"], k["ts"]) for k in keys}) == expected["duplicate"]
    if posts.num_rows:
        assert posts.column("post_id").null_count == result.meta["expected"]["posts"]["rejected"]["missing_field"]
    # raw_pos is the record's line in its payload; raw_id the payload's id
    for name, table in result.records.items():
        kept = next(p for p in result.raw if p.dataset == name)
        assert table.column(RAW_POS).to_pylist() == list(range(table.num_rows))
        assert set(table.column(RAW_ID).to_pylist()) <= {kept.payload_id}
        lines = kept.body.splitlines()
        sample = table.take(np.unique(np.linspace(0, max(table.num_rows - 1, 0), 25).astype(int))) \
            if table.num_rows else table
        for row in sample.to_pylist():
            line = json.loads(lines[row[RAW_POS]])
            for column in ("ticker", "post_id", "filing_id", "text", "close", "volume"):
                if column in row:
                    assert line[column] == row[column]


def test_future_rows_and_duplicates_survive_the_round_trip(replay: ReplaySource) -> None:
    day = DAYS[0]
    result = replay.generate_day(day, run_id="r", ingested_at=RECEIVED)
    [kept] = [p for p in result.raw if p.dataset == "prices"]
    got = parser_for("replay")(kept)["prices"]
    future = pc.greater(got.column("ts"), pa.scalar(dt.datetime(2030, 1, 1, tzinfo=UTC), got.schema.field("ts").type))
    shifted = got.filter(future).column("ts").to_pylist()
    assert shifted and all(ts.date() >= day + dt.timedelta(days=FUTURE_SHIFT_DAYS) for ts in shifted)
    assert got.schema == record_schema(PRICES)


def test_a_replay_payload_that_is_not_its_ndjson_is_unreadable() -> None:
    from sentinel_ray.sources.parsing import UnreadablePayload

    broken = RawPayload("replay", "prices", RECEIVED, b'{"ticker": "TCS", "open": "x"}\n{"tick', "application/x-ndjson",
                        "replay://prices/2025-03-05")
    with pytest.raises(UnreadablePayload, match="not NDJSON of prices"):
        parser_for("replay")(broken)
    assert parser_for("replay")(RawPayload("replay", "posts", RECEIVED, b""))["posts"].num_rows == 0


def test_live_replay_polls_parse_back_into_their_records() -> None:
    now = [dt.datetime(2025, 3, 5, 5, 0, tzinfo=UTC).timestamp()]  # 10:30 IST
    live = LiveReplaySource(ReplaySource(seed=5, bad_rate=0.05), start=dt.date(2025, 3, 5), speed=600,
                            clock=lambda: now[0])
    cursor, seen = None, 0
    for _ in range(4):
        result = asyncio.run(live.fetch(cursor))
        cursor = result.next_cursor
        assert assert_replays("replay", result) == {name: t.num_rows for name, t in result.records.items()}
        for name, table in result.records.items():
            assert table.schema == record_schema(DATA_DATASETS[name])
            assert table.column(RAW_POS).to_pylist() == list(range(table.num_rows))  # a poll's own payload
            seen += table.num_rows
        now[0] += 30
    assert seen > 0
