"""price_jump: unit errors are caught, real moves (pumps, dumps, volume-backed spikes) are not.

Real evidence: Yahoo series with 100x unit errors and their repaired twins, recorded by the
yfinance project (../shared/fixtures/real/yfinance_tests_data).
"""
from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sentinel_ray import reference
from sentinel_ray.pipeline.clean import conform, normalise
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.rules import Context, PriceJumpRule, build_rule, default_rules
from sentinel_ray.schemas import PRICES
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.market import is_trading_day
from tests.pipeline.rows import NOW, TS, UTC, price_row, table_of

YF = "yfinance_tests_data"
RULE = default_rules()["prices"].rule("implausible_price_jump")
assert isinstance(RULE, PriceJumpRule)


def bars(closes: list[float], volumes: list[int] | None = None, **fields: object) -> list[dict[str, object]]:
    """One series of 1-minute bars, open = high = low = close."""
    volumes = volumes or [1_000] * len(closes)
    return [price_row(ts=TS + dt.timedelta(minutes=i), open=c, high=c, low=c, close=c, volume=v, **fields)
            for i, (c, v) in enumerate(zip(closes, volumes))]


def flagged(rows: list[dict[str, object]], rule: PriceJumpRule = RULE, rejected: list[int] = ()) -> list[int]:
    ctx = Context(now=NOW)
    if rejected:
        ctx.rejected = np.isin(np.arange(len(rows)), rejected)
    return [i for i, f in enumerate(rule.mask(table_of(PRICES, rows), ctx).to_pylist()) if f]


# --- shapes of error -----------------------------------------------------------------


def test_one_bar_spike_either_way() -> None:
    assert flagged(bars([100, 101, 10_100, 100, 99, 100, 100])) == [2]
    assert flagged(bars([100, 101, 1.01, 100, 99, 100, 100])) == [2]
    assert flagged(bars([100, 100, 100, 100, 100, 100, 100])) == []


def test_a_run_of_mis_scaled_bars_and_the_tail() -> None:
    assert flagged(bars([100, 101, 10_100, 10_150, 10_120, 100, 99, 100, 100, 101])) == [2, 3, 4]
    # a short run at the end of the batch: the body (a traded run of >= 5 bars) is the anchor
    assert flagged(bars([100, 101, 100, 99, 100, 100, 10_000, 10_010])) == [6, 7]
    assert flagged(bars([10_000, 100, 101, 100, 99, 100])) == [0]


def test_unit_switch_flags_the_side_before_the_latest_traded_level() -> None:
    cents = [3_480, 3_439, 3_466, 3_475, 3_540, 3_620]
    rand = [35.2, 35.7, 35.0, 34.5, 34.55, 34.9]
    assert flagged(bars(cents + rand)) == list(range(6))


def test_zero_volume_quotes_never_anchor() -> None:
    # a stale, mis-scaled quote carried forward with no trades vs a level that traded
    closes = [0.1455] * 4 + [14.55] * 6 + [0.1455] * 8
    volumes = [0] * 4 + [0, 0, 532_454, 0, 0, 0] + [0] * 8
    assert flagged(bars(closes, volumes)) == list(range(4)) + list(range(10, 18))


def test_a_spike_that_traded_heavily_is_a_real_move() -> None:
    volumes = [1_000] * 7
    volumes[2] = 10_000  # 10x the anchor's mean volume
    assert flagged(bars([100, 101, 2_500, 100, 99, 100, 100], volumes)) == []
    volumes[2] = 9_000
    assert flagged(bars([100, 101, 2_500, 100, 99, 100, 100], volumes)) == [2]
    no_volume = build_rule({"name": "j", "kind": "price_jump", "volume": None}, PRICES)
    assert flagged(bars([100, 101, 2_500, 100, 99, 100, 100], [1_000, 1_000, 100_000, 1_000, 1_000, 1_000, 1_000]),
                   no_volume) == [2]


def test_factor_is_configurable() -> None:
    closes = [100, 100, 100, 1_100, 100, 100, 100]  # 11x: a 1:10 split's size, below the shipped 20x
    assert flagged(bars(closes)) == []
    assert flagged(bars(closes), build_rule({"name": "j", "kind": "price_jump", "factor": 5}, PRICES)) == [3]


def test_mis_scaled_high_or_low_alone() -> None:
    rows = bars([100] * 6)
    rows[2]["high"] = 10_050.0  # open/close/low fine: OHLC order holds, the bar's own range does not
    rows[4]["low"] = 1.0
    assert flagged(rows) == [2, 4]


def test_series_are_separate_and_input_order_does_not_matter() -> None:
    a = bars([100, 100, 10_000, 100, 100, 100, 100])
    b = bars([5_000] * 7, ticker="TCS")  # another series at a price 50x RELIANCE's
    c = bars([100, 100, 100, 100, 100, 100, 100], source="yahoo")
    rows = [r for triple in zip(a, b, c) for r in triple]  # interleaved, as a stream reads
    assert flagged(rows) == [6]
    rng = random.Random(1)
    shuffled = list(range(len(rows)))
    rng.shuffle(shuffled)
    assert flagged([rows[i] for i in shuffled]) == [shuffled.index(6)]


def test_rows_rejected_by_other_rules_take_no_part() -> None:
    rows = bars([100, 100, 100, 10_000, 100, 100, 100])
    # the spike is rejected already (e.g. as a duplicate): nothing is left to jump
    assert flagged(rows, rejected=[3]) == []
    # a rejected row between two good ones does not hide a jump next to it
    rows = bars([100, 100, 100, 1.0, 10_000, 100, 100, 100])
    assert flagged(rows, rejected=[3]) == [4]


def test_shipped_rule_set_quarantines_the_spike_with_its_own_reason() -> None:
    rows = bars([100, 101, 10_100, 100, 99, 100, 100])
    rows.append(dict(rows[1]))  # a duplicate of a good bar
    result = process_batch(table_of(PRICES, rows), PRICES, now=NOW, known_tickers=pa.array(["RELIANCE"]))
    assert result.reason_counts() == {"implausible_price_jump": 1, "duplicate": 1}
    assert result.quarantined.column("close").to_pylist()[0] == 10_100


def test_matches_a_plain_python_reading_on_random_series() -> None:
    """The vectorised segments/anchor agree with a straightforward loop over each series."""
    rng = np.random.default_rng(9)
    rows = []
    for s in range(60):
        n = int(rng.integers(2, 40))
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        errors = rng.random(n) < 0.15
        close = np.where(errors, close * rng.choice([100.0, 0.01, 1000.0], n), close)
        volume = rng.integers(0, 3, n) * rng.integers(1, 2_000, n)
        rows += bars(list(np.round(close, 4)), list(map(int, volume)), ticker=f"T{s}")
    rng.shuffle(rows)
    expected = set()
    by_series: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_series.setdefault(r["ticker"], []).append(i)
    limit = np.log(RULE.factor)
    for idx in by_series.values():
        idx.sort(key=lambda i: rows[i]["ts"])
        level, levels, segments = 0.0, [], []  # segment: [level, bars, volume]
        for k, i in enumerate(idx):
            if k and abs(np.log(rows[i]["close"] / rows[idx[k - 1]]["close"])) > limit:
                level += np.log(rows[i]["close"] / rows[idx[k - 1]]["close"])
                segments.append([level, 0, 0])
            if not segments:
                segments.append([level, 0, 0])
            segments[-1][1] += 1
            segments[-1][2] += rows[i]["volume"]
            levels.append(level)
        good = [sg for sg in segments if sg[1] >= RULE.min_anchor_bars and sg[2] > 0]
        anchor = good[-1] if good else max(reversed(segments), key=lambda sg: sg[1])
        typical = max(anchor[2] / anchor[1], 1.0)
        run: list[int] = []
        for i, lv in [*zip(idx, levels), (None, anchor[0])]:
            if i is not None and abs(lv - anchor[0]) > limit:
                run.append(i)
                continue
            if run and np.mean([rows[j]["volume"] for j in run]) < RULE.volume_factor * typical:
                expected.update(run)
            run = []
    assert set(flagged(rows)) == expected
    assert expected  # the data did exercise the rule


# --- real Yahoo series with 100x unit errors ------------------------------------------


def yahoo_csv(path: Path) -> pa.Table:
    """A yfinance CSV (Date/Datetime, Open, High, Low, Close, Adj Close, Volume, ...) as price rows."""
    raw = pacsv.read_csv(path)
    when = raw.column("Date" if "Date" in raw.column_names else "Datetime")
    n = raw.num_rows
    return pa.Table.from_pydict({
        "ticker": ["AET"] * n, "exchange": ["NSE"] * n, "interval": ["1d"] * n,
        "ts": pc.cast(when, PRICES.field("ts").kind.arrow),
        **{c.lower(): pc.cast(raw.column(c), pa.float64()) for c in ("Open", "High", "Low", "Close")},
        "volume": pc.cast(raw.column("Volume"), pa.int64()),
        "source": ["yahoo"] * n, "run_id": ["r"] * n, "ingested_at": pc.cast(when, PRICES.field("ts").kind.arrow),
        "raw_id": [path.name] * n, "raw_pos": list(range(n)),
    }, schema=PRICES.record_schema)


def jumps(table: pa.Table) -> np.ndarray:
    return RULE.mask(table, Context(now=NOW)).to_numpy(zero_copy_only=False)


def test_aet_l_unit_errors_are_exactly_the_flagged_rows(shared_fixtures: Path) -> None:
    bad = yahoo_csv(shared_fixtures / YF / "AET-L-1d-100x-error.csv")
    fixed = yahoo_csv(shared_fixtures / YF / "AET-L-1d-100x-error-fixed.csv")
    assert bad.column("ts").equals(fixed.column("ts"))
    ratio = fixed.column("close").to_numpy() / bad.column("close").to_numpy()
    differs = ~np.isclose(ratio, 1.0, rtol=1e-3)
    assert differs.sum() == 14 and np.allclose(ratio[differs], 100.0)  # 14 of 23 bars are in pounds, not pence
    assert (jumps(bad) == differs).all()
    assert not jumps(fixed).any()


def test_ssw_jo_unit_switch(shared_fixtures: Path) -> None:
    fixed = yahoo_csv(shared_fixtures / YF / "SSW-JO-1d-100x-error-fixed.csv")
    assert not jumps(fixed).any()
    # Yahoo's error (yfinance tests/data/SSW-JO-100x-error.csv, not in the fixtures folder): up to
    # 2023-05-31 every price is in cents, 100x its repaired value, volume unchanged. Rebuilt here.
    switch = pa.scalar(dt.datetime(2023, 5, 31, 12, tzinfo=UTC), PRICES.field("ts").kind.arrow)
    cents = pc.less(fixed.column("ts"), switch)
    bad = fixed
    for name in ("open", "high", "low", "close"):
        col = fixed.column(name)
        bad = bad.set_column(bad.schema.get_field_index(name), name, pc.if_else(cents, pc.multiply(col, 100.0), col))
    assert pc.sum(cents).as_py() == 22
    assert (jumps(bad) == cents.to_numpy(zero_copy_only=False)).all()
    for name in ("SSW-JO-1d-100x-error.csv", "SSW-JO-100x-error.csv"):
        if (shared_fixtures / YF / name).exists():  # the recorded file itself, where present
            real = yahoo_csv(shared_fixtures / YF / name)
            assert (jumps(real) == (real.column("close").to_numpy() > 1_000)).all()


def test_yahoo_fixed_series_pass_the_whole_rule_set(shared_fixtures: Path) -> None:
    for name in ("AET-L-1d-100x-error-fixed.csv", "SSW-JO-1d-100x-error-fixed.csv", "EA-15m-no-bad-divs.csv"):
        table = yahoo_csv(shared_fixtures / YF / name)
        reasons = default_rules()["prices"].evaluate(table, Context(now=dt.datetime(2030, 1, 1, tzinfo=UTC),
                                                                    known_tickers=pa.array(["AET"])))
        counts = pc.value_counts(reasons.reject_reason.drop_null()).to_pylist()
        # Yahoo's own SSW-JO bars have open above high on 4 days: consistency, not a price jump
        assert {c["values"] for c in counts} <= {"ohlc_inconsistent"}, (name, counts)


# --- real moves are not errors ---------------------------------------------------------


def test_pump_and_dump_bars_are_not_flagged() -> None:
    # +40% over an hour on 8x volume, then a 30% dump in one bar on 10x volume
    closes = [100.0] * 30 + [100 * 1.4 ** (i / 60) for i in range(1, 61)] + [98.0] * 30
    volumes = [1_000] * 30 + [8_000] * 60 + [10_000] + [1_000] * 29
    assert flagged(bars(closes, volumes)) == []


def test_replay_pump_and_dump_days_pass() -> None:
    source = ReplaySource(seed=7, pump_probability=1.0)
    day, checked = dt.date(2025, 3, 3), 0
    while checked < 3:
        if is_trading_day(day):
            result = source.generate_day(day, run_id="t", ingested_at=NOW)
            episode = max((e for e in result.meta["episodes"] if e["kind"] == "pump_dump"),
                          key=lambda e: e["size"] / e["days_spanned"])  # the steepest pump of the day
            prices = result.records["prices"]
            table, bad = conform(prices, PRICES)
            table = normalise(table, PRICES)
            evaluation = default_rules()["prices"].evaluate(
                table, Context(now=dt.datetime(2030, 1, 1, tzinfo=UTC), known_tickers=reference.known_tickers(),
                               bad_type=bad))
            reasons = evaluation.reject_reason.to_pylist()
            assert "implausible_price_jump" not in reasons
            pumped = pc.equal(table.column("ticker"), episode["ticker"]).to_numpy(zero_copy_only=False)
            verdicts = [r for r, p in zip(reasons, pumped) if p]  # the episode's bars; copies may be duplicates
            assert verdicts.count(None) >= 370 and set(verdicts) <= {None, "duplicate"}
            closes = table.filter(pa.array(pumped)).column("close").to_numpy()
            assert closes.max() / closes.min() > 1.15  # the episode is really in there
            checked += 1
        day += dt.timedelta(days=1)
