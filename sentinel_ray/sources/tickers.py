"""The ticker alias index: every name by which posts and search boxes refer to an NSE/BSE
symbol, with the rule that says when the name counts as a mention.

This is reference data shared by adapters that build search queries (x.py, youtube.py)
and by the pipeline, which finds the tickers a text mentions (`pipeline/tickers.py`,
run by the enrich step). Each name carries a rule (any | capitalized | title | upper |
context, explained in pipeline/tickers.py). The names come from three places:

- the curated core (segments nifty50 and smallcap): its symbols in capitals, its legal
  names, and the hand-written short names of data/ticker_aliases.csv, which win over all;
- every other symbol of the table (~2,000 from the exchanges' lists), by conservative
  rules, because many symbols and company names are ordinary words (ACE, FACT, STAR,
  "Gateway Distriparks"): the bare symbol in capitals only when it is not an English word
  or a common abbreviation (data/ticker_common_words.txt, data/ticker_stopwords.txt) and
  has three characters or more; the legal name, in title case, only when it holds a word
  that is not an ordinary one (or three words or more); a one-word name only next to a
  market word. A name two symbols share is nobody's;
- cashtags: `$SYMBOL` names every symbol; `#SYMBOL` too, except for a non-core symbol that
  is an ordinary word (`#GLOBAL`, `#OIL` are topics, not tickers).
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Sequence

from sentinel_ray.reference import CORE_SEGMENTS, symbol_table

ALIASES_FILE = "ticker_aliases.csv"
STOPWORDS_FILE = "ticker_stopwords.txt"
COMMON_WORDS_FILE = "ticker_common_words.txt"
RULES = frozenset({"any", "capitalized", "title", "upper", "context"})
_TOKEN = re.compile(r"[$#]?[A-Za-z0-9][A-Za-z0-9&'.\-]*")
_LEGAL_SUFFIXES = re.compile(r"\b(ltd\.?|limited|the)\b", re.IGNORECASE)
_TRAILING_LEGAL_SUFFIX = re.compile(r"\s+(ltd\.?|limited)$", re.IGNORECASE)
# Words a title-case name may hold in lower case ("Bank of Baroda").
CONNECTORS = frozenset({"of", "and", "&", "the", "for", "in", "de", "da", "on", "to"})
# Trailing words of a legal name people leave out ("Aarti Industries" -> "Aarti").
_GENERIC_TAIL = frozenset({"india", "industries", "inds", "company", "co", "corporation", "corp", "enterprises",
                           "holdings", "(india)", "pvt", "private", "public"})


@dataclass(frozen=True)
class Alias:
    symbol: str
    rule: str  # any | capitalized | title | upper | context


def tokens(text: str) -> list[str]:
    """The words of `text` as the index keys its phrases. Matching must split text with this
    same function, or a phrase ("Dr. Reddy's") would never meet its key."""
    return [t.rstrip(".'-") for t in _TOKEN.findall(text)]


def _key(words: Sequence[str]) -> str:
    return " ".join(w.lower() for w in words)


@dataclass(frozen=True)
class TickerIndex:
    aliases: dict[str, Alias]  # lower-case phrase -> alias
    first_words: dict[str, tuple[int, ...]]  # first word of a multi-word phrase -> its phrases' widths, widest first
    longest: int  # words in the longest phrase
    cashtags: dict[str, str]  # lower-case symbol -> symbol, for `$X`
    hashtags: dict[str, str]  # lower-case symbol -> symbol, for `#X`


def _word_file(name: str) -> frozenset[str]:
    text = (resources.files("sentinel_ray") / "data" / name).read_text(encoding="utf-8")
    return frozenset(w.lower() for line in text.splitlines() if not line.startswith("#") for w in line.split())


@lru_cache(maxsize=1)
def ordinary_words() -> frozenset[str]:
    """English words and common abbreviations that are symbols or name words: never a bare ticker."""
    return _word_file(STOPWORDS_FILE) | _word_file(COMMON_WORDS_FILE)


def _distinctive(words: Sequence[str], ordinary: frozenset[str]) -> bool:
    content = [w for w in words if w.lower() not in CONNECTORS]
    rare = [w for w in content if w.lower() not in ordinary and not w.isdigit() and len(w) >= 3]
    return bool(rare) or len(content) >= 3


def generated_aliases(symbol: str, name: str, ordinary: frozenset[str],
                      shared_first: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(phrase, rule) of a non-core symbol, by the conservative rules of the module doc.
    `shared_first`: words that begin more than one company's name ("Godrej", "Birla"):
    alone they name a group, not a company."""
    out: list[tuple[str, str]] = []
    if len(symbol) >= 3 and any(ch.isalpha() for ch in symbol) and symbol.lower() not in ordinary:
        out.append((symbol, "upper"))
    full = tokens(_LEGAL_SUFFIXES.sub(" ", name))
    short = list(full)
    while len(short) > 1 and (short[-1].lower() in _GENERIC_TAIL or short[-1].lower() in CONNECTORS):
        short.pop()
    for words in (full, short) if short != full else (full,):
        if len(words) > 1 and _distinctive(words, ordinary):
            out.append((" ".join(words), "title"))
    if len(short) == 1:
        word = short[0]
        if word.isalpha() and len(word) >= 4 and word.lower() not in ordinary and word.lower() not in shared_first:
            out.append((word, "context"))
    return out


@lru_cache(maxsize=1)
def ticker_index() -> TickerIndex:
    aliases: dict[str, Alias] = {}

    def add(phrase: str, symbol: str, rule: str, override: bool) -> None:
        key = _key(tokens(phrase))
        if key and (override or key not in aliases):
            aliases[key] = Alias(symbol, rule)

    table = symbol_table().select(["symbol", "name", "segment"]).to_pylist()
    core = [r for r in table if r["segment"] in CORE_SEGMENTS]
    for row in core:
        add(row["symbol"], row["symbol"], "upper", override=False)
        full_name = _LEGAL_SUFFIXES.sub(" ", row["name"])
        if len(tokens(full_name)) > 1:  # one-word names ("Trent", "Cipla") get a rule in the aliases file
            add(full_name, row["symbol"], "any", override=False)

    ordinary = ordinary_words()
    firsts = Counter(t[0].lower() for t in (tokens(_LEGAL_SUFFIXES.sub(" ", r["name"])) for r in table) if t)
    shared_first = frozenset(w for w, n in firsts.items() if n > 1)
    generated: dict[str, Alias | None] = {}  # None: two symbols share the phrase
    for row in table:
        if row["segment"] in CORE_SEGMENTS:
            continue
        for phrase, rule in generated_aliases(row["symbol"], row["name"], ordinary, shared_first):
            key = _key(tokens(phrase))
            if key in generated and (alias := generated[key]) is not None and alias.symbol != row["symbol"]:
                generated[key] = None
            elif key not in generated:
                generated[key] = Alias(row["symbol"], rule)
    for key, alias in generated.items():
        if alias is not None and key not in aliases:
            aliases[key] = alias

    path = resources.files("sentinel_ray") / "data" / ALIASES_FILE
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    for row in csv.DictReader(lines):
        add(row["alias"], row["symbol"], row["rule"], override=True)

    core_symbols = {r["symbol"] for r in core}
    cashtags = {r["symbol"].lower(): r["symbol"] for r in table}
    hashtags = {k: s for k, s in cashtags.items() if s in core_symbols or k not in ordinary}
    widths: dict[str, set[int]] = {}
    for k in aliases:
        if " " in k:
            words = k.split(" ")
            widths.setdefault(words[0], {1}).add(len(words))
    first_words = {w: tuple(sorted(ws, reverse=True)) for w, ws in widths.items()}
    return TickerIndex(aliases, first_words, max(len(k.split(" ")) for k in aliases), cashtags, hashtags)


@lru_cache(maxsize=1)
def company_names() -> dict[str, str]:
    """Symbol -> company name as people write it in posts and search boxes: the reference
    table's name without its trailing "Ltd" / "Limited" ("RELIANCE" -> "Reliance Industries")."""
    table = symbol_table()
    return {symbol: _TRAILING_LEGAL_SUFFIX.sub("", name).strip()
            for symbol, name in zip(table.column("symbol").to_pylist(), table.column("name").to_pylist())}
