"""The enrich step: tickers found in posts' text (English and Hinglish, with false-positive
traps), filled in for every batch whatever its source, before validation."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.pipeline.enrich import enrich
from sentinel_ray.pipeline.tickers import extract_tickers, tickers_in
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.schemas import POSTS, PRICES
from sentinel_ray.sources.posts import PostItem, posts_table
from sentinel_ray.sources.tickers import ticker_index
from tests.pipeline.rows import NOW, TS, post_row, price_row, table_of

CASES: list[tuple[str, list[str]]] = [
    # cashtags and hashtags
    ("$RELIANCE breaking out above 3000, target 3200", ["RELIANCE"]),
    ("$reliance $tcs $infy all green today", ["RELIANCE", "TCS", "INFY"]),
    ("#Suzlon #YesBank #IDEA penny stock rally continues", ["SUZLON", "YESBANK", "IDEA"]),
    ("Loaded more $SUZLON at 52, SL 48", ["SUZLON"]),
    ("#Infosys Q2 results beat estimates", ["INFY"]),
    # plain symbols in capitals
    ("ITC looking strong for the next quarter", ["ITC"]),
    ("TCS and WIPRO both fell after the US news", ["TCS", "WIPRO"]),
    ("HDFCBANK ICICIBANK AXISBANK - banking index leaders", ["HDFCBANK", "ICICIBANK", "AXISBANK"]),
    ("ONGC and COALINDIA dividend stocks for the long term", ["ONGC", "COALINDIA"]),
    ("NSE:LT breakout on the daily chart", ["LT"]),
    ("LT share crossed 3600 today", ["LT"]),
    ("BAJAJ-AUTO and M&M auto sales data out", ["BAJAJ-AUTO", "M&M"]),
    # company names
    ("Reliance Industries to demerge its new energy business", ["RELIANCE"]),
    ("Tata Motors EV sales up 40% YoY", ["TMPV"]),
    ("State Bank of India raises deposit rates", ["SBIN"]),
    ("Larsen & Toubro bags a mega order from the Middle East", ["LT"]),
    ("L&T order book at a record high", ["LT"]),
    ("Dr. Reddy's gets USFDA nod for a generic", ["DRREDDY"]),
    ("Vodafone Idea FPO subscribed 6 times", ["IDEA"]),
    ("Reliance Power hits upper circuit again", ["RPOWER"]),
    ("Zomato (now Eternal) delivery margins improve", ["ETERNAL"]),
    ("HDFC Bank and ICICI Bank report strong loan growth", ["HDFCBANK", "ICICIBANK"]),
    ("Sun Pharma, Cipla and Dr Reddys lead pharma gains", ["SUNPHARMA", "CIPLA", "DRREDDY"]),
    ("Adani Ports volumes up; Adani Enterprises flat", ["ADANIPORTS", "ADANIENT"]),
    ("infosys layoffs rumour denied by the company", ["INFY"]),
    ("Titan target 3800 after the festive quarter", ["TITAN"]),
    # Hinglish
    ("Bhai RELIANCE mein paisa lagao, 3200 jayega", ["RELIANCE"]),
    ("aaj TCS ka result aayega, dekhte hai", ["TCS"]),
    ("Suzlon ne phir se UC maar diya 🚀🚀", ["SUZLON"]),
    ("YESBANK kharido abhi, operator ki tip hai, 3x jayega", ["YESBANK"]),
    ("IDEA share 15 tak jayega pakka, abhi lelo", ["IDEA"]),
    ("Tata Steel aur JSW Steel dono gire aaj", ["TATASTEEL", "JSWSTEEL"]),
    ("GTLINFRA multibagger banega, operator andar hai", ["GTLINFRA"]),
    ("HCC aur IFCI mein volume bahut aa raha hai", ["HCC", "IFCI"]),
    # traps: ordinary words that must not become tickers
    ("it is what it is, market will do what it wants", []),
    ("I have an idea for a new trading journal", []),
    ("GREAT IDEA!!! thanks for sharing", []),
    ("LT;DR: the market is overvalued", []),
    ("The Titan submarine documentary was gripping", []),
    ("reliance on foreign investors is a risk for the rupee", []),
    ("yes bank holidays are coming up next week", []),
    ("indigo is my favourite colour", []),
    ("Trent Alexander-Arnold scored a screamer", []),
    ("we need a sun shade and a power grid for the farm", []),
    ("BEL AIR hotel was amazing", []),
    ("ITC? no, it's not in my portfolio", ["ITC"]),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_extraction_table(text: str, expected: list[str]) -> None:
    assert tickers_in(text) == expected


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert sum(1 for _, e in CASES if not e) >= 10  # false-positive traps


def test_batch_api_and_empty_inputs() -> None:
    assert extract_tickers(["$TCS", "", None, "no tickers here"]) == [["TCS"], [], [], []]


def test_every_shipped_symbol_is_reachable_by_cashtag() -> None:
    index = ticker_index()
    symbols = {a.symbol for a in index.aliases.values()}
    for symbol in symbols:
        assert tickers_in(f"${symbol}") == [symbol], symbol


def test_aliases_name_only_known_symbols() -> None:
    from sentinel_ray.reference import known_tickers

    known = set(known_tickers().to_pylist())
    assert {a.symbol for a in ticker_index().aliases.values()} <= known
    assert {a.rule for a in ticker_index().aliases.values()} <= {"any", "capitalized", "title", "upper", "context"}


# --- the enrich step on tables ------------------------------------------------------------------------

def _tickers(table: pa.Table) -> list[list[str] | None]:
    return table.column("tickers").to_pylist()


def test_enrich_fills_the_tickers_of_every_row_from_the_table_in_one_pass() -> None:
    texts = [text for text, _ in CASES]
    table = table_of(POSTS, [post_row(post_id=str(i), text=text, tickers=None) for i, text in enumerate(texts)])
    out = enrich(table, POSTS)
    assert _tickers(out) == [expected for _, expected in CASES]
    assert out.schema == table.schema
    assert out.drop_columns(["tickers"]).equals(table.drop_columns(["tickers"]))  # nothing else touched


def test_given_tickers_are_kept_and_only_missing_ones_found() -> None:
    """A sender's list (even []) is its statement about the post; only null means "not given"."""
    rows = [
        post_row(post_id="1", text="$TCS and $INFY", tickers=None),
        post_row(post_id="2", text="$TCS and $INFY", tickers=["ITC"]),
        post_row(post_id="3", text="$TCS and $INFY", tickers=[]),
        post_row(post_id="4", text="Reliance Power hits upper circuit", tickers=None),
        post_row(post_id="5", text=None, tickers=None),
    ]
    table = table_of(POSTS, rows)
    table = pa.concat_tables([table.slice(0, 2), table.slice(2)])  # several chunks, as streams deliver them
    assert _tickers(enrich(table, POSTS)) == [["TCS", "INFY"], ["ITC"], [], ["RPOWER"], []]


def test_enrich_is_idempotent_and_leaves_other_datasets_alone() -> None:
    table = table_of(POSTS, [post_row(text="$TCS breakout", tickers=None), post_row(post_id="2", tickers=None)])
    once = enrich(table, POSTS)
    assert _tickers(once) == [["TCS"], ["RELIANCE"]]
    assert enrich(once, POSTS) is once  # every row carries tickers: no work at all
    prices = table_of(PRICES, [price_row()])
    assert enrich(prices, PRICES) is prices


def test_enrich_of_an_empty_batch() -> None:
    empty = POSTS.record_schema.empty_table()
    assert enrich(empty, POSTS).num_rows == 0


# --- through process_batch: every source alike ------------------------------------------------------

POSTS_TEXT = [
    ("hook/1", "$SUZLON target 80 by Friday"),
    ("hook/2", "YESBANK operator news, buy now"),
    ("hook/3", "Tata Motors and Vodafone Idea dono gire aaj"),
    ("hook/4", "it is what it is, market will do what it wants"),
]
EXPECTED = [["SUZLON"], ["YESBANK"], ["TMPV", "IDEA"], []]


def _polled() -> pa.Table:
    """As an adapter hands its records over: built by posts_table, tickers left to the pipeline."""
    items = [PostItem(post_id, "bot", text, TS, None, None, TS) for post_id, text in POSTS_TEXT]
    return posts_table(items, platform="telegram", source="tg")


def _pushed() -> pa.Table:
    """As the webhook hands a push over: JSON-ish values, no `tickers` key at all."""
    from sentinel_ray.ingest.webhook import records_table

    records = [{"platform": "telegram", "post_id": post_id, "author": "bot", "text": text,
                "ts": TS.isoformat()} for post_id, text in POSTS_TEXT]
    return records_table("posts", "tg", records, TS)


def test_a_webhook_post_without_tickers_gets_the_same_tickers_as_a_polled_one() -> None:
    polled, pushed = _polled(), _pushed()
    assert polled.column("tickers").null_count == pushed.column("tickers").null_count == len(POSTS_TEXT)
    results = [process_batch(t, POSTS, now=NOW, run_id="r", ingested_at=TS) for t in (polled, pushed)]
    for result in results:
        assert result.rows_quarantined == 0, result.quarantined.to_pylist()
        assert result.valid.column("post_id").to_pylist() == [p for p, _ in POSTS_TEXT]
        assert _tickers(result.valid) == EXPECTED
    assert results[0].valid.equals(results[1].valid)  # exactly the same rows, whichever way they came


def test_tickers_are_missing_only_where_there_is_no_text() -> None:
    table = table_of(POSTS, [post_row(tickers=None), post_row(post_id="p2", text=None, tickers=None)])
    result = process_batch(table, POSTS, now=NOW)
    assert _tickers(result.valid) == [["RELIANCE"]]
    [rejected] = result.quarantined.to_pylist()
    assert rejected["post_id"] == "p2" and rejected["reject_reason"] == "missing_field"


def test_a_pushed_list_is_normalised_and_kept() -> None:
    table = table_of(POSTS, [post_row(text="$TCS breakout soon", tickers=["$infy "])])
    result = process_batch(table, POSTS, now=NOW)
    assert _tickers(result.valid) == [["INFY"]]


def test_tickers_found_in_the_text_as_normalise_leaves_it() -> None:
    table = table_of(POSTS, [post_row(text="   \n$TCS breakout soon\t ", tickers=None)])
    result = process_batch(table, POSTS, now=NOW, ingested_at=NOW - dt.timedelta(minutes=1))
    assert result.valid.column("text").to_pylist() == ["$TCS breakout soon"]
    assert _tickers(result.valid) == [["TCS"]]


# --- sentiment and promotion: the pipeline's columns, never a sender's -------------------------------

def test_a_webhook_cannot_send_the_derived_columns() -> None:
    from sentinel_ray.ingest.webhook import IntakeError, records_table

    record = {"platform": "telegram", "post_id": "p1", "text": "SUZLON target 80", "ts": TS.isoformat()}
    for name, value in (("sentiment", 0.5), ("promo_score", 0.0), ("is_pump_signal", False),
                        ("promo_evidence", [])):
        with pytest.raises(IntakeError, match=name):
            records_table("posts", "tg", [{**record, name: value}], TS)
    assert "promo_score" not in records_table("posts", "tg", [record], TS).column_names


def test_polled_and_pushed_posts_get_the_same_sentiment_and_promotion() -> None:
    results = [process_batch(t, POSTS, now=NOW, run_id="r", ingested_at=TS) for t in (_polled(), _pushed())]
    for result in results:
        valid = result.valid
        assert valid.column("is_pump_signal").to_pylist() == [True, True, False, False]
        assert valid.column("promo_evidence").to_pylist()[0] == ["target 80"]
        assert all(-1 <= s <= 1 for s in valid.column("sentiment").to_pylist())
    assert results[0].valid.equals(results[1].valid)
