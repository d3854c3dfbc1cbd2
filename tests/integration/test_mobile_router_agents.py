"""NEMO Basic Support (RFC 3963) with the real agents on the NEMO test bed
(``nfq-mip6 testbed up --nemo``): the HA agent and the MN agent as a mobile router with its
LAN ``lan0`` (the mobile network ``fec0:106:2800::/64``) and a mobile network node (MNN) on it.

* explicit mode, the whole journey: the router's radvd gives the MNN its address; the CN and
  the MNN reach each other at home, through the tunnel on visitnet and visitnet2 (the BA
  carries R on the wire, the HA's cache and ``mipdiag -c`` show the prefix, its route names
  the CoA) and at home again, while one TCP connection from the CN to the MNN carries a
  numbered stream through both moves and the return; a packet from the router's CoA whose
  inner source is outside its prefixes is dropped and counted; radvd stops with the agent;
* implicit mode and a crashed HA: the restarted HA restores the prefix route it lost;
* forged and unauthorised claims (a scripted mobile node with the router's key and with a
  key not allowed to act as a router) get 140, 141, 142 and leave no route.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    AgentHandle,
    binding_ack,
    flush_ha_kernel_state,
    leave_home,
    running_testbed,
    scripted_mobile_node,
    start_agent,
    stop_agent,
    wait_until,
)
from test_mobile_node import mobility_headers

from nfq_mip6.security import MobileNodeAuthenticator, SecurityAssociation
from nfq_mip6.security.keys import KeySource, load_key
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.nemo import MR_SPI
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import (
    CN_ADDRESS,
    HA_ADDRESS,
    MN_HOME_ADDRESS,
    MNN_ADDRESS,
    MNN_INTERFACE,
    MOBILE_NETWORK_PREFIX,
    VISITNET_PREFIX,
)
from nfq_mip6.wire import (
    AlternateCareofAddress,
    BAFlags,
    BindingAck,
    BindingUpdate,
    BUFlags,
    MobileNetworkPrefix,
    build_ipv6_packet,
    build_mh,
    encapsulate,
)
from nfq_mip6.wire.mh import IPPROTO_MH

pytestmark = pytest.mark.netns

MNP = IPv6Network(MOBILE_NETWORK_PREFIX)
HA, HOA = IPv6Address(HA_ADDRESS), IPv6Address(MN_HOME_ADDRESS)
PLAIN_HOA = IPv6Address("fec0:106:2700::77")  # a mobile node whose key may not be a router
PLAIN_SPI = 1001
TUNNEL_TABLE = "6275"
MIPDIAG = (sys.executable, "-c", "from nfq_mip6.cli import mipdiag_main; mipdiag_main()")

# The CN's end of one TCP connection to the MNN: a numbered line every 50 ms, every echo
# checked in order; "count" prints "sent echoed", "stop" waits for the last echoes (60 s at
# most) and prints the same.
TCP_CLIENT = r"""
import socket, sys, threading, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.settimeout(None)
state = {"sent": 0, "echoed": 0, "bad": 0}
stop = threading.Event()
def read():
    buf = b""
    while (data := s.recv(4096)):
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            state["bad"] += int(line) != state["echoed"]
            state["echoed"] += 1
def write():
    while not stop.is_set():
        s.sendall(b"%d\n" % state["sent"])
        state["sent"] += 1
        time.sleep(0.05)
threading.Thread(target=read, daemon=True).start()
writer = threading.Thread(target=write, daemon=True)
writer.start()
print("connected", flush=True)
for line in sys.stdin:
    if line.strip() == "stop":
        stop.set()
        writer.join()
        deadline = time.monotonic() + 60
        while state["echoed"] < state["sent"] and time.monotonic() < deadline:
            time.sleep(0.05)
    print(state["sent"], state["echoed"], state["bad"], flush=True)
    if line.strip() == "stop":
        break
"""
# The MNN's end: one connection accepted (a second one would mean the first was lost), echoed.
TCP_SERVER = r"""
import socket, sys
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", int(sys.argv[1])))
srv.listen(1)
print("ready", flush=True)
conn, peer = srv.accept()
print("accepted", peer[0], flush=True)
while (data := conn.recv(4096)):
    conn.sendall(data)
print("closed", flush=True)
"""
TCP_PORT = 5963


# ------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nemo_bed() -> Iterator[Testbed]:
    with running_testbed("nm", nemo=True) as bed:
        yield bed


@pytest.fixture
def bed(nemo_bed: Testbed) -> Testbed:
    nemo_bed.reset()
    return nemo_bed


def agent_config(bed: Testbed, name: str, tmp: Path, extra: str = "") -> Path:
    """The bed's ``name`` configuration with a state directory private to this test and
    ``extra`` appended (more ``[[ha.mobile_nodes]]`` entries)."""
    text = bed.nemo_config(name).read_text()
    lines = [
        f'state_dir = "{tmp / (name + "-state")}"' if line.startswith("state_dir =") else line
        for line in text.splitlines()
    ]
    path = tmp / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@contextlib.contextmanager
def agent(node: Node, config: Path, socket_path: Path) -> Iterator[AgentHandle]:
    handle = start_agent(
        node, config, socket_path, extra_args=["--control-socket", str(socket_path)]
    )
    try:
        yield handle
    finally:
        stop_agent(handle)


@contextlib.contextmanager
def home_agent(bed: Testbed, config: Path, socket_path: Path) -> Iterator[AgentHandle]:
    ha = bed.node("ha")
    flush_ha_kernel_state(ha)
    try:
        with agent(ha, config, socket_path) as handle:
            yield handle
    finally:
        flush_ha_kernel_state(ha)


def router_binding(ha: AgentHandle) -> dict[str, Any] | None:
    """The router's row of ``nfq-mip6 cache --json`` (the control socket's ``cache``)."""
    for row in ha.control("cache")["bindings"]:
        if row["home_address"] == MN_HOME_ADDRESS:
            return dict(row)
    return None


def registered_with_prefix(ha: AgentHandle, coa: str) -> bool:
    row = router_binding(ha)
    return (
        row is not None
        and row["care_of_address"] == coa
        and row.get("prefixes") == [MOBILE_NETWORK_PREFIX]
    )


def prefix_route(bed: Testbed) -> str:
    """The HA's tunnel-table route of the mobile network prefix ('' when there is none)."""
    out = bed.node("ha").run(["ip", "-6", "route", "show", "table", TUNNEL_TABLE]).stdout
    return next((line for line in out.splitlines() if line.startswith(MOBILE_NETWORK_PREFIX)), "")


def mipdiag_cache(socket_path: Path) -> str:
    done = subprocess.run(
        [*MIPDIAG, "-c", "--control-socket", str(socket_path)],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return done.stdout


def pings(node: Node, dst: str) -> bool:
    return node.run(["ping", "-6", "-n", "-c", "1", "-W", "1", dst], check=False).returncode == 0


def reach_each_other(bed: Testbed) -> bool:
    """CN -> MNN and MNN -> CN, each answered."""
    return pings(bed.node("cn"), MNN_ADDRESS) and pings(bed.node("mnn"), CN_ADDRESS)


def ha_stats(ha: AgentHandle) -> dict[str, Any]:
    return dict(ha.stats()["home_agent"])


class TcpStream:
    """The CN's numbered stream over one TCP connection to the MNN (TCP_CLIENT/TCP_SERVER)."""

    def __init__(self, bed: Testbed) -> None:
        self.server = bed.node("mnn").popen(
            [sys.executable, "-u", "-c", TCP_SERVER, str(TCP_PORT)], stdin=subprocess.DEVNULL
        )
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"
        self.client = bed.node("cn").popen(
            [sys.executable, "-u", "-c", TCP_CLIENT, MNN_ADDRESS, str(TCP_PORT)],
            stdin=subprocess.PIPE,
        )
        assert self.client.stdout is not None
        assert self.client.stdout.readline().strip() == "connected"
        assert self.server.stdout.readline().split() == ["accepted", CN_ADDRESS]

    def ask(self, command: str) -> tuple[int, int, int]:
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(command + "\n")
        self.client.stdin.flush()
        sent, echoed, bad = (int(v) for v in self.client.stdout.readline().split())
        return sent, echoed, bad

    def echoed(self) -> int:
        return self.ask("count")[1]

    def close(self) -> str:
        """The server's output after the client ended (``closed`` = one connection, no other)."""
        for proc in (self.client, self.server):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert self.server.stdout is not None
        return self.server.stdout.read()


def carries_data(stream: TcpStream) -> bool:
    before = stream.echoed()
    return wait_until(lambda: stream.echoed() > before + 2, 15.0)


# ------------------------------------------------------------------------------------------
# Explicit mode: the journey
# ------------------------------------------------------------------------------------------


def test_rfc3963_explicit_mode_journey_with_a_tcp_connection(bed: Testbed, tmp_path: Path) -> None:
    mr, mnn = bed.node("mn"), bed.node("mnn")
    ha_sock, mr_sock = tmp_path / "ha.sock", tmp_path / "mr.sock"
    with (
        home_agent(bed, agent_config(bed, "ha", tmp_path), ha_sock) as ha,
        agent(mr, agent_config(bed, "mn", tmp_path), mr_sock) as router,
    ):
        # RFC 3963 §5.6: the router's radvd on its LAN gives the MNN its address and its
        # default router (the bed configures neither), with lifetimes: autoconfigured
        lan = router.stats()["mobile_node"]["mobile_network"]
        assert lan["advertised"] == [MOBILE_NETWORK_PREFIX] and lan["radvd_running"], lan
        radvd_pid = lan["radvd_pid"]
        ra = bed.solicit_router("mnn", MNN_INTERFACE)
        assert f"Prefix                   : {MOBILE_NETWORK_PREFIX}" in ra, ra
        assert bed.wait_for_address(MOBILE_NETWORK_PREFIX, "mnn", MNN_INTERFACE) == MNN_ADDRESS
        autoconf = mnn.run(["ip", "-6", "addr", "show", "dev", MNN_INTERFACE, "dynamic"]).stdout
        assert MNN_ADDRESS in autoconf, autoconf
        assert "proto ra" in mnn.run(["ip", "-6", "route", "show", "default"]).stdout
        # at home the router forwards as a plain router (RFC 3963 §5.5)
        assert wait_until(lambda: reach_each_other(bed), 10.0), "CN and MNN apart at home"
        stream = TcpStream(bed)
        try:
            assert carries_data(stream)
            for link in ("visitnet", "visitnet2"):
                coa = care_of_address(link)  # type: ignore[arg-type]
                with bed.capture(link, tmp_path / f"{link}.pcap") as pcap:
                    bed.move(link)  # type: ignore[arg-type]
                    registered = functools.partial(registered_with_prefix, ha, coa)
                    assert wait_until(registered, 15.0), router_binding(ha)
                    # RFC 3963 §4.2: the BA that accepted it carries R, on the wire
                    bas = [m for p, m in mobility_headers(pcap) if isinstance(m, BindingAck)]
                    accepted = [m for m in bas if m.status < 128 and m.lifetime > 0]
                    assert accepted and all(m.flags & BAFlags.R for m in accepted), bas
                assert f"Mobile Network Prefixes: {MOBILE_NETWORK_PREFIX}" in mipdiag_cache(ha_sock)
                # RFC 3963 §6.4: the prefix is routed into the tunnel to this CoA
                assert f"segs 1 [ {coa} ]" in prefix_route(bed), prefix_route(bed)
                assert wait_until(lambda: reach_each_other(bed), 10.0), f"apart on {link}"
                assert carries_data(stream), f"the TCP connection stalled on {link}"
                if link == "visitnet":
                    # full-size TCP segments both ways through the tunnel (the HA clamps the
                    # MSS for the prefix): more than 100 of them arrive each way
                    for client, server, address in (
                        ("cn", "mnn", MNN_ADDRESS),
                        ("mnn", "cn", CN_ADDRESS),
                    ):
                        report = bed.iperf3(client, server, address, seconds=1, port=5301)
                        received = report["end"]["sum_received"]["bytes"]
                        assert received > 100 * 1400, (client, server, received)
            # RFC 3963 §6.5: from the router's CoA, an inner source outside its prefixes
            before = ha_stats(ha)["mobile_network_source_rejected"]
            forged = build_ipv6_packet(
                IPv6Address("fec0:106:2900::5"), IPv6Address(CN_ADDRESS), 59, b""
            )
            with scripted_mobile_node(mr, HA) as scripted:
                scripted.exchange(encapsulate(forged, IPv6Address(coa), HA), wait=0.2)
            assert wait_until(
                lambda: ha_stats(ha)["mobile_network_source_rejected"] == before + 1, 5.0
            ), ha_stats(ha)
            # home again: no binding, no prefix route, the router forwards directly
            bed.move("home")
            assert wait_until(lambda: router_binding(ha) is None, 15.0), router_binding(ha)
            assert prefix_route(bed) == ""
            assert wait_until(lambda: reach_each_other(bed), 10.0), "CN and MNN apart at home"
            assert carries_data(stream)
            sent, echoed, bad = stream.ask("stop")
        finally:
            server_output = stream.close()
        # one connection, every line echoed once and in order
        print(f"\nTCP CN -> MNN over two moves and home: {sent} lines sent, {echoed} echoed")
        assert (echoed, bad) == (sent, 0), (sent, echoed, bad)
        assert server_output.split() == ["closed"], server_output
        counters = router.stats()["mobile_node"]["counters"]
        assert counters["mobile_router_rejections"] == 0
        assert counters["mobile_router_not_acknowledged"] == 0
    # the agent's exit stopped its radvd
    assert mr.run(["kill", "-0", str(radvd_pid)], check=False).returncode != 0


# ------------------------------------------------------------------------------------------
# Implicit mode, and the HA restarted after a crash
# ------------------------------------------------------------------------------------------


def test_rfc3963_implicit_mode_and_a_restarted_ha_restores_the_prefix_route(
    bed: Testbed, tmp_path: Path
) -> None:
    ha_node, mr = bed.node("ha"), bed.node("mn")
    ha_config = agent_config(bed, "ha", tmp_path)
    ha_sock, mr_sock = tmp_path / "ha.sock", tmp_path / "mr.sock"
    coa = care_of_address("visitnet")
    flush_ha_kernel_state(ha_node)
    ha = start_agent(ha_node, ha_config, ha_sock, extra_args=["--control-socket", str(ha_sock)])
    try:
        with agent(mr, agent_config(bed, "mn-implicit", tmp_path), mr_sock) as router:
            bed.move("visitnet")
            # RFC 3963 §6.2 implicit mode: no prefix in the BU, the HA's table gives it
            assert wait_until(lambda: registered_with_prefix(ha, coa), 15.0), router_binding(ha)
            assert f"segs 1 [ {coa} ]" in prefix_route(bed)
            assert wait_until(lambda: reach_each_other(bed), 10.0)
            # the HA dies (kill -9) and its prefix route is lost with it
            ha.proc.kill()
            ha.proc.wait()
            ha_node.run(["ip", "-6", "route", "del", MOBILE_NETWORK_PREFIX, "table", TUNNEL_TABLE])
            assert prefix_route(bed) == ""
            ha = start_agent(
                ha_node, ha_config, ha_sock, extra_args=["--control-socket", str(ha_sock)]
            )
            # restored from its state: the binding, the prefix, its route to the same CoA
            assert registered_with_prefix(ha, coa), router_binding(ha)
            assert f"segs 1 [ {coa} ]" in prefix_route(bed), prefix_route(bed)
            assert wait_until(lambda: reach_each_other(bed), 10.0), "CN and MNN apart"
            assert router.stats()["mobile_node"]["counters"]["mobile_router_rejections"] == 0
    finally:
        stop_agent(ha)
        flush_ha_kernel_state(ha_node)


# ------------------------------------------------------------------------------------------
# Forged and unauthorised prefixes
# ------------------------------------------------------------------------------------------


def router_bu(
    sequence: int,
    signer: MobileNodeAuthenticator,
    prefixes: tuple[MobileNetworkPrefix, ...],
    home_address: IPv6Address = HOA,
) -> bytes:
    """A mobile router's home BU (R, the prefixes) from the visitnet CoA, signed."""
    coa = IPv6Address(care_of_address("visitnet"))
    options = (AlternateCareofAddress(coa), *prefixes)
    bu = BindingUpdate(sequence, BUFlags.A | BUFlags.H | BUFlags.R, 100, options)
    bu = signer.sign_binding_update(bu, coa, home_address)
    mh = build_mh(bu, home_address, HA)
    return build_ipv6_packet(coa, HA, IPPROTO_MH, mh, home_address=home_address)


def test_rfc3963_forged_and_unauthorised_prefixes_are_refused_without_a_route(
    bed: Testbed, tmp_path: Path
) -> None:
    key_file = bed.nemo_config("key")
    plain_key = tmp_path / "plain.key"
    plain_key.write_bytes(bytes(range(16)))
    plain_key.chmod(0o600)
    extra = f"""
[[ha.mobile_nodes]]
home_address = "{PLAIN_HOA}"
spi = {PLAIN_SPI}
key_file = "{plain_key}"
"""
    router_key = MobileNodeAuthenticator(
        SecurityAssociation(MR_SPI, load_key(KeySource(file=key_file)), (IPv6Network(HOA),))
    )
    plain = MobileNodeAuthenticator(
        SecurityAssociation(PLAIN_SPI, bytes(range(16)), (IPv6Network(PLAIN_HOA),))
    )
    cases: list[tuple[MobileNodeAuthenticator, IPv6Address, tuple[MobileNetworkPrefix, ...], int]]
    cases = [
        # RFC 3963 §6.2: not inside what the router's entry lists -> 142
        (router_key, HOA, (MobileNetworkPrefix.of(IPv6Network("fec0:106:2900::/64")),), 142),
        # a prefix that is no network (bits beyond its length) -> 141
        (router_key, HOA, (MobileNetworkPrefix(IPv6Address("fec0:106:2800::1"), 64),), 141),
        # the home link itself -> 141
        (router_key, HOA, (MobileNetworkPrefix.of(IPv6Network("fec0:106:2700::/64")),), 141),
        # RFC 3963 §6.1.2: a key that may not act as a mobile router -> 140
        (plain, PLAIN_HOA, (MobileNetworkPrefix.of(MNP),), 140),
    ]
    config = agent_config(bed, "ha", tmp_path, extra)
    with home_agent(bed, config, tmp_path / "ha.sock") as ha:
        leave_home(bed, "visitnet", VISITNET_PREFIX)
        with scripted_mobile_node(bed.node("mn"), HA) as scripted:
            for sequence, (signer, home_address, prefixes, status) in enumerate(cases, 10):
                packet = router_bu(sequence, signer, prefixes, home_address)
                reply = binding_ack(scripted.exchange(packet, wait=5.0)).ba
                assert (reply.status, reply.lifetime) == (status, 0), (prefixes, reply)
                assert not reply.flags & BAFlags.R
                assert ha.control("cache")["bindings"] == []
                assert prefix_route(bed) == ""
                rules = bed.node("ha").run(["ip", "-6", "rule"]).stdout
                assert "fec0:106:2900::/64" not in rules and MOBILE_NETWORK_PREFIX not in rules
            # and the router's own claim, with the same key, is accepted with R
            packet = router_bu(20, router_key, (MobileNetworkPrefix.of(MNP),))
            reply = binding_ack(scripted.exchange(packet, wait=5.0)).ba
            assert reply.status == 0 and reply.flags & BAFlags.R, reply
            assert MOBILE_NETWORK_PREFIX in prefix_route(bed)
