"""The Linux Mobile IPv6 HOWTO test bed (§4.1, §4.2.1, §5.5) as data.

Every node is a network namespace, every link a Linux bridge in a private "switch"
namespace, and nodes are attached to bridges with veth pairs::

      HA ──┐                           ┌── AR ── visitnet  (fec0:106:1100::/64)
      MN ──┤ homenet                   │
      R  ──┘ (fec0:106:2700::/64)      ├── AR2 ── visitnet2 (fec0:106:1000::/64)
      R  ─── internet (fec0:106:2300::/64)
                                       └── CN

The Mobile Node has a single interface (``eth0``); travelling (the HOWTO's
``iwconfig eth0 essid visitnet``) re-attaches the switch side of its veth to another
bridge while flapping the carrier.

The NEMO variant (``nemo=True``, RFC 3963) adds a LAN that travels with the MN, which then
acts as a mobile router: its second interface ``lan0`` is on the ``mobilenet`` link
(the Mobile Network Prefix ``fec0:106:2800::/64``), and a mobile network node (``mnn``)
sits on it::

      MN (mobile router) lan0 ::1 ── mobilenet (fec0:106:2800::/64) ── MNN

R routes the mobile network prefix to the MN's home address (on the home link: directly
while the router is at home, to the HA's proxy neighbour entry while it is away, which then
tunnels it, RFC 3963 §6.4), and the CN routes it to R like the home prefix.

The HOWTO's addresses are site-local (fec0::/10, deprecated by RFC 3879). Linux 6.18 still
autoconfigures SLAAC addresses from fec0: prefixes (scope "site") and routes them like
global ones, so the test bed keeps them verbatim; note that ``ip addr show scope global``
does not list them.

Nothing here touches the system: this module only describes the topology.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Final, Literal

LinkName = Literal["homenet", "internet", "visitnet", "visitnet2", "mobilenet", "mgmt"]
MnLink = Literal["home", "visitnet", "visitnet2"]

MN_LINKS: Final[tuple[MnLink, ...]] = ("home", "visitnet", "visitnet2")


class NodeRole(Enum):
    """What a node does in the test bed; decides its sysctls (HOWTO §4.2.1)."""

    HOME_AGENT = "home_agent"
    ROUTER = "router"
    MOBILE_NODE = "mobile_node"
    HOST = "host"
    MOBILE_ROUTER = "mobile_router"  # the MN of the NEMO test bed (RFC 3963)
    MOBILE_NETWORK_NODE = "mobile_network_node"  # a host on the mobile router's LAN


@dataclass(frozen=True, slots=True)
class Interface:
    """One interface of a node, attached to one link (bridge)."""

    name: str
    link: LinkName
    addresses: tuple[str, ...]  # with prefix length, configured statically (nodad)
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    destination: str
    gateway: str
    device: str | None = None  # "dev DEVICE" too, when the gateway is on several interfaces


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    role: NodeRole
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    radvd_interface: str | None = None  # the interface radvd advertises on, if any


# Addresses of the HOWTO (§4.1, §4.2.1, §5.5).
HA_ADDRESS: Final = "fec0:106:2700::2"
R_HOME_ADDRESS: Final = "fec0:106:2700::1"
MN_HOME_ADDRESS: Final = "fec0:106:2700::4"
R_INTERNET_ADDRESS: Final = "fec0:106:2300::2"
AR_INTERNET_ADDRESS: Final = "fec0:106:2300::1"
AR2_INTERNET_ADDRESS: Final = "fec0:106:2300::3"
CN_ADDRESS: Final = "fec0:106:2300::10"
AR_VISIT_ADDRESS: Final = "fec0:106:1100::1"
AR2_VISIT_ADDRESS: Final = "fec0:106:1000::1"

HOME_PREFIX: Final = "fec0:106:2700::/64"
INTERNET_PREFIX: Final = "fec0:106:2300::/64"
VISITNET_PREFIX: Final = "fec0:106:1100::/64"
VISITNET2_PREFIX: Final = "fec0:106:1000::/64"

# The MN's MAC address in the HOWTO's ifconfig output, so that its SLAAC addresses are
# the HOWTO's (fec0:106:1100:0:290:7dff:fef3:31a on visitnet).
MN_MAC: Final = "00:90:7d:f3:03:1a"
MN_INTERFACE: Final = "eth0"
# RFC 4861 RetransTimer of the home link (default 1000 ms): radvd advertises it to the hosts
# (AdvRetransTimer) and the HA's home interface uses it (``retrans_time_ms``), so the HA's
# proxy DAD before a first registration (RFC 6275 §10.3.1) waits 1 × 200 ms, not 1 s.
HOME_LINK_RETRANS_TIMER_MS: Final = 200
MN_INTERFACE_ID: Final = "290:7dff:fef3:31a"

# Where the MN's single interface is attached for each travel destination.
MN_LINK_BRIDGE: Final[dict[MnLink, LinkName]] = {
    "home": "homenet",
    "visitnet": "visitnet",
    "visitnet2": "visitnet2",
}

# The prefix a travelling MN autoconfigures from on each link.
MN_LINK_PREFIX: Final[dict[MnLink, str]] = {
    "home": HOME_PREFIX,
    "visitnet": VISITNET_PREFIX,
    "visitnet2": VISITNET2_PREFIX,
}

LINKS: Final[tuple[LinkName, ...]] = ("homenet", "internet", "visitnet", "visitnet2")

# The NEMO test bed (RFC 3963): the mobile network behind the MN acting as a mobile router.
MOBILE_NETWORK_PREFIX: Final = "fec0:106:2800::/64"
MR_LAN_INTERFACE: Final = "lan0"
MR_LAN_ADDRESS: Final = "fec0:106:2800::1"
MNN_INTERFACE: Final = "eth0"
MNN_MAC: Final = "00:90:7d:f3:03:2b"
MNN_INTERFACE_ID: Final = "290:7dff:fef3:32b"
# The mobile network node's SLAAC (EUI-64) address on the mobile network.
MNN_ADDRESS: Final = f"{MOBILE_NETWORK_PREFIX.split('::/')[0]}:0:{MNN_INTERFACE_ID}"

NODES: Final[tuple[NodeSpec, ...]] = (
    NodeSpec(
        name="ha",
        role=NodeRole.HOME_AGENT,
        interfaces=(Interface("eth0", "homenet", (f"{HA_ADDRESS}/64",)),),
        # HOWTO §4.2.1: "You must add a default route or else HA will have problem
        # contacting the MN on visited LAN's."
        routes=(Route("default", R_HOME_ADDRESS),),
        radvd_interface="eth0",
    ),
    NodeSpec(
        name="r",
        role=NodeRole.ROUTER,
        interfaces=(
            Interface("eth0", "internet", (f"{R_INTERNET_ADDRESS}/64",)),
            Interface("eth1", "homenet", (f"{R_HOME_ADDRESS}/64",)),
        ),
        routes=(
            Route(VISITNET_PREFIX, AR_INTERNET_ADDRESS),
            Route(VISITNET2_PREFIX, AR2_INTERNET_ADDRESS),
        ),
    ),
    NodeSpec(
        name="ar",
        role=NodeRole.ROUTER,
        interfaces=(
            Interface("eth0", "internet", (f"{AR_INTERNET_ADDRESS}/64",)),
            Interface("eth1", "visitnet", (f"{AR_VISIT_ADDRESS}/64",)),
        ),
        routes=(
            Route(HOME_PREFIX, R_INTERNET_ADDRESS),
            Route(VISITNET2_PREFIX, AR2_INTERNET_ADDRESS),
        ),
        radvd_interface="eth1",
    ),
    NodeSpec(
        name="ar2",
        role=NodeRole.ROUTER,
        interfaces=(
            Interface("eth0", "internet", (f"{AR2_INTERNET_ADDRESS}/64",)),
            Interface("eth1", "visitnet2", (f"{AR2_VISIT_ADDRESS}/64",)),
        ),
        routes=(
            Route(HOME_PREFIX, R_INTERNET_ADDRESS),
            Route(VISITNET_PREFIX, AR_INTERNET_ADDRESS),
        ),
        radvd_interface="eth1",
    ),
    NodeSpec(
        name="cn",
        role=NodeRole.HOST,
        interfaces=(Interface("eth0", "internet", (f"{CN_ADDRESS}/64",)),),
        routes=(
            Route(HOME_PREFIX, R_INTERNET_ADDRESS),
            Route(VISITNET_PREFIX, AR_INTERNET_ADDRESS),
            Route(VISITNET2_PREFIX, AR2_INTERNET_ADDRESS),
        ),
    ),
    NodeSpec(
        name="mn",
        role=NodeRole.MOBILE_NODE,
        # The home address is static (HOWTO §4.2.1); the default router comes from the
        # HA's Router Advertisements, care-of addresses from SLAAC on visited links.
        interfaces=(Interface(MN_INTERFACE, "homenet", (f"{MN_HOME_ADDRESS}/64",), MN_MAC),),
    ),
)

NODE_NAMES: Final[tuple[str, ...]] = tuple(n.name for n in NODES)


def _nemo_node(spec: NodeSpec) -> NodeSpec:
    """A node of the plain test bed as the NEMO test bed has it."""
    if spec.name == "r":  # the mobile network is reached through the home address
        return replace(spec, routes=(*spec.routes, Route(MOBILE_NETWORK_PREFIX, MN_HOME_ADDRESS)))
    if spec.name == "cn":
        return replace(
            spec, routes=(*spec.routes, Route(MOBILE_NETWORK_PREFIX, R_INTERNET_ADDRESS))
        )
    if spec.name == "mn":  # the mobile router: its LAN interface, forwarding on
        lan = Interface(MR_LAN_INTERFACE, "mobilenet", (f"{MR_LAN_ADDRESS}/64",))
        return replace(spec, role=NodeRole.MOBILE_ROUTER, interfaces=(*spec.interfaces, lan))
    return spec


NEMO_LINKS: Final[tuple[LinkName, ...]] = (*LINKS, "mobilenet")

NEMO_NODES: Final[tuple[NodeSpec, ...]] = (
    *(_nemo_node(spec) for spec in NODES),
    NodeSpec(
        name="mnn",
        role=NodeRole.MOBILE_NETWORK_NODE,
        # No static address or route: the node autoconfigures its address (MNN_ADDRESS) and
        # default router from the Router Advertisements the mobile router's agent sends on
        # its LAN (RFC 3963 §5.6), i.e. once that agent runs.
        interfaces=(Interface(MNN_INTERFACE, "mobilenet", (), MNN_MAC),),
    ),
)

NEMO_NODE_NAMES: Final[tuple[str, ...]] = tuple(n.name for n in NEMO_NODES)


def nodes(nemo: bool = False) -> tuple[NodeSpec, ...]:
    """The nodes of the plain test bed, or of the NEMO one (``nemo``)."""
    return NEMO_NODES if nemo else NODES


def links(nemo: bool = False) -> tuple[LinkName, ...]:
    """The links (bridges) of the plain test bed, or of the NEMO one (``nemo``)."""
    return NEMO_LINKS if nemo else LINKS


def node_spec(name: str, nemo: bool = False) -> NodeSpec:
    for spec in nodes(nemo):
        if spec.name == name:
            return spec
    names = ", ".join(n.name for n in nodes(nemo))
    raise KeyError(f"no node {name!r} in the test bed (nodes: {names})")


def care_of_address(mn_link: MnLink) -> str:
    """The SLAAC (EUI-64) address the MN configures on ``mn_link`` (HOWTO §5.2, §5.5)."""
    prefix = MN_LINK_PREFIX[mn_link].split("::/")[0]
    return f"{prefix}:0:{MN_INTERFACE_ID}"


def node_addresses(name: str) -> tuple[str, ...]:
    """Static addresses of a node, without prefix length."""
    return tuple(a.split("/")[0] for i in node_spec(name).interfaces for a in i.addresses)


def sysctls(spec: NodeSpec) -> dict[str, str]:
    """Sysctls of a node's namespace (HOWTO §4.2.1), applied before its interfaces exist.

    ``default.*`` is inherited by the interfaces created afterwards; per-interface values
    are set again explicitly by the test bed.
    """
    common = {
        "net.ipv6.conf.all.use_tempaddr": "0",
        "net.ipv6.conf.default.use_tempaddr": "0",
        "net.ipv6.conf.default.addr_gen_mode": "0",  # EUI-64
        "net.ipv6.conf.all.accept_redirects": "0",
        "net.ipv6.conf.default.accept_redirects": "0",
    }
    # An ordinary host: SLAAC from its routers' Router Advertisements, optimistic DAD.
    host = common | {
        "net.ipv6.conf.all.forwarding": "0",
        "net.ipv6.conf.default.forwarding": "0",
        "net.ipv6.conf.default.autoconf": "1",
        "net.ipv6.conf.default.accept_ra": "1",
        "net.ipv6.conf.default.accept_ra_defrtr": "1",
        "net.ipv6.conf.default.accept_ra_pinfo": "1",
        "net.ipv6.conf.all.optimistic_dad": "1",
        "net.ipv6.conf.default.optimistic_dad": "1",
    }
    if spec.role is NodeRole.MOBILE_NETWORK_NODE:
        # on the mobile router's LAN
        return host
    if spec.role is NodeRole.MOBILE_ROUTER:
        # A mobile node that forwards for its LAN (RFC 3963 §5.5): per interface
        # (``force_forwarding``, Linux 6.17+, set by :func:`interface_sysctls`), so that it
        # stays a host on the links it visits (RAs, SLAAC with optimistic DAD, which
        # ``all.forwarding = 1`` would turn off).
        return sysctls(replace(spec, role=NodeRole.MOBILE_NODE))
    if spec.role is NodeRole.MOBILE_NODE:
        # A new CoA is usable at once (RFC 4429); the MN sends RS on link-up.
        return host | {
            "net.ipv6.conf.all.accept_redirects": "1",
            "net.ipv6.conf.default.accept_redirects": "1",
            "net.ipv6.conf.all.use_optimistic": "1",
            "net.ipv6.conf.default.use_optimistic": "1",
        }
    # Routers, HA and CN: static configuration, no DAD (a closed test bed; it saves the
    # 1 s DAD delay before radvd can send from a link-local address).
    values = common | {
        "net.ipv6.conf.all.accept_dad": "0",
        "net.ipv6.conf.default.accept_dad": "0",
        "net.ipv6.conf.default.autoconf": "0",
        "net.ipv6.conf.default.accept_ra": "0",
    }
    if spec.role in (NodeRole.ROUTER, NodeRole.HOME_AGENT):
        values["net.ipv6.conf.all.forwarding"] = "1"
        values["net.ipv6.conf.default.forwarding"] = "1"
    if spec.role is NodeRole.HOME_AGENT:
        # Proxy Neighbor Discovery for the home addresses of away MNs (RFC 6275 §10.4.1).
        values["net.ipv6.conf.all.proxy_ndp"] = "1"
        values["net.ipv6.conf.default.proxy_ndp"] = "1"
    return values


def interface_sysctls(spec: NodeSpec, ifname: str) -> dict[str, str]:
    """Per-interface copies of the namespace defaults (set before the interface goes up);
    on the HA's home interface also the home link's DAD settings (RFC 4862 §5.1)."""
    prefix = "net.ipv6.conf.default."
    values = {
        f"net.ipv6.conf.{ifname}.{key[len(prefix) :]}": value
        for key, value in sysctls(spec).items()
        if key.startswith(prefix)
    }
    if spec.role is NodeRole.MOBILE_ROUTER:
        # forwards what arrives on its LAN and what arrives on its egress (decapsulated
        # from the tunnel while away, straight from the home link at home)
        values[f"net.ipv6.conf.{ifname}.force_forwarding"] = "1"
        if ifname == MR_LAN_INTERFACE:
            # its own LAN: a static address; it advertises there rather than listens
            values[f"net.ipv6.conf.{ifname}.accept_ra"] = "0"
            values[f"net.ipv6.conf.{ifname}.autoconf"] = "0"
    if spec.role is NodeRole.HOME_AGENT and ifname == spec.radvd_interface:
        values[f"net.ipv6.conf.{ifname}.dad_transmits"] = "1"
        values[f"net.ipv6.neigh.{ifname}.retrans_time_ms"] = str(HOME_LINK_RETRANS_TIMER_MS)
    return values


# The switch namespace only forwards frames: no IPv6 on bridges or ports.
SWITCH_SYSCTLS: Final[dict[str, str]] = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
