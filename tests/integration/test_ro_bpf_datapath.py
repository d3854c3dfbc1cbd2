"""The tc BPF route-optimization data path between real namespaces (no agents).

CN (2001:db8:c::2) ── router ── MN (CoA 2001:db8:f::2, HoA 2001:db8:a::100 on lo). The router
has no route to the home prefix, so the CN reaches the HoA only through route optimization.
The adapter (``BpfRouteOptimization``) runs in a short-lived process in each namespace, as
the agent would; the filters it attaches and its map outlive that process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address

import pytest

from nfq_mip6.dataplane.kernel import MN_RO_ROUTE_TABLE, RT_PROTO_RO
from nfq_mip6.dataplane.ro_bpf import OBJECT_PATH
from nfq_mip6.testbed.ro_lab import CN, COA, HOA, RoLab

pytestmark = pytest.mark.netns

UDP_PORT = 7000
# One receiver per test: prints "bound", then per datagram [length, source, content ok].
UDP_RECEIVER = """
import json, socket, sys
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.bind((address, port))
sock.settimeout(5)
print("bound", flush=True)
got = []
try:
    while len(got) < count:
        data, peer = sock.recvfrom(65535)
        got.append([len(data), peer[0], data == bytes([len(got)]) * len(data)])
except TimeoutError:
    pass
print(json.dumps(got))
"""
# One send() of `count` datagrams of `size` octets with UDP_SEGMENT (103): the kernel builds a
# single UDP GSO super-packet, which reaches tc egress whole (veth segments nothing).
UDP_GSO_SENDER = """
import socket, sys
source, target, port, size, count = sys.argv[1:3] + [int(a) for a in sys.argv[3:6]]
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.bind((source, 0))
sock.connect((target, port))
sock.setsockopt(socket.SOL_UDP, 103, size)
print(sock.send(b"".join(bytes([i]) * size for i in range(count))))
"""


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


def _serve_once(lab: RoLab) -> subprocess.Popen[bytes]:
    """An iperf3 server for one test on the MN's home address, returned once it listens (a
    client that connects earlier is refused)."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.mn, "iperf3", "-s", "-1", "-B", HOA],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10.0
    while not lab.sh(lab.mn, "ss", "-Htln", "sport = :5201").stdout.strip():
        assert server.poll() is None and time.monotonic() < deadline, "iperf3 server did not start"
        time.sleep(0.02)
    return server


def test_full_size_packets_and_tcp_both_ways(lab: RoLab) -> None:
    lab.bind()
    routes = lab.sh(lab.cn, "ip", "-6", "route", "show", f"{HOA}/128").stdout
    assert "mtu 1476" in routes and f"proto {RT_PROTO_RO}" in routes
    mn_route = lab.sh(lab.mn, "ip", "-6", "route", "show", "table", str(MN_RO_ROUTE_TABLE)).stdout
    assert f"src {HOA}" in mn_route and "mtu 1476" in mn_route
    # 1452 octets of ICMPv6 data = a 1500-octet packet before the 24-octet insert
    assert lab.ping(lab.cn, HOA, "-s", "1452", "-M", "dont")
    assert lab.ping(lab.mn, CN, "-s", "1452", "-I", HOA)
    server = _serve_once(lab)
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
                server = _serve_once(lab)
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


def udp_gso(lab: RoLab, sender: str, source: str, receiver: str, target: str) -> list[object]:
    """Send 8 datagrams of 1428 octets (1500 with the IPv6 header, the UDP header and the
    24-octet RH2 / HAO: the most the binding's route MTU of 1476 lets a sender choose) as one
    UDP GSO send; what the receiver got."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", receiver, sys.executable, "-c", UDP_RECEIVER, target,
         str(UDP_PORT), "8"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "bound"
        sent = lab.sh(sender, sys.executable, "-c", UDP_GSO_SENDER, source, target,
                      str(UDP_PORT), "1428", "8")  # fmt: skip
        assert sent.stdout.strip() == str(8 * 1428)
        out, _ = proc.communicate(timeout=15)
    finally:
        proc.kill()
    got: list[object] = json.loads(out)
    return got


def test_udp_gso_super_packets_cross_both_ways(lab: RoLab) -> None:
    lab.bind()
    # the super-packets reach the other end whole: the ingress program strips the header of
    # a UDP GSO packet, the receiving socket splits it into the datagrams
    assert udp_gso(lab, lab.cn, CN, lab.mn, HOA) == [[1428, CN, True]] * 8
    assert udp_gso(lab, lab.mn, HOA, lab.cn, CN) == [[1428, HOA, True]] * 8
    # without checksum offload on the router's ports it segments the super-packets and
    # computes the UDP checksums, which the receivers verify (with the home address)
    for dev in ("rc0", "rm0"):
        lab.sh(lab.router, "ethtool", "-K", dev, "tx", "off")
    for dev, sender, source, receiver, target, header in (
        ("rm0", lab.cn, CN, lab.mn, HOA, "ip6[6] == 43"),
        ("rc0", lab.mn, HOA, lab.cn, CN, "ip6[6] == 60"),
    ):
        capture = subprocess.Popen(
            ["ip", "netns", "exec", lab.router, "tcpdump", "-l", "-nv", "-c", "8", "-i", dev,
             f"{header} and ip6[64 + 2:2] == {UDP_PORT}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert capture.stderr is not None
            capture.stderr.readline()  # "listening on ...": the capture runs
            assert udp_gso(lab, sender, source, receiver, target) == [[1428, source, True]] * 8
            wire, _ = capture.communicate(timeout=10)
        finally:
            capture.kill()
        packets = [line for line in wire.splitlines() if "payload length" in line]
        assert len(packets) == 8, wire
        # 40 + 1460 = 1500 octets each: the route MTU left exactly room for the 24 octets
        assert all("payload length: 1460" in line for line in packets), wire
        if dev == "rm0":
            assert all("RT6 (len=2, type=2, segleft=1" in line for line in packets), wire
            assert all(f"[0]{HOA}" in line and "[udp sum ok]" in line for line in packets), wire
        else:  # tcpdump checks an HAO packet's checksum with the CoA: only the header here
            assert all(f"homeaddr: {HOA}" in line for line in packets), wire
    for role in ("cn", "mn"):
        counters = lab.adapter(role, "keep")["counters"]
        assert isinstance(counters, dict)
        assert counters["out_errors"] == 0 and counters["in_errors"] == 0, counters
