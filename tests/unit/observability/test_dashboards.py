"""The Grafana dashboard and the Prometheus alert rules in configs/ only use metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ferrogate.observability.families import FAMILIES

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
NAME = re.compile(r"\bferrogate_[a-z0-9_]+")


def known() -> set[str]:
    names = set()
    for family in FAMILIES:
        names.add(family.name)
        if family.kind == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
    return names


def test_alert_rules_use_declared_metrics() -> None:
    rules = yaml.safe_load((CONFIGS / "prometheus" / "ferrogate-alerts.yaml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert {"FerrogateHighErrorRate", "FerrogateHighLatencyP95", "FerrogateBudgetExhausted"} <= names
    for rule in alerts:
        used = set(NAME.findall(rule["expr"]))
        assert used and used <= known(), (rule["alert"], used - known())
        assert rule["annotations"]["summary"]


def test_dashboard_panels_use_declared_metrics() -> None:
    dashboard = json.loads((CONFIGS / "grafana" / "ferrogate-dashboard.json").read_text())
    assert dashboard["uid"] == "ferrogate-overview"
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in NAME.findall(expr)}
    assert used <= known(), used - known()
    # every family with traffic meaning appears somewhere on the dashboard
    assert {f.name for f in FAMILIES if f.kind != "gauge"} <= {n.removesuffix("_bucket") for n in used}
