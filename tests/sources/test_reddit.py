"""RedditSource: the real praw/prawcore stack against a local server that speaks Reddit's OAuth API."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from sentinel_ray.config import RedditSettings, Settings
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.schemas import POSTS
from sentinel_ray.records import RAW_ID, RAW_POS, MissingCredentials, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError, HttpStatusError, RetryPolicy
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.sources.reddit import RedditSource
from tests.fakes.server import Reply
from tests.sources.helpers import RecordingSleep, assert_replays, fetch_once as fetch, json_reply, payloads, skipped

SUB = "IndianStreetBets"
NEW, COMMENTS, TOKEN = f"/r/{SUB}/new", f"/r/{SUB}/comments/", "/api/v1/access_token"
# What Reddit sends on every OAuth answer; with these values prawcore's pacing waits 0 s.
RATELIMIT = {"x-ratelimit-remaining": "996.0", "x-ratelimit-used": "4", "x-ratelimit-reset": "312"}
body = payloads("reddit")


def listing(*children: dict[str, Any], after: str | None = None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": after, "dist": len(children), "modhash": None, "before": None,
                                        "children": list(children)}}


def ok(payload: bytes | dict[str, Any]) -> Reply:
    return json_reply(payload, RATELIMIT)


def new_pages(request) -> Reply:
    """/r/<sub>/new as Reddit pages it: page 2 when asked for what follows page 1's last item."""
    return ok(body("new_page2.json") if request.query.get("after") == "t3_1h0c3c" else body("new_page1.json"))


def serve(fake, new: Any = new_pages, comments: Any = None) -> None:
    fake.route("POST", TOKEN, Reply(body=body("token.json"), content_type="application/json"))
    fake.route("GET", NEW, *(new if isinstance(new, tuple) else (new,)))
    fake.route("GET", COMMENTS, comments or ok(body("comments.json")))


def source(fake, *, timeout_s: float = 2.0, page_cap: int = 10) -> tuple[RedditSource, RecordingSleep]:
    sleep = RecordingSleep()
    settings = RedditSettings(client_id="app-id", client_secret="app-secret", subreddits=[SUB], base_url=fake.url,
                              oauth_url=fake.url, user_agent="linux:sentinel-ray-test:0.1 (by /u/sentinel)",
                              timeout_s=timeout_s, page_cap=page_cap)
    return RedditSource(settings, retry=RetryPolicy(max_attempts=3, base_delay_s=1.0), rate_per_s=1000, burst=1000,
                        sleep=sleep, seed=1), sleep


def test_happy_path_submissions_and_comments(fake_service) -> None:
    serve(fake_service)
    src, sleep = source(fake_service)
    result = fetch(src)
    table = result.records["posts"]
    assert table.schema == record_schema(POSTS)
    assert table.column("tickers").null_count == table.num_rows  # found by the pipeline's enrich step
    tickers = dict(zip(table.column("post_id").to_pylist(), enrich(table, POSTS).column("tickers").to_pylist()))
    rows = table.to_pylist()
    assert [r["post_id"] for r in rows] == ["t3_1h0c5e", "t3_1h0c4d", "t3_1h0c3c", "t3_1h0c2b", "t3_1h0c1a",
                                            "t1_m3x9k2a", "t1_m3x8a1b"]
    first = rows[0]
    assert first["platform"] == "reddit" and first["source"] == "reddit" and first["run_id"] is None
    assert first["author"] == "dalal_wala_92"
    # raw_json=1: Reddit sends "&" and "<" as they are, and they stay so
    assert first["text"] == ("SUZLON breakout today, anyone holding?\n\nVolume 5x the 20 day average since 10:30. "
                             "Operator entry? Target 80 they say. P&L screenshot below, not a tip <3")
    assert first["url"] == ("https://www.reddit.com/r/IndianStreetBets/comments/1h0c5e/"
                            "suzlon_breakout_today_anyone_holding/")
    assert first["engagement"] == 41 + 17
    assert first["ts"].isoformat() == "2025-11-26T09:45:00+00:00"
    assert tickers["t3_1h0c5e"] == ["SUZLON"]
    by_id = {r["post_id"]: r for r in rows}
    assert by_id["t3_1h0c4d"]["author"] is None  # "[deleted]"
    assert by_id["t3_1h0c4d"]["text"] == "Reliance Industries Q3 results: PAT up 7% YoY"  # link post: title only
    assert by_id["t3_1h0c2b"]["text"] == "IDEA 10x guaranteed, join my telegram for VIP calls"  # "[removed]" body
    assert tickers["t3_1h0c3c"] == ["YESBANK", "INFY"]
    comment = by_id["t1_m3x8a1b"]
    assert comment["text"] == "Infosys is fine. Yes Bank at 21 is a value trap imo." and comment["engagement"] == 3
    assert comment["url"].endswith("/comments/1h0c3c/first_portfolio_be_gentle/m3x8a1b/")
    assert tickers["t1_m3x8a1b"] == ["INFY", "YESBANK"]
    assert all(r["ingested_at"] is not None for r in rows)
    # every listing body byte for byte; never the token answer (it holds a bearer token)
    assert [p.body for p in result.raw] == [body("new_page1.json"), body("new_page2.json"), body("comments.json")]
    assert all(b"access_token" not in p.body for p in result.raw)
    assert result.raw[0].request.endswith(NEW) and result.raw[0].source == "reddit"
    assert result.meta["skipped"] == 0 and sleep.calls == []
    assert result.next_cursor == {"subreddits": {SUB: {
        "submissions": {"ts": 1764150300.0, "ids": ["t3_1h0c4d", "t3_1h0c5e"]},
        "comments": {"ts": 1764150600.0, "ids": ["t1_m3x9k2a"]}}}}


def test_speaks_reddits_oauth_protocol(fake_service) -> None:
    serve(fake_service)
    src, _ = source(fake_service)
    fetch(src)
    token, *reads = fake_service.requests
    assert (token.method, token.path) == ("POST", TOKEN)
    assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"app-id:app-secret").decode()
    assert token.body == b"grant_type=client_credentials"
    assert len(fake_service.seen(TOKEN)) == 1  # the token is reused for every read
    for read in reads:
        assert read.method == "GET"
        assert read.headers["Authorization"] == "bearer " + json.loads(body("token.json"))["access_token"]
        assert read.headers["User-Agent"].startswith("linux:sentinel-ray-test:0.1 (by /u/sentinel) PRAW/")
        assert read.query["raw_json"] == "1" and read.query["limit"] == "100"


def test_pagination_follows_after_up_to_the_page_cap(fake_service) -> None:
    serve(fake_service)
    src, _ = source(fake_service)
    fetch(src)
    assert [r.query.get("after") for r in fake_service.seen(NEW)] == [None, "t3_1h0c3c"]

    fake_service.requests.clear()
    capped, _ = source(fake_service, page_cap=1)
    result = fetch(capped)
    assert len(fake_service.seen(NEW)) == 1
    assert [r for r in result.records["posts"].column("post_id").to_pylist() if r.startswith("t3_")] == [
        "t3_1h0c5e", "t3_1h0c4d", "t3_1h0c3c"]


def test_cursor_resume_emits_only_new_items(fake_service) -> None:
    first_page = json.loads(body("new_page1.json"))
    state = {"poll": 1}

    def new(request) -> Reply:
        if state["poll"] == 1:
            return new_pages(request)
        # Later: one post in a later second, one in the very second the cursor holds, then the old ones.
        children = first_page["data"]["children"]
        newer = json.loads(json.dumps(children[0]))
        newer["data"].update(id="1h0d00", name="t3_1h0d00", created_utc=1764152000.0, title="TCS buyback announced")
        same_second = json.loads(json.dumps(children[1]))
        same_second["data"].update(id="1h0c4z", name="t3_1h0c4z", title="ITC demerger record date")
        return ok(listing(newer, same_second, *children, after="t3_1h0c3c"))

    serve(fake_service, new=new)
    src, _ = source(fake_service)
    first = fetch(src)
    state["poll"] = 2
    second = fetch(src, first.next_cursor)
    ids = second.records["posts"].column("post_id").to_pylist()
    assert ids == ["t3_1h0d00", "t3_1h0c4z"]  # comments unchanged: nothing new there
    assert not set(ids) & set(first.records["posts"].column("post_id").to_pylist())
    assert enrich(second.records["posts"], POSTS).column("tickers").to_pylist() == [["TCS"], ["ITC"]]
    # page 1 already reached the previous poll's items: page 2 is not asked for again
    assert [r.query.get("after") for r in fake_service.seen(NEW)] == [None, "t3_1h0c3c", None]
    assert second.next_cursor["subreddits"][SUB]["submissions"] == {"ts": 1764152000.0, "ids": ["t3_1h0d00"]}
    assert second.next_cursor["subreddits"][SUB]["comments"] == first.next_cursor["subreddits"][SUB]["comments"]

    third = fetch(src, second.next_cursor)
    assert third.rows("posts") == 0 and third.next_cursor == second.next_cursor


def test_429_waits_as_told_then_succeeds(fake_service) -> None:
    serve(fake_service, new=(Reply(429, body=b'{"message": "Too Many Requests", "error": 429}',
                                   headers={"Retry-After": "7"}), new_pages))
    src, sleep = source(fake_service)
    assert fetch(src).rows("posts") == 7
    assert sleep.calls == [7.0]


def test_429_without_retry_after_waits_for_the_ratelimit_reset(fake_service) -> None:
    serve(fake_service, new=(Reply(429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-used": "1000",
                                                 "x-ratelimit-reset": "12"}), new_pages))
    src, sleep = source(fake_service)
    fetch(src)
    assert sleep.calls == [12.0]


def test_500_then_success_backs_off(fake_service) -> None:
    serve(fake_service, new=(Reply(500), Reply(503), new_pages))
    src, sleep = source(fake_service)
    assert fetch(src).rows("posts") == 7
    assert len(sleep.calls) == 2 and 0 <= sleep.calls[0] <= 1.0 and 0 <= sleep.calls[1] <= 2.0
    assert len(fake_service.seen(NEW)) == 4  # 2 failures, then both pages: no hidden prawcore retries


def test_persistent_5xx_gives_up_after_max_attempts(fake_service) -> None:
    serve(fake_service, new=Reply(502))
    src, _ = source(fake_service)
    with pytest.raises(FetchError, match="failed after 3 attempts .last: reddit: .*HTTP 502"):
        fetch(src)
    assert len(fake_service.seen(NEW)) == 3


def test_timeout_is_retried(fake_service) -> None:
    serve(fake_service, new=(Reply(delay_s=0.8), new_pages))
    src, sleep = source(fake_service, timeout_s=0.25)
    assert fetch(src).rows("posts") == 7
    assert len(sleep.calls) == 1


@pytest.mark.parametrize("bad, message", [
    (Reply(body=b"<html>upstream error</html>", content_type="text/html"), "not JSON"),
    (ok({"kind": "t3", "data": {"id": "x"}}), "expected a Listing"),
])
def test_malformed_payloads(fake_service, bad: Reply, message: str) -> None:
    # one listing unreadable: noted, kept for the raw zone, its cursor stays; the other listing's posts arrive
    serve(fake_service, new=bad)
    src, _ = source(fake_service)
    result = fetch(src)
    [note] = result.meta["unreadable"]
    assert message in note["error"] and result.raw[note["payload"]].body == bad.render().body
    assert [p.request.endswith(NEW) for p in result.raw] == [True, False]
    assert [r["post_id"] for r in result.records["posts"].to_pylist()] == ["t1_m3x9k2a", "t1_m3x8a1b"]
    assert "submissions" not in result.next_cursor["subreddits"][SUB]

    # both unreadable: nothing read, the poll raises carrying both answers
    serve(fake_service, new=bad, comments=bad)
    src, _ = source(fake_service)
    with pytest.raises(UnreadablePayload, match=message) as e:
        fetch(src)
    assert isinstance(e.value, SourceError) and [p.body for p in e.value.raw] == [bad.render().body] * 2


def test_one_malformed_item_is_skipped_and_counted(fake_service) -> None:
    good = json.loads(body("new_page1.json"))["data"]["children"]
    broken = {"kind": "t3", "data": {"id": "1h0bad", "title": "no created_utc here"}}
    serve(fake_service, new=ok(listing(good[0], broken, good[2])))
    src, _ = source(fake_service)
    result = fetch(src)
    assert result.meta["skipped"] == 1
    assert result.records["posts"].column("post_id").to_pylist()[:2] == ["t3_1h0c5e", "t3_1h0c3c"]


def test_empty_listing_keeps_the_cursor(fake_service) -> None:
    serve(fake_service, new=ok(listing()), comments=ok(listing()))
    src, _ = source(fake_service)
    result = fetch(src)
    assert result.rows("posts") == 0 and result.records["posts"].schema == record_schema(POSTS)
    assert result.next_cursor is None
    cursor = {"subreddits": {SUB: {"submissions": {"ts": 1.0, "ids": ["t3_a"]}}}}
    src, _ = source(fake_service)
    assert fetch(src, cursor).next_cursor == cursor


def test_401_from_the_token_endpoint_is_a_clear_auth_error(fake_service) -> None:
    fake_service.route("POST", TOKEN, Reply(401, json={"message": "Unauthorized", "error": 401}))
    src, sleep = source(fake_service)
    with pytest.raises(AuthError, match="HTTP 401.*client id/secret") as e:
        fetch(src)
    assert "app-secret" not in str(e.value)
    assert len(fake_service.requests) == 1 and sleep.calls == []


def test_403_on_a_listing_is_not_retried(fake_service) -> None:
    serve(fake_service, new=Reply(403, json={"message": "Forbidden", "error": 403}))
    src, sleep = source(fake_service)
    with pytest.raises(AuthError, match="HTTP 403") as e:
        fetch(src)
    assert len(fake_service.seen(NEW)) == 1 and sleep.calls == []
    assert e.value.status == 403 and b"Forbidden" in e.value.body  # the refusal itself, for whoever reads it


def test_unknown_subreddit_is_a_clear_error(fake_service) -> None:
    serve(fake_service, new=Reply(302, headers={"Location": "/subreddits/search.json?q=IndianStreetBets"}))
    src, _ = source(fake_service)
    with pytest.raises(HttpStatusError, match="no such subreddit"):
        fetch(src)


def test_missing_credentials_name_the_env_vars() -> None:
    with pytest.raises(MissingCredentials, match="SENTINEL_REDDIT_CLIENT_ID, SENTINEL_REDDIT_CLIENT_SECRET"):
        RedditSource.from_settings(Settings())
    with pytest.raises(MissingCredentials, match="SENTINEL_REDDIT_CLIENT_SECRET"):
        RedditSource.from_settings(Settings(reddit_client_id="abc"))


def test_from_settings_points_praw_at_the_configured_hosts(fake_service) -> None:
    serve(fake_service)
    settings = Settings(reddit_client_id="app-id", reddit_client_secret="app-secret", reddit_subreddits=[SUB],
                        reddit_base_url=fake_service.url, reddit_oauth_url=fake_service.url, page_cap=1)
    src = RedditSource.from_settings(settings)
    assert (src.name, src.datasets, src.credentials) == ("reddit", ("posts",),
                                                         ("reddit_client_id", "reddit_client_secret"))
    result = fetch(src)
    assert result.rows("posts") == 5 and len(fake_service.seen(NEW)) == 1
    assert fake_service.seen(NEW)[0].headers["User-Agent"].startswith(settings.http_user_agent)


# --- replay from the raw zone -------------------------------------------------------------------


def _child_name(payload: RawPayload, position: int) -> str:
    return json.loads(payload.body)["data"]["children"][position]["data"]["name"]


def rows(result) -> list[dict[str, Any]]:
    return result.records["posts"].to_pylist()


def test_kept_pages_parse_to_the_polls_records(fake_service) -> None:
    first_page = json.loads(body("new_page1.json"))
    old = first_page["data"]["children"]
    newer = json.loads(json.dumps(old[0]))
    newer["data"].update(id="1h0d00", name="t3_1h0d00", created_utc=1764152000.0, title="TCS buyback announced")
    polls = iter([new_pages, lambda request: ok(listing(newer, *old, after="t3_1h0c3c"))])
    serve(fake_service, new=lambda request: (next(polls) if request.query.get("after") is None else new_pages)(request))
    src, _ = source(fake_service)

    first = fetch(src)
    # every row is the record at its raw_pos in the listing its raw_id names
    assert assert_replays("reddit", first, _child_name, lambda row: row["post_id"]) == {"posts": 7}
    assert [(r[RAW_ID], r[RAW_POS]) for r in rows(first)] == [
        (first.raw[0].payload_id, 0), (first.raw[0].payload_id, 1), (first.raw[0].payload_id, 2),
        (first.raw[1].payload_id, 0), (first.raw[1].payload_id, 1), (first.raw[2].payload_id, 0),
        (first.raw[2].payload_id, 1)]
    assert all(request_context(p.request) == {} for p in first.raw)  # a first poll emits all it reads

    second = fetch(src, first.next_cursor)
    assert assert_replays("reddit", second, _child_name, lambda row: row["post_id"]) == {"posts": 1}
    assert [(r["post_id"], r[RAW_POS]) for r in rows(second)] == [("t3_1h0d00", 0)]
    new_page, comments = second.raw
    # the rest of each listing was emitted by the first poll: read, not emitted, and the request says so
    assert request_url(new_page.request).endswith(NEW) and request_context(new_page.request) == {"skip": "1-3"}
    assert [r["post_id"] for r in skipped("reddit", new_page)] == [c["data"]["name"] for c in old]
    assert request_context(comments.request) == {"skip": "0-1"}
    assert [r["post_id"] for r in skipped("reddit", comments)] == [r["post_id"] for r in rows(first)][-2:]
