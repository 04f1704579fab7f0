"""Ticker extraction on the whole market (~2,000 symbols, many of them ordinary words):
the traps stay empty, real mentions of EQ, BE and BZ names are found, the core's aliases
are those it always had, and crypto chatter names almost no NSE ticker."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sentinel_ray import reference
from sentinel_ray.pipeline.tickers import extract_tickers, tickers_in
from sentinel_ray.sources.tickers import (ALIASES_FILE, RULES, Alias, _LEGAL_SUFFIXES, _key, generated_aliases,
                                          ordinary_words, ticker_index, tokens)

CASES: list[tuple[str, list[str]]] = [
 # traps: ordinary words that are symbols or names of the whole market
 ("That was a good call, just take the profit and go home", []),
 ("I love the rain in Mumbai, nice and cool", []),
 ("STAR performer of the week: my ACE trader friend", []),
 ("FACT: the market can stay irrational longer than you can stay solvent", []),
 ("Gold and oil prices rose on global cues", []),
 ("GLOBAL markets are in the red, TOTAL carnage", []),
 ("TAKE PROFIT NOW!!! CLEAN exit before the dump", []),
 ("The orient express is a great train", []),
 ("Sun is shining, one more green day for the bulls", []),
 ("tips for new traders: easy money is never easy", []),
 ("Bank of India holiday list for next month", []),
 ("we went to the alps and then everest base camp", []),
 ("Mohit bhai ne bola tha, kal market girega", []),
 ("Nifty and Sensex at record highs, FII buying continues", []),
 ("IPO allotment status check karo, GMP 40 hai", []),
 ("#GLOBAL #OIL #Gold trends today", []),
 ("BSE and NSE will remain closed on Diwali", []),
 ("Tata group shares mixed; Birla and Godrej stocks flat", []),
 ("AGI is coming, says the AI crowd", []),
 ("the man with the plan, the star of the show", []),
 ("LOVE this chart, NICE breakout", []),
 # real mentions across the market (EQ, BE and BZ series)
 ("$GLOBAL hit the upper circuit again", ["GLOBAL"]),
 ("$STAR and $ACE both in the F&O ban list", ["STAR", "ACE"]),
 ("IRCTC and RVNL rallied on the railway budget", ["IRCTC", "RVNL"]),
 ("Rail Vikas Nigam bags an order worth 500 crore", ["RVNL"]),
 ("Can Fin Homes Q4 profit up 20%", ["CANFINHOME"]),
 ("Strides Pharma Science gets USFDA approval", ["STAR"]),
 ("Action Construction Equipment posts record sales", ["ACE"]),
 ("Lokesh Machines in trade-for-trade segment, operator game chal raha hai", ["LOKESHMACH"]),
 ("GOLDIAM aur SENCO dono jewellery stocks udd rahe hai", ["GOLDIAM", "SENCO"]),
 ("Bhai ZEEL mein entry lo, target 180", ["ZEEL"]),
 ("Vedanta share price target 500, dividend soon", ["VEDL"]),
 ("JUSTDIAL results today, TIPSINDLTD also reports", ["JUSTDIAL", "TIPSINDLTD"]),
 ("Suzlon, Rail Vikas Nigam and Sun TV Network in focus", ["SUZLON", "RVNL", "SUNTV"]),
 ("Bank of Baroda and Karnataka Bank raise lending rates", ["BANKBARODA", "KTKBANK"]),
 ("BE series stock GLOBAL? no, I mean $GLOBAL", ["GLOBAL"]),
 ("Multi Commodity Exchange volumes jump; MCX crude falls", ["MCX"]),
 ("Exide share bhi lelo, breakout pakka", ["EXIDEIND"]),
 ("Sobha Q2: SOBHA pre-sales beat estimates", ["SOBHA"]),
 ("ICICI Bank, RBL Bank and CSB Bank: which is better?", ["ICICIBANK", "RBLBANK", "CSBBANK"]),
 ("$IDEA and $BSE are my top picks", ["IDEA", "BSE"]),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_extraction_on_the_whole_market(text: str, expected: list[str]) -> None:
    assert tickers_in(text) == expected


def test_the_table_has_traps_and_mentions() -> None:
    assert len(CASES) >= 30
    assert sum(1 for _, e in CASES if not e) >= 15
    series = {r["symbol"]: r["series"] for r in reference.symbol_table().to_pylist()}
    mentioned = {t for _, e in CASES for t in e}
    assert {"BE", "EQ"} <= {series[t] for t in mentioned}  # trade-for-trade names among them


def test_every_symbol_of_the_table_is_reachable_by_cashtag() -> None:
    symbols = reference.universe("all")
    assert len(symbols) > 1900
    found = extract_tickers([f"${s} breakout" for s in symbols])
    assert [f[0] if f else None for f in found] == symbols


def test_hashtags_of_ordinary_words_are_topics_except_for_the_core() -> None:
    assert tickers_in("#GLOBAL #OIL #FACT #STAR") == []
    assert tickers_in("#IDEA #Suzlon #RVNL #Infosys") == ["IDEA", "SUZLON", "RVNL", "INFY"]


def test_title_case_names_and_symbols_in_capitals_only() -> None:
    assert tickers_in("rail vikas nigam order win") == []
    assert tickers_in("RAIL VIKAS NIGAM order win") == ["RVNL"]
    assert tickers_in("rvnl ka order") == []
    assert tickers_in("Bank of Baroda share") == ["BANKBARODA"]
    assert tickers_in("bank of baroda share") == []


def test_generation_rules() -> None:
    ordinary = ordinary_words()
    assert {"star", "fact", "global", "bse", "nifty", "ipl"} <= ordinary
    assert generated_aliases("STAR", "Strides Pharma Science Limited", ordinary) == [
        ("Strides Pharma Science", "title")]
    assert generated_aliases("FACT", "Fertilizers and Chemicals Travancore Limited", ordinary) == [
        ("Fertilizers and Chemicals Travancore", "title")]
    # two words, both ordinary: no name alias; a short symbol: no bare alias
    assert generated_aliases("OIL", "Oil India Limited", ordinary) == []
    assert generated_aliases("NH", "Narayana Hrudayalaya Ltd.", ordinary) == [("Narayana Hrudayalaya", "title")]
    # a one-word name counts only next to a market word, and not when it names a group
    assert generated_aliases("EXIDEIND", "Exide Industries Limited", ordinary) == [
        ("EXIDEIND", "upper"), ("Exide Industries", "title"), ("Exide", "context")]
    assert ("Godrej", "context") not in generated_aliases("GODREJIND", "Godrej Industries Limited", ordinary,
                                                          frozenset({"godrej"}))
    assert tickers_in("Exide is a battery maker") == [] and tickers_in("Exide share 400") == ["EXIDEIND"]


def test_a_name_two_companies_share_is_nobodys() -> None:
    index = ticker_index()
    names = [r["name"] for r in reference.symbol_table().to_pylist()
             if r["segment"] not in reference.CORE_SEGMENTS]
    firsts = [tokens(_LEGAL_SUFFIXES.sub(" ", n))[0].lower() for n in names]
    for word in ("godrej", "birla", "kirloskar", "finolex"):
        assert firsts.count(word) > 1 and index.aliases.get(word) is None, word


def test_the_core_aliases_are_unchanged() -> None:
    """The 70 core symbols are matched exactly as before the table grew: their symbols,
    legal names and hand-written aliases, none replaced by a generated one."""
    expected: dict[str, Alias] = {}
    core = [r for r in reference.symbol_table().to_pylist() if r["segment"] in reference.CORE_SEGMENTS]
    for row in core:
        expected.setdefault(_key(tokens(row["symbol"])), Alias(row["symbol"], "upper"))
        name = tokens(_LEGAL_SUFFIXES.sub(" ", row["name"]))
        if len(name) > 1:
            expected.setdefault(_key(name), Alias(row["symbol"], "any"))
    from importlib import resources
    text = (resources.files("sentinel_ray") / "data" / ALIASES_FILE).read_text()
    for row in csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")):
        expected[_key(tokens(row["alias"]))] = Alias(row["symbol"], row["rule"])
    aliases = ticker_index().aliases
    assert {k: aliases.get(k) for k in expected} == expected
    assert {a.rule for a in aliases.values()} <= RULES


def test_crypto_chatter_names_almost_no_nse_ticker(shared_fixtures: Path) -> None:
    path = shared_fixtures / "telegram_pump_messages" / "messages.ndjson"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    found = extract_tickers(texts)
    with_tickers = [(t, f) for t, f in zip(texts, found) if f]
    assert len(texts) > 1500
    assert len(with_tickers) <= len(texts) * 0.005, with_tickers[:10]
