"""The posts dataset as every social and news adapter emits it (Reddit, X, Telegram, YouTube, RSS).

Adapters parse their service's items into `PostItem`s; `posts_table` turns them into one
table in `POSTS.record_schema` (lineage aside: `lineage.finish` adds it), column by column.
`tickers` and `run_id` are left null for the pipeline: its enrich step finds the tickers in
the text, for every source alike.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.lineage import payload_schema


@dataclass(frozen=True, slots=True)
class PostItem:
    """One post, comment, message or headline, as the service gave it (tickers are the pipeline's to find)."""

    post_id: str
    author: str | None
    text: str
    ts: dt.datetime | None  # published, UTC; None when the service's date was unreadable (validation decides)
    url: str | None
    engagement: int | None  # likes + replies + shares as the platform counts them; None when it shows none
    ingested_at: dt.datetime  # when the response carrying it was received


def posts_table(posts: Sequence[PostItem], *, platform: str, source: str) -> pa.Table:
    """`posts` as a table in POSTS.record_schema, lineage aside (`lineage.payload_schema`:
    `platform` and `source` on every row, tickers and run_id null)."""
    schema = payload_schema(POSTS)
    n = len(posts)

    def column(name: str, values: list) -> pa.Array:
        return pa.array(values, schema.field(name).type)

    return pa.Table.from_pydict({
        "platform": column("platform", [platform] * n),
        "post_id": column("post_id", [p.post_id for p in posts]),
        "author": column("author", [p.author for p in posts]),
        "text": column("text", [p.text for p in posts]),
        "ts": column("ts", [p.ts for p in posts]),
        "url": column("url", [p.url for p in posts]),
        "engagement": column("engagement", [p.engagement for p in posts]),
        "tickers": pa.nulls(n, schema.field("tickers").type),
        "source": column("source", [source] * n),
        "run_id": pa.nulls(n, schema.field("run_id").type),
        "ingested_at": column("ingested_at", [p.ingested_at for p in posts]),
    }, schema=schema)
