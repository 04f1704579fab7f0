"""XSource: X API v2 recent search through the shared HttpClient against a local server."""
from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel_ray.config import Settings, XSettings
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.schemas import POSTS
from sentinel_ray.records import RAW_POS, MissingCredentials, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError, HttpStatusError
from sentinel_ray.sources.x import MAX_QUERY_LENGTH, RATE_LIMIT_HEADERS, SEARCH_PATH, XSource, build_queries
from tests.fakes.server import Reply
from tests.sources.helpers import (RecordingSleep, assert_replays, fast_client, fetch_once as fetch, json_reply as ok,
                                   payloads, skipped)

TICKERS = ["SUZLON", "RELIANCE", "HDFCBANK"]
body = payloads("x")


def paged(request) -> Reply:
    """Recent search as X pages it: page 2 for page 1's next_token, only newer posts after since_id."""
    if request.query.get("since_id") == "2125803024143093761":
        return ok(body("search_newer.json"))
    if request.query.get("since_id") == "2125810780241678337":
        return ok(body("search_empty.json"))
    if request.query.get("next_token") == "b26v89c19zqg8o3fqk40z3c6ryinz3uj0mv5hrqesg6pp":
        return ok(body("search_page2.json"))
    return ok(body("search_page1.json"))


def source(fake, *steps: Any, tickers: list[str] = TICKERS, timeout_s: float = 2.0, clock=time.time,
           page_cap: int = 10, **kw: Any) -> tuple[XSource, RecordingSleep]:
    """The adapter on a fast client configured as the adapter's own (X's rate-limit headers), at `fake`."""
    fake.route("GET", SEARCH_PATH, *(steps or (paged,)))
    sleep = RecordingSleep()
    http = fast_client("x", sleep, timeout_s=timeout_s, clock=clock, **RATE_LIMIT_HEADERS)
    settings = XSettings(bearer_token="AAAA-test-bearer", tickers=tickers, base_url=fake.url, page_cap=page_cap)
    return XSource(settings, http=http, **kw), sleep


def test_happy_path(fake_service) -> None:
    src, sleep = source(fake_service)
    result = fetch(src)
    table = result.records["posts"]
    assert table.schema == record_schema(POSTS)
    assert table.column("tickers").null_count == table.num_rows  # found by the pipeline's enrich step
    tickers = enrich(table, POSTS).column("tickers").to_pylist()
    rows = table.to_pylist()
    assert [r["post_id"] for r in rows] == ["2125803024143093761", "2125800680923865089", "2125790779568828417"]
    first = rows[0]
    assert first["platform"] == "x" and first["source"] == "x" and first["run_id"] is None
    assert first["author"] == "chartwala_in"
    assert first["text"] == "$SUZLON breaking out with 5x volume. Target 80 & beyond, SL 61 <- not advice"  # unescaped
    assert first["ts"] == dt.datetime(2026, 11, 26, 4, 5, 11, tzinfo=dt.timezone.utc)
    assert first["url"] == "https://x.com/chartwala_in/status/2125803024143093761"
    assert first["engagement"] == 150 + 4 + 12 + 2
    assert tickers[0] == ["SUZLON"]
    # a long post: the full note text, not the cut `text`
    assert rows[1]["text"].startswith("Reliance Industries ka result kal hai") and rows[1]["text"].endswith(
        "refining margins bhi.")
    assert tickers[1] == ["RELIANCE"] and tickers[2] == ["HDFCBANK", "INFY"]
    assert [p.body for p in result.raw] == [body("search_page1.json"), body("search_page2.json")]
    assert all(p.request.endswith(SEARCH_PATH) for p in result.raw)
    assert result.next_cursor == {"since_id": {src.queries[0]: "2125803024143093761"}}
    assert result.meta["skipped"] == 0 and sleep.calls == []


def test_request_follows_the_api_contract(fake_service) -> None:
    src, _ = source(fake_service)
    fetch(src)
    first = fake_service.seen(SEARCH_PATH)[0]
    assert first.headers["Authorization"] == "Bearer AAAA-test-bearer"
    assert first.query["query"] == ('($SUZLON OR "Suzlon Energy" OR $RELIANCE OR "Reliance Industries" OR '
                                    '$HDFCBANK OR "HDFC Bank") -is:retweet (lang:en OR lang:hi)')
    assert first.query["max_results"] == "100"
    assert set(first.query["tweet.fields"].split(",")) >= {"created_at", "author_id", "public_metrics", "lang",
                                                           "conversation_id"}
    assert first.query["expansions"] == "author_id" and first.query["user.fields"] == "username"
    assert "since_id" not in first.query and "next_token" not in first.query


def test_queries_respect_the_length_limit() -> None:
    watch = Settings().watch_tickers
    assert len(build_queries(watch)) == 1
    many = [f"SYM{i:03d}" for i in range(120)]
    queries = build_queries(many)
    assert len(queries) > 1 and all(len(q) <= MAX_QUERY_LENGTH for q in queries)
    assert sum('$RELIANCE OR "Reliance Industries"' in q for q in build_queries(["SUZLON", "RELIANCE"], 80)) == 1
    assert sum(q.count("$") for q in queries) == 120  # every ticker in exactly one query
    with pytest.raises(SourceError, match="alone exceed the 20-character"):
        build_queries(["RELIANCE"], max_length=20)


def test_pagination_follows_next_token_up_to_the_page_cap(fake_service) -> None:
    src, _ = source(fake_service)
    fetch(src)
    assert [r.query.get("next_token") for r in fake_service.seen(SEARCH_PATH)] == [
        None, "b26v89c19zqg8o3fqk40z3c6ryinz3uj0mv5hrqesg6pp"]
    fake_service.requests.clear()
    capped, _ = source(fake_service, page_cap=1)
    assert fetch(capped).rows("posts") == 2 and len(fake_service.seen(SEARCH_PATH)) == 1


def test_cursor_resume_uses_since_id(fake_service) -> None:
    src, _ = source(fake_service)
    first = fetch(src)
    second = fetch(src, first.next_cursor)
    assert fake_service.seen(SEARCH_PATH)[-1].query["since_id"] == "2125803024143093761"
    assert second.records["posts"].column("post_id").to_pylist() == ["2125810780241678337"]
    assert second.next_cursor == {"since_id": {src.queries[0]: "2125810780241678337"}}
    third = fetch(src, second.next_cursor)
    assert third.rows("posts") == 0 and third.next_cursor == second.next_cursor
    assert third.records["posts"].schema == record_schema(POSTS)


def test_split_queries_have_their_own_cursor_and_emit_a_post_once(fake_service) -> None:
    src, _ = source(fake_service, lambda request: ok(body("search_page2.json")), max_query_length=90)
    assert len(src.queries) == 3
    result = fetch(src)
    assert result.rows("posts") == 1  # every query matched the same post
    assert sorted(result.next_cursor["since_id"]) == sorted(src.queries)
    assert all(len(r.query["query"]) <= 90 for r in fake_service.seen(SEARCH_PATH))


def test_429_with_retry_after(fake_service) -> None:
    src, sleep = source(fake_service, Reply(429, json={"title": "Too Many Requests", "status": 429},
                                            headers={"Retry-After": "7"}), paged)
    assert fetch(src).rows("posts") == 3
    assert sleep.calls == [7.0]


def test_exhausted_rate_limit_window_waits_for_x_rate_limit_reset(fake_service) -> None:
    now = 1_800_000_000.0
    window = {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(now) + 40)}
    src, sleep = source(fake_service, ok(body("search_page1.json"), window), paged, clock=lambda: now)
    assert fetch(src).rows("posts") == 3
    assert sleep.calls == [41.0]  # until the reset, plus a second of margin, before asking for page 2


def test_429_without_retry_after_waits_for_the_window_reset(fake_service) -> None:
    now = 1_800_000_000.0
    # what X answers when the window is used up: no Retry-After, only its rate-limit headers
    limited = Reply(429, json={"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
                    headers={"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0",
                             "x-rate-limit-reset": str(int(now) + 200)})
    src, sleep = source(fake_service, limited, paged, clock=lambda: now)
    assert fetch(src).rows("posts") == 3
    assert sleep.calls == [201.0] and len(fake_service.seen(SEARCH_PATH)) == 3


def test_rate_limit_reset_too_far_away_gives_up_before_asking(fake_service) -> None:
    now = 1_800_000_000.0
    window = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(now) + 900)}
    src, sleep = source(fake_service, ok(body("search_page1.json"), window), paged, clock=lambda: now)
    with pytest.raises(FetchError, match="resets in 901s"):
        fetch(src)
    assert len(fake_service.seen(SEARCH_PATH)) == 1 and sleep.calls == []


def test_since_id_older_than_recent_search_reaches_starts_over(fake_service) -> None:
    expired = {"errors": [{"parameters": {"since_id": ["1"]}, "message": "Invalid 'since_id':'1'. 'since_id' must be "
                           "a tweet id created after 2026-11-19T04:40:00Z."}],
               "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
               "type": "https://api.twitter.com/2/problems/invalid-request"}

    def answer(request) -> Reply:
        return Reply(400, json=expired) if "since_id" in request.query else paged(request)

    src, _ = source(fake_service, answer)
    result = fetch(src, {"since_id": {src.queries[0]: "1"}})
    assert result.rows("posts") == 3 and result.meta["expired_since_id"] == [src.queries[0]]
    assert result.next_cursor == {"since_id": {src.queries[0]: "2125803024143093761"}}


def test_other_400s_fail_at_once(fake_service) -> None:
    src, _ = source(fake_service, Reply(400, json={"title": "Invalid Request", "detail": "bad query operator"}))
    with pytest.raises(HttpStatusError, match="bad query operator"):
        fetch(src, {"since_id": {src.queries[0]: "1"}})
    assert len(fake_service.seen(SEARCH_PATH)) == 1


def test_500_then_success(fake_service) -> None:
    src, sleep = source(fake_service, Reply(500), Reply(503), paged)
    assert fetch(src).rows("posts") == 3
    assert len(sleep.calls) == 2 and 0 <= sleep.calls[0] <= 1.0 and 0 <= sleep.calls[1] <= 2.0


def test_timeout_is_retried(fake_service) -> None:
    src, sleep = source(fake_service, Reply(delay_s=0.8), paged, timeout_s=0.25)
    assert fetch(src).rows("posts") == 3
    assert len(sleep.calls) == 1


@pytest.mark.parametrize("payload, message", [
    (b"<html>Over capacity</html>", "not JSON"),
    (b'[{"id": "1"}]', "expected a JSON object"),
    (b'{"data": "nope", "meta": {}}', "expected a list"),
    (b'{"errors": [{"title": "Invalid Request", "detail": "bad query"}], "title": "Invalid Request"}',
     "Invalid Request"),
])
def test_malformed_payloads(fake_service, payload: bytes, message: str) -> None:
    src, _ = source(fake_service, ok(payload))
    with pytest.raises(SourceError, match=message):
        fetch(src)


def test_one_malformed_post_is_skipped(fake_service) -> None:
    page = json.loads(body("search_page2.json"))
    page["data"].insert(0, {"id": "not-a-number", "text": "x"})
    page["data"].insert(0, {"id": "2125790779568828500"})  # no text
    src, _ = source(fake_service, ok(page))
    result = fetch(src)
    assert result.meta["skipped"] == 2 and result.rows("posts") == 1


def test_empty_result_keeps_the_cursor(fake_service) -> None:
    src, _ = source(fake_service, ok(body("search_empty.json")))
    result = fetch(src)
    assert result.rows("posts") == 0 and result.records["posts"].schema == record_schema(POSTS)
    assert result.next_cursor is None
    cursor = {"since_id": {src.queries[0]: "2125803024143093761"}}
    src, _ = source(fake_service, ok(body("search_empty.json")))
    assert fetch(src, cursor).next_cursor == cursor


def test_401_is_a_clear_auth_error(fake_service) -> None:
    src, sleep = source(fake_service, Reply(401, json={"title": "Unauthorized", "type": "about:blank",
                                                       "status": 401, "detail": "Unauthorized"}))
    with pytest.raises(AuthError, match="HTTP 401") as e:
        fetch(src)
    assert "AAAA-test-bearer" not in str(e.value)
    assert len(fake_service.seen(SEARCH_PATH)) == 1 and sleep.calls == []


def test_missing_credentials_name_the_env_var() -> None:
    with pytest.raises(MissingCredentials, match="SENTINEL_X_BEARER_TOKEN"):
        XSource.from_settings(Settings())
    src = XSource.from_settings(Settings(x_bearer_token="t", page_cap=3))
    assert (src.name, src.datasets, src.credentials, src.page_cap) == ("x", ("posts",), ("x_bearer_token",), 3)
    assert (src.http.reset_header, src.http.remaining_header) == ("x-rate-limit-reset", "x-rate-limit-remaining")


# ---- real recorded X API v2 answers (tweepy's cassettes) -------------------------------------------


def cassette_bodies(folder: Path) -> dict[str, bytes]:
    """Each cassette's first response body as X sent it (vcrpy stores it gzip-compressed in !!binary)."""
    bodies = {}
    for path in sorted(folder.glob("*.yaml")):
        response = yaml.safe_load(path.read_text())["interactions"][0]["response"]
        raw = response["body"]["string"]
        if "gzip" in response["headers"].get("content-encoding", []):
            raw = gzip.decompress(raw)
        bodies[path.stem.removeprefix("test_client_")] = raw if isinstance(raw, bytes) else raw.encode()
    return bodies


@pytest.mark.parametrize("name, count", [("search_recent_tweets", 10), ("search_all_tweets", 10),
                                         ("get_tweets", 2), ("get_users_tweets", 2), ("get_quote_tweets", 9),
                                         ("get_tweet", 1)])
def test_real_recorded_answers_parse(fake_service, shared_fixtures: Path, name: str, count: int) -> None:
    recorded = cassette_bodies(shared_fixtures / "tweepy_cassettes")[name]
    src, _ = source(fake_service, ok(recorded), page_cap=1)
    result = fetch(src)
    expected = json.loads(recorded)["data"]
    expected = expected if isinstance(expected, list) else [expected]
    rows = result.records["posts"].to_pylist()
    assert len(rows) == count == len(expected) and result.meta["skipped"] == 0
    assert [r["post_id"] for r in rows] == [t["id"] for t in expected]
    assert [r["text"] for r in rows] == [t["text"] for t in expected]
    # these were recorded without tweet.fields: no author, no metrics; the time comes from the snowflake id
    assert all(r["author"] is None and r["engagement"] is None for r in rows)
    assert all(r["url"] == f"https://x.com/i/web/status/{r['post_id']}" for r in rows)
    assert result.raw[0].body == recorded


def test_real_search_answer_times_match_the_posts(fake_service, shared_fixtures: Path) -> None:
    # tweepy's test account posted its own clock ("2022-10-07 22:42:12.637103 tweepy"): the id-derived time agrees
    recorded = cassette_bodies(shared_fixtures / "tweepy_cassettes")["search_recent_tweets"]
    src, _ = source(fake_service, ok(recorded), page_cap=1)
    rows = fetch(src).records["posts"].to_pylist()
    for row in rows:
        posted = dt.datetime.fromisoformat(row["text"].removesuffix(" tweepy")).replace(tzinfo=dt.timezone.utc)
        assert abs((row["ts"] - posted).total_seconds()) < 2
    assert rows[0]["text"] == "2022-10-07 22:42:12.637103 tweepy"
    assert json.loads(recorded)["meta"]["newest_id"] == rows[0]["post_id"]


def test_real_answer_with_surrogate_pair_escapes(fake_service, shared_fixtures: Path) -> None:
    recorded = cassette_bodies(shared_fixtures / "tweepy_cassettes")["get_tweets"]
    assert b"\\uD83E\\uDD41" in recorded  # the drum emoji, escaped as a UTF-16 pair
    src, _ = source(fake_service, ok(recorded))
    text = fetch(src).records["posts"].column("text")[0].as_py()
    assert text.startswith("It’s finally here! \U0001F941 Say hello to the new #TwitterAPI.")


# --- replay from the raw zone -------------------------------------------------------------------


def _post_id(payload: RawPayload, position: int) -> str:
    return json.loads(payload.body)["data"][position]["id"]


def test_kept_answers_parse_to_the_polls_records(fake_service) -> None:
    src, _ = source(fake_service)
    first = fetch(src)
    # every row is the post at its raw_pos in the answer its raw_id names
    assert assert_replays("x", first, _post_id, lambda row: row["post_id"]) == {"posts": 3}
    assert [r[RAW_POS] for r in first.records["posts"].to_pylist()] == [0, 1, 0]
    # the request says what was asked, never the bearer token (a header) nor the query (no secrets kept)
    assert all(request_url(p.request).endswith(SEARCH_PATH) and "AAAA" not in p.request for p in first.raw)
    second = fetch(src, first.next_cursor)
    assert assert_replays("x", second, _post_id, lambda row: row["post_id"]) == {"posts": 1}


def test_a_post_two_split_queries_match_is_skipped_in_the_second_answer(fake_service) -> None:
    src, _ = source(fake_service, lambda request: ok(body("search_page2.json")), max_query_length=90)
    result = fetch(src)
    assert assert_replays("x", result, _post_id, lambda row: row["post_id"]) == {"posts": 1}
    first, *others = result.raw
    assert request_context(first.request) == {} and len(others) == 2
    for payload in others:  # the same answer, read again for the next queries: its post was emitted already
        assert request_context(payload.request) == {"skip": "0"} and payload.payload_id == first.payload_id
        assert [r["post_id"] for r in skipped("x", payload)] == result.records["posts"].column("post_id").to_pylist()
