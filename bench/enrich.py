"""Enrich-step throughput on posts, one core (no Ray): tickers + sentiment + promo score and evidence.

    .venv/bin/python bench/enrich.py [--posts 200000] [--batch 0]

Builds `--posts` posts from replay days (regular chatter and episodes' tip-channel posts)
plus the real pump-channel messages of ../shared/fixtures/real/telegram_pump_messages when
present, conformed as the pipeline sees them with tickers and the derived columns null (as
adapters hand them over), then times `enrich` over them: in one call, or in batches of
`--batch` rows. Also times the sentiment + promo part alone (rows that already carry tickers,
as replay and tagged senders do). Ends with one JSON line: posts_s, promo_sentiment_posts_s, posts.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path

import pyarrow as pa

from sentinel_ray.pipeline.clean import conform, normalise
from sentinel_ray.pipeline.enrich import enrich, fill_promotion
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import POSTS
from sentinel_ray.sources.replay import ReplaySource

MESSAGES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real" / "telegram_pump_messages" / \
    "messages.ndjson"


def posts(n: int) -> pa.Table:
    source, now = ReplaySource(posts_per_day=20_000, pump_probability=1.0), utc_now()
    tables, rows, day = [], 0, dt.date(2026, 10, 1)
    if MESSAGES.exists():
        texts = [json.loads(line)["text"] for line in MESSAGES.read_text(encoding="utf-8").splitlines() if line]
        tables.append(pa.table({"platform": ["telegram"] * len(texts), "post_id": [str(i) for i in range(len(texts))],
                                "text": texts, "ts": [now] * len(texts)}))
        rows += len(texts)
    while rows < n:
        t = source.generate_day(day, run_id="bench", ingested_at=now).records[POSTS.name]
        tables.append(t)
        rows += t.num_rows
        day += dt.timedelta(days=1)
    conformed = [normalise(conform(t, POSTS)[0], POSTS) for t in tables]
    table = pa.concat_tables(conformed).slice(0, n)
    return table.set_column(table.schema.get_field_index("tickers"), "tickers",
                            pa.nulls(table.num_rows, table.schema.field("tickers").type)).combine_chunks()


def timed(fn, table: pa.Table, batch: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    if batch <= 0:
        fn(table)
    else:
        for lo in range(0, table.num_rows, batch):
            fn(table.slice(lo, batch))
    return table.num_rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=0, help="rows per enrich call (0: the whole table at once)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    table = posts(args.posts)
    enrich(table.slice(0, 1000), POSTS)  # load the lexicons and the model outside the timing
    whole = timed(lambda t: enrich(t, POSTS), table, args.batch)
    tagged = table.set_column(table.schema.get_field_index("tickers"), "tickers",
                              pa.array([[]] * table.num_rows, table.schema.field("tickers").type))
    promo_only = timed(fill_promotion, tagged, args.batch)
    out = enrich(table.slice(0, 20_000), POSTS)
    flagged = sum(out.column("is_pump_signal").to_pylist())
    print(f"{table.num_rows} posts: enrich {whole:,.0f} posts/s; sentiment + promo alone {promo_only:,.0f} posts/s; "
          f"{flagged} of the first 20,000 flagged as pump signals")
    print(json.dumps({"posts_s": round(whole), "promo_sentiment_posts_s": round(promo_only), "posts": table.num_rows,
                      "batch": args.batch}))


if __name__ == "__main__":
    main()
