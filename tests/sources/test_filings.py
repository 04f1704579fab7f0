"""FilingsSource: NSE and BSE corporate announcements against local fixture servers."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from sentinel_ray.config import FilingsSettings, Settings
from sentinel_ray.schemas import FILINGS
from sentinel_ray.sources import make_source
from sentinel_ray.records import RAW_POS, RawPayload, SourceError
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.filings import (BSE_ANNOUNCEMENTS_PATH, NSE_ANNOUNCEMENTS_PATH, FilingsSource,
    normalise_company, ticker_for_company)
from sentinel_ray.sources.http import AuthError, FetchError
from tests.fakes.server import Reply
from sentinel_ray.market import IST
from tests.sources.helpers import (UTC, RecordingSleep, assert_replays, fast_client, fetch_once as run, payloads,
                                   skipped)

EVENING = dt.datetime(2025, 4, 1, 12, 15, tzinfo=UTC)  # 17:45 IST
payload = payloads("filings")


def ist(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(UTC)


def serve_nse(fake, *replies: Reply) -> None:
    fake.route("GET", "/", Reply(body=b"<html>NSE</html>", content_type="text/html",
                                 headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))
    fake.route("GET", NSE_ANNOUNCEMENTS_PATH, *replies)


def bse_pages(pages: dict[str, bytes]):
    def handler(request):
        body = pages.get(request.query["pageno"], payload("bse_empty.json"))
        return Reply(body=body, content_type="application/json")
    return handler


def make(fake, *, exchanges=("NSE", "BSE"), page_cap: int = 10, now=EVENING, attempts: int = 4,
         timeout_s: float = 5.0) -> tuple[FilingsSource, RecordingSleep]:
    sleep = RecordingSleep()

    def client(name: str):
        return fast_client(name, sleep, timeout_s=timeout_s, max_attempts=attempts, headers={"User-Agent": "UA/t"})

    settings = FilingsSettings(nse_base_url=fake.url, bse_base_url=fake.url, page_cap=page_cap)
    source = FilingsSource(settings, nse_http=client("filings/nse"), bse_http=client("filings/bse"),
                           exchanges=exchanges, clock=lambda: now)
    return source, sleep


def rows(result) -> list[dict]:
    return result.records["filings"].to_pylist()


FIRST_BSE = {"1": payload("bse_page1.json"), "2": payload("bse_page2.json"), "3": payload("bse_page3.json")}


def test_company_names_map_to_tickers_only_when_exact() -> None:
    assert normalise_company("RELIANCE INDUSTRIES LTD.") == normalise_company("Reliance Industries Limited")
    assert ticker_for_company("RELIANCE INDUSTRIES LTD.") == "RELIANCE"
    assert ticker_for_company("Vodafone Idea Limited") == "IDEA"
    assert ticker_for_company("LARSEN & TOUBRO LTD.") == "LT"
    assert ticker_for_company("SOUTH INDIAN BANK LTD.") == "SOUTHBANK"
    assert ticker_for_company("PAN ELECTRONICS INDIA LTD.") is None
    assert ticker_for_company("RELIANCE") is None


def test_announcements_from_both_exchanges(fake_service) -> None:
    serve_nse(fake_service, Reply(body=payload("nse_announcements.json"), content_type="application/json"))
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(FIRST_BSE))
    source, sleep = make(fake_service)
    result = run(source)

    table = result.records["filings"]
    assert table.schema == record_schema(FILINGS)
    got = rows(result)
    nse = [r for r in got if r["exchange"] == "NSE"]
    bse = [r for r in got if r["exchange"] == "BSE"]
    assert [r["filing_id"] for r in nse] == ["107312981", "107312977", "107312530"]
    suzlon = nse[0]
    assert (suzlon["ticker"], suzlon["company"], suzlon["subject"]) == (
        "SUZLON", "Suzlon Energy Limited", "Bagging/Receiving of orders/contracts")
    assert suzlon["details"].startswith("Suzlon Energy Limited has informed the Exchange")
    assert suzlon["ts"] == ist("2025-04-01T17:12:45")  # exchange dissemination time, IST -> UTC
    assert suzlon["attachment_url"].startswith("https://nsearchives.nseindia.com/corporate/SUZLON_")
    assert (suzlon["source"], suzlon["run_id"]) == ("filings", None)

    # BSE: five announcements over three pages, ticker only where the name matches the symbol list
    assert len(bse) == 5 and len(fake_service.seen(BSE_ANNOUNCEMENTS_PATH)) == 3
    assert [r["ticker"] for r in bse] == ["RELIANCE", "SUZLON", "IDEA", None, "TCS"]
    reliance = bse[0]
    assert reliance["company"] == "RELIANCE INDUSTRIES LTD."
    assert reliance["filing_id"] == "c0f1a3de-1b7e-4e52-9d0e-7d1c0b6a9f01"
    assert reliance["subject"].endswith("Analyst / Investor Meet - Intimation")
    assert reliance["details"] == "Intimation of Analyst / Investor Meet."
    assert reliance["ts"] == ist("2025-04-01T17:14:02.513")
    assert reliance["attachment_url"] == ("https://www.bseindia.com/xml-data/corpfiling/AttachLive/"
                                          "3f5b9a8e-6c1d-4e2f-9a7b-1d2c3e4f5a61.pdf")
    assert bse[4]["attachment_url"] is None

    # the requests: NSE after its cookie handshake, BSE with its site as Referer/Origin
    nse_call = fake_service.seen(NSE_ANNOUNCEMENTS_PATH)[0]
    assert nse_call.query == {"index": "equities", "from_date": "01-04-2025", "to_date": "01-04-2025"}
    assert "nsit=fixture-nsit" in nse_call.headers["Cookie"]
    bse_call = fake_service.seen(BSE_ANNOUNCEMENTS_PATH)[0]
    assert bse_call.query == {"pageno": "1", "strCat": "-1", "subcategory": "-1", "strPrevDate": "20250401",
                              "strToDate": "20250401", "strScrip": "", "strSearch": "P", "strType": "C"}
    assert bse_call.headers["Referer"] == "https://www.bseindia.com/"
    assert bse_call.headers["Origin"] == "https://www.bseindia.com"

    assert [p.body for p in result.raw] == [payload("nse_announcements.json"), *FIRST_BSE.values()]
    assert "pageno=2" in result.raw[2].request and "from_date=01-04-2025" in result.raw[0].request
    assert result.next_cursor == {
        "NSE": {"ts": "2025-04-01T11:42:45Z", "ids": ["107312977", "107312981"]},
        "BSE": {"ts": "2025-04-01T11:44:02.513000Z", "ids": ["c0f1a3de-1b7e-4e52-9d0e-7d1c0b6a9f01"]}}
    assert result.meta["errors"] == {} and sleep.calls == []


def test_bse_pages_stop_at_the_page_cap(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(FIRST_BSE))
    source, _ = make(fake_service, exchanges=("BSE",), page_cap=2)
    result = run(source)
    assert len(rows(result)) == 4 and len(fake_service.seen(BSE_ANNOUNCEMENTS_PATH)) == 2
    assert result.meta["truncated"] == ["BSE"]


def test_bse_pages_end_at_an_empty_page_when_no_total_is_given(fake_service) -> None:
    pages = {k: json.dumps({"Table": json.loads(v)["Table"]}).encode() for k, v in FIRST_BSE.items()}
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(pages))
    source, _ = make(fake_service, exchanges=("BSE",))
    assert len(rows(run(source))) == 5
    assert [r.query["pageno"] for r in fake_service.seen(BSE_ANNOUNCEMENTS_PATH)] == ["1", "2", "3", "4"]


def test_second_poll_emits_only_new_filings(fake_service) -> None:
    serve_nse(fake_service, Reply(body=payload("nse_announcements.json")),
              Reply(body=payload("nse_announcements_next.json")))
    first_pages = dict(FIRST_BSE)
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(first_pages))
    source, _ = make(fake_service)
    one = run(source)

    # second poll: NSE lists everything again plus two new ones (one in the same second as
    # the last poll's newest); BSE's first page starts with a new one, then one already seen
    first_pages.clear()
    first_pages["1"] = payload("bse_next_page1.json")
    source, _ = make(fake_service, now=EVENING + dt.timedelta(minutes=10))
    two = run(source, one.next_cursor)
    got = rows(two)
    assert [(r["exchange"], r["filing_id"]) for r in got] == [
        ("NSE", "107313455"), ("NSE", "107312990"), ("BSE", "d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f08")]
    assert got[2]["ticker"] == "INFY"
    # BSE stopped at the page that reached what the cursor had seen
    assert [r.query["pageno"] for r in fake_service.seen(BSE_ANNOUNCEMENTS_PATH)][3:] == ["1"]
    assert two.next_cursor["NSE"] == {"ts": "2025-04-01T12:10:06Z", "ids": ["107313455"]}
    # nothing new on a third look at the same pages
    source, _ = make(fake_service, now=EVENING + dt.timedelta(minutes=20))
    fake_service.route("GET", NSE_ANNOUNCEMENTS_PATH, Reply(body=payload("nse_announcements_next.json")))
    three = run(source, two.next_cursor)
    assert rows(three) == [] and three.next_cursor == two.next_cursor


def test_same_second_boundary_keeps_ids_seen(fake_service) -> None:
    serve_nse(fake_service, Reply(body=payload("nse_announcements.json")))
    source, _ = make(fake_service, exchanges=("NSE",))
    cursor = {"NSE": {"ts": "2025-04-01T11:42:45Z", "ids": ["107312977"]}}
    result = run(source, cursor)
    assert [r["filing_id"] for r in rows(result)] == ["107312981"]
    assert result.next_cursor == {"NSE": {"ts": "2025-04-01T11:42:45Z", "ids": ["107312977", "107312981"]}}


def test_window_starts_on_the_cursor_day(fake_service) -> None:
    serve_nse(fake_service, Reply(json=[]))
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(body=payload("bse_empty.json")))
    source, _ = make(fake_service)
    cursor = {"NSE": {"ts": "2025-03-29T05:00:00Z", "ids": ["1"]}, "BSE": {"ts": "2025-03-30T20:00:00Z", "ids": ["x"]}}
    run(source, cursor)
    assert fake_service.seen(NSE_ANNOUNCEMENTS_PATH)[0].query["from_date"] == "29-03-2025"
    assert fake_service.seen(BSE_ANNOUNCEMENTS_PATH)[0].query["strPrevDate"] == "20250331"  # 01:30 IST on the 31st


def test_429_with_retry_after_is_honoured(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(429, headers={"Retry-After": "7"}),
                       Reply(body=payload("bse_empty.json")))
    source, sleep = make(fake_service, exchanges=("BSE",))
    assert rows(run(source)) == [] and sleep.calls == [7.0]


def test_500_then_success(fake_service) -> None:
    serve_nse(fake_service, Reply(500), Reply(body=payload("nse_announcements.json")))
    source, sleep = make(fake_service, exchanges=("NSE",))
    assert len(rows(run(source))) == 3 and len(sleep.calls) == 1


def test_timeout_is_retried(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(delay_s=1.0, body=b"{}"),
                       Reply(body=payload("bse_empty.json")))
    source, sleep = make(fake_service, exchanges=("BSE",), timeout_s=0.2)
    assert rows(run(source)) == [] and len(sleep.calls) == 1


def test_timeouts_exhausted_are_a_fetch_error(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(delay_s=1.0, body=b"{}"))
    source, _ = make(fake_service, exchanges=("BSE",), timeout_s=0.2, attempts=2)
    with pytest.raises(FetchError, match="failed after 2 attempts"):
        run(source)


def test_nse_401_handshakes_again_then_raises(fake_service) -> None:
    serve_nse(fake_service, Reply(401))
    source, sleep = make(fake_service, exchanges=("NSE",))
    with pytest.raises(AuthError, match="even after a fresh cookie handshake"):
        run(source)
    assert len(fake_service.seen(NSE_ANNOUNCEMENTS_PATH)) == 2 and sleep.calls == []


def test_bse_401_is_an_auth_error_after_one_request(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(401))
    source, sleep = make(fake_service, exchanges=("BSE",))
    with pytest.raises(AuthError, match="HTTP 401"):
        run(source)
    assert len(fake_service.seen(BSE_ANNOUNCEMENTS_PATH)) == 1 and sleep.calls == []


def test_one_exchange_failing_does_not_hold_back_the_other(fake_service) -> None:
    serve_nse(fake_service, Reply(403))
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(FIRST_BSE))
    source, _ = make(fake_service)
    before = {"NSE": {"ts": "2025-04-01T10:00:00Z", "ids": ["1"]}}
    result = run(source, before)
    assert {r["exchange"] for r in rows(result)} == {"BSE"} and len(rows(result)) == 5
    assert "NSE" in result.meta["errors"] and "403" in result.meta["errors"]["NSE"]
    assert result.next_cursor["NSE"] == before["NSE"] and "BSE" in result.next_cursor


@pytest.mark.parametrize("exchanges, route, reply, message", [
    (("BSE",), BSE_ANNOUNCEMENTS_PATH, Reply(body=b"<html>Service Unavailable</html>", content_type="text/html"),
     "BSE announcements page 1 .* is not JSON"),
    (("BSE",), BSE_ANNOUNCEMENTS_PATH, Reply(json={"Message": "An error has occurred."}), "no 'Table' list"),
    (("NSE",), NSE_ANNOUNCEMENTS_PATH, Reply(json={"msg": "no"}), "expected a list"),
])
def test_malformed_payloads_are_source_errors(fake_service, exchanges, route, reply, message) -> None:
    serve_nse(fake_service, Reply(json=[]))
    fake_service.route("GET", route, reply)
    source, _ = make(fake_service, exchanges=exchanges)
    with pytest.raises(SourceError, match=message):
        run(source)


def test_unreadable_items_are_skipped_and_counted(fake_service) -> None:
    items = json.loads(payload("nse_announcements.json"))
    items[1]["seq_id"] = None
    items[2]["exchdisstime"] = "yesterday"
    serve_nse(fake_service, Reply(json=items))
    source, _ = make(fake_service, exchanges=("NSE",))
    result = run(source)
    assert [r["filing_id"] for r in rows(result)] == ["107312981"] and result.meta["skipped"] == 2


def test_empty_answers_give_an_empty_table_and_keep_the_cursor(fake_service) -> None:
    serve_nse(fake_service, Reply(json=[]))
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, Reply(body=payload("bse_empty.json")))
    cursor = {"NSE": {"ts": "2025-04-01T10:00:00Z", "ids": ["1"]}, "BSE": {"ts": "2025-04-01T10:00:00Z", "ids": ["b"]}}
    for given in (None, cursor):
        source, _ = make(fake_service)
        result = run(source, given)
        assert result.records["filings"].num_rows == 0
        assert result.records["filings"].schema == record_schema(FILINGS)
        assert result.next_cursor == given


def test_from_settings_needs_no_credentials() -> None:
    settings = Settings(nse_base_url="http://127.0.0.1:9", bse_base_url="http://127.0.0.1:8", page_cap=3,
                        http_user_agent="UA/1")
    source = make_source("filings", settings)
    assert isinstance(source, FilingsSource) and source.credentials == ()
    assert source.page_cap == 3 and source.bse_base_url == "http://127.0.0.1:8"
    assert source.nse.base_url == "http://127.0.0.1:9" and source.bse_http.headers["User-Agent"] == "UA/1"


# --- the real recorded NSE announcement (NseIndiaApi sample) -------------------------------------


def test_real_nse_announcement_parses(fake_service, shared_fixtures) -> None:
    body = (shared_fixtures / "NseIndiaApi_samples" / "announcements.json").read_bytes()
    serve_nse(fake_service, Reply(body=body, content_type="application/json"))
    source, _ = make(fake_service, exchanges=("NSE",), now=dt.datetime(2023, 10, 18, 17, 0, tzinfo=UTC))
    result = run(source)
    (filing,) = rows(result)
    item = json.loads(body)[0]
    assert (filing["filing_id"], filing["ticker"], filing["company"], filing["subject"]) == (
        item["seq_id"], "IDEA", "Vodafone Idea Limited", "Updates")
    assert filing["details"] == item["attchmntText"] and filing["attachment_url"] == item["attchmntFile"]
    assert filing["ts"] == ist("2023-10-18T22:11:48")  # exchdisstime "18-Oct-2023 22:11:48" IST
    assert result.raw[0].body == body


# --- replay from the raw zone -------------------------------------------------------------------


def _filing_id(payload: RawPayload, position: int) -> str:
    doc = json.loads(payload.body)
    if BSE_ANNOUNCEMENTS_PATH in payload.request:
        return doc["Table"][position]["NEWSID"]
    return (doc["data"] if isinstance(doc, dict) else doc)[position]["seq_id"]


def test_kept_answers_parse_to_the_polls_records(fake_service) -> None:
    serve_nse(fake_service, Reply(body=payload("nse_announcements.json")),
              Reply(body=payload("nse_announcements_next.json")))
    pages = dict(FIRST_BSE)
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages(pages))
    one = run(make(fake_service)[0])
    pages.clear()
    pages["1"] = payload("bse_next_page1.json")
    two = run(make(fake_service, now=EVENING + dt.timedelta(minutes=10))[0], one.next_cursor)
    # every row is the announcement at its raw_pos in the answer its raw_id names
    key = lambda row: row["filing_id"]  # noqa: E731
    assert assert_replays("filings", one, _filing_id, key)["filings"] == len(rows(one)) > 0
    assert assert_replays("filings", two, _filing_id, key) == {"filings": 3}
    nse, bse = two.raw
    assert [(r["filing_id"], r[RAW_POS]) for r in rows(two)][2:] == [("d4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f08", 0)]
    # NSE lists everything again: what the first poll emitted is read, not emitted, and the request says so
    assert {r["filing_id"] for r in skipped("filings", nse, "filings")} == \
        {r["filing_id"] for r in rows(one) if r["exchange"] == "NSE"}
    assert "from_date=01-04-2025" in request_url(nse.request) and request_context(bse.request)["skip"]
    assert {r["filing_id"] for r in skipped("filings", bse, "filings")} <= {r["filing_id"] for r in rows(one)}


def test_an_exchange_whose_later_page_is_unreadable_gives_back_the_pages_before(fake_service) -> None:
    fake_service.route("GET", BSE_ANNOUNCEMENTS_PATH, bse_pages({"1": payload("bse_page1.json"),
                                                                 "2": b"<html>Service Unavailable</html>"}))
    serve_nse(fake_service, Reply(body=payload("nse_announcements.json")))
    result = run(make(fake_service)[0])
    assert {r["exchange"] for r in rows(result)} == {"NSE"}  # BSE's page 1 waits for a readable page 2
    nse, bse_page1, bse_page2 = result.raw
    assert request_context(bse_page1.request) == {"withheld": "1"} and "withheld" not in bse_page2.request
    assert [n["payload"] for n in result.meta["unreadable"]] == [2]
    assert assert_replays("filings", result, _filing_id, lambda row: row["filing_id"])["filings"] > 0
