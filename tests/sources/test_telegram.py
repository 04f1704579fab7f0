"""TelegramSource: public channel previews (t.me/s/<channel>) through the shared HttpClient, parsed with selectolax."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from sentinel_ray.config import Settings, TelegramSettings
from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.schemas import POSTS
from selectolax.lexbor import LexborHTMLParser

from sentinel_ray.records import RAW_POS, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context
from sentinel_ray.sources.http import AuthError
from sentinel_ray.sources.telegram import TelegramSource, parse_page, parse_views
from tests.fakes.server import Reply
from tests.sources.helpers import UTC, RecordingSleep, assert_replays, fast_client, fetch_once as fetch, payloads, skipped

CHANNEL = "dalal_rockets"
PATH = f"/s/{CHANNEL}"
body = payloads("telegram")


def html(payload: bytes) -> Reply:
    return Reply(body=payload, content_type="text/html")


def channel_pages(request) -> Reply:
    """The preview as Telegram serves it: the newest page, or the page after a message id."""
    after = request.query.get("after")
    return html(body({None: "latest.html", "104": "after_104.html", "106": "after_106.html"}.get(after, "empty.html")))


def source(fake, *steps: Any, channels: list[str] | None = None, path: str = PATH, timeout_s: float = 2.0,
           page_cap: int = 10) -> tuple[TelegramSource, RecordingSleep]:
    fake.route("GET", path, *(steps or (channel_pages,)))
    sleep = RecordingSleep()
    http = fast_client("telegram", sleep, timeout_s=timeout_s)
    settings = TelegramSettings(channels=channels or [CHANNEL], base_url=fake.url, page_cap=page_cap)
    return TelegramSource(settings, http=http), sleep


def test_happy_path_first_poll_reads_the_newest_page(fake_service) -> None:
    src, sleep = source(fake_service)
    result = fetch(src)
    table = result.records["posts"]
    assert table.schema == record_schema(POSTS)
    assert table.column("tickers").null_count == table.num_rows  # found by the pipeline's enrich step
    tickers = enrich(table, POSTS).column("tickers").to_pylist()
    rows = table.to_pylist()
    assert [r["post_id"] for r in rows] == ["dalal_rockets/101", "dalal_rockets/103", "dalal_rockets/104"]
    first = rows[0]
    assert first["platform"] == "telegram" and first["source"] == "telegram" and first["run_id"] is None
    assert first["text"] == "🚀 $SUZLON breakout loading! Target 80 🎯\n\nBuy before 9:15, don't miss the rocket 🚀"
    assert first["ts"] == dt.datetime(2026, 11, 26, 3, 50, 12, tzinfo=UTC)
    assert first["url"] == "https://t.me/dalal_rockets/101"
    assert first["author"] == "dalal_rockets" and first["engagement"] == 1200
    assert tickers[0] == ["SUZLON"]
    forwarded = rows[1]
    assert forwarded["author"] == "VIP Rocket Calls" and forwarded["engagement"] == 2_500_000
    assert forwarded["text"] == "Yes Bank & Vodafone Idea: operator accumulation\nCharts → t.me/vip_rockets/77"
    assert tickers[1] == ["YESBANK", "IDEA"]
    assert rows[2]["text"] == "Target 1 done ✅ booked 20%"  # the quoted post it replies to is not its text
    assert result.meta["skipped"] == 1  # 102 is a sticker
    assert [p.body for p in result.raw] == [body("latest.html")] and result.raw[0].content_type == "text/html"
    assert fake_service.seen(PATH)[0].query == {}
    assert result.next_cursor == {"last_id": {CHANNEL: 104}} and sleep.calls == []


def test_pagination_after_the_cursor_until_the_newest_page(fake_service) -> None:
    src, _ = source(fake_service)
    result = fetch(src, {"last_id": {CHANNEL: 104}})
    assert [r.query.get("after") for r in fake_service.seen(PATH)] == ["104", "106"]
    rows = result.records["posts"].to_pylist()
    assert [r["post_id"] for r in rows] == ["dalal_rockets/105", "dalal_rockets/106", "dalal_rockets/107"]
    assert rows[0]["text"] == "Next pick: IDEA share, 10x from here"  # nested text blocks read once
    tickers = enrich(result.records["posts"], POSTS).column("tickers").to_pylist()
    assert tickers[0] == ["IDEA"] and tickers[1] == ["INFY"]
    assert [r["engagement"] for r in rows] == [4100, 3000, 812]
    assert result.next_cursor == {"last_id": {CHANNEL: 107}}


def test_page_cap_stops_and_the_next_poll_continues(fake_service) -> None:
    src, _ = source(fake_service, page_cap=1)
    first = fetch(src, {"last_id": {CHANNEL: 104}})
    assert first.records["posts"].column("post_id").to_pylist() == ["dalal_rockets/105", "dalal_rockets/106"]
    second = fetch(src, first.next_cursor)
    assert second.records["posts"].column("post_id").to_pylist() == ["dalal_rockets/107"]
    assert [r.query.get("after") for r in fake_service.seen(PATH)] == ["104", "106"]


def test_cursor_resume_never_re_emits(fake_service) -> None:
    src, _ = source(fake_service)
    polls, cursor = [], None
    for _ in range(4):
        result = fetch(src, cursor)
        polls.append(result.records["posts"].column("post_id").to_pylist())
        cursor = result.next_cursor
    everything = [p for poll in polls for p in poll]
    assert len(everything) == len(set(everything)) == 6
    assert polls[2] == polls[3] == []  # caught up: nothing new, cursor unchanged
    assert cursor == {"last_id": {CHANNEL: 107}}


def test_several_channels_each_with_its_cursor(fake_service) -> None:
    fake_service.route("GET", "/s/other_channel", html(body("empty.html")))
    src, _ = source(fake_service, channels=[CHANNEL, "@other_channel"])
    result = fetch(src, {"last_id": {"other_channel": 9}})
    assert result.rows("posts") == 3
    assert result.next_cursor == {"last_id": {"other_channel": 9, CHANNEL: 104}}
    assert fake_service.seen("/s/other_channel")[0].query == {"after": "9"}


def test_429_with_retry_after(fake_service) -> None:
    src, sleep = source(fake_service, Reply(429, headers={"Retry-After": "7"}), channel_pages)
    assert fetch(src).rows("posts") == 3
    assert sleep.calls == [7.0]


def test_500_then_success(fake_service) -> None:
    src, sleep = source(fake_service, Reply(500), Reply(502), channel_pages)
    assert fetch(src).rows("posts") == 3
    assert len(sleep.calls) == 2 and 0 <= sleep.calls[0] <= 1.0 and 0 <= sleep.calls[1] <= 2.0


def test_timeout_is_retried(fake_service) -> None:
    src, sleep = source(fake_service, Reply(delay_s=0.8), channel_pages, timeout_s=0.25)
    assert fetch(src).rows("posts") == 3
    assert len(sleep.calls) == 1


def test_a_page_that_is_not_a_channel_preview_is_an_error(fake_service) -> None:
    src, _ = source(fake_service, html(b"<html><head><title>Telegram: Contact @nobody</title></head>"
                                       b"<body><div class='tgme_page'>If you have Telegram...</div></body></html>"))
    with pytest.raises(SourceError, match="not a public channel preview page.*Contact @nobody"):
        fetch(src)


def test_a_malformed_message_is_skipped_and_counted(fake_service) -> None:
    page = body("latest.html").replace(b'datetime="2026-11-26T04:02:05+00:00"', b'datetime="yesterday"')
    src, _ = source(fake_service, html(page))
    result = fetch(src)
    assert result.records["posts"].column("post_id").to_pylist() == ["dalal_rockets/101", "dalal_rockets/104"]
    assert result.meta["skipped"] == 2  # the unreadable post and the sticker


def test_empty_result_keeps_the_cursor(fake_service) -> None:
    src, _ = source(fake_service, html(body("empty.html")))
    result = fetch(src)
    assert result.rows("posts") == 0 and result.records["posts"].schema == record_schema(POSTS)
    assert result.next_cursor is None
    src, _ = source(fake_service, html(body("empty.html")))
    assert fetch(src, {"last_id": {CHANNEL: 104}}).next_cursor == {"last_id": {CHANNEL: 104}}


@pytest.mark.parametrize("status", [401, 403])
def test_refusal_is_a_clear_auth_error(fake_service, status: int) -> None:
    src, sleep = source(fake_service, Reply(status))
    with pytest.raises(AuthError, match=f"HTTP {status}"):
        fetch(src)
    assert len(fake_service.seen(PATH)) == 1 and sleep.calls == []


def test_needs_no_credentials() -> None:
    src = TelegramSource.from_settings(Settings(telegram_channels="dalal_rockets, @nifty_updates"))
    assert (src.name, src.datasets, src.credentials) == ("telegram", ("posts",), ())
    assert src.channels == ["dalal_rockets", "nifty_updates"]


def test_view_counts() -> None:
    assert [parse_views(v) for v in ("1.2K", "33.4K", "987", "2.5M", "1", " 15.3k ", "", None, "n/a")] == [
        1200, 33400, 987, 2_500_000, 1, 15300, None, None, None]


# ---- real recorded previews (t.me/s markup captured by rust-any2feed) ------------------------------


def serve_real(fake, folder: Path, name: str) -> TelegramSource:
    src, _ = source(fake, html((folder / name).read_bytes()), path="/s/real_channel", channels=["real_channel"])
    return src


def test_real_full_page(fake_service, shared_fixtures: Path) -> None:
    folder = shared_fixtures / "telegram_preview_html"
    result = fetch(serve_real(fake_service, folder, "full.html"))
    rows = result.records["posts"].to_pylist()
    ids = [70989, 70990, 70992, 70995, 70996, 70997, 70998, 70999, 71000, 71006, 71007, 71008]
    assert [r["post_id"] for r in rows] == [f"topwar_official/{i}" for i in ids]
    assert result.meta["skipped"] == 0 and result.next_cursor == {"last_id": {"real_channel": 71008}}
    assert rows[0]["ts"] == dt.datetime(2023, 2, 28, 7, 47, 53, tzinfo=UTC)
    assert rows[-1]["ts"] == dt.datetime(2023, 2, 28, 13, 14, 3, tzinfo=UTC)
    assert rows[0]["engagement"] == 37200 and rows[0]["url"] == "https://t.me/topwar_official/70989"
    assert rows[3]["text"] == ('План "Ковер" отменен, небо над Санкт-Петербургом открывают, '
                               'сообщает источник РЕН ТВ.')  # &quot; unescaped
    assert rows[6]["text"].startswith("Новые ракетные корабли ВМФ РФ с Калибрами вышли на учения в Балтийское море\n\n")
    assert rows[6]["author"] == "БелВПО"  # forwarded
    assert rows[2]["text"].count("Сегодня ночью в Республике Адыгея") == 1  # nested text blocks read once
    assert all(r["text"] and "  " not in r["text"] for r in rows)
    assert result.raw[0].body == (folder / "full.html").read_bytes()
    page = parse_page((folder / "full.html").read_bytes())
    assert page.before == 70989 and not page.has_newer  # the newest page links only to older posts


def test_page_links_to_neighbours() -> None:
    assert (parse_page(body("after_104.html")).has_newer, parse_page(body("after_104.html")).before) == (True, 105)
    assert parse_page(body("after_106.html")).has_newer is False


REAL_SINGLE = {  # file -> (post, UTC time, views, text or None when the post has none)
    "message_text.html": ("topwar_official/70991", "2023-02-28T08:48:01", 33400,
                          "Неопознанный летающий объект замечен в 160 – 200 км от Петербурга\n\nПо данным"),
    "message_media_forwarded_from.html": ("oper_goblin/22358", "2023-02-27T07:20:50", 214400,
                                          "Британская разведка выяснила, почему Ким Чен Ын начал выводить дочку в свет"),
    "message_link_preview.html": ("oper_goblin/22360", "2023-02-27T07:33:14", 226200,
                                  "https://vnnews.ru/georgiy-zotov-okkupaciya-volosatym-kr/"),
    "message_link_preview_text_only.html": ("oper_goblin/22368", "2023-02-27T15:08:05", 246800,
                                            "http://publication.pravo.gov.ru/Document/View/0001202302270011"),
    "message_link_preview_video.html": ("fighter_bomber/11226", "2023-03-01T07:37:02", 69400,
                                        "Жениться вам, барин, пора! 😁\n\nhttps://t.me/shalnyak/5410"),
    "message_media_file.html": ("oper_goblin/16936", "2022-08-03T19:31:10", 171900, "Центр изучения новых"),
    "message_media_photo_and_video.html": ("anna_news/46908", "2023-02-28T06:48:36", 59500,
                                           "Ночью над Белгородом сбили 3 беспилотника\n\nОни упали на улицы города."),
    "message_voice.html": ("oper_goblin/939", "2018-04-24T15:28:46", 746, "Обсудили:\n\n- Сталина не забыть"),
    "message_with_from_author.html": ("channel/4", "2023-02-28T16:38:34", 1, "test"),
    "message_poll.html": ("it_begin/488", "2023-02-27T16:21:02", 1100, "Как лучше?\nНесколько постов в день"),
    "message_sticker.html": ("channel/5", "2023-03-01T08:01:50", 1, None),
    "message_media_round_video.html": ("bolshiepushki/3495", "2023-03-01T09:35:31", 54200, None),
}


@pytest.mark.parametrize("name", sorted(REAL_SINGLE))
def test_real_single_messages(fake_service, shared_fixtures: Path, name: str) -> None:
    post, when, views, text = REAL_SINGLE[name]
    result = fetch(serve_real(fake_service, shared_fixtures / "telegram_preview_html", name))
    if text is None:
        assert result.rows("posts") == 0 and result.meta["skipped"] == 1
        assert result.next_cursor == {"last_id": {"real_channel": int(post.split("/")[1])}}
        return
    (row,) = result.records["posts"].to_pylist()
    assert row["post_id"] == post and row["url"] == f"https://t.me/{post}"
    assert row["ts"] == dt.datetime.fromisoformat(when).replace(tzinfo=UTC)
    assert row["engagement"] == views and row["text"].startswith(text)


def test_real_fragments_are_not_pages(shared_fixtures: Path) -> None:
    # fragments of a post (media, link preview, poll markup alone): no post, no channel history
    folder = shared_fixtures / "telegram_preview_html"
    fragments = sorted(p for p in folder.glob("*.html") if not p.name.startswith(("message_", "full")))
    assert len(fragments) == 8
    for path in fragments:
        with pytest.raises(SourceError, match="not a public channel preview page"):
            parse_page(path.read_bytes(), path.name)


# --- replay from the raw zone -------------------------------------------------------------------


def _data_post(payload: RawPayload, position: int) -> str:
    return LexborHTMLParser(payload.body.decode()).css("div.tgme_widget_message")[position].attributes["data-post"]


def test_kept_pages_parse_to_the_polls_records(fake_service) -> None:
    src, _ = source(fake_service)
    polls, cursor = [], None
    for _ in range(3):
        polls.append(fetch(src, cursor))
        cursor = polls[-1].next_cursor
    for result in polls:  # every row is the message at its raw_pos (its block) in the page its raw_id names
        assert_replays("telegram", result, _data_post, lambda row: row["post_id"])
    assert [r[RAW_POS] for r in polls[0].records["posts"].to_pylist()] == [0, 2, 3]  # 102, a sticker, is no post


def test_a_page_showing_posts_emitted_before_says_so(fake_service) -> None:
    src, _ = source(fake_service, html(body("latest.html")))  # whatever `after` asks: 101..104
    result = fetch(src, {"last_id": {CHANNEL: 102}})
    assert assert_replays("telegram", result, _data_post, lambda row: row["post_id"]) == {"posts": 2}
    assert [(r["post_id"], r[RAW_POS]) for r in result.records["posts"].to_pylist()] == [
        (f"{CHANNEL}/103", 2), (f"{CHANNEL}/104", 3)]
    [page] = result.raw
    assert request_context(page.request) == {"skip": "0"}  # 102, a sticker, is no post: nothing to skip
    assert [r["post_id"] for r in skipped("telegram", page)] == [f"{CHANNEL}/101"]
