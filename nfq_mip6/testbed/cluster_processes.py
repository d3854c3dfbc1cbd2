"""Starting and stopping what runs on the cluster test bed's HA hosts (etcd members, HA
agents, keepalived), finding the active host and killing a host, for
:class:`~nfq_mip6.testbed.testbed.Testbed` with ``cluster=N`` (layout and configurations:
:mod:`nfq_mip6.testbed.cluster`).

Order on ``up()``: the ``vrrp.51`` macvlans, then the etcd members (healthy cluster), then
the agents (standbys: nobody holds the HA address yet), then keepalived on ha1 alone until
it is MASTER, then on the other hosts (``nopreempt``: ha1 stays active). Every process is
recorded by PID in the state file before the next one starts; ``down()`` kills what is left
in the namespaces anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from nfq_mip6.testbed.cluster import (
    MN_KEY_HEX,
    VMAC,
    VMAC_INTERFACE,
    ClusterHost,
    agent_config,
    cluster_command,
    cluster_hosts,
    etcd_argv,
    keepalived_config,
    mn_config,
    notify_script,
    vmac_sysctls,
    vmac_unspecified_drop,
)
from nfq_mip6.testbed.netns import TestbedError, ip, netns_pids, pid_alive, sysctl
from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.topology import HA_ADDRESS

if TYPE_CHECKING:
    from nfq_mip6.testbed.testbed import Testbed

__all__ = [
    "active_host",
    "became_master_at",
    "host_dir",
    "kill_host",
    "mn_config_path",
    "start",
]

ETCD_READY_S: Final = 30.0
AGENT_READY_S: Final = 20.0
MASTER_READY_S: Final = 15.0
# keepalived's track_script runs `nfq-mip6 cluster status --agent-only` (a failing agent
# moves the HA; etcd out of quorum does not: with the store tracked too, every host would go
# to FAULT and nobody would forward to the bindings already in the kernel).
TRACK_AGENT: Final = True


def host_dir(bed: Testbed, host: str) -> Path:
    """The run directory of one HA host: configs, logs, etcd data, the agent's socket."""
    return bed.run_dir / host


def control_socket(bed: Testbed, host: str) -> Path:
    return host_dir(bed, host) / "agent.sock"


def mn_config_path(bed: Testbed) -> Path:
    """The MN agent configuration the cluster test bed writes (its key, the HA address)."""
    return bed.run_dir / "mn.toml"


def start(bed: Testbed, pids: MutableMapping[str, int], save: Callable[[], None]) -> None:
    """Start everything on the HA hosts of ``bed`` (already wired); ``pids`` is the state
    file's record, ``save()`` writes it."""
    hosts = cluster_hosts(bed.cluster_size)
    key_file = bed.run_dir / "mn1.key"
    key_file.write_text(MN_KEY_HEX + "\n")
    key_file.chmod(0o600)
    mn_config_path(bed).write_text(mn_config(key_file, bed.run_dir))
    for host in hosts:
        host_dir(bed, host.name).mkdir(parents=True, exist_ok=True)
        _add_vmac_interface(bed.node(host.name))
    for host in hosts:
        pids[f"{host.name}/etcd"] = _start_etcd(bed, host, hosts)
        save()
    _wait_etcd(bed, hosts)
    for queue, host in enumerate(hosts):
        pids[f"{host.name}/agent"] = _start_agent(bed, host, hosts, key_file, queue)
        save()
    for host in hosts:
        _wait_agent(bed, host)
    for host in hosts:
        pids[f"{host.name}/keepalived"] = _start_keepalived(bed, host, TRACK_AGENT)
        save()
        if host.index == 1:
            _wait(
                lambda first=host.name: active_host(bed) == first,  # type: ignore[misc]
                MASTER_READY_S,
                f"keepalived on {host.name} to become MASTER "
                f"(log: {host_dir(bed, host.name) / 'keepalived.log'})",
            )


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _add_vmac_interface(node: Node) -> None:
    """``vrrp.51``: private-mode macvlan on eth0 with the virtual MAC and no autoconfigured
    link-local address (keepalived adopts it; it would create the same)."""
    ns = node.netns
    ip("link", "add", "link", "eth0", "name", VMAC_INTERFACE, "address", VMAC,
       "type", "macvlan", "mode", "private", netns=ns)  # fmt: skip
    ip("link", "set", VMAC_INTERFACE, "addrgenmode", "none", netns=ns)
    sysctl(ns, vmac_sysctls())
    node.run(vmac_unspecified_drop())
    ip("link", "set", VMAC_INTERFACE, "up", netns=ns)


def _start_etcd(bed: Testbed, host: ClusterHost, hosts: tuple[ClusterHost, ...]) -> int:
    directory = host_dir(bed, host.name)
    log = directory / "etcd.log"
    argv = etcd_argv(host, hosts, directory / "etcd", token=f"nfq-mip6-{bed.prefix}")
    with log.open("ab") as out:
        proc = bed.node(host.name).popen(argv, stdout=out, stderr=out, new_session=True)
    return proc.pid


def etcd_healthy(node: Node, host: ClusterHost) -> bool:
    done = node.run(
        ["curl", "-s", "-m", "1", f"{host.etcd_client_url}/health"], check=False, timeout=5.0
    )
    with contextlib.suppress(ValueError):
        return bool(json.loads(done.stdout or "{}").get("health") == "true")
    return False


def _wait_etcd(bed: Testbed, hosts: tuple[ClusterHost, ...]) -> None:
    for host in hosts:
        _wait(
            lambda h=host: etcd_healthy(bed.node(h.name), h),  # type: ignore[misc]
            ETCD_READY_S,
            f"the etcd member on {host.name} (log: {host_dir(bed, host.name) / 'etcd.log'})",
        )


def _start_agent(
    bed: Testbed, host: ClusterHost, hosts: tuple[ClusterHost, ...], key_file: Path, queue: int
) -> int:
    directory = host_dir(bed, host.name)
    config = directory / "agent.toml"
    config.write_text(agent_config(host, hosts, directory, key_file, queue_num=queue))
    log = directory / "agent.log"
    with log.open("ab") as out:
        proc = bed.node(host.name).popen(
            [sys.executable, "-m", "nfq_mip6", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            new_session=True,
        )
    return proc.pid


def agent_answers(bed: Testbed, host: str) -> bool:
    from nfq_mip6.control import ControlError, request

    try:
        return bool(request(control_socket(bed, host), {"cmd": "stats"}, timeout=2.0).get("ok"))
    except (ControlError, OSError):
        return False


def _wait_agent(bed: Testbed, host: ClusterHost) -> None:
    log = host_dir(bed, host.name) / "agent.log"
    _wait(
        lambda: agent_answers(bed, host.name),
        AGENT_READY_S,
        f"the HA agent on {host.name} (log: {log})",
    )


def _start_keepalived(bed: Testbed, host: ClusterHost, track: bool) -> int:
    directory = host_dir(bed, host.name)
    sock = control_socket(bed, host.name)
    notify = directory / "notify.sh"
    notify.write_text(notify_script(sys.executable, sock, directory / "notify.log"))
    notify.chmod(0o700)
    conf = directory / "keepalived.conf"
    track_command = (
        cluster_command(sys.executable, "status", sock, "--agent-only") if track else None
    )
    conf.write_text(keepalived_config(host, notify, track_command))
    conf.chmod(0o644)
    log = directory / "keepalived.log"
    argv = [
        "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
        "--use-file", str(conf),
        "--pid", str(directory / "keepalived.pid"),
        "--vrrp_pid", str(directory / "keepalived-vrrp.pid"),
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = bed.node(host.name).popen(argv, stdout=out, stderr=out, new_session=True)
    return proc.pid


def holds_ha_address(node: Node) -> bool:
    """The host's ``vrrp.51`` carries the HA address (its keepalived is MASTER)."""
    try:
        return HA_ADDRESS in node.ipv6_addresses(VMAC_INTERFACE)
    except TestbedError:
        return False


def host_attached(bed: Testbed, host: str) -> bool:
    """The host is alive: its home-link port at the switch is up and its keepalived runs
    (:func:`kill_host` kills it, with or without taking the links down)."""
    done = ip("-j", "link", "show", "dev", f"{host}-eth0", netns=bed.netns_name("sw"), check=False)
    with contextlib.suppress(OSError, ValueError, IndexError, KeyError):
        port_up = "UP" in json.loads(done.stdout or "[]")[0]["flags"]
        pidfile = host_dir(bed, host) / "keepalived.pid"
        return port_up and pid_alive(int(pidfile.read_text().split()[0]))
    return False


def active_host(bed: Testbed) -> str | None:
    """The live HA host whose ``vrrp.51`` holds the HA address (None: none; the first if
    several). A killed host keeps its kernel state, so only attached hosts count."""
    for host in cluster_hosts(bed.cluster_size):
        if holds_ha_address(bed.node(host.name)) and host_attached(bed, host.name):
            return host.name
    return None


def became_master_at(bed: Testbed, host: str) -> float | None:
    """Wall-clock time (``time.time()``) of the host's first MASTER notify, from its notify
    log (keepalived runs the script as it enters the state); None: never master."""
    path = host_dir(bed, host) / "notify.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "MASTER":
            with contextlib.suppress(ValueError):
                return float(parts[0])
    return None


def kill_host(bed: Testbed, host: str, carrier: bool = False) -> list[int]:
    """A host dies: SIGKILL every process in its namespace (agent, keepalived, etcd member).

    ``carrier`` False: its links go down at the switch (a powered-off host; the switch
    forgets the MAC addresses it learnt there). ``carrier`` True: the links stay up but the
    host's kernel drops every packet in and out (a hung host; the switch keeps sending the
    virtual MAC there until the new master's first frame). Returns the PIDs killed.
    """
    spec = bed.node_spec(host)
    killed = [pid for pid in netns_pids(bed.netns_name(host)) if pid != os.getpid()]
    # Stop them all first: keepalived's VRRP child gets SIGTERM when its parent dies and
    # would send a priority-0 advert (a graceful hand-over) before its own SIGKILL lands.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    if carrier:
        drop = "ip6tables -w -t raw -I PREROUTING -j DROP; ip6tables -w -t raw -I OUTPUT -j DROP"
        bed.node(host).run(["sh", "-c", drop])
    else:
        sw = bed.netns_name("sw")
        for iface in spec.interfaces:
            ip("link", "set", f"{host}-{iface.name}", "down", netns=sw)
    deadline = time.monotonic() + 5.0
    while any(pid_alive(pid) for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.01)
    return killed
