"""RFC 5142 Home Agent Switch over the RFC 4285 MN-HA association: the HA's guard signs it as
it signs a BA (RFC 5142 §5.1), the MN accepts only a switch that verifies (§6.1)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

from nfq_mip6.config import HomeAgentConfig
from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.security.keys import KeySource, MobileNodeCredentials
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.wire import build_mh
from nfq_mip6.wire.mh import BindingUpdate, BUFlags, HomeAgentSwitch
from nfq_mip6.wire.options import AlternateCareofAddress, AuthenticationOption
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::4")
HA2 = IPv6Address("fec0:106:2700::3")
KEY = bytes(range(40, 60))
SPI = 777


def guard_and_mn() -> tuple[HomeAgentGuard, MobileNodeAuthenticator]:
    credentials = MobileNodeCredentials(SPI, KeySource(env="K"), (IPv6Network(f"{HOA}/128"),))
    guard = HomeAgentGuard.from_config(
        HomeAgentConfig(mobile_nodes=(credentials,)), legacy=False, environ={"K": KEY.hex()}
    )
    mn = MobileNodeAuthenticator(SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),)))
    return guard, mn


def test_switch_is_signed_for_an_authenticated_mn_and_verifies() -> None:
    guard, mn = guard_and_mn()
    assert guard.verifier is not None
    bu = mn.sign_binding_update(
        BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),)), COA, HOA
    )
    assert guard.verifier.check_home_binding_update(bu, build_mh(bu, HOA, HA), HOA, COA, 0) is None
    switch = guard.outgoing(HomeAgentSwitch((HA2,)), COA, HOA)
    assert isinstance(switch, HomeAgentSwitch)
    assert isinstance(switch.options[-1], AuthenticationOption)
    assert guard.counters()["home_agent_switches_authenticated"] == 1
    mh = build_mh(switch, HA, HOA)
    assert mn.check_home_agent_switch(mh, COA, HOA)
    forged = build_mh(HomeAgentSwitch((HA2,)), HA, HOA)
    assert not mn.check_home_agent_switch(forged, COA, HOA)
    tampered = bytearray(mh)
    tampered[-20] ^= 1  # an address octet
    assert not mn.check_home_agent_switch(bytes(tampered), COA, HOA)


def test_switch_to_an_mn_without_authenticated_bu_goes_unchanged() -> None:
    guard, _ = guard_and_mn()
    switch = HomeAgentSwitch((HA2,))
    assert guard.outgoing(switch, COA, HOA) is switch
