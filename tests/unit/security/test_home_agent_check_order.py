"""RFC 4285 in the home agent core's BU check order, and the MN side of the exchange."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import ConfigError, load_config
from nfq_mip6.mobility.events import (
    BindingRegistered,
    BindingRejected,
    MessageDiscarded,
    MobilityMessageReceived,
    SendMobilityMessage,
)
from nfq_mip6.mobility.home_agent import HomeAgent, HomeAgentConfig
from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.home_agent_auth import HomeAgentVerifier, home_agent_verifier
from nfq_mip6.security.keys import KeyMaterialError, parse_mobile_node_entries
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator, mobile_node_authenticator
from nfq_mip6.wire import build_mh
from nfq_mip6.wire.mh import BAStatus, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress, MessageIdentifier
from tests.support.howto import HA, HOA, PREFIX

COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(100, 120))
SPI = 5000
WALL = 1_800_000_000.0


def association(key: bytes = KEY) -> SecurityAssociation:
    return SecurityAssociation(SPI, key, (IPv6Network(f"{HOA}/128"),))


def core() -> tuple[HomeAgent, HomeAgentVerifier]:
    verifier = HomeAgentVerifier([association()], wall_clock=lambda: WALL)
    ha = HomeAgent(
        HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=False),
        authorizer=verifier,
    )
    return ha, verifier


def bu_event(bu: BindingUpdate) -> MobilityMessageReceived:
    mh = build_mh(bu, HOA, HA)
    return MobilityMessageReceived(bu, COA, HA, home_address=HOA, mh_bytes=mh)


def home_bu(sequence: int) -> BindingUpdate:
    return BindingUpdate(sequence, BUFlags.A | BUFlags.H, 100, (AlternateCareofAddress(COA),))


def answer(actions: Sequence[object]) -> BindingAck:
    (send,) = [a for a in actions if isinstance(a, SendMobilityMessage)]
    assert isinstance(send.message, BindingAck)
    assert (send.dst, send.routing_address) == (COA, HOA)
    return send.message


def test_authenticated_registration_then_forgeries() -> None:
    ha, verifier = core()
    mn = MobileNodeAuthenticator(association(), wall_clock=lambda: WALL)
    actions = ha.handle(bu_event(mn.sign_binding_update(home_bu(10), COA, HOA)), 0.0)
    assert answer(actions).status == BAStatus.ACCEPTED
    assert any(isinstance(a, BindingRegistered) for a in actions)
    assert HOA in ha.cache
    # A forged BU with an old sequence number: 146, not 135 (nothing leaks about the cache).
    forged = MobileNodeAuthenticator(association(bytes(20)), wall_clock=lambda: WALL)
    actions = ha.handle(bu_event(forged.sign_binding_update(home_bu(3), COA, HOA)), 1.0)
    assert answer(actions).status == BAStatus.MIPV6_AUTH_FAIL
    assert any(isinstance(a, BindingRejected) for a in actions)
    # Unsigned de-registration: refused, binding kept.
    actions = ha.handle(bu_event(BindingUpdate(11, BUFlags.A | BUFlags.H, 0)), 2.0)
    assert answer(actions).status == BAStatus.MIPV6_AUTH_FAIL
    assert ha.cache.get(HOA) is not None and ha.cache.get(HOA).sequence == 10  # type: ignore[union-attr]
    assert ha.stats.NBindUpdatesDropAuth == 2
    # The real MN's replayed BU: authenticated, but the timestamp is old → 144 with HA time.
    replay = bu_event(mn.sign_binding_update(home_bu(12), COA, HOA))
    ha.handle(replay, 3.0)
    ba = answer(ha.handle(replay, 4.0))
    assert ba.status == BAStatus.MIPV6_ID_MISMATCH
    assert [type(o) for o in ba.options] == [MessageIdentifier]
    assert verifier.counters["mesg-id-replayed"] == 1


def test_silent_discard_rejection_is_a_discard() -> None:
    class Silent:
        def check_home_binding_update(self, *args: object) -> object:
            class R:
                status = None
                reason = "test-silence"
                options = ()

            return R()

    ha = HomeAgent(
        HomeAgentConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=False),
        authorizer=Silent(),  # type: ignore[arg-type]
    )
    actions = ha.handle(bu_event(home_bu(1)), 0.0)
    assert [type(a) for a in actions] == [MessageDiscarded]
    assert HOA not in ha.cache


def test_verifier_from_configuration(tmp_path: Path) -> None:
    key_file = tmp_path / "mn.key"
    key_file.write_text(KEY.hex())
    key_file.chmod(0o600)
    config = tmp_path / "ha.toml"
    config.write_text(
        f"""role = "ha"
[ha]
[[ha.mobile_nodes]]
home_address = "{HOA}"
spi = {SPI}
key_file = "{key_file}"
nai = "mn@example.org"
"""
    )
    ha_config = load_config(config, {}).ha
    assert ha_config is not None and ha_config.require_authentication is None
    assert KEY.hex() not in repr(ha_config)
    verifier = home_agent_verifier(ha_config.mobile_nodes, required=None)
    assert verifier.required and set(verifier.associations) == {SPI}
    assert verifier.associations[SPI].nai == b"mn@example.org"


def test_no_associations_is_unauthenticated_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = home_agent_verifier((), required=None)
    assert not verifier.required
    assert "NOT authenticated" in caplog.text


@pytest.mark.parametrize(
    "entries",
    [
        "x",
        [{"spi": 300, "key_env": "K"}],  # no home address
        [{"home_address": str(HOA), "key_env": "K"}],  # no SPI
        [{"home_address": str(HOA), "spi": 300}],  # no key
        [{"home_address": str(HOA), "spi": 300, "key_env": "K", "key_file": "/k"}],
        [{"home_address": str(HOA), "spi": 100, "key_env": "K"}],  # reserved SPI
        [{"home_address": "nope", "spi": 300, "key_env": "K"}],
        [{"home_address": str(HOA), "spi": 300, "key_env": "K", "colour": "red"}],
        [{"home_address": str(HOA), "spi": 300, "key_env": "K"}] * 2,  # SPI twice
    ],
)
def test_bad_mobile_node_entries(entries: object) -> None:
    with pytest.raises(ValueError):
        parse_mobile_node_entries(entries)


def test_mobile_node_authenticator_from_settings() -> None:
    assert (
        mobile_node_authenticator(spi=None, key_file=None, key_env=None, home_address=HOA) is None
    )
    mn = mobile_node_authenticator(
        spi=SPI, key_file=None, key_env="K", home_address=HOA, environ={"K": KEY.hex()}
    )
    assert mn is not None and mn.association.key == KEY
    with pytest.raises(KeyMaterialError):
        mobile_node_authenticator(spi=SPI, key_file=None, key_env=None, home_address=HOA)
    with pytest.raises(KeyMaterialError):
        mobile_node_authenticator(spi=None, key_file=None, key_env="K", home_address=HOA)


def test_mobile_node_auth_settings_in_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "mn.toml"
    config.write_text(
        f"""role = "mn"
[mn]
home_address = "{HOA}/64"
home_agent = "{HA}"
auth_spi = {SPI}
auth_key_env = "MN_KEY"
nai = "mn@example.org"
"""
    )
    mn = load_config(config, {}).mn
    assert mn is not None
    assert (mn.auth_spi, mn.auth_key_env, mn.auth_key_file, mn.nai) == (
        SPI,
        "MN_KEY",
        None,
        "mn@example.org",
    )
    authenticator = mobile_node_authenticator(
        spi=mn.auth_spi,
        key_file=mn.auth_key_file,
        key_env=mn.auth_key_env,
        home_address=mn.home_address.ip,
        nai=mn.nai,
        environ={"MN_KEY": KEY.hex()},
    )
    assert authenticator is not None and authenticator.nai == b"mn@example.org"
    config.write_text(config.read_text().replace(f"auth_spi = {SPI}", "auth_spi = 12"))
    with pytest.raises(ConfigError):
        load_config(config, {})
