"""RFC 4285 end to end with both real agents: ``nfq-mip6 run`` as HA and as MN, each with the
same MN-HA key (TOML ``[[ha.mobile_nodes]]`` / ``[mn] auth_*``). The MN travels to visitnet
and back home; every BU and BA is authenticated. With the wrong key the HA registers nothing
and the MN drops the HA's (unauthenticated) 146 answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.testbed.topology import HA_ADDRESS, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

KEY = "6b65792d666f722d6d6e2d31-0123456789abcdef".replace("-", "")
WRONG_KEY = "00" * 20
SPI = 2600


def write_configs(tmp: Path, mn_key: str) -> tuple[Path, Path]:
    ha_key, mn_key_file = tmp / "ha-mn1.key", tmp / "mn1.key"
    ha_key.write_text(KEY + "\n")
    mn_key_file.write_text(mn_key + "\n")
    for path in (ha_key, mn_key_file):
        path.chmod(0o600)
    ha = tmp / "ha.toml"
    ha.write_text(
        f"""role = "ha"
interface = "eth0"
metrics_listen = ""

[ha]
max_binding_lifetime = 400

[[ha.mobile_nodes]]
home_address = "{MN_HOME_ADDRESS}"
spi = {SPI}
key_file = "{ha_key}"
nai = "mn1@example.org"
"""
    )
    mn = tmp / "mn.toml"
    mn.write_text(
        f"""role = "mn"
interface = "eth0"
metrics_listen = ""

[mn]
home_address = "{MN_HOME_ADDRESS}/64"
home_agent = "{HA_ADDRESS}"
binding_lifetime = 120
auth_spi = {SPI}
auth_key_file = "{mn_key_file}"
nai = "mn1@example.org"
"""
    )
    return ha, mn


def ha_stats(socket_path: Path) -> dict[str, Any]:
    stats: dict[str, Any] = request(socket_path, {"cmd": "stats"})
    return stats


def cache(socket_path: Path) -> list[tuple[str, str]]:
    return [
        (b["home_address"], b["care_of_address"])
        for b in request(socket_path, {"cmd": "cache"})["bindings"]
    ]


def reachable(cn: Node) -> bool:
    done = cn.run(["ping", "-6", "-n", "-c", "1", "-W", "1", MN_HOME_ADDRESS], check=False)
    return done.returncode == 0


def test_authenticated_journey_with_real_agents(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    ha_config, mn_config = write_configs(tmp_path, KEY)
    ha_socket, mn_socket = tmp_path / "ha.sock", tmp_path / "mn.sock"
    with (
        running_agent(bed.node("ha"), ha_config, ha_socket),
        running_agent(bed.node("mn"), mn_config, mn_socket),
    ):
        coa = care_of_address("visitnet")
        bed.move("visitnet")
        assert wait_until(lambda: cache(ha_socket) == [(MN_HOME_ADDRESS, coa)], 15.0), ha_stats(
            ha_socket
        )
        assert wait_until(lambda: reachable(bed.node("cn")), 10.0), "CN cannot reach the MN"
        counters = ha_stats(ha_socket)["home_agent"]
        assert counters["auth_accepted"] >= 1, counters
        assert counters["binding_acks_authenticated"] >= 1, counters
        assert not any(k.startswith("auth_auth_") for k in counters), counters
        mn_counters = request(mn_socket, {"cmd": "stats"})["counters"]
        assert mn_counters["NBindAcksDropAuth"] == 0, mn_counters
        # Home again: the de-registration from the HoA (CoA = HoA) authenticates too.
        bed.move("home")
        assert wait_until(lambda: cache(ha_socket) == [], 15.0), ha_stats(ha_socket)
        assert not any(k.startswith("auth_auth_") for k in ha_stats(ha_socket)["home_agent"])


def test_wrong_key_registers_nothing(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    ha_config, mn_config = write_configs(tmp_path, WRONG_KEY)
    ha_socket, mn_socket = tmp_path / "ha.sock", tmp_path / "mn.sock"
    with (
        running_agent(bed.node("ha"), ha_config, ha_socket),
        running_agent(bed.node("mn"), mn_config, mn_socket),
    ):
        bed.move("visitnet")

        def rejected() -> bool:
            counters = ha_stats(ha_socket)["home_agent"]
            return int(counters.get("auth_auth_authenticator_mismatch", 0)) >= 1

        assert wait_until(rejected, 15.0), ha_stats(ha_socket)
        assert cache(ha_socket) == []
        # The HA's 146 is not authenticated: the MN drops it (counted), it never "registers".
        assert wait_until(
            lambda: request(mn_socket, {"cmd": "stats"})["counters"]["NBindAcksDropAuth"] >= 1,
            10.0,
        )
        assert cache(ha_socket) == []
