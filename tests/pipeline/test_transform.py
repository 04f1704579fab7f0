from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from sentinel_ray.records import Reason
from sentinel_ray.records import BatchResult
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.schemas import POSTS, PRICES, Dataset
from tests.pipeline.rows import KNOWN, NOW, TS, UTC, price_row


def run(table: pa.Table, ds: Dataset = PRICES, **kwargs: object) -> BatchResult:
    result = process_batch(table, ds, now=NOW, known_tickers=KNOWN, **kwargs)  # type: ignore[arg-type]
    assert result.valid.schema == ds.arrow_schema
    assert result.quarantined.schema == ds.quarantine_schema
    assert result.rows_in == table.num_rows == result.rows_valid + result.rows_quarantined
    return result


def test_mixed_batch_splits_into_valid_and_quarantined() -> None:
    ts, later = "2024-01-02T04:00:00Z", "2024-01-02T09:20:00+05:30"
    raw = pa.Table.from_pylist([  # text where numbers and times belong, as a JSON source sends
        price_row(ticker=" reliance.ns ", exchange=None, ts=ts, open="100"),
        price_row(ticker="tcs.bo", exchange=None, volume=-1, ts=ts, open="100"),
        price_row(ticker="RELIANCE", ts=ts, open="100"),  # same key as the first row once normalised
        price_row(ticker="INFY", ts=ts, open="abc"),
        price_row(ticker="ITC", ts=later, open=" 100 "),
    ])
    result = run(raw)
    assert result.valid.column("ticker").to_pylist() == ["RELIANCE", "ITC"]
    assert result.valid.column("exchange").to_pylist() == ["NSE", "NSE"]
    assert result.valid.column("ts").to_pylist()[1] == datetime(2024, 1, 2, 3, 50, tzinfo=UTC)
    assert result.quarantined.column("reject_reason").to_pylist() == [
        Reason.NEGATIVE_VOLUME, Reason.DUPLICATE, Reason.BAD_TYPE,
    ]
    # quarantined rows keep what could be read, normalised
    assert result.quarantined.column("ticker").to_pylist() == ["TCS", "RELIANCE", "INFY"]
    assert result.quarantined.column("exchange").to_pylist()[0] == "BSE"
    assert result.reason_counts() == {"negative_volume": 1, "duplicate": 1, "bad_type": 1}


def test_all_valid_batch() -> None:
    table = pa.Table.from_pylist([price_row(), price_row(ticker="TCS")], schema=PRICES.arrow_schema)
    result = run(table)
    assert result.rows_valid == 2 and result.rows_quarantined == 0
    assert result.reason_counts() == {}
    assert result.valid.equals(table)


def test_empty_input_gives_empty_outputs_with_schemas() -> None:
    for ds in (PRICES, POSTS):
        result = run(pa.table({}), ds)
        assert result.rows_in == 0
    result = run(PRICES.arrow_schema.empty_table())
    assert result.valid.num_rows == 0 and result.quarantined.num_rows == 0


def test_lineage_is_overwritten_and_source_kept() -> None:
    stamp = datetime(2024, 6, 3, 11, 0, tzinfo=UTC)
    raw = pa.Table.from_pylist([price_row(run_id=None, ingested_at=None), price_row(ticker="X", run_id="old")])
    result = run(raw, run_id="run-42", ingested_at=stamp)
    assert result.valid.column("run_id").to_pylist() == ["run-42"]
    assert result.valid.column("ingested_at").to_pylist() == [stamp]
    assert result.valid.column("source").to_pylist() == ["replay"]
    assert result.quarantined.column("run_id").to_pylist() == ["run-42"]
    assert result.quarantined.column("reject_reason").to_pylist() == [Reason.UNKNOWN_TICKER]


def test_missing_lineage_without_override_is_missing_field() -> None:
    result = run(pa.Table.from_pylist([price_row(run_id=None)]))
    assert result.reason_counts() == {"missing_field": 1}


def test_posts_batch() -> None:
    rows = [
        {"platform": "x", "post_id": "1", "text": "  $tcs breakout soon  ", "ts": "2024-01-02T10:00:00",
         "tickers": ["$tcs"], "source": "x", "run_id": "r", "ingested_at": TS, "unexpected": 1},
        {"platform": "x", "post_id": "2", "text": "🚀🚀🚀🚀", "ts": "2024-01-02T10:00:00",
         "tickers": [], "source": "x", "run_id": "r", "ingested_at": TS, "unexpected": 2},
    ]
    result = run(pa.Table.from_pylist(rows), POSTS)
    assert result.valid.column("text").to_pylist() == ["$tcs breakout soon"]
    assert result.valid.column("tickers").to_pylist() == [["TCS"]]
    assert result.valid.column("ts").to_pylist() == [datetime(2024, 1, 2, 10, tzinfo=UTC)]
    assert result.valid.column("author").to_pylist() == [None]
    assert result.reason_counts() == {"text_length": 1}


def test_garbage_never_raises() -> None:
    raw = pa.table({
        "ticker": pa.array([1, 2, None]),
        "ts": pa.array([{"a": 1}, None, {"a": 2}]),
        "open": pa.array([True, False, None]),
        "volume": pa.array(["1e30", "-0", "x"]),
    })
    result = run(raw)
    assert result.rows_valid == 0
    assert result.rows_quarantined == 3


def test_chunked_input_and_duplicates_across_chunks() -> None:
    first = pa.Table.from_pylist([price_row(), price_row(ticker="TCS")], schema=PRICES.arrow_schema)
    second = pa.Table.from_pylist(
        [price_row(), price_row(ts=TS + timedelta(minutes=1))], schema=PRICES.arrow_schema
    )
    result = run(pa.concat_tables([first, second]))
    assert result.rows_valid == 3
    assert result.reason_counts() == {"duplicate": 1}


def filing_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "exchange": "nse ", "filing_id": "f1", "ticker": " reliance", "company": "Reliance Industries Ltd",
        "subject": "Board Meeting Intimation", "details": None, "ts": TS, "attachment_url": None,
        "source": "nse", "run_id": "r1", "ingested_at": TS,
    }
    row.update(overrides)
    return row


def test_filings_are_normalised_validated_and_deduplicated() -> None:
    from sentinel_ray.schemas import FILINGS

    rows = [filing_row(), filing_row(), filing_row(filing_id="f2", exchange="LSE"),
            filing_row(filing_id="f3", subject=None), filing_row(filing_id="f4", ts=NOW + timedelta(days=1)),
            filing_row(filing_id="f5", ticker=None, exchange="BSE")]
    result = process_batch(pa.Table.from_pylist(rows), FILINGS, now=NOW, known_tickers=KNOWN)
    assert result.valid.column("filing_id").to_pylist() == ["f1", "f5"]
    assert result.valid.column("exchange").to_pylist() == ["NSE", "BSE"]
    assert result.valid.column("ticker").to_pylist() == ["RELIANCE", None]
    assert result.reason_counts() == {"duplicate": 1, "unknown_exchange": 1, "missing_field": 1,
                                      "future_timestamp": 1}


def test_rules_argument_and_warn_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sentinel_ray.quality.rules import load_rules

    path = tmp_path / "rules.yaml"
    path.write_text("prices:\n"
                    "  - {name: thin_volume, kind: range, column: volume, min: 100, severity: warn}\n"
                    "  - {name: negative_volume, min: 5}\n")
    rows = [price_row(volume=500), price_row(ticker="TCS", volume=50), price_row(ticker="INFY", volume=3),
            price_row(ticker="ITC", volume=-1)]
    table = pa.Table.from_pylist(rows, schema=PRICES.record_schema)
    result = run(table, rules=load_rules(path))
    assert result.valid.column("ticker").to_pylist() == ["RELIANCE", "TCS"]  # warned rows stay valid
    assert result.reason_counts() == {"negative_volume": 2}
    assert result.warned == {"thin_volume": 1} and result.rows_warned == 1
    default = run(table)  # the shipped rules: no warn rules, volume 3 is fine
    assert default.reason_counts() == {"negative_volume": 1}
    assert default.warned == {} and default.rows_warned == 0


def test_unit_error_bar_is_quarantined() -> None:
    closes = [100.0, 100.5, 10_050.0, 100.2, 100.1, 100.3, 100.4]
    rows = [price_row(ts=TS + timedelta(minutes=i), open=c, high=c, low=c, close=c) for i, c in enumerate(closes)]
    result = run(pa.Table.from_pylist(rows, schema=PRICES.record_schema))
    assert result.reason_counts() == {"implausible_price_jump": 1}
    assert result.quarantined.column("close").to_pylist() == [10_050.0]
