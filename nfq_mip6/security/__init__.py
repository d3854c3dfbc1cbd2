"""Security and reliability: RFC 4285 MN-HA authentication, rate limits (RFC 6275 §9.3.3).

Pure modules (no sockets, no clocks read implicitly: every time is an argument or an injected
callable) so that the protocol core and the runtimes can both use them; only
:mod:`~nfq_mip6.security.keys` reads files (the keys). RFC 4285 is split into the codec
(:mod:`~nfq_mip6.security.auth_codec`), the Home Agent side
(:mod:`~nfq_mip6.security.home_agent_auth`) and the Mobile Node side
(:mod:`~nfq_mip6.security.mobile_node_auth`); the package names them all below.
The runtime-facing bundle is :class:`nfq_mip6.security.guard.HomeAgentGuard`. Imports run
downward only: security uses wire and the error root, never the configuration or the store.
See docs/security.md.
"""

from nfq_mip6.security.auth_codec import (
    AUTHENTICATOR_LENGTH,
    DEFAULT_TIMESTAMP_WINDOW,
    MIN_KEY_LENGTH,
    LocatedAuthentication,
    SecurityAssociation,
    care_of_address_of,
    compute_authenticator,
    locate_authentication_option,
    ntp_ordinal,
    ntp_timestamp,
    sign_message,
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
from nfq_mip6.security.ratelimit import RateLimiter, RateLimits, TokenBucket

__all__ = [
    "AUTHENTICATOR_LENGTH",
    "DEFAULT_TIMESTAMP_WINDOW",
    "MIN_KEY_LENGTH",
    "AuthRejection",
    "BindingAckCheck",
    "HomeAgentVerifier",
    "KeyMaterialError",
    "KeySource",
    "LocatedAuthentication",
    "MobileNodeAuthenticator",
    "MobileNodeCredentials",
    "RateLimiter",
    "RateLimits",
    "SecurityAssociation",
    "TokenBucket",
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
    "unix_time_from_ntp",
    "verify_message",
]
