"""The tc BPF route-optimization data path between real namespaces (no agents).

CN (2001:db8:c::2) ── router ── MN (CoA 2001:db8:f::2, HoA 2001:db8:a::100 on lo). The router
has no route to the home prefix, so the CN reaches the HoA only through route optimization.
The adapter (``BpfRouteOptimization``) runs in a short-lived process in each namespace, as
the agent would; the filters it attaches and its map outlive that process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from nfq_mip6.dataplane.kernel import MN_RO_ROUTE_TABLE, RT_PROTO_RO
from nfq_mip6.dataplane.ro_bpf import OBJECT_PATH
from nfq_mip6.testbed.ro_lab import CN, COA, HOA, RoLab

pytestmark = pytest.mark.netns


@pytest.fixture
def lab() -> Iterator[RoLab]:
    if not OBJECT_PATH.is_file():
        pytest.fail(f"{OBJECT_PATH} not built: run scripts/build-bpf.sh")
    lab = RoLab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def test_home_address_traffic_crosses_the_router_with_rh2_and_hao(lab: RoLab) -> None:
    assert not lab.ping(lab.cn, HOA)  # the router has no route to the home prefix
    lab.bind()
    capture = subprocess.Popen(
        ["ip", "netns", "exec", lab.router, "tcpdump", "-l", "-nv", "-c", "4", "-i", "rm0",
         "icmp6 or ip6[6] == 43 or ip6[6] == 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert capture.stderr is not None
        capture.stderr.readline()  # "listening on rm0 ...": the capture runs
        assert lab.ping(lab.cn, HOA)
        out, _ = capture.communicate(timeout=10)
    finally:
        capture.kill()
    assert f"{CN} > {COA}: RT6" in out and f"[0]{HOA}" in out
    assert f"{COA} > {CN}: DSTOPT" in out and f"homeaddr: {HOA}" in out
    # the applications see home-address traffic: the CN's socket talks to the HoA
    assert lab.ping(lab.mn, CN, "-I", HOA)
    cn_counters = lab.adapter("cn", "keep")["counters"]
    assert isinstance(cn_counters, dict)
    assert cn_counters["out_rewritten"] >= 2 and cn_counters["in_rewritten"] >= 2
    assert cn_counters["in_errors"] == 0 and cn_counters["out_errors"] == 0


def test_full_size_packets_and_tcp_both_ways(lab: RoLab) -> None:
    lab.bind()
    routes = lab.sh(lab.cn, "ip", "-6", "route", "show", f"{HOA}/128").stdout
    assert "mtu 1476" in routes and f"proto {RT_PROTO_RO}" in routes
    mn_route = lab.sh(lab.mn, "ip", "-6", "route", "show", "table", str(MN_RO_ROUTE_TABLE)).stdout
    assert f"src {HOA}" in mn_route and "mtu 1476" in mn_route
    # 1452 octets of ICMPv6 data = a 1500-octet packet before the 24-octet insert
    assert lab.ping(lab.cn, HOA, "-s", "1452", "-M", "dont")
    assert lab.ping(lab.mn, CN, "-s", "1452", "-I", HOA)
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.mn, "iperf3", "-s", "-1", "-B", HOA],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for reverse in ([], ["-R"]):
            done = subprocess.run(
                ["ip", "netns", "exec", lab.cn, "iperf3", "-c", HOA, "-n", "4M", "-J",
                 "--connect-timeout", "3000", *reverse],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if done.returncode != 0 and "busy" in done.stdout:
                continue
            result = json.loads(done.stdout)
            assert "error" not in result, result.get("error")
            assert result["end"]["sum_sent"]["bytes"] >= 4 * 1024 * 1024
            assert result["end"]["sum_received"]["bytes"] > 1024 * 1024
            if not reverse:  # -1: the server serves one test; start it again for -R
                server.wait(timeout=10)
                server = subprocess.Popen(
                    ["ip", "netns", "exec", lab.mn, "iperf3", "-s", "-1", "-B", HOA],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                lab.sh(lab.mn, "sleep", "0.5")
    finally:
        server.kill()
    counters = lab.adapter("mn", "keep")["counters"]
    assert isinstance(counters, dict)
    assert counters["out_errors"] == 0 and counters["in_errors"] == 0


def test_restart_adopts_the_map_and_a_clean_stop_removes_everything(lab: RoLab) -> None:
    lab.bind()
    again = lab.adapter("cn", "keep")
    assert again["start"] == "adopted"
    assert again["bindings"] == {f"{HOA} {CN}": COA}
    assert lab.ping(lab.cn, HOA)
    # a restarted agent reconciles with its persisted bindings: a new CoA, a stale entry gone
    other = "2001:db8:a::200"
    lab.adapter("cn", "install", other, CN, COA)
    after = lab.adapter("cn", "reconcile", json.dumps([[HOA, CN, COA]]))
    assert after["bindings"] == {f"{HOA} {CN}": COA}
    assert other not in lab.sh(lab.cn, "ip", "-6", "route", "show").stdout
    lab.adapter("cn", "stop")
    assert "bpf" not in lab.sh(lab.cn, "tc", "filter", "show", "dev", "cn0", "egress").stdout
    assert HOA not in lab.sh(lab.cn, "ip", "-6", "route", "show").stdout
    assert not lab.ping(lab.cn, HOA)
    lab.adapter("mn", "stop")
    assert not lab.sh(lab.mn, "ip", "-6", "rule", "show", "to", f"{CN}/128").stdout.strip()
    assert IPv6Address(HOA)  # the HoA itself stays (it is not the data path's)
