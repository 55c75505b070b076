"""The Grafana dashboard matches the metrics the controller exports.

Every series a panel queries must exist in a fresh :class:`Metrics`
registry, and every exported metric family must appear in some panel, so
renaming, adding or dropping a metric breaks this test until the dashboard
follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from controller.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "vmn-grafana.json"
DATASOURCE = "${DS_PROMETHEUS}"
METRIC_NAME = re.compile(r"\bvmn_[a-zA-Z0-9_]*[a-zA-Z0-9]")
VARIABLE = re.compile(r"\$\{?(\w+)")

# The series each metric type exposes, as suffixes of the family name (checked below).
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),  # prometheus-client summaries have no quantiles
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """PromQL of every panel target and every query variable."""
    exprs = [t["expr"] for p in all_panels(dashboard["panels"]) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def exported_series() -> dict[str, set[str]]:
    """Family name -> names of the series it exposes, from a fresh controller registry."""
    return {
        family.name: {family.name + s for s in SERIES_SUFFIXES[family.type]} for family in Metrics().registry.collect()
    }


def test_series_suffixes_match_prometheus_client() -> None:
    registry = CollectorRegistry()
    Counter("c", "", registry=registry).inc()
    Gauge("g", "", registry=registry).set(1)
    Histogram("h", "", registry=registry).observe(1)
    Summary("s", "", registry=registry).observe(1)
    for family in registry.collect():
        # _created is absent when PROMETHEUS_DISABLE_CREATED_SERIES is set.
        want = {family.name + s for s in SERIES_SUFFIXES[family.type]} - {family.name + "_created"}
        assert want <= {s.name for s in family.samples} <= want | {family.name + "_created"}, family


def test_every_queried_metric_is_exported(dashboard: dict[str, Any]) -> None:
    known = set().union(*exported_series().values())
    used = {name for expr in expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    assert used, "the dashboard queries no vmn_ metric"
    assert sorted(used - known) == [], f"queried but not exported: {sorted(used - known)}"


def test_every_exported_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = {name for expr in expressions(dashboard) for name in METRIC_NAME.findall(expr)}
    missing = sorted(family for family, series in exported_series().items() if not series & used)
    assert missing == [], f"exported but on no panel: {missing}"


def test_dashboard_is_importable_with_a_prometheus_input(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
    assert all(p.get("targets") for p in panels if p["type"] != "row")


def test_variables_used_in_queries_are_defined(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
    used = {name for expr in expressions(dashboard) for name in VARIABLE.findall(expr) if not name.startswith("__")}
    assert used <= defined, f"undefined variables: {sorted(used - defined)}"
