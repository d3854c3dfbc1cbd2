"""The Home Agent runtime with mobile routers (RFC 3963 §6), on the in-memory dataplane: the
prefixes follow the binding into the kernel fast path, 143 when they cannot, restart."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import AgentConfig, HomeAgentConfig, Role
from nfq_mip6.dataplane.fake import FakeDataplane
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.mobility.nemo import MobileRouterPolicy
from nfq_mip6.runtime.home_agent import HomeAgentRuntime, mobile_router_policies
from nfq_mip6.security.keys import KeySource, MobileNodeCredentials, parse_mobile_node_entries
from nfq_mip6.wire import (
    BAFlags,
    BAStatus,
    BindingAck,
    BindingUpdate,
    BUFlags,
    MobileNetworkPrefix,
    build_ipv6_packet,
    build_mh,
    parse_ipv6,
    parse_mh,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.factories import home_agent_runtime
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::10")
COA2 = IPv6Address("fec0:106:1000::10")
MNP = IPv6Network("2001:db8:77::/48")
POLICY = MobileRouterPolicy((IPv6Network(f"{HOA}/128"),), (MNP,))


def start(tmp_path: Path, fake: FakeDataplane, sent: list[bytes]) -> HomeAgentRuntime:
    rt = home_agent_runtime(tmp_path, fake, sent.append)
    assert rt.core is not None
    rt.core.config = replace(rt.core.config, mobile_routers=(POLICY,), proxy_dad=False)
    return rt


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[HomeAgentRuntime, FakeDataplane, list[bytes]]]:
    fake = FakeDataplane()
    sent: list[bytes] = []
    rt = start(tmp_path, fake, sent)
    yield rt, fake, sent
    rt.stop()


def router_bu(
    sequence: int, coa: IPv6Address = COA, lifetime: int = 100, *options: MobileNetworkPrefix
) -> QueuedPacket:
    message = BindingUpdate(sequence, BUFlags.A | BUFlags.H | BUFlags.R, lifetime, options)
    mh = build_mh(message, HOA, HA)
    return QueuedPacket(build_ipv6_packet(coa, HA, IPPROTO_MH, mh, home_address=HOA))


def last_ba(sent: list[bytes]) -> BindingAck:
    message = parse_mh(parse_ipv6(sent[-1]).upper_layer_bytes)
    assert isinstance(message, BindingAck)
    return message


def test_rfc3963_6_4_prefix_routed_into_the_tunnel_and_moved_with_the_coa(
    setup: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, fake, sent = setup
    rt.on_queued_packet(router_bu(1), 100.0)
    ba = last_ba(sent)
    assert ba.status == BAStatus.ACCEPTED and ba.flags & BAFlags.R
    assert fake.tunnels() == {HOA: COA} and fake.prefix_routes() == {MNP: COA}
    rows = rt.handle_control({"cmd": "cache"})["bindings"]
    assert rows[0]["prefixes"] == [str(MNP)]
    stats = rt.handle_control({"cmd": "stats"})
    assert stats["home_agent"]["mobile_routers"] == 1
    assert stats["home_agent"]["mobile_network_prefixes"] == 1
    rt.on_queued_packet(router_bu(2, COA2), 101.0)
    assert fake.tunnels() == {HOA: COA2} and fake.prefix_routes() == {MNP: COA2}
    rt.on_queued_packet(router_bu(3, COA2, 0), 102.0)
    assert last_ba(sent).status == BAStatus.ACCEPTED
    assert fake.tunnels() == {} and fake.prefix_routes() == {}


def test_rfc3963_6_2_status_143_when_the_kernel_refuses_the_prefix_routes(
    setup: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, fake, sent = setup
    fake.fail_prefixes = True
    rt.on_queued_packet(router_bu(1), 100.0)
    assert [last_ba(sent).status] == [BAStatus.FORWARDING_SETUP_FAILED]
    assert all(
        parse_mh(parse_ipv6(p).upper_layer_bytes).status == 143  # type: ignore[union-attr]
        for p in sent
    )  # no acceptance went out before it
    assert fake.tunnels() == {} and fake.prefix_routes() == {}
    assert rt.handle_control({"cmd": "cache"})["bindings"] == []


def test_rfc3963_6_2_unauthorized_prefix_gets_142_and_no_route(
    setup: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]],
) -> None:
    rt, fake, sent = setup
    rt.on_queued_packet(
        router_bu(1, COA, 100, MobileNetworkPrefix(IPv6Address("2001:db8:99::"), 48)), 100.0
    )
    assert last_ba(sent).status == BAStatus.NOT_AUTHORIZED_FOR_PREFIX
    assert fake.tunnels() == {} and fake.prefix_routes() == {}


def test_restart_restores_the_prefix_routes(tmp_path: Path) -> None:
    fake, sent = FakeDataplane(), []  # type: ignore[var-annotated]
    rt = start(tmp_path, fake, sent)
    rt.on_queued_packet(router_bu(1), 100.0)
    rt.stop()
    fresh = FakeDataplane()  # a kernel that lost the routes
    again = start(tmp_path, fresh, [])
    try:
        assert fresh.tunnels() == {HOA: COA} and fresh.prefix_routes() == {MNP: COA}
        assert again.handle_control({"cmd": "cache"})["bindings"][0]["prefixes"] == [str(MNP)]
    finally:
        again.stop()


def test_mobile_router_policy_comes_from_the_mobile_node_entries() -> None:
    [entry] = parse_mobile_node_entries(
        [
            {
                "home_address": str(HOA),
                "spi": 300,
                "key_env": "K",
                "mobile_router": True,
                "prefixes": [str(MNP)],
            }
        ]
    )
    assert entry.mobile_router and entry.prefixes == (MNP,)
    plain = MobileNodeCredentials(301, KeySource(env="K"), (IPv6Network(f"{COA}/128"),))
    assert mobile_router_policies((entry, plain)) == (POLICY,)
    for bad in (
        {"prefixes": [str(MNP)]},  # prefixes without mobile_router
        {"mobile_router": "yes"},
        {"mobile_router": True, "prefixes": ["fe80::/64"]},
        {"mobile_router": True, "prefixes": ["2001:db8:77::1/48"]},
    ):
        with pytest.raises(ValueError):
            parse_mobile_node_entries(
                [{"home_address": str(HOA), "spi": 300, "key_env": "K", **bad}]
            )


def test_reload_changes_the_mobile_router_policy_for_the_next_registrations(
    setup: tuple[HomeAgentRuntime, FakeDataplane, list[bytes]], tmp_path: Path
) -> None:
    rt, fake, _sent = setup
    assert rt.core is not None
    entry = MobileNodeCredentials(
        300,
        KeySource(env="K"),
        (IPv6Network(f"{HOA}/128"),),
        mobile_router=True,
        prefixes=(IPv6Network("2001:db8:99::/48"),),
    )
    config = AgentConfig(
        role=Role.HA,
        source=tmp_path / "ha.toml",
        state_dir=tmp_path,
        ha=HomeAgentConfig(
            max_binding_lifetime=rt.core.config.max_binding_lifetime, mobile_nodes=(entry,)
        ),
    )
    assert rt.reload(config) == ["mobile routers: 1"]
    rt.on_queued_packet(router_bu(1), 100.0)  # implicit mode: the reloaded prefix
    assert fake.prefix_routes() == {IPv6Network("2001:db8:99::/48"): COA}
    # the control socket's flush takes the prefix routes with the tunnels
    assert rt.handle_control({"cmd": "flush"})["ok"]
    assert fake.prefix_routes() == {} and fake.tunnels() == {}
