"""Crash safety of the home agent (docs/security.md, "Persistence and crash safety").

``kill -9`` of ``nfq-mip6 run`` (HA) while a 100 packets/s ping from the CN crosses the tunnel
to the MN: the flow keeps running (the fast path is kernel state); after a restart the
binding cache is back (``nfq-mip6 cache --json``), lifetimes continue instead of starting
over, a replay of a pre-crash BU is still refused (RFC 4285 timestamps persisted) and the
MN's next refresh is accepted.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ScriptedMobileNode,
    binding_ack,
    mn_away,
    mn_tunnel_endpoint,
    start_agent,
    stop_agent,
)
from test_security import (
    COA,
    HA,
    HOA,
    KEY,
    association,
    flush_ha_kernel_state,
    home_bu,
    write_ha_config,
    write_key,
)

from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.testbed import Testbed
from nfq_mip6.testbed.testbed import Node

pytestmark = pytest.mark.netns

QUEUE_NUM = 28
PING_RATE = 100  # packets per second


def cli_cache(node: Node, socket_path: Path) -> list[dict[str, Any]]:
    """``nfq-mip6 cache --json --control-socket PATH`` in the HA's namespace."""
    done = node.run(
        [sys.executable, "-m", "nfq_mip6", "cache", "--json", "--control-socket", str(socket_path)]
    )
    bindings: list[dict[str, Any]] = json.loads(done.stdout)["bindings"]
    return bindings


@pytest.fixture
def away(testbed: Testbed) -> Iterator[Testbed]:
    with mn_away(testbed, HOA):
        yield testbed


def test_kill_9_keeps_the_flow_and_a_restart_restores_the_bindings(
    away: Testbed, tmp_path: Path
) -> None:
    ha = away.node("ha")
    flush_ha_kernel_state(ha)
    config = write_ha_config(tmp_path, QUEUE_NUM, write_key(tmp_path, "mn.key", KEY))
    socket_path = tmp_path / "ha.sock"
    agent = start_agent(ha, config, socket_path)
    mn = ScriptedMobileNode(away.node("mn"), HA)
    signer = MobileNodeAuthenticator(association())
    restarted = None
    try:
        first = home_bu(10, signer)
        assert binding_ack(mn.exchange(first, wait=5.0)).ba.status == 0
        with mn_tunnel_endpoint(away.node("mn"), HOA, COA, HA):
            stream = away.ping_stream("cn", str(HOA), rate_pps=PING_RATE).start()
            try:
                away.wait_until(lambda: stream.replies_so_far >= 20, 10.0, "ping through tunnel")
                (before,) = cli_cache(ha, socket_path)
                agent.proc.send_signal(signal.SIGKILL)
                agent.proc.wait(timeout=10)
                assert agent.proc.returncode == -signal.SIGKILL
                at_kill = stream.replies_so_far
                # The fast path is kernel state: replies keep coming with no agent at all.
                away.wait_until(
                    lambda: stream.replies_so_far >= at_kill + PING_RATE,
                    10.0,
                    "echo replies while the home agent is dead",
                )
                assert agent.proc.poll() is not None
                restarted = start_agent(ha, config, socket_path)
                (after,) = cli_cache(ha, socket_path)
                at_restart = stream.replies_so_far
                away.wait_until(
                    lambda: stream.replies_so_far >= at_restart + 20, 10.0, "replies after restart"
                )
            finally:
                result = stream.stop()
        # The binding is back with its lifetime continuing (not granted afresh).
        assert (after["home_address"], after["care_of_address"]) == (str(HOA), str(COA))
        assert after["sequence"] == 10 and after["state"] == "registered"
        assert 0 < after["lifetime"] <= before["lifetime"] < 400
        # The kernel fast path was reconciled, not duplicated.
        routes = ha.ipv6_routes("table", "6275")
        assert [r["dst"] for r in routes] == [str(HOA)]
        # A replay of the pre-crash BU is still refused; the MN's next refresh is accepted.
        assert binding_ack(mn.exchange(first)).ba.status == 144
        refresh = binding_ack(mn.exchange(home_bu(11, signer)))
        assert refresh.ba.status == 0
        (refreshed,) = cli_cache(ha, socket_path)
        assert refreshed["sequence"] == 11
        print("crash test ping:", result.summary())
        assert result.received > 0 and result.loss < 0.2, result.summary()
    finally:
        mn.close()
        stop_agent(restarted if restarted is not None else agent)
        flush_ha_kernel_state(ha)
