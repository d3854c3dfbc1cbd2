"""The Mobile Node agent on the real kernel (RFC 6275 §11), against a static Home Agent.

The HA side here is plain kernel configuration made with ``ip`` in the HA namespace (proxy
NDP, a seg6 encap.red route to the CoA, End.DX6 for the reverse tunnel) plus one Binding
Acknowledgement built with :mod:`nfq_mip6.wire` and sent from the HA namespace: the MN agent
is exercised alone, independently of the Home Agent runtime (``test_journey.py`` runs both).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    control_answers,
    terminate,
    wait_until,  # re-exported: other tests import it from here
)

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import HA_ADDRESS, MN_HOME_ADDRESS
from nfq_mip6.wire import (
    BAFlags,
    BindingAck,
    BindingUpdate,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_ipv6,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from nfq_mip6.wire.validate import Accepted
from tests.support.howto import HA, HOA

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
MN_CONFIG = REPO / "deploy" / "network-mip6.conf.mn"
VISIT_COA = care_of_address("visitnet")
DEFAULT_RULES = ["0:", "from", "all", "lookup", "local", "32766:", "from", "all", "lookup", "main"]
DX6_TAIL = ("nh6", "::", "dev", "eth0", "table", "100")


@contextlib.contextmanager
def running_agent(node: Node, config: Path, socket_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``nfq-mip6 run`` in ``node``'s namespace until the block ends (SIGTERM, then kill)."""
    log_path = socket_path.with_suffix(".log")
    state_dir = socket_path.with_suffix(".state")  # persistence private to this test
    with log_path.open("w") as log:
        proc = node.popen(
            [
                "env",
                f"NFQ_MIP6_AGENT__STATE_DIR={state_dir}",
                sys.executable,
                "-m",
                "nfq_mip6",
                "run",
                "--config",
                str(config),
                "--control-socket",
                str(socket_path),
                "--log-level",
                "INFO",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: control_answers(socket_path) or proc.poll() is not None, 15.0)
        if proc.poll() is not None:
            raise AssertionError(f"agent exited {proc.returncode}: {log_path.read_text()}")
        yield proc
    finally:
        terminate(proc)
        # shown by pytest only when the test fails
        print(f"--- {log_path.name} (last lines) ---")
        print("\n".join(log_path.read_text().splitlines()[-40:]))


def bul(socket_path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = request(socket_path, {"cmd": "bul"})["entries"]
    return entries


def mobility_headers(pcap: Path) -> list[tuple[Any, Any]]:
    """(ParsedPacket, MobilityMessage) of every valid MH packet in a capture."""
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    found = []
    for frame in rdpcap(str(pcap)):
        if IPv6 not in frame:
            continue
        raw = bytes(frame[IPv6])
        verdict = parse_and_validate_mh(raw)
        if isinstance(verdict, Accepted):
            found.append((parse_ipv6(raw), verdict.message))
    return found


@contextlib.contextmanager
def static_home_agent(node: Node, care_of: IPv6Address) -> Iterator[None]:
    """The HA's kernel fast path for one binding, made by hand (docs/kernel-notes.md §4–§6)."""
    commands = [
        ["sysctl", "-qw", "net.ipv6.neigh.eth0.proxy_delay=0"],
        f"ip -6 neigh add proxy {HOA} dev eth0".split(),
        f"ip -6 route add {HOA}/128 encap seg6 mode encap.red segs {care_of} dev eth0".split(),
        f"ip sr tunsrc set {HA}".split(),
        f"ip -6 rule add pref 100 to {HA}/128 ipproto 41 lookup 100".split(),
        ["ip", "-6", "rule", "add", "pref", "1000", "lookup", "local"],
        ["ip", "-6", "rule", "del", "pref", "0", "lookup", "local"],
        [*f"ip -6 route add {HA}/128 encap seg6local action End.DX6".split(), *DX6_TAIL],
    ]
    try:
        for command in commands:
            node.run(command)
        # the HA advertises the proxied HoA (RFC 6275 §10.4.1: unsolicited NA, O = 1)
        node.run(["ip", "-6", "neigh", "flush", "dev", "eth0"], check=False)
        yield
    finally:
        for command in (
            ["ip", "-6", "neigh", "del", "proxy", str(HOA), "dev", "eth0"],
            ["ip", "-6", "route", "del", f"{HOA}/128"],
            ["ip", "sr", "tunsrc", "set", "::"],
            ["ip", "-6", "rule", "del", "pref", "100"],
            ["ip", "-6", "rule", "add", "pref", "0", "lookup", "local"],
            ["ip", "-6", "rule", "del", "pref", "1000", "lookup", "local"],
            ["ip", "-6", "route", "flush", "table", "100"],
        ):
            node.run(command, check=False)


def send_binding_ack(node: Node, sequence: int, care_of: IPv6Address, lifetime: int) -> None:
    """A BA (status 0) from the HA to the CoA with an RH2 = HoA (§6.1.8, §9.5.4)."""
    ba = BindingAck(0, BAFlags.NONE, sequence, lifetime)
    mh = build_mh(ba, HA, HOA)
    packet = build_ipv6_packet(HA, care_of, IPPROTO_MH, mh, rh2_address=HOA)
    script = (
        "import socket,sys;s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_RAW);"
        "s.setsockopt(socket.IPPROTO_IPV6,36,1);p=bytes.fromhex(sys.argv[1]);"
        "s.sendto(p,(sys.argv[2],0))"
    )
    node.run([sys.executable, "-c", script, packet.hex(), str(care_of)])


def reachable(cn: Node) -> bool:
    """One echo request from ``cn`` to the HoA is answered within a second."""
    done = cn.run(["ping", "-6", "-n", "-c", "1", "-W", "1", MN_HOME_ADDRESS], check=False)
    return done.returncode == 0


def kernel_state(mn: Node) -> dict[str, str]:
    return {
        "rules": mn.run(["ip", "-6", "rule"]).stdout,
        # a table with no routes left does not exist: empty output
        "tunnel": mn.run(["ip", "-6", "route", "show", "table", "206"], check=False).stdout,
        "decap": mn.run(["ip", "-6", "route", "show", "table", "207"], check=False).stdout,
        "lo": mn.run(["ip", "-6", "addr", "show", "dev", "lo"]).stdout,
        "tunsrc": mn.run(["ip", "sr", "tunsrc", "show"]).stdout,
        "raw": mn.run(["ip6tables", "-w", "-t", "raw", "-S"]).stdout,
    }


def test_mobile_node_registers_tunnels_and_returns_home(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    control = tmp_path / "mn.sock"
    with running_agent(mn, MN_CONFIG, control):
        assert "NFQMIP6-MN" in kernel_state(mn)["raw"]
        # HOWTO §5.2: travel to visitnet; the agent solicits, gets the CoA, sends the BU.
        with bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap:
            bed.move("visitnet")
            assert wait_until(lambda: bool(bul(control)), 10.0), "no BUL entry after the move"
            time.sleep(0.2)
        entry = bul(control)[0]
        assert entry["care_of_address"] == VISIT_COA
        assert entry["recipient"] == HA_ADDRESS and entry["state"] == 0
        bus = [(p, m) for p, m in mobility_headers(pcap) if isinstance(m, BindingUpdate)]
        assert bus, "no Binding Update on the visited link"
        packet, message = bus[0]
        # §11.7.1: from the CoA to the HA, HAO = HoA, A and H set, Alternate CoA = the CoA
        assert (str(packet.src), packet.dst, packet.home_address) == (VISIT_COA, HA, HOA)
        assert message.flags & 0xC000 == 0xC000
        assert any(getattr(o, "address", None) == IPv6Address(VISIT_COA) for o in message.options)
        # Decapsulation for the CoA and the tunnel source are ready before the BA.
        assert wait_until(lambda: VISIT_COA in kernel_state(mn)["tunsrc"], 5.0)
        state = kernel_state(mn)
        assert "End.DT6" in state["decap"] and VISIT_COA in state["decap"]
        assert MN_HOME_ADDRESS in state["lo"] and VISIT_COA in state["tunsrc"]
        assert f"to {VISIT_COA} ipproto ipv6 lookup 207" in state["rules"]

        # The BA (with an RH2, which this kernel would drop) is taken from NFQUEUE.
        send_binding_ack(ha, int(entry["sequence"]), IPv6Address(VISIT_COA), 250)
        assert wait_until(lambda: bul(control)[0]["state"] == 1, 5.0), bul(control)
        assert bul(control)[0]["expires"] > 900
        # §11.3.1: the reverse tunnel carries data once the binding is acknowledged.
        state = kernel_state(mn)
        assert "encap.red" in state["tunnel"] and HA_ADDRESS in state["tunnel"]
        assert f"from {MN_HOME_ADDRESS} lookup 206" in state["rules"]
        stats = request(control, {"cmd": "stats"})
        assert stats["counters"]["NBindAcksRcvd"] == 1

        # Data through the tunnels: CN -> HA -> (encap.red) -> MN (End.DT6), and back.
        with static_home_agent(ha, IPv6Address(VISIT_COA)):
            # the first echo may wait for the home link's neighbour caches to learn that the
            # HA now answers for the HoA (proxy NDP); after that the tunnel carries them all
            assert wait_until(lambda: reachable(cn), 10.0), "no echo reply through the tunnel"
            done = cn.run(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", MN_HOME_ADDRESS])
            assert " 0% packet loss" in done.stdout, done.stdout

        # HOWTO §5.6: home again; tunnel gone, HoA back on eth0, de-registration BU sent.
        with bed.capture("homenet", tmp_path / "homenet.pcap") as pcap:
            bed.move("home")
            assert wait_until(
                lambda: (
                    MN_HOME_ADDRESS in mn.ipv6_addresses("eth0")
                    and "206" not in kernel_state(mn)["rules"]
                ),
                10.0,
            ), kernel_state(mn)
            assert wait_until(
                lambda: any(isinstance(m, BindingUpdate) for _p, m in mobility_headers(pcap)),
                5.0,
            )
        dereg = [(p, m) for p, m in mobility_headers(pcap) if isinstance(m, BindingUpdate)]
        packet, message = dereg[0]
        assert (packet.src, packet.dst, packet.home_address, message.lifetime) == (HOA, HA, None, 0)
        assert VISIT_COA not in mn.ipv6_addresses("eth0")  # HOWTO FAQ 6: stale CoA removed
        state = kernel_state(mn)
        assert state["tunnel"].strip() == "" and state["decap"].strip() == ""
        assert "0:\tfrom all lookup local" in state["rules"]
    # stop() removed the rules
    assert "NFQMIP6-MN" not in kernel_state(mn)["raw"]


def home_configuration(mn: Node) -> bool:
    """The MN's kernel as the test bed made it: HoA on eth0, no agent rules or tables."""
    state = kernel_state(mn)
    return (
        MN_HOME_ADDRESS in mn.ipv6_addresses("eth0")
        and MN_HOME_ADDRESS not in state["lo"]
        and state["rules"].split() == DEFAULT_RULES
        and state["tunnel"].strip() == ""
        and state["decap"].strip() == ""
        and "tunsrc addr ::" in state["tunsrc"]
    )


def test_stop_or_crash_while_away_leaves_no_trace(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    mn = bed.node("mn")
    # A clean stop while away: stop() removes everything and puts the HoA back on eth0.
    with running_agent(mn, MN_CONFIG, tmp_path / "first.sock") as _agent:
        bed.move("visitnet")
        assert wait_until(lambda: bool(bul(tmp_path / "first.sock")), 10.0)
        assert MN_HOME_ADDRESS in kernel_state(mn)["lo"]
    assert home_configuration(mn), kernel_state(mn)
    assert "NFQMIP6" not in kernel_state(mn)["raw"]
    # A crash while away leaves the kernel state behind; the next run, started at home,
    # recognises it and undoes it when it sees the home link.
    with running_agent(mn, MN_CONFIG, tmp_path / "second.sock") as agent:
        bed.move("visitnet2")
        assert wait_until(lambda: bool(bul(tmp_path / "second.sock")), 10.0)
        agent.kill()
        agent.wait()
    assert MN_HOME_ADDRESS in kernel_state(mn)["lo"]
    bed.move("home")
    with running_agent(mn, MN_CONFIG, tmp_path / "third.sock"):
        assert wait_until(lambda: home_configuration(mn), 10.0), kernel_state(mn)
    assert "NFQMIP6" not in kernel_state(mn)["raw"]


HA_CONFIG = REPO / "deploy" / "network-mip6.conf.ha"


def ha_cache_home_addresses(ha_socket: Path) -> list[str]:
    """``nfq-mip6 cache --json`` on the HA: the home addresses it holds bindings for."""
    answer = request(ha_socket, {"cmd": "cache"})
    return [str(row["home_address"]) for row in answer.get("bindings", [])]


def test_stale_binding_deregistered_when_the_agent_starts_at_home(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """§11.5.5: the MN agent is killed away from home, its state directory is lost (a fresh
    one), the MN comes home and the agent starts: it de-registers the binding the HA still
    holds, so the HA stops tunnelling the HoA away and the CN reaches the MN at home."""
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    ha_socket = tmp_path / "ha.sock"
    with running_agent(ha, HA_CONFIG, ha_socket):
        with running_agent(mn, MN_CONFIG, tmp_path / "crashed.sock") as agent:
            bed.move("visitnet")
            crashed = tmp_path / "crashed.sock"
            # acknowledged: the HA's binding is in force (its DAD done)
            registered = wait_until(lambda: any(row["state"] == 1 for row in bul(crashed)), 15.0)
            assert registered and MN_HOME_ADDRESS in ha_cache_home_addresses(ha_socket)
            agent.kill()
            agent.wait()
        bed.move("home")
        assert MN_HOME_ADDRESS in ha_cache_home_addresses(ha_socket)  # stale now
        restarted = tmp_path / "restarted.sock"  # another state directory: the BUL is lost
        with running_agent(mn, MN_CONFIG, restarted):
            emptied = wait_until(lambda: not ha_cache_home_addresses(ha_socket), 25.0)
            assert emptied, ha_cache_home_addresses(ha_socket)
            ping = ["ping", "-6", "-n", "-c", "1", "-W", "1", MN_HOME_ADDRESS]
            assert wait_until(lambda: cn.run(ping, check=False).returncode == 0, 10.0)
            stats = request(restarted, {"cmd": "stats"})
            assert stats["counters"]["NBindUpdatesSent"] >= 1


def test_echo_request_from_home_agent_with_rh2_answered_directly_with_hao(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """§11.3.1, §11.3.3, §9.3.1: away and registered, the HA's own Echo Request reaches the
    MN with an RH2; the Echo Reply leaves the CoA directly for the HA with a Home Address
    option (the HA holds the binding), not through the reverse tunnel."""
    bed = testbed_home
    mn, ha = bed.node("mn"), bed.node("ha")
    ha_socket = tmp_path / "ha.sock"
    mn_socket = tmp_path / "mn.sock"
    with running_agent(ha, HA_CONFIG, ha_socket), running_agent(mn, MN_CONFIG, mn_socket):
        bed.move("visitnet")
        registered = wait_until(lambda: any(row["state"] == 1 for row in bul(mn_socket)), 15.0)
        assert registered and MN_HOME_ADDRESS in ha_cache_home_addresses(ha_socket)
        ping = ["ping", "-6", "-n", "-c", "3", "-i", "0.3", "-W", "2", MN_HOME_ADDRESS]
        with bed.capture("visitnet", tmp_path / "visitnet.pcap") as pcap:
            done = ha.run(ping, check=False)
        assert " 0% packet loss" in done.stdout, done.stdout
    from scapy.layers.inet6 import HAO, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6ExtHdrRouting
    from scapy.utils import rdpcap

    frames = rdpcap(str(pcap))
    requests = [f for f in frames if ICMPv6EchoRequest in f and IPv6ExtHdrRouting in f]
    replies = [f for f in frames if ICMPv6EchoReply in f]
    assert requests, [f.summary() for f in frames]
    assert replies and all(
        HAO in f and f[HAO].hoa == MN_HOME_ADDRESS and f["IPv6"].src == str(VISIT_COA)
        for f in replies
    ), [f.summary() for f in replies]
    assert all(f["IPv6"].dst == HA_ADDRESS and f["IPv6"].nh != 41 for f in replies)


def test_handover_with_the_home_agent_entry_keeps_bus_and_tunnel_off_it(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """§11.3.1, §11.7.1: with route optimization on, the HA's entry (packets from the HoA to
    the HA leave directly with an HAO) takes only packets from the HoA. After a move
    visitnet -> visitnet2 the first BU (from the new CoA) is answered, and the CN's echo
    requests to the HoA are answered through the reverse tunnel (CoA -> HA, next header 41)."""
    bed = testbed_home
    mn, ha, cn = bed.node("mn"), bed.node("ha"), bed.node("cn")
    ha_socket = tmp_path / "ha.sock"
    mn_socket = tmp_path / "mn.sock"
    visit2_coa = care_of_address("visitnet2")

    def registered(coa: str) -> bool:
        return any(r["state"] == 1 and r["care_of_address"] == coa for r in bul(mn_socket))

    with running_agent(ha, HA_CONFIG, ha_socket), running_agent(mn, MN_CONFIG, mn_socket):
        bed.move("visitnet")
        assert wait_until(lambda: registered(VISIT_COA), 15.0), bul(mn_socket)
        assert wait_until(lambda: reachable(cn), 10.0), "no echo reply through the tunnel"
        rules = kernel_state(mn)["rules"]
        assert f"from {MN_HOME_ADDRESS} to {HA_ADDRESS} lookup 6277" in rules, rules
        assert f"from all to {HA_ADDRESS} lookup 6277" not in rules, rules
        # a stream CN -> HoA during the move, answered through the reverse tunnel
        stream = ["ping", "-6", "-n", "-q", "-c", "300", "-i", "0.01", MN_HOME_ADDRESS]
        sent_before = request(mn_socket, {"cmd": "stats"})["counters"]["NBindUpdatesSent"]
        with bed.capture("visitnet2", tmp_path / "visitnet2.pcap") as pcap:
            streaming = cn.popen(stream, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                bed.move("visitnet2")
                assert wait_until(lambda: registered(visit2_coa), 15.0), bul(mn_socket)
            finally:
                terminate(streaming)
            # the first BU after the move was answered: none had to be sent again (caught by
            # the HA's entry it took the old link's next hop and never left)
            sent = request(mn_socket, {"cmd": "stats"})["counters"]["NBindUpdatesSent"]
            assert sent - sent_before == 1, (sent_before, sent)
            assert wait_until(lambda: reachable(cn), 10.0), "no echo reply after the move"
            done = cn.run(["ping", "-6", "-n", "-c", "5", "-i", "0.2", "-W", "2", MN_HOME_ADDRESS])
            assert " 0% packet loss" in done.stdout, done.stdout
    # on the wire: that one BU, from the new CoA, and its BA
    messages = [
        (p, m) for p, m in mobility_headers(pcap) if isinstance(m, BindingUpdate | BindingAck)
    ]
    first_ack = next(i for i, (_p, m) in enumerate(messages) if isinstance(m, BindingAck))
    bus = [(p, m) for p, m in messages[:first_ack] if isinstance(m, BindingUpdate)]
    assert len(bus) == 1, [(str(p.src), m) for p, m in messages]
    first, message = bus[0]
    assert (str(first.src), first.dst, first.home_address) == (visit2_coa, HA, HOA)
    assert messages[first_ack][1].sequence == message.sequence
    from scapy.layers.inet6 import HAO, IPv6
    from scapy.utils import rdpcap

    # Reverse-tunnelled packets on visitnet2 (CoA -> HA, next header 41), split at the BA:
    # from then on they leave from the new CoA. Before it, a packet the kernel sent between
    # the new link's carrier and the agent's tunnel update still has the old CoA as its
    # outer source (seen once in ~20 runs; the old binding was still in force, so the HA
    # takes it). None carries an HAO.
    frames = [f for f in rdpcap(str(pcap)) if IPv6 in f]
    ba_at = next(
        i
        for i, f in enumerate(frames)
        if isinstance(verdict := parse_and_validate_mh(bytes(f[IPv6])), Accepted)
        and isinstance(verdict.message, BindingAck)
    )
    outbound = [
        (i, f) for i, f in enumerate(frames) if f[IPv6].nh == 41 and f[IPv6].dst == HA_ADDRESS
    ]
    after_ba = [f for i, f in outbound if i > ba_at]
    assert after_ba, "no reverse-tunnelled packet on visitnet2 after the BA"
    assert all(f[IPv6].src == visit2_coa for f in after_ba)
    assert all(f[IPv6].src in (visit2_coa, VISIT_COA) for _i, f in outbound)
    assert not any(HAO in f for _i, f in outbound)


def test_move_without_carrier_change_runs_dad_for_link_local_and_care_of_address(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """§11.5.4, RFC 4862 §5.4: a move the kernel does not see (the MN's port changes link,
    its carrier stays up: a new router only) still gets DAD on the new link, optimistic
    (RFC 4429) for both: a Neighbor Solicitation from :: for the link-local address and
    one for the new care-of address."""
    from nfq_mip6.testbed.testbed import SWITCH, _port_name
    from nfq_mip6.testbed.topology import MN_INTERFACE, MN_LINK_BRIDGE

    bed = testbed_home
    mn, ha = bed.node("mn"), bed.node("ha")
    listing = mn.run(["ip", "-6", "-o", "addr", "show", "dev", MN_INTERFACE, "scope", "link"])
    link_local = listing.stdout.split()[3].split("/")[0]
    with (
        running_agent(ha, HA_CONFIG, tmp_path / "ha.sock"),
        running_agent(mn, MN_CONFIG, tmp_path / "mn.sock") as agent,
    ):
        bed.move("visitnet")
        assert wait_until(lambda: any(r["state"] == 1 for r in bul(tmp_path / "mn.sock")), 15.0)
        port = _port_name("mn", MN_INTERFACE)
        switch = ["ip", "netns", "exec", bed.netns_name(SWITCH)]
        with bed.capture("visitnet2", tmp_path / "visitnet2.pcap") as pcap:
            subprocess.run(
                [*switch, "ip", "link", "set", port, "master", MN_LINK_BRIDGE["visitnet2"]],
                check=True,
            )
            coa2 = str(care_of_address("visitnet2"))
            moved = wait_until(
                lambda: any(
                    r["state"] == 1 and r["care_of_address"] == coa2
                    for r in bul(tmp_path / "mn.sock")
                ),
                20.0,
            )
        assert moved, (bul(tmp_path / "mn.sock"), agent.poll())
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
    from scapy.utils import rdpcap

    dad_targets = {
        f[ICMPv6ND_NS].tgt for f in rdpcap(str(pcap)) if ICMPv6ND_NS in f and f[IPv6].src == "::"
    }
    assert link_local in dad_targets and coa2 in dad_targets, dad_targets
