"""The Linux Mobile IPv6 HOWTO §5 journey, end to end, with real agents on both sides.

HA agent = ``nfq-mip6 run --config deploy/network-mip6.conf.ha`` in the HA namespace, MN agent
= ``nfq-mip6 run --config deploy/network-mip6.conf.mn`` in the MN namespace, each with its own
control socket. The MN starts at home, travels to visitnet (§5.2), on to visitnet2 (§5.5)
without restarting anything, and returns home (§5.6), while the CN pings the home address at
100 packets per second. Handover times and lost packets are printed, never asserted.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_mobile_node import mobility_headers, running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import HA_ADDRESS, MN_HOME_ADDRESS, MN_MAC
from nfq_mip6.wire import BindingAck, BindingUpdate
from tests.support.howto import HA, HOA

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HA_CONFIG = REPO / "deploy" / "network-mip6.conf.ha"
MN_CONFIG = REPO / "deploy" / "network-mip6.conf.mn"
MIPDIAG = (sys.executable, "-c", "from nfq_mip6.cli import mipdiag_main; mipdiag_main()")


def mipdiag(option: str, socket_path: Path) -> str:
    """The operator's view (HOWTO §5.2): ``mipdiag -c`` / ``-l`` against an agent."""
    done = subprocess.run(
        [*MIPDIAG, option, "--control-socket", str(socket_path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


def cache_line(ha_socket: Path) -> str | None:
    """The HoA's line of ``mipdiag -c`` on the HA, or None when the cache has none."""
    for line in mipdiag("-c", ha_socket).splitlines():
        if line.startswith(MN_HOME_ADDRESS + " "):
            return line
    return None


def cache_shows(ha_socket: Path, coa: str) -> bool:
    return coa in (cache_line(ha_socket) or "")


def home_address_announced(pcap: Path) -> bool:
    """An unsolicited NA (override) for the HoA from the MN's MAC in a capture."""
    from scapy.layers.inet6 import ICMPv6ND_NA
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    return any(
        ICMPv6ND_NA in frame
        and frame[ICMPv6ND_NA].tgt == MN_HOME_ADDRESS
        and frame[ICMPv6ND_NA].O == 1
        and frame[Ether].src == MN_MAC
        for frame in rdpcap(str(pcap))
    )


def registration_on_the_wire(pcap: Path) -> bool:
    messages = mobility_headers(pcap)
    bus = [p for p, m in messages if isinstance(m, BindingUpdate)]
    bas = [p for p, m in messages if isinstance(m, BindingAck)]
    return any(p.dst == HA and p.home_address == HOA for p in bus) and any(
        p.src == HA and p.rh2_address == HOA for p in bas
    )


def reachable(cn: Node) -> bool:
    done = cn.run(["ping", "-6", "-n", "-c", "1", "-W", "1", MN_HOME_ADDRESS], check=False)
    return done.returncode == 0


def test_howto_journey_home_visitnet_visitnet2_home(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    ha_socket, mn_socket = tmp_path / "ha.sock", tmp_path / "mn.sock"
    report: list[str] = []
    with running_agent(ha, HA_CONFIG, ha_socket), running_agent(mn, MN_CONFIG, mn_socket):
        assert wait_until(lambda: reachable(cn), 10.0), "CN cannot ping the MN at home"
        stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100)
        stream.start()
        started = time.monotonic()
        moves: list[tuple[str, float, float]] = []  # (link, moved at, registered at)
        try:
            for link in ("visitnet", "visitnet2", "home"):
                time.sleep(0.5)
                if link == "visitnet":
                    capture = bed.capture("visitnet", tmp_path / "visitnet.pcap")
                else:
                    capture = bed.capture(
                        "homenet" if link == "home" else link, tmp_path / f"{link}.pcap"
                    )
                with capture as pcap:
                    moved_at = time.monotonic()
                    bed.move(link)
                    if link == "home":
                        # HOWTO §5.6: the HA's binding cache is flushed (empty).
                        done = wait_until(lambda: cache_line(ha_socket) is None, 15.0)
                        assert done, mipdiag("-c", ha_socket)
                    else:
                        coa = care_of_address(link)
                        # HOWTO §5.2/§5.5: mipdiag -c on the HA shows HoA -> the new CoA.
                        done = wait_until(functools.partial(cache_shows, ha_socket, coa), 15.0)
                        assert done, mipdiag("-c", ha_socket)
                        listing = mipdiag("-l", mn_socket)
                        assert f"care-of address: {coa}" in listing, listing
                        assert "state: 1" in listing or wait_until(
                            lambda: "state: 1" in mipdiag("-l", mn_socket), 5.0
                        )
                    registered_at = time.monotonic()
                    # data through the tunnel (or directly, at home) once registered
                    assert wait_until(lambda: reachable(cn), 10.0), f"CN lost the MN at {link}"
                    if link == "home":
                        # §11.5.5: the MN announces its HoA again (unsolicited NA, O = 1)
                        announced = wait_until(lambda: home_address_announced(pcap), 5.0)
                        assert announced, "no NA for the HoA on the home link"
                    if link == "visitnet":
                        # §11.7.1 BU (CoA -> HA, HAO) and §6.1.8 BA (HA -> CoA, RH2) on the wire
                        seen = wait_until(lambda: registration_on_the_wire(pcap), 5.0)
                        assert seen, mobility_headers(pcap)
                moves.append((link, moved_at, registered_at))
            time.sleep(0.5)
        finally:
            result = stream.stop()
            stopped = time.monotonic()
        # back home: the HA has no binding and the MN answers directly
        assert cache_line(ha_socket) is None
        assert reachable(cn)
        mn_stats = request(mn_socket, {"cmd": "stats"})
        assert mn_stats["counters"]["NBindAcksRcvd"] >= 3
        # HOWTO §5.3: the kernel fast path tunnelled the CN's pings both ways
        counters = mn_stats["counters"]
        assert counters["NEncapsulations"] > 0 and counters["NDecapsulations"] > 0, counters
        tunnel_counters = " ".join(mipdiag("-s", mn_socket).split("\n")[1:3])

    # Report (printed, not asserted): handover per move and the 100 pps stream's losses.
    # Each outage is attributed to the last move made before it, estimating sequence numbers
    # from the stream's actual rate.
    rate = result.sent / max(1e-3, stopped - started)
    move_seqs = [int((moved_at - started) * rate) for _link, moved_at, _r in moves]
    lost = [0] * len(moves)
    for outage in result.outages:
        index = max(
            (i for i, seq in enumerate(move_seqs) if seq <= outage.first_seq + 20), default=0
        )
        lost[index] += outage.last_seq - outage.first_seq + 1
    for (link, moved_at, registered_at), count in zip(moves, lost, strict=True):
        report.append(
            f"move to {link}: registered after {1000 * (registered_at - moved_at):.0f} ms "
            f"(polling mipdiag), {count} ping(s) lost at 100 pps"
        )
    report.append(f"ping stream: {result.summary()}")
    report.append(f"MN mipdiag -s: {' '.join(tunnel_counters.split())}")
    print("\nHOWTO §5 journey:\n  " + "\n  ".join(report))


def test_home_agent_found_by_dhaad(testbed_home: Testbed, tmp_path: Path) -> None:
    """RFC 6275 §11.4.1: without HOMEAGENT the MN asks the home agents anycast address of its
    home prefix from the visited link, then registers with the HA that answered."""
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    config = tmp_path / "mn-dhaad.toml"
    config.write_text(
        'role = "mn"\ninterface = "eth0"\n[mn]\nhome_address = "fec0:106:2700::4/64"\n'
        "require_authentication = false\n"  # the HOWTO HA (legacy file) has no keys
    )
    ha_socket, mn_socket = tmp_path / "ha.sock", tmp_path / "mn.sock"
    with running_agent(ha, HA_CONFIG, ha_socket), running_agent(mn, config, mn_socket):
        bed.move("visitnet")
        coa = care_of_address("visitnet")
        done = wait_until(functools.partial(cache_shows, ha_socket, coa), 15.0)
        assert done, mipdiag("-c", ha_socket)
        events = [
            what for _t, what in request(mn_socket, {"cmd": "stats"})["mobile_node"]["events"]
        ]
        assert any(what.startswith("dhaad request") for what in events), events
        assert any(what.startswith("dhaad reply") for what in events), events
        assert f"Recipient CN: {HA_ADDRESS}" in mipdiag("-l", mn_socket)
        assert wait_until(lambda: reachable(cn), 10.0)
