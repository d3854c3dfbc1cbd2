"""Small deterministic builders shared by tests."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nfq_mip6.config import AgentConfig, HomeAgentConfig, Role
from nfq_mip6.dataplane import Dataplane
from nfq_mip6.io.host import HomeLinkAddressing
from nfq_mip6.runtime.base import RuntimeContext
from nfq_mip6.runtime.home_agent import HomeAgentRuntime
from tests.support import howto


def counter_bytes(start: int = 1) -> Callable[[int], bytes]:
    """A deterministic ``random_bytes``: call k returns ``n`` octets of ``(start + k) & 0xFF``.

    Cores take randomness (sequence numbers, nonces, Kcn) as an injected callable; this one
    makes their choices repeatable.
    """
    counter = itertools.count(start)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) & 0xFF]) * n

    return random_bytes


def runtime_context(
    config: AgentConfig,
    send_packet: Callable[[bytes], None],
    clock: Callable[[], float],
    *,
    verdict_stats: bool = True,
) -> RuntimeContext:
    """What the agent hands a role runtime, without the agent: no fds are watched, no metrics;
    ``send_packet`` receives every packet the runtime sends."""
    return RuntimeContext(
        config=config,
        send_packet=send_packet,
        add_reader=lambda fd, cb: None,
        remove_reader=lambda fd: None,
        metrics=None,
        logger=logging.getLogger("test"),
        clock=clock,
        stats={"accepted": 0, "dropped": 0, "rewritten": 0} if verdict_stats else None,
    )


def home_agent_runtime(
    state_dir: Path,
    dataplane: Dataplane,
    send_packet: Callable[[bytes], None],
    *,
    nd: Any = None,
) -> HomeAgentRuntime:
    """A started Home Agent runtime on the HOWTO home link (``eth0``, HA, home prefix) over the
    in-memory ``dataplane``: no rules loaded, state in ``state_dir``, the clock at 100 s,
    ``[ha] max_binding_lifetime = 400``; ``nd`` stands in for home-link Neighbor Discovery."""
    runtime = HomeAgentRuntime(
        dataplane_factory=lambda link, backend: dataplane,
        nd_factory=lambda link: nd,
        load_rules=False,
        home_link=HomeLinkAddressing("eth0", howto.HA, howto.PREFIX, 1500),
    )
    config = AgentConfig(
        role=Role.HA,
        source=state_dir / "ha.toml",
        state_dir=state_dir,
        ha=HomeAgentConfig(max_binding_lifetime=400),
    )
    runtime.start(runtime_context(config, send_packet, lambda: 100.0))
    return runtime
