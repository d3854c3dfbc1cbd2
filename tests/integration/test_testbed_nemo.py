"""The NEMO test bed (``nfq-mip6 testbed up --nemo``, RFC 3963): the HOWTO's bed plus a LAN
behind the MN acting as a mobile router, with a mobile network node on it, and the agents'
configurations for both prefix modes."""

from __future__ import annotations

import re
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from helpers import start_agent, terminate

from nfq_mip6.config import Role, load_config
from nfq_mip6.testbed import Testbed, unique_prefix
from nfq_mip6.testbed.nemo import MR_SPI, write_configs
from nfq_mip6.testbed.netns import list_netns
from nfq_mip6.testbed.topology import (
    CN_ADDRESS,
    LINKS,
    MN_HOME_ADDRESS,
    MNN_ADDRESS,
    MOBILE_NETWORK_PREFIX,
    MR_LAN_INTERFACE,
    NEMO_LINKS,
    NODES,
    NodeRole,
    node_spec,
)

MNP = IPv6Network(MOBILE_NETWORK_PREFIX)


# -- no root needed ---------------------------------------------------------------------


def test_the_plain_test_bed_has_no_mobile_network() -> None:
    assert [n.name for n in NODES] == ["ha", "r", "ar", "ar2", "cn", "mn"]
    assert "mobilenet" not in LINKS
    assert node_spec("mn").role is NodeRole.MOBILE_NODE
    assert all(r.destination != MOBILE_NETWORK_PREFIX for n in NODES for r in n.routes)


def test_the_nemo_test_bed_adds_the_mobile_network_behind_the_mn() -> None:
    assert list(NEMO_LINKS) == [*LINKS, "mobilenet"]
    router = node_spec("mn", nemo=True)
    assert router.role is NodeRole.MOBILE_ROUTER
    assert [(i.name, i.link) for i in router.interfaces] == [
        ("eth0", "homenet"),
        (MR_LAN_INTERFACE, "mobilenet"),
    ]
    assert node_spec("mnn", nemo=True).interfaces[0].link == "mobilenet"
    assert IPv6Address(MNN_ADDRESS) in MNP
    # R reaches the mobile network through the router's home address (the HA's proxy
    # neighbour entry while it is away); the CN through R.
    r_routes = {(r.destination, r.gateway) for r in node_spec("r", nemo=True).routes}
    assert (MOBILE_NETWORK_PREFIX, MN_HOME_ADDRESS) in r_routes
    with pytest.raises(KeyError, match="no node 'mnn'"):
        node_spec("mnn")


def test_nemo_configurations_load_as_a_home_agent_and_a_mobile_router(tmp_path: Path) -> None:
    paths = write_configs(tmp_path)
    assert paths["key"].stat().st_mode & 0o077 == 0
    assert len(paths["key"].read_bytes()) == 16
    ha = load_config(paths["ha"])
    assert ha.role is Role.HA and ha.ha is not None
    (entry,) = ha.ha.mobile_nodes
    assert entry.spi == MR_SPI and entry.mobile_router and entry.prefixes == (MNP,)
    for name, mode in (("mn", "explicit"), ("mn-implicit", "implicit")):
        mn = load_config(paths[name])
        assert mn.role is Role.MN and mn.mn is not None
        assert mn.mn.mobile_router and mn.mn.prefixes == (MNP,)
        assert mn.mn.prefix_mode == mode
        assert mn.mn.mobile_network_interface == MR_LAN_INTERFACE
        assert mn.mn.auth_spi == MR_SPI and mn.mn.auth_key_file == paths["key"]


# -- on the real kernel -----------------------------------------------------------------


def router_sysctls(bed: Testbed) -> list[str]:
    """eth0 and lan0 force_forwarding, all.forwarding, eth0 optimistic_dad of the router."""
    keys = ["eth0.force_forwarding", "lan0.force_forwarding", "all.forwarding"]
    keys.append("eth0.optimistic_dad")
    argv = ["sysctl", "-n", *(f"net.ipv6.conf.{key}" for key in keys)]
    return bed.node("mn").run(argv).stdout.split()


@pytest.mark.netns
def test_cli_up_nemo_builds_the_mobile_network_and_down_removes_everything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from nfq_mip6.cli import main

    prefix = unique_prefix("n")
    bed = Testbed(prefix)
    try:
        assert main(["testbed", "up", "--nemo", "--prefix", prefix]) == 0
        out = capsys.readouterr().out
        assert f"test bed {prefix!r} (NEMO): up" in out
        assert str(bed.nemo_config("ha")) in out and str(bed.nemo_config("mn")) in out
        assert bed.nemo and f"{prefix}-mnn" in bed.namespace_names
        assert bed.nemo_config("key").stat().st_mode & 0o077 == 0
        # the router forwards per interface, a host on its egress (RAs, optimistic DAD)
        assert router_sysctls(bed) == ["1", "1", "0", "1"]
        # no address on the mobile network until the router advertises it
        assert not bed.node("mnn").ipv6_addresses("eth0")
        router_agent = start_agent(
            bed.node("mn"),
            bed.nemo_config("mn"),
            tmp_path / "mn.sock",
            extra_args=["--control-socket", str(tmp_path / "mn.sock")],
        )
        try:
            # the node autoconfigures from the router agent's RAs on lan0 (RFC 3963 §5.6)
            mnn = bed.wait_for_address(MOBILE_NETWORK_PREFIX, node="mnn", timeout=20.0)
            assert mnn == MNN_ADDRESS
            # At home the router forwards as a plain router (RFC 3963 §5.5): the CN and the
            # node reach each other through R, the home link and the router.
            bed.node("cn").run(["ping", "-6", "-n", "-c", "1", "-W", "2", MNN_ADDRESS])
            bed.node("mnn").run(["ping", "-6", "-n", "-c", "1", "-W", "2", CN_ADDRESS])
        finally:
            terminate(router_agent.proc)
        # The reset for tests sharing a bed puts the router back as up() made it and
        # leaves the node its address.
        bed.node("mn").run(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        bed.reset()
        assert router_sysctls(bed) == ["1", "1", "0", "1"]
        assert MNN_ADDRESS in bed.node("mnn").ipv6_addresses("eth0")
    finally:
        assert main(["testbed", "down", "--prefix", prefix]) == 0
    assert "mnn" in capsys.readouterr().out
    assert not {n for n in list_netns() if n.startswith(f"{prefix}-")}
    assert not bed.run_dir.exists()


@pytest.mark.netns
def test_demo_nemo_the_cn_reaches_the_mobile_network_node_while_the_router_travels(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``nfq-mip6 demo --nemo`` with the real agents: the router registers its prefix on
    both visited links (``mipdiag -c`` shows it) and the CN's pings reach the node behind."""
    from nfq_mip6.cli import main

    prefix = unique_prefix("dn")
    status = main(["demo", "--nemo", "--prefix", prefix, "--agents", "on", "--dwell", "2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"Mobile Network Prefixes: {MOBILE_NETWORK_PREFIX}" in out
    assert f"inet6 {MNN_ADDRESS}/64" in out  # the mobile network node's address, shown
    rows = {
        match["link"]: (match["bound"], int(match["received"]))
        for match in re.finditer(
            r"^(?P<link>visitnet2?|home)\s+\S+\s+(?P<bound>yes|no \(home\)|no)\s+"
            r"\d+ sent, (?P<received>\d+) received",
            out,
            re.MULTILINE,
        )
    }
    assert "CN -> mobile network node" in out
    assert {link: bound for link, (bound, _) in rows.items()} == {
        "visitnet": "yes",
        "visitnet2": "yes",
        "home": "no (home)",
    }
    assert sum(received for _, received in rows.values()) > 0
    assert not {n for n in list_netns() if n.startswith(f"{prefix}-")}
