"""radvd, the Router Advertisement daemon: its configuration text and its process.

Its users: a home agent's Router Advertisements (:func:`home_agent_config`: the H flag and
the Home Agent Information option with the HA's preference, RFC 6275 §7.4; rendered for an
agent's configuration by ``nfq-mip6 radvd-config``, e.g. for a virtual HA's active member,
docs/cluster.md), the test bed's routers (``testbed/radvd.py`` holds their HOWTO
configurations) and the mobile router, whose agent advertises its mobile network on its LAN
(RFC 3963 §5.6, :func:`mobile_network_config`). They all start it the same way
(:class:`Radvd`): the configuration, pid file and log in one directory, ``radvd -n`` in the
foreground of its own session, ready once it has written its pid file.

The intervals: RFC 6275 §7.5 lets routers serving mobile nodes advertise much faster than
RFC 4861 (MinRtrAdvInterval down to 0.03 s, MaxRtrAdvInterval down to 0.07 s), and radvd
accepts such values when ``AdvIntervalOpt`` or ``AdvHomeAgentFlag`` is on. The test bed's
routers use 0.05 s .. 1.5 s. A mobile router's LAN serves hosts that do not move (they move
with it), so RFC 4861's ranges apply there; :data:`LAN_MAX_RTR_ADV_INTERVAL` keeps them
short enough that a mobile network node started before the router learns the prefix soon.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from ipaddress import IPv6Interface, IPv6Network
from pathlib import Path
from typing import Final

from nfq_mip6.errors import DataplaneError

__all__ = [
    "DEFAULT_HOME_AGENT_LIFETIME",
    "HOME_AGENT_LIFETIME_MAX",
    "HOME_AGENT_PREFERENCE_MAX",
    "LAN_MAX_RTR_ADV_INTERVAL",
    "LAN_MIN_RTR_ADV_INTERVAL",
    "MAX_RTR_ADV_INTERVAL",
    "MIN_DELAY_BETWEEN_RAS",
    "MIN_RTR_ADV_INTERVAL",
    "Radvd",
    "advertised_lan_prefixes",
    "home_agent_config",
    "mobile_network_config",
]

# RFC 6275 §7.5: MinRtrAdvInterval >= 0.03 s, MaxRtrAdvInterval >= 0.07 s.
MIN_RTR_ADV_INTERVAL: Final = "0.05"
MAX_RTR_ADV_INTERVAL: Final = "1.5"
MIN_DELAY_BETWEEN_RAS: Final = "0.05"
# RFC 4861 §6.2.1: MaxRtrAdvInterval 4 .. 1800 s, MinRtrAdvInterval 3 s .. 0.75 × Max.
LAN_MIN_RTR_ADV_INTERVAL: Final = "3"
LAN_MAX_RTR_ADV_INTERVAL: Final = "4"
# RFC 6275 §7.4 Home Agent Information option: preference unsigned 16 bits (0xffff highest),
# lifetime in seconds, at most 18.2 hours (the 16-bit field);
# when absent the lifetime is the Router Lifetime: we always give it.
HOME_AGENT_PREFERENCE_MAX: Final = 0xFFFF
HOME_AGENT_LIFETIME_MAX: Final = 0xFFFF
DEFAULT_HOME_AGENT_LIFETIME: Final = 1800
SLAAC_PREFIX_LENGTH: Final = 64  # RFC 4862 §5.5.3 with the RFC 4291 interface identifiers


def advertised_lan_prefixes(
    mobile_network_prefixes: Iterable[IPv6Network], lan_addresses: Iterable[IPv6Interface]
) -> tuple[IPv6Network, ...]:
    """The /64s a mobile router advertises on its LAN: each mobile network prefix that is a
    /64, and the /64 of each address of the LAN interface inside a mobile network prefix
    (a /48 is split into links by the addresses the operator gives the router's LAN
    interfaces). Sorted, without duplicates."""
    prefixes = tuple(mobile_network_prefixes)
    found = {p for p in prefixes if p.prefixlen == SLAAC_PREFIX_LENGTH}
    for address in lan_addresses:
        if address.network.prefixlen != SLAAC_PREFIX_LENGTH:
            continue
        if any(address.network.subnet_of(p) for p in prefixes):
            found.add(address.network)
    return tuple(sorted(found))


def mobile_network_config(interface: str, prefixes: Sequence[IPv6Network]) -> str:
    """RFC 3963 §5.6: the mobile router is the default router of its LAN and advertises the
    mobile network's /64 there, on-link and for autoconfiguration, as any IPv6 router does
    (RFC 4861 §6.2). Never on the interface that moves: away, it is a host there."""
    blocks = "".join(
        f"""    prefix {prefix}
    {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
"""
        for prefix in prefixes
    )
    return f"""\
# Mobile router LAN (RFC 3963 §5.6), written by nfq-mip6
interface {interface}
{{
    AdvSendAdvert on;
    MinRtrAdvInterval {LAN_MIN_RTR_ADV_INTERVAL};
    MaxRtrAdvInterval {LAN_MAX_RTR_ADV_INTERVAL};
{blocks}}};
"""


def home_agent_config(
    interface: str,
    address: IPv6Interface,
    *,
    preference: int = 0,
    lifetime: int = DEFAULT_HOME_AGENT_LIFETIME,
    router_lifetime: int | None = None,
    retrans_timer_ms: int | None = None,
    prefix_lifetimes: tuple[int, int] | None = None,
    heading: str = "Home Agent (RFC 6275 §7.4), written by nfq-mip6",
) -> str:
    """The Router Advertisements of a home agent on its home link (RFC 6275 §7.4, §7.5).

    * ``AdvHomeAgentFlag`` (H) and the Home Agent Information option with ``preference``
      and ``lifetime``: the other home agents on the link keep this one in their Home Agents
      List by that preference (§10.5.1) and their DHAAD replies rank it accordingly; its own
      agent ranks itself by the same value (it hears its own RA). Giving each virtual HA its
      own preference spreads new mobile nodes: DHAAD replies list the preferred one first.
    * the home prefix with the Router Address flag set (§7.2): ``address`` is the HA's global
      address with the home prefix length, which is how the others learn the address to list.
    * the fast intervals of §7.5 and the Advertisement Interval option (§7.3).
    * ``router_lifetime`` (``AdvDefaultLifetime``): None = radvd's default (the HA is a
      default router); 0 when another router serves the link and the HA must not become a
      default router (a virtual HA behind the home router): the Home Agent Information
      option's own lifetime keeps the HA listed (§7.4).
    * ``retrans_timer_ms``: the link's RetransTimer (its proxy DAD waits that long, §10.4.1);
      ``prefix_lifetimes``: (preferred, valid) seconds of the prefix, None = radvd's.

    ValueError when a value is outside what the option carries.
    """
    if not 0 <= preference <= HOME_AGENT_PREFERENCE_MAX:
        raise ValueError(f"home agent preference {preference} is not in 0..65535")
    if not 1 <= lifetime <= HOME_AGENT_LIFETIME_MAX:
        raise ValueError(f"home agent lifetime {lifetime} is not in 1..{HOME_AGENT_LIFETIME_MAX}")
    if router_lifetime is not None and not 0 <= router_lifetime <= 9000:
        raise ValueError(f"router lifetime {router_lifetime} is not in 0..9000 (RFC 4861 §6.2.1)")
    lines = [f"# {heading}", f"interface {interface}", "{", "    AdvSendAdvert on;"]
    lines += [
        f"    MinRtrAdvInterval {MIN_RTR_ADV_INTERVAL};",
        f"    MaxRtrAdvInterval {MAX_RTR_ADV_INTERVAL};",
        f"    MinDelayBetweenRAs {MIN_DELAY_BETWEEN_RAS};",
        "    AdvIntervalOpt on;",
        "    AdvHomeAgentFlag on;",
    ]
    if router_lifetime is not None:
        lines.append(f"    AdvDefaultLifetime {router_lifetime};")
    if retrans_timer_ms is not None:
        lines.append(f"    AdvRetransTimer {retrans_timer_ms};")
    lines += [
        f"    HomeAgentLifetime {lifetime};",
        f"    HomeAgentPreference {preference};",
        "    AdvHomeAgentInfo on;",
        f"    prefix {address.with_prefixlen}",
        "    {",
        "        AdvRouterAddr on;",
        "        AdvOnLink on;",
        "        AdvAutonomous on;",
    ]
    if prefix_lifetimes is not None:
        lines += [
            f"        AdvPreferredLifetime {prefix_lifetimes[0]};",
            f"        AdvValidLifetime {prefix_lifetimes[1]};",
        ]
    lines += ["    };", "};"]
    return "\n".join(lines) + "\n"


class Radvd:
    """One radvd process with its files in ``directory`` (``radvd.conf``, ``radvd.pid``,
    ``radvd.log``); ``argv_prefix`` runs it elsewhere (``ip netns exec NS``)."""

    def __init__(self, directory: Path, argv_prefix: Sequence[str] = ()) -> None:
        self.directory = Path(directory)
        self.argv_prefix = tuple(argv_prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.directory / "radvd.conf"

    @property
    def pidfile(self) -> Path:
        return self.directory / "radvd.pid"

    @property
    def log(self) -> Path:
        return self.directory / "radvd.log"

    def spawn(self, config: str) -> int:
        """Write ``config`` and start radvd; its pid (of ``argv_prefix``'s process when one is
        given). Raises DataplaneError when it cannot be started at all."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(config)
        self.conf.chmod(0o644)  # radvd refuses world-writable configs
        self.pidfile.unlink(missing_ok=True)
        argv = [*self.argv_prefix, "radvd", "-n", "-C", str(self.conf), "-p", str(self.pidfile),
                "-m", "stderr"]  # fmt: skip
        try:
            with self.log.open("w") as log_file:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    start_new_session=True,
                )
        except OSError as exc:
            raise DataplaneError(f"radvd could not be started: {exc}") from exc
        return self.proc.pid

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Until radvd has written its pid file; DataplaneError with its log when it exits
        or takes longer than ``timeout`` seconds."""
        assert self.proc is not None, "radvd not spawned"
        deadline = time.monotonic() + timeout
        while not self.pidfile.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise DataplaneError(f"radvd did not start: {self.output() or 'no output'}")
            time.sleep(0.01)

    def output(self) -> str:
        """What radvd wrote to its log so far."""
        return self.log.read_text().strip() if self.log.exists() else ""

    def start(self, config: str, timeout: float = 5.0) -> int:
        """:meth:`spawn` then :meth:`wait_ready` (stopped again when it does not come up)."""
        pid = self.spawn(config)
        try:
            self.wait_ready(timeout)
        except DataplaneError:
            self.stop()
            raise
        return pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 2.0) -> None:
        """SIGTERM (radvd then sends its final RAs with a zero router lifetime, RFC 4861
        §6.2.5), SIGKILL after ``grace`` seconds; the pid file goes."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.pidfile.unlink(missing_ok=True)
