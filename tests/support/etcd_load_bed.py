"""A Home Agent pair on a 3-member etcd cluster, loaded by scripted Mobile Nodes.

Namespaces (names ``<prefix>-m``, ``-h``, ``-s``, ``-e``):

* ``m``: the scripted MNs (:mod:`tests.support.bu_load`), one care-of address each on ``m0``
  (``2001:db8:b::1:0/112`` counting up), their home network reached through ``h``;
* ``h``: the **active** HA agent on ``hh0`` (HA address ``2001:db8:a::1``, home prefix
  ``2001:db8:a::/64``; ``hh0``'s veth peer stays in ``h``), facing the MNs on ``h0``;
* ``s``: a **warm standby** agent (``--cluster-role standby``) on its own ``sb0``, the HA
  address and prefix given in its configuration (as on a VRRP backup);
* ``e``: three etcd 3.4 members (``10.99.0.11``..``13``) on a management bridge that ``h``
  and ``s`` reach through their ``mgmt0`` (IPv4).

Both agents list every member in ``[cluster] endpoints``; :meth:`EtcdLoadBed.start_agents`
puts a chosen member first (the one each agent talks to until it fails). Built by the
etcd leader test and ``bench/bench_etcd_leader_loss.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from nfq_mip6.control import ControlError, request
from tests.support.bu_load import LoadRecord
from tests.support.etcd import EtcdCluster, EtcdServer
from tests.support.processes import terminate

REPO = Path(__file__).resolve().parents[2]
HA = IPv6Address("2001:db8:a::1")
HOME_PREFIX = "2001:db8:a::/64"
HOA_BASE = IPv6Address("2001:db8:a::1:0")
COA_BASE = IPv6Address("2001:db8:b::1:0")
HA_VISIT = IPv6Address("2001:db8:b::1")
ETCD_HOSTS = ("10.99.0.11", "10.99.0.12", "10.99.0.13")
MGMT = {"h": "10.99.0.2", "s": "10.99.0.3"}
QUEUE_NUM = 5
NAME = "vha-load"


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    socket_path: Path
    log_path: Path

    def control(self, cmd: str, **extra: Any) -> dict[str, Any]:
        return request(self.socket_path, {"cmd": cmd, **extra})

    def cache(self) -> dict[str, tuple[str, int]]:
        """The agent's binding cache: home address -> (care-of address, sequence)."""
        rows = self.control("cache")["bindings"]
        return {r["home_address"]: (r["care_of_address"], int(r["sequence"])) for r in rows}


@dataclass
class EtcdLoadBed:
    prefix: str
    tmp: Path
    mobile_nodes: int
    log_level: str = "info"
    commit_timeout_ms: int = 1000
    etcd_args: tuple[str, ...] = ()
    """Extra arguments of every etcd member (e.g. ``--election-timeout``)."""
    etcd: EtcdCluster = field(init=False)
    agents: dict[str, Agent] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _ip(self, *argv: str) -> None:
        subprocess.run(["ip", *argv], check=True)

    def _in(self, name: str, *argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns(name), *argv], check=True)

    def build(self) -> None:
        for name in ("m", "h", "s", "e"):
            self._ip("netns", "add", self.ns(name))
            self.created.append(self.ns(name))
            self._ip("-n", self.ns(name), "link", "set", "lo", "up")
        m, h, s, e = (self.ns(n) for n in "mhse")
        self._ip("-n", m, "link", "add", "m0", "type", "veth", "peer", "name", "h0", "netns", h)
        self._ip("-n", h, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
        self._ip("-n", s, "link", "add", "sb0", "type", "veth", "peer", "name", "sb1")
        for ns, devs in ((m, ("m0",)), (h, ("h0", "hh0", "hh1")), (s, ("sb0", "sb1"))):
            for dev in devs:
                self._ip("-n", ns, "link", "set", dev, "up")
        lines = [f"addr add {COA_BASE + i}/64 dev m0 nodad" for i in range(self.mobile_nodes)]
        subprocess.run(
            ["ip", "-6", "-n", m, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
            check=True,
        )  # fmt: skip
        self._ip("-n", m, "-6", "route", "add", HOME_PREFIX, "via", str(HA_VISIT))
        self._ip("-n", h, "-6", "addr", "add", f"{HA_VISIT}/64", "dev", "h0", "nodad")
        self._ip("-n", h, "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
        for name in ("h", "s"):
            self._in(name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # the management link: a bridge in e, one leg per HA namespace
        self._ip("-n", e, "link", "add", "mgmt", "type", "bridge")
        for host in ETCD_HOSTS:
            self._ip("-n", e, "addr", "add", f"{host}/24", "dev", "mgmt")
        self._ip("-n", e, "link", "set", "mgmt", "up")
        for name in ("h", "s"):
            self._ip("-n", e, "link", "add", f"m-{name}", "type", "veth", "peer", "name",
                     "mgmt0", "netns", self.ns(name))  # fmt: skip
            self._ip("-n", e, "link", "set", f"m-{name}", "master", "mgmt", "up")
            self._ip("-n", self.ns(name), "addr", "add", f"{MGMT[name]}/24", "dev", "mgmt0")
            self._ip("-n", self.ns(name), "link", "set", "mgmt0", "up")
        self.etcd = EtcdCluster(self.tmp, ETCD_HOSTS, e, extra_args=self.etcd_args)
        self.etcd.start()

    def _agent(self, name: str, endpoints: Sequence[str], standby: bool) -> Agent:
        directory = self.tmp / name
        directory.mkdir(exist_ok=True)
        sock = directory / "ha.sock"
        interface = "sb0" if standby else "hh0"
        given = f'address = "{HA}"\nhome_prefix = "{HOME_PREFIX}"\n' if standby else ""
        config = directory / "ha.toml"
        config.write_text(
            f'role = "ha"\ninterface = "{interface}"\nlog_level = "{self.log_level}"\n'
            f'queue_num = {QUEUE_NUM}\ncontrol_socket = "{sock}"\nmetrics_listen = ""\n'
            f'state_dir = "{directory}"\n'
            f"[ha]\nmax_binding_lifetime = 1000\nmax_tunnel_nr = {self.mobile_nodes + 10}\n"
            f"require_authentication = false\n{given}"
            f'[cluster]\nendpoints = {json.dumps(list(endpoints))}\nname = "{NAME}"\n'
            f"commit_timeout_ms = {self.commit_timeout_ms}\n"
        )
        log_path = directory / "agent.log"
        extra = ["--cluster-role", "standby"] if standby else []
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns("s" if standby else "h"), sys.executable,
                 "-m", "nfq_mip6", "run", "--config", str(config), *extra],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        agent = Agent(proc, sock, log_path)
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"agent {name} exited: {log_path.read_text()[-3000:]}")
            with contextlib.suppress(ControlError, OSError):
                if agent.control("stats").get("ok"):
                    return agent
            if time.monotonic() > deadline:
                raise AssertionError(f"agent {name} did not come up: {log_path.read_text()}")
            time.sleep(0.05)

    def start_agents(self, first: EtcdServer) -> None:
        """The active and the standby agent, both talking to ``first`` until it fails."""
        endpoints = [first.url] + [url for url in self.etcd.endpoints if url != first.url]
        self.agents["active"] = self._agent("active", endpoints, standby=False)
        self.agents["standby"] = self._agent("standby", endpoints, standby=True)

    def run_load(
        self,
        *,
        rate: float,
        seconds: float,
        first_sequence: int = 0,
        register: bool = True,
        kill: EtcdServer | None = None,
        kill_at: float | None = None,
        drain_timeout: float = 15.0,
    ) -> LoadRecord:
        """The scripted MNs' load from ``m`` (a child process there), killing ``kill``'s
        process ``kill_at`` s into it; the record of what they sent and received."""
        argv = [
            "ip", "netns", "exec", self.ns("m"), sys.executable, "-m", "tests.support.bu_load",
            "--ha", str(HA), "--hoa-base", str(HOA_BASE), "--coa-base", str(COA_BASE),
            "--interface", "m0", "--mobile-nodes", str(self.mobile_nodes),
            "--rate", str(rate), "--seconds", str(seconds),
            "--first-sequence", str(first_sequence), "--drain-timeout", str(drain_timeout),
        ]  # fmt: skip
        if not register:
            argv.append("--no-register")
        if kill is not None:
            assert kill.pid is not None and kill_at is not None
            argv += ["--kill-pid", str(kill.pid), "--kill-at", str(kill_at)]
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, check=False, timeout=seconds + 120,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"the MNs' load failed: {done.stderr.decode()[-3000:]}")
        if kill is not None and kill.process is not None:
            kill.process.wait(timeout=10)  # reaped here; killed by the load's process
        return LoadRecord.from_json(json.loads(done.stdout))

    def stored(self) -> dict[str, tuple[str, int]]:
        """The bindings etcd holds: home address -> (care-of address, sequence)."""
        prefix = f"/nfq-mip6/v1/{NAME}/b/"
        out: dict[str, tuple[str, int]] = {}
        for key, value in self.etcd.get_prefix(prefix).items():
            record = json.loads(value)
            out[key[len(prefix) :]] = (record["coa"], int(record["seq"]))
        return out

    def expected(self, record: LoadRecord) -> dict[str, tuple[str, int]]:
        """What every MN registered last: home address -> (care-of address, sequence)."""
        return {
            str(HOA_BASE + i): (str(COA_BASE + i), sequence)
            for i, sequence in enumerate(record.last_sequence)
        }

    def down(self) -> None:
        for agent in self.agents.values():
            terminate(agent.proc)
        with contextlib.suppress(AttributeError):
            self.etcd.stop()
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
