"""Replay kept raw payloads through today's parsing and rules as a Ray job.

    ray job submit --working-dir . -- python jobs/replay.py --source replay --dataset prices \\
        --start 2026-11-02 --end 2026-11-06

The same as `sentinel-ray replay`: joins the job's cluster and the running platform's
settings, reads the payloads in Ray tasks, replaces what they produced exactly once,
computes the signals of the sessions they touch again (`--no-signals` leaves them) and
prints a report of rows added, changed and removed.
"""
import sys

from sentinel_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["replay", *sys.argv[1:]]))
