"""Building the symbol table from the exchanges' own lists.

NSE publishes every listed equity in EQUITY_L.csv (symbol, name, series, listing date, ISIN,
face value); BSE lists its scrips (scrip code, group, status, ISIN). The table joins them by
ISIN and merges the curated core (data/core_symbols.csv: NIFTY 50 and the replay's small
caps, with the names their aliases derive from). scripts/build_reference.py writes the
shipped table from recorded copies; `sentinel-ray reference refresh` rebuilds it from the
live lists (or local files) into the data dir, where `reference` prefers it.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import html
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from sentinel_ray import reference
from sentinel_ray.config import ReferenceSettings
from sentinel_ray.market import EXCHANGES, ist_date
from sentinel_ray.records import utc_now

# NSE's list of listed equities (the "Securities available for Equity segment" download),
# under ReferenceSettings.nse_archives_url.
NSE_EQUITY_LIST_PATH = "/content/equities/EQUITY_L.csv"
# BSE's scrip master (what bseindia.com's "List of Scrips" page loads), under
# ReferenceSettings.bse_base_url: JSON rows with SCRIP_CD, scrip_id, Scrip_Name, Status,
# GROUP, ISIN_NUMBER.
BSE_SCRIP_LIST_PATH = "/BseIndiaAPI/api/ListofScripData/w?Group=&Scripcode=&industry=&segment=Equity&status=Active"
MIN_NSE_ROWS = 500  # fewer: an error page or a cut download, not the list
TRADE_FOR_TRADE = frozenset({"BE", "BZ"})
_BSE_STATUS_RANK = {"Active": 0, "Suspended": 1, "Delisted": 2}
_NSE_COLUMNS = ("SYMBOL", "NAME OF COMPANY", "SERIES", "ISIN NUMBER")


class ReferenceFetchError(RuntimeError):
    """A live list could not be downloaded or is not the list it should be."""


@dataclass(frozen=True)
class NseListing:
    symbol: str
    name: str
    series: str
    isin: str
    listed_on: str  # ISO date, "" when unparsable
    face_value: str


@dataclass(frozen=True)
class BseScrip:
    code: str
    scrip_id: str
    name: str
    status: str
    group: str
    isin: str


# --- parsing -----------------------------------------------------------------------------


def parse_nse_equity_list(text: str) -> list[NseListing]:
    """EQUITY_L.csv as NSE publishes it (a space before every header after the first)."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows:
        raise ValueError("NSE equity list: no rows")
    header = {k.strip() for k in rows[0] if k}
    missing = [c for c in _NSE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"NSE equity list: missing columns {missing} (is this EQUITY_L.csv?)")
    listings = []
    for raw in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not row["SYMBOL"]:
            continue
        listings.append(NseListing(row["SYMBOL"].upper(), " ".join(row["NAME OF COMPANY"].split()),
                                   row["SERIES"].upper(), row["ISIN NUMBER"].upper(),
                                   _nse_date(row.get("DATE OF LISTING", "")), row.get("FACE VALUE", "")))
    return listings


def _nse_date(text: str) -> str:
    try:
        return dt.datetime.strptime(text, "%d-%b-%Y").date().isoformat()
    except ValueError:
        return ""


def parse_bse_scrip_list(text: str) -> list[BseScrip]:
    """BSE's scrip list: the ListOfScrips.csv download, or the ListofScripData JSON."""
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        records = [{k: "" if v is None else str(v) for k, v in r.items()} for r in json.loads(text)]
        fields = ("SCRIP_CD", "scrip_id", "Scrip_Name", "Status", "GROUP", "ISIN_NUMBER")
    else:
        records = list(csv.DictReader(io.StringIO(text)))
        fields = ("Security Code", "Security Id", "Security Name", "Status", "Group", "ISIN No")
    if records and any(f not in records[0] for f in fields):
        raise ValueError(f"BSE scrip list: expected fields {list(fields)}, got {sorted(records[0])}")
    scrips = []
    for r in records:
        code, scrip_id, name, status, group, isin = (r.get(f, "").strip() for f in fields)
        if code and isin:
            scrips.append(BseScrip(code, scrip_id, " ".join(html.unescape(name).split()), status, group,
                                   isin.upper()))
    return scrips


def core_rows() -> list[dict[str, str]]:
    """The curated core (data/core_symbols.csv), comment lines skipped."""
    lines = [line for line in reference.core_file().read_text(encoding="utf-8").splitlines()
             if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


# --- the join ----------------------------------------------------------------------------


def _rank(s: BseScrip) -> tuple[int, str]:
    return _BSE_STATUS_RANK.get(s.status, 3), s.code


def _best_bse(scrips: Iterable[BseScrip], key: Any = lambda s: s.isin) -> dict[str, BseScrip]:
    """ISIN -> the scrip still trading (a company relisted under a new code keeps its ISIN)."""
    best: dict[str, BseScrip] = {}
    for s in scrips:
        current = best.get(key(s))
        if current is None or _rank(s) < _rank(current):
            best[key(s)] = s
    return best


def _issue(isin: str) -> str:
    """An ISIN without its serial and check digit: the issuer and the kind of security.
    A split or a face-value change gives the same shares a new ISIN with the same issue
    (INE296A01016 -> INE296A01024), so an old scrip list still knows the company by it."""
    return isin[:9]


class _BseIndex:
    def __init__(self, scrips: list[BseScrip]) -> None:
        self.by_isin = _best_bse(scrips)
        issues = Counter(_issue(isin) for isin in self.by_isin)
        self.by_issue = {k: v for k, v in _best_bse(scrips, lambda s: _issue(s.isin)).items() if issues[k] == 1}

    def get(self, isin: str) -> BseScrip | None:
        if not isin:
            return None
        return self.by_isin.get(isin) or self.by_issue.get(_issue(isin))


def build_rows(nse: list[NseListing], bse: list[BseScrip] | None,
               core: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """The symbol table's rows: every NSE listing, its BSE scrip by ISIN, the core merged in.

    A core symbol keeps its segment and name. When the NSE list carries its ISIN under
    another symbol (ZOMATO, now ETERNAL) that row becomes the core symbol's; a core symbol
    the list does not have at all (listed or renamed since) stays, with source "curated"."""
    core = core_rows() if core is None else core
    by_isin = _BseIndex(bse or [])
    core_by_symbol = {c["symbol"]: c for c in core}
    nse_symbols = {n.symbol for n in nse}
    renamed = {c["isin"]: c["symbol"] for c in core if c["symbol"] not in nse_symbols and c["isin"]}
    rows: list[dict[str, str]] = []
    for n in nse:
        symbol = renamed.get(n.isin, n.symbol)
        c = core_by_symbol.get(symbol)
        scrip = by_isin.get(n.isin)
        on_bse = scrip is not None and scrip.status != "Delisted"
        exchanges = {"NSE", *(["BSE"] if on_bse else []), *((c["exchanges"].split(";")) if c else [])}
        rows.append({
            "symbol": symbol,
            "name": c["name"] if c else n.name,
            "isin": n.isin,
            "series": n.series,
            "exchanges": ";".join(e for e in EXCHANGES if e in exchanges),
            "bse_code": scrip.code if scrip else "",
            "bse_group": scrip.group if scrip else "",
            "bse_status": scrip.status if scrip else "",
            "segment": c["segment"] if c else ("trade_for_trade" if n.series in TRADE_FOR_TRADE else "equity"),
            "listed_on": n.listed_on,
            "face_value": n.face_value,
            "source": "nse_equity_list" if symbol == n.symbol else f"nse_equity_list:{n.symbol}",
        })
    have = {r["symbol"] for r in rows}
    for c in core:
        if c["symbol"] not in have:
            scrip = by_isin.get(c["isin"]) if c["isin"] else None
            rows.append({"symbol": c["symbol"], "name": c["name"], "isin": c["isin"], "series": "",
                         "exchanges": c["exchanges"], "bse_code": scrip.code if scrip else "",
                         "bse_group": scrip.group if scrip else "", "bse_status": scrip.status if scrip else "",
                         "segment": c["segment"], "listed_on": "", "face_value": "", "source": "curated"})
    # The core first, in its file's order (the replay simulator draws per symbol in this
    # order), then the rest by segment and symbol.
    position = {c["symbol"]: i for i, c in enumerate(core)}
    order = {s: i for i, s in enumerate(reference.SEGMENTS)}
    rows.sort(key=lambda r: (position.get(r["symbol"], len(position)), order.get(r["segment"], len(order)),
                             r["symbol"]))
    return rows


def write_table(rows: list[dict[str, str]], path: Path, meta: dict[str, str]) -> Path:
    """The table as CSV with `# key: value` provenance lines, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    out.write("# Sentinel Ray symbol table, generated by sentinel_ray.reference_build (do not edit by hand)\n")
    for key, value in meta.items():
        out.write(f"# {key}: {value}\n")
    writer = csv.DictWriter(out, fieldnames=list(reference.COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def summary(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Counts worth printing: rows, by series, by segment, on BSE, BSE codes."""
    return {
        "rows": len(rows),
        "series": dict(sorted(Counter(r["series"] or "-" for r in rows).items())),
        "segments": dict(Counter(r["segment"] for r in rows)),
        "on_bse": sum(1 for r in rows if "BSE" in r["exchanges"].split(";")),
        "bse_codes": sum(1 for r in rows if r["bse_code"]),
        "curated_only": [r["symbol"] for r in rows if r["source"] == "curated"],
        "renamed": {r["symbol"]: r["source"].split(":", 1)[1] for r in rows if ":" in r["source"]},
    }


def build_from_texts(nse_text: str, bse_text: str | None, path: Path, meta: dict[str, str]) -> dict[str, Any]:
    rows = build_rows(parse_nse_equity_list(nse_text), parse_bse_scrip_list(bse_text) if bse_text else None)
    write_table(rows, path, meta)
    return {**summary(rows), "file": str(path), **meta}


# --- refresh -----------------------------------------------------------------------------


def nse_list_url(settings: ReferenceSettings) -> str:
    return settings.nse_archives_url.rstrip("/") + NSE_EQUITY_LIST_PATH


def bse_list_url(settings: ReferenceSettings) -> str:
    return settings.bse_base_url.rstrip("/") + BSE_SCRIP_LIST_PATH


def _headers(settings: ReferenceSettings) -> dict[str, str]:
    # Both sites refuse clients without browser-like headers; BSE's API also wants its own
    # site as the Referer.
    return {"User-Agent": settings.user_agent, "Accept": "text/csv,application/json,*/*",
            "Referer": settings.bse_site_url.rstrip("/") + "/"}


async def _get(url: str, settings: ReferenceSettings) -> str:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    try:
        async with aiohttp.ClientSession(headers=_headers(settings), timeout=timeout) as s:
            async with s.get(url) as response:
                if response.status != 200:
                    raise ReferenceFetchError(f"{url}: HTTP {response.status}")
                return (await response.read()).decode("utf-8", errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        raise ReferenceFetchError(f"{url}: {type(e).__name__}: {e or 'timed out'}") from None


async def fetch_lists(nse_url: str, bse_url: str | None, settings: ReferenceSettings) -> tuple[str, str | None]:
    """The live NSE equity list and BSE scrip list (None for `bse_url=None`)."""
    nse_text = await _get(nse_url, settings)
    if nse_text.count("\n") < MIN_NSE_ROWS:
        raise ReferenceFetchError(f"{nse_url}: {nse_text.count(chr(10))} lines, not the equity list")
    return nse_text, (await _get(bse_url, settings) if bse_url else None)


def refresh(data_dir: Path, settings: ReferenceSettings, *, nse_url: str | None = None, bse_url: str | None = None,
            with_bse: bool = True, from_files: list[Path] | None = None,
            as_of: dt.date | None = None) -> dict[str, Any]:
    """Rebuild the table into `<data_dir>/reference/symbols.csv` from the live lists (at
    `nse_url` and `bse_url`, by default where `settings` say the exchanges publish them; the
    NSE list only without `with_bse`), or from `from_files` ([NSE_CSV] or [NSE_CSV, BSE_CSV]).
    Raises ReferenceFetchError (no network, a blocked or partial download) or ValueError (a
    file that is not the list)."""
    today = ist_date(utc_now())
    if from_files:
        if len(from_files) > 2:
            raise ValueError("--from-files takes NSE_CSV [BSE_CSV]")
        for f in from_files:
            if not Path(f).is_file():
                raise ValueError(f"no such file: {f}")
        nse_text = Path(from_files[0]).read_text(encoding="utf-8", errors="replace")
        bse_text = Path(from_files[1]).read_text(encoding="utf-8", errors="replace") if len(from_files) > 1 else None
        file_date = dt.date.fromtimestamp(Path(from_files[0]).stat().st_mtime)
        meta = {"source": " + ".join(str(Path(f).resolve()) for f in from_files),
                "as_of": (as_of or file_date).isoformat()}
        if len(from_files) > 1:
            meta["bse_as_of"] = (as_of or dt.date.fromtimestamp(Path(from_files[1]).stat().st_mtime)).isoformat()
    else:
        nse_url = nse_url or nse_list_url(settings)
        bse_url = (bse_url or bse_list_url(settings)) if with_bse else None
        try:
            nse_text, bse_text = asyncio.run(fetch_lists(nse_url, bse_url, settings))
        except ReferenceFetchError as e:
            raise ReferenceFetchError(f"could not download the exchange lists ({e}); without network, "
                                      "build from local copies: reference refresh --from-files NSE_CSV [BSE_CSV]"
                                      ) from None
        meta = {"source": nse_url + (f" + {bse_url}" if bse_url else ""), "as_of": (as_of or today).isoformat()}
        if bse_url:
            meta["bse_as_of"] = meta["as_of"]
    meta["built"] = today.isoformat()
    result = build_from_texts(nse_text, bse_text, reference.override_file(data_dir), meta)
    reference.reload()  # this process sees the new table too
    return result


def describe() -> dict[str, Any]:
    """The active table: its provenance and counts (`sentinel-ray reference show`)."""
    return {**reference.provenance(), **summary(reference.symbol_table().to_pylist())}
