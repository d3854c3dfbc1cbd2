"""Security and reliability: RFC 4285 MN-HA authentication, rate limits (RFC 6275 §9.3.3).

Pure modules (no sockets, no clocks read implicitly: every time is an argument or an injected
callable) so that the protocol core and the runtimes can both use them.
"""

from nfq_mip6.security.auth import (
    AUTHENTICATOR_LENGTH,
    DEFAULT_TIMESTAMP_WINDOW,
    MIN_KEY_LENGTH,
    AuthRejection,
    BindingAckCheck,
    HomeAgentVerifier,
    KeyMaterialError,
    KeySource,
    LocatedAuthentication,
    MobileNodeAuthenticator,
    SecurityAssociation,
    compute_authenticator,
    load_key,
    locate_authentication_option,
    ntp_timestamp,
    sign_message,
    unix_time_from_ntp,
    verify_message,
)
from nfq_mip6.security.ratelimit import RateLimiter, TokenBucket

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
    "RateLimiter",
    "SecurityAssociation",
    "TokenBucket",
    "compute_authenticator",
    "load_key",
    "locate_authentication_option",
    "ntp_timestamp",
    "sign_message",
    "unix_time_from_ntp",
    "verify_message",
]
