"""The words of a batch of texts, as flat Arrow/numpy arrays (what sentiment and promo scoring read).

One tokeniser for both, run over the whole batch with Arrow's regex kernels, close to VADER's
own: links dropped, words split on whitespace and stripped of the punctuation around them
("risk-reward", "18:00" and "0.00015" stay one token), apostrophes dropped ("don't" -> "dont",
as VADER's negation list also spells it), and every emoji or other symbol its own token (a
rocket is a word of a pump call). The result is one flat array of tokens with the row each
belongs to, so scoring is gathers and `np.bincount`, never a loop over posts.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NUM = "<num>"  # what every number reads as in n-gram features ("target <num>")

_LINK = r"(?:https?://|www\.)\S*"
_DROP = r"['’`\x{FE0F}\x{200D}\x{1F3FB}-\x{1F3FF}]"  # apostrophes; emoji variation selectors, joiners, skin tones
_SYMBOL = r"(\p{So})"
_EDGES = r"^[^\p{L}\p{M}\p{N}\p{So}]+|[^\p{L}\p{M}\p{N}\p{So}]+$"  # punctuation around a word


@dataclass(frozen=True)
class Words:
    """Tokens of `n_rows` texts: `raw[i]` (as written) belongs to row `row[i]`; a row's tokens are contiguous and in order."""

    n_rows: int
    row: np.ndarray  # int64, sorted
    raw: pa.Array  # string
    texts: pa.Array  # the texts themselves ("" for null), for punctuation counts
    missing: np.ndarray  # bool per row: the text was null

    @cached_property
    def lower(self) -> pa.Array:
        return pc.utf8_lower(self.raw)

    @cached_property
    def is_number(self) -> np.ndarray:
        return _bool(pc.match_substring_regex(self.raw, r"^\p{N}[\p{N}.,:]*$"))

    @cached_property
    def normalised(self) -> pa.Array:
        """Lower case with every number as NUM: the spelling n-gram features and phrases match on."""
        return pc.if_else(pa.array(self.is_number), pa.scalar(NUM), self.lower)

    @cached_property
    def tokens_per_row(self) -> np.ndarray:
        return np.bincount(self.row, minlength=self.n_rows)

    def same_row(self, k: int) -> np.ndarray:
        """same_row(k)[i]: token i and token i+k are in one row (length len - k)."""
        n = len(self.row)
        if n <= k:
            return np.zeros(0, dtype=bool)
        return self.row[: n - k] == self.row[k:]

    def ngrams(self, n: int, tokens: pa.Array | None = None,
               starts: np.ndarray | None = None) -> tuple[np.ndarray, pa.Array]:
        """(start positions, n-grams joined by a space) of every run of n tokens within one row
        (only those starting at `starts`, when given: phrase look-ups need few)."""
        tokens = self.normalised if tokens is None else tokens
        total = len(tokens)
        if starts is None:
            starts = np.arange(max(total - n + 1, 0))
        else:
            starts = starts[starts + n <= total]
        if n == 1:
            return starts, tokens if len(starts) == total else tokens.take(pa.array(starts))
        ok = np.ones(len(starts), dtype=bool)
        for k in range(1, n):
            ok &= self.row[starts] == self.row[starts + k]
        starts = starts[ok]
        parts = [tokens.take(pa.array(starts + k)) for k in range(n)]
        return starts, pc.binary_join_element_wise(*parts, " ")

    def count_in_text(self, pattern: str) -> np.ndarray:
        """Per row: how often the literal `pattern` occurs in the text."""
        return pc.count_substring(self.texts, pattern).to_numpy(zero_copy_only=False).astype(np.int64)


def words(texts: pa.Array | pa.ChunkedArray | list[str | None]) -> Words:
    if isinstance(texts, list):
        texts = pa.array(texts, pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks else pa.array([], pa.string())
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    missing = pc.is_null(texts).to_numpy(zero_copy_only=False).astype(bool)
    texts = pc.fill_null(texts, "")
    cleaned = pc.replace_substring_regex(texts, _LINK, " ")
    cleaned = pc.replace_substring_regex(cleaned, _DROP, "")
    cleaned = pc.replace_substring_regex(cleaned, _SYMBOL, r" \1 ")
    lists = pc.utf8_split_whitespace(cleaned)
    row = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    raw = pc.list_flatten(lists)
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    raw = pc.replace_substring_regex(raw, _EDGES, "")
    keep = _bool(pc.not_equal(raw, ""))  # what leading/trailing separators and empty texts leave
    if not keep.all():
        raw, row = raw.filter(pa.array(keep)), row[keep]
    return Words(n_rows=len(texts), row=row, raw=raw, texts=texts, missing=missing)


def _bool(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(bool)
