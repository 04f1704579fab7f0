"""YouTube adapter against a local fixture server speaking the YouTube Data API v3."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from aiohttp import web

from sentinel_ray.config import Settings, YouTubeSettings
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.schemas import POSTS
from sentinel_ray.records import RAW_POS, MissingCredentials, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError, HttpStatusError
from sentinel_ray.sources.youtube import (YouTubeSource, _explain, error_reason, parse_comment_threads,
    search_queries, search_terms)
from tests.fakes.server import Reply
from tests.sources.helpers import (RecordingSleep, assert_replays, fast_client, payloads, poll_chain, polls as poll,
                                   rows, skipped)

KEY = "AIzaSy-TEST-KEY-not-a-real-one"
NOW = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.timezone.utc)
payload = payloads("youtube")


class FakeYouTube:
    """Answers /search by pageToken and /commentThreads by (videoId, pageToken) from scripted bodies.

    A value may be a list of Replies: each request takes the next (the last repeats).
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        self.search: dict[str | None, Any] = {None: payload("search_empty.json")}
        self.comments: dict[tuple[str, str | None], Any] = {}
        service.route("GET", "/youtube/v3/search", lambda r: self._answer(self.search, r.query.get("pageToken")))
        service.route("GET", "/youtube/v3/commentThreads",
                      lambda r: self._answer(self.comments, (r.query["videoId"], r.query.get("pageToken"))))

    @staticmethod
    def _answer(table: dict, key: Any) -> Reply | web.Response:
        value = table.get(key)
        if value is None:
            return Reply(404, json={"error": {"code": 404, "message": "The video identified by the videoId "
                                              "parameter could not be found.",
                                              "errors": [{"reason": "videoNotFound"}]}})
        if isinstance(value, list):
            value = value.pop(0) if len(value) > 1 else value[0]
        if isinstance(value, Reply):
            return value
        return Reply(body=value, content_type="application/json")

    def happy(self) -> "FakeYouTube":
        token = json.loads(payload("comments_h5Rk2mNqT0w_page1.json"))["nextPageToken"]
        self.search = {None: payload("search_page1.json"), "CDIQAA": payload("search_page2.json")}
        self.comments = {
            ("h5Rk2mNqT0w", None): payload("comments_h5Rk2mNqT0w_page1.json"),
            ("h5Rk2mNqT0w", token): payload("comments_h5Rk2mNqT0w_page2.json"),
            ("Zq3pL8sVx1E", None): Reply(403, body=payload("error_commentsDisabled.json"),
                                         content_type="application/json"),
            ("Vb9cT4yHn2Q", None): payload("comments_Vb9cT4yHn2Q.json"),
        }
        return self

    @property
    def base_url(self) -> str:
        return f"{self.service.url}/youtube/v3"


def make_source(fake: FakeYouTube, sleep: RecordingSleep | None = None, **kw: Any) -> YouTubeSource:
    http = fast_client("youtube", sleep, timeout_s=kw.pop("timeout_s", 5.0), max_attempts=kw.pop("max_attempts", 4),
                       base_delay_s=0.5, seed=3)
    settings = YouTubeSettings(api_key=KEY, base_url=fake.base_url, page_cap=kw.pop("page_cap", 10))
    return YouTubeSource(settings, terms=kw.pop("terms", ['"Reliance Industries"', "RELIANCE", "SUZLON"]),
                         http=http, clock=lambda: NOW, **kw)


# --- happy path, pagination, parsing ----------------------------------------------------------


def test_happy_path_videos_and_comments_with_pagination(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    (result,) = poll(make_source(fake), None)

    table = result.records[POSTS.name]
    assert table.schema == record_schema(POSTS)
    assert table.column("tickers").null_count == table.num_rows  # found by the pipeline's enrich step
    tickers = dict(zip(table.column("post_id").to_pylist(), enrich(table, POSTS).column("tickers").to_pylist()))
    by_id = {r["post_id"]: r for r in rows(result)}
    # three videos (the channel result is ignored), 3 + 1 comments (one video has comments disabled)
    assert set(by_id) == {"video:h5Rk2mNqT0w", "video:Zq3pL8sVx1E", "video:Vb9cT4yHn2Q",
                          "UgzR7tLq1mXkP0a9Vb54AaABAg", "UgwK9pL3mN8qR2sT5vX1AaABAg",
                          "UgxT4yU6iO8pA0sD2fG4AaABAg", "UgyB5nM7qW9eR1tY3uI5AaABAg"}
    assert result.meta["videos"] == 3 and result.meta["comments"] == 4
    assert result.meta["skipped"] == 1
    assert result.meta["closed_videos"] == [{"video_id": "Zq3pL8sVx1E", "reason": "commentsDisabled"}]

    video = by_id["video:h5Rk2mNqT0w"]
    assert video["text"].startswith("Reliance Industries Q4 Results: What's next for RIL shares? | Markets & More\n")
    assert "&amp;" not in video["text"] and "&#39;" not in video["text"]
    assert video["author"] == "CNBC-TV18"
    assert video["url"] == "https://www.youtube.com/watch?v=h5Rk2mNqT0w"
    assert video["ts"] == dt.datetime(2024, 5, 6, 10, 45, 12, tzinfo=dt.timezone.utc)
    assert video["engagement"] is None and video["platform"] == "youtube"
    assert "RELIANCE" in tickers["video:h5Rk2mNqT0w"]
    assert set(tickers["video:Vb9cT4yHn2Q"]) >= {"IDEA", "HDFCBANK", "TCS"}

    comment = by_id["UgzR7tLq1mXkP0a9Vb54AaABAg"]
    assert comment["text"] == "RIL ko 3000 tak hold karo, Jio IPO aane do. Reliance & TCS are my core holdings"
    assert comment["author"] == "@rahulinvests7821"
    assert comment["engagement"] == 12 + 3
    assert comment["url"] == "https://www.youtube.com/watch?v=h5Rk2mNqT0w&lc=UgzR7tLq1mXkP0a9Vb54AaABAg"
    assert comment["ts"] == dt.datetime(2024, 5, 6, 11, 20, 5, tzinfo=dt.timezone.utc)
    assert tickers["UgzR7tLq1mXkP0a9Vb54AaABAg"] == ["RELIANCE", "TCS"]
    assert tickers["UgyB5nM7qW9eR1tY3uI5AaABAg"] == ["IDEA"]

    assert set(table.column("source").to_pylist()) == {"youtube"}
    assert table.column("run_id").null_count == table.num_rows
    received = {p.received_at for p in result.raw}
    assert set(table.column("ingested_at").to_pylist()) <= {r.replace(microsecond=r.microsecond // 1000 * 1000)
                                                             for r in received}

    searches = fake_service.seen("/youtube/v3/search")
    assert [s.query.get("pageToken") for s in searches] == [None, "CDIQAA"]
    first = searches[0].query
    assert first["q"] == '"Reliance Industries"|RELIANCE|SUZLON'
    assert (first["part"], first["type"], first["order"], first["maxResults"]) == ("snippet", "video", "date", "50")
    assert first["publishedAfter"] == "2024-05-05T12:00:00Z"  # default look-back: one day
    assert first["key"] == KEY
    comment_calls = fake_service.seen("/youtube/v3/commentThreads")
    assert {c.query["videoId"] for c in comment_calls} == {"h5Rk2mNqT0w", "Zq3pL8sVx1E", "Vb9cT4yHn2Q"}
    assert all(c.query["order"] == "time" and c.query["textFormat"] == "plainText"
               and c.query["maxResults"] == "100" for c in comment_calls)

    # raw: every body byte for byte, requests recorded without the key
    assert len(result.raw) == len(searches) + len(comment_calls) - 1  # the 403 has no payload
    assert result.raw[0].body == payload("search_page1.json")
    assert all(KEY not in p.request for p in result.raw)
    assert any("videoId=h5Rk2mNqT0w" in p.request for p in result.raw)

    cursor = result.next_cursor
    json.dumps(cursor)  # JSON-serialisable
    assert cursor["published_after"] == "2024-05-06T10:45:12.000Z"
    tracked = {v["id"]: v for v in cursor["videos"]}
    assert tracked["h5Rk2mNqT0w"]["newest"] == "2024-05-06T11:20:05.000Z"
    # a video known to have comments off is not asked again
    assert tracked["Zq3pL8sVx1E"]["closed"] == "commentsDisabled"


def test_page_cap_limits_pages(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    (result,) = poll(make_source(fake, page_cap=1), None)
    assert len(fake_service.seen("/youtube/v3/search")) == 1
    assert result.meta["truncated"]  # says which listing was cut short
    assert "video:Vb9cT4yHn2Q" not in {r["post_id"] for r in rows(result)}


# --- cursor -------------------------------------------------------------------------------------


NEW_COMMENT = {
    "kind": "youtube#commentThread", "etag": "e", "id": "UgNEWcomment0001AaABAg",
    "snippet": {"videoId": "h5Rk2mNqT0w", "totalReplyCount": 0, "canReply": True, "isPublic": True,
                "topLevelComment": {"kind": "youtube#comment", "etag": "e", "id": "UgNEWcomment0001AaABAg",
                                    "snippet": {"videoId": "h5Rk2mNqT0w", "textOriginal": "Reliance 2950 CE bought",
                                                "textDisplay": "Reliance 2950 CE bought",
                                                "authorDisplayName": "@optionsbuyer", "likeCount": 2,
                                                "publishedAt": "2024-05-06T12:30:00Z",
                                                "updatedAt": "2024-05-06T12:30:00Z"}}},
}


def test_cursor_resume_emits_nothing_twice(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    first_page = json.loads(payload("comments_h5Rk2mNqT0w_page1.json"))
    newer = {**first_page, "items": [NEW_COMMENT, *first_page["items"]]}
    # second poll: the video gets one new comment on top; the page still links to the old page 2
    fake.comments[("h5Rk2mNqT0w", None)] = [Reply(body=payload("comments_h5Rk2mNqT0w_page1.json")),
                                           Reply(json=newer)]
    first, second = poll_chain(make_source(fake), 2)

    first_ids = {r["post_id"] for r in rows(first)}
    second_ids = {r["post_id"] for r in rows(second)}
    assert second_ids == {"UgNEWcomment0001AaABAg"}
    assert not first_ids & second_ids

    # the second search resumes from the newest video minus the overlap, not from the look-back
    searches = fake_service.seen("/youtube/v3/search")
    assert searches[-1].query["publishedAfter"] == "2024-05-06T09:45:12Z"
    # comments stop paging at already-seen comments; the closed video is not asked again
    second_calls = fake_service.seen("/youtube/v3/commentThreads")[4:]
    asked = sorted((c.query["videoId"], c.query.get("pageToken")) for c in second_calls)
    assert asked == [("Vb9cT4yHn2Q", None), ("h5Rk2mNqT0w", None)]
    assert {v["id"]: v["newest"] for v in second.next_cursor["videos"]}["h5Rk2mNqT0w"] == "2024-05-06T12:30:00.000Z"


def test_cursor_round_trips_and_a_third_poll_is_empty(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    first, second, third = poll_chain(make_source(fake), 3)
    assert first.rows(POSTS.name) == 7
    assert second.rows(POSTS.name) == 0 and third.rows(POSTS.name) == 0
    assert second.next_cursor == first.next_cursor  # nothing new: the cursor stays as it was
    assert third.records[POSTS.name].schema == record_schema(POSTS)


def test_tracked_videos_are_bounded(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    (result,) = poll(make_source(fake, max_tracked_videos=2), None)
    assert [v["id"] for v in result.next_cursor["videos"]] == ["h5Rk2mNqT0w", "Zq3pL8sVx1E"]  # newest first


def test_a_video_dropped_from_tracking_is_not_taken_back_by_the_overlap(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    # two tracked videos at most: the oldest (Vb9cT4yHn2Q) drops out, but stays in the overlap window
    first, second = poll_chain(make_source(fake, max_tracked_videos=2, overlap=dt.timedelta(hours=6)), 2)
    assert "Vb9cT4yHn2Q" not in {v["id"] for v in first.next_cursor["videos"]}
    assert "Vb9cT4yHn2Q" in first.next_cursor["recent"]
    assert second.rows(POSTS.name) == 0
    asked_second = [c.query["videoId"] for c in fake_service.seen("/youtube/v3/commentThreads")[4:]]
    assert "Vb9cT4yHn2Q" not in asked_second


def test_comment_at_the_same_second_as_the_mark_is_not_lost(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    same_second = json.loads(json.dumps(NEW_COMMENT))
    same_second["id"] = same_second["snippet"]["topLevelComment"]["id"] = "UgSAMEsecond0002AaABAg"
    same_second["snippet"]["topLevelComment"]["snippet"]["publishedAt"] = "2024-05-06T11:20:05Z"
    page1 = json.loads(payload("comments_h5Rk2mNqT0w_page1.json"))
    fake.comments[("h5Rk2mNqT0w", None)] = [Reply(json=page1),
                                           Reply(json={**page1, "items": [same_second, *page1["items"]]})]
    _, second = poll_chain(make_source(fake), 2)
    assert {r["post_id"] for r in rows(second)} == {"UgSAMEsecond0002AaABAg"}


# --- HTTP trouble --------------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: [Reply(429, headers={"Retry-After": "9"}), Reply(body=payload("search_empty.json"))]}
    sleep = RecordingSleep()
    (result,) = poll(make_source(fake, sleep), None)
    assert sleep.calls == [9.0]
    assert len(fake_service.seen("/youtube/v3/search")) == 2 and result.rows(POSTS.name) == 0


def test_500_then_success(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    fake.comments[("Vb9cT4yHn2Q", None)] = [Reply(500), Reply(body=payload("comments_Vb9cT4yHn2Q.json"))]
    sleep = RecordingSleep()
    (result,) = poll(make_source(fake, sleep), None)
    assert "UgyB5nM7qW9eR1tY3uI5AaABAg" in {r["post_id"] for r in rows(result)}
    assert len(sleep.calls) == 1 and 0 <= sleep.calls[0] <= 0.5


def test_timeout_is_retried_then_gives_up(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: [Reply(delay_s=1.0), Reply(body=payload("search_empty.json"))]}
    (result,) = poll(make_source(fake, timeout_s=0.2), None)
    assert result.rows(POSTS.name) == 0 and len(fake_service.seen("/youtube/v3/search")) == 2

    fake.search = {None: [Reply(delay_s=1.0)]}
    with pytest.raises(FetchError, match="failed after 2 attempts") as e:
        poll(make_source(fake, timeout_s=0.2, max_attempts=2), None)
    assert KEY not in str(e.value)


def test_401_is_a_clear_auth_error_after_one_request(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: Reply(401, json={"error": {"code": 401, "message": "Request is missing required "
                                                    "authentication credential."}})}
    with pytest.raises(AuthError, match="HTTP 401") as e:
        poll(make_source(fake), None)
    assert KEY not in str(e.value)
    assert len(fake_service.seen("/youtube/v3/search")) == 1


def test_invalid_key_is_an_auth_error_that_names_the_setting(fake_service, caplog) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: Reply(400, body=payload("error_keyInvalid.json"), content_type="application/json")}
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError, match="SENTINEL_YOUTUBE_API_KEY") as e:
        poll(make_source(fake), None)
    assert KEY not in str(e.value) and KEY not in caplog.text
    assert len(fake_service.seen("/youtube/v3/search")) == 1


def test_quota_exceeded_fails_the_poll_at_once(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: Reply(403, body=payload("error_quotaExceeded.json"), content_type="application/json")}
    with pytest.raises(AuthError, match=r"API quota exhausted \(quotaExceeded\) on search") as e:
        poll(make_source(fake), None)
    assert KEY not in str(e.value)
    assert len(fake_service.seen("/youtube/v3/search")) == 1


def test_quota_exhausted_while_reading_comments_fails_the_poll(fake_service) -> None:
    # quota running out mid-poll is no reason to close the video: it fails the poll
    fake = FakeYouTube(fake_service).happy()
    quota = Reply(403, body=payload("error_quotaExceeded.json"), content_type="application/json")
    fake.comments = {key: quota for key in fake.comments}
    with pytest.raises(AuthError, match=r"API quota exhausted \(quotaExceeded\) on commentThreads"):
        poll(make_source(fake), None)
    assert len(fake_service.seen("/youtube/v3/commentThreads")) == 1


def test_refusal_reasons_are_read_from_the_error_body() -> None:
    url = "https://www.googleapis.com/youtube/v3/commentThreads"
    quota = AuthError("youtube: HTTP 403", status=403, body=payload("error_quotaExceeded.json"))
    explained = _explain(quota, "commentThreads")
    assert isinstance(explained, AuthError) and "API quota exhausted (quotaExceeded)" in str(explained)
    assert explained.body == quota.body and explained.status == 403
    disabled = AuthError("youtube: HTTP 403", status=403, body=payload("error_commentsDisabled.json"))
    assert error_reason(disabled) == "commentsDisabled"
    closed = _explain(disabled, "commentThreads")
    assert not isinstance(closed, AuthError) and closed.reason == "commentsDisabled"  # type: ignore[attr-defined]
    # a refusal naming no reason stays an AuthError that lists the likely causes
    unexplained = _explain(AuthError("youtube: HTTP 403", status=403, body=b"<html>Forbidden</html>"), "commentThreads")
    assert isinstance(unexplained, AuthError) and "daily quota is exhausted" in str(unexplained)
    missing = _explain(HttpStatusError(404, url, b'{"error": {"errors": [{"reason": "videoNotFound"}]}}'),
                       "commentThreads")
    assert missing.reason == "videoNotFound"  # type: ignore[attr-defined]
    newer_format = HttpStatusError(400, url, b'{"error": {"code": 400, "status": "INVALID_ARGUMENT"}}')
    assert error_reason(newer_format) == "INVALID_ARGUMENT" and _explain(newer_format, "search") is newer_format


def test_comments_disabled_on_one_video_does_not_fail_the_poll(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    fake.comments[("h5Rk2mNqT0w", None)] = Reply(403, body=payload("error_commentsDisabled.json"),
                                                 content_type="application/json")
    (result,) = poll(make_source(fake), None)
    assert result.meta["skipped"] == 2
    assert "UgyB5nM7qW9eR1tY3uI5AaABAg" in {r["post_id"] for r in rows(result)}
    closed = {v["id"]: v.get("closed") for v in result.next_cursor["videos"]}
    assert closed == {"h5Rk2mNqT0w": "commentsDisabled", "Zq3pL8sVx1E": "commentsDisabled", "Vb9cT4yHn2Q": None}


def test_a_closed_video_is_never_asked_again(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    results = poll_chain(make_source(fake), 3)
    asked = [c.query["videoId"] for c in fake_service.seen("/youtube/v3/commentThreads")]
    assert asked.count("Zq3pL8sVx1E") == 1  # the first poll learnt its comments are off
    assert [r.meta["closed_videos"] for r in results[1:]] == [[], []]


def test_deleted_video_is_skipped(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    del fake.comments[("Vb9cT4yHn2Q", None)]  # the fake answers 404 videoNotFound
    (result,) = poll(make_source(fake), None)
    assert {"video_id": "Vb9cT4yHn2Q", "reason": "videoNotFound"} in result.meta["closed_videos"]
    closed = {v["id"]: v.get("closed") for v in result.next_cursor["videos"]}
    assert closed["Vb9cT4yHn2Q"] == "videoNotFound"  # not asked again


# --- malformed and empty --------------------------------------------------------------------------


def test_malformed_json_is_a_source_error(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    fake.search = {None: Reply(body=b"<html><body>Service Unavailable</body></html>", content_type="text/html")}
    with pytest.raises(SourceError, match="search answered something that is not JSON"):
        poll(make_source(fake), None)
    fake.search = {None: Reply(json={"kind": "youtube#searchListResponse", "items": {"oops": 1}})}
    with pytest.raises(SourceError, match="no list of items"):
        poll(make_source(fake), None)


def test_one_malformed_comment_is_skipped_and_counted(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    doc = json.loads(payload("comments_Vb9cT4yHn2Q.json"))
    broken = json.loads(json.dumps(doc["items"][0]))
    broken["id"] = "UgBROKEN"
    del broken["snippet"]["topLevelComment"]["snippet"]["publishedAt"]
    fake.comments[("Vb9cT4yHn2Q", None)] = Reply(json={**doc, "items": [broken, *doc["items"]]})
    (result,) = poll(make_source(fake), None)
    assert result.meta["skipped"] == 2  # the broken comment and the video with comments disabled
    ids = {r["post_id"] for r in rows(result)}
    assert "UgBROKEN" not in ids and "UgyB5nM7qW9eR1tY3uI5AaABAg" in ids


def test_empty_result_keeps_the_cursor(fake_service) -> None:
    fake = FakeYouTube(fake_service)  # search finds nothing
    cursor = {"published_after": "2024-05-06T10:00:00.000Z", "recent": {}, "videos": []}
    first, second = poll(make_source(fake), None, cursor)
    for result in (first, second):
        assert result.rows(POSTS.name) == 0
        assert result.records[POSTS.name].schema == record_schema(POSTS)
    assert first.next_cursor is None and second.next_cursor == cursor


def test_unreadable_cursor_is_a_source_error(fake_service) -> None:
    fake = FakeYouTube(fake_service)
    with pytest.raises(SourceError, match="unreadable cursor"):
        poll(make_source(fake), {"videos": [{"no_id": 1}]})


# --- settings -------------------------------------------------------------------------------------


def test_missing_api_key_names_the_env_var() -> None:
    with pytest.raises(MissingCredentials, match="SENTINEL_YOUTUBE_API_KEY"):
        YouTubeSource.from_settings(Settings())


def test_from_settings_builds_queries_from_watch_tickers() -> None:
    source = YouTubeSource.from_settings(Settings(youtube_api_key="k", watch_tickers=["INFY", "IDEA"],
                                                  youtube_base_url="http://127.0.0.1:1/yt/", page_cap=3))
    assert source.queries == ['Infosys|INFY|"Vodafone Idea"|"IDEA share"']
    assert source.base_url == "http://127.0.0.1:1/yt" and source.page_cap == 3
    asyncio.run(source.close())


def test_long_term_lists_are_split_into_several_queries() -> None:
    terms = search_terms(["RELIANCE", "TCS", "HDFCBANK", "INFY", "ITC", "SUZLON", "YESBANK", "IDEA"])
    assert '"Tata Consultancy Services"' in terms and "ITC" in terms and terms.count("ITC") == 1
    queries = search_queries(terms, max_chars=60)
    assert len(queries) > 1 and all(len(q) <= 60 for q in queries)
    assert "|".join(queries).split("|") == terms


# --- the real recorded payload ---------------------------------------------------------------------


def test_real_comment_threads_response_parses(fake_service, shared_fixtures: Path) -> None:
    path = next((shared_fixtures / "youtube_commentthreads").glob("commentThreads_*.json"))
    body = path.read_bytes()
    doc = json.loads(body)
    video_id = doc["items"][0]["snippet"]["videoId"]
    fake = FakeYouTube(fake_service)
    fake.comments = {(video_id, None): Reply(body=body, content_type="application/json")}
    # the video was found by an earlier poll; its comments were never read
    cursor = {"published_after": "2023-12-04T00:00:00.000Z", "recent": {},
              "videos": [{"id": video_id, "published": "2023-12-03T00:00:00.000Z"}]}
    (result,) = poll(make_source(fake, page_cap=1), cursor)

    table = result.records[POSTS.name]
    assert table.num_rows == 100 and result.meta["skipped"] == 0
    assert pa.compute.count_distinct(table.column("post_id")).as_py() == 100
    threads = {t["snippet"]["topLevelComment"]["id"]: t for t in doc["items"]}
    for row in table.to_pylist():
        thread = threads[row["post_id"]]
        snippet = thread["snippet"]["topLevelComment"]["snippet"]
        assert row["author"] == snippet["authorDisplayName"] and row["author"]
        assert row["text"] == snippet["textOriginal"] and "&#39;" not in row["text"]
        assert row["ts"] == dt.datetime.fromisoformat(snippet["publishedAt"])
        assert row["engagement"] == snippet["likeCount"] + thread["snippet"]["totalReplyCount"]
        assert row["url"] == f"https://www.youtube.com/watch?v={video_id}&lc={row['post_id']}"
    assert sum(r["engagement"] for r in table.to_pylist()) == 96 + 26
    assert [p.body for p in result.raw if "commentThreads" in p.request] == [body]
    assert result.meta["truncated"]  # the response links a next page that page_cap=1 did not follow
    newest = max(t["snippet"]["topLevelComment"]["snippet"]["publishedAt"] for t in doc["items"])
    assert result.next_cursor["videos"][0]["newest"] == newest.replace("Z", ".000Z")


def test_real_payload_textdisplay_fallback(shared_fixtures: Path) -> None:
    # without textOriginal the adapter falls back to textDisplay, HTML entities unescaped
    path = next((shared_fixtures / "youtube_commentthreads").glob("commentThreads_*.json"))
    doc = json.loads(path.read_bytes())
    for item in doc["items"]:
        del item["snippet"]["topLevelComment"]["snippet"]["textOriginal"]
    page = parse_comment_threads(json.dumps(doc).encode(), NOW)
    assert len(page.items) == 100 and page.skipped == 0
    texts = [c.post.text for c in page.items]
    assert not any("&#39;" in t or "<br>" in t for t in texts)
    assert any("can't" in t for t in texts)


# --- replay from the raw zone -------------------------------------------------------------------


def _item_id(payload: RawPayload, position: int) -> str:
    item = json.loads(payload.body)["items"][position]
    if "/search" in request_url(payload.request):
        return f"video:{item['id']['videoId']}"
    return item["snippet"]["topLevelComment"]["id"]


def test_kept_answers_parse_to_the_polls_records(fake_service) -> None:
    fake = FakeYouTube(fake_service).happy()
    first_page = json.loads(payload("comments_h5Rk2mNqT0w_page1.json"))
    fake.comments[("h5Rk2mNqT0w", None)] = [Reply(body=payload("comments_h5Rk2mNqT0w_page1.json")),
                                           Reply(json={**first_page, "items": [NEW_COMMENT, *first_page["items"]]})]
    first, second = poll_chain(make_source(fake), 2)
    # every row is the video or comment at its raw_pos in the answer its raw_id names
    assert assert_replays("youtube", first, _item_id, lambda row: row["post_id"]) == {"posts": 7}
    assert assert_replays("youtube", second, _item_id, lambda row: row["post_id"]) == {"posts": 1}
    # what the key is sent with never reaches the request kept: the endpoint and the rest of the query do
    assert all(KEY not in p.request and "key=" not in p.request for p in first.raw + second.raw)
    assert [(r["post_id"], r[RAW_POS]) for r in rows(second)] == [("UgNEWcomment0001AaABAg", 0)]
    searches = [p for p in second.raw if "/search?" in p.request]
    comments = [p for p in second.raw if "videoId=h5Rk2mNqT0w" in p.request]
    # the search lists the videos the first poll emitted, and the video's page the comments it emitted
    assert {r["post_id"] for p in searches for r in skipped("youtube", p)} == \
        {r["post_id"] for r in rows(first) if r["post_id"].startswith("video:")}
    assert request_context(comments[0].request) == {"skip": f"1-{len(first_page['items'])}"}
    assert {r["post_id"] for r in skipped("youtube", comments[0])} <= {r["post_id"] for r in rows(first)}
