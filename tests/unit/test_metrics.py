"""nfq_mip6.metrics: names, types, label bounds, counters moving, scrape-time state."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nfq_mip6.metrics import MIPL_METRIC_NAMES, AgentMetrics, start_http_server
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES
from nfq_mip6.wire.mh import MHType

STATS: dict[str, Any] = {
    "ok": True,
    "role": "ha",
    "counters": dict.fromkeys(MIPL_COUNTER_NAMES, 0) | {"NBindUpdatesRcvd": 3, "NBindAcksSent": 2},
    "route_optimization": False,
    "backend": "seg6",
    "bindings": 2,
    "nfqueue": {"accepted": 1, "dropped": 0, "rewritten": 0},
}


def scrape(registry: CollectorRegistry) -> dict[str, tuple[str, list[Any]]]:
    text = generate_latest(registry).decode()
    return {
        family.name: (family.type, list(family.samples))
        for family in text_string_to_metric_families(text)
    }


def value(families: dict[str, tuple[str, list[Any]]], sample: str, **labels: str) -> float:
    for _name, (_type, samples) in families.items():
        for s in samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(f"{sample} {labels}")


def test_names_and_types() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry, lambda: STATS)
    families = scrape(registry)
    expected = {
        # Info metrics reach the text format as gauges named *_info with value 1.
        "nfq_mip6_build_info": "gauge",
        "nfq_mip6_mh_messages_received": "counter",
        "nfq_mip6_mh_messages_sent": "counter",
        "nfq_mip6_mh_messages_malformed": "counter",
        "nfq_mip6_binding_acks_sent": "counter",
        "nfq_mip6_nfqueue_packets": "counter",
        "nfq_mip6_binding_update_processing_seconds": "histogram",
        "nfq_mip6_dataplane_operations": "counter",
        "nfq_mip6_dataplane_errors": "counter",
        "nfq_mip6_last_config_load_timestamp_seconds": "gauge",
        "nfq_mip6_bindings": "gauge",
        "nfq_mip6_route_optimization_enabled": "gauge",
        "nfq_mip6_fastpath_backend_info": "gauge",
    } | {f"nfq_mip6_{name}": "counter" for name in MIPL_METRIC_NAMES.values()}
    assert {name: families[name][0] for name in expected} == expected
    assert all(name.startswith("nfq_mip6_") for name in families)
    assert value(families, "nfq_mip6_build_info", version=__import__("nfq_mip6").__version__) == 1


def test_mipl_statistics_and_state_from_snapshot() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry, lambda: STATS)
    families = scrape(registry)
    assert len(MIPL_METRIC_NAMES) == 19
    assert value(families, "nfq_mip6_bind_updates_received_total") == 3
    assert value(families, "nfq_mip6_bind_acks_sent_total") == 2
    assert value(families, "nfq_mip6_encapsulations_total") == 0
    assert value(families, "nfq_mip6_bindings", role="ha", state="all") == 2
    assert value(families, "nfq_mip6_route_optimization_enabled") == 0
    assert value(families, "nfq_mip6_fastpath_backend_info", backend="seg6") == 1


def test_bindings_by_state_and_bounded_labels() -> None:
    registry = CollectorRegistry()
    snapshot = STATS | {
        "role": "fec0::1",
        "backend": "2001:db8::1",
        "bindings_by_state": {"registered": 4, "dad": 1, "fec0::4": 9},
    }
    AgentMetrics(registry, lambda: snapshot)
    families = scrape(registry)
    assert value(families, "nfq_mip6_bindings", role="unknown", state="registered") == 4
    assert value(families, "nfq_mip6_bindings", role="unknown", state="other") == 9
    assert value(families, "nfq_mip6_fastpath_backend_info", backend="other") == 1
    text = generate_latest(registry).decode()
    assert not re.search(r"[0-9a-f]+::[0-9a-f]", text), "an address leaked into a label"


def test_counters_move() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, lambda: STATS)
    metrics.mh_received(MHType.BU)
    metrics.mh_received(5)
    metrics.mh_received(99)
    metrics.mh_sent(MHType.BA)
    metrics.ba_sent(0)
    metrics.ba_sent(129)
    metrics.malformed()
    metrics.nfqueue_verdict("accept")
    metrics.nfqueue_verdict("drop")
    metrics.nfqueue_verdict("rewrite")
    metrics.nfqueue_verdict("fec0::1")
    metrics.observe_bu_latency(0.0004)
    metrics.dataplane_op("tunnel_add", True)
    metrics.dataplane_op("tunnel_add", False)
    metrics.dataplane_op("InstallTunnel", False)
    metrics.config_loaded(1_700_000_000.0)
    families = scrape(registry)
    assert value(families, "nfq_mip6_mh_messages_received_total", mh_type="bu") == 2
    assert value(families, "nfq_mip6_mh_messages_received_total", mh_type="other") == 1
    assert value(families, "nfq_mip6_mh_messages_sent_total", mh_type="ba") == 1
    assert value(families, "nfq_mip6_binding_acks_sent_total", ba_status="129") == 1
    assert value(families, "nfq_mip6_mh_messages_malformed_total") == 1
    assert value(families, "nfq_mip6_nfqueue_packets_total", verdict="rewrite") == 1
    assert value(families, "nfq_mip6_nfqueue_packets_total", verdict="other") == 1
    assert value(families, "nfq_mip6_binding_update_processing_seconds_count") == 1
    assert value(families, "nfq_mip6_binding_update_processing_seconds_bucket", le="0.0005") == 1
    assert value(families, "nfq_mip6_dataplane_operations_total", op="tunnel_add") == 2
    assert value(families, "nfq_mip6_dataplane_errors_total", op="tunnel_add") == 1
    assert value(families, "nfq_mip6_dataplane_errors_total", op="install_tunnel") == 1
    assert value(families, "nfq_mip6_last_config_load_timestamp_seconds") == 1_700_000_000.0


def test_operation_labels_are_bounded() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    for i in range(100):
        metrics.dataplane_op(f"op{i}", True)
    families = scrape(registry)
    samples = families["nfq_mip6_dataplane_operations"][1]
    assert len({s.labels["op"] for s in samples}) <= 33
    assert value(families, "nfq_mip6_dataplane_operations_total", op="other") == 68


def test_failing_snapshot_does_not_break_the_scrape() -> None:
    registry = CollectorRegistry()

    def broken() -> dict[str, Any]:
        raise RuntimeError("agent stopping")

    AgentMetrics(registry, broken)
    families = scrape(registry)
    assert "nfq_mip6_build_info" in families
    assert "nfq_mip6_bindings" not in families


def test_snapshot_retried_then_last_good_served() -> None:
    registry = CollectorRegistry()
    calls: list[str] = []
    plan = ["ok", "fail", "ok", "fail", "fail"]

    def flaky() -> dict[str, Any]:
        outcome = plan[len(calls)]
        calls.append(outcome)
        if outcome == "fail":
            raise RuntimeError("dictionary changed size during iteration")
        return STATS | {"bindings": len(calls)}

    AgentMetrics(registry, flaky)
    assert value(scrape(registry), "nfq_mip6_bindings", state="all") == 1
    assert value(scrape(registry), "nfq_mip6_bindings", state="all") == 3  # retried once
    assert value(scrape(registry), "nfq_mip6_bindings", state="all") == 3  # last good one


def test_http_endpoint() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, lambda: STATS)
    metrics.malformed()
    server, thread = start_http_server("127.0.0.1", 0, registry)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            body = reply.read().decode()
        assert "nfq_mip6_mh_messages_malformed_total 1.0" in body
        assert "nfq_mip6_bind_updates_received_total 3.0" in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_ro_datapath_and_bpf_counters_from_the_snapshot() -> None:
    registry = CollectorRegistry()
    counters = {"out_rewritten": 7, "in_punted": 2, "bogus": 1}
    snapshot = STATS | {"role": "cn", "ro_datapath": {"datapath": "bpf", "counters": counters}}
    AgentMetrics(registry, lambda: snapshot)
    families = scrape(registry)
    assert value(families, "nfq_mip6_ro_datapath_info", datapath="bpf") == 1
    assert value(families, "nfq_mip6_ro_bpf_packets_total", counter="out_rewritten") == 7
    assert value(families, "nfq_mip6_ro_bpf_packets_total", counter="in_punted") == 2
    assert "bogus" not in generate_latest(registry).decode()


def test_mobile_routers_and_prefixes_are_counted_without_labels() -> None:
    """RFC 3963: the HA's mobile routers and their prefixes, as plain gauges."""
    registry = CollectorRegistry()
    snapshot = STATS | {"home_agent": {"mobile_routers": 2, "mobile_network_prefixes": 3}}
    AgentMetrics(registry, lambda: snapshot)
    families = scrape(registry)
    assert value(families, "nfq_mip6_mobile_routers") == 2
    assert value(families, "nfq_mip6_mobile_network_prefixes") == 3


def test_refused_reverse_tunnel_packets_of_mobile_routers_are_a_counter() -> None:
    """RFC 3963 §6.5: the HA's refused inner sources, next to the ``stats`` counter."""
    registry = CollectorRegistry()
    snapshot = STATS | {"home_agent": {"mobile_network_source_rejected": 4}}
    AgentMetrics(registry, lambda: snapshot)
    families = scrape(registry)
    assert value(families, "nfq_mip6_mobile_network_source_rejected_total") == 4
    # an agent without the rules (no HA, or none loaded) has no such series
    registry = CollectorRegistry()
    AgentMetrics(registry, lambda: STATS)
    assert "mobile_network_source_rejected" not in generate_latest(registry).decode()


def test_cluster_role_revision_lag_and_commit_results() -> None:
    """HA cluster (docs/cluster.md): role, store revision, replica lag and commit results from
    the snapshot; commit latency and replica lag histograms from the runtime."""
    registry = CollectorRegistry()
    cluster = {
        "role": "standby",
        "revision": 42,
        "lag": 3,
        "store_reachable": True,
        "counters": {"commits": 5, "conflicts": 1, "timeouts": 2, "store_errors": 0},
    }
    metrics = AgentMetrics(registry, lambda: STATS | {"cluster": cluster})
    metrics.cluster_commit(0.004, "committed")
    metrics.cluster_commit(1.0, "timeout")
    metrics.cluster_commit(0.01, "nonsense")  # bounded: counted as an error
    metrics.cluster_replica_lag(0.002)
    families = scrape(registry)
    assert value(families, "nfq_mip6_cluster_role", role="standby") == 1
    assert value(families, "nfq_mip6_cluster_role", role="active") == 0
    assert value(families, "nfq_mip6_cluster_store_revision") == 42
    assert value(families, "nfq_mip6_cluster_replica_lag_revisions") == 3
    assert value(families, "nfq_mip6_cluster_store_reachable") == 1
    assert value(families, "nfq_mip6_cluster_commit_results_total", result="timeout") == 2
    assert value(families, "nfq_mip6_cluster_commit_results_total", result="conflict") == 1
    assert value(families, "nfq_mip6_cluster_commit_seconds_count", outcome="committed") == 1
    assert value(families, "nfq_mip6_cluster_commit_seconds_count", outcome="timeout") == 1
    assert value(families, "nfq_mip6_cluster_commit_seconds_count", outcome="error") == 1
    assert value(families, "nfq_mip6_cluster_replica_lag_seconds_count") == 1


def test_drain_is_a_gauge_and_its_switch_messages_a_counter_by_event() -> None:
    """RFC 5142: ``nfq-mip6 cluster drain`` and the Home Agent Switch messages it caused."""
    registry = CollectorRegistry()
    home_agent = {"draining": 1, "drain_switch_sent": 5, "drain_switch_followed": 4}
    AgentMetrics(registry, lambda: STATS | {"home_agent": home_agent})
    families = scrape(registry)
    assert value(families, "nfq_mip6_draining") == 1
    assert value(families, "nfq_mip6_home_agent_switch_messages_total", event="sent") == 5
    assert value(families, "nfq_mip6_home_agent_switch_messages_total", event="followed") == 4
    assert value(families, "nfq_mip6_home_agent_switch_messages_total", event="unanswered") == 0
