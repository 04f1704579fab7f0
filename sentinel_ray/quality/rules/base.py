"""The `Rule` base class: the fields every rule has, `when` filtering, and checks of a rule's columns."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinel_ray.quality.rules.arrays import Mask, arrow_mask, definite
from sentinel_ray.quality.rules.context import Context
from sentinel_ray.schemas import Dataset, Kind, dataset

_NAME_RE = r"^[a-z][a-z0-9_]*$"
STRING_KINDS = (Kind.STRING, Kind.SYMBOL)
NUMBER_KINDS = (Kind.FLOAT, Kind.INT)


class Rule(BaseModel):
    """Fields every rule has. Subclasses add their parameters and `_mask`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_RE)
    kind: str
    dataset: str
    reason: str = Field("", pattern=r"^([a-z][a-z0-9_]*)?$", description="code stored with a rejected row; "
                                                                          "default: the rule's name")
    severity: Literal["reject", "warn"] = "reject"
    when: dict[str, list[str]] | None = Field(None, description="only rows whose column holds one of these values")
    description: str = ""

    # Needs `ctx.rejected` (rows every earlier reject rule rejected): runs after the others.
    after_others: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _column_shorthand(cls, data: Any) -> Any:
        # `column: x` is short for `columns: [x]`
        if isinstance(data, dict) and "column" in data and "columns" in cls.model_fields:
            data = dict(data)
            if "columns" in data:
                raise ValueError("give `column` or `columns`, not both")
            data["columns"] = [data.pop("column")]
        return data

    @model_validator(mode="after")
    def _default_reason(self) -> "Rule":
        if not self.reason:
            object.__setattr__(self, "reason", self.name)
        return self

    @property
    def rejects(self) -> bool:
        return self.severity == "reject"

    def mask(self, table: pa.Table, ctx: Context) -> pa.Array:
        """Per row, True where the row fails this rule (never null)."""
        return arrow_mask(self.applied(table, ctx))

    def applied(self, table: pa.Table, ctx: Context) -> pa.Array | np.ndarray:
        """`mask` as Arrow or numpy booleans, whichever the rule computed (saves conversions)."""
        mask = self._mask(table, ctx)
        mask = mask if isinstance(mask, np.ndarray) else definite(mask, table.num_rows)
        for name, values in (self.when or {}).items():
            value_set = pa.array(values, pa.string())
            applies = ctx.codes(table, name).flags(lambda distinct, v=value_set: pc.is_in(distinct, v), null=False)
            if applies is None:
                return np.zeros(table.num_rows, dtype=bool)
            mask = mask & applies if isinstance(mask, np.ndarray) else pc.and_(mask, pa.array(applies))
        return mask

    def _mask(self, table: pa.Table, ctx: Context) -> Mask:
        raise NotImplementedError

    def check(self, ds: Dataset) -> None:
        """Raise ValueError when the rule does not fit `ds` (unknown columns, wrong types)."""
        for name in self.when or {}:
            require(ds, name, STRING_KINDS, "when")

    def columns_used(self) -> list[str]:
        return list(getattr(self, "columns", []))


def require(ds: Dataset, name: str, kinds: tuple[Kind, ...] | None, what: str) -> None:
    try:
        f = ds.field(name)
    except KeyError:
        raise ValueError(f"{what}: {ds.name} has no column {name!r}") from None
    if kinds is not None and f.kind not in kinds:
        raise ValueError(f"{what}: column {name!r} is {f.kind.name.lower()}, this rule needs "
                         f"{' or '.join(k.name.lower() for k in kinds)}")


@lru_cache(maxsize=None)
def symbol_columns(dataset_name: str) -> frozenset[str]:
    """Columns of few distinct values (tickers, exchanges, sources): rules look each value up once."""
    return frozenset(f.name for f in dataset(dataset_name).fields if f.kind is Kind.SYMBOL)
