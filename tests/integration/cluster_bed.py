"""Shared by the modules on the cluster test bed (``nfq-mip6 testbed up --cluster 3``):
bringing the bed up, asking the hosts' agents, running the MN agent, and watching the MN's
Mobility Header traffic on its link (docs/cluster.md)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nfq_mip6.control import ControlError, request
from nfq_mip6.testbed import Testbed, unique_prefix
from nfq_mip6.testbed import cluster_processes as cluster
from nfq_mip6.testbed.netns import netns_pids
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS


@contextlib.contextmanager
def cluster_testbed(size: int = 3) -> Iterator[Testbed]:
    testbed = Testbed(unique_prefix("c"), cluster=size)
    try:
        testbed.up(timeout=30.0)
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


def tunnel_route(bed: Testbed, host: str) -> bool:
    routes = bed.node(host).run(["ip", "-6", "route", "show", "table", "all", MN_HOME_ADDRESS])
    return "encap seg6" in routes.stdout


def mn_events(mn_socket: Path) -> list[str]:
    return [what for _t, what in request(mn_socket, {"cmd": "stats"})["mobile_node"]["events"]]


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
