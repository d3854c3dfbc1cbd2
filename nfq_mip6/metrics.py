"""Prometheus metrics of the agent (``nfq_mip6_*``), with a registry injected by the caller.

Two kinds of metric:

* event counters the runtime increments as things happen (:class:`AgentMetrics` methods:
  Mobility Header messages by type, Binding Acknowledgements by status, malformed packets,
  NFQUEUE verdicts, Binding Update processing latency, dataplane operations);
* state read at scrape time by a custom collector from ``snapshot()`` (the control socket's
  ``stats`` answer): the 19 MIPL statistics of ``mipdiag -s`` as ``nfq_mip6_<name>_total``
  counters, the number of bindings by role and state, route optimization on/off, and the
  fast-path backend.

Every label is bounded (message type, status code, verdict, operation, role, state, backend):
no label ever carries an address. The endpoint's default port is
:data:`nfq_mip6.config.DEFAULT_METRICS_PORT` (10135).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import start_http_server as _prometheus_start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from nfq_mip6 import __version__
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES

__all__ = [
    "MIPL_METRIC_NAMES",
    "AgentMetrics",
    "start_http_server",
]

log = logging.getLogger(__name__)

PREFIX: Final = "nfq_mip6"

# MIPL statistic -> Prometheus counter name (without the "_total" the exposition adds).
MIPL_METRIC_NAMES: Final[dict[str, str]] = {
    "NEncapsulations": "encapsulations",
    "NDecapsulations": "decapsulations",
    "NBindUpdatesRcvd": "bind_updates_received",
    "NBindAcksRcvd": "bind_acks_received",
    "NBindNAcksRcvd": "bind_nacks_received",
    "NBindRqsRcvd": "bind_requests_received",
    "NBindUpdatesSent": "bind_updates_sent",
    "NBindAcksSent": "bind_acks_sent",
    "NBindNAcksSent": "bind_nacks_sent",
    "NBindRqsSent": "bind_requests_sent",
    "NBindUpdatesDropAuth": "bind_updates_dropped_auth",
    "NBindUpdatesDropInvalid": "bind_updates_dropped_invalid",
    "NBindUpdatesDropMisc": "bind_updates_dropped_misc",
    "NBindAcksDropAuth": "bind_acks_dropped_auth",
    "NBindAcksDropInvalid": "bind_acks_dropped_invalid",
    "NBindAcksDropMisc": "bind_acks_dropped_misc",
    "NBindRqsDropAuth": "bind_requests_dropped_auth",
    "NBindRqsDropInvalid": "bind_requests_dropped_invalid",
    "NBindRqsDropMisc": "bind_requests_dropped_misc",
}
assert tuple(MIPL_METRIC_NAMES) == MIPL_COUNTER_NAMES

# RFC 6275 §6.1: Mobility Header types 0..7 and RFC 5142's 12 (label values are bounded to these
# plus "other").
MH_TYPE_NAMES: Final[dict[int, str]] = {
    0: "brr",
    1: "hoti",
    2: "coti",
    3: "hot",
    4: "cot",
    5: "bu",
    6: "ba",
    7: "be",
    12: "home_agent_switch",
}
VERDICTS: Final = frozenset({"accept", "drop", "rewrite", "repeat"})
DRAIN_EVENTS: Final = ("sent", "retransmitted", "followed", "unsupported", "unanswered")
"""The HA's drain counters (``drain_switch_*`` in ``stats``, RFC 5142)."""
ROLES: Final = frozenset({"ha", "mn", "cn"})
BACKENDS: Final = frozenset({"seg6", "ip6tnl", "none", "fake", "auto"})
RO_DATAPATHS: Final = frozenset({"bpf", "nfqueue", "fake"})
RO_BPF_COUNTERS: Final = frozenset(
    {
        "out_rewritten",
        "out_not_bound",
        "out_skipped",
        "out_errors",
        "in_rewritten",
        "in_not_ours",
        "in_punted",
        "in_errors",
    }
)
BINDING_STATES: Final = frozenset({"registered", "cached", "dying", "dad", "pending", "all"})
MAX_OPERATION_LABELS: Final = 32
CLUSTER_ROLES: Final = frozenset({"active", "standby"})
COMMIT_OUTCOMES: Final = frozenset({"committed", "conflict", "timeout", "error"})
CLUSTER_COMMIT_BUCKETS: Final = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""HA cluster: an etcd quorum commit takes milliseconds; the deadline is ~1 s."""

# BU handling is sub-millisecond to a few ms (parsing, netlink); buckets from 50 µs to 1 s.
BU_LATENCY_BUCKETS: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


def _mh_type_label(mh_type: object) -> str:
    if isinstance(mh_type, int):  # IntEnum included
        return MH_TYPE_NAMES.get(int(mh_type), "other")
    text = str(mh_type).lower()
    return text if text in MH_TYPE_NAMES.values() else "other"


def _bounded(value: object, allowed: frozenset[str], fallback: str = "other") -> str:
    text = str(value).lower()
    return text if text in allowed else fallback


def _single(
    family: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, doc: str, value: Any
) -> GaugeMetricFamily | CounterMetricFamily:
    """A metric family ``nfq_mip6_<name>`` with one unlabelled sample (a missing value is 0)."""
    metric = family(f"{PREFIX}_{name}", doc)
    metric.add_metric([], float(value or 0))
    return metric


class _StateCollector(Collector):
    """Reads the agent's ``stats`` snapshot at scrape time."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]]) -> None:
        self._snapshot = snapshot
        self._last_good: Mapping[str, Any] | None = None

    def _read(self) -> Mapping[str, Any] | None:
        # The HTTP server thread calls this while the agent loop mutates its state; a snapshot
        # that fails half-way (e.g. a dict resized during iteration) is retried once, then the
        # last good one is served: the scrape never fails because the agent is busy.
        for _attempt in range(2):
            try:
                stats = self._snapshot()
            except Exception:
                log.debug("metrics snapshot failed", exc_info=True)
                continue
            if stats and stats.get("ok", True):
                self._last_good = stats
                return stats
            return None
        return self._last_good

    def collect(self) -> Iterable[Any]:
        stats = self._read()
        if stats is None:
            return
        counters = stats.get("counters") or {}
        for mipl_name, metric_name in MIPL_METRIC_NAMES.items():
            family = CounterMetricFamily(
                f"{PREFIX}_{metric_name}",
                f"MIPL statistic {mipl_name} (mipdiag -s)",
            )
            family.add_metric([], float(counters.get(mipl_name, 0)))
            yield family

        role = _bounded(stats.get("role", "unknown"), ROLES, "unknown")
        bindings = GaugeMetricFamily(
            f"{PREFIX}_bindings",
            "Bindings held: binding cache (HA, CN) or binding update list (MN), by state",
            labels=["role", "state"],
        )
        by_state = stats.get("bindings_by_state")
        if isinstance(by_state, Mapping):
            for state, count in sorted(by_state.items()):
                bindings.add_metric([role, _bounded(state, BINDING_STATES)], float(count))
        else:
            bindings.add_metric([role, "all"], float(stats.get("bindings", 0) or 0))
        yield bindings

        home_agent = stats.get("home_agent")
        if isinstance(home_agent, Mapping) and "mobile_network_prefixes" in home_agent:
            # RFC 3963: counts only (a prefix as a label would be unbounded)
            yield _single(
                GaugeMetricFamily,
                "mobile_routers",
                "Bindings of mobile routers with prefixes (RFC 3963)",
                home_agent.get("mobile_routers", 0),
            )
            yield _single(
                GaugeMetricFamily,
                "mobile_network_prefixes",
                "Mobile Network Prefixes registered and routed into tunnels (RFC 3963)",
                home_agent["mobile_network_prefixes"],
            )
        if isinstance(home_agent, Mapping) and "mobile_network_source_rejected" in home_agent:
            # RFC 3963 §6.5: the packet counter of the NFQMIP6-HA-MRSRC drop rule
            yield _single(
                CounterMetricFamily,
                "mobile_network_source_rejected",
                "Packets reverse-tunnelled from a mobile router's care-of address whose inner "
                "source is neither its home address nor a registered prefix, dropped (RFC 3963)",
                home_agent["mobile_network_source_rejected"],
            )
        if isinstance(home_agent, Mapping) and "draining" in home_agent:
            # RFC 5142: nfq-mip6 cluster drain and its Home Agent Switch messages
            yield _single(
                GaugeMetricFamily,
                "draining",
                "1 while the home agent drains (nfq-mip6 cluster drain)",
                home_agent["draining"],
            )
            switches = CounterMetricFamily(
                f"{PREFIX}_home_agent_switch_messages",
                "RFC 5142 Home Agent Switch: sent, retransmitted, followed by a de-registration, "
                "not understood (Binding Error 2), unanswered",
                labels=["event"],
            )
            for event in DRAIN_EVENTS:
                switches.add_metric([event], float(home_agent.get(f"drain_switch_{event}", 0) or 0))
            yield switches

        if "route_optimization" in stats:
            ro = GaugeMetricFamily(
                f"{PREFIX}_route_optimization_enabled",
                "1 when route optimization (return routability) is on",
            )
            ro.add_metric([], 1.0 if stats["route_optimization"] else 0.0)
            yield ro

        if "backend" in stats:
            backend = InfoMetricFamily(
                f"{PREFIX}_fastpath_backend",
                "Kernel fast path used for tunnels (seg6 encap.red or ip6tnl)",
            )
            backend.add_metric([], {"backend": _bounded(stats["backend"], BACKENDS)})
            yield backend

        cluster = stats.get("cluster")
        if isinstance(cluster, Mapping):
            yield from _cluster_families(cluster)

        ro_datapath = stats.get("ro_datapath")
        if isinstance(ro_datapath, Mapping):
            datapath = InfoMetricFamily(
                f"{PREFIX}_ro_datapath",
                "How route-optimized data packets are rewritten (tc BPF or NFQUEUE)",
            )
            datapath.add_metric(
                [], {"datapath": _bounded(ro_datapath.get("datapath"), RO_DATAPATHS)}
            )
            yield datapath
            counters = ro_datapath.get("counters")
            if isinstance(counters, Mapping) and counters:
                packets = CounterMetricFamily(
                    f"{PREFIX}_ro_bpf_packets",
                    "Packets seen by the route-optimization tc programs, by outcome",
                    labels=["counter"],
                )
                for name, value in sorted(counters.items()):
                    if name in RO_BPF_COUNTERS:
                        packets.add_metric([name], float(value))
                yield packets


def _cluster_families(cluster: Mapping[str, Any]) -> Iterable[Any]:
    """HA cluster (docs/cluster.md): role, store revision, replica lag, commit outcomes."""
    role = GaugeMetricFamily(
        f"{PREFIX}_cluster_role", "HA cluster role of this agent (1 = current)", labels=["role"]
    )
    current = _bounded(cluster.get("role"), CLUSTER_ROLES, "other")
    for name in sorted(CLUSTER_ROLES):
        role.add_metric([name], 1.0 if name == current else 0.0)
    yield role
    yield _single(
        GaugeMetricFamily,
        "cluster_store_revision",
        "The binding store's revision as last seen",
        cluster.get("revision", 0),
    )
    yield _single(
        GaugeMetricFamily,
        "cluster_replica_lag_revisions",
        "Store revisions a standby has not applied yet (0 on the active)",
        cluster.get("lag", 0),
    )
    reachable = GaugeMetricFamily(
        f"{PREFIX}_cluster_store_reachable", "1 when the binding store answered lately"
    )
    reachable.add_metric([], 1.0 if cluster.get("store_reachable") else 0.0)
    yield reachable
    counters = cluster.get("counters")
    if isinstance(counters, Mapping):
        results = CounterMetricFamily(
            f"{PREFIX}_cluster_commit_results",
            "Binding commits to the store, by result (a timeout or an error sends no BA)",
            labels=["result"],
        )
        for result, key in (
            ("committed", "commits"),
            ("conflict", "conflicts"),
            ("timeout", "timeouts"),
            ("error", "store_errors"),
        ):
            results.add_metric([result], float(counters.get(key, 0) or 0))
        yield results


class AgentMetrics:
    """The agent's metrics in ``registry`` (a fresh ``CollectorRegistry`` per test)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        snapshot: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._operations: set[str] = set()
        build = Info(f"{PREFIX}_build", "nfq-mip6 build information", registry=registry)
        build.info({"version": __version__})
        self._mh_received = Counter(
            f"{PREFIX}_mh_messages_received",
            "Mobility Header messages received, by type (RFC 6275 §6.1)",
            ["mh_type"],
            registry=registry,
        )
        self._mh_sent = Counter(
            f"{PREFIX}_mh_messages_sent",
            "Mobility Header messages sent, by type",
            ["mh_type"],
            registry=registry,
        )
        self._malformed = Counter(
            f"{PREFIX}_mh_messages_malformed",
            "Malformed packets dropped (bad length, checksum, options)",
            registry=registry,
        )
        self._ba_sent = Counter(
            f"{PREFIX}_binding_acks_sent",
            "Binding Acknowledgements sent, by status (RFC 6275 §6.1.8)",
            ["ba_status"],
            registry=registry,
        )
        self._nfqueue = Counter(
            f"{PREFIX}_nfqueue_packets",
            "Packets seen on NFQUEUE, by verdict",
            ["verdict"],
            registry=registry,
        )
        self._bu_latency = Histogram(
            f"{PREFIX}_binding_update_processing_seconds",
            "Time from a Binding Update's arrival to its verdict and answer",
            buckets=BU_LATENCY_BUCKETS,
            registry=registry,
        )
        self._dataplane_ops = Counter(
            f"{PREFIX}_dataplane_operations",
            "Kernel fast-path operations (tunnel, route, proxy NDP), by operation",
            ["op"],
            registry=registry,
        )
        self._dataplane_errors = Counter(
            f"{PREFIX}_dataplane_errors",
            "Kernel fast-path operations that failed, by operation",
            ["op"],
            registry=registry,
        )
        self._config_loaded = Gauge(
            f"{PREFIX}_last_config_load_timestamp_seconds",
            "Unix time of the last successful configuration (re)load",
            registry=registry,
        )
        self._cluster_commit = Histogram(
            f"{PREFIX}_cluster_commit_seconds",
            "HA cluster: time from a binding commit's submit to its result, by outcome",
            ["outcome"],
            buckets=CLUSTER_COMMIT_BUCKETS,
            registry=registry,
        )
        self._replica_lag = Histogram(
            f"{PREFIX}_cluster_replica_lag_seconds",
            "HA cluster standby: time from the active's decision to the replica applying it",
            buckets=CLUSTER_COMMIT_BUCKETS,
            registry=registry,
        )
        registry.register(_StateCollector(snapshot))

    # -- events (called by the runtime) -----------------------------------------------------
    def mh_received(self, mh_type: int | str) -> None:
        self._mh_received.labels(_mh_type_label(mh_type)).inc()

    def mh_sent(self, mh_type: int | str) -> None:
        self._mh_sent.labels(_mh_type_label(mh_type)).inc()

    def ba_sent(self, status: int) -> None:
        code = int(status)
        self._ba_sent.labels(str(code) if 0 <= code <= 255 else "other").inc()

    def malformed(self) -> None:
        self._malformed.inc()

    def nfqueue_verdict(self, verdict: str) -> None:
        self._nfqueue.labels(_bounded(verdict, VERDICTS)).inc()

    def observe_bu_latency(self, seconds: float) -> None:
        self._bu_latency.observe(max(0.0, seconds))

    def dataplane_op(self, op: str, ok: bool) -> None:
        # "InstallTunnel" (an action class name) -> "install_tunnel"; bounded characters.
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(op)).lower()
        label = re.sub(r"[^a-z0-9_]", "_", snake)[:32] or "other"
        with self._lock:
            if label not in self._operations:
                if len(self._operations) >= MAX_OPERATION_LABELS:
                    label = "other"
                else:
                    self._operations.add(label)
        self._dataplane_ops.labels(label).inc()
        if not ok:
            self._dataplane_errors.labels(label).inc()

    def cluster_commit(self, seconds: float, outcome: str) -> None:
        self._cluster_commit.labels(_bounded(outcome, COMMIT_OUTCOMES, "error")).observe(
            max(0.0, seconds)
        )

    def cluster_replica_lag(self, seconds: float) -> None:
        self._replica_lag.observe(max(0.0, seconds))

    def config_loaded(self, timestamp: float) -> None:
        self._config_loaded.set(timestamp)


def start_http_server(host: str, port: int, registry: CollectorRegistry) -> Any:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    Returns prometheus-client's ``(server, thread)``; ``server.shutdown()`` stops it.
    """
    return _prometheus_start_http_server(port, addr=host, registry=registry)
