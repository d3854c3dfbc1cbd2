"""Shared by the modules on the cluster test bed (``nfq-mip6 testbed up --cluster 3``):
bringing the bed up, asking the hosts' agents, running the MN agent, and watching the MN's
Mobility Header traffic on its link (docs/cluster.md)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import IO, Any

from nfq_mip6.control import ControlError, request
from nfq_mip6.dataplane import TUNNEL_TABLE
from nfq_mip6.testbed import Testbed, unique_prefix
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.cluster import VHA_NAME, VMAC, cluster_hosts
from nfq_mip6.testbed.netns import netns_pids
from nfq_mip6.testbed.topology import HA_ADDRESS, MN_HOME_ADDRESS
from tests.support.bu_load import LoadRecord

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def cluster_testbed(size: int = 3, agent_env: dict[str, str] | None = None) -> Iterator[Testbed]:
    """The bed, up; ``agent_env`` (``NFQ_MIP6_HA__...`` overrides) is in the environment of
    the processes it starts, and only theirs."""
    testbed = Testbed(unique_prefix("c"), cluster=size)
    saved = {key: os.environ.get(key) for key in agent_env or {}}
    try:
        os.environ.update(agent_env or {})
        try:
            testbed.up(timeout=30.0)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        yield testbed
    finally:
        testbed.down()


def control(bed: Testbed, host: str, cmd: str) -> dict[str, Any]:
    return request(cluster.control_socket(bed, host), {"cmd": cmd}, timeout=5.0)


def cluster_status(bed: Testbed, host: str) -> dict[str, Any]:
    """What ``nfq-mip6 cluster status --json`` prints for the host's agent."""
    return request(
        cluster.control_socket(bed, host), {"cmd": "cluster", "action": "status"}, timeout=5.0
    )


def agent_log(bed: Testbed, host: str, lines: int = 30) -> str:
    path = cluster.host_dir(bed, host) / "agent.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def role(bed: Testbed, host: str) -> str:
    return str(cluster_status(bed, host)["role"])


def cached(bed: Testbed, host: str) -> list[tuple[str, str]]:
    try:
        bindings = control(bed, host, "cache")["bindings"]
    except (ControlError, OSError):
        return []
    return [(b["home_address"], b["care_of_address"]) for b in bindings]


def cache_rows(bed: Testbed, host: str) -> list[dict[str, Any]]:
    """The host agent's binding cache as ``nfq-mip6 cache --json`` lists it."""
    rows: list[dict[str, Any]] = control(bed, host, "cache")["bindings"]
    return rows


def tunnel_route(bed: Testbed, host: str) -> bool:
    routes = bed.node(host).run(["ip", "-6", "route", "show", "table", "all", MN_HOME_ADDRESS])
    return "encap seg6" in routes.stdout


def mn_events(mn_socket: Path) -> list[str]:
    return [what for _t, what in request(mn_socket, {"cmd": "stats"})["mobile_node"]["events"]]


def mn_timed_events(mn_socket: Path) -> list[tuple[float, str]]:
    """The MN's events with their times (its monotonic clock, as ``time.monotonic()``)."""
    return [
        (float(t), what)
        for t, what in request(mn_socket, {"cmd": "stats"})["mobile_node"]["events"]
    ]


def last_bu_sequence(events: list[str]) -> int:
    return max(int(e.split()[1].removeprefix("seq=")) for e in events if e.startswith("bu seq="))


def start_mn(bed: Testbed, log: IO[str]) -> subprocess.Popen[str]:
    """The MN agent of the bed (its control socket: ``bed.run_dir / "mn.sock"``)."""
    return bed.node("mn").popen(
        [sys.executable, "-m", "nfq_mip6", "run", "--config", str(cluster.mn_config_path(bed))],
        stdout=log,
        stderr=log,
    )


def etcd_pid(bed: Testbed, host: str) -> int:
    """The PID of the etcd member running on ``host``."""
    for pid in netns_pids(bed.netns_name(host)):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "etcd":
                return pid
    raise AssertionError(f"no etcd member runs on {host}")


def pause(pid: int, paused: bool) -> None:
    os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)


def agent_pid(bed: Testbed, host: str) -> int:
    """The PID of the HA agent (``nfq-mip6 run``) on ``host``."""
    for pid in netns_pids(bed.netns_name(host)):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"nfq_mip6" in argv and b"run" in argv:
                return pid
    raise AssertionError(f"no HA agent runs on {host}")


# ------------------------------------------------------------------------------------------
# etcd as the hosts see it (etcdctl in a host's namespace, on its own member)
# ------------------------------------------------------------------------------------------

BINDING_PREFIX = f"/nfq-mip6/v1/{VHA_NAME}/b/"


def etcdctl(bed: Testbed, host: str, *args: str, timeout: float = 20.0) -> str:
    url = next(h.etcd_client_url for h in cluster_hosts(bed.cluster_size) if h.name == host)
    done = bed.node(host).run(
        ["env", "ETCDCTL_API=3", "etcdctl", "--endpoints", url, *args],
        check=False,
        timeout=timeout,
    )
    return done.stdout


def etcd_bindings(bed: Testbed, host: str) -> dict[str, dict[str, Any]]:
    """The binding records in etcd now: home address -> record (coa, seq, exp, w...)."""
    out = etcdctl(bed, host, "get", "--prefix", BINDING_PREFIX, "-w", "json")
    kvs = json.loads(out or "{}").get("kvs", [])
    return {
        _unb64(kv["key"]).removeprefix(BINDING_PREFIX): json.loads(_unb64(kv["value"]))
        for kv in kvs
    }


@dataclass(frozen=True)
class KeyEvent:
    """One revision of a key: the record put there, or ``None`` for a deletion."""

    key: str
    revision: int
    record: dict[str, Any] | None


def key_history(
    bed: Testbed, host: str, key: str, *, prefix: bool = False, listen: float = 2.0
) -> list[KeyEvent]:
    """Every change of ``key`` (of every key under it with ``prefix``) since revision 1
    (etcd's watch from revision 1, read for ``listen`` seconds), in revision order. Nothing
    here compacts the test bed's etcd."""
    url = next(h.etcd_client_url for h in cluster_hosts(bed.cluster_size) if h.name == host)
    done = bed.node(host).run(
        ["timeout", str(listen), "env", "ETCDCTL_API=3", "etcdctl", "--endpoints", url,
         "watch", "--rev=1", *(["--prefix"] if prefix else []), key, "-w", "json"],
        check=False,
        timeout=listen + 10.0,
    )  # fmt: skip
    events = []
    for line in done.stdout.splitlines():
        if not line.startswith("{"):
            continue
        reply = json.loads(line)
        assert not reply.get("CompactRevision"), reply
        for event in reply.get("Events") or []:
            kv = event["kv"]
            deleted = event.get("type") == 1  # mvccpb.DELETE
            record = None if deleted else json.loads(_unb64(kv["value"]))
            events.append(KeyEvent(_unb64(kv["key"]), int(kv["mod_revision"]), record))
    return sorted(events, key=lambda e: e.revision)


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


# ------------------------------------------------------------------------------------------
# VRRP and the home link's switch
# ------------------------------------------------------------------------------------------


def drop_vrrp(bed: Testbed, host: str, dropped: bool, *, check: bool = True) -> None:
    """The host's kernel drops (or again accepts) every VRRP advertisement it receives
    (IPv6 next header 112, RFC 5798 §5.1): its keepalived hears no other router."""
    op = "-I" if dropped else "-D"
    rule = ["PREROUTING", "-p", "112", "-j", "DROP"]
    bed.node(host).run(["ip6tables", "-w", "-t", "raw", op, *rule], check=check)


def _home_ports(bed: Testbed) -> list[str]:
    return [f"{h.name}-eth0" for h in cluster_hosts(bed.cluster_size)]


def vmac_ports(bed: Testbed) -> list[str]:
    """The home bridge's ports where it has an entry for the virtual MAC."""
    out = ip_switch(bed, ["bridge", "-j", "fdb", "show", "br", "homenet"])
    return [e["ifname"] for e in json.loads(out or "[]") if e.get("mac") == VMAC]


def ip_switch(bed: Testbed, argv: list[str]) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", bed.netns_name("sw"), *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=10.0,
    )
    return done.stdout


def home_link_delivers_vmac(bed: Testbed, host: str | None) -> None:
    """Where the home link's switch sends frames to the virtual MAC: to ``host``'s port
    only (a static entry), or, with ``None``, to every HA host's port (no entry: unknown
    unicast is flooded). Learning is off on the HA hosts' ports meanwhile, so the hosts'
    own frames from the virtual MAC do not move it; :func:`home_link_learns` undoes this."""
    for port in _home_ports(bed):
        ip_switch(bed, ["bridge", "link", "set", "dev", port, "learning", "off"])
    for port in vmac_ports(bed):
        ip_switch(bed, ["bridge", "fdb", "del", VMAC, "dev", port, "master"])
    if host is not None:
        ip_switch(bed, ["bridge", "fdb", "replace", VMAC, "dev", f"{host}-eth0", "master",
                        "static"])  # fmt: skip


def home_link_learns(bed: Testbed) -> None:
    """The switch learns again (no entry for the virtual MAC until a host sends from it)."""
    for port in vmac_ports(bed):
        ip_switch(bed, ["bridge", "fdb", "del", VMAC, "dev", port, "master"])
    for port in _home_ports(bed):
        ip_switch(bed, ["bridge", "link", "set", "dev", port, "learning", "on"])


# A sniffer on the MN's eth0 (run inside the MN's namespace): one JSON line per Mobility
# Header message, in or out, with the whole Ethernet frame (to replay it as it was).
_SNIFFER = r"""
import json, socket, sys
from nfq_mip6.wire.ipv6 import parse_ipv6
from nfq_mip6.wire.mh import BindingAck, BindingUpdate, parse_mh
# ETH_P_ALL: only those sockets see the frames the host sends.
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
sock.bind(("eth0", 0))
print("ready", flush=True)
while True:
    frame, address = sock.recvfrom(65535)
    if frame[12:14] != b"\x86\xdd":
        continue
    try:
        packet = parse_ipv6(frame[14:])
        if packet.upper_layer != 135:
            continue
        msg = parse_mh(packet.raw[packet.upper_offset:packet.end])
    except Exception:
        continue
    if isinstance(msg, (BindingUpdate, BindingAck)):
        line = {"out": address[2] == socket.PACKET_OUTGOING, "kind": type(msg).__name__,
                "seq": msg.sequence, "status": getattr(msg, "status", None), "frame": frame.hex()}
        print(json.dumps(line), flush=True)
"""

_SEND = r"""
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("eth0", 0))
sock.send(bytes.fromhex(sys.argv[1]))
"""


@dataclass(frozen=True)
class MobilityFrame:
    out: bool
    kind: str
    seq: int
    status: int | None
    frame: str


class MobilitySniffer:
    """Every BU and BA on the MN's link, as the MN's interface saw them."""

    def __init__(self, bed: Testbed, path: Path) -> None:
        self.bed = bed
        self.path = path
        self._out = path.open("w")
        self.proc = bed.node("mn").popen(
            [sys.executable, "-c", _SNIFFER], stdout=self._out, stderr=subprocess.STDOUT
        )

    def ready(self) -> bool:
        return self.path.read_text().startswith("ready")

    def frames(self) -> list[MobilityFrame]:
        seen = []
        for line in self.path.read_text().splitlines():
            if line.startswith("{") and line.endswith("}"):
                with contextlib.suppress(ValueError):
                    seen.append(MobilityFrame(**json.loads(line)))
        return seen

    def replay(self, frame: MobilityFrame) -> None:
        """Send the frame again from the MN's eth0, byte for byte."""
        self.bed.node("mn").run([sys.executable, "-c", _SEND, frame.frame])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._out.close()


# ------------------------------------------------------------------------------------------
# Many bindings at once: preloaded through the group-commit store
# ------------------------------------------------------------------------------------------

# Preloaded home addresses: fec0:106:2700::1:0 and up on the home prefix (the bed's own
# addresses are below ::1:0); care-of addresses cycle through 1 000 on visitnet's prefix.
PRELOAD_HOA_BASE = "fec0:106:2700::1:0"
PRELOAD_COA_BASE = "fec0:106:1100::1:0"

_PRELOAD = r"""
import json, select, sys, time
from ipaddress import IPv6Address
from nfq_mip6.store import BindingCommit, StoredBinding
from nfq_mip6.store.etcd import EtcdBindingStore
from nfq_mip6.store.etcd_gateway import EtcdSettings
count, name, hoa, coa, lifetime = sys.argv[1:6]
count, lifetime = int(count), int(lifetime)
store = EtcdBindingStore(EtcdSettings(tuple(sys.argv[6:]), name, commit_timeout=120.0))
started = time.perf_counter()
expiry = time.time() + lifetime
for i in range(count):
    row = StoredBinding("ha", IPv6Address(int(IPv6Address(hoa)) + i),
                        IPv6Address(int(IPv6Address(coa)) + i % 1000), 1, 0xC000, lifetime, expiry)
    store.submit(BindingCommit((row,)), i)
done = 0
while done < count:
    select.select([store.completions()], [], [], 1.0)
    results = store.completions().drain()
    failed = [str(error) for _token, error in results if error is not None]
    if failed:
        raise SystemExit("preload failed: " + failed[0])
    done += len(results)
store.close()
print(json.dumps({"bindings": count, "seconds": time.perf_counter() - started}))
"""


def preload_bindings(bed: Testbed, host: str, count: int, lifetime: int = 400) -> float:
    """Commit ``count`` home bindings (sequence 1, ``lifetime`` s) to the virtual HA's store
    from ``host``'s namespace through the group-commit path, as if an active host had
    accepted them; the standbys follow. Returns the seconds it took."""
    hosts = cluster_hosts(bed.cluster_size)
    ordered = [h for h in hosts if h.name == host] + [h for h in hosts if h.name != host]
    done = bed.node(host).run(
        [sys.executable, "-c", _PRELOAD, str(count), VHA_NAME, PRELOAD_HOA_BASE,
         PRELOAD_COA_BASE, str(lifetime), *(h.etcd_client_url for h in ordered)],
        timeout=300.0,
    )  # fmt: skip
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def preloaded_home_addresses(count: int) -> set[str]:
    base = int(IPv6Address(PRELOAD_HOA_BASE))
    return {str(IPv6Address(base + i)) for i in range(count)}


def kernel_entries(bed: Testbed, host: str) -> tuple[set[str], set[str]]:
    """(destinations of the tunnel routes in the agent's table, proxied addresses) in
    ``host``'s kernel."""
    node = bed.node(host)
    routes = node.run(["ip", "-6", "route", "show", "table", str(TUNNEL_TABLE)], timeout=60.0)
    proxies = node.run(["ip", "-6", "neigh", "show", "proxy"], timeout=60.0)

    def first_words(text: str) -> set[str]:
        return {str(IPv6Address(line.split()[0].split("/")[0])) for line in text.splitlines()
                if line.strip() and ":" in line.split()[0]}  # fmt: skip

    return first_words(routes.stdout), first_words(proxies.stdout)


# ------------------------------------------------------------------------------------------
# Scripted MNs (tests/support/bu_load.py) on the CN's link
# ------------------------------------------------------------------------------------------

# Their home addresses on the home prefix from fec0:106:2700::2:0, their care-of addresses on
# the CN's link (internet, fec0:106:2300::/64) from ::3:0, added to the CN's eth0.
SCRIPTED_HOA_BASE = IPv6Address("fec0:106:2700::2:0")
SCRIPTED_COA_BASE = IPv6Address("fec0:106:2300::3:0")


def scripted_load(
    bed: Testbed,
    count: int,
    *,
    rate: float,
    seconds: float,
    register: bool,
    first_sequence: int = 0,
) -> LoadRecord:
    """``count`` scripted MNs on the CN's link (unauthenticated BUs: the bed's agents must run
    with ``require_authentication = false``): their first registrations if ``register``, then
    ``seconds`` of refreshes at ``rate`` BU/s, then retransmissions until every MN's last BU
    is answered. The record of what they sent and received."""
    cn = bed.node("cn")
    have = set(cn.ipv6_addresses("eth0"))
    lines = [
        f"addr add {SCRIPTED_COA_BASE + i}/64 dev eth0 nodad"
        for i in range(count)
        if str(SCRIPTED_COA_BASE + i) not in have
    ]
    if lines:
        cn.run(["ip", "-6", "-batch", "-"], input_text="\n".join(lines) + "\n")
    argv = [
        sys.executable, "-m", "tests.support.bu_load", "--ha", HA_ADDRESS,
        "--hoa-base", str(SCRIPTED_HOA_BASE), "--coa-base", str(SCRIPTED_COA_BASE),
        "--interface", "eth0", "--mobile-nodes", str(count), "--rate", str(rate),
        "--seconds", str(seconds), "--first-sequence", str(first_sequence),
    ]  # fmt: skip
    if not register:
        argv.append("--no-register")
    done = subprocess.run(
        cn.argv(argv), cwd=REPO, capture_output=True, text=True, check=False,
        timeout=seconds + 120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the scripted MNs failed: {done.stderr[-3000:]}")
    return LoadRecord.from_json(json.loads(done.stdout))
