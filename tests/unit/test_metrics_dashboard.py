"""deploy/grafana and deploy/prometheus.yml refer only to metrics the agent exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nfq_mip6.metrics import AgentMetrics
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "nfq-mip6-dashboard.json"


def exported_sample_names() -> set[str]:
    registry = CollectorRegistry()
    snapshot = {
        "ok": True,
        "role": "ha",
        "counters": dict.fromkeys(MIPL_COUNTER_NAMES, 0),
        "route_optimization": True,
        "backend": "seg6",
        "bindings": 0,
        "ro_datapath": {"datapath": "bpf", "counters": {"out_rewritten": 0}},
        # an HA with its rules loaded (RFC 3963 counts)
        "home_agent": {
            "mobile_routers": 0,
            "mobile_network_prefixes": 0,
            "mobile_network_source_rejected": 0,
            "draining": 0,  # RFC 5142 drain
        },
    }
    AgentMetrics(registry, lambda: snapshot)
    text = generate_latest(registry).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":  # labelled counters have no sample before first use
            names.add(f"{family.name}_total")
    # Histogram series exist once observed; their names are fixed by the family name.
    histogram = "nfq_mip6_binding_update_processing_seconds"
    names.update(f"{histogram}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names


def test_dashboard_queries_use_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bnfq_mip6_\w+", expr)}
    assert used, "no nfq_mip6 metric in the dashboard"
    missing = used - exported_sample_names()
    assert not missing, f"dashboard uses metrics the agent does not export: {sorted(missing)}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_operations_guide_mentions_only_exported_metrics() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    used = set(re.findall(r"\bnfq_mip6_[a-z_]+[a-z]", guide))
    missing = {name for name in used if name not in exported_sample_names()}
    assert not missing, f"docs/operations.md names unknown metrics: {sorted(missing)}"
