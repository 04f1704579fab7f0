"""The data-quality report as a Ray job, written to the lake as JSON and HTML.

    ray job submit --working-dir . -- python jobs/quality_report.py [--hours 24]

Same as `sentinel-ray quality --write`: status per dataset and source, rule counts,
completeness, NSE/Yahoo agreement, pipeline health; raises the alerts it finds.
"""
import sys

from sentinel_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["quality", "--write", *sys.argv[1:]]))
