"""A mobile node restarted after an RFC 5142 Home Agent Switch stays with the home agent it
was switched to (docs/cluster.md, "Draining a home agent"): two home agents on the home link
(the second as in test_home_agent_switch.py), the MN registered with the first, ``nfq-mip6
cluster drain`` there moves it to the second; the MN agent is killed with SIGKILL and started
again with the same state directory (as in test_crash_mobile_node.py). The new run refreshes
its binding with the second home agent (status 0) and sends no BU to the first.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from test_crash_mobile_node import binding_acks
from test_home_agent_switch import HA2_ADDRESS, second_home_agent, summary
from test_journey import HA_CONFIG, MN_CONFIG, cache_line, cache_shows, reachable
from test_mobile_node import mobility_headers, running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.topology import HA_ADDRESS
from nfq_mip6.wire import BindingAck, BindingUpdate

pytestmark = pytest.mark.netns


def home_agent(mn_socket: Path) -> str | None:
    answer: str | None = request(mn_socket, {"cmd": "stats"})["mobile_node"]["home_agent"]
    return answer


def bound_with(mn_socket: Path) -> str | None:
    """The home agent of the MN's home registration in force (``nfq-mip6 bul``)."""
    for entry in request(mn_socket, {"cmd": "bul"})["entries"]:
        if entry["home_registration"] and entry["state"] == 1:
            return str(entry["recipient"])
    return None


def test_restarted_mobile_node_stays_with_the_home_agent_it_was_switched_to(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    ha_socket, ha2_socket, mn_socket = (tmp_path / f"{n}.sock" for n in ("ha", "ha2", "mn"))
    # route optimization off: the CN runs no agent here, the flow stays in the HA tunnel
    mn_config = tmp_path / "network-mip6.conf.mn"
    mn_config.write_text(MN_CONFIG.read_text() + "ACCEPT_RETURN_ROUTABILITY=no\n")
    coa = care_of_address("visitnet")
    with (
        second_home_agent(bed, tmp_path) as ha2,
        running_agent(ha, HA_CONFIG, ha_socket),
        running_agent(ha2, HA_CONFIG, ha2_socket),
    ):
        with running_agent(mn, mn_config, mn_socket) as agent:
            bed.move("visitnet")
            assert wait_until(functools.partial(cache_shows, ha_socket, coa), 15.0)
            listed = wait_until(
                lambda: (
                    HA2_ADDRESS
                    in request(ha_socket, {"cmd": "drain", "status": True})["drain"]["home_agents"]
                ),
                10.0,
            )
            assert listed
            assert request(ha_socket, {"cmd": "drain", "rate": 5})["ok"]
            assert wait_until(functools.partial(cache_shows, ha2_socket, coa), 20.0)
            assert wait_until(lambda: cache_line(ha_socket) is None, 10.0)
            assert home_agent(mn_socket) == HA2_ADDRESS
            # registered there: HA2's BA accepted the MN's BU
            assert wait_until(lambda: bound_with(mn_socket) == HA2_ADDRESS, 10.0)
            # the drain ends: HA1 would accept the MN again, were it to come back
            assert request(ha_socket, {"cmd": "drain", "stop": True})["ok"]
            agent.kill()
            agent.wait(timeout=10)
        with (
            bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap,
            running_agent(mn, mn_config, mn_socket),
        ):
            # the new run's home agent is the one it was switched to, not the configured one
            assert home_agent(mn_socket) == HA2_ADDRESS
            assert wait_until(lambda: bool(binding_acks(mn_socket)), 15.0), summary(pcap)
            acks = binding_acks(mn_socket)
            assert all(status == 0 for _seq, status in acks), acks
            assert wait_until(functools.partial(cache_shows, ha2_socket, coa), 5.0)
            assert cache_line(ha_socket) is None
            assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN via HA2"
            messages = mobility_headers(pcap)
        to_ha1 = [
            m for p, m in messages if str(p.dst) == HA_ADDRESS and isinstance(m, BindingUpdate)
        ]
        assert to_ha1 == [], summary(pcap)
        from_ha2 = [
            m.status for p, m in messages if str(p.src) == HA2_ADDRESS and isinstance(m, BindingAck)
        ]
        assert from_ha2 and set(from_ha2) == {0}, summary(pcap)
    print(f"\nrestarted MN: home agent {HA2_ADDRESS}, BAs {acks}, no BU to {HA_ADDRESS}")
