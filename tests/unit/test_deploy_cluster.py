"""deploy/cluster: the keepalived configuration, its notify script and the HA agent's file
agree with each other and with what the cluster test bed runs (docs/cluster.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from nfq_mip6.cli import main
from nfq_mip6.testbed.cluster import VIRTUAL_LINK_LOCAL, VMAC_INTERFACE, VRID

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cluster"


def test_keepalived_instance_is_vrrpv3_ipv6_with_the_virtual_mac() -> None:
    text = (DEPLOY / "keepalived.conf").read_text()
    for line in (
        "vrrp_version 3",
        f"use_vmac {VMAC_INTERFACE}",
        "vmac_xmit_base",
        f"virtual_router_id {VRID}",
        "nopreempt",
        "garp_master_refresh 1",
        "accept ",
        "advert_int 0.1",
        "cluster status --agent-only --control-socket /run/nfq-mip6/ha.sock",
        'notify_master "/etc/keepalived/nfq-mip6-notify MASTER"',
        'notify_backup "/etc/keepalived/nfq-mip6-notify BACKUP"',
        'notify_fault "/etc/keepalived/nfq-mip6-notify FAULT"',
    ):
        assert line in text, line
    addresses = text.split("virtual_ipaddress {")[1].split("}")[0].split()
    assert addresses[0] == f"{VIRTUAL_LINK_LOCAL}/64"  # RFC 5798 §5.2.9


def test_agent_serves_the_virtual_address_on_the_vmac_interface() -> None:
    config = tomllib.loads((DEPLOY / "nfq-mip6-ha.toml").read_text())
    keepalived = (DEPLOY / "keepalived.conf").read_text()
    assert config["interface"] == VMAC_INTERFACE
    assert f"{config['ha']['address']}/64" in keepalived
    assert config["ha"]["home_prefix"]  # a standby's vrrp.51 has no address to derive it from
    assert config["cluster"]["role"] == "standby"
    assert config["control_socket"] == "/run/nfq-mip6/ha.sock"


def run_notify(tmp_path: Path, *states: str) -> list[str]:
    env = os.environ | {
        "NFQ_MIP6_CLI": "echo nfq-mip6",
        "NFQ_MIP6_CONTROL_SOCKET": str(tmp_path / "ha.sock"),
        "NFQ_MIP6_NOTIFY_DIR": str(tmp_path),
    }
    lines = []
    for state in states:
        done = subprocess.run(
            [str(DEPLOY / "nfq-mip6-notify"), state],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=10,
        )
        lines.append(done.stdout.strip())
    return lines


def test_notify_maps_vrrp_states_to_cluster_roles(tmp_path: Path) -> None:
    sock = tmp_path / "ha.sock"
    assert run_notify(tmp_path, "MASTER", "BACKUP", "FAULT", "STOP") == [
        f"nfq-mip6 cluster active --control-socket {sock}",
        f"nfq-mip6 cluster standby --control-socket {sock}",
        f"nfq-mip6 cluster standby --control-socket {sock}",
        f"nfq-mip6 cluster standby --control-socket {sock}",
    ]
    assert (tmp_path / "vrrp.state").read_text().strip() == "STOP"


def test_notify_applies_the_latest_state(tmp_path: Path) -> None:
    """A late BACKUP run after MASTER was recorded applies MASTER (the latest)."""
    (tmp_path / "vrrp.state").write_text("MASTER\n")
    env = os.environ | {"NFQ_MIP6_CLI": "echo nfq-mip6", "NFQ_MIP6_NOTIFY_DIR": str(tmp_path)}
    script = (DEPLOY / "nfq-mip6-notify").read_text()
    # the recording step of the late run already happened before MASTER's: skip it here
    body = script.replace('echo "$1" > "$DIR/vrrp.state.$$" && mv', ": ||")
    done = subprocess.run(
        ["sh", "-c", body, "nfq-mip6-notify", "BACKUP"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=10,
    )
    assert "cluster active" in done.stdout


def test_radvd_conf_is_what_radvd_config_writes_for_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/cluster/radvd.conf = ``nfq-mip6 radvd-config --router-lifetime 0`` for the
    agent's file: the virtual HA's preference (RFC 6275 §7.4) from ``[ha] preference``, on
    vrrp.51, not a default router (the home router is)."""
    for key in ("CA_FILE", "CERT_FILE", "KEY_FILE"):  # the TLS files exist on a real host
        (tmp_path / key).touch()
        monkeypatch.setenv(f"NFQ_MIP6_CLUSTER__{key}", str(tmp_path / key))
    out = tmp_path / "radvd.conf"
    config = DEPLOY / "nfq-mip6-ha.toml"
    argv = ["radvd-config", "--config", str(config), "--router-lifetime", "0", "--output", str(out)]
    assert main(argv) == 0
    assert (DEPLOY / "radvd.conf").read_text() == out.read_text()
    preference = tomllib.loads(config.read_text())["ha"]["preference"]
    assert f"HomeAgentPreference {preference};" in out.read_text()


FAKE_RADVD = """#!/bin/sh
# radvd stand-in: daemonises (a sleep) and writes the pid file given with -p
while [ $# -gt 0 ]; do case $1 in -p) pidfile=$2; shift;; -C) conf=$2; shift;; esac; shift; done
sleep 300 >/dev/null 2>&1 &
echo $! > "$pidfile"
echo "radvd -C $conf"
"""


def test_notify_runs_radvd_on_the_master_only(tmp_path: Path) -> None:
    fake = tmp_path / "radvd"
    fake.write_text(FAKE_RADVD)
    fake.chmod(0o755)
    conf = tmp_path / "radvd.conf"
    conf.write_text("# the virtual HA's\n")
    env = os.environ | {
        "NFQ_MIP6_CLI": "echo nfq-mip6",
        "NFQ_MIP6_CONTROL_SOCKET": str(tmp_path / "ha.sock"),
        "NFQ_MIP6_NOTIFY_DIR": str(tmp_path),
        "NFQ_MIP6_RADVD": str(fake),
        "NFQ_MIP6_RADVD_CONF": str(conf),
    }
    pidfile = tmp_path / "radvd.pid"

    def notify(state: str) -> list[str]:
        done = subprocess.run([str(DEPLOY / "nfq-mip6-notify"), state], capture_output=True,
                              text=True, env=env, check=True, timeout=10)  # fmt: skip
        return done.stdout.splitlines()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    assert notify("MASTER")[-1] == f"radvd -C {conf}"  # after the agent is active
    pid = int(pidfile.read_text())
    try:
        assert alive(pid)
        assert notify("MASTER") == [f"nfq-mip6 cluster active --control-socket {tmp_path}/ha.sock"]
        assert int(pidfile.read_text()) == pid  # not a second radvd
        notify("BACKUP")
        assert not pidfile.exists()
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    conf.unlink()  # no radvd.conf: the agent is still made active, no RAs
    assert notify("MASTER") == [f"nfq-mip6 cluster active --control-socket {tmp_path}/ha.sock"]
    assert not pidfile.exists()


def test_vmac_script_sends_nothing_from_the_unspecified_address() -> None:
    """The test bed's rule (``vmac_unspecified_drop``) is the deploy script's rule."""
    from nfq_mip6.testbed.cluster import vmac_unspecified_drop

    text = (DEPLOY / "nfq-mip6-vmac").read_text()
    rule = vmac_unspecified_drop()
    assert rule[:4] == ["ip6tables", "-w", "-I", "OUTPUT"]
    assert rule[4:] == ["-o", VMAC_INTERFACE, "-s", "::/128", "-j", "DROP"]
    assert 'ip6tables -w -I OUTPUT -o "$name" -s ::/128 -j DROP' in text
