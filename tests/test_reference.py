"""The symbol table: the shipped one (the whole NSE list joined with BSE, the curated core
merged in), and `sentinel-ray reference refresh` rebuilding it from files or over HTTP."""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from sentinel_ray import reference, reference_build
from sentinel_ray.cli import main
from tests.fakes.server import FakeService, Reply

CORE = [r for r in csv.DictReader(line for line in reference.core_file().read_text().splitlines()
                                  if not line.startswith("#"))]

NSE_CSV = """SYMBOL,NAME OF COMPANY, SERIES, DATE OF LISTING, PAID UP VALUE, MARKET LOT, ISIN NUMBER, FACE VALUE
RELIANCE,Reliance Industries Limited,EQ,29-NOV-1995,10,1,INE002A01018,10
ZOMATO,Zomato Limited,EQ,23-JUL-2021,1,1,INE758T01015,1
KRITIKA,Kritika Wires Limited,BE,01-OCT-2018,2,1,INE00ZZ01010,2
ACME,Acme Solar Holdings Limited,BZ,13-NOV-2024,2,1,INE622W01025,2
"""
BSE_CSV = """Security Code,Security Id,Security Name,Status,Group,Face Value,ISIN No,Industry,Instrument
500325,RELIANCE,RELIANCE INDUSTRIES LTD.,Active,A ,10.00,INE002A01018,Refineries,Equity
543320,ZOMATO,ZOMATO LTD.,Delisted,A ,1.00,INE758T01015,Internet,Equity
543999,ZOMATO,ZOMATO LTD.,Active,A ,1.00,INE758T01015,Internet,Equity
540000,KRITIKA,KRITIKA WIRES &amp; CABLES LTD.,Suspended,T ,2.00,INE00ZZ01028,Cables,Equity
"""
BSE_JSON = ('[{"SCRIP_CD":"500325","Scrip_Name":"Reliance Industries Ltd","Status":"Active","GROUP":"A",'
            '"FACE_VALUE":"10.00","ISIN_NUMBER":"INE002A01018","INDUSTRY":"Refineries","scrip_id":"RELIANCE",'
            '"Segment":"Equity","NSURL":"","Issuer_Name":"Reliance Industries Ltd","Mktcap":"1"}]')


def _rows(path: Path) -> dict[str, dict[str, str]]:
    table, _ = reference.read_table(path)
    return {r["symbol"]: r for r in table.to_pylist()}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data dir of its own; the reference caches are reset on the way in and out."""
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(tmp_path))
    reference.reload()
    yield tmp_path
    monkeypatch.undo()
    reference.reload()


# --- the shipped table ------------------------------------------------------------------------


def test_shipped_table_covers_the_nse_list_with_series_and_bse_codes() -> None:
    table = reference.symbol_table()
    rows = table.to_pylist()
    symbols = [r["symbol"] for r in rows]
    assert len(symbols) == len(set(symbols)) and len(rows) > 1900
    series = Counter(r["series"] for r in rows)
    assert series["EQ"] > 1600 and series["BE"] > 200 and series["BZ"] > 10
    segments = Counter(r["segment"] for r in rows)
    assert segments["nifty50"] == 50 and segments["smallcap"] == 20
    assert {r["segment"] for r in rows if r["series"] in ("BE", "BZ") and r["segment"] not in reference.CORE_SEGMENTS} \
        == {"trade_for_trade"}
    assert sum(1 for r in rows if r["bse_code"]) > 1000
    by_symbol = {r["symbol"]: r for r in rows}
    assert by_symbol["RELIANCE"]["bse_code"] == "500325" and by_symbol["RELIANCE"]["exchanges"] == "NSE;BSE"
    # an ISIN changed by a split still finds the old scrip code by issuer
    assert by_symbol["BAJFINANCE"]["bse_code"] == "500034"
    assert all(r["isin"].startswith("IN") for r in rows if r["source"] != "curated")


def test_the_core_keeps_its_segments_names_and_symbols() -> None:
    rows = {r["symbol"]: r for r in reference.symbol_table().to_pylist()}
    for core in CORE:
        row = rows[core["symbol"]]
        assert (row["segment"], row["name"]) == (core["segment"], core["name"]), core["symbol"]
    assert rows["ETERNAL"]["source"] == "nse_equity_list:ZOMATO" and "ZOMATO" not in rows  # renamed, same ISIN
    assert rows["TMPV"]["source"] == "curated"  # listed since the NSE list was taken
    assert set(reference.symbols("nifty50")) == {c["symbol"] for c in CORE if c["segment"] == "nifty50"}
    assert set(reference.universe("core")) == {c["symbol"] for c in CORE}
    assert len(reference.universe("all")) == len(rows)
    with pytest.raises(ValueError, match="core or all"):
        reference.universe("everything")  # type: ignore[arg-type]


def test_provenance_is_readable_at_run_time() -> None:
    assert reference.AS_OF == "2024-05-15"
    assert "EQUITY_L" in reference.SOURCE and "ListOfScrips" in reference.SOURCE
    assert reference.provenance()["bse_as_of"] == "2015-07-13"
    assert reference.known_tickers().to_pylist() == reference.universe("all")
    assert reference.symbols() == reference.universe("core")  # the default universe stays the core


def test_shipped_table_is_what_the_build_script_makes_of_the_real_lists(shared_fixtures: Path) -> None:
    nse = reference_build.parse_nse_equity_list((shared_fixtures / "nse_equity_list/EQUITY_L.csv").read_text())
    bse = reference_build.parse_bse_scrip_list(
        (shared_fixtures / "bse_scrip_list/ListOfScrips.csv").read_text(errors="replace"))
    assert len(nse) == 1971 and len(bse) == 7108  # of 7,407 rows: those with an ISIN
    assert not any("&amp;" in b.name or "&#" in b.name for b in bse)  # entities decoded
    assert reference_build.build_rows(nse, bse) == reference.symbol_table().to_pylist()


# --- parsing and the join ---------------------------------------------------------------------


def test_join_by_isin_prefers_the_active_scrip_and_merges_the_core() -> None:
    nse = reference_build.parse_nse_equity_list(NSE_CSV)
    assert [n.series for n in nse] == ["EQ", "EQ", "BE", "BZ"] and nse[0].listed_on == "1995-11-29"
    rows = {r["symbol"]: r for r in reference_build.build_rows(nse, reference_build.parse_bse_scrip_list(BSE_CSV))}
    assert rows["RELIANCE"]["segment"] == "nifty50" and rows["RELIANCE"]["name"] == "Reliance Industries Ltd"
    assert rows["ETERNAL"]["bse_code"] == "543999"  # the active one of two codes
    assert rows["KRITIKA"]["segment"] == "trade_for_trade"
    assert rows["KRITIKA"]["bse_status"] == "Suspended" and rows["KRITIKA"]["exchanges"] == "NSE;BSE"  # by issuer
    assert rows["ACME"]["exchanges"] == "NSE" and rows["ACME"]["segment"] == "trade_for_trade"
    assert {c["symbol"] for c in CORE} <= set(rows)  # the core stays even when the list lacks it


def test_bse_json_and_bad_files() -> None:
    [scrip] = reference_build.parse_bse_scrip_list(BSE_JSON)
    assert (scrip.code, scrip.isin, scrip.group) == ("500325", "INE002A01018", "A")
    with pytest.raises(ValueError, match="EQUITY_L"):
        reference_build.parse_nse_equity_list("a,b\n1,2\n")
    with pytest.raises(ValueError, match="BSE scrip list"):
        reference_build.parse_bse_scrip_list("a,b\n1,2\n")


# --- refresh ----------------------------------------------------------------------------------


def test_refresh_from_the_real_files_writes_the_override_that_reference_prefers(
        shared_fixtures: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nse, bse = shared_fixtures / "nse_equity_list/EQUITY_L.csv", shared_fixtures / "bse_scrip_list/ListOfScrips.csv"
    assert main(["reference", "refresh", "--from-files", str(nse), str(bse), "--as-of", "2024-05-15"]) == 0
    assert '"rows": 1972' in capsys.readouterr().out
    override = reference.override_file(data_dir)
    assert override.is_file() and reference.active_file() == override
    assert _rows(override) == {r["symbol"]: r for r in reference.symbol_table().to_pylist()}
    assert reference.AS_OF == "2024-05-15" and str(nse.resolve()) in reference.SOURCE
    assert main(["reference", "show"]) == 0
    assert str(override) in capsys.readouterr().out


def _serve_lists(service: FakeService) -> None:
    """Both exchanges' lists at their real paths: the NSE list long enough to be taken for it."""
    nse_csv = NSE_CSV + "".join(f"X{i:04d},Company {i} Limited,EQ,01-JAN-2020,1,1,INE{i:05d}0101,1\n"
                                for i in range(reference_build.MIN_NSE_ROWS))
    service.route("GET", "/content/equities/EQUITY_L.csv", Reply(body=nse_csv, content_type="text/csv"))
    service.route("GET", "/BseIndiaAPI/api/ListofScripData/w", Reply(body=BSE_JSON, content_type="application/json"))


def test_refresh_over_http_from_a_local_server(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeService() as service:
        _serve_lists(service)
        assert main(["reference", "refresh", "--nse-url", f"{service.url}/content/equities/EQUITY_L.csv",
                     "--bse-url", f"{service.url}/BseIndiaAPI/api/ListofScripData/w?segment=Equity"]) == 0
        assert service.seen("/BseIndiaAPI/api/ListofScripData/w")[0].query["segment"] == "Equity"
        assert "Mozilla" in service.seen("/content/equities/EQUITY_L.csv")[0].headers["User-Agent"]
    rows = reference.symbol_table().to_pylist()
    assert reference.active_file() == reference.override_file(data_dir)
    assert len(rows) == 4 + reference_build.MIN_NSE_ROWS + 68  # the core stays; RELIANCE and ZOMATO are core
    assert {r["symbol"]: r["bse_code"] for r in rows}["RELIANCE"] == "500325"
    assert "127.0.0.1" in reference.SOURCE
    capsys.readouterr()


def test_refresh_asks_where_and_how_the_settings_say(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with FakeService() as service:
        _serve_lists(service)
        for name, value in (("NSE_ARCHIVES_URL", service.url), ("BSE_BASE_URL", service.url),
                            ("BSE_SITE_URL", "http://bse.example"), ("HTTP_USER_AGENT", "Mozilla/5.0 test-agent")):
            monkeypatch.setenv(f"SENTINEL_{name}", value)
        assert main(["reference", "refresh"]) == 0  # no URL given: the settings' hosts, the lists' paths
        nse_call = service.seen("/content/equities/EQUITY_L.csv")[0]
        bse_call = service.seen("/BseIndiaAPI/api/ListofScripData/w")[0]
    assert bse_call.query["segment"] == "Equity" and bse_call.query["status"] == "Active"
    for call in (nse_call, bse_call):
        assert call.headers["User-Agent"] == "Mozilla/5.0 test-agent"
        assert call.headers["Referer"] == "http://bse.example/"
    assert {r["symbol"]: r["bse_code"] for r in reference.symbol_table().to_pylist()}["RELIANCE"] == "500325"
    capsys.readouterr()


def test_refresh_without_network_fails_with_a_clear_message(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeService() as service:
        service.route("GET", "/EQUITY_L.csv", Reply(status=403, body="<html>Access Denied</html>"))
        assert main(["reference", "refresh", "--nse-url", f"{service.url}/EQUITY_L.csv"]) == 1
        err = capsys.readouterr().err
        assert "HTTP 403" in err and "--from-files" in err and "Traceback" not in err
        service.route("GET", "/short.csv", Reply(body=NSE_CSV))  # an answer, but not the whole list
        assert main(["reference", "refresh", "--nse-url", f"{service.url}/short.csv", "--no-bse"]) == 1
        assert "not the equity list" in capsys.readouterr().err
    port = service.port  # stopped: nothing listens there now
    assert main(["reference", "refresh", "--nse-url", f"http://127.0.0.1:{port}/EQUITY_L.csv", "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and "Traceback" not in err
    assert not reference.override_file(data_dir).exists()  # nothing half-written
    assert main(["reference", "refresh", "--from-files", str(data_dir / "missing.csv")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_a_broken_override_is_named(data_dir: Path) -> None:
    override = reference.override_file(data_dir)
    override.parent.mkdir(parents=True)
    override.write_text("symbol,name\nX,Y\n")
    with pytest.raises(ValueError, match=str(override)):
        reference.symbol_table()


def test_write_table_round_trips_with_provenance(tmp_path: Path) -> None:
    rows = reference_build.build_rows(reference_build.parse_nse_equity_list(NSE_CSV), None)
    path = reference_build.write_table(rows, tmp_path / "t.csv", {"source": "test", "as_of": "2030-01-02"})
    table, meta = reference.read_table(path)
    assert table.to_pylist() == rows and meta == {"source": "test", "as_of": "2030-01-02"}
    assert next(csv.reader(io.StringIO(path.read_text().split("\n", 3)[3]))) == list(reference.COLUMNS)
