"""How much a post reads like a tip, a pump call or a countdown: `promo_score` 0..1, the phrases behind it.

One logistic regression over two kinds of features, both computed for the whole batch from
`pipeline/words.py` tokens (no per-post Python):

- a vocabulary of unigrams and bigrams (numbers read as `<num>`: "target <num>"), present or
  not, scaled by 1/sqrt(words in the post), learned
  from real pump-and-dump Telegram channels (crypto; `scripts/train_promo_model.py`);
- the counts of a hand-written promo lexicon of Indian-equity chatter, English and Hinglish,
  by category (hype, insider, urgency, buy call, price target, promo emoji). A category's
  weight is learned from the phrases of it the crypto channels do use ("moon", "buy now",
  "target <num>", "hurry", 🚀), so the Indian and Hinglish phrases the channels never
  write ("multibagger", "upper circuit", "operator", "abhi kharido", "paisa double") score
  with the weight of their category. The matched phrases are the post's `promo_evidence`.

The model file (`sentinel_ray/data/promo_model.json`) is plain JSON: vocabulary, weights,
category weights, intercept, threshold and how it was trained (source, date, CV figures).
Scoring is numpy gathers and dot products; scikit-learn is only needed to train.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.pipeline.words import Words, words

MODEL_FILE = "promo_model.json"
MAX_PHRASE = 4  # words in the longest lexicon phrase

# The promo lexicon: phrases as the tokeniser spells them (lower case, apostrophes dropped,
# numbers as <num>). Adding or moving a phrase changes `lexicon_digest()`: retrain.
LEXICON: dict[str, tuple[str, ...]] = {
    "hype": (
        "multibagger", "multibaggers", "multi bagger", "jackpot", "sure shot", "sureshot", "pakka", "guaranteed",
        "guarantee", "<num>x", "x<num>", "to the moon", "moon", "mooning", "huge profit",
        "huge profits", "massive profit", "big profit", "paisa double", "paise double", "double your money",
        "money double", "next big", "hidden gem", "gem", "bumper", "rocket", "blast", "fly", "flying", "explode",
        "skyrocket", "next multibagger", "penny stock", "lottery",
    ),
    "insider": (
        "operator", "operators", "operator entry", "operator ka maal", "insider", "insider info", "inside news",
        "big news", "news coming", "big news coming", "vip", "premium", "pump", "pumps", "pumping", "pump signal",
        "signal", "signals", "tip", "tips", "free call", "call", "calls", "sirf vip",
    ),
    "urgency": (
        "buy before", "last chance", "before its too late", "too late", "dont miss", "do not miss", "hurry",
        "hurry up", "jaldi", "jaldi karo", "abhi", "right now", "today only", "countdown", "hours left",
        "minutes left", "starting in", "get ready", "be ready", "warna pachtaoge", "pachtaoge", "mat chukna",
        "mauka", "limited time", "fast", "quickly", "asap", "loading", "<num> hours", "<num> minutes",
        "<num> mins", "still time",
    ),
    "buy_call": (
        "buy now", "buy", "abhi kharido", "kharido", "kharid lo", "lelo", "le lo", "lagao", "paisa lagao",
        "accumulate", "accumulate now", "entry", "entry done", "load", "loaded", "add more", "grab",
    ),
    "target": (
        "target <num>", "tgt <num>", "targets <num>", "tp <num>", "target price <num>", "upper circuit", "uc",
        "uc lagega", "circuit", "sl <num>", "stop loss <num>", "stoploss <num>", "buy <num>", "buy at <num>",
        "buy above <num>", "cmp <num>", "<num> tak jayega", "jayega", "chadhega",
        "short term target", "sell <num>",
    ),
    "emoji": ("🚀", "🔥", "💰", "💯", "🎯", "💎", "🤑", "📈", "✅", "⏰", "⏳", "💸", "🌙", "⚡", "🔔", "📢"),
    # Investing and news language: the counterweight (not evidence of promotion).
    "investing": (
        "long term", "long term hold", "result", "results", "net profit", "yoy", "qoq", "quarterly", "earnings",
        "dividend", "sip", "fundamentals", "valuation", "portfolio", "holding", "margins", "guidance",
        "estimates", "brokerage", "analysts", "revenue", "order book", "buyback", "management",
    ),
}
NOT_EVIDENCE = frozenset({"investing"})
CATEGORIES = tuple(LEXICON)
# Indian-equity and Hinglish phrases the crypto channels never write: their category's learned
# weight alone undersells them, so each adds this hand-set logit on top (once per post). The
# cross-validation figures are measured with it in place; it barely moves them, as these
# phrases are rare in the training messages.
EQUITY_PRIOR: dict[str, float] = {
    "multibagger": 2.0, "multibaggers": 2.0, "multi bagger": 2.0, "next multibagger": 2.5, "jackpot": 1.5,
    "sure shot": 2.0, "sureshot": 2.0, "pakka": 1.5, "paisa double": 2.5, "paise double": 2.5,
    "money double": 2.0, "double your money": 2.0, "operator": 1.5, "operators": 1.5, "operator entry": 2.5,
    "operator ka maal": 2.5, "insider info": 1.5, "upper circuit": 2.0, "uc": 1.0, "uc lagega": 2.0,
    "abhi kharido": 2.5, "kharido": 1.5, "kharid lo": 1.5, "lelo": 1.0, "le lo": 1.0, "paisa lagao": 1.5,
    "lagao": 0.5, "jaldi": 1.0, "jaldi karo": 1.5, "warna pachtaoge": 2.0, "pachtaoge": 1.5, "mat chukna": 1.5,
    "mauka": 0.5, "<num> tak jayega": 1.5, "jayega": 0.75, "chadhega": 0.75, "sirf vip": 1.5,
    "buy before": 1.5, "before its too late": 1.5, "last chance": 1.0, "penny stock": 0.5, "🚀": 0.75,
    "long term": -1.0, "long term hold": -1.5, "result": -0.5, "results": -0.5, "net profit": -0.5, "sip": -1.0,
    "dividend": -0.5, "fundamentals": -0.5, "portfolio": -0.5, "holding": -0.5,
}
STYLE_FEATURES = ("exclamations", "caps_words", "emoji", "numbers")


def lexicon_digest() -> str:
    """Identity of the lexicon the model was trained with (the model file records it)."""
    both = {"lexicon": LEXICON, "equity_prior": EQUITY_PRIOR}
    return hashlib.sha256(json.dumps(both, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PromoModel:
    vocabulary: pa.Array  # string n-grams
    weights: np.ndarray  # float64, aligned with vocabulary
    category_weights: np.ndarray  # per CATEGORIES
    style_weights: np.ndarray  # per STYLE_FEATURES
    intercept: float
    threshold: float
    meta: dict[str, Any]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromoModel":
        if d.get("lexicon_digest") != lexicon_digest():
            raise ValueError("promo model was trained with another lexicon: run scripts/train_promo_model.py")
        return cls(
            vocabulary=pa.array(d["vocabulary"], pa.string()),
            weights=np.asarray(d["weights"], dtype=np.float64),
            category_weights=np.asarray([d["category_weights"][c] for c in CATEGORIES], dtype=np.float64),
            style_weights=np.asarray([d["style_weights"][s] for s in STYLE_FEATURES], dtype=np.float64),
            intercept=float(d["intercept"]),
            threshold=float(d["threshold"]),
            meta={k: v for k, v in d.items() if k not in ("vocabulary", "weights")},
        )


@cache
def shipped_model() -> PromoModel:
    text = files("sentinel_ray").joinpath("data", MODEL_FILE).read_text(encoding="utf-8")
    return PromoModel.from_dict(json.loads(text))


def default_threshold() -> float:
    """The threshold the shipped model was tuned to (settings may override it: `promo_threshold`)."""
    return shipped_model().threshold


@dataclass(frozen=True)
class Features:
    """The batch's features as the model reads them (the training script builds its matrix from these)."""

    n_rows: int
    gram_row: np.ndarray  # int64: row of each distinct (row, vocabulary n-gram) pair
    gram_index: np.ndarray  # int64: its index in the vocabulary (or in `grams` when no vocabulary is given)
    gram_scale: np.ndarray  # float64 per row: 1 / sqrt(tokens), the n-gram block's normalisation
    categories: np.ndarray  # float64 (n_rows, len(CATEGORIES)): log1p of lexicon matches
    prior: np.ndarray  # float64 per row: the EQUITY_PRIOR logits of its phrases (fixed, not learned)
    style: np.ndarray  # float64 (n_rows, len(STYLE_FEATURES))
    evidence: pa.Array  # list<string> per row: the matched phrases, in order of first appearance
    grams: pa.Array | None = None  # the distinct n-grams themselves, when featurised without a vocabulary


def featurise(texts: pa.Array | pa.ChunkedArray | list[str | None] | Words,
              vocabulary: pa.Array | None = None) -> Features:
    w = texts if isinstance(texts, Words) else words(texts)
    n = w.n_rows
    gram_rows, gram_values = [], []
    for k in (1, 2):
        starts, grams = w.ngrams(k)
        gram_rows.append(w.row[starts])
        gram_values.append(grams)
    rows = np.concatenate(gram_rows) if gram_rows else np.zeros(0, np.int64)
    values = pa.concat_arrays([g.cast(pa.string()) for g in gram_values])
    grams = None
    if vocabulary is None:  # training: every n-gram, numbered by first appearance
        encoded = pc.dictionary_encode(values)
        index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        grams = encoded.dictionary
        found = np.ones(len(index), dtype=bool)
    else:
        idx = pc.index_in(values, value_set=vocabulary)
        found = pc.is_valid(idx).to_numpy(zero_copy_only=False).astype(bool)
        index = pc.fill_null(idx, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    rows, index = rows[found], index[found]
    width = int(index.max()) + 1 if len(index) else 1
    pairs = _distinct(rows * width + index)  # binary features: a repeated n-gram counts once
    categories, prior, evidence = _lexicon_matches(w)
    tokens = w.tokens_per_row
    is_symbol = pc.fill_null(pc.match_substring_regex(w.raw, r"^\p{So}$"), False).to_numpy(
        zero_copy_only=False).astype(bool)
    upper = pc.fill_null(pc.utf8_is_upper(w.raw), False).to_numpy(zero_copy_only=False).astype(bool)
    caps_words = upper & (pc.utf8_length(w.raw).to_numpy(zero_copy_only=False) > 2)
    style = np.column_stack([
        np.log1p(w.count_in_text("!")),
        np.bincount(w.row, weights=caps_words, minlength=n) / np.maximum(tokens, 1),
        np.log1p(np.bincount(w.row, weights=is_symbol, minlength=n)),
        np.log1p(np.bincount(w.row, weights=w.is_number, minlength=n)),
    ]) if n else np.zeros((0, len(STYLE_FEATURES)))
    return Features(
        n_rows=n, gram_row=pairs // width, gram_index=pairs % width,
        gram_scale=1.0 / np.sqrt(np.maximum(tokens, 1)), categories=categories, prior=prior, style=style,
        evidence=evidence, grams=grams,
    )


@cache
def _phrase_table() -> tuple[pa.Array, np.ndarray, np.ndarray, dict[int, pa.Array], pa.Array]:
    """(phrases, category index of each, prior logit of each, phrases by length, first words)."""
    phrases, cats = [], []
    for c, items in enumerate(LEXICON.values()):
        for p in items:
            phrases.append(p)
            cats.append(c)
    unknown = set(EQUITY_PRIOR) - set(phrases)
    assert not unknown, f"EQUITY_PRIOR phrases missing from LEXICON: {unknown}"
    assert len(phrases) == len(set(phrases)), "a phrase is in two categories"
    by_len: dict[int, list[str]] = {}
    for p in phrases:
        by_len.setdefault(len(p.split()), []).append(p)
    return (pa.array(phrases, pa.string()), np.array(cats, dtype=np.int64),
            np.array([EQUITY_PRIOR.get(p, 0.0) for p in phrases]), {k: pa.array(v, pa.string()) for k, v in by_len.items()},
            pa.array(sorted({p.split()[0] for p in phrases}), pa.string()))


def _lexicon_matches(w: Words) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Per row: log1p of the matches of each category, the prior logit, and the matched phrases as written."""
    n = w.n_rows
    phrases, cats, priors, by_len, first_words = _phrase_table()
    # Tokens like "10x" read as "<num>x" for the lexicon (the n-gram spelling keeps digits apart).
    spelled = pc.replace_substring_regex(w.normalised, r"^\d+(\.\d+)?x$", "<num>x")
    spelled = pc.replace_substring_regex(spelled, r"^x\d+(\.\d+)?$", "x<num>")
    hit_rows, hit_pos, hit_phrase, hit_len = [], [], [], []
    candidates = np.flatnonzero(pc.is_in(spelled, value_set=first_words).to_numpy(zero_copy_only=False))
    for k in range(1, MAX_PHRASE + 1):
        if k not in by_len:
            continue
        starts, grams = w.ngrams(k, spelled, candidates)
        idx = pc.index_in(grams, value_set=phrases)
        ok = pc.is_valid(idx).to_numpy(zero_copy_only=False).astype(bool)
        if not ok.any():
            continue
        hit_rows.append(w.row[starts[ok]])
        hit_pos.append(starts[ok])
        hit_phrase.append(idx.filter(pa.array(ok)).to_numpy(zero_copy_only=False).astype(np.int64))
        hit_len.append(np.full(int(ok.sum()), k))
    counts = np.zeros((n, len(CATEGORIES)))
    if not hit_rows:
        return counts, np.zeros(n), pa.array([[] for _ in range(n)], pa.list_(pa.string()))
    rows, pos = np.concatenate(hit_rows), np.concatenate(hit_pos)
    phrase, length = np.concatenate(hit_phrase), np.concatenate(hit_len)
    # A phrase inside a longer match is not counted again ("buy" in "buy now").
    order = np.lexsort((-length, pos, rows))
    rows, pos, phrase, length = rows[order], pos[order], phrase[order], length[order]
    end = rows * (len(w.row) + MAX_PHRASE + 1) + pos + length
    covered = np.zeros(len(end), dtype=bool)
    covered[1:] = np.maximum.accumulate(end)[:-1] >= end[1:]
    rows, pos, phrase, length = rows[~covered], pos[~covered], phrase[~covered], length[~covered]
    np.add.at(counts, (rows, cats[phrase]), 1.0)
    # Evidence as written (digits, not <num>): join the matched tokens, then one entry per phrase per row.
    lower = w.lower
    text = pc.take(lower, pa.array(pos))
    for k in range(1, MAX_PHRASE):
        longer = length > k
        if longer.any():
            nxt = pc.take(lower, pa.array(np.where(longer, pos + k, pos)))
            text = pc.if_else(pa.array(longer), pc.binary_join_element_wise(text, nxt, " "), text)
    order = np.lexsort((pos, rows))
    rows, phrase, text = rows[order], phrase[order], text.take(pa.array(order))
    key = rows * len(phrases) + phrase
    by_key = np.argsort(key, kind="stable")
    sorted_key = key[by_key]
    first = np.sort(by_key[np.r_[True, sorted_key[1:] != sorted_key[:-1]]]) if len(key) else by_key
    rows, phrase, text = rows[first], phrase[first], text.take(pa.array(first))
    prior = np.bincount(rows, weights=priors[phrase], minlength=n)
    shown = ~np.isin(cats[phrase], [CATEGORIES.index(c) for c in NOT_EVIDENCE])
    rows, text = rows[shown], text.filter(pa.array(shown))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
    evidence = pa.ListArray.from_arrays(pa.array(offsets), text.cast(pa.string()))
    return np.log1p(counts), prior, evidence


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort and a mask: numpy's hash-based unique is far slower here)."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def linear_score(features: Features, model: PromoModel) -> np.ndarray:
    z = np.full(features.n_rows, model.intercept)
    if len(features.gram_row):
        z += np.bincount(features.gram_row, weights=model.weights[features.gram_index],
                         minlength=features.n_rows) * features.gram_scale
    z += features.categories @ model.category_weights + features.style @ model.style_weights + features.prior
    return z


@dataclass(frozen=True)
class PromoScores:
    score: pa.Array  # float64 0..1, null where the text is null
    is_pump_signal: pa.Array  # bool, null where the text is null
    evidence: pa.Array  # list<string>, [] where nothing matched (null where the text is null)


def score(texts: pa.Array | pa.ChunkedArray | list[str | None] | Words, *, threshold: float | None = None,
          model: PromoModel | None = None) -> PromoScores:
    w = texts if isinstance(texts, Words) else words(texts)
    model = model or shipped_model()
    threshold = model.threshold if threshold is None else float(threshold)
    f = featurise(w, model.vocabulary)
    p = 1.0 / (1.0 + np.exp(-linear_score(f, model)))
    mask = w.missing if w.missing.any() else None
    evidence = f.evidence
    if mask is not None:
        evidence = pc.if_else(pa.array(mask), pa.scalar(None, evidence.type), evidence)
    return PromoScores(
        score=pa.array(p, pa.float64(), mask=mask),
        is_pump_signal=pa.array(p >= threshold, pa.bool_(), mask=mask),
        evidence=evidence,
    )
