"""The posts dataset as every social and news adapter emits it (Reddit, X, Telegram, YouTube, RSS).

Adapters parse their service's items into `PostItem`s; `posts_table` turns them into one
table in `POSTS.record_schema`, column by column, extracting the tickers each text names
(all texts in one `extract_tickers` call) and leaving `run_id` null for the pipeline.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.tickers import extract_tickers


@dataclass(frozen=True, slots=True)
class PostItem:
    """One post, comment, message or headline, before its tickers are extracted."""

    post_id: str
    author: str | None
    text: str
    ts: dt.datetime | None  # published, UTC; None when the service's date was unreadable (validation decides)
    url: str | None
    engagement: int | None  # likes + replies + shares as the platform counts them; None when it shows none
    ingested_at: dt.datetime  # when the response carrying it was received


def posts_table(posts: Sequence[PostItem], *, platform: str, source: str) -> pa.Table:
    """`posts` as a table in POSTS.record_schema (`platform` and `source` on every row, run_id null)."""
    schema = POSTS.record_schema
    n = len(posts)
    texts = [p.text for p in posts]

    def column(name: str, values: list) -> pa.Array:
        return pa.array(values, schema.field(name).type)

    return pa.Table.from_pydict({
        "platform": column("platform", [platform] * n),
        "post_id": column("post_id", [p.post_id for p in posts]),
        "author": column("author", [p.author for p in posts]),
        "text": column("text", texts),
        "ts": column("ts", [p.ts for p in posts]),
        "url": column("url", [p.url for p in posts]),
        "engagement": column("engagement", [p.engagement for p in posts]),
        "tickers": column("tickers", extract_tickers(texts)),
        "source": column("source", [source] * n),
        "run_id": pa.nulls(n, schema.field("run_id").type),
        "ingested_at": column("ingested_at", [p.ingested_at for p in posts]),
    }, schema=schema)
