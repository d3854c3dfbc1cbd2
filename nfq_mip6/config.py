"""Agent configuration: TOML or the MIPL 1.x ``network-mip6.conf``, into frozen dataclasses.

Two input formats give the same :class:`AgentConfig`:

* TOML (``role = "ha"|"mn"|"cn"``, top-level agent keys, ``[ha]`` and ``[mn]`` tables);
* the legacy ``network-mip6.conf`` of the Linux Mobile IPv6 HOWTO §4.2.2 (``KEY=VALUE`` lines,
  ``#`` comments, trailing comments), accepted as-is: ``FUNCTIONALITY``, ``DEBUGLEVEL``,
  ``MIN_TUNNEL_NR``, ``MAX_TUNNEL_NR``, ``TUNNEL_SITELOCAL``, ``HOMEDEV``, ``HOMEADDRESS``,
  ``HOMEAGENT``, plus ``ACCEPT_RETURN_ROUTABILITY`` and the agent keys in upper case.

After the file, environment variables ``NFQ_MIP6_<SECTION>__<KEY>`` override single keys:
section ``AGENT`` for the top-level keys (``NFQ_MIP6_AGENT__LOG_LEVEL=debug``), ``HA``, ``MN``
and ``CLUSTER`` for the tables (``NFQ_MIP6_HA__MAX_BINDING_LIFETIME=600``). Every problem is a
:class:`ConfigError` naming the file (or variable), the key and what is wrong.

:func:`reload_changes` tells the SIGHUP handler which changes a running agent can take.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from nfq_mip6.constants import MAX_LIFETIME_SECONDS
from nfq_mip6.control import DEFAULT_CONTROL_SOCKET
from nfq_mip6.errors import ConfigurationError
from nfq_mip6.security.auth_codec import DEFAULT_TIMESTAMP_WINDOW
from nfq_mip6.security.keys import MobileNodeCredentials, parse_mobile_node_entries, parse_spi

__all__ = [
    "DEFAULT_CONTROL_SOCKET",
    "DEFAULT_METRICS_PORT",
    "DEFAULT_STATE_DIR",
    "ENV_PREFIX",
    "AgentConfig",
    "ClusterConfig",
    "ConfigError",
    "HomeAgentConfig",
    "MobileNodeConfig",
    "Role",
    "load_config",
    "merge_reload",
    "parse_listen",
    "reload_changes",
    "reload_config",
]

_log = logging.getLogger(__name__)

DEFAULT_STATE_DIR: Final = Path("/var/lib/nfq-mip6")
# The Prometheus "default port allocations" range 9100-9999 is fully allocated (node_exporter
# is 9100); 10135 sits outside it (135 = the Mobility Header's protocol number). Not registered
# anywhere; see docs/operations.md.
DEFAULT_METRICS_PORT: Final = 10135
ENV_PREFIX: Final = "NFQ_MIP6_"

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("text", "json")
TUNNEL_BACKENDS: Final = ("auto", "seg6", "ip6tnl")
RO_DATAPATHS: Final = ("auto", "bpf", "nfqueue")


class Role(StrEnum):
    """What the agent plays (MIPL ``FUNCTIONALITY``)."""

    HA = "ha"
    MN = "mn"
    CN = "cn"


class ConfigError(ConfigurationError):
    """A configuration problem: ``source`` (file or environment variable), ``key``, ``problem``."""

    def __init__(self, path: Path | str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else f"{path}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HomeAgentConfig:
    """Home Agent settings (RFC 6275 §10)."""

    address: IPv6Address | None = None  # None: the interface's global address
    home_prefix: IPv6Network | None = None  # None: derived from the interface
    max_binding_lifetime: int = MAX_LIFETIME_SECONDS  # §10.3.1: the HA may shorten lifetimes
    tunnel_backend: str = "auto"  # "auto" | "seg6" | "ip6tnl"
    min_tunnel_nr: int = 1  # MIPL MIN_TUNNEL_NR: tunnels prepared at start (informational)
    max_tunnel_nr: int = 64  # MIPL MAX_TUNNEL_NR: most bindings served at once
    tunnel_sitelocal: bool = True  # MIPL TUNNEL_SITELOCAL: tunnel site-local (fec0::/10) too
    # §7.4, §10.5.1: this HA's rank in its own DHAAD replies (0xffff highest) until its own RA
    # (radvd's Home Agent Information option) advertises one, which then wins.
    preference: int = 0
    # RFC 5142 §5.1: the home agents a drain (nfq-mip6 cluster drain) lists in its Home Agent
    # Switch messages, the preferred first; empty: the other HAs heard on the home link.
    switch_home_agents: tuple[IPv6Address, ...] = ()
    # RFC 4285 MN-HA authentication (docs/security.md): [[ha.mobile_nodes]] tables hold key
    # *references* (key_file/key_env), never keys. require_authentication None (unset) means
    # "required for TOML configurations, not for the legacy network-mip6.conf" (load_config
    # refuses a TOML HA without [[ha.mobile_nodes]] unless it says false explicitly).
    mobile_nodes: tuple[MobileNodeCredentials, ...] = ()
    require_authentication: bool | None = None
    auth_timestamp_window: float = DEFAULT_TIMESTAMP_WINDOW  # RFC 4285 §6, seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """``[cluster]``: the HA's binding state in a shared store (docs/cluster.md). Absent:
    the single-node SQLite store in ``state_dir`` (the default)."""

    backend: str = "etcd"
    endpoints: tuple[str, ...] = ()  # etcd client URLs, http(s)://host:port
    name: str = ""  # the virtual HA: its keys live under /nfq-mip6/v1/<name>/
    commit_timeout_ms: int = 1000  # no confirmed commit in this time: no BA (MN retransmits)
    ca_file: Path | None = None  # TLS: CA bundle to verify etcd's certificate
    cert_file: Path | None = None  # TLS client certificate + key (etcd --client-cert-auth)
    key_file: Path | None = None
    role: str = "active"  # at start: "active" answers, "standby" follows (nfq-mip6 cluster)
    max_in_flight: int = 1  # commit transactions on their way to etcd at once (distinct keys)
    connect_timeout_ms: int = 250  # opening a connection to one endpoint; then the next one


@dataclass(frozen=True, slots=True, kw_only=True)
class MobileNodeConfig:
    """Mobile Node settings (RFC 6275 §11)."""

    home_address: IPv6Interface  # address and home prefix length
    home_agent: IPv6Address | None = None  # None: Dynamic Home Agent Address Discovery (§11.4.1)
    home_device: str | None = None  # MIPL HOMEDEV, informational
    binding_lifetime: int = 1000  # seconds requested in Binding Updates (§11.7.1)
    tunnel_sitelocal: bool = True
    # RFC 4285 MN-HA authentication (docs/security.md); no SPI = unauthenticated BUs.
    # require_authentication None (unset): required for TOML configurations (auth_spi and a
    # key must be given), not for the legacy network-mip6.conf.
    auth_spi: int | None = None
    auth_key_file: Path | None = None
    auth_key_env: str | None = None
    nai: str | None = None  # RFC 4283 MN-ID option
    require_authentication: bool | None = None
    # RFC 3963 (docs/nemo.md): register as a mobile router with these Mobile Network Prefixes,
    # listed in the BU ("explicit") or known to the HA ("implicit").
    mobile_router: bool = False
    prefixes: tuple[IPv6Network, ...] = ()
    prefix_mode: str = "explicit"
    mobile_network_interface: str | None = None  # the LAN the prefixes are on


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """Everything the agent daemon needs; ``ha``/``mn`` are set for those roles only."""

    role: Role
    source: Path
    legacy: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    interface: str | None = None
    queue_num: int = 0
    queue_bypass: bool = False
    route_optimization: bool = True
    ro_datapath: str = "auto"  # RO data packets: tc BPF ("bpf"), NFQUEUE, or BPF when it loads
    control_socket: Path | None = DEFAULT_CONTROL_SOCKET
    metrics_listen: tuple[str, int] | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    ha: HomeAgentConfig | None = None
    mn: MobileNodeConfig | None = None
    cluster: ClusterConfig | None = None  # HA only; None = single-node SQLite

    @property
    def unauthenticated(self) -> bool:
        """Home registrations may run without RFC 4285 MN-HA authentication: the agent warns
        loudly at start (legacy ``network-mip6.conf``, or ``require_authentication = false``).

        HA: a Binding Update for a home address no ``[[ha.mobile_nodes]]`` entry covers is
        accepted unauthenticated. MN: its Binding Updates carry no authentication option.
        Always ``False`` for a correspondent node (RFC 4285 is MN-HA only).
        """
        if self.ha is not None:
            required = self.ha.require_authentication
            return required is False or (required is None and not self.ha.mobile_nodes)
        if self.mn is not None:
            return self.mn.auth_spi is None
        return False


# ---------------------------------------------------------------------------------------------
# Value parsers: each takes the raw value (TOML-typed, or a string from legacy files and the
# environment) and returns the typed value or raises ValueError with the problem in words.


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in ("yes", "true", "on", "1"):
            return True
        if text in ("no", "false", "off", "0"):
            return False
    raise ValueError(f"expected a boolean (yes/no, true/false), got {value!r}")


def _int_parser(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)
        else:
            raise ValueError(f"expected an integer, got {value!r}")
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range {low}..{high}")
        return number

    return parse


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value.strip()


def _choice_parser(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _parse_str(value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            shown = ", ".join(c.lower() for c in choices)
            raise ValueError(f"{value!r} is not one of {shown}")
        return text

    return parse


def _parse_role(value: object) -> Role:
    text = _parse_str(value).lower()
    try:
        return Role(text)
    except ValueError:
        raise ValueError(f"{value!r} is not one of ha, mn, cn") from None


def _parse_interface(value: object) -> str | None:
    text = _parse_str(value)
    if not text:
        return None
    # Linux IFNAMSIZ is 16 including the NUL; no '/', ':' or whitespace.
    if len(text) > 15 or re.search(r"[\s/:]", text):
        raise ValueError(f"{text!r} is not a valid interface name")
    return text


def _parse_address(value: object) -> IPv6Address | None:
    text = _parse_str(value)
    if not text:
        return None
    # MIPL's HOMEAGENT carries a prefix length ("fec0:106:2700::2/64"): keep the address.
    try:
        return IPv6Interface(text).ip
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address") from None


def _parse_interface_address(value: object) -> IPv6Interface:
    text = _parse_str(value)
    if "/" not in text:
        raise ValueError(f"{text!r} needs a prefix length, e.g. fec0:106:2700::4/64")
    try:
        interface = IPv6Interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 address with prefix length") from None
    if interface.ip.is_multicast or interface.ip.is_unspecified or interface.ip.is_loopback:
        raise ValueError(f"{text!r} cannot be a home address")
    return interface


def _parse_network(value: object) -> IPv6Network | None:
    text = _parse_str(value)
    if not text:
        return None
    try:
        return IPv6Network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv6 prefix") from None


def _parse_path_or_none(value: object) -> Path | None:
    text = _parse_str(value)
    return Path(text) if text else None


def _parse_path(value: object) -> Path:
    text = _parse_str(value)
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6ADDR]:PORT`` or ``PORT`` (loopback) to ``(host, port)``.

    Raises ValueError with the problem in words.
    """
    text = text.strip()
    host: str
    if re.fullmatch(r"\d+", text):
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)", text)
        if not match:
            raise ValueError(f"{text!r} is not [ADDRESS]:PORT")
        host, port_text = match.group(1), match.group(2)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host or not port_text.isdigit():
            raise ValueError(f"{text!r} is not HOST:PORT (write IPv6 as [ADDRESS]:PORT)")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    return host, port


def _parse_listen_or_none(value: object) -> tuple[str, int] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _parse_str(value)
    if not text or text.lower() in ("off", "none", "no"):
        return None
    return parse_listen(text)


def _parse_timestamp_window(value: object) -> float:
    # RFC 4285 §6: "close enough", default 7 s, should be more than 3 s.
    try:
        window = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"expected seconds, got {value!r}") from None
    if not 1.0 <= window <= 3600.0:
        raise ValueError(f"{window} s outside 1..3600")
    return window


def _parse_lifetime(value: object) -> int:
    # RFC 6275 §6.1.7: 16-bit count of 4-second units.
    return _int_parser(4, MAX_LIFETIME_SECONDS)(value)


def _parse_address_list(value: object) -> tuple[IPv6Address, ...]:
    """Unicast IPv6 addresses: a list (or a comma-separated string)."""
    items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
    addresses = []
    for item in items:
        address = IPv6Address(str(item).strip())  # ValueError names the bad address
        if address.is_multicast or address.is_unspecified or address.is_link_local:
            raise ValueError(f"{address} is not a global unicast address")
        addresses.append(address)
    return tuple(addresses)


def _parse_prefix_list(value: object) -> tuple[IPv6Network, ...]:
    """RFC 3963 Mobile Network Prefixes: a list (or a comma-separated string) of prefixes."""
    items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
    prefixes = []
    for item in items:
        network = IPv6Network(str(item).strip())  # ValueError names the bad prefix
        if network.prefixlen == 0 or network.is_link_local or network.is_multicast:
            raise ValueError(f"{network} is not a global unicast prefix")
        prefixes.append(network)
    return tuple(prefixes)


# Key tables: key -> parser. Defaults come from the dataclasses.
_AGENT_KEYS: Final[dict[str, Callable[[object], Any]]] = {
    "role": _parse_role,
    "log_level": _choice_parser(LOG_LEVELS, upper=True),
    "log_format": _choice_parser(LOG_FORMATS),
    "interface": _parse_interface,
    "queue_num": _int_parser(0, 65535),
    "queue_bypass": _parse_bool,
    "route_optimization": _parse_bool,
    "ro_datapath": _choice_parser(RO_DATAPATHS),
    "control_socket": _parse_path_or_none,
    "metrics_listen": _parse_listen_or_none,
    "state_dir": _parse_path,
}
_HA_KEYS: Final[dict[str, Callable[[object], Any]]] = {
    "address": _parse_address,
    "home_prefix": _parse_network,
    "max_binding_lifetime": _parse_lifetime,
    "tunnel_backend": _choice_parser(TUNNEL_BACKENDS),
    "min_tunnel_nr": _int_parser(0, 65535),
    "max_tunnel_nr": _int_parser(1, 65535),
    "tunnel_sitelocal": _parse_bool,
    "preference": _int_parser(0, 65535),
    "switch_home_agents": _parse_address_list,
    "mobile_nodes": parse_mobile_node_entries,
    "require_authentication": _parse_bool,
    "auth_timestamp_window": _parse_timestamp_window,
}
_MN_KEYS: Final[dict[str, Callable[[object], Any]]] = {
    "home_address": _parse_interface_address,
    "home_agent": _parse_address,
    "home_device": _parse_interface,
    "binding_lifetime": _parse_lifetime,
    "tunnel_sitelocal": _parse_bool,
    "auth_spi": parse_spi,
    "auth_key_file": _parse_path,
    "auth_key_env": _parse_str,
    "nai": _parse_str,
    "require_authentication": _parse_bool,
    "mobile_router": _parse_bool,
    "prefixes": _parse_prefix_list,
    "prefix_mode": _choice_parser(("explicit", "implicit")),
    "mobile_network_interface": _parse_interface,
}


def _parse_endpoints(value: object) -> tuple[str, ...]:
    """etcd client URLs: a list (or comma-separated string) of ``http(s)://host:port``."""
    items = value if isinstance(value, list) else [v for v in str(value).split(",") if v.strip()]
    urls: list[str] = []
    for item in items:
        url = str(item).strip()
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
            raise ValueError(f"{url!r} is not http(s)://host:port")
        urls.append(url)
    if not urls:
        raise ValueError("at least one endpoint is needed")
    return tuple(urls)


def _parse_cluster_name(value: object) -> str:
    name = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(f"{name!r}: letters, digits, '.', '_', '-' (at most 63)")
    return name


def _parse_existing_file(value: object) -> Path:
    path = Path(str(value))
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


_CLUSTER_KEYS: Final[dict[str, Callable[[object], Any]]] = {
    "backend": _choice_parser(("etcd",)),
    "endpoints": _parse_endpoints,
    "name": _parse_cluster_name,
    "commit_timeout_ms": _int_parser(10, 60_000),
    "ca_file": _parse_existing_file,
    "cert_file": _parse_existing_file,
    "key_file": _parse_existing_file,
    "role": _choice_parser(("active", "standby")),
    "max_in_flight": _int_parser(1, 16),
    "connect_timeout_ms": _int_parser(10, 60_000),
}
_SECTIONS: Final[dict[str, dict[str, Callable[[object], Any]]]] = {
    "ha": _HA_KEYS,
    "mn": _MN_KEYS,
    "cluster": _CLUSTER_KEYS,
}

# HOWTO §4.2.2 keys -> (section or "" for agent, key). Keys compare case-insensitively.
_LEGACY_KEYS: Final[dict[str, tuple[str, str]]] = {
    "FUNCTIONALITY": ("", "role"),
    "DEBUGLEVEL": ("", "log_level"),
    "MIN_TUNNEL_NR": ("ha", "min_tunnel_nr"),
    "MAX_TUNNEL_NR": ("ha", "max_tunnel_nr"),
    "TUNNEL_SITELOCAL": ("*", "tunnel_sitelocal"),  # ha or mn, by role
    "HOMEDEV": ("mn", "home_device"),
    "HOMEADDRESS": ("mn", "home_address"),
    "HOMEAGENT": ("mn", "home_agent"),
    "ACCEPT_RETURN_ROUTABILITY": ("", "route_optimization"),
}
_LEGACY_MARKERS: Final = frozenset(_LEGACY_KEYS) - {"ACCEPT_RETURN_ROUTABILITY"}


def _debuglevel_to_log_level(value: object) -> str:
    """MIPL ``DEBUGLEVEL`` 0..n: 0 → WARNING, 1 → INFO, ≥ 2 → DEBUG."""
    level = _int_parser(0, 100)(value)
    if level == 0:
        return "WARNING"
    return "INFO" if level == 1 else "DEBUG"


# ---------------------------------------------------------------------------------------------
# Raw document: nested dict of raw values, plus where each value came from (for errors).


@dataclass(slots=True)
class _RawValue:
    value: object
    source: Path | str
    key: str  # the key as the operator wrote it


_Raw = dict[str, dict[str, _RawValue]]  # section ("" = agent) -> key -> value


def _is_legacy_text(path: Path, text: str) -> bool:
    if path.suffix == ".toml":
        return False
    for line in text.splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match and match.group(1) in _LEGACY_MARKERS:
            return True
    return False


def _read_toml(path: Path, text: str) -> _Raw:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    raw: _Raw = {"": {}, "ha": {}, "mn": {}, "cluster": {}}
    for key, value in document.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(path, key, f"must be a table [{key}]")
            for sub_key, sub_value in value.items():
                if sub_key not in _SECTIONS[key]:
                    known = ", ".join(_SECTIONS[key])
                    raise ConfigError(path, f"{key}.{sub_key}", f"unknown key (known: {known})")
                raw[key][sub_key] = _RawValue(sub_value, path, f"{key}.{sub_key}")
        elif key in _AGENT_KEYS:
            if isinstance(value, dict):
                raise ConfigError(path, key, "must be a value, not a table")
            raw[""][key] = _RawValue(value, path, key)
        else:
            known = ", ".join([*_AGENT_KEYS, *(f"[{s}]" for s in _SECTIONS)])
            raise ConfigError(path, key, f"unknown key (known: {known})")
    return raw


def _strip_legacy_value(text: str) -> str:
    # Trailing comments: 'fec0:106:2700::4/64  # MN's home adress'.
    value = text.split("#", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def _read_legacy(path: Path, text: str) -> _Raw:
    raw: _Raw = {"": {}, "ha": {}, "mn": {}, "cluster": {}}
    pending_sitelocal: _RawValue | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)", stripped)
        if not match:
            raise ConfigError(path, f"line {number}", f"expected KEY=VALUE, got {stripped!r}")
        name, value = match.group(1), _strip_legacy_value(match.group(2))
        upper = name.upper()
        if upper in _LEGACY_KEYS:
            section, key = _LEGACY_KEYS[upper]
            parsed: object = value
            if upper == "DEBUGLEVEL":
                try:
                    parsed = _debuglevel_to_log_level(value)
                except ValueError as exc:
                    raise ConfigError(path, name, str(exc)) from None
            if section == "*":
                pending_sitelocal = _RawValue(parsed, path, name)
            else:
                raw[section][key] = _RawValue(parsed, path, name)
        elif name.lower() in _AGENT_KEYS and name.lower() != "role":
            raw[""][name.lower()] = _RawValue(value, path, name)
        else:
            # Old files carry keys we do not use; tolerate them as MIPL's init script did.
            _log.warning("%s: %s: unknown network-mip6.conf key ignored", path, name)
    if pending_sitelocal is not None:
        role_value = raw[""].get("role")
        role_text = str(role_value.value).strip().lower() if role_value else ""
        raw["mn" if role_text == "mn" else "ha"]["tunnel_sitelocal"] = pending_sitelocal
    return raw


def _apply_environment(raw: _Raw, environ: Mapping[str, str]) -> None:
    """``NFQ_MIP6_<SECTION>__<KEY>`` overrides; other ``NFQ_MIP6_*`` variables are not ours."""
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section_name, _, key_name = name[len(ENV_PREFIX) :].partition("__")
        section = section_name.lower()
        key = key_name.lower()
        if section == "agent":
            table, target = _AGENT_KEYS, ""
        elif section in _SECTIONS:
            table, target = _SECTIONS[section], section
        else:
            continue
        if key not in table:
            raise ConfigError(
                f"environment {name}", key, f"unknown key (known: {', '.join(table)})"
            )
        raw[target][key] = _RawValue(value, f"environment {name}", key)


def _build(
    raw_values: dict[str, _RawValue], table: dict[str, Callable[[object], Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw_value in raw_values.items():
        try:
            out[key] = table[key](raw_value.value)
        except ValueError as exc:
            raise ConfigError(raw_value.source, raw_value.key, str(exc)) from None
    return out


AUTH_REQUIRED_PROBLEM: Final = "authentication is required for TOML configurations"


def _check_home_agent_authentication(
    ha: HomeAgentConfig, raw: dict[str, _RawValue], path: Path, legacy: bool
) -> None:
    """RFC 4285 MN-HA authentication is required by default for TOML (project issue 9).

    Unset means required for TOML and not for legacy; true without any security association
    would reject every Binding Update (status 146), so it is refused in both formats.
    """
    if ha.mobile_nodes:
        return
    required = ha.require_authentication
    if required is False or (required is None and legacy):
        return
    given = raw.get("require_authentication")
    source = given.source if given is not None and required else path
    why = AUTH_REQUIRED_PROBLEM if required is None else "require_authentication is true"
    raise ConfigError(
        source,
        "ha.mobile_nodes",
        f"{why}: add [[ha.mobile_nodes]] entries with keys, or set require_authentication "
        "= false" + (" (a network-mip6.conf has no keys)" if legacy else ""),
    )


def _check_mobile_node_authentication(
    mn: MobileNodeConfig, raw: dict[str, _RawValue], path: Path, legacy: bool
) -> None:
    """The MN side of :func:`_check_home_agent_authentication`: ``auth_spi`` and one key
    source (``auth_key_file`` or ``auth_key_env``) unless authentication is switched off."""
    if mn.auth_spi is not None and (mn.auth_key_file is None) != (mn.auth_key_env is None):
        return
    required = mn.require_authentication
    if mn.auth_spi is None and (required is False or (required is None and legacy)):
        return  # a key source without auth_spi is refused when the agent starts
    given = raw.get("require_authentication")
    source = given.source if given is not None and required else path
    why = AUTH_REQUIRED_PROBLEM if required is None else "require_authentication is true"
    if mn.auth_spi is not None:
        source, why = raw["auth_spi"].source, f"auth_spi {mn.auth_spi} given"
    raise ConfigError(
        source,
        "mn.auth_spi",
        f"{why}: set auth_spi and exactly one of auth_key_file or auth_key_env, or set "
        "require_authentication = false" + (" (a network-mip6.conf has no keys)" if legacy else ""),
    )


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> AgentConfig:
    """Read and validate ``path`` (TOML or legacy ``network-mip6.conf``), then the environment.

    Raises:
        ConfigError: naming the file (or environment variable), the key and the problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    legacy = _is_legacy_text(path, text)
    raw = _read_legacy(path, text) if legacy else _read_toml(path, text)
    _apply_environment(raw, environ)

    if "role" not in raw[""]:
        raise ConfigError(path, "FUNCTIONALITY" if legacy else "role", "missing (ha, mn or cn)")
    agent = _build(raw[""], _AGENT_KEYS)
    role: Role = agent["role"]

    ha: HomeAgentConfig | None = None
    mn: MobileNodeConfig | None = None
    if role is Role.HA:
        ha_values = _build(raw["ha"], _HA_KEYS)
        ha = HomeAgentConfig(**ha_values)
        if ha.min_tunnel_nr > ha.max_tunnel_nr:
            first = raw["ha"].get("min_tunnel_nr") or raw["ha"]["max_tunnel_nr"]
            raise ConfigError(
                first.source,
                "MIN_TUNNEL_NR" if legacy else "ha.min_tunnel_nr",
                f"{ha.min_tunnel_nr} is greater than max_tunnel_nr {ha.max_tunnel_nr}",
            )
        if (
            ha.address is not None
            and ha.home_prefix is not None
            and ha.address not in ha.home_prefix
        ):
            raise ConfigError(
                raw["ha"]["address"].source,
                "ha.address",
                f"{ha.address} is not inside home_prefix {ha.home_prefix}",
            )
        _check_home_agent_authentication(ha, raw["ha"], path, legacy)
    elif raw["ha"] and not legacy:
        first = next(iter(raw["ha"].values()))
        raise ConfigError(first.source, first.key, f"[ha] settings given but role is {role}")

    if role is Role.MN:
        if "home_address" not in raw["mn"]:
            raise ConfigError(
                path, "HOMEADDRESS" if legacy else "mn.home_address", "missing for role mn"
            )
        mn = MobileNodeConfig(**_build(raw["mn"], _MN_KEYS))
        _check_mobile_node_authentication(mn, raw["mn"], path, legacy)
    elif raw["mn"] and not legacy:
        first = next(iter(raw["mn"].values()))
        raise ConfigError(first.source, first.key, f"[mn] settings given but role is {role}")

    cluster = _load_cluster(raw["cluster"], path, role)
    agent.pop("role")
    return AgentConfig(
        role=role, source=path, legacy=legacy, ha=ha, mn=mn, cluster=cluster, **agent
    )


def _load_cluster(raw: dict[str, _RawValue], path: Path, role: Role) -> ClusterConfig | None:
    """``[cluster]`` (HA only): endpoints and name are required; TLS client certificate and
    key come together."""
    if not raw:
        return None
    first = next(iter(raw.values()))
    if role is not Role.HA:
        raise ConfigError(first.source, first.key, f"[cluster] settings given but role is {role}")
    for key in ("endpoints", "name"):
        if key not in raw:
            raise ConfigError(path, f"cluster.{key}", "missing (needed with [cluster])")
    cluster = ClusterConfig(**_build(raw, _CLUSTER_KEYS))
    if (cluster.cert_file is None) != (cluster.key_file is None):
        given = raw.get("cert_file") or raw["key_file"]
        raise ConfigError(given.source, given.key, "cert_file and key_file go together")
    if cluster.cert_file is not None and any(u.startswith("http://") for u in cluster.endpoints):
        raise ConfigError(
            raw["endpoints"].source, raw["endpoints"].key, "a client certificate needs https://"
        )
    return cluster


# ---------------------------------------------------------------------------------------------
# SIGHUP reload.

# Fields a running agent takes on reload; everything else needs a restart.
RELOADABLE_FIELDS: Final = frozenset(
    {
        "log_level",
        "log_format",
        "route_optimization",
        "ha.max_binding_lifetime",
        "mn.binding_lifetime",
    }
)


def _flatten(config: AgentConfig) -> dict[str, object]:
    flat: dict[str, object] = {}
    for field in dataclasses.fields(config):
        if field.name in ("source", "legacy", "ha", "mn", "cluster"):
            continue
        flat[field.name] = getattr(config, field.name)
    for section in ("ha", "mn", "cluster"):
        sub = getattr(config, section)
        if sub is None:
            flat[section] = None
            continue
        for field in dataclasses.fields(sub):
            flat[f"{section}.{field.name}"] = getattr(sub, field.name)
    return flat


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    return str(value)


def reload_changes(old: AgentConfig, new: AgentConfig) -> tuple[list[str], list[str]]:
    """Compare two configurations for SIGHUP.

    Returns ``(applied, refused)``: descriptions like ``"route_optimization: true -> false"``.
    Applied changes (route optimization, log level/format, lifetimes) can be taken by a running
    agent; refused ones (role, interface, addresses, queue, sockets) need a restart.
    """
    before, after = _flatten(old), _flatten(new)
    applied: list[str] = []
    refused: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) == after.get(key):
            continue
        text = f"{key}: {_show(before.get(key))} -> {_show(after.get(key))}"
        if key in RELOADABLE_FIELDS and old.role == new.role:
            applied.append(text)
        else:
            refused.append(text)
    return applied, refused


def merge_reload(old: AgentConfig, new: AgentConfig) -> AgentConfig:
    """``old`` with the reloadable settings of ``new`` (what the agent runs with after SIGHUP)."""
    if old.role != new.role:
        return old
    ha = old.ha
    if ha is not None and new.ha is not None:
        ha = dataclasses.replace(ha, max_binding_lifetime=new.ha.max_binding_lifetime)
    mn = old.mn
    if mn is not None and new.mn is not None:
        mn = dataclasses.replace(mn, binding_lifetime=new.mn.binding_lifetime)
    return dataclasses.replace(
        old,
        log_level=new.log_level,
        log_format=new.log_format,
        route_optimization=new.route_optimization,
        ha=ha,
        mn=mn,
    )


def reload_config(
    current: AgentConfig, environ: Mapping[str, str] = os.environ
) -> tuple[AgentConfig, list[str], list[str]]:
    """SIGHUP: re-read ``current.source`` and the environment.

    Returns ``(config to run with, applied, refused)``: the running configuration with the
    reloadable changes taken (see :func:`reload_changes`); refused changes need a restart and
    should be logged. Settings given on the command line (``--control-socket`` …) survive
    because they are not reloadable.

    Raises:
        ConfigError: the file became invalid; the agent keeps running with ``current``.
    """
    new = load_config(current.source, environ)
    applied, refused = reload_changes(current, new)
    return merge_reload(current, new), applied, refused
