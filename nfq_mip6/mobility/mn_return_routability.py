"""Mobile node side of return routability (RFC 6275 §5.2, §11.6, §11.7.2) for one
correspondent's Binding Update List entry. Sans-I/O, ``now`` passed in.

Theory of operation:

* The MN sends a Home Test Init through the reverse tunnel (source HoA) and a Care-of Test
  Init directly (source CoA), each with a fresh random cookie (§11.6.1); retransmissions use
  the INITIAL_BINDACK_TIMEOUT back-off (§11.8).
* A Home Test / Care-of Test is accepted only with the outstanding cookie, from the CN, to the
  right address (a HoT through the tunnel while away, §11.6.2). Its keygen token and nonce
  index are kept and used for at most MAX_TOKEN_LIFETIME (210 s); the care-of token only for
  the CoA it was obtained for.
* The CN Binding Update carries the Nonce Indices and a Binding Authorization Data option made
  with Kbm = SHA1(home token | care-of token), or the home token alone for a deletion
  (§5.2.5, §11.7.2); the CN's BA must carry a valid one (§11.7.3).
* BA statuses 136-138 (expired nonce indices) drop the expired token(s) so that the next
  attempt fetches new ones.
"""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.constants import COOKIE_LENGTH, MAX_TOKEN_LIFETIME
from nfq_mip6.mobility.binding_update_list import BindingUpdateListEntry
from nfq_mip6.mobility.events import (
    Action,
    MessageDiscarded,
    MobilityMessageReceived,
    SendMobilityMessage,
)
from nfq_mip6.mobility.rr import (
    MhDataEncoder,
    RandomBytes,
    binding_management_key,
    verify_authenticator,
    with_authenticator,
)
from nfq_mip6.wire.mh import (
    BAStatus,
    BindingUpdate,
    BUFlags,
    CareofTest,
    CareofTestInit,
    HomeTest,
    HomeTestInit,
    MHType,
)
from nfq_mip6.wire.options import NonceIndices


def tokens_needed(
    entry: BindingUpdateListEntry, now: float, *, deletion: bool
) -> tuple[bool, bool]:
    """Which keygen tokens (home, care-of) must be fetched before the next BU: missing,
    older than MAX_TOKEN_LIFETIME, or (care-of) for another CoA. A deletion needs only the
    home token (§5.2.5)."""
    need_home = entry.home_token is None or now - entry.home_token_at >= MAX_TOKEN_LIFETIME
    need_careof = not deletion and (
        entry.careof_token is None
        or now - entry.careof_token_at >= MAX_TOKEN_LIFETIME
        or entry.careof_token_coa != entry.care_of_address
    )
    return need_home, need_careof


def home_token_valid(entry: BindingUpdateListEntry, now: float) -> bool:
    return entry.home_token is not None and now - entry.home_token_at < MAX_TOKEN_LIFETIME


def new_cookies(
    entry: BindingUpdateListEntry, need_home: bool, need_careof: bool, random_bytes: RandomBytes
) -> None:
    """Fresh cookies for the tests to (re)start (§11.6.1)."""
    if need_home:
        entry.home_cookie = random_bytes(COOKIE_LENGTH)
    if need_careof:
        entry.careof_cookie = random_bytes(COOKIE_LENGTH)


def forget_tests(entry: BindingUpdateListEntry) -> None:
    """The outstanding tests are void (new CoA): they start again when the home BA comes."""
    entry.home_cookie = entry.careof_cookie = None


def test_inits(
    entry: BindingUpdateListEntry, home_address: IPv6Address, *, away: bool, now: float
) -> list[Action]:
    """§11.6.1: HoTI through the reverse tunnel from the HoA; CoTI directly from the CoA,
    for each test with an outstanding cookie; the next retransmission after ``rr_delay``."""
    actions: list[Action] = []
    entry.rr_next_at = now + entry.rr_delay
    if entry.home_cookie is not None:
        actions.append(
            SendMobilityMessage(
                HomeTestInit(entry.home_cookie), home_address, entry.destination, via_tunnel=away
            )
        )
    if entry.careof_cookie is not None:
        actions.append(
            SendMobilityMessage(
                CareofTestInit(entry.careof_cookie), entry.care_of_address, entry.destination
            )
        )
    return actions


def accept_test(
    entry: BindingUpdateListEntry,
    event: MobilityMessageReceived,
    message: HomeTest | CareofTest,
    home_address: IPv6Address,
    *,
    away: bool,
    now: float,
) -> MessageDiscarded | None:
    """§11.6.2: keep the token of a HoT/CoT that answers the outstanding test, or say why
    the message is discarded."""
    if isinstance(message, HomeTest):
        if (
            entry.home_cookie is None
            or message.cookie != entry.home_cookie
            or event.dst != home_address
            or (away and not event.via_tunnel)
        ):
            return MessageDiscarded("home-test-mismatch", event.src, MHType.HOT)
        entry.home_cookie = None
        entry.home_token = message.keygen_token
        entry.home_nonce_index = message.nonce_index
        entry.home_token_at = now
        return None
    if (
        entry.careof_cookie is None
        or message.cookie != entry.careof_cookie
        or event.dst != entry.care_of_address
    ):
        return MessageDiscarded("careof-test-mismatch", event.src, MHType.COT)
    entry.careof_cookie = None
    entry.careof_token = message.keygen_token
    entry.careof_nonce_index = message.nonce_index
    entry.careof_token_at = now
    entry.careof_token_coa = entry.care_of_address
    return None


def tests_complete(entry: BindingUpdateListEntry) -> bool:
    """No test is outstanding (both answered, or none started)."""
    return entry.home_cookie is None and entry.careof_cookie is None


def expire_tokens(entry: BindingUpdateListEntry, status: int) -> None:
    """§11.7.3: BA 136/137/138: drop the expired token(s); fresh ones are fetched."""
    if status != BAStatus.EXPIRED_CAREOF_NONCE_INDEX:
        entry.home_token = None
    if status != BAStatus.EXPIRED_HOME_NONCE_INDEX:
        entry.careof_token = None


def correspondent_binding_update(
    entry: BindingUpdateListEntry,
    *,
    home_address: IPv6Address,
    care_of_address: IPv6Address,
    units: int,
    encode_mh_data: MhDataEncoder,
) -> SendMobilityMessage:
    """§11.7.2: the CN BU with Nonce Indices and the Binding Authorization Data made with
    Kbm (home token alone for a deletion, ``units`` 0). Remembers Kbm and the CoA it was
    computed for, to check the CN's BA."""
    flags = BUFlags.A  # H = 0, K = 0 towards a CN (§6.1.7)
    entry.sent_flags = int(flags)
    assert entry.home_token is not None
    if units == 0:
        kbm = binding_management_key(entry.home_token, None)
    else:
        assert entry.careof_token is not None
        kbm = binding_management_key(entry.home_token, entry.careof_token)
    entry.kbm = kbm
    entry.auth_care_of_address = care_of_address
    indices = NonceIndices(entry.home_nonce_index, entry.careof_nonce_index)
    bu = with_authenticator(
        BindingUpdate(entry.sequence, flags, units, (indices,)),
        kbm,
        care_of_address,
        entry.destination,
        encode_mh_data,
    )
    if care_of_address == home_address:
        return SendMobilityMessage(bu, home_address, entry.destination)
    return SendMobilityMessage(bu, care_of_address, entry.destination, home_address=home_address)


def binding_ack_authentic(entry: BindingUpdateListEntry, mh_bytes: bytes) -> bool:
    """§11.7.3: the CN's BA carries a valid Binding Authorization Data option (last)."""
    return verify_authenticator(entry.kbm, entry.auth_care_of_address, entry.destination, mh_bytes)


__all__ = [
    "accept_test",
    "binding_ack_authentic",
    "correspondent_binding_update",
    "expire_tokens",
    "forget_tests",
    "home_token_valid",
    "new_cookies",
    "test_inits",
    "tests_complete",
    "tokens_needed",
]
