"""Two real Home Agents, one state directory (nfq_mip6.statedir).

The test bed's HA registers the MN (sequence 300). A second HA in a namespace of its own,
pointed at the same ``state_dir``, refuses to start while the first runs (exit 1, one line
naming the directory and the first agent's PID). Once the first has stopped, the second
starts on its own home link (another prefix): it does not adopt the first one's binding, its
cache is empty, and the first one's database is kept aside, binding included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    ScriptedMobileNode,
    binding_ack,
    control_answers,
    mn_away,
    netns_with_home_link,
    start_agent,
    stop_agent,
    terminate,
)
from test_security import HA, HOA, flush_ha_kernel_state, home_bu, write_ha_config

from nfq_mip6.control import request
from nfq_mip6.statedir import IDENTITY_KEY
from nfq_mip6.store import DATABASE_NAME, StateStore
from nfq_mip6.testbed import Testbed

pytestmark = pytest.mark.netns

QUEUE_NUM = 31
OTHER_HOME = "2001:db8:aa::2"


@pytest.fixture
def away(testbed: Testbed) -> Iterator[Testbed]:
    with mn_away(testbed, HOA):
        yield testbed


@pytest.fixture
def other_home_link() -> Iterator[str]:
    with netns_with_home_link(f"h9state-{os.getpid()}", OTHER_HOME) as name:
        yield name


def second_ha_config(tmp: Path, state_dir: Path) -> Path:
    config = tmp / "second.toml"
    config.write_text(
        f"""role = "ha"
interface = "eth1"
log_level = "info"
queue_num = {QUEUE_NUM}
control_socket = "{tmp / "second.sock"}"
metrics_listen = ""
state_dir = "{state_dir}"

[ha]
require_authentication = false
"""
    )
    return config


def test_second_agent_on_one_state_directory_refused_then_not_adopting_its_state(
    away: Testbed, other_home_link: str, tmp_path: Path
) -> None:
    ha = away.node("ha")
    flush_ha_kernel_state(ha)
    config = write_ha_config(tmp_path, QUEUE_NUM, None)
    state_dir = tmp_path / "state"
    first = start_agent(ha, config, tmp_path / "ha.sock")
    mn = ScriptedMobileNode(away.node("mn"), HA)
    second_config = second_ha_config(tmp_path, state_dir)
    second_argv = ["ip", "netns", "exec", other_home_link, sys.executable, "-m", "nfq_mip6",
                   "run", "--config", str(second_config)]  # fmt: skip
    try:
        assert binding_ack(mn.exchange(home_bu(300, None), wait=5.0)).ba.status == 0
        refused = subprocess.run(second_argv, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.splitlines() == [
            f"nfq-mip6: state directory {state_dir} is in use by another nfq-mip6 agent "
            f"(PID {first.proc.pid}); give each agent its own state_dir"
        ]
        assert [b["home_address"] for b in first.control("cache")["bindings"]] == [str(HOA)]
    finally:
        mn.close()
        assert stop_agent(first) == 0
        flush_ha_kernel_state(ha)

    log_path = tmp_path / "second.log"
    with log_path.open("w") as log:
        second = subprocess.Popen(second_argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        socket_path = tmp_path / "second.sock"
        away.wait_until(
            lambda: second.poll() is not None or control_answers(socket_path), 15.0, "second HA"
        )
        assert second.poll() is None, log_path.read_text()
        assert request(socket_path, {"cmd": "cache"})["bindings"] == []
        assert "moved aside" in log_path.read_text()
    finally:
        assert terminate(second) == 0, log_path.read_text()
    (aside,) = state_dir.glob(f"{DATABASE_NAME}.ha-*.aside")
    with StateStore(aside) as kept:
        assert [b.sequence for b in kept.bindings("ha")] == [300]
        assert kept.get_value(IDENTITY_KEY)["home_prefix"] == "fec0:106:2700::/64"
    with StateStore(state_dir / DATABASE_NAME) as current:
        assert current.get_value(IDENTITY_KEY)["home_prefix"] == "2001:db8:aa::/64"
