"""Reference data: the NSE/BSE symbols the platform knows.

The table is built from the exchanges' own lists (NSE EQUITY_L.csv joined with BSE's scrip
list by ISIN) by `reference_build`; the package ships one (`data/symbols.csv`, made by
scripts/build_reference.py) and `sentinel-ray reference refresh` writes a newer one to
`<data_dir>/reference/symbols.csv`, which is preferred when present. Each file states its
source and as-of date in `# key: value` lines above the header (`provenance()`,
`reference.AS_OF`, `reference.SOURCE`).

Columns: symbol, name, isin, series (EQ | BE | BZ; "" when not in the NSE list), exchanges
("NSE" | "NSE;BSE"), bse_code, bse_group, bse_status, segment, listed_on, face_value, source.
`segment` is the universe a symbol belongs to: nifty50 and smallcap (the curated core of
data/core_symbols.csv), else equity (series EQ) or trade_for_trade (BE, BZ).
"""
from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sentinel_ray.config import load_settings

SYMBOLS_FILE = "symbols.csv"
CORE_FILE = "core_symbols.csv"
COLUMNS = ("symbol", "name", "isin", "series", "exchanges", "bse_code", "bse_group", "bse_status", "segment",
           "listed_on", "face_value", "source")
CORE_SEGMENTS = ("nifty50", "smallcap")
SEGMENTS = (*CORE_SEGMENTS, "equity", "trade_for_trade")
Universe = Literal["core", "all"]


def shipped_file() -> Traversable:
    return resources.files("sentinel_ray") / "data" / SYMBOLS_FILE


def core_file() -> Traversable:
    return resources.files("sentinel_ray") / "data" / CORE_FILE


def override_file(data_dir: Path) -> Path:
    """Where `reference refresh` writes the table it builds from the live lists."""
    return Path(data_dir) / "reference" / SYMBOLS_FILE


@lru_cache(maxsize=1)
def active_file() -> Path | Traversable:
    """The refreshed table under the data dir when there is one, else the shipped one.
    Decided once per process: a refresh is picked up by processes started after it."""
    override = override_file(load_settings().resolved_data_dir)
    return override if override.is_file() else shipped_file()


def read_table(source: Path | Traversable) -> tuple[pa.Table, dict[str, str]]:
    """A symbols file: (table of COLUMNS, its `# key: value` provenance lines)."""
    text = source.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip()] = value.strip()
        elif line:
            body.append(line)
    header = body[0].split(",") if body else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ValueError(f"symbol table {source}: missing columns {missing}")
    table = pacsv.read_csv(
        io.BytesIO("\n".join(body).encode()),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                             strings_can_be_null=False, include_columns=list(COLUMNS)),
    )
    return table, meta


@lru_cache(maxsize=1)
def _loaded() -> tuple[pa.Table, dict[str, str]]:
    return read_table(active_file())


def symbol_table() -> pa.Table:
    """Every known symbol, one row each (columns: COLUMNS)."""
    return _loaded()[0]


def provenance() -> dict[str, str]:
    """Where the active table came from: source, as_of (the NSE list's date), bse_as_of, file."""
    return {**_loaded()[1], "file": str(active_file())}


def __getattr__(name: str) -> Any:
    # AS_OF / SOURCE describe the active table, read when first asked, not at import.
    if name == "AS_OF":
        return provenance().get("as_of", "")
    if name == "SOURCE":
        return provenance().get("source", "")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=1)
def known_tickers() -> pa.Array:
    """All symbols, as an Arrow array for vectorised `is_in` checks."""
    return symbol_table().column("symbol").combine_chunks()


def symbols(segment: str | None = None) -> list[str]:
    """The symbols of one segment (nifty50, smallcap, equity, trade_for_trade); without one,
    the core universe (what callers that predate the whole-market table, such as the replay
    simulator's default, were written for). Every symbol: `universe("all")`, `known_tickers()`."""
    if segment is None:
        return universe("core")
    table = symbol_table()
    mask = pc.equal(table.column("segment"), segment)
    return table.filter(mask).column("symbol").to_pylist()


def universe(name: Universe = "core") -> list[str]:
    """core: the curated NIFTY 50 + small caps; all: every listed symbol of the table."""
    if name == "all":
        return symbol_table().column("symbol").to_pylist()
    if name == "core":
        return [s for segment in CORE_SEGMENTS for s in symbols(segment)]
    raise ValueError(f"unknown universe {name!r}: core or all")


def reload() -> None:
    """Forget the loaded table (after a refresh, or in tests that point the data dir elsewhere)."""
    for cached in (active_file, _loaded, known_tickers):
        cached.cache_clear()
