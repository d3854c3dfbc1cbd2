"""RFC 4285 interop details.

* The BA is signed with the care-of address the BU registered (its Alternate CoA, not the BA's
  destination), so a peer MN that checks it with that CoA accepts it.
* The Authentication option is the last thing in every signed message, both roles (§5: "MUST
  be the last option"; no padding after it either).
* MN-HA keys of 16 octets (what peers commonly configure), 20 and longer all work; the docs
  and deploy/ generate 16.
"""

from __future__ import annotations

import re
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.security import (
    BindingAckCheck,
    HomeAgentVerifier,
    KeyMaterialError,
    KeySource,
    MobileNodeAuthenticator,
    SecurityAssociation,
    care_of_address_of,
    load_key,
    verify_message,
)
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.wire import build_mh, parse_mh
from nfq_mip6.wire.mh import BAFlags, BAStatus, BindingAck, BindingUpdate, BUFlags
from nfq_mip6.wire.options import (
    AlternateCareofAddress,
    BindingRefreshAdvice,
    MessageIdentifier,
    MobilityOption,
)
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(1, 17))  # 16 octets, as RFC 4285 peers commonly configure
SPI = 1000
NAI = b"mn1@example.org"
T0 = 1_800_000_000.0
ROOT = Path(__file__).resolve().parents[3]
AUTH_OPTION_TYPE = 9


def association(nai: bytes | None = None) -> SecurityAssociation:
    return SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),), nai)


def auth_option_span(mh: bytes) -> tuple[int, int]:
    """(offset, end) of the Authentication option, walking the options after the fixed part."""
    offset = {5: 12, 6: 12}[mh[2]]  # BU: 6 + 6 octets, BA: 6 + 6 octets
    span = None
    while offset < len(mh):
        if mh[offset] == 0:  # Pad1
            offset += 1
            continue
        end = offset + 2 + mh[offset + 1]
        if mh[offset] == AUTH_OPTION_TYPE:
            span = (offset, end)
        offset = end
    assert span is not None, mh.hex()
    return span


def assert_authentication_last(mh: bytes) -> None:
    start, end = auth_option_span(mh)
    assert start % 4 == 1  # RFC 4285 §5 alignment 4n + 1
    assert end == len(mh), f"{len(mh) - end} octet(s) follow the Authentication option"


def signed_bu(options: tuple[MobilityOption, ...], *, nai: bool, mesg_id: bool) -> bytes:
    mn = MobileNodeAuthenticator(
        association(NAI if nai else None), use_mesg_id=mesg_id, wall_clock=lambda: T0
    )
    bu = BindingUpdate(7, BUFlags.A | BUFlags.H, 250, options)
    return build_mh(mn.sign_binding_update(bu, COA, HOA), HOA, HA)


@pytest.mark.parametrize("nai", [False, True], ids=["no-mn-id", "mn-id"])
@pytest.mark.parametrize("mesg_id", [False, True], ids=["no-mesg-id", "mesg-id"])
@pytest.mark.parametrize(
    "options", [(), (AlternateCareofAddress(COA),)], ids=["no-altcoa", "altcoa"]
)
def test_mn_binding_updates_end_with_the_authentication_option(
    options: tuple[MobilityOption, ...], nai: bool, mesg_id: bool
) -> None:
    mh = signed_bu(options, nai=nai, mesg_id=mesg_id)
    assert_authentication_last(mh)
    assert verify_message(mh, key=KEY, care_of_address=COA, home_address=HOA)


def _ha_answer(
    status: int, options: tuple[MobilityOption, ...], *, mesg_id: bool
) -> tuple[bytes, HomeAgentVerifier]:
    verifier = HomeAgentVerifier([association()], wall_clock=lambda: T0, require_mesg_id=mesg_id)
    mn = MobileNodeAuthenticator(association(), use_mesg_id=mesg_id, wall_clock=lambda: T0)
    bu = mn.sign_binding_update(
        BindingUpdate(7, BUFlags.A | BUFlags.H, 250, (AlternateCareofAddress(COA),)), COA, HOA
    )
    assert verifier.check_home_binding_update(bu, build_mh(bu, HOA, HA), HOA, COA, 0.0) is None
    ba = BindingAck(status, BAFlags.NONE, 7, 250 if status < 128 else 0, options)
    return build_mh(verifier.protect_binding_ack(ba, COA, HOA), HA, HOA), verifier


@pytest.mark.parametrize(
    ("status", "options", "mesg_id"),
    [
        (BAStatus.ACCEPTED, (), True),
        (BAStatus.ACCEPTED, (), False),
        # The case an interop check found: refresh advice and no Mesg-ID left padding after
        # the option placed at the first 4n + 1 offset.
        (BAStatus.ACCEPTED, (BindingRefreshAdvice(60),), False),
        (BAStatus.ACCEPTED, (BindingRefreshAdvice(60),), True),
        (BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, (), True),
        (BAStatus.MIPV6_ID_MISMATCH, (MessageIdentifier(0x1234_5678_9ABC_DEF0),), True),
    ],
    ids=["0", "0-no-mesg-id", "0-bra-no-mesg-id", "0-bra", "135", "144-ha-time"],
)
def test_ha_binding_acks_end_with_the_authentication_option(
    status: int, options: tuple[MobilityOption, ...], mesg_id: bool
) -> None:
    mh, _ = _ha_answer(status, options, mesg_id=mesg_id)
    assert_authentication_last(mh)
    assert verify_message(mh, key=KEY, care_of_address=COA, home_address=HOA)


@pytest.mark.parametrize("length", [16, 20, 32, 64, 100])
@pytest.mark.parametrize("form", ["raw", "hex"])
def test_keys_of_16_20_and_more_octets_load_and_verify_both_ways(
    tmp_path: Path, length: int, form: str
) -> None:
    key = bytes((7 * i + 3) & 0xFF for i in range(length))
    path = tmp_path / "mn1.key"
    path.write_bytes(key if form == "raw" else key.hex().encode() + b"\n")
    path.chmod(0o600)
    loaded = load_key(KeySource(file=path))
    assert loaded == key
    sa = SecurityAssociation(SPI, loaded, (IPv6Network(f"{HOA}/128"),), None)
    verifier = HomeAgentVerifier([sa], wall_clock=lambda: T0)
    mn = MobileNodeAuthenticator(sa, wall_clock=lambda: T0)
    bu = mn.sign_binding_update(BindingUpdate(7, BUFlags.A | BUFlags.H, 250), COA, HOA)
    assert verifier.check_home_binding_update(bu, build_mh(bu, COA, HA), HOA, COA, 0.0) is None


def test_keys_shorter_than_16_octets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.key"
    path.write_text(bytes(15).hex())
    path.chmod(0o600)
    with pytest.raises(KeyMaterialError, match="15 octets"):
        load_key(KeySource(file=path))


def test_docs_and_deploy_generate_16_octet_keys() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "deploy").rglob("*")]
    pattern = re.compile(r"head -c (\d+) /dev/urandom|token_hex\((\d+)\)")
    generated = [
        match.group(1) or match.group(2)
        for path in files
        if path.is_file()
        for match in pattern.finditer(path.read_text(errors="replace"))
    ]
    assert generated and set(generated) == {"16"}, generated


def test_bu_ba_round_trip_with_an_alternate_coa_other_than_the_source() -> None:
    """The MN sends from SOURCE but registers ALTERNATE (Alternate CoA option, RFC 6275
    §6.2.5): the HA checks the BU with ALTERNATE and must sign its BA with ALTERNATE too,
    although the BA goes to SOURCE (RFC 4285 §5.1: Mobility Data = care-of address | home
    address | MH Data, the care-of address being the one registered)."""
    source = IPv6Address("fec0:106:1100::99")
    alternate = COA
    mn = MobileNodeAuthenticator(association(), wall_clock=lambda: T0)
    guard = HomeAgentGuard(HomeAgentVerifier([association()], wall_clock=lambda: T0))
    assert guard.verifier is not None
    bu = BindingUpdate(9, BUFlags.A | BUFlags.H, 250, (AlternateCareofAddress(alternate),))
    registered = care_of_address_of(bu, source)
    assert registered == alternate
    signed_bu = mn.sign_binding_update(bu, registered, HOA)
    bu_mh = build_mh(signed_bu, HOA, HA)
    assert verify_message(bu_mh, key=KEY, care_of_address=alternate, home_address=HOA)
    rejection = guard.verifier.check_home_binding_update(
        parse_mh(bu_mh),  # type: ignore[arg-type]
        bu_mh,
        HOA,
        care_of_address_of(signed_bu, source),
        0.0,
    )
    assert rejection is None
    # The runtime hands the BA to the guard with its destination (the BU's source).
    ba = guard.outgoing(BindingAck(BAStatus.ACCEPTED, BAFlags.NONE, 9, 250), source, HOA)
    ba_mh = build_mh(ba, HA, HOA)
    assert_authentication_last(ba_mh)
    # An independent check with the registered CoA, as a peer MN does, verifies ...
    assert verify_message(ba_mh, key=KEY, care_of_address=alternate, home_address=HOA)
    assert not verify_message(ba_mh, key=KEY, care_of_address=source, home_address=HOA)
    # ... and so does our MN, given the BA's destination address as the runtime does.
    received = parse_mh(ba_mh)
    assert isinstance(received, BindingAck)
    assert mn.check_binding_ack(received, ba_mh, source, HOA) is BindingAckCheck.ACCEPT
