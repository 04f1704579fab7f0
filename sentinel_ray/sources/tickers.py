"""The ticker alias index: every name by which posts and search boxes refer to an NSE/BSE
symbol, with the rule that says when the name counts as a mention.

This is reference data shared by adapters that build search queries (x.py, youtube.py)
and by the pipeline, which finds the tickers a text mentions (`pipeline/tickers.py`,
run by the enrich step). The names come from the symbol table and data/ticker_aliases.csv;
each carries a rule (any | capitalized | upper | context, explained in pipeline/tickers.py).
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


@dataclass(frozen=True)
class Alias:
    symbol: str
    rule: str  # any | capitalized | upper | context


def tokens(text: str) -> list[str]:
    """The words of `text` as the index keys its phrases. Matching must split text with this
    same function, or a phrase ("Dr. Reddy's") would never meet its key."""
    return [t.rstrip(".'-") for t in _TOKEN.findall(text)]


def _key(words: Sequence[str]) -> str:
    return " ".join(w.lower() for w in words)


@dataclass(frozen=True)
class TickerIndex:
    aliases: dict[str, Alias]  # lower-case phrase -> alias
    first_words: frozenset[str]  # first word of every multi-word phrase
    longest: int  # words in the longest phrase


@lru_cache(maxsize=1)
def ticker_index() -> TickerIndex:
    aliases: dict[str, Alias] = {}

    def add(phrase: str, symbol: str, rule: str, override: bool) -> None:
        key = _key(tokens(phrase))
        if key and (override or key not in aliases):
            aliases[key] = Alias(symbol, rule)

    for row in symbol_table().select(["symbol", "name"]).to_pylist():
        add(row["symbol"], row["symbol"], "upper", override=False)
        full_name = _LEGAL_SUFFIXES.sub(" ", row["name"])
        if len(tokens(full_name)) > 1:  # one-word names ("Trent", "Cipla") get a rule in the aliases file
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
