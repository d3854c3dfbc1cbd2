"""Takeover of many bindings on the three-host virtual HA (``nfq-mip6 testbed up --cluster 3``:
real etcd, keepalived and agents, the real MN agent; docs/cluster.md).

The MN registers from visitnet through ha1; then 10 000 more bindings (the issue's figure;
``NFQ_MIP6_TAKEOVER_BINDINGS`` sets another number) are committed to the virtual HA's store
through the group-commit path, as an active host would have accepted them. The
standbys ha2 and ha3 follow: each holds every binding in its cache and its tunnel route in
the kernel, and no proxy ND entry. ha1 dies (every process killed, its links down) while the
CN pings the MN's home address: the new active host adds the proxy ND entry of every home
address (the MN's and the preloaded ones) and keeps every tunnel route; the MN's next BU
(sequence + 1) is answered 0 by it with no DHAAD, no proxy DAD and no 135/144, and the CN's
pings go on. The takeover's parts (``cluster status --json`` ``last_takeover_steps_ms``) are
printed, never asserted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_bed import (
    agent_log,
    cached,
    cluster_status,
    cluster_testbed,
    control,
    kernel_entries,
    last_bu_sequence,
    mn_events,
    preload_bindings,
    preloaded_home_addresses,
    role,
    start_mn,
    tunnel_route,
)
from helpers import terminate, wait_until

from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import cluster_hosts
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS

pytestmark = pytest.mark.netns
pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

HOSTS = [h.name for h in cluster_hosts(3)]
PRELOADED = int(os.environ.get("NFQ_MIP6_TAKEOVER_BINDINGS", "10000"))


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    # Room for every binding: a registration beyond max_tunnel_nr (64 by default) gets 130,
    # while bindings loaded from the store are not counted against it.
    capacity = {"NFQ_MIP6_HA__MAX_TUNNEL_NR": str(min(65535, PRELOADED + 64))}
    with cluster_testbed(3, capacity) as testbed:
        yield testbed


def test_takeover_of_preloaded_bindings(bed: Testbed, tmp_path: Path) -> None:
    total = PRELOADED + 1  # and the MN's
    expected = preloaded_home_addresses(PRELOADED) | {MN_HOME_ADDRESS}
    mn_socket = bed.run_dir / "mn.sock"
    log = (tmp_path / "mn.log").open("w")
    mn = start_mn(bed, log)
    try:
        coa = care_of_address("visitnet")
        bed.move("visitnet")
        for host in HOSTS:
            assert wait_until(lambda h=host: cached(bed, h) == [(MN_HOME_ADDRESS, coa)], 20.0), (
                host,
                cached(bed, host),
            )
            assert wait_until(lambda h=host: tunnel_route(bed, h), 10.0), host

        preload_s = preload_bindings(bed, "ha3", PRELOADED)
        started = time.monotonic()

        def warm(host: str) -> bool:
            if cluster_status(bed, host)["bindings"] != total:
                return False
            routes, proxies = kernel_entries(bed, host)
            return routes >= expected and not proxies & expected

        for host in HOSTS[1:]:  # the standbys hold every binding and its route, no proxy
            assert wait_until(lambda h=host: warm(h), 120.0), (
                host,
                cluster_status(bed, host),
                [len(entries) for entries in kernel_entries(bed, host)],
            )
        warm_s = time.monotonic() - started
        cn = bed.node("cn")
        assert wait_until(
            lambda: (
                cn.run(["ping", "-6", "-c1", "-W1", MN_HOME_ADDRESS], check=False).returncode == 0
            ),
            10.0,
        )
        dad_before = {
            h: control(bed, h, "stats")["home_agent"]["nd_dad_ns_sent"] for h in HOSTS[1:]
        }
        sequence = last_bu_sequence(mn_events(mn_socket))

        with bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100) as stream:
            assert wait_until(lambda: stream.replies_so_far >= 50, 10.0)
            # Right after the MN's refresh is answered: its binding (12 s on this bed) then
            # outlives the takeover, which keeps the new active's loop busy for seconds (a
            # binding that ends meanwhile expires before its queued refresh is read:
            # docs/cluster.md).
            answered = f"ba seq={sequence + 1} status=0"
            assert wait_until(lambda: answered in mn_events(mn_socket), 20.0), mn_events(mn_socket)
            sequence += 1
            cluster.kill_host(bed, "ha1")
            assert wait_until(lambda: cluster.active_host(bed) is not None, 10.0)
            new_active = cluster.active_host(bed)
            assert new_active in HOSTS[1:], new_active
            assert wait_until(lambda: role(bed, new_active) == "active", 30.0)
            # the agent answers (its loop serves) while proxy entries are still going in
            pending_seen = cluster_status(bed, new_active).get("proxy_pending")
            # Every home address proxied by the new active host, every tunnel route kept.
            assert wait_until(lambda: kernel_entries(bed, new_active)[1] >= expected, 30.0), (
                sorted(expected - kernel_entries(bed, new_active)[1])[:5],
                cluster_status(bed, new_active),
                agent_log(bed, new_active, 40),
            )
            routes, proxies = kernel_entries(bed, new_active)
            assert routes >= expected, len(expected - routes)
            # The MN's next BU (its refresh) is answered 0 by the new active host.
            answered = f"ba seq={sequence + 1} status=0"
            assert wait_until(lambda: answered in mn_events(mn_socket), 30.0), "\n".join(
                [*mn_events(mn_socket), agent_log(bed, new_active)]
            )
            replies = stream.replies_so_far
            assert wait_until(lambda: stream.replies_so_far >= replies + 100, 10.0)
            result = stream.stop()
        events = mn_events(mn_socket)
        assert not any(e.startswith("dhaad") for e in events), events
        assert not any("status=13" in e or "status=14" in e for e in events), events
        status = cluster_status(bed, new_active)
        assert status["bindings"] == total, status
        after = control(bed, new_active, "stats")["home_agent"]["nd_dad_ns_sent"]
        assert after == dad_before[new_active], "the new active host ran proxy DAD"
        assert result.received > 0, result.summary()
        print(
            f"\n{PRELOADED} preloaded bindings (+ the MN's): preload {preload_s:.2f} s, standbys "
            f"warm {warm_s:.2f} s after it; ha1 killed, {new_active} took over in "
            f"{status['last_takeover_ms']} ms, steps {status['last_takeover_steps_ms']} "
            f"(answering with {pending_seen} proxy entries pending); "
            f"{len(proxies)} proxy entries, {len(routes)} tunnel routes; next BU seq "
            f"{sequence + 1} answered 0; CN->HoA {result.summary()}"
        )
    finally:
        terminate(mn)
        log.close()
