"""Which NSE/BSE tickers a piece of text mentions (the matcher the enrich step runs).

A mention is a cashtag (`$RELIANCE`), a hashtag (`#Infosys`), a symbol written in
capitals (`ITC`), or a company name (`Tata Motors`, `L&T`). Ordinary words must not
become tickers, so each name in the alias index (`sources/tickers.py`, data/ticker_aliases.csv)
carries a rule:

    any          any letter case            ("infosys", "Vodafone Idea")
    capitalized  only with a capital        ("Reliance" yes, "reliance on data" no)
    title        every word with a capital, connectors aside ("Bank of Baroda";
                 not "bank of baroda") - the names generated for the whole market
    upper        only all in capitals        (symbols: "ITC" yes, "itc" / "it" no)
    context      capital + a market word within three words ("LT share", "Titan target";
                 not "Titan submarine", "GREAT IDEA")

Cashtags name every symbol; hashtags skip the rule too, except that `#WORD` for a
non-core symbol that is an ordinary word is a topic, not a ticker (`sources/tickers.py`).
Longer names win over shorter ones ("Reliance Power" is RPOWER, not RELIANCE).
"""
from __future__ import annotations

from typing import Sequence

from sentinel_ray.sources.tickers import CONNECTORS, Alias, TickerIndex, ticker_index, tokens

CONTEXT_WINDOW = 3
# Words that put a capitalised name in a market context (English and Hinglish).
MARKET_WORDS = frozenset("""
share shares stock stocks scrip target tgt buy buying bought sell selling sold price prices nse bse cmp sl
stoploss breakout breakdown result results q1 q2 q3 q4 futures fut call calls put puts ce pe circuit uc lc
rally rallied invest invested investing holding holdings portfolio multibagger dividend ipo rs inr crore cr
lakh bullish bearish long short entry exit chart levels support resistance up down upside downside
kharido becho lagao lelo paisa chadhega girega fly moon rocket operator tip tips pump dump
""".split())


def extract_tickers(texts: Sequence[str | None]) -> list[list[str]]:
    """Tickers mentioned in each text: symbols, upper case, de-duplicated, in order of first mention."""
    index = ticker_index()
    return [_extract(index, text) if text else [] for text in texts]


def tickers_in(text: str | None) -> list[str]:
    return extract_tickers([text])[0]


def _extract(index: TickerIndex, text: str) -> list[str]:
    words = tokens(text)
    lowers = [w.lower() for w in words]
    aliases, first_words = index.aliases, index.first_words
    found: list[str] = []
    i, n = 0, len(words)
    while i < n:
        lower = lowers[i]
        if lower[:1] in "$#":
            symbol = (index.cashtags if lower[0] == "$" else index.hashtags).get(lower[1:])
            if symbol is None and (alias := aliases.get(lower[1:])) is not None:
                symbol = alias.symbol
            if symbol is not None:
                _add(found, symbol)
            i += 1
        elif lower not in first_words:
            # Most words start no multi-word name: one look-up, no phrase loop (the hot path).
            alias = aliases.get(lower)
            if alias is not None and _rule_holds(alias, words, lowers, i, 1):
                _add(found, alias.symbol)
            i += 1
        else:
            width, symbol = _match(index, words, lowers, i)
            if symbol:
                _add(found, symbol)
            i += width
    return found


def _match(index: TickerIndex, words: list[str], lowers: list[str], i: int) -> tuple[int, str | None]:
    """The longest phrase starting at word i whose rule holds: (words it spans, symbol)."""
    for width in index.first_words[lowers[i]]:
        if width > len(words) - i:
            continue
        alias = index.aliases.get(" ".join(lowers[i:i + width]))
        if alias is not None and _rule_holds(alias, words, lowers, i, width):
            return width, alias.symbol
    return 1, None


def _add(found: list[str], symbol: str) -> None:
    if symbol not in found:
        found.append(symbol)


def _rule_holds(alias: Alias, words: list[str], lowers: list[str], i: int, width: int) -> bool:
    first = words[i]
    if alias.rule == "any":
        return True
    if alias.rule == "upper":
        return first.isupper()
    if not first[:1].isupper():
        return False
    if alias.rule == "capitalized":
        return True
    if alias.rule == "title":
        return all(w[:1].isupper() or w[:1].isdigit() or lw in CONNECTORS
                   for w, lw in zip(words[i + 1:i + width], lowers[i + 1:i + width]))
    lo, hi = max(0, i - CONTEXT_WINDOW), min(len(words), i + width + CONTEXT_WINDOW)
    return any(lowers[j] in MARKET_WORDS or (lowers[j][:1].isdigit() and len(lowers[j]) > 1)
               for j in range(lo, hi) if not i <= j < i + width)
