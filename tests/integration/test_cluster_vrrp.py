"""The virtual HA on three hosts (``nfq-mip6 testbed up --cluster 3``): real etcd (3 members),
real keepalived (VRRPv3, virtual MAC), real HA agents and a real MN agent (docs/cluster.md).

What a user sees: the MN registers with the virtual HA from visitnet; every host holds the
binding and its tunnel route; the home router reaches the home address at the virtual MAC.
Then the active host dies (every process killed, its links down) while the CN pings the
home address at 100 packets per second: another host becomes active, the pings resume
through it, and the MN's next Binding Update (sequence + 1) is answered with status 0 by the
new active host, without DHAAD, proxy DAD or a new registration. The outage is printed,
never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_bed import (
    agent_log,
    cached,
    cluster_testbed,
    control,
    last_bu_sequence,
    mn_events,
    role,
    start_mn,
    tunnel_route,
)
from helpers import terminate, wait_until

from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import VMAC, cluster_hosts
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    with cluster_testbed(3) as testbed:
        yield testbed


def test_active_host_killed_under_ping(bed: Testbed, tmp_path: Path) -> None:
    hosts = [h.name for h in cluster_hosts(3)]
    assert cluster.active_host(bed) == "ha1"
    mn_socket = bed.run_dir / "mn.sock"
    log = (tmp_path / "mn.log").open("w")
    mn = start_mn(bed, log)
    try:
        coa = care_of_address("visitnet")
        bed.move("visitnet")
        # Registered through the active host; every host has the binding and its route.
        for host in hosts:
            assert wait_until(lambda h=host: cached(bed, h) == [(MN_HOME_ADDRESS, coa)], 20.0), (
                host,
                cached(bed, host),
            )
            assert wait_until(lambda h=host: tunnel_route(bed, h), 10.0), host
        cn = bed.node("cn")
        assert wait_until(
            lambda: (
                cn.run(["ping", "-6", "-c1", "-W1", MN_HOME_ADDRESS], check=False).returncode == 0
            ),
            10.0,
        )
        # The home router reaches the home address at the virtual MAC (proxy ND from vrrp.51).
        neigh = bed.node("r").run(["ip", "-6", "neigh", "show", MN_HOME_ADDRESS]).stdout
        assert VMAC in neigh, neigh
        dad_before = {
            h: control(bed, h, "stats")["home_agent"]["nd_dad_ns_sent"] for h in hosts[1:]
        }
        sequence = last_bu_sequence(mn_events(mn_socket))

        with bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100) as stream:
            assert wait_until(lambda: stream.replies_so_far >= 100, 10.0)
            killed_at = time.monotonic()
            cluster.kill_host(bed, "ha1")
            assert wait_until(lambda: cluster.active_host(bed) is not None, 10.0)
            new_active = cluster.active_host(bed)
            assert new_active in hosts[1:], new_active
            assert wait_until(lambda: role(bed, new_active) == "active", 15.0)
            # The MN's next BU (its refresh) is answered 0 by the new active host.
            answered = f"ba seq={sequence + 1} status=0"
            assert wait_until(lambda: answered in mn_events(mn_socket), 30.0), "\n".join(
                [*mn_events(mn_socket), agent_log(bed, new_active)]
            )
            replies = stream.replies_so_far
            assert wait_until(lambda: stream.replies_so_far >= replies + 100, 10.0)
            result = stream.stop()
            elapsed = time.monotonic() - killed_at
        events = mn_events(mn_socket)
        assert f"bu seq={sequence + 1} from {coa}" in " ".join(events) or any(
            e.startswith(f"bu seq={sequence + 1}") for e in events
        ), events
        assert not any(e.startswith("dhaad") for e in events), events
        assert not any("status=13" in e or "status=14" in e for e in events), events
        assert cached(bed, new_active) == [(MN_HOME_ADDRESS, coa)]
        after = control(bed, new_active, "stats")["home_agent"]["nd_dad_ns_sent"]
        assert after == dad_before[new_active], "the new active host ran proxy DAD"
        assert result.received > 0, result.summary()
        print(
            f"\nkill the active host (ha1) under CN->HoA 100 pps: {new_active} took over; "
            f"{result.summary()}; next BU seq {sequence + 1} answered 0 "
            f"{elapsed:.1f} s after the kill"
        )
    finally:
        terminate(mn)
        log.close()
