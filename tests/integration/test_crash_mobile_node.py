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
from test_journey_ro import CN_CONFIG, both_ends_bound
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.dataplane.ro_bpf import OBJECT_PATH
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import CN_ADDRESS, HA_ADDRESS, MN_HOME_ADDRESS

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


STALE_CN = "fec0:106:2300::99"
ADD_STALE_ENTRY = """
import sys
from ipaddress import IPv6Address
from nfq_mip6.dataplane.ro_bpf import BpfRouteOptimization
fast_path = BpfRouteOptimization("mn")
print(fast_path.start())
fast_path.install(*(IPv6Address(a) for a in sys.argv[1:4]))
fast_path.stop(flush=False)
"""


def cn_bindings(socket_path: Path) -> list[tuple[str, str, int]]:
    """(HoA, CoA, sequence) of the CN's bindings: a new BU would change the sequence."""
    rows = request(socket_path, {"cmd": "cache"})["bindings"]
    return [(r["home_address"], r["care_of_address"], int(r["sequence"])) for r in rows]


def mn_datapath(socket_path: Path) -> dict[str, Any]:
    datapath: dict[str, Any] = request(socket_path, {"cmd": "stats"})["ro_datapath"]
    return datapath


def mn_correspondent_entry(socket_path: Path) -> dict[str, Any] | None:
    for entry in request(socket_path, {"cmd": "bul"})["entries"]:
        if entry["recipient"] == CN_ADDRESS:
            return dict(entry)
    return None


def test_mobile_node_kill_9_keeps_its_route_optimization(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """RO with the CN in tc BPF; a stale map entry, route and rule left for a CN the MN has
    no binding with; kill -9 of the MN agent. The restarted agent restores its CN binding
    from the state store and adopts the map: one entry (no duplicate), the stale one and its
    route and rule gone, the CN's binding untouched and RO traffic flowing."""
    if not OBJECT_PATH.is_file():
        pytest.fail(f"{OBJECT_PATH} not built: run scripts/build-bpf.sh")
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    sockets = {name: tmp_path / f"{name}.sock" for name in ("ha", "mn", "cn")}
    coa = care_of_address("visitnet")
    bound = [  # the HA's direct entry (§11.3.1, its home binding) and the CN's
        {"home_address": MN_HOME_ADDRESS, "peer": peer, "care_of_address": coa}
        for peer in sorted((HA_ADDRESS, CN_ADDRESS))
    ]
    with running_agent(ha, HA_CONFIG, sockets["ha"]), running_agent(cn, CN_CONFIG, sockets["cn"]):
        with running_agent(mn, MN_CONFIG, sockets["mn"]) as agent:
            bed.move("visitnet")
            assert wait_until(functools.partial(both_ends_bound, cn, sockets, coa), 40.0)
            datapath = request(sockets["mn"], {"cmd": "stats"})["ro_datapath"]
            assert datapath["datapath"] == "bpf" and datapath["bindings"] == bound, datapath
            before = mn_correspondent_entry(sockets["mn"])
            assert before is not None and before["state"] == 1
            stale = mn.run([sys.executable, "-c", ADD_STALE_ENTRY, MN_HOME_ADDRESS, STALE_CN, coa])
            assert stale.stdout.split() == ["adopted"], stale.stdout + stale.stderr
            assert STALE_CN in mn.run(["ip", "-6", "route", "show", "table", "6277"]).stdout
            agent.kill()
            agent.wait(timeout=10)
            down = cn.run(["ping", "-6", "-c", "50", "-i", "0.02", "-q", MN_HOME_ADDRESS])
            print(f"\nMN agent down, 50 pings: {down.stdout.strip().splitlines()[-2]}")
            assert " 0% packet loss" in down.stdout
        cache_before = cn_bindings(sockets["cn"])
        assert cache_before == [(MN_HOME_ADDRESS, coa, before["sequence"])], cache_before
        with running_agent(mn, MN_CONFIG, sockets["mn"]):
            # restored from the store: bound at once, same sequence, no new RR or BU
            restored = mn_correspondent_entry(sockets["mn"])
            assert restored is not None and restored["state"] == 1, restored
            assert restored["sequence"] == before["sequence"], (before, restored)
            datapath = request(sockets["mn"], {"cmd": "stats"})["ro_datapath"]
            assert datapath["adopted"] is True, datapath
            peers = [b["peer"] for b in datapath["bindings"]]
            assert CN_ADDRESS in peers and STALE_CN not in peers, datapath  # kept, stale gone
            # the HA's entry comes back with the home re-registration of the new run
            assert wait_until(lambda: mn_datapath(sockets["mn"])["bindings"] == bound, 10.0)
            routes = mn.run(["ip", "-6", "route", "show", "table", "6277"]).stdout
            rules = mn.run(["ip", "-6", "rule", "show"]).stdout
            assert STALE_CN not in routes and STALE_CN not in rules, routes + rules
            assert CN_ADDRESS in routes and f"to {CN_ADDRESS} lookup 6277" in rules
            up = cn.run(["ping", "-6", "-c", "20", "-i", "0.02", "-q", MN_HOME_ADDRESS])
            assert " 0% packet loss" in up.stdout
            # the CN's binding was never redone: its entry is the one from before the kill
            assert cn_bindings(sockets["cn"]) == cache_before
            assert mn_datapath(sockets["mn"])["entries"] == 2
