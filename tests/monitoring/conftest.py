from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
import requests

# one exported sample: name{labels} value
_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Samples:
    """Prometheus text format -> {series name: [(labels, value), ...]}."""
    out: Samples = defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m["labels"] or ""))
            out[m["name"]].append((labels, float(m["value"])))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a series over everything not named in `labels` (Ray adds WorkerId, NodeAddress, ...)."""
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == want for k, want in labels.items()))


@pytest.fixture(scope="session")
def metrics_url(ray_session: None) -> str:
    """The session cluster's Prometheus endpoint: the metrics agent of its (only) node."""
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


@pytest.fixture(scope="session")
def scrape(metrics_url: str) -> Callable[..., Samples]:
    def wait_for(done: Callable[[Samples], bool], timeout_s: float = 60.0,
                 every_scrape: Callable[[], None] | None = None) -> Samples:
        """Scrape until `done(samples)` holds: Ray exports what processes record every few seconds.

        `every_scrape` runs before each scrape: Ray drops a gauge not set again within two
        report intervals (~20 s), so gauges are refreshed the way the supervisor loop does."""
        deadline = time.monotonic() + timeout_s
        while True:
            if every_scrape is not None:
                every_scrape()
            samples = parse_metrics(requests.get(metrics_url, timeout=10).text)
            if done(samples) or time.monotonic() > deadline:
                return samples
            time.sleep(1.0)

    return wait_for
