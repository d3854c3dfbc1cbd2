"""The kernel toolkit shared by the Home Agent and Mobile Node data planes.

One home for what both data planes need from the kernel:

* the numbers: routing tables and rule priorities each role owns, the kernel's UAPI values
  (``linux/rtnetlink.h``, ``linux/if_addr.h``), the ENOMEM retry policy;
* :func:`patch_pyroute2_seg6_modes`: pyroute2 0.9.7 lacks the seg6 ``encap.red`` mode and
  silently sends ``mode="encap.red"`` as ``encap`` (with a segment routing header); the patch
  teaches it the kernel's mode numbers;
* :class:`EnomemRetry`: lwtunnel routes allocate a per-cpu dst cache with GFP_ATOMIC, which
  can fail with ENOMEM under load; a retry after 10 ms succeeds, so every route or rule
  request goes through this one policy (single requests, batches of netlink requests, or
  lines of ``ip -batch``);
* policy-rule helpers over pyroute2 (:func:`has_rule`, :func:`add_rule`, :func:`delete_rule`,
  :func:`move_local_rule`, :func:`restore_local_rule`);
* :class:`TunnelSource`: the per-namespace outer source of seg6 encapsulation
  (``ip sr tunsrc``; there is no per-route source), through the SEG6 generic netlink family
  with ``ip`` as fallback;
* :func:`run_ip`: ``ip`` for what pyroute2 does not cover, failures as
  :class:`~nfq_mip6.errors.DataplaneError`;
* :func:`ensure_sysctl`: read a sysctl first, write it only when it differs, and explain
  what to do where ``/proc/sys`` is read-only (a container).

Every failure surfaces as the one :class:`~nfq_mip6.errors.DataplaneError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Final, TypeVar

from nfq_mip6.errors import DataplaneError

__all__ = [
    "AF_INET6",
    "DECAP_TABLE",
    "ENOMEM_RETRIES",
    "ENOMEM_RETRY_DELAY_S",
    "LOCAL_RULE_PRIORITY",
    "MISSING_ERRNOS",
    "MN_DECAP_RULE_PRIORITY",
    "MN_DECAP_TABLE",
    "MN_HOME_ADDRESS_RULE_PRIORITY",
    "MN_REVERSE_TUNNEL_TABLE",
    "MN_RO_REROUTE_RULE_PRIORITY",
    "MN_RO_ROUTE_TABLE",
    "MN_RO_RULE_PRIORITY",
    "ND_FWMARK",
    "RT_PROTO_NFQ_MIP6",
    "RT_PROTO_RO",
    "RT_TABLE_LOCAL",
    "RT_TABLE_MAIN",
    "RULE_PRIORITY_DECAP",
    "RULE_PRIORITY_ND",
    "RULE_PRIORITY_ND_LOCAL",
    "RULE_PRIORITY_TUNNEL",
    "TUNNEL_TABLE",
    "DataplaneError",
    "EnomemRetry",
    "SysctlError",
    "TunnelSource",
    "add_rule",
    "delete_rule",
    "ensure_sysctl",
    "has_rule",
    "ipv6_rules",
    "move_local_rule",
    "patch_pyroute2_seg6_modes",
    "quietly",
    "restore_local_rule",
    "rule_table",
    "run_ip",
    "sysctl_hint",
    "sysctl_path",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# -- kernel UAPI values ------------------------------------------------------------------------
AF_INET6: Final = 10
RT_TABLE_MAIN: Final = 254
RT_TABLE_LOCAL: Final = 255
RTPROT_KERNEL: Final = 2  # routes the kernel made (prefix routes of addresses)
RTPROT_RA: Final = 9  # routes learned from Router Advertisements
IFA_F_NODAD: Final = 0x02
IFA_F_OPTIMISTIC: Final = 0x04
IFA_F_DADFAILED: Final = 0x08
IFA_F_HOMEADDRESS: Final = 0x10
IFA_F_DEPRECATED: Final = 0x20
IFA_F_TENTATIVE: Final = 0x40
IFA_F_PERMANENT: Final = 0x80
IFA_F_NOPREFIXROUTE: Final = 0x200
SEG6_IPTUN_MODE_ENCAP_RED: Final = 3  # linux/seg6_iptunnel.h
SEG6_CMD_SET_TUNSRC: Final = 3  # linux/seg6_genl.h
SEG6_GENL_VERSION: Final = 0
# Removing something that is already gone is not an error.
MISSING_ERRNOS: Final = frozenset({errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV})

# -- what the agent owns in the kernel ---------------------------------------------------------
# `lookup local` moves from priority 0 to here while a decap rule must come first (HA always,
# MN while away): otherwise a packet to our own address is delivered before End.DX6/End.DT6.
LOCAL_RULE_PRIORITY: Final = 1000

# Home Agent (RFC 6275 §10.4).
TUNNEL_TABLE: Final = 6275  # HoA/128 -> encap to the CoA (the RFC number, easy to spot)
DECAP_TABLE: Final = 6276  # HA/128 from CoA/128 -> End.DX6 (reverse tunnel, §10.4.5)
RT_PROTO_NFQ_MIP6: Final = 173  # `proto 173` on every route the HA installs
# Neighbor Solicitations to the home prefix, marked ND_FWMARK by ha.rules (mangle PREROUTING),
# look up `main` before the tunnel table: a proxied HoA's seg6 route would otherwise carry
# the home router's unicast NUD probes to the CoA at route input, before ip6_forward's
# proxy-NDP check could answer them (RFC 6275 §10.4.1: the HA defends the HoA).
# The marked NS consult `local` first (NS to the HA's own addresses; `local` moved behind
# the tunnel rule, see LOCAL_RULE_PRIORITY), then `main`.
ND_FWMARK: Final = 0x6275
RULE_PRIORITY_ND_LOCAL: Final = 938  # fwmark ND_FWMARK lookup local
RULE_PRIORITY_ND: Final = 939  # fwmark ND_FWMARK lookup main
RULE_PRIORITY_DECAP: Final = 940  # to HA ipproto 41 lookup DECAP_TABLE (before `local`)
RULE_PRIORITY_TUNNEL: Final = 941  # to <home prefix> lookup TUNNEL_TABLE

# Mobile Node (RFC 6275 §11.3.1): decap 100 < local 1000 < from-HoA 1100 < main 32766.
MN_REVERSE_TUNNEL_TABLE: Final = 206  # default -> encap to the HA
MN_DECAP_TABLE: Final = 207  # CoA/128 -> End.DT6 table local
MN_DECAP_RULE_PRIORITY: Final = 100  # to CoA ipproto 41 lookup MN_DECAP_TABLE
MN_HOME_ADDRESS_RULE_PRIORITY: Final = 1100  # from HoA lookup MN_REVERSE_TUNNEL_TABLE

# Route optimization in tc BPF (RFC 6275 §9.3.2, §11.3.1): per-binding host routes carry
# `proto RT_PROTO_RO`; on the MN a rule `to <CN>/128 lookup MN_RO_ROUTE_TABLE` comes after
# `local` and before the from-HoA tunnel rule, so traffic to a bound correspondent leaves
# directly (its source is the HoA, rewritten in BPF).
RT_PROTO_RO: Final = 174
MN_RO_ROUTE_TABLE: Final = 6277
MN_RO_RULE_PRIORITY: Final = 1050
# NFQUEUE data path: the MN's packet rewritten to `from CoA` is routed again on reinjection
# (LOCAL_OUT); `from <CoA>/128 to <CN>/128 lookup main` sends it by the main table's route
# (the interface MTU) instead of the per-CN route, whose MTU (less 24) it now exceeds.
MN_RO_REROUTE_RULE_PRIORITY: Final = 1049

# -- ENOMEM ------------------------------------------------------------------------------------
ENOMEM_RETRIES: Final = 8  # retries after the first attempt
ENOMEM_RETRY_DELAY_S: Final = 0.01  # a retry after 10 ms has always succeeded


def patch_pyroute2_seg6_modes() -> None:
    """Teach pyroute2 0.9.7 the seg6 encap modes it lacks (``encap.red`` = 3). Idempotent.

    Unpatched, ``mode="encap.red"`` is silently sent as ``encap`` (with an SRH).
    """
    from pyroute2.netlink.rtnl.rtmsg import rtmsg_base

    for srh in (
        rtmsg_base.seg6_encap_info.ipv6_sr_hdr,
        rtmsg_base.seg6local_encap_info.ipv6_sr_hdr,
    ):
        modes: dict[str, int] = srh.encapmodes
        if modes.get("encap.red") == SEG6_IPTUN_MODE_ENCAP_RED:
            continue
        modes.update({"l2encap": 2, "encap.red": SEG6_IPTUN_MODE_ENCAP_RED, "l2encap.red": 4})
        srh.r_encapmodes = {value: key for key, value in modes.items()}


class EnomemRetry:
    """The one ENOMEM policy: up to :data:`ENOMEM_RETRIES` retries, 10 ms apart.

    Args:
        sleep: how to wait (tests pass a no-op).
        on_retry: told how many requests are retried each round (the counters).
        retries: how many retries after the first attempt.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int], None] | None = None,
        retries: int = ENOMEM_RETRIES,
    ) -> None:
        self.sleep = sleep
        self.on_retry = on_retry
        self.retries = retries
        self.retried = 0  # requests retried so far

    def _wait(self, count: int) -> None:
        self.retried += count
        if self.on_retry is not None:
            self.on_retry(count)
        self.sleep(ENOMEM_RETRY_DELAY_S)

    def call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one pyroute2 request; ENOMEM is retried, any other refusal (or ENOMEM after
        the last retry) is a :class:`DataplaneError` starting with ``what``."""
        from pyroute2.netlink.exceptions import NetlinkError

        attempt = 0
        while True:
            try:
                return func(*args, **kwargs)
            except NetlinkError as exc:
                if exc.code == errno.ENOMEM and attempt < self.retries:
                    attempt += 1
                    self._wait(1)
                    continue
                raise DataplaneError(f"{what}: {exc}") from exc

    def rounds(self, items: Sequence[T], attempt: Callable[[list[T], bool], list[T]]) -> None:
        """Batches: ``attempt(pending, final)`` tries ``pending`` and returns those that
        failed with ENOMEM (``final`` is true on the last round: nothing is retried after
        it, so the attempt must count or raise for them itself)."""
        pending = list(items)
        for number in range(self.retries + 1):
            if not pending:
                return
            pending = attempt(pending, number == self.retries)
            if pending and number < self.retries:
                self._wait(len(pending))


def quietly(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Run a removal through pyroute2: ``True`` if done, ``False`` if it was not there
    (:data:`MISSING_ERRNOS`); any other refusal is a :class:`DataplaneError`."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        func(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code in MISSING_ERRNOS:
            return False
        raise DataplaneError(f"{what}: {exc}") from exc
    return True


# -- policy rules ------------------------------------------------------------------------------
def ipv6_rules(ipr: Any) -> list[Any]:
    """The IPv6 policy rules of the namespace (pyroute2 messages)."""
    return list(ipr.get_rules(family=AF_INET6))


def rule_table(rule: Any) -> int:
    """The table a rule looks up (FRA_TABLE holds ids above 255)."""
    return int(rule.get_attr("FRA_TABLE") or rule["table"])


def has_rule(ipr: Any, priority: int, table: int) -> bool:
    """Whether an IPv6 rule with ``priority`` looks up ``table``."""
    return any(
        rule.get_attr("FRA_PRIORITY", 0) == priority and rule_table(rule) == table
        for rule in ipv6_rules(ipr)
    )


def add_rule(
    ipr: Any,
    retry: EnomemRetry,
    what: str,
    *,
    priority: int,
    table: int,
    exist_ok: bool = True,
    **selector: Any,
) -> None:
    """``ip -6 rule add pref <priority> <selector> lookup <table>``; an identical rule that is
    already there is fine when ``exist_ok``."""
    try:
        retry.call(
            what, ipr.rule, "add", family=AF_INET6, priority=priority, table=table, **selector
        )
    except DataplaneError as exc:
        cause = exc.__cause__
        if not (exist_ok and getattr(cause, "code", None) == errno.EEXIST):
            raise


def delete_rule(ipr: Any, what: str, *, priority: int, table: int, **selector: Any) -> bool:
    """``ip -6 rule del pref <priority> <selector> lookup <table>``; ``False`` if absent."""
    return quietly(
        what, ipr.rule, "del", family=AF_INET6, priority=priority, table=table, **selector
    )


def move_local_rule(ipr: Any, retry: EnomemRetry, priority: int = LOCAL_RULE_PRIORITY) -> bool:
    """Put the ``local`` lookup at ``priority`` (after the decap rules).

    Returns whether the rule at priority 0 was there and removed (to restore it later)."""
    if not has_rule(ipr, priority, RT_TABLE_LOCAL):
        add_rule(ipr, retry, "add local rule", priority=priority, table=RT_TABLE_LOCAL)
    return delete_rule(ipr, "del local rule 0", priority=0, table=RT_TABLE_LOCAL)


def restore_local_rule(ipr: Any, retry: EnomemRetry, priority: int = LOCAL_RULE_PRIORITY) -> None:
    """Put the ``local`` lookup back at priority 0 and remove the one at ``priority``."""
    if not has_rule(ipr, 0, RT_TABLE_LOCAL):
        add_rule(ipr, retry, "add local rule 0", priority=0, table=RT_TABLE_LOCAL)
    delete_rule(ipr, "del moved local rule", priority=priority, table=RT_TABLE_LOCAL)


# -- ip ----------------------------------------------------------------------------------------
def run_ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n netns] <args>``; its stdout. A failure (when ``check``) is a
    :class:`DataplaneError` with the command and ``ip``'s own message."""
    command = ["ip", *(("-n", netns) if netns else ()), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataplaneError(f"{' '.join(command)}: {exc}") from exc
    if check and result.returncode != 0:
        raise DataplaneError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


# -- sysctls ----------------------------------------------------------------------------------
class SysctlError(DataplaneError):
    """A required sysctl has the wrong value and this process cannot change it."""


def sysctl_path(name: str) -> Path:
    """``/proc/sys`` path of a dotted sysctl name (``net.ipv6.conf.eth0.proxy_ndp``).

    The interface part keeps its dots the way sysctl(8) does it: only the fixed components
    around it are split (``net.ipv6.conf.<if>.<key>``, ``net.ipv6.neigh.<if>.<key>``).
    """
    parts = name.split(".")
    if len(parts) > 5 and parts[:2] == ["net", "ipv6"] and parts[2] in ("conf", "neigh"):
        parts = [*parts[:3], ".".join(parts[3:-1]), parts[-1]]
    return Path("/proc/sys", *parts)


def sysctl_hint(name: str, value: str) -> str:
    """How an operator sets a sysctl for a containerised agent."""
    return (
        f"set it before the agent starts: `sysctl -w {name}={value}` in its network "
        f"namespace, `--sysctl {name}={value}` for podman/docker, on Kubernetes on the node "
        f"(/etc/sysctl.d, hostNetwork pods) or in the pod's securityContext.sysctls"
    )


def ensure_sysctl(name: str, value: str, *, required: bool = True) -> bool:
    """Make sysctl ``name`` hold ``value``: read first, write only when it differs.

    Returns ``True`` when the value is in place. A value that cannot be set (read-only
    ``/proc/sys`` in a container: EROFS/EACCES) raises :class:`SysctlError` when ``required``,
    else logs one warning and returns ``False``.
    """
    path = sysctl_path(name)
    try:
        current = path.read_text().strip()
    except OSError as exc:
        current = f"unreadable ({exc.strerror})"
    if current == value:
        return True
    try:
        path.write_text(value)
    except OSError as exc:
        problem = (
            f"sysctl {name} is {current}, needs {value}, and cannot be set here "
            f"({exc.strerror}); {sysctl_hint(name, value)}"
        )
        if required:
            raise SysctlError(problem) from exc
        log.warning("%s", problem)
        return False
    log.info("sysctl %s: %s -> %s", name, current, value)
    return True


# -- tunnel source -----------------------------------------------------------------------------
class TunnelSource:
    """The namespace's seg6 tunnel source (``ip sr tunsrc set``; ``None`` = ``::``).

    Through the SEG6 generic netlink family (SEG6_CMD_SET_TUNSRC) in the current namespace,
    about 10 ms faster than running ``ip``; ``ip`` when a named namespace is targeted or the
    family is unavailable.
    """

    def __init__(self, *, netns: str | None = None) -> None:
        self.netns = netns
        self.current: IPv6Address | None = None  # what this process last set
        self._genl: _Seg6Genl | None = None

    def set(self, address: IPv6Address | None) -> None:
        value = address or IPv6Address("::")
        if self.netns is None:
            try:
                if self._genl is None:
                    self._genl = _Seg6Genl()
                self._genl.set_tunnel_source(value)
                self.current = address
                return
            except Exception as exc:  # pyroute2 raises untyped errors here
                log.debug("SEG6 generic netlink unavailable (%s): using ip sr tunsrc", exc)
                self.close()
        run_ip("sr", "tunsrc", "set", str(value), netns=self.netns)
        self.current = address

    def close(self) -> None:
        if self._genl is not None:
            with contextlib.suppress(Exception):
                self._genl.close()
            self._genl = None


class _Seg6Genl:
    """The SEG6 generic netlink family, for ``ip sr tunsrc set`` without forking ``ip``."""

    def __init__(self) -> None:
        from pyroute2.netlink import genlmsg
        from pyroute2.netlink.generic import GenericNetlinkSocket

        class seg6msg(genlmsg):  # type: ignore[misc]
            nla_map = (("SEG6_ATTR_UNSPEC", "none"), ("SEG6_ATTR_DST", "ip6addr"))

        self._msg_class = seg6msg
        self._sock: Any = GenericNetlinkSocket()
        try:
            self._sock.bind("SEG6", seg6msg)
        except Exception:
            self._sock.close()
            raise

    def set_tunnel_source(self, address: IPv6Address) -> None:
        from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST

        msg = self._msg_class()
        msg["cmd"] = SEG6_CMD_SET_TUNSRC
        msg["version"] = SEG6_GENL_VERSION
        msg["attrs"] = [("SEG6_ATTR_DST", str(address))]
        self._sock.nlm_request(msg, msg_type=self._sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)

    def close(self) -> None:
        self._sock.close()
