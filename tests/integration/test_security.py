"""RFC 4285 MN-HA authentication on the real kernel: forged Binding Updates against a running
home agent (``nfq-mip6 run``) in the test bed, from a scripted Mobile Node on visitnet.

Forgeries (no Authentication option, wrong key, unknown SPI, a home address outside the key's
policy, a replayed Mesg-ID, no Mesg-ID) get the RFC 4285 status and never change the binding;
the authenticated MN registers and gets an authenticated BA.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import (
    AgentHandle,
    ReceivedBindingAck,
    ScriptedMobileNode,
    binding_ack,
    mn_away,
    running_home_agent,
    scripted_mobile_node,
    write_agent_config,
)

from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.mobile_node_auth import BindingAckCheck, MobileNodeAuthenticator
from nfq_mip6.testbed import Testbed
from nfq_mip6.testbed.testbed import Node
from nfq_mip6.wire import (
    AlternateCareofAddress,
    AuthenticationOption,
    BindingUpdate,
    BUFlags,
    MessageIdentifier,
    build_ipv6_packet,
    build_mh,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.howto import COA, HA, HOA

pytestmark = pytest.mark.netns

OTHER_HOA = IPv6Address("fec0:106:2700::77")
HIJACK_COA = IPv6Address("fec0:106:1100::99")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff01234567")
WRONG_KEY = bytes(20)
SPI = 4711
QUEUE_NUM = 27


def write_key(directory: Path, name: str, key: bytes) -> Path:
    path = directory / name
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


def write_ha_config(tmp: Path, queue_num: int, key_file: Path | None) -> Path:
    auth = (
        f"""
[[ha.mobile_nodes]]
home_address = "{HOA}"
spi = {SPI}
key_file = "{key_file}"
nai = "mn@example.org"
"""
        if key_file is not None
        else "require_authentication = false\n"
    )
    sections = f"""
[ha]
max_binding_lifetime = 400
max_tunnel_nr = 5
{auth}"""
    return write_agent_config(tmp, "ha", queue_num, sections, log_level="debug")


def flush_ha_kernel_state(node: Node) -> None:
    """The HA's tunnel tables, its rules 940 and 941 and its proxies (the tunnel source stays)."""
    helpers.flush_ha_kernel_state(node, ("940", "941"), reset_tunnel_source=False)


def association(key: bytes = KEY, spi: int = SPI) -> SecurityAssociation:
    return SecurityAssociation(spi, key, (IPv6Network(f"{HOA}/128"),), b"mn@example.org")


def home_bu(
    sequence: int,
    signer: MobileNodeAuthenticator | None,
    home_address: IPv6Address = HOA,
    alt_coa: IPv6Address = COA,
) -> bytes:
    """A home BU from the CoA with an HAO (and an Alternate CoA), signed by ``signer``."""
    bu = BindingUpdate(sequence, BUFlags.A | BUFlags.H, 100, (AlternateCareofAddress(alt_coa),))
    if signer is not None:
        bu = signer.sign_binding_update(bu, alt_coa, home_address)
    mh = build_mh(bu, home_address, HA)
    return build_ipv6_packet(COA, HA, IPPROTO_MH, mh, home_address=home_address)


def bindings(agent: AgentHandle) -> list[tuple[str, str, int]]:
    return [
        (b["home_address"], b["care_of_address"], b["sequence"])
        for b in agent.control("cache")["bindings"]
    ]


# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def away(testbed: Testbed) -> Iterator[Testbed]:
    with mn_away(testbed, HOA):
        yield testbed


@pytest.fixture(scope="module")
def agent(away: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandle]:
    tmp = tmp_path_factory.mktemp("ha-auth")
    ha = away.node("ha")
    key_file = write_key(tmp, "mn.key", KEY)
    config = write_ha_config(tmp, QUEUE_NUM, key_file)
    with running_home_agent(ha, config, tmp / "ha.sock", flush_ha_kernel_state) as handle:
        yield handle
    assert KEY.hex() not in handle.log_path.read_text()


@pytest.fixture(scope="module")
def mn(away: Testbed) -> Iterator[ScriptedMobileNode]:
    with scripted_mobile_node(away.node("mn"), HA) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def signer() -> MobileNodeAuthenticator:
    return MobileNodeAuthenticator(association())


@pytest.fixture(scope="module")
def registered(
    agent: AgentHandle, mn: ScriptedMobileNode, signer: MobileNodeAuthenticator
) -> tuple[ReceivedBindingAck, bytes]:
    packet = home_bu(10, signer)
    return binding_ack(mn.exchange(packet, wait=5.0)), packet


def test_authenticated_mn_registers_and_the_ba_is_authenticated(
    registered: tuple[ReceivedBindingAck, bytes],
    agent: AgentHandle,
    signer: MobileNodeAuthenticator,
) -> None:
    reply, _ = registered
    assert reply.ba.status == 0
    assert (reply.dst, reply.rh2_address) == (COA, HOA)
    kinds = [type(o) for o in reply.ba.options]
    assert kinds[-2:] == [MessageIdentifier, AuthenticationOption]
    check = signer.check_binding_ack(reply.ba, reply.mh, COA, HOA)
    assert check is BindingAckCheck.ACCEPT
    assert bindings(agent) == [(str(HOA), str(COA), 10)]
    counters = agent.control("stats")["home_agent"]
    assert counters["auth_accepted"] >= 1 and counters["binding_acks_authenticated"] >= 1


@pytest.mark.parametrize(
    ("name", "signer_args", "home_address", "reason"),
    [
        ("no-auth-option", None, HOA, "auth_auth_option_missing"),
        ("wrong-key", {"key": WRONG_KEY}, HOA, "auth_auth_authenticator_mismatch"),
        ("unknown-spi", {"spi": SPI + 1}, HOA, "auth_auth_unknown_spi"),
        ("outside-policy", {}, OTHER_HOA, "auth_auth_home_address_not_authorized"),
    ],
)
def test_forged_binding_updates_get_146_and_change_nothing(
    registered: tuple[ReceivedBindingAck, bytes],
    agent: AgentHandle,
    mn: ScriptedMobileNode,
    name: str,
    signer_args: dict[str, Any] | None,
    home_address: IPv6Address,
    reason: str,
) -> None:
    forger = None if signer_args is None else MobileNodeAuthenticator(association(**signer_args))
    before = agent.control("stats")["home_agent"].get(reason, 0)
    # A newer sequence number and an attacker's CoA: would be a hijack if accepted.
    reply = binding_ack(mn.exchange(home_bu(200, forger, home_address, HIJACK_COA)))
    assert reply.ba.status == 146, name
    assert not any(isinstance(o, AuthenticationOption) for o in reply.ba.options)
    assert bindings(agent) == [(str(HOA), str(COA), 10)]
    assert agent.control("stats")["home_agent"][reason] == before + 1


def test_replayed_binding_update_gets_144_with_the_ha_time(
    registered: tuple[ReceivedBindingAck, bytes],
    agent: AgentHandle,
    mn: ScriptedMobileNode,
    signer: MobileNodeAuthenticator,
) -> None:
    _, original = registered
    reply = binding_ack(mn.exchange(original))
    assert reply.ba.status == 144
    (ha_time,) = [o for o in reply.ba.options if isinstance(o, MessageIdentifier)]
    assert abs((ha_time.identifier >> 32) - (int(time.time()) + 2_208_988_800)) <= 5
    # Authenticated: the MN may trust the HA's clock from it.
    assert signer.check_binding_ack(reply.ba, reply.mh, COA, HOA) is BindingAckCheck.RESYNC
    assert bindings(agent) == [(str(HOA), str(COA), 10)]


def test_missing_mesg_id_gets_145(
    registered: tuple[ReceivedBindingAck, bytes], agent: AgentHandle, mn: ScriptedMobileNode
) -> None:
    no_mesg_id = MobileNodeAuthenticator(association(), use_mesg_id=False)
    reply = binding_ack(mn.exchange(home_bu(300, no_mesg_id, HOA, HIJACK_COA)))
    assert reply.ba.status == 145
    assert bindings(agent) == [(str(HOA), str(COA), 10)]


def test_authenticated_refresh_is_accepted(
    registered: tuple[ReceivedBindingAck, bytes],
    agent: AgentHandle,
    mn: ScriptedMobileNode,
    signer: MobileNodeAuthenticator,
) -> None:
    reply = binding_ack(mn.exchange(home_bu(11, signer)))
    assert reply.ba.status == 0
    assert signer.check_binding_ack(reply.ba, reply.mh, COA, HOA) is BindingAckCheck.ACCEPT
    assert bindings(agent) == [(str(HOA), str(COA), 11)]
