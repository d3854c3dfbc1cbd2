"""The contract between the agent loop (:mod:`nfq_mip6.agent`) and a role runtime.

The agent owns the process: one ``selectors`` loop over the NFQUEUE fd, the control socket,
extra fds registered by the role (raw ICMPv6 socket, netlink monitor) and a single timer.
A role runtime (Home Agent, Mobile Node, Correspondent Node) plugs in by subclassing
:class:`RoleRuntime`; it never blocks and never sleeps. Everything it needs from the process
comes through :class:`RuntimeContext`; everything the operator asks (control socket, SIGHUP)
comes through :meth:`RoleRuntime.handle_control` and :meth:`RoleRuntime.reload`, one path for
the three roles.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from nfq_mip6.io.iptables import RuleSet, ip6tables_backend
from nfq_mip6.io.nfqueue import QueuedPacket, Verdict, VerdictKind
from nfq_mip6.logsetup import LogThrottle
from nfq_mip6.mobility.events import (
    BindingDeleted,
    BindingEvent,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
    BindingRejected,
)
from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES, MobilityStats
from nfq_mip6.wire.mh import BAStatus

if TYPE_CHECKING:
    from nfq_mip6.config import AgentConfig
    from nfq_mip6.metrics import AgentMetrics

__all__ = [
    "FdCallback",
    "QueuedPacket",
    "RoleRuntime",
    "RuntimeContext",
    "Verdict",
    "VerdictKind",
]

FdCallback = Callable[[], None]
"""Called by the agent loop (no arguments) when a registered fd is readable."""


MOBILE_ROUTER_STATUSES: Final[dict[int, str]] = {
    BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED: "mobile router operation not permitted",
    BAStatus.INVALID_PREFIX: "invalid prefix",
    BAStatus.NOT_AUTHORIZED_FOR_PREFIX: "not authorized for prefix",
    BAStatus.FORWARDING_SETUP_FAILED: "forwarding setup failed",
}
"""RFC 3963 §4.2: the statuses a home agent refuses a mobile router's BU with."""


@dataclass(frozen=True, slots=True)
class RuntimeContext:
    """What the agent process offers a role runtime (handed to :meth:`RoleRuntime.start`).

    Attributes:
        config: the loaded configuration (``--queue-num`` etc. already applied).
        send_packet: send a whole IPv6 packet (header included) through the agent's
            ``IPV6_HDRINCL`` raw socket; raises ``OSError`` when the kernel refuses it.
        add_reader: watch ``fd`` in the agent loop and call ``callback()`` when readable.
        remove_reader: stop watching ``fd`` (before closing it).
        metrics: the Prometheus metrics object, or ``None`` when metrics are disabled.
        logger: the role's logger.
        clock: the monotonic clock (seconds) the agent uses for ``now``.
        queue_num: the NFQUEUE number the agent is bound to (``{queue}`` in the rules).
        queue_bypass: load the rules with ``--queue-bypass`` (fail open when the agent is down).
        stats: the agent loop's NFQUEUE verdict counters (``accepted``/``dropped``/
            ``rewritten``), a live dict the runtime may read for its ``stats`` snapshot.
    """

    config: AgentConfig
    send_packet: Callable[[bytes], None]
    add_reader: Callable[[int, FdCallback], None]
    remove_reader: Callable[[int], None]
    metrics: AgentMetrics | None
    logger: logging.Logger
    clock: Callable[[], float]
    queue_num: int = 0
    queue_bypass: bool = False
    stats: dict[str, int] | None = None


class RoleRuntime(ABC):
    """A role (HA, MN, CN) plugged into the agent loop. No method may block.

    A subclass implements the lifecycle (:meth:`start`, :meth:`on_queued_packet`,
    :meth:`on_timer`, :meth:`next_deadline`, :meth:`stop`), :meth:`reload` and what it shows
    (:meth:`role_stats` and the tables it has); the control-socket commands and the common
    ``stats`` block are answered here, the same way for the three roles.
    """

    role: ClassVar[str]  # "ha", "mn", "cn"
    log: ClassVar[logging.Logger]
    backend: str = ""  # the data path's name in ``stats``
    rules: RuleSet | None = None  # the role's ip6tables fragment, once loaded

    def __init__(self, counters: Iterable[str] = ()) -> None:
        self.ctx: RuntimeContext | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            ("malformed", "send_errors", "mobile_router_rejections", *counters), 0
        )
        # A flood of failed sends (fuzzing, a dead route) logs one line per 10 s, not each.
        self._send_failures = LogThrottle(self.log, "sending a packet failed")

    # -- lifecycle (the agent loop) ----------------------------------------------------------
    @abstractmethod
    def start(self, ctx: RuntimeContext) -> None:
        """Load the role's rules, open its sockets, reconcile kernel state. Raise on failure."""

    @abstractmethod
    def on_queued_packet(self, packet: QueuedPacket, now: float) -> Verdict:
        """Decide on one packet from NFQUEUE (``packet.payload`` is the whole IPv6 packet)."""

    @abstractmethod
    def on_timer(self, now: float) -> None:
        """Called when ``now >= next_deadline()``."""

    @abstractmethod
    def next_deadline(self) -> float | None:
        """The next time (on ``ctx.clock``) ``on_timer`` must run, ``None`` for none."""

    @abstractmethod
    def stop(self) -> None:
        """Clean stop: remove the rules and agent-owned kernel state as documented."""

    @abstractmethod
    def reload(self, config: AgentConfig) -> list[str]:
        """SIGHUP: apply the reloadable settings of ``config`` (the agent has read and merged
        it); returns one line per setting that changed. The others need a restart."""

    # -- what a role shows ------------------------------------------------------------------
    @abstractmethod
    def mobility_stats(self) -> MobilityStats:
        """The core's RFC 6275 counters (MIPL names)."""

    @abstractmethod
    def role_stats(self, now: float) -> dict[str, Any]:
        """The role's own part of ``stats`` (its section, e.g. ``{"home_agent": {…}}``)."""

    def binding_count(self, now: float) -> int:
        return len(self.cache_rows(now)) + len(self.bul_rows(now))

    def cache_rows(self, now: float) -> list[dict[str, Any]]:
        """``cache``: the Binding Cache (HA, CN); empty for a role without one."""
        return []

    def bul_rows(self, now: float) -> list[dict[str, Any]]:
        """``bul``: the Binding Update List (MN); empty for a role that sends no BUs."""
        return []

    def route_optimization(self) -> bool | None:
        """The ``ro`` switch; ``None`` for a role without one (the HA)."""
        return None

    def set_route_optimization(self, enabled: bool, now: float) -> bool:
        """``ro on|off``; returns the new state."""
        raise NotImplementedError

    def ro_datapath_stats(self) -> dict[str, Any] | None:
        """How route-optimized data packets are rewritten (CN, MN): ``datapath`` (``bpf`` or
        ``nfqueue``), ``reason``, and with BPF the programs' ``counters``; None for the HA."""
        return None

    def cache_extra(self, now: float) -> dict[str, Any]:
        """More for the ``cache`` answer (an HA cluster member: its role and store revision)."""
        return {}

    def cluster_command(self, request: dict[str, Any], now: float) -> dict[str, Any]:
        """``{"cmd": "cluster", "action": "status"|"active"|"standby"}`` (HA cluster)."""
        return {"ok": False, "error": f"cluster roles are a Home Agent setting, not {self.role}"}

    def role_command(self, cmd: object, request: dict[str, Any], now: float) -> dict[str, Any]:
        """A control command only this role knows (e.g. the HA's ``flush``)."""
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    # -- the control socket (one path for the three roles) ----------------------------------
    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control-socket request (``stats``, ``cache``, ``bul``, ``ro`` …)."""
        cmd = request.get("cmd")
        if self.ctx is None:
            return {"ok": False, "error": f"{self.role} runtime not started"}
        now = self.ctx.clock()
        if cmd == "stats":
            return self.stats_snapshot(now)
        if cmd == "cache":
            return {"ok": True, "bindings": self.cache_rows(now), **self.cache_extra(now)}
        if cmd == "cluster":
            return self.cluster_command(request, now)
        if cmd == "bul":
            return {"ok": True, "entries": self.bul_rows(now)}
        if cmd == "ro":
            if "set" not in request:
                answer = {"ok": True, "route_optimization": bool(self.route_optimization())}
                ro_datapath = self.ro_datapath_stats()
                return answer if ro_datapath is None else answer | {"ro_datapath": ro_datapath}
            if self.route_optimization() is None:
                return {"ok": False, "error": "route optimization is a MN/CN setting"}
            value = request["set"]
            if not isinstance(value, bool):
                return {"ok": False, "error": "ro set wants true or false"}
            return {"ok": True, "route_optimization": self.set_route_optimization(value, now)}
        return self.role_command(cmd, request, now)

    def stats_snapshot(self, now: float) -> dict[str, Any]:
        """The ``stats`` answer: the block common to the roles, then the role's own."""
        assert self.ctx is not None
        own = self.role_stats(now)  # first: it may sample kernel counters into the core
        counters = self.mobility_stats().as_dict()
        nfqueue = self.ctx.stats or {}
        snapshot: dict[str, Any] = {
            "ok": True,
            "role": self.role,
            "counters": {name: counters[name] for name in MIPL_COUNTER_NAMES},
            "route_optimization": bool(self.route_optimization()),
            "backend": self.backend,
            "bindings": self.binding_count(now),
            "nfqueue": {key: nfqueue.get(key, 0) for key in ("accepted", "dropped", "rewritten")},
            "ip6tables": self.ip6tables_stats(),
            **own,
        }
        ro_datapath = self.ro_datapath_stats()
        if ro_datapath is not None:
            snapshot["ro_datapath"] = ro_datapath
        return snapshot

    def ip6tables_stats(self) -> dict[str, Any]:
        """Which ip6tables backend holds the role's rules (``nft``/``legacy``) and the chains
        it loaded: what an operator would otherwise look for with ``nft list ruleset``."""
        backend, version = ip6tables_backend()
        chains = self.rules.chain_names() if self.rules is not None else []
        return {"backend": backend, "version": version, "chains": chains}

    # -- helpers the roles share ------------------------------------------------------------
    def _send(self, packet: bytes) -> None:
        """Send a whole IPv6 packet; a failure is counted and logged (throttled)."""
        assert self.ctx is not None
        try:
            self.ctx.send_packet(packet)
        except (OSError, ValueError) as exc:
            self.counters["send_errors"] += 1
            self._send_failures.log("sending a %d-octet packet failed: %s", len(packet), exc)

    def _malformed(self, reason: str) -> None:
        self.counters["malformed"] += 1
        self.log.debug("dropping a malformed packet: %s", reason)
        if self.ctx is not None and self.ctx.metrics is not None:
            self.ctx.metrics.malformed()

    def _dataplane_metric(self, op: str, *, ok: bool) -> None:
        if self.ctx is not None and self.ctx.metrics is not None:
            self.ctx.metrics.dataplane_op(op, ok)

    def _log_binding_event(self, event: BindingEvent) -> None:
        if isinstance(event, BindingRejected):
            if event.status in MOBILE_ROUTER_STATUSES:
                # RFC 3963 §5.3: the mobile network is not served; say why
                self.counters["mobile_router_rejections"] += 1
                self.log.warning(
                    "mobile router registration for %s refused: status %d (%s)",
                    event.home_address, event.status, MOBILE_ROUTER_STATUSES[event.status],
                )  # fmt: skip
                return
            self.log.info("binding for %s rejected: status %d", event.home_address, event.status)
        elif isinstance(event, BindingRegistered | BindingRefreshed):
            self.log.info(
                "binding %s -> %s %s for %d s",
                event.home_address, event.care_of_address,
                "registered" if isinstance(event, BindingRegistered) else "refreshed",
                event.lifetime,
            )  # fmt: skip
        elif isinstance(event, BindingDeleted | BindingExpired):
            name = type(event).__name__[7:].lower()
            self.log.info("binding for %s %s", event.home_address, name)
        else:
            self.log.debug("%r", event)
