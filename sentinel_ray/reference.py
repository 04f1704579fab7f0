"""Reference data shipped with the package: the NSE/BSE symbols the platform knows."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

SYMBOLS_FILE = "nse_symbols.csv"


@lru_cache(maxsize=1)
def symbol_table() -> pa.Table:
    """Columns: symbol, name, isin, exchanges ("NSE;BSE"), segment (nifty50 | smallcap)."""
    path = resources.files("sentinel_ray") / "data" / SYMBOLS_FILE
    with resources.as_file(path) as p:
        return pacsv.read_csv(
            p,
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in ("symbol", "name", "isin", "exchanges", "segment")},
                strings_can_be_null=False,
            ),
        )


@lru_cache(maxsize=1)
def known_tickers() -> pa.Array:
    """All symbols, as an Arrow array for vectorised `is_in` checks."""
    return symbol_table().column("symbol").combine_chunks()


def symbols(segment: str | None = None) -> list[str]:
    table = symbol_table()
    if segment is None:
        return table.column("symbol").to_pylist()
    mask = pc.equal(table.column("segment"), segment)
    return table.filter(mask).column("symbol").to_pylist()
