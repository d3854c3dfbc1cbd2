"""RFC 6275 §12 protocol constants and §13 configuration variable defaults.

Times are in seconds (float where the RFC allows fractions). Lifetimes on the wire are 16-bit
counts of 4-second units (§6.1.7); ``LIFETIME_UNIT`` converts.
"""

from __future__ import annotations

from typing import Final

# RFC 6275 §12: protocol constants.
DHAAD_RETRIES: Final = 4
INITIAL_BINDACK_TIMEOUT: Final = 1.0
INITIAL_DHAAD_TIMEOUT: Final = 3.0
INITIAL_SOLICIT_TIMER: Final = 3.0
MAX_BINDACK_TIMEOUT: Final = 32.0
MAX_NONCE_LIFETIME: Final = 240.0
MAX_TOKEN_LIFETIME: Final = 210.0
MAX_UPDATE_RATE: Final = 3  # Binding Updates per second to one destination (§11.8)
PREFIX_ADV_RETRIES: Final = 3
PREFIX_ADV_TIMEOUT: Final = 3.0
MAX_RR_BINDING_LIFETIME: Final = 420  # seconds (105 units of 4 s)

# RFC 6275 §13: configuration variables (defaults).
INITIAL_BINDACK_TIMEOUT_FIRST_REG: Final = 1.5  # InitialBindackTimeoutFirstReg
MAX_MOB_PFX_ADV_INTERVAL: Final = 86400.0
MIN_MOB_PFX_ADV_INTERVAL: Final = 600.0
MIN_DELAY_BETWEEN_RAS: Final = 3.0

# §6.1.7: the lifetime field counts 4-second units; 65535 × 4 = 262140 s.
LIFETIME_UNIT: Final = 4
MAX_LIFETIME_UNITS: Final = 0xFFFF
MAX_LIFETIME_SECONDS: Final = MAX_LIFETIME_UNITS * LIFETIME_UNIT

# Policy caps for home registrations (RFC 6275 §10.3.1, docs/protocol-notes.md §2):
# UMIP HaMaxBindingLife vs MIPL MAX_LIFETIME.
DEFAULT_HA_MAX_BINDING_LIFETIME: Final = MAX_LIFETIME_SECONDS
MIPL_HA_MAX_BINDING_LIFETIME: Final = 1000

# RFC 4861 constants used by the Home Agent's proxy ND (§10.4.1).
MAX_NEIGHBOR_ADVERTISEMENT: Final = 3
MAX_ANYCAST_DELAY_TIME: Final = 1.0
RETRANS_TIMER: Final = 1.0  # RFC 4861 §10 default RetransTimer, seconds
# RFC 4862 §5.1: DupAddrDetectTransmits default (0 disables Duplicate Address Detection).
DUP_ADDR_DETECT_TRANSMITS: Final = 1

# RFC 5142 §5.2: a Home Agent Switch the MN does not follow (no de-registration) is sent
# again; our timer: 2 s, doubling, 3 times (the MN's first registration elsewhere takes its
# DHAAD, de-registration and the new HA's proxy DAD, about 1.5 s here).
HOME_AGENT_SWITCH_TIMEOUT: Final = 2.0
HOME_AGENT_SWITCH_RETRANSMISSIONS: Final = 3
# RFC 5142 §6.1, our choice: the MN stops waiting for the old HA's answer to its
# de-registration when the retransmission delay reaches this (BUs at 0, 1 and 3 s; left at 7 s).
HOME_AGENT_SWITCH_DEREGISTRATION_GIVE_UP: Final = 4.0
# Our choice: a restarted MN registers with the home agent a Home Agent Switch sent it to
# (RFC 5142) and falls back to the configured one (or DHAAD) when that one has not answered
# by the time the retransmission delay reaches this (BUs at 0, 1 and 3 s; left at 7 s).
RESTORED_HOME_AGENT_GIVE_UP: Final = 4.0
# ``nfq-mip6 cluster drain`` without --rate: Home Agent Switch messages per second (each MN's
# move costs its new HA a first registration with proxy DAD).
DEFAULT_DRAIN_RATE: Final = 10.0
# Our choice: revisions a cluster member keeps in its commit (active) and apply (standby)
# timelines for replication-lag measurements (minutes at 500 BU/s, about 2 MB).
CLUSTER_TIMELINE_LENGTH: Final = 20_000

# §6.5: a DHAAD reply is truncated to fit 1280 octets: (1280 − 40 − 8) / 16 = 77 addresses.
DHAAD_REPLY_MAX_ADDRESSES: Final = 77

# §5.2.3: CN node key length and nonce size (UMIP uses 8-octet nonces, 16 in circulation).
KCN_LENGTH: Final = 20
NONCE_LENGTH: Final = 8
COOKIE_LENGTH: Final = 8
KEYGEN_TOKEN_LENGTH: Final = 8
AUTHENTICATOR_LENGTH: Final = 12

# §9.5.1: sequence numbers compare modulo 2^16.
SEQUENCE_MODULUS: Final = 0x10000

# IANA protocol numbers (IPv6 Next Header values) used by the codec, the rules and the kernel
# data plane: RFC 8200 §4 for the extension headers, RFC 6275 §6.1 for the Mobility Header,
# RFC 2473 for IPv6-in-IPv6.
IPPROTO_HOPOPTS: Final = 0
IPPROTO_IPV6: Final = 41  # IPv6-in-IPv6 (RFC 2473): the MN–HA tunnel
IPPROTO_ROUTING: Final = 43
IPPROTO_FRAGMENT: Final = 44
IPPROTO_ESP: Final = 50
IPPROTO_AH: Final = 51
IPPROTO_ICMPV6: Final = 58
IPPROTO_NONE: Final = 59
IPPROTO_DSTOPTS: Final = 60
IPPROTO_MH: Final = 135  # RFC 6275 §6.1
