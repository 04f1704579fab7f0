"""Ticker extraction on real-looking posts, English and Hinglish, with false-positive traps."""
from __future__ import annotations

import pytest

from sentinel_ray.sources.tickers import extract_tickers, ticker_index, tickers_in

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
    from sentinel_ray.reference import symbols

    known = set(symbols())
    assert {a.symbol for a in ticker_index().aliases.values()} <= known
    assert {a.rule for a in ticker_index().aliases.values()} <= {"any", "capitalized", "upper", "context"}
