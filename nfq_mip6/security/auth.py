"""RFC 4285 MN-HA authentication of home registrations (RFC 4283 MN-ID, RFC 4285 §6 replay
protection): the names of the four modules it is made of, in one place.

* :mod:`nfq_mip6.security.auth_codec`: the option codec, HMAC, NTP timestamps and the
  security association (pure);
* :mod:`nfq_mip6.security.keys`: key files and variables, ``[[ha.mobile_nodes]]`` credentials
  (reads files);
* :mod:`nfq_mip6.security.home_agent_auth`: the HA's verifier (BU checks, BA signing);
* :mod:`nfq_mip6.security.mobile_node_auth`: the MN's authenticator (BU signing, BA checks).
"""

from __future__ import annotations

from nfq_mip6.security.auth_codec import (
    AUTHENTICATOR_LENGTH,
    DEFAULT_TIMESTAMP_WINDOW,
    MIN_KEY_LENGTH,
    NTP_UNIX_OFFSET,
    RESERVED_SPI_MAX,
    Clock,
    LocatedAuthentication,
    SecurityAssociation,
    care_of_address_of,
    compute_authenticator,
    locate_authentication_option,
    ntp_ordinal,
    ntp_timestamp,
    sign_message,
    system_clock,
    unix_time_from_ntp,
    verify_message,
)
from nfq_mip6.security.home_agent_auth import AuthRejection, HomeAgentVerifier, home_agent_verifier
from nfq_mip6.security.keys import (
    KeyMaterialError,
    KeySource,
    MobileNodeCredentials,
    load_key,
    parse_mobile_node_entries,
    parse_spi,
)
from nfq_mip6.security.mobile_node_auth import (
    BindingAckCheck,
    MobileNodeAuthenticator,
    mobile_node_authenticator,
)

__all__ = [
    "AUTHENTICATOR_LENGTH",
    "DEFAULT_TIMESTAMP_WINDOW",
    "MIN_KEY_LENGTH",
    "NTP_UNIX_OFFSET",
    "RESERVED_SPI_MAX",
    "AuthRejection",
    "BindingAckCheck",
    "Clock",
    "HomeAgentVerifier",
    "KeyMaterialError",
    "KeySource",
    "LocatedAuthentication",
    "MobileNodeAuthenticator",
    "MobileNodeCredentials",
    "SecurityAssociation",
    "care_of_address_of",
    "compute_authenticator",
    "home_agent_verifier",
    "load_key",
    "locate_authentication_option",
    "mobile_node_authenticator",
    "ntp_ordinal",
    "ntp_timestamp",
    "parse_mobile_node_entries",
    "parse_spi",
    "sign_message",
    "system_clock",
    "unix_time_from_ntp",
    "verify_message",
]
