"""Detection measured on replay ground truth, on seeds the detector was not tuned on.

    .venv/bin/python bench/detection.py [--seeds 11 12 13] [--days 60] [--start 2026-03-02]
                                        [--tuning-seeds 1 2 3]

Runs `detect.pipeline.detect_days` (replay day -> process_batch -> session_features ->
risk_scores -> alerts.advance, the functions the backfill and the stream run) over each
seed in its own process, and scores the alerts against the episodes (`detect.evaluate`):
precision, recall, F1 per episode, lead time before the price peak, false alerts per
1,000 ticker-days without any episode, and each kind of episode alone. The weights and
thresholds of detect/ were chosen on seeds 1-3 (`--tuning-seeds` prints those too).
Ends with one JSON line: f1, precision, recall, median_lead_s, p10_lead_s,
false_alerts_per_1000_ticker_days, posts_s, features_rows_s, and by_kind.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from sentinel_ray.detect.evaluate import render
from sentinel_ray.detect.pipeline import evaluate_replay, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13], help="held-back seeds")
    parser.add_argument("--tuning-seeds", type=int, nargs="*", default=[], help="also report these (e.g. 1 2 3)")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 3, 2))
    parser.add_argument("--processes", type=int, default=None, help="default: one per core")
    args = parser.parse_args()
    if args.tuning_seeds:
        report, _ = evaluate_replay(args.tuning_seeds, args.start, args.days, processes=args.processes)
        print(f"tuning seeds {' '.join(map(str, args.tuning_seeds))}, {args.days} days from {args.start}")
        print(render(report))
        print()
    began = time.perf_counter()
    report, timing = evaluate_replay(args.seeds, args.start, args.days, processes=args.processes)
    seconds = time.perf_counter() - began
    print(f"held-back seeds {' '.join(map(str, args.seeds))}, {args.days} days from {args.start} "
          f"({seconds:.0f}s wall)")
    print(render(report))
    out = summary(report, timing)
    out["by_kind"] = {k.kind: {"episodes": k.episodes, "alerted": k.alerted, "alerts": k.alerts,
                               "lead_median_s": k.lead_median_s, "lead_p10_s": k.lead_p10_s}
                      for k in report.by_kind}
    out.update(seeds=args.seeds, days=args.days, start=args.start.isoformat())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
