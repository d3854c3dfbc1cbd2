"""What the netns tests share: the scripted Mobile Node, starting and stopping ``nfq-mip6 run``,
moving the MN off its home link, the MN's side of the bidirectional tunnel by hand, polling.

Imported by the test modules (``tests/integration`` is on ``sys.path`` under pytest's
default import mode); ``test_mobile_node`` re-exports :func:`wait_until`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, TypeVar

from nfq_mip6.control import ControlError, request
from nfq_mip6.testbed import Testbed, unique_prefix
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import HA_ADDRESS, HOME_PREFIX, MN_INTERFACE, VISITNET_PREFIX
from nfq_mip6.wire import BindingAck, parse_ipv6, parse_mh
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.processes import terminate

# ------------------------------------------------------------------------------------------
# The scripted Mobile Node
# ------------------------------------------------------------------------------------------

# The scripted MN: JSON commands on stdin, JSON answers on stdout.
#   {"send": hex | null, "wait": s, "from": [addr...], "first": bool}
# → the hex of every IPv6 packet from one of ``from`` received within ``wait`` seconds
# (stops at the first one when ``first``). Packets go out whole through an IPV6_HDRINCL
# socket (option 36); answers are read on an AF_PACKET socket bound to the MN's interface.
MN_HELPER = r"""
import ipaddress, json, select, socket, sys, time
rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86DD))
rx.bind((sys.argv[1], 0x86DD))
tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
tx.setsockopt(socket.IPPROTO_IPV6, 36, 1)
print("ready", flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    while select.select([rx], [], [], 0)[0]:
        rx.recv(65535)
    if cmd.get("send"):
        pkt = bytes.fromhex(cmd["send"])
        tx.sendto(pkt, (str(ipaddress.IPv6Address(pkt[24:40])), 0))
    wanted = {ipaddress.IPv6Address(a).packed for a in cmd["from"]}
    got, deadline = [], time.monotonic() + cmd["wait"]
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([rx], [], [], left)[0]:
            break
        data, addr = rx.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING or data[8:24] not in wanted:
            continue
        got.append(data.hex())
        if cmd.get("first"):
            break
    print(json.dumps(got), flush=True)
"""


class ScriptedMobileNode:
    """The helper process in the MN namespace (see :data:`MN_HELPER`); ``peer`` is the node
    whose answers :meth:`exchange` collects unless told other ``sources``."""

    def __init__(self, node: Node, peer: IPv6Address) -> None:
        self.peer = peer
        self.proc = node.popen(
            [sys.executable, "-c", MN_HELPER, MN_INTERFACE], stdin=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def exchange(
        self,
        packet: bytes | None,
        wait: float = 3.0,
        first: bool = True,
        sources: Sequence[IPv6Address] | None = None,
    ) -> list[bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cmd = {
            "send": packet.hex() if packet else None,
            "wait": wait,
            "from": [str(s) for s in (sources if sources is not None else (self.peer,))],
            "first": first,
        }
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return [bytes.fromhex(h) for h in json.loads(self.proc.stdout.readline())]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_testbed(name: str, *, nemo: bool = False) -> Iterator[Testbed]:
    """A test bed with a unique prefix made from ``name``, up for the block, down after."""
    bed = Testbed(unique_prefix(name), nemo=nemo)
    try:
        bed.up()
        yield bed
    finally:
        bed.down()


@contextlib.contextmanager
def scripted_mobile_node(node: Node, peer: IPv6Address) -> Iterator[ScriptedMobileNode]:
    """A :class:`ScriptedMobileNode` closed when the block ends."""
    scripted = ScriptedMobileNode(node, peer)
    try:
        yield scripted
    finally:
        scripted.close()


# ------------------------------------------------------------------------------------------
# The agent under test
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedBindingAck:
    """A BA as the scripted mobile node received it: the message, its Mobility Header octets
    and the addresses it came with."""

    ba: BindingAck
    mh: bytes
    src: IPv6Address
    dst: IPv6Address
    rh2_address: IPv6Address | None


def binding_ack(replies: list[bytes]) -> ReceivedBindingAck:
    """The first answer, which must be a Binding Acknowledgement."""
    assert replies, "no answer from the home agent"
    packet = parse_ipv6(replies[0])
    assert packet.upper_layer == IPPROTO_MH, packet.header_types
    message = parse_mh(packet.upper_layer_bytes)
    assert isinstance(message, BindingAck), message
    return ReceivedBindingAck(
        message, packet.upper_layer_bytes, packet.src, packet.dst, packet.rh2_address
    )


@dataclass
class AgentHandle:
    """A running ``nfq-mip6 run`` and its control socket."""

    proc: subprocess.Popen[str]
    node: Node
    socket_path: Path
    config: Path
    log_path: Path

    def control(self, cmd: str, **extra: Any) -> dict[str, Any]:
        return request(self.socket_path, {"cmd": cmd, **extra})

    def stats(self) -> dict[str, Any]:
        return self.control("stats")


Handle = TypeVar("Handle", bound=AgentHandle)


def write_agent_config(
    tmp: Path,
    role: str,
    queue_num: int,
    sections: str = "",
    *,
    log_level: str = "info",
    extra_keys: str = "",
) -> Path:
    """``tmp/ROLE.toml`` for ``nfq-mip6 run``: interface eth0, the control socket
    ``tmp/ROLE.sock``, no metrics listener, state under ``tmp/state``; ``extra_keys`` are more
    top-level keys (one per line), ``sections`` the role's tables."""
    config = tmp / f"{role}.toml"
    config.write_text(
        f"""role = "{role}"
interface = "eth0"
log_level = "{log_level}"
queue_num = {queue_num}
{extra_keys}control_socket = "{tmp / f"{role}.sock"}"
metrics_listen = ""
state_dir = "{tmp / "state"}"
{sections}"""
    )
    return config


def start_agent(
    node: Node,
    config: Path,
    socket_path: Path,
    *,
    extra_args: Sequence[str] = (),
    handle_type: type[Handle] = AgentHandle,  # type: ignore[assignment]
) -> Handle:
    """``nfq-mip6 run --config CONFIG [EXTRA_ARGS]`` in ``node``'s namespace, logging next to
    the control socket; returns once the control socket answers ``stats`` (15 s at most)."""
    log_path = socket_path.with_suffix(".log")
    with log_path.open("a") as log:
        proc = node.popen(
            [sys.executable, "-m", "nfq_mip6", "run", "--config", str(config), *extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    handle = handle_type(proc, node, socket_path, config, log_path)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {log_path.read_text()}")
        with contextlib.suppress(ControlError, OSError):
            if handle.stats().get("ok"):
                return handle
        if time.monotonic() > deadline:
            raise AssertionError(f"agent did not come up: {log_path.read_text()}")
        time.sleep(0.05)


def ip(*args: str) -> None:
    """``ip ARGS`` in the test's own namespace; raises when it fails."""
    subprocess.run(["ip", *args], check=True)


def ns_run(ns: str, *argv: str, check: bool = True) -> str:
    """``argv`` inside network namespace ``ns``; its stdout (an AssertionError with stderr
    when it fails and ``check``)."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{argv}: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def running_home_agent(
    node: Node,
    config: Path,
    socket_path: Path,
    flush: Callable[[Node], None] | None = None,
) -> Iterator[AgentHandle]:
    """A home agent on ``node``, started on a kernel without a previous HA's state and
    stopped at the end, what it deliberately leaves (tunnels, rules, proxies) removed by
    ``flush`` (default :func:`flush_ha_kernel_state`) before and after."""
    clean = flush if flush is not None else flush_ha_kernel_state
    clean(node)
    handle = start_agent(node, config, socket_path)
    try:
        yield handle
    finally:
        stop_agent(handle)
        clean(node)


def stop_agent(handle: AgentHandle) -> int:
    """SIGTERM (kill after 10 s); the exit status."""
    return terminate(handle.proc)


def control_answers(socket_path: Path) -> bool:
    """The agent behind ``socket_path`` answers ``version`` within 0.5 s."""
    try:
        return bool(request(socket_path, {"cmd": "version"}, timeout=0.5).get("ok"))
    except ControlError:
        return False


HA_RULE_PREFS = ("938", "939", "940", "941")


def flush_ha_kernel_state(
    node: Node, rule_prefs: Sequence[str] = HA_RULE_PREFS, reset_tunnel_source: bool = True
) -> None:
    """What a stopped HA deliberately leaves (tunnels, decap, rules, proxies): remove it."""
    for table in ("6275", "6276"):
        node.run(["ip", "-6", "route", "flush", "table", table], check=False)
    for pref in rule_prefs:
        node.run(["ip", "-6", "rule", "del", "pref", pref], check=False)
    node.run(["ip", "-6", "neigh", "flush", "proxy"], check=False)
    if reset_tunnel_source:
        node.run(["ip", "sr", "tunsrc", "set", "::"], check=False)


# ------------------------------------------------------------------------------------------
# The MN away from home
# ------------------------------------------------------------------------------------------


def leave_home(testbed: Testbed, link: str, prefix: str) -> None:
    """Move the MN to ``link`` and forget the previous link (HoA, home SLAAC address, home
    prefix route, home routers); back once it has an address in ``prefix``."""
    mn = testbed.node("mn")
    testbed.move(link)  # type: ignore[arg-type]
    mn.run(["ip", "-6", "addr", "flush", "dev", MN_INTERFACE, "scope", "site"], check=False)
    mn.run(["ip", "-6", "route", "flush", "dev", MN_INTERFACE, "proto", "ra"], check=False)
    mn.run(["ip", "-6", "route", "del", HOME_PREFIX, "dev", MN_INTERFACE], check=False)
    testbed.solicit_router()
    testbed.wait_for_address(prefix)


@contextlib.contextmanager
def mn_away(testbed: Testbed, home_address: IPv6Address) -> Iterator[None]:
    """The MN on visitnet with its CoA; its HoA off eth0 (else the home prefix is on-link)."""
    testbed.reset_mn()
    mn = testbed.node("mn")
    leave_home(testbed, "visitnet", VISITNET_PREFIX)
    try:
        yield
    finally:
        mn.run(
            ["ip", "-6", "addr", "add", f"{home_address}/64", "dev", MN_INTERFACE, "nodad"],
            check=False,
        )
        testbed.reset_mn()


@contextlib.contextmanager
def mn_tunnel_endpoint(
    node: Node, home_address: IPv6Address, care_of: IPv6Address, home_agent: IPv6Address
) -> Iterator[None]:
    """The MN's side of the bidirectional tunnel by hand (End.DT6 decap of packets from the
    HA to the CoA, encap.red reverse tunnel from the HoA), as the MN runtime would set it."""
    hoa, coa = home_address, care_of
    steps = [
        ["ip", "-6", "addr", "add", f"{hoa}/128", "dev", "lo", "nodad"],
        ["ip", "-6", "rule", "add", "pref", "100", "to", f"{coa}/128", "ipproto", "41",
         "lookup", "100"],
        ["ip", "-6", "rule", "add", "pref", "1000", "lookup", "local"],
        ["ip", "-6", "rule", "del", "pref", "0", "lookup", "local"],
        ["ip", "-6", "route", "add", f"{coa}/128", "encap", "seg6local", "action", "End.DT6",
         "table", "local", "dev", MN_INTERFACE, "table", "100"],
        ["ip", "-6", "rule", "add", "pref", "50", "from", str(hoa), "lookup", "200"],
        ["ip", "-6", "route", "add", "default", "encap", "seg6", "mode", "encap.red", "segs",
         str(home_agent), "dev", MN_INTERFACE, "table", "200"],
    ]  # fmt: skip
    undo = [
        ["ip", "-6", "route", "flush", "table", "200"],
        ["ip", "-6", "rule", "del", "pref", "50"],
        ["ip", "-6", "route", "flush", "table", "100"],
        ["ip", "-6", "rule", "add", "pref", "0", "lookup", "local"],
        ["ip", "-6", "rule", "del", "pref", "1000", "lookup", "local"],
        ["ip", "-6", "rule", "del", "pref", "100"],
        ["ip", "-6", "addr", "del", f"{hoa}/128", "dev", "lo"],
    ]
    try:
        for step in steps:
            node.run(step)
        yield
    finally:
        for step in undo:
            node.run(step, check=False)


@contextlib.contextmanager
def netns_with_home_link(name: str, address: str = HA_ADDRESS) -> Iterator[str]:
    """A namespace ``name`` with a veth ``eth1`` holding ``address`` (default the HOWTO HA
    address, as the image's default configuration has it on eth1); deleted at the end."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "add", "eth1", "type", "veth", "peer", "name", "peer1"],
            ["link", "set", "lo", "up"],
            ["link", "set", "eth1", "up"],
            ["link", "set", "peer1", "up"],
            ["-6", "addr", "add", f"{address}/64", "dev", "eth1", "nodad"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# ------------------------------------------------------------------------------------------
# A mobile network on the bare kernel (RFC 3963): the dataplane tests without agents
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NemoHosts:
    """The namespaces of :func:`nemo_kernel_hosts` and the addresses they hold::

        cn (c0) ── (hc0) ha (hm0) ── (m0) mr (l0) ── (n0) mnn
                         ha: hh0 ── hh1 (its home link, a veth pair)

    The mobile router ``mr`` has two care-of addresses on ``m0`` (a CoA change without a
    move) and ``MR_LAN`` on its LAN ``l0``; the mobile network node ``mnn`` routes through
    it. Nothing runs in them: the tests drive the dataplanes directly."""

    cn: str
    ha: str
    mr: str
    mnn: str

    HA = IPv6Address("2001:db8:a::1")
    HOME_PREFIX = "2001:db8:a::/64"
    HOA = IPv6Address("2001:db8:a::4")
    CN = IPv6Address("2001:db8:c::2")
    COA = IPv6Address("2001:db8:b::2")
    COA2 = IPv6Address("2001:db8:b::3")
    MNP = "2001:db8:77::/48"
    MR_LAN = IPv6Address("2001:db8:77:1::1")
    MNN = IPv6Address("2001:db8:77:1::5")


@contextlib.contextmanager
def nemo_kernel_hosts(tag: str) -> Iterator[NemoHosts]:
    """Build the :class:`NemoHosts` namespaces ``<tag>-cn``, ``-ha``, ``-mr``, ``-mnn``;
    deleted at the end."""
    hosts = NemoHosts(f"{tag}-cn", f"{tag}-ha", f"{tag}-mr", f"{tag}-mnn")
    h = NemoHosts
    try:
        for ns in (hosts.cn, hosts.ha, hosts.mr, hosts.mnn):
            ip("netns", "add", ns)
        for ns, dev, peer, peer_ns in (
            (hosts.cn, "c0", "hc0", hosts.ha),
            (hosts.mr, "m0", "hm0", hosts.ha),
            (hosts.mr, "l0", "n0", hosts.mnn),
        ):
            ip("-n", ns, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", peer_ns)
        ip("-n", hosts.ha, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
        for ns, devs in (
            (hosts.cn, ("lo", "c0")),
            (hosts.mr, ("lo", "m0", "l0")),
            (hosts.mnn, ("lo", "n0")),
            (hosts.ha, ("lo", "hc0", "hm0", "hh0", "hh1")),
        ):
            for dev in devs:
                ip("-n", ns, "link", "set", dev, "up")
        for ns, address, dev in (
            (hosts.cn, f"{h.CN}/64", "c0"),
            (hosts.ha, "2001:db8:c::1/64", "hc0"),
            (hosts.ha, "2001:db8:b::1/64", "hm0"),
            (hosts.ha, f"{h.HA}/64", "hh0"),
            (hosts.mr, f"{h.COA}/64", "m0"),
            (hosts.mr, f"{h.COA2}/64", "m0"),
            (hosts.mr, f"{h.MR_LAN}/64", "l0"),
            (hosts.mnn, f"{h.MNN}/64", "n0"),
        ):
            ip("-n", ns, "-6", "addr", "add", address, "dev", dev, "nodad")
        for ns, gateway in (
            (hosts.cn, "2001:db8:c::1"),
            (hosts.mr, "2001:db8:b::1"),
            (hosts.mnn, str(h.MR_LAN)),
        ):
            ip("-n", ns, "-6", "route", "add", "default", "via", gateway)
        yield hosts
    finally:
        for ns in (hosts.cn, hosts.ha, hosts.mr, hosts.mnn):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


# ------------------------------------------------------------------------------------------
# Polling
# ------------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float) -> bool:
    """Poll every 20 ms; False on timeout (the caller asserts with a useful message)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
