"""The Home Agent's sysctls on a read-only ``/proc/sys`` (what a container or pod has).

The agent reads each sysctl first and writes only values that differ; a required value it
cannot set ends the agent with exit status 1 and one line naming the sysctl and how to set
it, never a traceback. Here the read-only ``/proc/sys`` is a read-only bind mount in a
private mount namespace (``unshare -m``) inside a network namespace made for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

HA = "fec0:106:2700::2"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"h9sysctl-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "add", "eth1", "type", "veth", "peer", "name", "peer1"],
            ["link", "set", "lo", "up"],
            ["link", "set", "eth1", "up"],
            ["link", "set", "peer1", "up"],
            ["-6", "addr", "add", f"{HA}/64", "dev", "eth1", "nodad"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def sysctl(netns: str, *assignments: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", *assignments], check=True)


def run_agent_read_only_proc_sys(netns: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    config = tmp / "ha.toml"
    config.write_text(
        f"""role = "ha"
interface = "eth1"
log_level = "info"
queue_num = 23
control_socket = "{tmp / "ha.sock"}"
state_dir = "{tmp / "state"}"

[ha]
require_authentication = false
"""
    )
    script = (
        "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "
        "exec timeout --preserve-status -s TERM 4 "
        f"{sys.executable} -m nfq_mip6 run --config {config}"
    )
    return subprocess.run(
        ["ip", "netns", "exec", netns, "unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_required_sysctl_unset_on_read_only_proc_sys_exits_1_with_one_clear_line(
    netns: str, tmp_path: Path
) -> None:
    sysctl(netns, "net.ipv6.conf.all.forwarding=0")
    done = run_agent_read_only_proc_sys(netns, tmp_path)
    print(done.stderr)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "net.ipv6.conf.all.forwarding" in line]
    assert len(lines) == 1, done.stderr
    assert "--sysctl net.ipv6.conf.all.forwarding=1" in lines[0]


def test_sysctls_already_right_on_read_only_proc_sys_let_the_agent_run(
    netns: str, tmp_path: Path
) -> None:
    sysctl(
        netns,
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.eth1.proxy_ndp=1",
        "net.ipv6.conf.all.proxy_ndp=1",
        "net.ipv6.neigh.eth1.proxy_delay=0",
    )
    done = run_agent_read_only_proc_sys(netns, tmp_path)  # runs until `timeout` sends TERM
    print(done.stderr)
    assert done.returncode == 0, done.stderr
    assert "cannot be set here" not in done.stderr
