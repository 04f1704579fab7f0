"""Backfill a date range as a Ray job.

    ray job submit --working-dir . -- python jobs/backfill.py --source replay --start 2026-11-02 --end 2026-11-06

The same as `sentinel-ray backfill`: joins the job's cluster, uses the settings the
running platform published (or SENTINEL_* variables), hands the range to the platform's
backfill service (its workers are warm; `--in-driver` runs it in this job instead), prints
progress and a summary. `ray job stop` cancels the backfill after the block in hand.
"""
import sys

from sentinel_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["backfill", *sys.argv[1:]]))
