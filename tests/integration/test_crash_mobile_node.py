"""Crash safety of the mobile node (issue 9; docs/security.md, "Persistence and crash safety").

Real HA and MN agents (the HOWTO configuration files). The MN registers from visitnet while
the CN pings the home address at 100 packets per second; then the MN agent is killed with
SIGKILL and started again with the same state directory. The restarted MN shows its binding
(``nfq-mip6 bul --json``), continues its sequence numbers (RFC 6275 §11.7.1: its next BU is
accepted with status 0, never answered 135) and the ping keeps running: the data path is
kernel state, adopted by the new run. The ping's losses are printed, never asserted as times.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_journey import cache_shows, reachable
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import HA_ADDRESS, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HA_CONFIG = REPO / "deploy" / "network-mip6.conf.ha"
MN_CONFIG = REPO / "deploy" / "network-mip6.conf.mn"
PING_RATE = 100  # packets per second
BA_EVENT = re.compile(r"ba seq=(\d+) status=(\d+)")


def cli_bul(node: Node, socket_path: Path) -> list[dict[str, Any]]:
    """``nfq-mip6 bul --json --control-socket PATH`` in the MN's namespace."""
    done = node.run(
        [sys.executable, "-m", "nfq_mip6", "bul", "--json", "--control-socket", str(socket_path)]
    )
    entries: list[dict[str, Any]] = json.loads(done.stdout)["entries"]
    return entries


def home_entry(socket_path: Path) -> dict[str, Any] | None:
    for entry in request(socket_path, {"cmd": "bul"})["entries"]:
        if entry["recipient"] == HA_ADDRESS and entry["home_registration"]:
            return dict(entry)
    return None


def binding_acks(socket_path: Path) -> list[tuple[int, int]]:
    """(sequence, status) of every BA the MN agent took, from its event log."""
    events = request(socket_path, {"cmd": "stats"})["mobile_node"]["events"]
    return [
        (int(match[1]), int(match[2]))
        for _t, what in events
        if (match := BA_EVENT.fullmatch(what)) is not None
    ]


def test_mobile_node_kill_9_while_away_restores_its_binding(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    ha_socket, mn_socket = tmp_path / "ha.sock", tmp_path / "mn.sock"
    # route optimization off: the CN runs no agent here, the flow stays in the HA tunnel
    mn_config = tmp_path / "network-mip6.conf.mn"
    mn_config.write_text(MN_CONFIG.read_text() + "ACCEPT_RETURN_ROUTABILITY=no\n")
    coa = care_of_address("visitnet")
    with running_agent(ha, HA_CONFIG, ha_socket):
        with running_agent(mn, mn_config, mn_socket) as agent:
            bed.move("visitnet")
            assert wait_until(functools.partial(cache_shows, ha_socket, coa), 15.0)
            assert wait_until(lambda: (home_entry(mn_socket) or {}).get("state") == 1, 5.0)
            assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN away"
            stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=PING_RATE).start()
            try:
                assert wait_until(lambda: stream.replies_so_far >= 20, 10.0), "no replies"
                before = home_entry(mn_socket)
                assert before is not None
                agent.kill()
                agent.wait(timeout=10)
                at_kill = stream.replies_so_far
                # no agent: the tunnels are kernel state, the flow goes on
                assert wait_until(lambda: stream.replies_so_far >= at_kill + PING_RATE, 10.0)
            except BaseException:
                stream.stop()
                raise
        try:
            with running_agent(mn, mn_config, mn_socket):
                # nfq-mip6 bul --json: the binding is back at once (restored in force, or
                # already refreshed: the new run's first movement decision is quick)
                (restored,) = cli_bul(mn, mn_socket)
                assert (restored["recipient"], restored["care_of_address"]) == (HA_ADDRESS, coa)
                assert restored["home_address"] == MN_HOME_ADDRESS
                assert restored["sequence"] >= before["sequence"] and restored["expires"] > 0
                stats = request(mn_socket, {"cmd": "stats"})["mobile_node"]
                assert stats["restored_bindings"] == 1 and stats["store_errors"] == 0
                # the movement decision of the new run refreshes the binding: the HA
                # accepts the next sequence number (status 0, not 135)
                assert wait_until(lambda: bool(binding_acks(mn_socket)), 10.0), cli_bul(
                    mn, mn_socket
                )
                acks = binding_acks(mn_socket)
                assert all(status == 0 for _seq, status in acks), acks
                assert acks[0][0] == (before["sequence"] + 1) & 0xFFFF, (before, acks)
                assert wait_until(lambda: (home_entry(mn_socket) or {}).get("state") == 1, 5.0)
                assert cache_shows(ha_socket, coa)
                at_restart = stream.replies_so_far
                assert wait_until(lambda: stream.replies_so_far >= at_restart + 20, 10.0), (
                    "no echo replies after the restart"
                )
        finally:
            result = stream.stop()
    print(f"\nMN kill -9 and restart while away, ping at {PING_RATE} pps: {result.summary()}")
    assert result.received > 0
