"""The Home Agent process in a namespace of its own: sysctls on a read-only ``/proc/sys``
(what a container or pod has), and SIGHUP reload.

The agent reads each sysctl first and writes only values that differ; a required value it
cannot set ends the agent with exit status 1 and one line naming the sysctl and how to set
it, never a traceback. Here the read-only ``/proc/sys`` is a read-only bind mount in a
private mount namespace (``unshare -m``) inside a network namespace made for the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import netns_with_home_link, terminate

from nfq_mip6.control import ControlError, request

pytestmark = pytest.mark.netns

HA = "fec0:106:2700::2"


@pytest.fixture
def netns() -> Iterator[str]:
    with netns_with_home_link(f"h9sysctl-{os.getpid()}", HA) as name:
        yield name


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


HA_TOML = """role = "ha"
interface = "eth1"
log_level = "{log_level}"
queue_num = {queue_num}
control_socket = "{tmp}/ha.sock"
metrics_listen = "127.0.0.1:10136"
state_dir = "{tmp}/state"

[ha]
require_authentication = false
max_binding_lifetime = {lifetime}
"""

SCRAPE = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:10136/metrics', timeout=5).read().decode())"
)


def last_config_load(netns: str) -> float:
    text = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", SCRAPE],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    match = re.search(r"^nfq_mip6_last_config_load_timestamp_seconds (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def wait_for(predicate: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (ControlError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_sighup_applies_reloadable_changes_and_names_the_refused_ones(
    netns: str, tmp_path: Path
) -> None:
    sysctl(netns, "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.eth1.proxy_ndp=1")
    config = tmp_path / "ha.toml"
    config.write_text(HA_TOML.format(log_level="info", queue_num=23, tmp=tmp_path, lifetime=400))
    log_path = tmp_path / "ha.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "nfq_mip6", "run",
             "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    socket_path = tmp_path / "ha.sock"
    try:
        wait_for(lambda: request(socket_path, {"cmd": "stats"})["ok"], "the agent")
        stats = request(socket_path, {"cmd": "stats"})
        assert stats["home_agent"]["max_binding_lifetime"] == 400
        loaded_at_start = last_config_load(netns)
        assert loaded_at_start > 0

        config.write_text(
            HA_TOML.format(log_level="debug", queue_num=24, tmp=tmp_path, lifetime=300)
        )
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log_path.read_text(), "the reload log line")
        stats = request(socket_path, {"cmd": "stats"})
        assert stats["home_agent"]["max_binding_lifetime"] == 300
        assert last_config_load(netns) > loaded_at_start
        text = log_path.read_text()
        print(text)
        assert "SIGHUP: applied ha.max_binding_lifetime: 400 -> 300" in text
        assert "SIGHUP: applied log_level: INFO -> DEBUG" in text
        assert "SIGHUP: queue_num: 23 -> 24 needs a restart; not applied" in text

        # A file that became invalid changes nothing; the agent keeps running.
        config.write_text(HA_TOML.format(log_level="debug", queue_num=24, tmp=tmp_path,
                                         lifetime="'forever'"))  # fmt: skip
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in log_path.read_text(), "the error")
        assert request(socket_path, {"cmd": "stats"})["home_agent"]["max_binding_lifetime"] == 300
    finally:
        terminate(proc)
    assert proc.returncode == 0, log_path.read_text()
