"""Route optimization at kernel speed: the tc BPF data path with the real agents.

HA, MN and CN agents on the HOWTO test bed (``ro_datapath = "auto"``, which loads the tc
programs here), the MN on visitnet and bound at the CN. What a user observes:

* on visitnet the CN's packets go to the CoA with an RH2 and the MN's come from the CoA with
  an HAO, while the applications talk to the home address (ping, TCP, UDP: a server bound
  to ``::`` answers from the HoA);
* in steady state no data packet is queued to user space at the CN (the kernel's NFQUEUE
  packet IDs do not move), and at the MN only the hashlimit sample that starts return
  routability (at most one per second and flow);
* 1500-octet packets cross both ways (host routes with the MTU less the 24-octet header);
* an HAO naming a home address without a binding still gets Binding Error 1 (the program
  leaves it to the NFQUEUE slow path);
* ``kill -9`` of the CN agent: pings sent while it is down all come back; the restarted
  agent adopts the programs' map (``adopted``) and keeps one entry;
* without CAP_BPF / CAP_SYS_ADMIN the CN agent falls back to NFQUEUE, says why, and route
  optimization still works.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import control_answers, terminate
from test_journey import reachable
from test_journey_ro import CN_CONFIG, HA_CONFIG, MN_CONFIG, both_ends_bound
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.dataplane.ro_bpf import OBJECT_PATH
from nfq_mip6.testbed import Node, Testbed, care_of_address
from nfq_mip6.testbed.topology import CN_ADDRESS, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

COA = care_of_address("visitnet")
UNBOUND_HOME = "fec0:106:2700::99"


UDP_ECHO_SERVER = """
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", 7007))
print("ready", flush=True)
data, peer = s.recvfrom(100)
s.sendto(data, peer)
"""
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello", (sys.argv[1], 7007))
data, peer = s.recvfrom(100)
print(peer[0], data.decode())
"""


def queued_ids(node: Node) -> int:
    """Sum of the last packet IDs of the namespace's NFQUEUE queues: grows by one per
    packet queued to user space (``/proc/net/netfilter/nfnetlink_queue``)."""
    text = node.run(["cat", "/proc/net/netfilter/nfnetlink_queue"]).stdout
    return sum(int(line.split()[7]) for line in text.splitlines() if line.strip())


def ro_datapath(socket: Path) -> dict[str, Any]:
    answer: dict[str, Any] = request(socket, {"cmd": "stats"})["ro_datapath"]
    return answer


@contextlib.contextmanager
def agent_without_bpf_capabilities(node: Node, config: Path, socket: Path) -> Iterator[None]:
    """The CN agent as root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN."""
    log_path = socket.with_suffix(".log")
    drop = "-bpf,-perfmon,-sys_admin"
    with log_path.open("w") as log:
        proc = node.popen(
            ["env", f"NFQ_MIP6_AGENT__STATE_DIR={socket.with_suffix('.state')}",
             "setpriv", "--bounding-set", drop, "--inh-caps", drop,
             sys.executable, "-m", "nfq_mip6", "run", "--config", str(config),
             "--control-socket", str(socket)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: control_answers(socket) or proc.poll() is not None, 15.0)
        assert proc.poll() is None, log_path.read_text()
        yield
    finally:
        terminate(proc)


def send_hao_packet(mn: Node, home_address: str) -> None:
    """UDP CoA -> CN with an HAO naming ``home_address`` (a raw packet from the MN)."""
    script = (
        "import socket, sys\n"
        "from ipaddress import IPv6Address as A\n"
        "from nfq_mip6.wire import build_ipv6_packet\n"
        "from nfq_mip6.wire.checksum import pseudo_header_checksum\n"
        "hoa, coa, cn = (A(a) for a in sys.argv[1:4])\n"
        "udp = bytearray(b'\\x30\\x39\\x00\\x09\\x00\\x0c\\x00\\x00data')\n"
        "udp[6:8] = pseudo_header_checksum(hoa, cn, 17, bytes(udp)).to_bytes(2, 'big')\n"
        "packet = build_ipv6_packet(coa, cn, 17, bytes(udp), home_address=hoa)\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)\n"
        "s.sendto(packet, (str(cn), 0))\n"
    )
    mn.run([sys.executable, "-c", script, home_address, COA, CN_ADDRESS])


def test_route_optimization_in_tc_bpf_with_real_agents(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    if not OBJECT_PATH.is_file():
        pytest.fail(f"{OBJECT_PATH} not built: run scripts/build-bpf.sh")
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    sockets = {name: tmp_path / f"{name}.sock" for name in ("ha", "mn", "cn")}
    converged = functools.partial(both_ends_bound, cn, sockets, COA)
    with running_agent(ha, HA_CONFIG, sockets["ha"]):
        with running_agent(mn, MN_CONFIG, sockets["mn"]) as mn_agent:
            steady_state_crash_and_adoption(bed, sockets, tmp_path, mn_agent)
        # Without the capabilities BPF needs: NFQUEUE, with the reason, and RO still works
        # (a fresh MN agent: the one above gave up RO with this CN when the CN stopped).
        with (
            running_agent(mn, MN_CONFIG, sockets["mn"]),
            agent_without_bpf_capabilities(cn, CN_CONFIG, sockets["cn"]),
        ):
            # the new MN agent adopted the killed one's programs and emptied the map
            mn_datapath = ro_datapath(sockets["mn"])
            assert mn_datapath["adopted"] is True and mn_datapath["datapath"] == "bpf"
            datapath = ro_datapath(sockets["cn"])
            assert datapath["datapath"] == "nfqueue", datapath
            assert "not permitted" in datapath["reason"].lower(), datapath
            status = cn.run(
                [sys.executable, "-m", "nfq_mip6", "ro", "status",
                 "--control-socket", str(sockets["cn"])]
            ).stdout  # fmt: skip
            assert "RO data path              : nfqueue (tc BPF unavailable" in status
            assert wait_until(lambda: reachable(cn), 15.0), "CN cannot reach the MN away"
            assert wait_until(converged, 30.0), request(sockets["cn"], {"cmd": "cache"})


def steady_state_crash_and_adoption(
    bed: Testbed, sockets: dict[str, Path], tmp_path: Path, mn_agent: subprocess.Popen[str]
) -> None:
    """Steady state, BE 1 for an unbound HAO, kill -9 of the CN agent, adoption, kill -9 of
    the MN agent, clean stop of the CN."""
    mn, cn = bed.node("mn"), bed.node("cn")
    converged = functools.partial(both_ends_bound, cn, sockets, COA)
    with running_agent(cn, CN_CONFIG, sockets["cn"]) as agent:
        bed.move("visitnet")
        assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN away"
        assert wait_until(converged, 20.0), request(sockets["cn"], {"cmd": "cache"})
        for socket in (sockets["cn"], sockets["mn"]):
            datapath = ro_datapath(socket)
            assert datapath["datapath"] == "bpf", datapath
            entry = {"home_address": MN_HOME_ADDRESS, "peer": CN_ADDRESS, "care_of_address": COA}
            assert entry in datapath["bindings"], (socket.name, datapath["bindings"])

        # Applications use the home address; the wire carries RH2 / HAO; nothing queued.
        server = mn.popen(["iperf3", "-s", "-1", "-B", MN_HOME_ADDRESS])
        try:
            queued_before = {name: queued_ids(bed.node(name)) for name in ("cn", "mn")}
            with bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap:
                wait_until(lambda: ":5201" in mn.run(["ss", "-ltn"]).stdout, 5.0)
                tcp = cn.run(
                    ["iperf3", "-c", MN_HOME_ADDRESS, "-n", "2M", "--connect-timeout", "3000"],
                    check=False, timeout=60,
                )  # fmt: skip
                ping = cn.run(["ping", "-6", "-c", "5", "-i", "0.1", MN_HOME_ADDRESS])
                big_down = cn.run(["ping", "-6", "-c", "3", "-s", "1452", MN_HOME_ADDRESS])
                big_up = mn.run(
                    ["ping", "-6", "-c", "3", "-s", "1452", "-I", MN_HOME_ADDRESS, CN_ADDRESS]
                )
            queued = {
                name: queued_ids(bed.node(name)) - before for name, before in queued_before.items()
            }
        finally:
            server.kill()
            server.wait()
        assert tcp.returncode == 0, tcp.stdout + tcp.stderr
        assert " 0% packet loss" in ping.stdout
        assert " 0% packet loss" in big_down.stdout and " 0% packet loss" in big_up.stdout
        rh2, hao, plain_home = wire_counts(pcap)
        assert rh2 >= 20 and hao >= 20 and plain_home == 0, (rh2, hao, plain_home)
        print(f"\nqueued to user space during TCP + pings: {queued}")
        assert queued["cn"] == 0
        assert queued["mn"] <= 10  # MHs only: RO data skips the RR sample (mark from mn_ingress)
        counters = ro_datapath(sockets["cn"])["counters"]
        assert counters["out_rewritten"] >= 20 and counters["in_rewritten"] >= 20
        assert counters["out_errors"] == 0 and counters["in_errors"] == 0

        # UDP: a server bound to :: answers from the home address (the MN's route has
        # `src HoA`), the CN's socket sees the HoA.
        echo = mn.popen([sys.executable, "-c", UDP_ECHO_SERVER])
        try:
            assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
            answer = cn.run([sys.executable, "-c", UDP_CLIENT, MN_HOME_ADDRESS]).stdout
        finally:
            echo.kill()
            echo.wait()
        assert answer.split() == [MN_HOME_ADDRESS, "hello"], answer

        # An HAO without a binding: left to the slow path, which answers BE 1.
        with bed.capture("visitnet", tmp_path / "be.pcap") as pcap:
            send_hao_packet(mn, UNBOUND_HOME)
            mn.run(["ping", "-6", "-c", "2", "-i", "0.2", CN_ADDRESS])  # the answer's time
        assert binding_errors(pcap) >= 1
        assert ro_datapath(sockets["cn"])["counters"]["in_punted"] >= 1

        # kill -9: the programs and the map stay; nothing sent while it is down is lost.
        agent.kill()
        agent.wait(timeout=10)
        down = cn.run(["ping", "-6", "-c", "100", "-i", "0.02", "-q", MN_HOME_ADDRESS])
        print(f"CN agent down, 100 pings: {down.stdout.strip().splitlines()[-2]}")
        assert " 0% packet loss" in down.stdout
    with running_agent(cn, CN_CONFIG, sockets["cn"]):
        datapath = ro_datapath(sockets["cn"])
        assert datapath["adopted"] is True and datapath["entries"] == 1, datapath
        assert wait_until(converged, 20.0)
        assert ro_datapath(sockets["cn"])["entries"] == 1
        # kill -9 of the MN agent: its programs and map stay, nothing is queued for RO data
        mn_agent.kill()
        mn_agent.wait(timeout=10)
        down = cn.run(["ping", "-6", "-c", "100", "-i", "0.02", "-q", MN_HOME_ADDRESS])
        print(f"MN agent down, 100 pings: {down.stdout.strip().splitlines()[-2]}")
        assert " 0% packet loss" in down.stdout
    # a clean stop removed programs, entries and the host route
    assert "bpf" not in cn.run(["tc", "filter", "show", "dev", "eth0", "egress"]).stdout
    assert MN_HOME_ADDRESS not in cn.run(["ip", "-6", "route", "show"]).stdout


def wire_counts(pcap: Path) -> tuple[int, int, int]:
    """(CN -> CoA with RH2 = HoA, CoA -> CN with HAO = HoA, plain CN <-> HoA) frames."""
    from scapy.layers.inet6 import HAO, IPv6, IPv6ExtHdrRouting
    from scapy.utils import rdpcap

    rh2 = hao = plain = 0
    for frame in rdpcap(str(pcap)):
        if IPv6 not in frame:
            continue
        ip = frame[IPv6]
        if ip.src == CN_ADDRESS and ip.dst == COA and IPv6ExtHdrRouting in frame:
            rh2 += frame[IPv6ExtHdrRouting].addresses == [MN_HOME_ADDRESS]
        elif ip.src == COA and ip.dst == CN_ADDRESS and HAO in frame:
            hao += frame[HAO].hoa == MN_HOME_ADDRESS
        elif {ip.src, ip.dst} == {CN_ADDRESS, MN_HOME_ADDRESS}:
            plain += 1
    return rh2, hao, plain


def binding_errors(pcap: Path) -> int:
    """Binding Errors status 1 from the CN for the unbound home address in a capture."""
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    from nfq_mip6.wire import Accepted, BindingError, parse_and_validate_mh

    found = 0
    for frame in rdpcap(str(pcap)):
        if IPv6 not in frame or frame[IPv6].src != CN_ADDRESS:
            continue
        verdict = parse_and_validate_mh(bytes(frame[IPv6]))
        if isinstance(verdict, Accepted) and isinstance(verdict.message, BindingError):
            found += verdict.message.status == 1 and str(verdict.message.home_address) == (
                UNBOUND_HOME
            )
    return found
