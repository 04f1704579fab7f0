"""Which NSE/BSE tickers a piece of text mentions: shared by every social and news adapter.

A mention is a cashtag (`$RELIANCE`), a hashtag (`#Infosys`), a symbol written in
capitals (`ITC`), or a company name (`Tata Motors`, `L&T`). Ordinary words must not
become tickers, so each name carries a rule (see data/ticker_aliases.csv):

    any          any letter case            ("infosys", "Vodafone Idea")
    capitalized  only with a capital        ("Reliance" yes, "reliance on data" no)
    upper        only all in capitals        (symbols: "ITC" yes, "itc" / "it" no)
    context      capital + a market word within three words ("LT share", "Titan target";
                 not "Titan submarine", "GREAT IDEA")

Cashtags and hashtags are explicit, so they skip the rule. Longer names win over
shorter ones ("Reliance Power" is RPOWER, not RELIANCE).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

from sentinel_ray.reference import symbol_table

ALIASES_FILE = "ticker_aliases.csv"
_TOKEN = re.compile(r"[$#]?[A-Za-z0-9][A-Za-z0-9&'.\-]*")
_LEGAL_SUFFIXES = re.compile(r"\b(ltd\.?|limited|the)\b", re.IGNORECASE)
_TRAILING_LEGAL_SUFFIX = re.compile(r"\s+(ltd\.?|limited)$", re.IGNORECASE)
CONTEXT_WINDOW = 3
# Words that put a capitalised name in a market context (English and Hinglish).
MARKET_WORDS = frozenset("""
share shares stock stocks scrip target tgt buy buying bought sell selling sold price prices nse bse cmp sl
stoploss breakout breakdown result results q1 q2 q3 q4 futures fut call calls put puts ce pe circuit uc lc
rally rallied invest invested investing holding holdings portfolio multibagger dividend ipo rs inr crore cr
lakh bullish bearish long short entry exit chart levels support resistance up down upside downside
kharido becho lagao lelo paisa chadhega girega fly moon rocket operator tip tips pump dump
""".split())


@dataclass(frozen=True)
class Alias:
    symbol: str
    rule: str  # any | capitalized | upper | context


def _tokens(text: str) -> list[str]:
    return [t.rstrip(".'-") for t in _TOKEN.findall(text)]


def _key(words: Sequence[str]) -> str:
    return " ".join(w.lower() for w in words)


@dataclass(frozen=True)
class TickerIndex:
    aliases: dict[str, Alias]  # lower-case phrase -> alias
    first_words: frozenset[str]  # first word of every multi-word phrase
    longest: int  # words in the longest phrase

    def extract(self, text: str) -> list[str]:
        words = _tokens(text)
        lowers = [w.lower() for w in words]
        aliases, first_words = self.aliases, self.first_words
        found: list[str] = []
        i, n = 0, len(words)
        while i < n:
            lower = lowers[i]
            if lower[:1] in "$#":
                alias = aliases.get(lower[1:])
                if alias is not None:
                    _add(found, alias.symbol)
                i += 1
            elif lower not in first_words:
                # Most words start no multi-word name: one look-up, no phrase loop (the hot path).
                alias = aliases.get(lower)
                if alias is not None and _rule_holds(alias, words, lowers, i, 1):
                    _add(found, alias.symbol)
                i += 1
            else:
                width, symbol = self._match(words, lowers, i)
                if symbol:
                    _add(found, symbol)
                i += width
        return found

    def _match(self, words: list[str], lowers: list[str], i: int) -> tuple[int, str | None]:
        """The longest phrase starting at word i whose rule holds: (words it spans, symbol)."""
        top = min(self.longest, len(words) - i) if lowers[i] in self.first_words else 1
        for width in range(top, 0, -1):
            alias = self.aliases.get(" ".join(lowers[i:i + width]))
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
    lo, hi = max(0, i - CONTEXT_WINDOW), min(len(words), i + width + CONTEXT_WINDOW)
    return any(lowers[j] in MARKET_WORDS or (lowers[j][:1].isdigit() and len(lowers[j]) > 1)
               for j in range(lo, hi) if not i <= j < i + width)


@lru_cache(maxsize=1)
def ticker_index() -> TickerIndex:
    aliases: dict[str, Alias] = {}

    def add(phrase: str, symbol: str, rule: str, override: bool) -> None:
        key = _key(_tokens(phrase))
        if key and (override or key not in aliases):
            aliases[key] = Alias(symbol, rule)

    for row in symbol_table().select(["symbol", "name"]).to_pylist():
        add(row["symbol"], row["symbol"], "upper", override=False)
        full_name = _LEGAL_SUFFIXES.sub(" ", row["name"])
        if len(_tokens(full_name)) > 1:  # one-word names ("Trent", "Cipla") get a rule in the aliases file
            add(full_name, row["symbol"], "any", override=False)
    path = resources.files("sentinel_ray") / "data" / ALIASES_FILE
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    for row in csv.DictReader(lines):
        add(row["alias"], row["symbol"], row["rule"], override=True)
    first_words = frozenset(k.split(" ")[0] for k in aliases if " " in k)
    return TickerIndex(aliases, first_words, max(len(k.split(" ")) for k in aliases))


@lru_cache(maxsize=1)
def company_names() -> dict[str, str]:
    """Symbol -> company name as people write it in posts and search boxes: the reference
    table's name without its trailing "Ltd" / "Limited" ("RELIANCE" -> "Reliance Industries")."""
    table = symbol_table()
    return {symbol: _TRAILING_LEGAL_SUFFIX.sub("", name).strip()
            for symbol, name in zip(table.column("symbol").to_pylist(), table.column("name").to_pylist())}


def extract_tickers(texts: Sequence[str | None]) -> list[list[str]]:
    """Tickers mentioned in each text: symbols, upper case, de-duplicated, in order of first mention."""
    index = ticker_index()
    return [index.extract(text) if text else [] for text in texts]


def tickers_in(text: str | None) -> list[str]:
    return extract_tickers([text])[0]
