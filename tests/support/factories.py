"""Small deterministic builders shared by tests."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from nfq_mip6.config import AgentConfig
from nfq_mip6.runtime.base import RuntimeContext


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
