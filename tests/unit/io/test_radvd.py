"""radvd's configuration for a mobile router's LAN (RFC 3963 §5.6) and for a home agent
(RFC 6275 §7.4), and its process handling, without root: ``radvd --configtest`` checks the
text, a stand-in program the process steps."""

from __future__ import annotations

import shutil
import stat
import subprocess
from ipaddress import IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.errors import DataplaneError
from nfq_mip6.io.radvd import (
    Radvd,
    advertised_lan_prefixes,
    home_agent_config,
    mobile_network_config,
)

MNP = IPv6Network("2001:db8:77::/48")
MNP64 = IPv6Network("2001:db8:78:5::/64")


def test_a_64_prefix_is_advertised_as_it_is() -> None:
    assert advertised_lan_prefixes([MNP64], []) == (MNP64,)


def test_a_shorter_prefix_is_advertised_through_the_lan_addresses_inside_it() -> None:
    lan = [
        IPv6Interface("2001:db8:77:1::1/64"),  # inside the /48: its /64
        IPv6Interface("2001:db8:77:2::1/64"),
        IPv6Interface("2001:db8:99::1/64"),  # outside every prefix
        IPv6Interface("2001:db8:77:3::1/120"),  # not a /64: no SLAAC from it
    ]
    assert advertised_lan_prefixes([MNP], lan) == (
        IPv6Network("2001:db8:77:1::/64"),
        IPv6Network("2001:db8:77:2::/64"),
    )


def test_nothing_to_advertise_without_a_64() -> None:
    assert advertised_lan_prefixes([MNP], [IPv6Interface("2001:db8:99::1/64")]) == ()
    assert advertised_lan_prefixes([MNP64], [IPv6Interface(f"{MNP64[1]}/64")]) == (MNP64,)


def test_rfc3963_5_6_the_lan_configuration_is_valid_for_radvd(tmp_path: Path) -> None:
    prefixes = (IPv6Network("2001:db8:77:1::/64"), MNP64)
    text = mobile_network_config("lan0", prefixes)
    assert "interface lan0" in text and "AdvSendAdvert on;" in text
    for prefix in prefixes:
        assert f"prefix {prefix}" in text
    assert text.count("AdvAutonomous on;") == 2
    if shutil.which("radvd") is None:
        pytest.skip("radvd is not installed (scripts/bootstrap.sh installs it)")
    conf = tmp_path / "radvd.conf"
    conf.write_text(text)
    done = subprocess.run(
        ["radvd", "--configtest", "-C", str(conf)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def fake_radvd(tmp_path: Path, body: str) -> list[str]:
    """A program standing in for radvd (run as ``FAKE radvd -n -C conf -p pidfile ...``)."""
    script = tmp_path / "fake-radvd"
    script.write_text(f"#!/bin/sh\nshift\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)]


def test_start_waits_for_the_pid_file_and_stop_removes_it(tmp_path: Path) -> None:
    # arguments after "radvd": -n -C conf -p pidfile -m stderr
    radvd = Radvd(tmp_path / "lan0", fake_radvd(tmp_path, 'echo $$ > "$5"; exec sleep 30'))
    pid = radvd.start("interface lan0 {};\n")
    assert radvd.running() and radvd.pidfile.read_text().strip() == str(pid)
    assert oct(radvd.conf.stat().st_mode & 0o777) == "0o644"
    radvd.stop()
    assert not radvd.running() and not radvd.pidfile.exists()
    radvd.stop()  # idempotent


def test_a_radvd_that_exits_at_once_is_an_error_naming_its_output(tmp_path: Path) -> None:
    radvd = Radvd(tmp_path / "lan0", fake_radvd(tmp_path, "echo 'no such interface' >&2; exit 1"))
    with pytest.raises(DataplaneError, match="no such interface"):
        radvd.start("interface lan0 {};\n")
    assert not radvd.running()


def test_a_missing_program_is_an_error(tmp_path: Path) -> None:
    radvd = Radvd(tmp_path / "lan0", [str(tmp_path / "no-such-program")])
    with pytest.raises(DataplaneError, match="could not be started"):
        radvd.start("")


# ---- a home agent's Router Advertisements (RFC 6275 §7.4) -----------------------------------

HA_ADDRESS = IPv6Interface("2001:db8:1::2/64")


def test_rfc6275_7_4_home_agent_config_carries_the_preference_and_router_address() -> None:
    text = home_agent_config("vrrp.51", HA_ADDRESS, preference=300, lifetime=600)
    for line in (
        "interface vrrp.51",
        "AdvHomeAgentFlag on;",
        "AdvHomeAgentInfo on;",
        "HomeAgentPreference 300;",
        "HomeAgentLifetime 600;",
        "prefix 2001:db8:1::2/64",  # the HA's address with the Router Address flag (§7.2)
        "AdvRouterAddr on;",
        "AdvIntervalOpt on;",  # §7.3
        "MaxRtrAdvInterval 1.5;",  # §7.5's fast intervals
    ):
        assert line in text, line
    assert "AdvDefaultLifetime" not in text  # radvd's default: the HA is a default router
    assert "AdvDefaultLifetime 0;" in home_agent_config("eth0", HA_ADDRESS, router_lifetime=0)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"preference": -1}, "preference -1"),
        ({"preference": 65536}, "preference 65536"),
        ({"lifetime": 0}, "lifetime 0"),
        ({"lifetime": 65536}, "lifetime 65536"),
        ({"router_lifetime": 9001}, "router lifetime 9001"),
    ],
)
def test_home_agent_config_refuses_what_the_option_cannot_carry(
    options: dict[str, int], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        home_agent_config("eth0", HA_ADDRESS, **options)


@pytest.mark.parametrize("preference", [0, 65535])
def test_home_agent_config_is_valid_for_radvd(tmp_path: Path, preference: int) -> None:
    if shutil.which("radvd") is None:
        pytest.skip("radvd is not installed (scripts/bootstrap.sh installs it)")
    conf = tmp_path / "radvd.conf"
    conf.write_text(
        home_agent_config(
            "eth0",
            HA_ADDRESS,
            preference=preference,
            lifetime=65535,
            router_lifetime=0,
            retrans_timer_ms=200,
            prefix_lifetimes=(10000, 12000),
        )
    )
    done = subprocess.run(
        ["radvd", "--configtest", "-C", str(conf)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
