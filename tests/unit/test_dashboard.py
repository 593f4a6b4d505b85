"""The Grafana dashboard queries only metrics the operator really exports."""

import json
import re
from pathlib import Path

from prometheus_client.registry import REGISTRY

import modeldeploy.adapters.metrics  # noqa: F401  (registers the operator's metrics)

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "modeldeploy" / "dashboards" / "modeldeploy.json"
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "label_values"}


def exported_names() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
        if family.type == "counter":  # a labelled counter has no sample until first used
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"", "", target["expr"])
            queried.update(w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w.startswith("modeldeploy_"))
    assert queried, "the dashboard queries something"
    assert queried <= exported, f"not exported by the operator: {sorted(queried - exported)}"
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Canary weight", "Rollbacks by reason", "Reconcile latency"} <= titles


def test_panel_ids_and_positions_are_unique() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert len({(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels}) == len(panels)
