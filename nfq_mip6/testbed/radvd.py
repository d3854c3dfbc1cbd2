"""radvd configurations of the HOWTO's routers (§4.2.3 AR, §4.2.4 HA, §5.5 AR2).

The HOWTO's values are kept except for the advertisement intervals: the fast ones of RFC 6275
§7.5 (0.05 s .. 1.5 s, :mod:`nfq_mip6.io.radvd`), so that a moving MN hears an unsolicited RA
within 1.5 s even when it sends no Router Solicitation. The process is started as every
radvd of the project is (:class:`nfq_mip6.io.radvd.Radvd`).

``deploy/radvd/*.conf`` are these renderings (a test keeps them in sync).
"""

from __future__ import annotations

from ipaddress import IPv6Interface
from typing import Final

from nfq_mip6.io.radvd import MAX_RTR_ADV_INTERVAL, MIN_DELAY_BETWEEN_RAS, MIN_RTR_ADV_INTERVAL
from nfq_mip6.io.radvd import home_agent_config as radvd_home_agent_config
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    HOME_LINK_RETRANS_TIMER_MS,
    HOME_PREFIX,
    VISITNET2_PREFIX,
    VISITNET_PREFIX,
)

__all__ = [
    "HOWTO_HOME_AGENT_PREFERENCE",
    "access_router_config",
    "home_agent_config",
    "home_router_config",
    "radvd_config",
]

HOWTO_HOME_AGENT_PREFERENCE: Final = 20  # HOWTO §4.2.4 HomeAgentPreference


def home_agent_config(
    interface: str = "eth0",
    address: str = HA_ADDRESS,
    preference: int = HOWTO_HOME_AGENT_PREFERENCE,
) -> str:
    """HOWTO §4.2.4: the HA advertises the home prefix with the Home Agent (H) flag.

    ``AdvIntervalOpt`` is on (the HOWTO has it off): the Advertisement Interval option
    (RFC 6275 §7.3) is what lets the MN notice quickly that it has left home (HOWTO FAQ 10).
    ``AdvRetransTimer`` (the HOWTO leaves it unspecified, hosts then use 1 s) is the home
    link's RetransTimer, which the HA's home interface uses too: its proxy DAD before a first
    registration (RFC 6275 §10.3.1) waits that long. ``address`` and ``preference``: another
    home agent on the same link (tests add one).
    """
    return radvd_home_agent_config(
        interface,
        IPv6Interface(f"{address}/64"),
        preference=preference,
        lifetime=10000,
        retrans_timer_ms=HOME_LINK_RETRANS_TIMER_MS,
        prefix_lifetimes=(10000, 12000),
        heading="Home Agent (Linux Mobile IPv6 HOWTO §4.2.4), fast intervals of RFC 6275 §7.5",
    )


def _router_config(heading: str, interface: str, prefix: str, *, extra: str = "") -> str:
    """An on-link router with the fast intervals of RFC 6275 §7.5 and no Home Agent flag,
    advertising ``prefix`` (``extra``: more interface lines, each ending in a newline)."""
    return f"""\
# {heading}, fast intervals of RFC 6275 §7.5
interface {interface}
{{
    AdvSendAdvert on;
    AdvIntervalOpt on;
    MinRtrAdvInterval {MIN_RTR_ADV_INTERVAL};
    MaxRtrAdvInterval {MAX_RTR_ADV_INTERVAL};
    MinDelayBetweenRAs {MIN_DELAY_BETWEEN_RAS};
    AdvHomeAgentFlag off;
{extra}    prefix {prefix}
    {{
        AdvOnLink on;
        AdvAutonomous on;
        AdvRouterAddr on;
    }};
}};
"""


def access_router_config(prefix: str, interface: str = "eth1", title: str = "AR") -> str:
    """HOWTO §4.2.3 (AR on visitnet) and §5.5 (AR2 on visitnet2)."""
    return _router_config(
        f"Access Router {title} (Linux Mobile IPv6 HOWTO §4.2.3, §5.5)", interface, prefix
    )


def home_router_config(interface: str = "eth1") -> str:
    """The cluster test bed's home link: R advertises the home prefix (no Home Agent flag).
    The HA hosts send no RAs: only one of them holds the HA address, and a standby must
    stay silent on the home link (docs/cluster.md)."""
    return _router_config(
        "Home router R on homenet (nfq-mip6 cluster test bed)",
        interface,
        HOME_PREFIX,
        extra=f"    AdvRetransTimer {HOME_LINK_RETRANS_TIMER_MS};\n",
    )


def radvd_config(node: str) -> str:
    """The radvd.conf of a test-bed node ("ha", "ar", "ar2")."""
    if node == "ha":
        return home_agent_config()
    if node == "ar":
        return access_router_config(VISITNET_PREFIX, title="AR")
    if node == "ar2":
        return access_router_config(VISITNET2_PREFIX, title="AR2")
    raise KeyError(f"node {node!r} runs no radvd")
