"""The Grafana dashboard in the repository queries exactly the metrics the code exports."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_ray.monitoring import metrics

DASHBOARD = Path(metrics.__file__).parent / "grafana" / "sentinel-ray.json"
METRIC_NAME = re.compile(r"\b(ray_[a-zA-Z0-9_]+|sentinel_[a-zA-Z0-9_]+)")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return exprs


def test_dashboard_is_importable_grafana_json_with_a_datasource_variable(dashboard) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_metric_the_dashboard_queries_is_defined_and_every_metric_has_a_panel(dashboard) -> None:
    queried = {name for expr in _queries(dashboard) for name in METRIC_NAME.findall(expr)}
    assert queried, "no PromQL found"
    assert queried <= metrics.exported_names(), queried - metrics.exported_names()
    for spec in metrics.METRICS:
        assert set(spec.exported) & queried, f"{spec.name} is exported but no panel shows it"


def test_panel_queries_are_balanced_promql(dashboard) -> None:
    for expr in _queries(dashboard):
        for open_, close in ("()", "{}", "[]"):
            assert expr.count(open_) == expr.count(close), expr
        assert expr.count('"') % 2 == 0, expr
