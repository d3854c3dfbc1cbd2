"""The contract between the agent loop (:mod:`nfq_mip6.agent`) and a role runtime.

The agent owns the process: one ``selectors`` loop over the NFQUEUE fd, the control socket,
extra fds registered by the role (raw ICMPv6 socket, netlink monitor) and a single timer.
A role runtime (Home Agent, Mobile Node, Correspondent Node) plugs in by implementing
:class:`RoleRuntime`; it never blocks and never sleeps. Everything it needs from the process
comes through :class:`RuntimeContext`.

This module is a stable contract: fields and methods are only added, never renamed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nfq_mip6.io.nfqueue import QueuedPacket, Verdict, VerdictKind

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


@runtime_checkable
class RoleRuntime(Protocol):
    """A role (HA, MN, CN) plugged into the agent loop. No method may block."""

    def start(self, ctx: RuntimeContext) -> None:
        """Load the role's rules, open its sockets, reconcile kernel state. Raise on failure."""

    def on_queued_packet(self, packet: QueuedPacket, now: float) -> Verdict:
        """Decide on one packet from NFQUEUE (``packet.payload`` is the whole IPv6 packet)."""

    def on_timer(self, now: float) -> None:
        """Called when ``now >= next_deadline()``."""

    def next_deadline(self) -> float | None:
        """The next time (on ``ctx.clock``) ``on_timer`` must run, ``None`` for none."""

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a control-socket request (``stats``, ``cache``, ``bul``, ``ro``)."""

    def stop(self) -> None:
        """Clean stop: remove the rules and agent-owned kernel state as documented."""
