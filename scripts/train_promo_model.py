"""Train the promo-language model the enrich step ships (`sentinel_ray/data/promo_model.json`).

Source: ../shared/fixtures/real/telegram_pump_messages/messages.ndjson: 1,676 real messages of
15 crypto pump-and-dump Telegram channels, hand-labelled by Hu et al. (SIGMOD'23, repository
Bayi-Hu/Pump-and-Dump-Detection-on-Cryptocurrency): 0 other, 1 pump announcement, 2 tip/signal.
Positive class: label 1 or 2. The data is read from there, never copied into the repository.

Features are `sentinel_ray.pipeline.promo.featurise` (the very code the pipeline scores with):
a unigram+bigram vocabulary plus the hand-written promo lexicon's category counts and style
counts. Channel-grouped cross-validation (GroupKFold on channel_id: a channel's messages are
never in both train and test) picks the regularisation by pooled ROC AUC, then the threshold
that maximises pooled out-of-fold F1; per-fold and pooled ROC AUC, precision, recall and F1 at
that threshold are printed and recorded in the model file with the training metadata.

    .venv/bin/python scripts/train_promo_model.py [--data PATH] [--out PATH]

Needs scikit-learn and scipy (the `train` extra); the shipped model is read with numpy only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import GroupKFold

from sentinel_ray.pipeline.promo import CATEGORIES, MODEL_FILE, STYLE_FEATURES, featurise, lexicon_digest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "fixtures" / "real" / "telegram_pump_messages" / "messages.ndjson"
OUT = REPO / "sentinel_ray" / "data" / MODEL_FILE
SOURCE = ("shared/fixtures/real/telegram_pump_messages/messages.ndjson (Hu et al., SIGMOD'23, "
          "Bayi-Hu/Pump-and-Dump-Detection-on-Cryptocurrency: Data/Telegram/Labeled)")
N_SPLITS = 5
MIN_DF = 3  # n-grams in at least this many training messages enter the vocabulary
C_GRID = (0.3, 1.0, 3.0, 10.0)
# The lexicon and style columns are multiplied by this before fitting: the L2 penalty then
# shrinks their few weights less than the thousands of n-gram weights (stored unscaled).
DENSE_SCALE = 3.0


def load(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] or "" for r in rows]
    y = np.array([int(r["label"] in (1, 2)) for r in rows])
    groups = np.array([str(r["channel_id"]) for r in rows])
    return texts, y, groups


class Design:
    """All messages featurised once; `matrix(rows, vocab)` is what the runtime scorer sees."""

    def __init__(self, texts: list[str]) -> None:
        f = featurise(texts)
        self.f = f
        self.grams = f.grams.to_pylist()
        self.binary = sp.csr_matrix((np.ones(len(f.gram_row)), (f.gram_row, f.gram_index)),
                                    shape=(f.n_rows, len(self.grams)))

    def vocabulary(self, rows: np.ndarray) -> np.ndarray:
        df = np.asarray(self.binary[rows].sum(axis=0)).ravel()
        return np.flatnonzero(df >= MIN_DF)

    def matrix(self, rows: np.ndarray, vocab: np.ndarray) -> sp.csr_matrix:
        grams = sp.diags(self.f.gram_scale[rows]) @ self.binary[rows][:, vocab]
        dense = np.hstack([self.f.categories[rows], self.f.style[rows]]) * DENSE_SCALE
        return sp.hstack([grams, sp.csr_matrix(dense)]).tocsr()


def fit(design: Design, rows: np.ndarray, y: np.ndarray, c: float) -> tuple[LogisticRegression, np.ndarray]:
    vocab = design.vocabulary(rows)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit(design.matrix(rows, vocab), y[rows])
    return model, vocab


def cross_validate(design: Design, y: np.ndarray, groups: np.ndarray, c: float) -> tuple[np.ndarray, list]:
    oof = np.zeros(len(y))
    folds = []
    for train, test in GroupKFold(n_splits=N_SPLITS).split(np.zeros(len(y)), y, groups):
        model, vocab = fit(design, train, y, c)
        z = model.decision_function(design.matrix(test, vocab)) + design.f.prior[test]  # as the runtime scores
        oof[test] = 1.0 / (1.0 + np.exp(-z))
        folds.append(test)
    return oof, folds


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (p >= threshold).astype(int)
    out = {"n": int(len(y)), "positives": int(y.sum()),
           "precision": round(float(precision_score(y, pred, zero_division=0)), 4),
           "recall": round(float(recall_score(y, pred, zero_division=0)), 4),
           "f1": round(float(f1_score(y, pred, zero_division=0)), 4)}
    out["roc_auc"] = round(float(roc_auc_score(y, p)), 4) if 0 < y.sum() < len(y) else None
    return out


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    grid = np.round(np.arange(0.05, 0.95, 0.01), 2)
    f1s = [f1_score(y, (p >= t).astype(int)) for t in grid]
    return float(grid[int(np.argmax(f1s))])


def train(data: Path) -> dict:
    texts, y, groups = load(data)
    design = Design(texts)
    by_c = {}
    for c in C_GRID:
        oof, folds = cross_validate(design, y, groups, c)
        by_c[c] = (roc_auc_score(y, oof), oof, folds)
        print(f"C={c}: pooled out-of-fold ROC AUC {by_c[c][0]:.4f}")
    c = max(by_c, key=lambda k: by_c[k][0])
    _, oof, folds = by_c[c]
    threshold = best_threshold(y, oof)
    per_fold = []
    for k, test in enumerate(folds):
        fig = figures(y[test], oof[test], threshold)
        fig["channels"] = sorted(set(groups[test]))
        per_fold.append(fig)
        print(f"fold {k}: {json.dumps(fig)}")
    pooled = figures(y, oof, threshold)
    print(f"pooled (C={c}, threshold={threshold}): {json.dumps(pooled)}")

    everything = np.arange(len(y))
    model, vocab = fit(design, everything, y, c)
    n_vocab = len(vocab)
    coef = model.coef_[0]
    keep = np.flatnonzero(np.abs(coef[:n_vocab]) > 1e-6)  # n-grams the model does not weigh are left out
    in_sample = 1.0 / (1.0 + np.exp(-(model.decision_function(design.matrix(everything, vocab)) + design.f.prior)))
    k = len(CATEGORIES)
    return {
        "kind": "logistic regression over unigram+bigram vocabulary and promo-lexicon categories",
        "source": SOURCE,
        "positive_labels": [1, 2],
        "trained_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "lexicon_digest": lexicon_digest(),
        "params": {"C": c, "class_weight": "balanced", "min_df": MIN_DF, "n_splits": N_SPLITS, "dense_scale": DENSE_SCALE,
                   "cv": "GroupKFold on channel_id"},
        "threshold": threshold,
        "cv": {"pooled": pooled, "folds": per_fold, "auc_by_C": {str(k_): round(v[0], 4) for k_, v in by_c.items()}},
        "in_sample": {"roc_auc": round(float(roc_auc_score(y, in_sample)), 4), **{
            k_: v for k_, v in figures(y, in_sample, threshold).items() if k_ != "roc_auc"}},
        "intercept": float(model.intercept_[0]),
        "category_weights": {name: float(coef[n_vocab + i] * DENSE_SCALE) for i, name in enumerate(CATEGORIES)},
        "style_weights": {name: float(coef[n_vocab + k + i] * DENSE_SCALE) for i, name in enumerate(STYLE_FEATURES)},
        "vocabulary": [design.grams[vocab[i]] for i in keep],
        "weights": [round(float(coef[i]), 6) for i in keep],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model = train(args.data)
    args.out.write_text(json.dumps(model, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(model['vocabulary'])} n-grams, threshold {model['threshold']}); "
          f"category weights {json.dumps({k: round(v, 2) for k, v in model['category_weights'].items()})}")


if __name__ == "__main__":
    main()
