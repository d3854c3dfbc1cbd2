"""Mobile Node runtime: movement detection + MN core + kernel data plane + packets (RFC 6275 §11).

Theory of operation:

* :class:`~nfq_mip6.runtime.movement.MovementMonitor` watches RAs (raw ICMPv6 socket) and
  link/address events (rtnetlink); :class:`~nfq_mip6.runtime.movement.MovementDetector` turns
  them into :class:`MovedToForeignLink` / :class:`ReturnedToHomeLink` for the core, plus
  Router Solicitations and purges of visited-link state that this runtime performs itself.
* The core (``nfq_mip6.mobility.mobile_node.MobileNode`` when it exists, otherwise the
  :class:`FallbackMobileNodeCore` below) returns actions: BUs to send, tunnel and home-address
  changes for :class:`~nfq_mip6.dataplane.mobile_node.MobileNodeDataplane`, NAs, MPSs.
* Binding Acknowledgements arrive with a Type 2 Routing Header, which this kernel drops
  (no CONFIG_IPV6_MIP6): the rules in ``rules/mn.rules`` queue raw PREROUTING ``-m rt
  --rt-type 2`` and ``-p mh`` packets; MH packets are consumed here (NF_DROP), other RH2
  packets (route-optimised data) are rewritten to their home destination and accepted.
* BUs are whole IPv6 packets built with :mod:`nfq_mip6.wire` (source = the CoA, HAO = the
  HoA, Alternate CoA option) sent through ``ctx.send_packet`` (IPV6_HDRINCL).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
import subprocess
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path
from typing import Any, Final

from nfq_mip6.constants import (
    INITIAL_BINDACK_TIMEOUT,
    INITIAL_BINDACK_TIMEOUT_FIRST_REG,
    LIFETIME_UNIT,
    MAX_BINDACK_TIMEOUT,
    MAX_LIFETIME_UNITS,
)
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingEvent,
    BindingRegistered,
    BindingRejected,
    HomeAddressAtHome,
    HomeAddressAway,
    InputEvent,
    InstallReverseTunnel,
    MessageDiscarded,
    MobilityMessageReceived,
    MovedToForeignLink,
    RemoveReverseTunnel,
    ReturnedToHomeLink,
    SendMobilePrefixSolicitation,
    SendMobilityMessage,
    SendNeighborAdvertisement,
    SendRouterSolicitation,
)
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.runtime.base import RuntimeContext, Verdict
from nfq_mip6.runtime.movement import (
    AddressObservation,
    LinkObservation,
    MovementDecision,
    MovementDetector,
    MovementMonitor,
    PurgeVisitedLinks,
    RouterAdvertisement,
    SolicitRouter,
)
from nfq_mip6.wire import (
    ALL_NODES,
    Accepted,
    AlternateCareofAddress,
    BAStatus,
    BindingAck,
    BindingRefreshRequest,
    BindingUpdate,
    BUFlags,
    MalformedPacket,
    MobilePrefixSolicitation,
    NAFlags,
    NeighborAdvertisement,
    build_icmpv6_packet,
    build_ipv6_packet,
    build_mh,
    parse_and_validate_mh,
    parse_ipv6,
    strip_rh2_to_home_destination,
)
from nfq_mip6.wire.mh import IPPROTO_MH

LOG = logging.getLogger("nfq_mip6.mn")

RULES_CHAIN: Final = "NFQMIP6-MN"
DEFAULT_BINDING_LIFETIME: Final = 1000  # seconds; MIPL's default (HOWTO §5.2 "expires: 936")
REFRESH_FRACTION: Final = 0.8  # refresh a binding when 80 % of its lifetime has passed
INTERFACE_SYSCTLS: Final = {
    # RFC 4429 optimistic DAD: the new CoA is usable at once (dataplane notes Q6).
    "optimistic_dad": "1",
    "use_optimistic": "1",
    "accept_ra": "1",
    "autoconf": "1",
}


# --------------------------------------------------------------------------------------------
# Fallback core. FALLBACK: the pure MobileNode of nfq_mip6.mobility did not exist when this
# runtime was written; this minimal home-registration-only core speaks the same events/actions
# contract (nfq_mip6.mobility.events) and is used only when that module cannot be imported.
# --------------------------------------------------------------------------------------------


class BulState(IntEnum):
    """MIPL ``mipdiag -l`` state column: 0 waiting for the BA, 1 acknowledged."""

    WAITING = 0
    REGISTERED = 1


@dataclass(slots=True)
class _BulEntry:
    recipient: IPv6Address
    care_of_address: IPv6Address | None  # None: de-registration from home
    sequence: int
    requested_lifetime: int  # seconds
    state: BulState
    sent_at: float
    retransmit_timeout: float
    retransmit_at: float | None
    granted_lifetime: int = 0
    expires_at: float | None = None
    refresh_at: float | None = None
    first_registration: bool = True


class FallbackMobileNodeCore:
    """Home registration only (RFC 6275 §11.5–§11.8): BU/BA with retransmission, refresh,
    de-registration at home. Replaced by ``nfq_mip6.mobility.mobile_node.MobileNode``."""

    def __init__(
        self,
        home_address: IPv6Interface,
        home_agent: IPv6Address,
        binding_lifetime: int = DEFAULT_BINDING_LIFETIME,
        initial_sequence: int = 0,
    ) -> None:
        self.home_address = home_address.ip
        self.home_agent = home_agent
        self.binding_lifetime = binding_lifetime
        self.sequence = initial_sequence & 0xFFFF
        self.care_of_address: IPv6Address | None = None
        self.coa_lifetime: float | None = None
        self.away = False
        self.entry: _BulEntry | None = None
        self.stats = MobilityStats()
        self._mps_identifier = 0

    # -- contract --------------------------------------------------------------------------
    def handle(self, event: InputEvent, now: float) -> list[Action]:
        if isinstance(event, MovedToForeignLink):
            return self._moved(event, now)
        if isinstance(event, ReturnedToHomeLink):
            return self._returned_home(now)
        if isinstance(event, MobilityMessageReceived):
            return self._message(event, now)
        return []

    def handle_timer(self, now: float) -> list[Action]:
        entry = self.entry
        if entry is None:
            return []
        if entry.retransmit_at is not None and now >= entry.retransmit_at:
            # §11.8: exponential back-off, a new sequence number each time.
            entry.retransmit_timeout = min(entry.retransmit_timeout * 2, MAX_BINDACK_TIMEOUT)
            return [self._send_bu(entry, now, retransmission=True)]
        if entry.refresh_at is not None and now >= entry.refresh_at:
            entry.refresh_at = None
            entry.retransmit_timeout = INITIAL_BINDACK_TIMEOUT
            return [self._send_bu(entry, now, retransmission=False)]
        if entry.expires_at is not None and now >= entry.expires_at:
            entry.expires_at = None
        return []

    def next_deadline(self) -> float | None:
        entry = self.entry
        if entry is None:
            return None
        times = [t for t in (entry.retransmit_at, entry.refresh_at) if t is not None]
        return min(times) if times else None

    # -- movement --------------------------------------------------------------------------
    def _lifetime(self) -> int:
        lifetime = self.binding_lifetime
        if self.coa_lifetime is not None:  # §11.7.1: never beyond the CoA's valid lifetime
            lifetime = min(lifetime, int(self.coa_lifetime))
        return max(0, lifetime)

    def _moved(self, event: MovedToForeignLink, now: float) -> list[Action]:
        self.care_of_address = event.care_of_address
        self.coa_lifetime = event.coa_valid_lifetime
        first = self.entry is None or self.entry.care_of_address is None
        self.entry = _BulEntry(
            recipient=self.home_agent,
            care_of_address=event.care_of_address,
            sequence=self.sequence,
            requested_lifetime=self._lifetime(),
            state=BulState.WAITING,
            sent_at=now,
            retransmit_timeout=(
                INITIAL_BINDACK_TIMEOUT_FIRST_REG if first else INITIAL_BINDACK_TIMEOUT
            ),
            retransmit_at=None,
            first_registration=first,
        )
        # The HoA (and with it the on-link home prefix) leaves the interface first, else the
        # BU to the HA would be resolved on the visited link; then the BU, whose BU -> BA
        # round trip overlaps the tunnel installation.
        actions: list[Action] = []
        if not self.away:
            actions.append(HomeAddressAway(self.home_address))
            self.away = True
        actions.append(self._send_bu(self.entry, now, retransmission=False))
        actions.append(
            InstallReverseTunnel(self.home_address, event.care_of_address, self.home_agent)
        )
        return actions

    def _returned_home(self, now: float) -> list[Action]:
        # §11.5.5: tunnel down, HoA back on the interface, de-registration from the HoA.
        self.care_of_address = None
        actions: list[Action] = []
        if self.away:
            actions += [
                RemoveReverseTunnel(self.home_address),
                HomeAddressAtHome(self.home_address),
            ]
            self.away = False
        actions.append(SendNeighborAdvertisement(self.home_address))
        self.entry = _BulEntry(
            recipient=self.home_agent,
            care_of_address=None,
            sequence=self.sequence,
            requested_lifetime=0,
            state=BulState.WAITING,
            sent_at=now,
            retransmit_timeout=INITIAL_BINDACK_TIMEOUT,
            retransmit_at=None,
        )
        actions.append(self._send_bu(self.entry, now, retransmission=False))
        return actions

    def _send_bu(
        self, entry: _BulEntry, now: float, *, retransmission: bool
    ) -> SendMobilityMessage:
        self.sequence = (self.sequence + 1) & 0xFFFF
        entry.sequence = self.sequence
        entry.sent_at = now
        entry.retransmit_at = now + entry.retransmit_timeout
        self.stats.NBindUpdatesSent += 1
        flags = BUFlags.A | BUFlags.H
        units = min(MAX_LIFETIME_UNITS, -(-entry.requested_lifetime // LIFETIME_UNIT))
        if entry.care_of_address is None:
            # §11.5.5: de-registration from the home link, no HAO, lifetime 0.
            bu = BindingUpdate(entry.sequence, flags, 0)
            return SendMobilityMessage(bu, src=self.home_address, dst=entry.recipient)
        # §11.7.1: source = CoA, HAO = HoA, Alternate CoA option = CoA.
        bu = BindingUpdate(
            entry.sequence, flags, units, (AlternateCareofAddress(entry.care_of_address),)
        )
        return SendMobilityMessage(
            bu, src=entry.care_of_address, dst=entry.recipient, home_address=self.home_address
        )

    # -- messages --------------------------------------------------------------------------
    def _message(self, event: MobilityMessageReceived, now: float) -> list[Action]:
        message = event.message
        entry = self.entry
        if isinstance(message, BindingRefreshRequest):
            # §11.7.4: answer from the BUL; a BRR from an unknown node is ignored.
            self.stats.NBindRqsRcvd += 1
            if entry is None or event.src != entry.recipient:
                return [MessageDiscarded("brr-from-unknown-node", event.src, 0)]
            entry.retransmit_timeout = INITIAL_BINDACK_TIMEOUT
            return [self._send_bu(entry, now, retransmission=False)]
        if not isinstance(message, BindingAck):
            return [MessageDiscarded("unexpected-mh-at-mn", event.src, None)]
        if entry is None or event.src != entry.recipient or message.sequence != entry.sequence:
            if (
                entry is not None
                and message.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW
                and event.src == entry.recipient
            ):
                # §11.7.3: resend with the HA's last accepted sequence number + 1.
                self.sequence = message.sequence
                entry.retransmit_timeout = INITIAL_BINDACK_TIMEOUT
                return [self._send_bu(entry, now, retransmission=False)]
            self.stats.NBindAcksDropInvalid += 1
            return [MessageDiscarded("ba-sequence-mismatch", event.src, 6)]
        home = entry.care_of_address is None
        if message.status >= 128:
            self.stats.NBindNAcksRcvd += 1
            entry.retransmit_at = None
            if message.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
                self.sequence = message.sequence
                entry.retransmit_timeout = INITIAL_BINDACK_TIMEOUT
                return [self._send_bu(entry, now, retransmission=False)]
            # retry later at the slowest rate (the HA may change its mind)
            entry.refresh_at = now + MAX_BINDACK_TIMEOUT
            return [
                BindingRejected(
                    self.home_address, entry.recipient, True, status=int(message.status)
                )
            ]
        self.stats.NBindAcksRcvd += 1
        entry.retransmit_at = None
        entry.retransmit_timeout = INITIAL_BINDACK_TIMEOUT
        if home:
            self.entry = None
            return [BindingDeleted(self.home_address, entry.recipient, True)]
        granted = message.lifetime_seconds
        entry.state = BulState.REGISTERED
        entry.granted_lifetime = granted
        entry.expires_at = entry.sent_at + granted
        entry.refresh_at = entry.sent_at + granted * REFRESH_FRACTION if granted > 0 else None
        actions: list[Action] = [
            BindingRegistered(
                self.home_address,
                entry.recipient,
                True,
                care_of_address=entry.care_of_address,
                lifetime=granted,
            )
        ]
        if message.status == BAStatus.ACCEPTED_PREFIX_DISCOVERY_NECESSARY:
            # §11.4.2: the home prefix information must be refreshed with an MPS.
            self._mps_identifier = (self._mps_identifier + 1) & 0xFFFF
            assert entry.care_of_address is not None
            actions.append(
                SendMobilePrefixSolicitation(
                    self._mps_identifier,
                    entry.care_of_address,
                    entry.recipient,
                    self.home_address,
                )
            )
        return actions

    # -- snapshots -------------------------------------------------------------------------
    def bul_rows(self, now: float) -> list[dict[str, Any]]:
        entry = self.entry
        if entry is None:
            return []
        expires = 0 if entry.expires_at is None else max(0, round(entry.expires_at - now))
        callback = 0 if entry.refresh_at is None else max(0, round(entry.refresh_at - now))
        return [
            {
                "recipient": str(entry.recipient),
                "home_address": str(self.home_address),
                "care_of_address": str(entry.care_of_address or self.home_address),
                "expires": expires,
                "sequence": entry.sequence,
                "state": int(entry.state),
                "delay": round(entry.retransmit_timeout),
                "max_delay": round(MAX_BINDACK_TIMEOUT),
                "callback_time": callback,
                "home_registration": True,
            }
        ]


def _load_core(home_address: IPv6Interface, home_agent: IPv6Address, binding_lifetime: int) -> Any:
    """The pure core's MobileNode (nfq_mip6.mobility.mobile_node), else the fallback above."""
    try:
        core_module = importlib.import_module("nfq_mip6.mobility.mobile_node")
    except ImportError:
        LOG.warning("nfq_mip6.mobility.mobile_node is missing: fallback home-registration core")
        return FallbackMobileNodeCore(home_address, home_agent, binding_lifetime)
    config = core_module.MobileNodeConfig(
        home_address=home_address.ip,
        home_prefix=home_address.network,
        home_agent=home_agent,
        home_registration_lifetime=binding_lifetime,
        # The MN data plane has no route-optimization fast path yet: everything goes through
        # the home agent (MIPL accept_return_routability = 0, HOWTO FAQ 4).
        route_optimization=False,
    )
    return core_module.MobileNode(config)


def bul_entries(core: Any, now: float) -> list[dict[str, Any]]:
    """The contract's ``bul`` rows (MIPL ``mipdiag -l`` columns) from either core."""
    if hasattr(core, "bul_rows"):
        rows: list[dict[str, Any]] = core.bul_rows(now)
        return rows
    result: list[dict[str, Any]] = []
    for row in core.binding_update_list_rows(now):
        in_force = row.state in ("bound", "refreshing")
        result.append(
            {
                "recipient": str(row.destination),
                "home_address": str(row.home_address),
                "care_of_address": str(row.care_of_address),
                "expires": row.lifetime_remaining,
                "sequence": row.sequence,
                # MIPL: 1 = acknowledged binding in force, 0 = waiting for the BA
                "state": 1 if in_force else 0,
                "state_name": row.state,
                "flags": row.flags,
                "delay": round(row.retransmit_delay),
                "max_delay": round(row.max_delay),
                "callback_time": row.refresh_in if row.refresh_in is not None else 0,
                "home_registration": row.home_registration,
            }
        )
    return result


# --------------------------------------------------------------------------------------------
# ip6tables rules (rules/mn.rules, with an embedded copy if the file is not installed)
# --------------------------------------------------------------------------------------------

EMBEDDED_RULES: Final = """*raw
:NFQMIP6-MN - [0:0]
-A PREROUTING -j NFQMIP6-MN
-A NFQMIP6-MN -m rt --rt-type 2 -j NFQUEUE --queue-num {queue}{bypass}
-A NFQMIP6-MN -p mh -j NFQUEUE --queue-num {queue}{bypass}
COMMIT
"""


def _rules_text(queue: int, bypass: bool) -> str:
    path = Path(__file__).resolve().parents[2] / "rules" / "mn.rules"
    text = EMBEDDED_RULES
    with contextlib.suppress(OSError):
        text = path.read_text(encoding="utf-8")
    return text.replace("{queue}", str(queue)).replace(
        "{bypass}", " --queue-bypass" if bypass else ""
    )


def _ip6tables(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, check=False, timeout=10
    )


def _chains_in(text: str) -> list[tuple[str, str]]:
    """(table, chain) pairs of agent-owned chains declared in a rules fragment."""
    table = ""
    result: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":NFQMIP6"):
            result.append((table, line[1:].split()[0]))
    return result


def _jumps_in(text: str) -> list[tuple[str, list[str]]]:
    table = ""
    result: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(("-A ", "-I ")) and not line.split()[1].startswith("NFQMIP6"):
            words = line.split()[1:]
            if line.startswith("-I ") and len(words) > 1 and words[1].isdigit():
                del words[1]  # "-I CHAIN 1 spec" is deleted as "-D CHAIN spec"
            result.append((table, words))
    return result


def unload_rules(text: str) -> None:
    """Remove the jumps and the agent-owned chains of a rules fragment (never other chains)."""
    for table, spec in _jumps_in(text):
        while _ip6tables("ip6tables", "-w", "-t", table, "-D", *spec).returncode == 0:
            pass
    for table, chain in _chains_in(text):
        _ip6tables("ip6tables", "-w", "-t", table, "-F", chain)
        _ip6tables("ip6tables", "-w", "-t", table, "-X", chain)


def load_rules(text: str) -> None:
    unload_rules(text)  # idempotent after a crash
    done = _ip6tables("ip6tables-restore", "-w", "--noflush", stdin=text)
    if done.returncode != 0:
        raise OSError(f"ip6tables-restore failed: {done.stderr.strip()}")


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------


def _pick_interface(configured: str | None, home_address: IPv6Interface) -> str:
    if configured:
        return configured
    names = [name for _index, name in socket.if_nameindex() if name != "lo"]
    if len(names) == 1:
        return names[0]
    return "eth0" if "eth0" in names else (names[0] if names else "eth0")


class MobileNodeRuntime:
    """:class:`~nfq_mip6.runtime.base.RoleRuntime` for ``role = "mn"``."""

    def __init__(self) -> None:
        self.ctx: RuntimeContext | None = None
        self.core: Any = None
        self.detector: MovementDetector | None = None
        self.monitor: MovementMonitor | None = None
        self.dataplane: Any = None
        self.rules_text = ""
        self.interface = "eth0"
        self.home_address: IPv6Interface | None = None
        self.home_agent: IPv6Address | None = None
        self.counters: dict[str, int] = {
            "bu_sent": 0,
            "ba_received": 0,
            "malformed": 0,
            "send_errors": 0,
            "dataplane_errors": 0,
            "rh2_rewritten": 0,
            "router_solicitations": 0,
            "moves": 0,
        }
        self.events: list[tuple[float, str]] = []  # (time, what) for handover measurements

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, ctx: RuntimeContext) -> None:
        from nfq_mip6.dataplane.mobile_node import MobileNodeDataplane

        self.ctx = ctx
        mn = ctx.config.mn
        if mn is None:
            raise ValueError("role mn needs the mobile node settings (HOMEADDRESS, HOMEAGENT)")
        if mn.home_agent is None:
            raise ValueError("home agent discovery (DHAAD) is not supported yet: set HOMEAGENT")
        self.home_address = mn.home_address
        self.home_agent = mn.home_agent
        self.interface = _pick_interface(ctx.config.interface, mn.home_address)
        self._set_sysctls()
        self.core = _load_core(mn.home_address, mn.home_agent, mn.binding_lifetime)
        self.dataplane = MobileNodeDataplane(self.interface, mn.home_address)
        self.rules_text = _rules_text(ctx.queue_num, ctx.queue_bypass)
        load_rules(self.rules_text)
        self.detector = MovementDetector(mn.home_address, mn.home_agent)
        self.monitor = MovementMonitor(self.interface)
        ctx.add_reader(self.monitor.ra_fd, self._on_ra_readable)
        ctx.add_reader(self.monitor.netlink_fd, self._on_netlink_readable)
        now = ctx.clock()
        for entry in self.dataplane.interface_addresses():
            self._decide(
                self.detector.on_address(
                    AddressObservation(entry.interface, entry.usable, entry.valid_lifetime)
                ),
                now,
            )
        self._decide(self.detector.start(), now)
        ctx.logger.info(
            "mobile node %s, home agent %s, interface %s",
            mn.home_address.ip,
            mn.home_agent,
            self.interface,
        )

    def _set_sysctls(self) -> None:
        for key, value in INTERFACE_SYSCTLS.items():
            path = f"/proc/sys/net/ipv6/conf/{self.interface}/{key}"
            try:
                with open(path, "w", encoding="ascii") as handle:
                    handle.write(value)
            except OSError as exc:
                LOG.debug("sysctl %s: %s", path, exc)

    def stop(self) -> None:
        if self.ctx is not None and self.monitor is not None:
            self.ctx.remove_reader(self.monitor.ra_fd)
            self.ctx.remove_reader(self.monitor.netlink_fd)
            self.monitor.close()
            self.monitor = None
        if self.rules_text:
            unload_rules(self.rules_text)
            self.rules_text = ""
        if self.dataplane is not None:
            try:
                self.dataplane.cleanup()
            except Exception as exc:  # stop must finish: log and go on
                LOG.error("data plane cleanup failed: %s", exc)
            self.dataplane.close()
            self.dataplane = None

    # -- timers ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self.core is None:
            return None
        deadline: float | None = self.core.next_deadline()
        return deadline

    def on_timer(self, now: float) -> None:
        if self.core is not None:
            self._apply(self.core.handle_timer(now), now)

    # -- movement --------------------------------------------------------------------------
    def _on_ra_readable(self) -> None:
        assert self.monitor is not None and self.detector is not None and self.ctx is not None
        now = self.ctx.clock()
        for ra in self.monitor.read_router_advertisements():
            self._observe(ra, now)

    def _on_netlink_readable(self) -> None:
        assert self.monitor is not None and self.ctx is not None
        now = self.ctx.clock()
        for observation in self.monitor.read_netlink():
            self._observe(observation, now)

    def _observe(
        self,
        observation: RouterAdvertisement | AddressObservation | LinkObservation | IPv6Address,
        now: float,
    ) -> None:
        assert self.detector is not None
        if isinstance(observation, RouterAdvertisement):
            decisions = self.detector.on_router_advertisement(observation)
        elif isinstance(observation, AddressObservation):
            decisions = self.detector.on_address(observation)
        elif isinstance(observation, LinkObservation):
            if observation.carrier != self.detector.carrier:
                self._note(now, f"carrier {'up' if observation.carrier else 'down'}")
            decisions = self.detector.on_carrier(observation.carrier)
        else:
            decisions = self.detector.on_address_removed(observation)
        self._decide(decisions, now)

    def _decide(self, decisions: list[MovementDecision], now: float) -> None:
        for decision in decisions:
            if isinstance(decision, SolicitRouter):
                self._send_router_solicitation()
            elif isinstance(decision, PurgeVisitedLinks):
                self._purge(decision)
            else:
                if isinstance(decision, MovedToForeignLink):
                    self._note(now, f"moved coa={decision.care_of_address}")
                else:
                    self._note(now, "home")
                self.counters["moves"] += 1
                if isinstance(decision, ReturnedToHomeLink):
                    self._prepare_kernel(decision)
                    self._apply(self.core.handle(decision, now), now)
                    self._home_address_home()
                    continue
                actions = self.core.handle(decision, now)
                # Kernel constraint: the HoA's on-link home prefix must be gone before any BU
                # is routed (else the HA is resolved on the visited link). Then the BUs, then
                # the decapsulation for the new CoA, then the rest of the core's actions.
                first: list[Action] = [a for a in actions if isinstance(a, HomeAddressAway)]
                sends: list[Action] = [a for a in actions if isinstance(a, SendMobilityMessage)]
                rest = [a for a in actions if a not in first and a not in sends]
                self._apply(first + sends, now)
                self._prepare_kernel(decision)
                self._apply(rest, now)

    def _prepare_kernel(self, decision: MovedToForeignLink | ReturnedToHomeLink) -> None:
        """Kernel work that does not wait for the core's actions (all idempotent).

        * Moved: decapsulation for the new CoA and the tunnel source are set up at once, so
          that the HA's first tunnelled packet after it processes the BU is delivered; the
          core's InstallReverseTunnel (after the BA, §11.3.1) then only re-points the rest.
        * Home: the tunnel rules go away before the de-registration BU (it must leave on the
          home link), and see :meth:`_home_address_home` for the HoA.
        """
        try:
            if isinstance(decision, MovedToForeignLink):
                self.dataplane.prepare_care_of_address(decision.care_of_address)
            elif self.dataplane.care_of_address is not None or self.dataplane.local_rule_moved:
                self.dataplane.remove_reverse_tunnel()
        except Exception as exc:
            self.counters["dataplane_errors"] += 1
            LOG.error("preparing the data plane failed: %s", exc)

    def _home_address_home(self) -> None:
        """Back home, the HoA returns to the interface right after the de-registration BU.

        Not before it: the BU's Neighbor Solicitation for the HA would then come from the HoA,
        which the HA still proxies, and its answer would be tunnelled to the old CoA (§11.5.5
        forbids using the HoA there). Not after the BA either: the BA is sent to the HoA on
        the home link and this kernel answers Neighbor Solicitations only for addresses on
        the receiving interface, not for one on ``lo``.
        """
        try:
            if self.dataplane.home_address_away:
                self.dataplane.move_home_address_home()
        except Exception as exc:
            self.counters["dataplane_errors"] += 1
            LOG.error("moving the home address back failed: %s", exc)

    def _send_router_solicitation(self) -> None:
        if self.monitor is not None:
            self.monitor.send_router_solicitation()
            self.counters["router_solicitations"] += 1

    def _purge(self, decision: PurgeVisitedLinks) -> None:
        try:
            self.dataplane.purge_visited_link_state(decision.keep_prefixes, decision.keep_router)
        except Exception as exc:
            self.counters["dataplane_errors"] += 1
            LOG.error("purging visited-link state failed: %s", exc)

    def _note(self, now: float, what: str) -> None:
        """Event log for operators and the handover benchmark (timestamped when it happens,
        on the agent's monotonic clock, not at the start of the batch being handled)."""
        if self.ctx is not None:
            now = self.ctx.clock()
        self.events.append((now, what))
        del self.events[:-1024]
        LOG.info("%s", what)

    # -- actions ---------------------------------------------------------------------------
    def _apply(self, actions: list[Action], now: float) -> None:
        for action in actions:
            try:
                self._apply_one(action, now)
            except (OSError, MalformedPacket, ValueError) as exc:
                self.counters["send_errors"] += 1
                LOG.error("%s failed: %s", type(action).__name__, exc)
            except Exception as exc:  # a data-plane failure must not kill the agent
                self.counters["dataplane_errors"] += 1
                LOG.error("%s failed: %s", type(action).__name__, exc)

    def _apply_one(self, action: Action, now: float) -> None:
        assert self.ctx is not None and self.home_address is not None
        if isinstance(action, SendMobilityMessage):
            pseudo_src = action.home_address or action.src
            pseudo_dst = action.routing_address or action.dst
            mh = build_mh(action.message, pseudo_src, pseudo_dst)
            packet = build_ipv6_packet(
                action.src,
                action.dst,
                IPPROTO_MH,
                mh,
                home_address=action.home_address,
                rh2_address=action.routing_address,
            )
            self.ctx.send_packet(packet)
            if isinstance(action.message, BindingUpdate):
                self.counters["bu_sent"] += 1
                self._note(now, f"bu seq={action.message.sequence} from {action.src}")
            if self.ctx.metrics is not None:
                with contextlib.suppress(Exception):
                    self.ctx.metrics.mh_sent(type(action.message).__name__)
        elif isinstance(action, InstallReverseTunnel):
            self.dataplane.install_reverse_tunnel(action.care_of_address, action.home_agent)
            self._note(now, "tunnel installed")
        elif isinstance(action, RemoveReverseTunnel):
            self.dataplane.remove_reverse_tunnel()
        elif isinstance(action, HomeAddressAway):
            self.dataplane.move_home_address_away()
            # the home prefix must not stay on-link on the visited link
            assert self.detector is not None
            if self.detector.foreign_prefix is not None:
                self.dataplane.purge_visited_link_state(
                    (self.detector.foreign_prefix,), self.detector.router
                )
        elif isinstance(action, HomeAddressAtHome):
            self.dataplane.move_home_address_home()
        elif isinstance(action, SendNeighborAdvertisement):
            self._send_neighbor_advertisement(action.home_address)
        elif isinstance(action, SendRouterSolicitation):
            self._send_router_solicitation()
        elif isinstance(action, SendMobilePrefixSolicitation):
            packet = build_icmpv6_packet(
                MobilePrefixSolicitation(action.identifier),
                action.src,
                action.dst,
                hop_limit=64,
                home_address=action.home_address,
            )
            self.ctx.send_packet(packet)
        elif isinstance(action, BindingEvent):
            LOG.info("%s", action)
            if isinstance(action, BindingRegistered | BindingDeleted):
                self._note(now, f"{type(action).__name__}")
        elif isinstance(action, MessageDiscarded):
            LOG.debug("discarded: %s", action)
        else:
            LOG.debug("no MN handler for %s", type(action).__name__)

    def _send_neighbor_advertisement(self, home_address: IPv6Address) -> None:
        """§11.5.5: unsolicited NA (O = 1) for the HoA to all-nodes, from the HoA."""
        assert self.ctx is not None
        lladdr = self.monitor._lladdr if self.monitor is not None else None
        na = NeighborAdvertisement(home_address, NAFlags.OVERRIDE, lladdr)
        packet = build_icmpv6_packet(na, home_address, ALL_NODES, hop_limit=255)
        # multicast needs an outgoing interface: send through an ICMPv6 socket instead
        icmp = packet[40:]
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        try:
            ifindex = socket.if_nametoindex(self.interface)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            with contextlib.suppress(OSError):
                sock.bind((str(home_address), 0, 0, 0))
            sock.sendto(icmp, (str(ALL_NODES), 0, 0, ifindex))
        finally:
            sock.close()

    # -- queued packets --------------------------------------------------------------------
    def on_queued_packet(self, payload: bytes, now: float) -> Verdict:
        try:
            packet = parse_ipv6(payload)
        except MalformedPacket:
            self.counters["malformed"] += 1
            return Verdict.drop()
        # §11.3.3: only a valid RH2 naming our own HoA is acceptable
        if packet.rh2_address is not None and (
            not packet.rh2_valid
            or (self.home_address is not None and packet.rh2_address != self.home_address.ip)
        ):
            self.counters["malformed"] += 1
            return Verdict.drop()
        if packet.upper_layer != IPPROTO_MH:
            if packet.rh2_address is not None:
                rewritten = strip_rh2_to_home_destination(payload)
                if rewritten is None:
                    return Verdict.drop()
                self.counters["rh2_rewritten"] += 1
                return Verdict.rewrite(rewritten)
            return Verdict.accept()
        verdict = parse_and_validate_mh(payload)
        if not isinstance(verdict, Accepted):
            self.counters["malformed"] += 1
            LOG.debug("MH dropped: %s", verdict)
            return Verdict.drop()
        if isinstance(verdict.message, BindingAck):
            self.counters["ba_received"] += 1
            self._note(now, f"ba seq={verdict.message.sequence} status={verdict.message.status}")
        if self.ctx is not None and self.ctx.metrics is not None:
            with contextlib.suppress(Exception):
                self.ctx.metrics.mh_received(type(verdict.message).__name__)
        event = MobilityMessageReceived(
            message=verdict.message,
            src=packet.src,
            dst=packet.dst,
            home_address=packet.home_address,
            routing_address=packet.rh2_address,
            mh_bytes=packet.upper_layer_bytes,
        )
        if self.core is not None:
            self._apply(self.core.handle(event, now), now)
        return Verdict.drop()  # consumed: the kernel would only answer Parameter Problem

    # -- control ---------------------------------------------------------------------------
    def _mipl_counters(self) -> dict[str, int]:
        stats = getattr(self.core, "stats", None)
        if stats is not None and hasattr(stats, "as_dict"):
            counters: dict[str, int] = stats.as_dict()
            return counters
        return MobilityStats().as_dict()

    def _bul_rows(self, now: float) -> list[dict[str, Any]]:
        return [] if self.core is None else bul_entries(self.core, now)

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        now = self.ctx.clock() if self.ctx is not None else 0.0
        cmd = request.get("cmd")
        if cmd == "bul":
            return {"ok": True, "entries": self._bul_rows(now)}
        if cmd == "stats":
            stats = self.ctx.stats if self.ctx is not None and self.ctx.stats else {}
            detector = self.detector
            return {
                "ok": True,
                "role": "mn",
                "counters": self._mipl_counters(),
                "route_optimization": False,
                "backend": "seg6",
                "bindings": len(self._bul_rows(now)),
                "nfqueue": {
                    "accepted": stats.get("accepted", 0),
                    "dropped": stats.get("dropped", 0),
                    "rewritten": stats.get("rewritten", 0),
                },
                "mobile_node": {
                    "interface": self.interface,
                    "location": detector.location.name.lower() if detector else "unknown",
                    "care_of_address": (
                        str(detector.care_of_address)
                        if detector and detector.care_of_address
                        else None
                    ),
                    "counters": dict(self.counters),
                    "events": [[round(t, 6), what] for t, what in self.events],
                    "dataplane": self.dataplane.snapshot() if self.dataplane else None,
                },
            }
        if cmd == "cache":
            return {"ok": True, "bindings": []}
        if cmd == "ro":
            if "set" in request:
                return {"ok": False, "error": "route optimization is not implemented on the MN"}
            return {"ok": True, "route_optimization": False}
        if cmd == "reload":
            return {"ok": True, "reloaded": []}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


__all__ = [
    "EMBEDDED_RULES",
    "FallbackMobileNodeCore",
    "MobileNodeRuntime",
    "load_rules",
    "unload_rules",
]
