"""The shared high-water mark (Incremental) and page follower (Pager) the adapters read streams with."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from sentinel_ray.sources.incremental import Incremental
from sentinel_ray.sources.paging import Pager

UTC = dt.timezone.utc


def test_a_fresh_mark_takes_everything_and_tracks_the_newest() -> None:
    mark: Incremental[float] = Incremental()
    assert mark.is_new(5.0, "a") and not mark.is_older(1.0) and not mark.moved and mark.dump() is None
    for ts, item in [(5.0, "a"), (7.0, "b"), (3.0, "c"), (7.0, "d")]:
        mark.emit(ts, item)
    assert (mark.last_value, mark.last_ids, mark.moved) == (7.0, ["b", "d"], True)
    assert mark.dump() == {"ts": 7.0, "ids": ["b", "d"]} and mark.emitted_ids == {"a", "b", "c", "d"}


def test_the_boundary_is_deduplicated_against_the_start() -> None:
    mark = Incremental.load({"ts": 10.0, "ids": ["x", "a"]})
    assert not mark.is_new(10.0, "a") and mark.is_new(10.0, "b") and mark.is_new(11.0, "a")
    assert not mark.is_new(9.0, "z") and mark.is_older(9.0) and not mark.is_older(10.0)
    assert not mark.is_new(10.0)  # without an id, the value itself says "seen"
    mark.emit(10.0, "b")
    assert mark.last_ids == ["x", "a", "b"] and mark.dump() == {"ts": 10.0, "ids": ["a", "b", "x"]}
    assert mark.is_new(10.0, "b")  # is_new compares with the start, not with what this poll emitted


def test_nothing_emitted_leaves_the_mark_unmoved_and_codecs_round_trip() -> None:
    stored = {"ts": "2025-04-01T10:00:00Z", "ids": ["2", "1"]}
    mark = Incremental.load(stored, decode=lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")))
    assert mark.start_value == dt.datetime(2025, 4, 1, 10, tzinfo=UTC) and not mark.moved
    assert mark.dump(encode=lambda t: t.isoformat().replace("+00:00", "Z")) == {"ts": "2025-04-01T10:00:00Z", "ids": ["1", "2"]}
    assert Incremental.load(None).start_value is None and Incremental.load({}).dump() is None
    assert Incremental.load({"newest": 3, "ids_at_newest": ["q"]}, value="newest", ids="ids_at_newest").last_ids == ["q"]


def test_values_without_ids_track_a_plain_maximum() -> None:
    mark: Incremental[int] = Incremental(100)
    mark.emit(90)
    assert not mark.moved  # an older value does not move the mark back
    mark.emit(120)
    mark.emit(110)
    assert (mark.last_value, mark.last_ids, mark.moved) == (120, [], True)


def pages_of(listing: dict[str | None, tuple[str, str | None]], **options) -> tuple[Pager, list[str | None]]:
    asked: list[str | None] = []

    async def fetch(token: str | None) -> tuple[str, str | None]:
        asked.append(token)
        return listing[token]

    return Pager(fetch, lambda page: page[1], **options), asked


def collect(pager: Pager, stop_at: str | None = None) -> list[str]:
    async def run() -> list[str]:
        got = []
        async for page, _ in pager:
            got.append(page)
            if page == stop_at:
                break
        return got

    return asyncio.run(run())


LISTING = {None: ("p1", "t2"), "t2": ("p2", "t3"), "t3": ("p3", None)}


def test_pager_follows_tokens_to_the_last_page() -> None:
    pager, asked = pages_of(LISTING, limit=10)
    assert collect(pager) == ["p1", "p2", "p3"] and asked == [None, "t2", "t3"]
    assert (pager.pages, pager.truncated) == (3, False)


def test_pager_stops_at_the_limit_and_says_so() -> None:
    pager, asked = pages_of(LISTING, limit=2)
    assert collect(pager) == ["p1", "p2"] and asked == [None, "t2"] and pager.truncated


def test_a_consumer_that_stops_early_is_not_truncated() -> None:
    pager, asked = pages_of(LISTING, limit=2)
    assert collect(pager, stop_at="p2") == ["p1", "p2"] and asked == [None, "t2"] and not pager.truncated
    pager, asked = pages_of(LISTING, limit=10)
    assert collect(pager, stop_at="p1") == ["p1"] and asked == [None]


def test_repeated_tokens_end_the_listing_only_when_asked_to() -> None:
    looping = {None: ("p1", "t"), "t": ("p2", "t")}
    pager, asked = pages_of(looping, limit=5, stop_on_repeat=True)
    assert collect(pager) == ["p1", "p2"] and asked == [None, "t"] and not pager.truncated
    pager, asked = pages_of(looping, limit=4)
    assert collect(pager) == ["p1", "p2", "p2", "p2"] and asked == [None, "t", "t", "t"] and pager.truncated


def test_offsets_and_tokens_from_the_consumer() -> None:
    seen: list[int] = []

    async def fetch(offset: int | None) -> int:
        return offset or 0

    pager = Pager(fetch, lambda _: seen[-1] + 1 if seen[-1] < 3 else None, limit=10, first=1)

    async def run() -> None:
        async for offset in pager:
            seen.append(offset)

    asyncio.run(run())
    assert seen == [1, 2, 3] and pager.pages == 3
    with pytest.raises(ValueError):
        Pager(fetch, lambda _: None, limit=0)
