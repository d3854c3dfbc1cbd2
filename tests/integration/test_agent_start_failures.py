"""An agent whose kernel set-up fails stops with exit status 1 and one line naming what
failed, never a traceback, whichever role it plays.

The failure is real: each agent starts in a namespace of its own whose configured interface
(``eth9``) does not exist, so the kernel has nothing to set up on. The Mobile Node's data
plane finds that out through rtnetlink (its own error type used to escape as a traceback);
the Home Agent and the Correspondent Node find no address on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

MISSING = "eth9"
ROLE_SECTIONS = {
    "mn": '[mn]\nhome_address = "fec0:106:2700::4/64"\nhome_agent = "fec0:106:2700::2"\n'
    "require_authentication = false\n",
    "ha": "[ha]\nrequire_authentication = false\n",
    "cn": "",
}


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with ``lo`` and a veth ``eth1``, but no ``eth9``."""
    name = f"startfail-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", "eth1", "type", "veth", "peer", "name", "peer1"],
            ["link", "set", "eth1", "up"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_agent(netns: str, tmp: Path, role: str) -> subprocess.CompletedProcess[str]:
    config = tmp / f"{role}.toml"
    config.write_text(
        f"""role = "{role}"
interface = "{MISSING}"
queue_num = 29
control_socket = "{tmp / f"{role}.sock"}"
metrics_listen = ""
state_dir = "{tmp / f"state-{role}"}"

{ROLE_SECTIONS[role]}"""
    )
    return subprocess.run(
        ["ip", "netns", "exec", netns, "timeout", "--preserve-status", "-s", "TERM", "30",
         sys.executable, "-m", "nfq_mip6", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("role", ["mn", "ha", "cn"])
def test_kernel_set_up_failure_exits_1_with_one_line_naming_it(
    netns: str, tmp_path: Path, role: str
) -> None:
    done = run_agent(netns, tmp_path, role)
    print(done.stderr)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # one error line (warnings and info lines may come before it), and it names the interface
    errors = [
        line
        for line in done.stderr.splitlines()
        if line.startswith("nfq-mip6:") or " ERROR " in line
    ]
    assert len(errors) == 1 and MISSING in errors[0], done.stderr
    if role == "mn":
        assert errors == [f"nfq-mip6: interface {MISSING!r} not found"]
    # nothing the agent would have installed is left behind
    rules = subprocess.run(
        ["ip", "-n", netns, "-6", "rule", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert rules.split("\n")[0].startswith("0:") and "lookup local" in rules.split("\n")[0]
