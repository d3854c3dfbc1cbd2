"""What the host has: its interfaces and IPv6 addresses (``ip -j addr``) and whether its
kernel has Mobile IPv6. The runtimes ask once at start to fill in what the configuration
leaves out (legacy files name no interface or address)."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any

from nfq_mip6.errors import DataplaneError

__all__ = [
    "HomeLinkAddressing",
    "detect_kernel_mip6",
    "link_local_addresses",
    "mobile_node_interface",
    "resolve_home_link",
    "resolve_local_address",
    "routable_addresses",
]

# fec0::/10 (the HOWTO's site-local addresses) is scope "site".
_ROUTABLE_SCOPES = ("global", "site")


def _ip_json(*args: str) -> Any:
    result = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DataplaneError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


@dataclass(frozen=True, slots=True)
class HomeLinkAddressing:
    """Where the HA serves: its home interface, its address there and the home prefix."""

    interface: str
    address: IPv6Address
    prefix: IPv6Network
    mtu: int


def resolve_home_link(
    interface: str | None, address: IPv6Address | None, prefix: IPv6Network | None
) -> HomeLinkAddressing:
    """Fill in what the HA's configuration leaves out.

    No interface → the first interface carrying a global (or site-local) IPv6 address (the
    HOWTO's HA has one home interface). No address/prefix → that interface's address and
    its prefix.

    Raises:
        DataplaneError: no such address (or ``ip`` failed).
    """
    for link in _ip_json("-6", "addr", "show"):
        name = str(link.get("ifname", ""))
        if interface is not None and name != interface:
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet6" or info.get("scope") not in _ROUTABLE_SCOPES:
                continue
            iface = IPv6Interface(f"{info['local']}/{info['prefixlen']}")
            if address is not None and iface.ip != address and prefix is None:
                continue
            return HomeLinkAddressing(
                interface=name,
                address=address if address is not None else iface.ip,
                prefix=prefix if prefix is not None else iface.network,
                mtu=int(link.get("mtu", 1500)),
            )
        if interface is not None and address is not None and prefix is not None:
            return HomeLinkAddressing(interface, address, prefix, int(link.get("mtu", 1500)))
    if interface is not None and address is not None and prefix is not None:
        # An interface without any IPv6 address yet: a cluster standby's VRRP virtual-MAC
        # interface, which gets the HA address when keepalived makes this host the master.
        for link in _ip_json("link", "show", "dev", interface):
            return HomeLinkAddressing(interface, address, prefix, int(link.get("mtu", 1500)))
    where = f"interface {interface}" if interface else "any interface"
    raise DataplaneError(f"no global IPv6 address on {where}: cannot derive the home link")


def link_local_addresses(interface: str) -> frozenset[IPv6Address]:
    """The link-local addresses of ``interface`` (empty when it cannot be read)."""
    try:
        links = _ip_json("-6", "addr", "show", "dev", interface, "scope", "link")
    except DataplaneError:
        return frozenset()
    return frozenset(
        IPv6Address(info["local"])
        for link in links
        for info in link.get("addr_info", [])
        if info.get("family") == "inet6"
    )


def routable_addresses(interface: str) -> tuple[IPv6Interface, ...]:
    """The global (and site-local) addresses of ``interface`` with their prefix lengths.

    Raises:
        DataplaneError: no such interface (or ``ip`` failed).
    """
    return tuple(
        IPv6Interface(f"{info['local']}/{info['prefixlen']}")
        for link in _ip_json("-6", "addr", "show", "dev", interface)
        for info in link.get("addr_info", [])
        if info.get("family") == "inet6" and info.get("scope") in _ROUTABLE_SCOPES
    )


def resolve_local_address(interface: str | None) -> tuple[str, IPv6Address]:
    """The CN's interface and its first global (or site-local) address.

    Raises:
        OSError: no such address (or ``ip`` failed).
    """
    try:
        links = _ip_json("-6", "addr", "show")
    except DataplaneError as exc:
        raise OSError(str(exc)) from None
    for link in links:
        name = str(link.get("ifname", ""))
        if name == "lo" or (interface is not None and name != interface):
            continue
        for info in link.get("addr_info", []):
            if info.get("family") == "inet6" and info.get("scope") in _ROUTABLE_SCOPES:
                return name, IPv6Address(info["local"])
    where = f"interface {interface}" if interface else "any interface"
    raise OSError(f"no global IPv6 address on {where}: the correspondent node needs one")


def detect_kernel_mip6(config_path: Path = Path("/proc/config.gz")) -> bool | None:
    """Does the kernel have ``CONFIG_IPV6_MIP6`` (HAO/RH2 processing with xfrm RO states)?

    ``None`` when it cannot be told (no ``/proc/config.gz``); then the ``mip6`` module's
    presence in ``/sys/module`` decides if it is loaded.
    """
    try:
        with gzip.open(config_path, "rt") as config:
            for line in config:
                if line.startswith("CONFIG_IPV6_MIP6="):
                    return line.strip().split("=", 1)[1] in ("y", "m")
        return False
    except OSError:
        return True if Path("/sys/module/mip6").exists() else None


def mobile_node_interface(configured: str | None) -> str:
    """The MN's interface: the configured one, else the only one besides ``lo``, else
    ``eth0`` (the HOWTO's name) when present, else the first."""
    if configured:
        return configured
    names = [name for _index, name in socket.if_nameindex() if name != "lo"]
    if len(names) == 1:
        return names[0]
    return "eth0" if "eth0" in names else (names[0] if names else "eth0")
