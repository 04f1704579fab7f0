"""A dataset's rules in order (`RuleSet`), their verdict on a batch (`Evaluation`), and the
rule sets by dataset (`QualityRules`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.quality.rules.arrays import bool_numpy, union
from sentinel_ray.quality.rules.base import Rule
from sentinel_ray.quality.rules.context import Context
from sentinel_ray.schemas import Dataset


@dataclass
class Evaluation:
    """The verdict on one batch."""

    reject_reason: pa.Array  # string per row: the first failing reject rule's reason; null = row passes
    warn_counts: dict[str, int]  # warn rule name -> kept rows it flagged (rules that flagged none are left out)
    warn_masks: dict[str, pa.Array]  # warn rule name -> per-row flags, for the rules in warn_counts
    rows_warned: int  # kept rows flagged by at least one warn rule

    @property
    def rejected(self) -> pa.Array:
        return pc.is_valid(self.reject_reason)


@dataclass(frozen=True)
class RuleSet:
    """One dataset's rules, in priority order."""

    dataset: str
    rules: tuple[Rule, ...] = ()

    def __post_init__(self) -> None:
        reject = [r.reason for r in self.rules if r.rejects]
        object.__setattr__(self, "_reason_strings", pa.array(reject, pa.string()))

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"{self.dataset} has no rule {name!r}; rules: {', '.join(self.names)}")

    def evaluate(self, table: pa.Table, ctx: Context) -> Evaluation:
        """Every rule over the whole table: reject reasons per row, warn counts.

        `table` must be conformed (`clean.conform`): every column present with its type.
        """
        n = table.num_rows
        ctx = dataclasses.replace(ctx, rejected=None)  # fresh per-table caches; the caller's ctx is untouched
        reject = [r for r in self.rules if r.rejects]
        masks: dict[int, pa.Array | np.ndarray] = {}
        for i, rule in enumerate(reject):
            if not rule.after_others:
                masks[i] = rule.applied(table, ctx)
        rejected = union(list(masks.values()), n)
        for i, rule in enumerate(reject):
            if rule.after_others:
                ctx.rejected = rejected
                masks[i] = rule.applied(table, ctx)
                rejected = rejected | bool_numpy(masks[i])
        ctx.rejected = rejected
        warn_counts: dict[str, int] = {}
        warn_masks: dict[str, pa.Array] = {}
        warned: np.ndarray | None = None
        for rule in (r for r in self.rules if not r.rejects):
            flagged = bool_numpy(rule.applied(table, ctx)) & ~rejected
            count = int(flagged.sum())
            if count:
                warn_counts[rule.name] = count
                warn_masks[rule.name] = pa.array(flagged)
                warned = flagged if warned is None else warned | flagged
        reasons = self._first_reason([masks[i] for i in range(len(reject))], rejected)
        return Evaluation(reasons, warn_counts, warn_masks, int(warned.sum()) if warned is not None else 0)

    def _first_reason(self, masks: list[pa.Array | np.ndarray], rejected: np.ndarray) -> pa.Array:
        n = len(rejected)
        rows = np.flatnonzero(rejected)
        if rows.size == 0:
            return pa.nulls(n, pa.string())  # the common case on clean data
        # Only the rejected rows (a few per thousand) need a reason: fold on them alone, from
        # the lowest priority up so a higher-priority rule overwrites a lower one.
        code = np.zeros(rows.size, dtype=np.int16)
        at = pa.array(rows)
        for i in reversed(range(len(masks))):
            m = masks[i]
            hit = m[rows] if isinstance(m, np.ndarray) else bool_numpy(pc.take(m, at))
            code[hit] = i
        full = np.zeros(n, dtype=np.int16)
        full[rows] = code
        return pc.take(self._reason_strings, pa.array(full, mask=~rejected))  # type: ignore[attr-defined]


@dataclass(frozen=True)
class QualityRules(Mapping[str, RuleSet]):
    """Rule sets by dataset name, and the files they were read from."""

    sets: dict[str, RuleSet]
    files: tuple[str, ...] = ()
    version: str = ""  # sha256 of the merged rule specs (12 hex): recorded with every run that applied them

    def __getitem__(self, name: str) -> RuleSet:
        return self.sets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sets)

    def __len__(self) -> int:
        return len(self.sets)

    def for_dataset(self, ds: Dataset | str) -> RuleSet:
        """The dataset's rules; an empty set (every row passes) for a dataset with none."""
        name = ds if isinstance(ds, str) else ds.name
        return self.sets.get(name) or RuleSet(name)
