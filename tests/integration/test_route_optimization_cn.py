"""The Correspondent Node agent on the real kernel (RFC 6275 §9), against a scripted MN.

``nfq-mip6 run`` runs as the CN in the test bed's CN namespace. The Mobile Node is a script
in the MN namespace, moved to visitnet:

* a helper process sends whole IPv6 packets built here with :mod:`nfq_mip6.wire` (HoTI from
  the HoA, CoTI from the CoA, BUs with an HAO, forgeries) through an ``IPV6_HDRINCL`` socket
  and reports what arrives from the CN (or, tunnelled, from the HA) on an ``AF_PACKET``
  socket;
* the HA is static kernel configuration (proxy NDP + a seg6 encap.red route HoA → CoA), so
  that the HoT reaches the MN through the home network as in §5.2.5;
* for the data tests, a tiny NFQUEUE worker runs the MN half of the route-optimization data
  path (:func:`nfq_mip6.runtime.ro_datapath.mn_inbound` / ``mn_outbound``) on the MN's kernel,
  which has no MIPv6 either, with the HoA on ``lo``.

``test_route_optimization.py`` runs the real HA, MN and CN agents together.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    AgentHandle,
    ScriptedMobileNode,
    leave_home,
    scripted_mobile_node,
    start_agent,
    stop_agent,
    terminate,
    wait_until,
    write_agent_config,
)

from nfq_mip6.mobility import rr
from nfq_mip6.testbed import Testbed
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import (
    VISITNET2_PREFIX,
    VISITNET_PREFIX,
)
from nfq_mip6.wire import (
    BAStatus,
    BindingAck,
    BindingError,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    NonceIndices,
    UnknownMobilityMessage,
    build_ipv6_packet,
    build_mh,
    decapsulate,
    parse_ipv6,
    parse_mh,
)
from nfq_mip6.wire.checksum import mh_checksum, pseudo_header_checksum
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.howto import CN, COA, COA2, HA, HOA

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HOA2 = IPv6Address("fec0:106:2700::44")  # a second home address, for forgeries
QUEUE_NUM = 23
MN_QUEUE_NUM = 24
METRICS_PORT = 9736
SEQUENCE = itertools.count(100)

# The MN half of the RO data path, on the MN's kernel: RH2 in (raw PREROUTING), HAO out
# (mangle OUTPUT, re-routed by the kernel on reinjection). argv: HoA CoA CN queue.
MN_RO_WORKER = r"""
import signal, subprocess, sys
from ipaddress import IPv6Address
from netfilterqueue import NetfilterQueue
from nfq_mip6.runtime.ro_datapath import mn_inbound, mn_outbound
hoa, coa, cn, queue = sys.argv[1:5]
home = IPv6Address(hoa).packed
bindings = {IPv6Address(cn).packed: IPv6Address(coa).packed}
target = ["-j", "NFQUEUE", "--queue-num", queue]
rules = [
    ("raw", "PREROUTING", ["-m", "rt", "--rt-type", "2", *target]),
    ("mangle", "OUTPUT", ["-s", hoa + "/128", "-d", cn + "/128", *target]),
]
def on_packet(pkt):
    raw = pkt.get_payload()
    out = mn_inbound(raw, {home}) or mn_outbound(raw, home, bindings)
    if out is not None:
        pkt.set_payload(out)
    pkt.accept()
def stop(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
nfq = NetfilterQueue()
nfq.bind(int(queue), on_packet)
for table, chain, spec in rules:
    subprocess.run(["ip6tables", "-w", "-t", table, "-I", chain, "1", *spec], check=True)
print("ready", flush=True)
try:
    nfq.run()
except KeyboardInterrupt:
    pass
finally:
    for table, chain, spec in rules:
        subprocess.run(["ip6tables", "-w", "-t", table, "-D", chain, *spec])
    nfq.unbind()
"""


def mh_packet(
    message: Any, src: IPv6Address, dst: IPv6Address, home_address: IPv6Address | None = None
) -> bytes:
    mh = build_mh(message, home_address or src, dst)
    return build_ipv6_packet(src, dst, IPPROTO_MH, mh, home_address=home_address)


def received_mh(packet: bytes) -> tuple[Any, Any]:
    """(ParsedPacket, message); a HoT tunnelled by the HA is decapsulated first."""
    parsed = parse_ipv6(packet)
    if parsed.upper_layer == 41:
        inner = decapsulate(packet)
        assert inner is not None
        parsed = parse_ipv6(inner.inner)
    assert parsed.upper_layer == IPPROTO_MH, parsed.header_types
    return parsed, parse_mh(parsed.upper_layer_bytes)


@dataclass
class Tokens:
    hot: HomeTest
    cot: CareofTest

    @property
    def kbm(self) -> bytes:
        return rr.binding_management_key(self.hot.keygen_token, self.cot.keygen_token)


def careof_test(mn: ScriptedMobileNode, coa: IPv6Address) -> CareofTest:
    replies = mn.exchange(mh_packet(CareofTestInit(b"coti-ck!"), coa, CN))
    assert replies, "no Care-of Test from the correspondent node"
    packet, cot = received_mh(replies[0])
    assert isinstance(cot, CareofTest) and cot.cookie == b"coti-ck!"
    assert (packet.src, packet.dst) == (CN, coa)
    return cot


def return_routability(mn: ScriptedMobileNode, coa: IPv6Address = COA) -> Tokens:
    """§5.2.5: HoTI from the HoA (its HoT comes back through the HA), CoTI from the CoA."""
    replies = mn.exchange(mh_packet(HomeTestInit(b"hoti-ck!"), HOA, CN), sources=(HA, CN))
    assert replies, "no Home Test through the home agent"
    outer = parse_ipv6(replies[0])
    assert (outer.src, outer.dst, outer.upper_layer) == (HA, coa, 41)  # tunnelled by the HA
    packet, hot = received_mh(replies[0])
    assert isinstance(hot, HomeTest) and hot.cookie == b"hoti-ck!"
    assert (packet.src, packet.dst) == (CN, HOA)
    return Tokens(hot, careof_test(mn, coa))


def correspondent_bu(
    kbm: bytes,
    indices: NonceIndices,
    *,
    home_address: IPv6Address = HOA,
    coa: IPv6Address = COA,
    sequence: int | None = None,
    lifetime: int = 105,
    authenticator: str = "right",
) -> bytes:
    """A BU to the CN (§6.1.7, §11.7.2): HAO, Nonce Indices, BAD last (or a forgery)."""
    sequence = next(SEQUENCE) if sequence is None else sequence
    bu = BindingUpdate(sequence, BUFlags.A, lifetime, (indices,))
    if authenticator == "missing":
        return mh_packet(bu, coa, CN, home_address)

    def auth(data: bytes) -> bytes:
        value = rr.authenticator(kbm, coa, CN, data)
        return value if authenticator != "wrong" else bytes(12)

    mh = build_mh(bu, home_address, CN, authenticator=auth)
    if authenticator == "not_last":  # PadN after the BAD: silently discarded (§9.5.1)
        body = bytearray(mh + b"\x01\x06" + bytes(6))
        body[1] = len(body) // 8 - 1
        body[4:6] = b"\x00\x00"
        body[4:6] = mh_checksum(home_address, CN, bytes(body)).to_bytes(2, "big")
        mh = bytes(body)
    return build_ipv6_packet(coa, CN, IPPROTO_MH, mh, home_address=home_address)


def udp_with_hao(home_address: IPv6Address, coa: IPv6Address) -> bytes:
    """A UDP datagram HoA → CN sent from ``coa`` with an HAO (checksum over the HoA)."""
    payload = b"\x30\x39\x00\x09\x00\x0c\x00\x00data"
    checksum = pseudo_header_checksum(home_address, CN, 17, payload)
    payload = payload[:6] + checksum.to_bytes(2, "big") + payload[8:]
    return build_ipv6_packet(coa, CN, 17, payload, home_address=home_address)


# ------------------------------------------------------------------------------------------
# Agent handling
# ------------------------------------------------------------------------------------------


@dataclass
class CorrespondentAgent(AgentHandle):
    """The CN agent: its binding cache, its CLI and its Prometheus endpoint."""

    def cache(self) -> list[tuple[str, str]]:
        return [
            (b["home_address"], b["care_of_address"]) for b in self.control("cache")["bindings"]
        ]

    def cli(self, *args: str) -> str:
        done = self.node.run(
            [sys.executable, "-m", "nfq_mip6", *args, "--control-socket", str(self.socket_path)]
        )
        return done.stdout

    def metric(self, name: str) -> float | None:
        script = (
            "import urllib.request,sys;"
            f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read()"
            ".decode())"
        )
        text = self.node.run([sys.executable, "-c", script]).stdout
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None


def write_config(tmp: Path) -> Path:
    # The NFQUEUE data path (the tc BPF one: test_route_optimization_bpf.py).
    extra = 'route_optimization = true\nro_datapath = "nfqueue"\n'
    return write_agent_config(tmp, "cn", QUEUE_NUM, extra_keys=extra)


def start_cn_agent(node: Node, config: Path, socket_path: Path) -> CorrespondentAgent:
    return start_agent(
        node,
        config,
        socket_path,
        extra_args=("--metrics-listen", f"127.0.0.1:{METRICS_PORT}"),
        handle_type=CorrespondentAgent,
    )


def static_home_agent(node: Node, coa: IPv6Address) -> None:
    """The HA's kernel fast path for the HoA, by hand: proxy NDP and encap.red to ``coa``."""
    node.run(["sysctl", "-qw", "net.ipv6.neigh.eth0.proxy_delay=0"])
    node.run(["ip", "-6", "neigh", "replace", "proxy", str(HOA), "dev", "eth0"])
    node.run(["ip", "sr", "tunsrc", "set", str(HA)])
    node.run(f"ip -6 route replace {HOA}/128 encap seg6 mode encap.red segs {coa} dev eth0".split())


@contextlib.contextmanager
def mn_ro_worker(node: Node, coa: IPv6Address) -> Iterator[None]:
    proc = node.popen(
        [sys.executable, "-c", MN_RO_WORKER, str(HOA), str(coa), str(CN), str(MN_QUEUE_NUM)],
        new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    try:
        yield
    finally:
        terminate(proc, timeout=5)


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def away_testbed(testbed: Testbed) -> Iterator[Testbed]:
    """MN on visitnet with its CoA and the HoA on ``lo``; a static HA tunnels to the CoA."""
    testbed.reset()
    mn, ha = testbed.node("mn"), testbed.node("ha")
    leave_home(testbed, "visitnet", VISITNET_PREFIX)
    mn.run(["ip", "-6", "addr", "add", f"{HOA}/128", "dev", "lo"], check=False)
    static_home_agent(ha, COA)
    try:
        yield testbed
    finally:
        testbed.reset()


@pytest.fixture(scope="module")
def agent(
    away_testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CorrespondentAgent]:
    tmp = tmp_path_factory.mktemp("cn")
    handle = start_cn_agent(away_testbed.node("cn"), write_config(tmp), tmp / "cn.sock")
    try:
        yield handle
    finally:
        assert stop_agent(handle) == 0, handle.log_path.read_text()
        rules = away_testbed.node("cn").run(["ip6tables-save"]).stdout
        assert "NFQMIP6" not in rules  # stop removes every agent rule


@pytest.fixture(scope="module")
def mn(away_testbed: Testbed) -> Iterator[ScriptedMobileNode]:
    with scripted_mobile_node(away_testbed.node("mn"), CN) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def bound(agent: CorrespondentAgent, mn: ScriptedMobileNode) -> Tokens:
    """Return routability and a binding HoA → CoA at the CN."""
    tokens = return_routability(mn)
    indices = NonceIndices(tokens.hot.nonce_index, tokens.cot.nonce_index)
    replies = mn.exchange(correspondent_bu(tokens.kbm, indices))
    assert replies, f"no BA from the CN: {agent.log_path.read_text()}"
    _packet, ba = received_mh(replies[0])
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.ACCEPTED, ba
    return tokens


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_binding_update_is_acknowledged_with_bad_and_rh2(
    agent: CorrespondentAgent, mn: ScriptedMobileNode, away_testbed: Testbed
) -> None:
    tokens = return_routability(mn)
    assert tokens.hot.nonce_index == tokens.cot.nonce_index  # one current nonce
    indices = NonceIndices(tokens.hot.nonce_index, tokens.cot.nonce_index)
    sequence = next(SEQUENCE)
    replies = mn.exchange(correspondent_bu(tokens.kbm, indices, sequence=sequence, lifetime=0xFFFF))
    assert replies, f"no BA: {agent.log_path.read_text()}"
    packet, ba = received_mh(replies[0])
    # §9.5.4: from the CN to the CoA, RH2 = HoA, BAD computed with Kbm, lifetime ≤ 420 s.
    assert (packet.src, packet.dst, packet.rh2_address) == (CN, COA, HOA)
    assert isinstance(ba, BindingAck)
    assert (ba.status, ba.sequence, ba.lifetime) == (BAStatus.ACCEPTED, sequence, 105)
    assert rr.verify_authenticator(tokens.kbm, COA, CN, packet.upper_layer_bytes)
    assert agent.cache() == [(str(HOA), str(COA))]
    out_rules = away_testbed.node("cn").run(["ip6tables", "-w", "-t", "mangle", "-S"]).stdout
    assert f"-A NFQMIP6-CN-OUT -d {HOA}/128 -j NFQUEUE --queue-num {QUEUE_NUM}" in out_rules
    text = agent.cli("cache")
    assert str(HOA) in text and str(COA) in text


def test_route_optimized_ping_bypasses_the_home_network(
    bound: Tokens, agent: CorrespondentAgent, away_testbed: Testbed, tmp_path: Path
) -> None:
    bed = away_testbed
    with (
        mn_ro_worker(bed.node("mn"), COA),
        bed.capture("homenet", tmp_path / "homenet.pcap") as homenet,
        bed.capture("visitnet", tmp_path / "visitnet.pcap") as visitnet,
    ):
        done = bed.node("cn").run(
            ["ping", "-6", "-c", "5", "-i", "0.2", "-W", "2", str(HOA)], check=False
        )
    print(done.stdout)
    assert " 0% packet loss" in done.stdout, (done.stdout, agent.log_path.read_text())
    from scapy.layers.inet6 import HAO, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6ExtHdrRouting
    from scapy.utils import rdpcap

    home_echoes = [
        f for f in rdpcap(str(homenet)) if ICMPv6EchoRequest in f or ICMPv6EchoReply in f
    ]
    assert home_echoes == [], [f.summary() for f in home_echoes]
    requests = [f for f in rdpcap(str(visitnet)) if ICMPv6EchoRequest in f]
    replies = [f for f in rdpcap(str(visitnet)) if ICMPv6EchoReply in f]
    assert len(requests) >= 5 and len(replies) >= 5
    # §9.3.2 / §11.3.1 on the wire: CN → CoA with RH2(HoA); CoA → CN with HAO(HoA).
    assert all(f[IPv6ExtHdrRouting].type == 2 for f in requests)
    assert all(f[IPv6ExtHdrRouting].addresses == [str(HOA)] for f in requests)
    assert all(f["IPv6"].dst == str(COA) for f in requests)
    assert all(f[HAO].hoa == str(HOA) and f["IPv6"].src == str(COA) for f in replies)
    stats = agent.control("stats")
    assert stats["nfqueue"]["rewritten"] >= 10
    assert stats["correspondent"]["counters"]["rh2_inserted"] >= 5


@pytest.mark.parametrize("forgery", ["wrong", "missing", "not_last", "stale"])
def test_forged_binding_updates_create_no_binding(
    agent: CorrespondentAgent, mn: ScriptedMobileNode, forgery: str
) -> None:
    """§9.5.1: a wrong authenticator, a missing BAD or a BAD that is not last → silent
    discard; unknown nonce indices → BA 138 without BAD. No binding for HOA2 either way."""
    cot = careof_test(mn, COA)  # home and care-of nonce are the same current nonce
    home_token = rr.home_keygen_token(b"\x00" * 20, HOA2, b"\x00" * 8)  # not the CN's Kcn
    kbm = rr.binding_management_key(home_token, cot.keygen_token)
    indices = NonceIndices(cot.nonce_index, cot.nonce_index)
    if forgery == "stale":
        indices = NonceIndices((cot.nonce_index + 1000) & 0xFFFF, (cot.nonce_index + 999) & 0xFFFF)
    packet = correspondent_bu(
        kbm, indices, home_address=HOA2, authenticator="right" if forgery == "stale" else forgery
    )
    replies = mn.exchange(packet, wait=1.0)
    if forgery == "stale":
        assert replies, "no BA 138"
        reply, ba = received_mh(replies[0])
        assert isinstance(ba, BindingAck) and ba.status == BAStatus.EXPIRED_NONCES
        assert ba.options == () and (reply.dst, reply.rh2_address) == (COA, HOA2)
    else:
        assert replies == []
    assert str(HOA2) not in [hoa for hoa, _coa in agent.cache()]


def test_binding_errors_for_unbound_hao_and_unknown_mh_type(
    agent: CorrespondentAgent, mn: ScriptedMobileNode
) -> None:
    # §9.3.1/§9.3.3: HAO without a binding for (HoA, source) → BE status 1 to the source.
    replies = mn.exchange(udp_with_hao(HOA2, COA))
    assert replies, "no Binding Error 1"
    packet, be = received_mh(replies[0])
    assert isinstance(be, BindingError) and (be.status, be.home_address) == (1, HOA2)
    assert (packet.src, packet.dst, packet.rh2_address) == (CN, COA, None)
    # §9.2: unknown MH type 8 → BE status 2 (Home Address ::).
    replies = mn.exchange(mh_packet(UnknownMobilityMessage(8, bytes(10)), COA, CN))
    assert replies, "no Binding Error 2"
    packet, be = received_mh(replies[0])
    assert isinstance(be, BindingError) and (be.status, str(be.home_address)) == (2, "::")


def test_bu_with_piggybacked_payload_gets_parameter_problem_at_payload_proto(
    agent: CorrespondentAgent, mn: ScriptedMobileNode
) -> None:
    """§6.1.1/§9.2: a BU to the CN followed by a piggybacked Echo Request (Payload Proto 58),
    its checksum over the MH as Header Len defines it: Parameter Problem code 0 pointing at
    Payload Proto (40 + 24 with the HAO), not a silent bad-checksum drop."""
    mh = bytearray(build_mh(BindingUpdate(next(SEQUENCE), BUFlags.A, 10), HOA, CN))
    mh[0] = 58
    mh[4:6] = b"\0\0"
    mh[4:6] = mh_checksum(HOA, CN, bytes(mh)).to_bytes(2, "big")
    echo = bytes((128, 0, 0, 0, 0, 1, 0, 1))
    packet = build_ipv6_packet(COA, CN, IPPROTO_MH, bytes(mh) + echo, home_address=HOA)
    replies = mn.exchange(packet)
    assert replies, f"no Parameter Problem: {agent.log_path.read_text()[-2000:]}"
    reply = parse_ipv6(replies[0])
    icmp = reply.upper_layer_bytes
    assert (reply.src, reply.dst, reply.upper_layer) == (CN, COA, 58)
    assert icmp[0] == 4 and icmp[1] == 0
    assert int.from_bytes(icmp[4:8], "big") == 40 + 24


def test_ro_switch_off_and_on(
    agent: CorrespondentAgent, mn: ScriptedMobileNode, bound: Tokens
) -> None:
    assert agent.metric("nfq_mip6_route_optimization_enabled") == 1.0
    assert "route optimization: off" in agent.cli("ro", "off")
    # off: no bindings, no CoT/HoT, no new bindings (§5.2.8: nonces invalidated too).
    assert agent.cache() == []
    assert mn.exchange(mh_packet(CareofTestInit(b"coti-off"), COA, CN), wait=1.0) == []
    indices = NonceIndices(bound.hot.nonce_index, bound.cot.nonce_index)
    assert mn.exchange(correspondent_bu(bound.kbm, indices), wait=1.0) == []
    assert agent.cache() == []
    assert agent.control("stats")["route_optimization"] is False
    assert "Route optimization        : off" in agent.cli("stats")
    assert agent.metric("nfq_mip6_route_optimization_enabled") == 0.0
    assert "route optimization: on" in agent.cli("ro", "on")
    assert "route optimization: on" in agent.cli("ro", "status")
    careof_test(mn, COA)


def test_sighup_applies_route_optimization_from_the_config(
    agent: CorrespondentAgent, mn: ScriptedMobileNode
) -> None:
    """``route_optimization`` (legacy ``accept_return_routability``) changes without a
    restart: edit the file, SIGHUP, the agent answers no CoTI; back on, it answers again."""
    config = Path(str(agent.socket_path).replace("cn.sock", "cn.toml"))
    original = config.read_text()
    try:
        config.write_text(
            original.replace("route_optimization = true", "route_optimization = false")
        )
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: agent.control("ro")["route_optimization"] is False, 5.0)
        assert mn.exchange(mh_packet(CareofTestInit(b"coti-hup"), COA, CN), wait=1.0) == []
    finally:
        config.write_text(original)
        agent.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: agent.control("ro")["route_optimization"] is True, 5.0)
    careof_test(mn, COA)
    assert agent.proc.poll() is None


def test_binding_follows_the_mobile_node_to_visitnet2(
    agent: CorrespondentAgent, mn: ScriptedMobileNode, away_testbed: Testbed
) -> None:
    """Travel: RR again from the new CoA, a BU with a newer sequence number → HoA → CoA2."""
    tokens = return_routability(mn)
    indices = NonceIndices(tokens.hot.nonce_index, tokens.cot.nonce_index)
    assert mn.exchange(correspondent_bu(tokens.kbm, indices))
    assert agent.cache() == [(str(HOA), str(COA))]
    leave_home(away_testbed, "visitnet2", VISITNET2_PREFIX)
    static_home_agent(away_testbed.node("ha"), COA2)
    tokens = return_routability(mn, COA2)
    indices = NonceIndices(tokens.hot.nonce_index, tokens.cot.nonce_index)
    replies = mn.exchange(correspondent_bu(tokens.kbm, indices, coa=COA2))
    assert replies, agent.log_path.read_text()
    packet, ba = received_mh(replies[0])
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.ACCEPTED
    assert (packet.dst, packet.rh2_address) == (COA2, HOA)
    assert agent.cache() == [(str(HOA), str(COA2))]


def test_home_deregistration_is_acknowledged_and_the_binding_deleted(
    agent: CorrespondentAgent, mn: ScriptedMobileNode, bound: Tokens
) -> None:
    """§9.5.3/§5.2.5: the MN back home sends a BU from its HoA (CoA = HoA, no HAO) with only
    the home nonce index and A = 1: the CN deletes the binding and its BA — carrying a BAD
    computed with Kbm = SHA1(home keygen token), §9.5.4 — reaches the HoA (through the home
    network), although it passes the deleted binding's own OUTPUT rule on the way out."""
    replies = mn.exchange(mh_packet(HomeTestInit(b"hoti-del"), HOA, CN), sources=(HA, CN))
    assert replies, "no Home Test through the home agent"
    _packet, hot = received_mh(replies[0])
    assert isinstance(hot, HomeTest) and hot.cookie == b"hoti-del"
    kbm = rr.binding_management_key(hot.keygen_token, None)
    sequence = next(SEQUENCE)
    bu = BindingUpdate(sequence, BUFlags.A, 0, (NonceIndices(hot.nonce_index, 0),))
    mh = build_mh(bu, HOA, CN, authenticator=lambda data: rr.authenticator(kbm, HOA, CN, data))
    replies = mn.exchange(build_ipv6_packet(HOA, CN, IPPROTO_MH, mh), sources=(HA, CN))
    assert replies, f"no BA to the home de-registration: {agent.log_path.read_text()}"
    packet, ba = received_mh(replies[0])
    assert isinstance(ba, BindingAck)
    assert (ba.status, ba.sequence, ba.lifetime) == (BAStatus.ACCEPTED, sequence, 0)
    assert (packet.src, packet.dst, packet.rh2_address) == (CN, HOA, None)
    assert rr.verify_authenticator(kbm, HOA, CN, packet.upper_layer_bytes)
    assert agent.cache() == []
    assert "unexpected-mh-type" not in agent.log_path.read_text()
