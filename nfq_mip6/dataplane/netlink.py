"""The Home Agent's kernel fast path on the real kernel (RFC 6275 §10.4).

seg6 backend (the default on this kernel, which has no ip6tnl):

* forward tunnel (§10.4.2): ``HoA/128 encap seg6 mode encap.red segs CoA`` in
  :data:`TUNNEL_TABLE` — plain IPv6-in-IPv6 (outer next header 41, no SRH), outer source set
  once per netns with ``ip sr tunsrc set <HA address>``; a policy rule
  ``to <home prefix> lookup TUNNEL_TABLE`` (priority :data:`RULE_PRIORITY_TUNNEL`) consults it.
* reverse tunnel (§10.4.5): ``to <HA> ipproto 41 lookup DECAP_TABLE`` (priority
  :data:`RULE_PRIORITY_DECAP`, so the ``local`` rule moves from 0 to 1000) and one
  source-specific route per registered CoA, ``<HA>/128 from CoA/128 encap seg6local action
  End.DX6``. A proto-41 packet from any other source finds no route there, falls through to
  local delivery and is dropped (and counted) by the agent's ``filter INPUT`` rule.
* a CoA change is one ``RTM_NEWROUTE`` with ``NLM_F_REPLACE`` (no gap, no duplicate).
* bulk installs and restart reconciliation go through ``ip -6 -force -batch -`` (≈60–117k
  routes/s vs ≈1.9k/s with one pyroute2 request per route); routes that fail with ENOMEM
  (per-cpu allocation of the lwtunnel dst cache, GFP_ATOMIC) are retried after 10 ms by the
  toolkit's one retry policy (:class:`~nfq_mip6.dataplane.kernel.EnomemRetry`).

Everything installed carries ``proto`` :data:`RT_PROTO_NFQ_MIP6`, so a restarted agent finds
its own state (``tunnels()`` reads it back) and :meth:`reconcile` fixes it.

ip6tnl backend (only where the kernel has CONFIG_IPV6_TUNNEL): one ``ip6tnl`` device per CoA
(``nfqm6-<n>``, ``local HA remote CoA``) and ``HoA/128 dev nfqm6-<n>`` in the tunnel table;
the device decapsulates only from its remote, which gives the same source check.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Final

from nfq_mip6.constants import IPPROTO_IPV6
from nfq_mip6.dataplane import (
    DECAP_TABLE,
    ND_FWMARK,
    RT_PROTO_NFQ_MIP6,
    RULE_PRIORITY_DECAP,
    RULE_PRIORITY_ND,
    RULE_PRIORITY_ND_LOCAL,
    RULE_PRIORITY_TUNNEL,
    TUNNEL_TABLE,
    Dataplane,
    DataplaneCounters,
    DataplaneError,
    ReconcileReport,
)
from nfq_mip6.dataplane.kernel import (
    MISSING_ERRNOS,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    EnomemRetry,
    SysctlError,
    TunnelSource,
    add_rule,
    delete_rule,
    ensure_sysctl,
    has_rule,
    move_local_rule,
    patch_pyroute2_seg6_modes,
    quietly,
    restore_local_rule,
    run_ip,
)
from nfq_mip6.dataplane.rtnl import (
    RTM_DELROUTE,
    RtnlSocket,
    proxy_neighbor,
    route_delete,
    seg6_encap_red_route,
    seg6local_dx6_route,
)

__all__ = [
    "NetlinkDataplane",
    "SysctlError",
    "detect_tunnel_backend",
    "patch_pyroute2_seg6_modes",
]

log = logging.getLogger(__name__)

Request = tuple[int, int, bytes]  # (message type, extra flags, body) of rtnl.py
BATCH_CHUNK: Final = 50000  # lines per `ip -batch` process
NETLINK_BATCH: Final = 100
"""Route requests per sendmsg. Each seg6 route takes per-CPU memory that the kernel refills
in the background: 1 000 at once made thousands of ENOMEMs when two agents installed 10k
routes together (100: a few hundred, and no slower)."""
BULK_ENOMEM_RETRIES: Final = 50
"""ENOMEM retries (10 ms apart) of a bulk install: thousands of routes can need several
refills of that memory (8 retries left some of 20 000 routes out)."""


def detect_tunnel_backend(requested: str = "auto") -> str:
    """Pick the tunnel backend: ``"seg6"`` or ``"ip6tnl"`` (config ``tunnel_backend``).

    ``auto`` probes ``ip link add type ip6tnl`` (fails without CONFIG_IPV6_TUNNEL, as here)
    and falls back to seg6. An explicit choice is honoured if the kernel supports it.
    """
    if requested not in ("auto", "seg6", "ip6tnl"):
        raise DataplaneError(f"unknown tunnel backend {requested!r} (auto, seg6, ip6tnl)")
    if requested == "seg6":
        return "seg6"
    probe = "nfqm6probe"
    try:
        run_ip("-6", "link", "add", probe, "type", "ip6tnl", "mode", "ip6ip6")
    except DataplaneError as exc:
        if requested == "ip6tnl":
            raise DataplaneError(f"tunnel_backend ip6tnl unavailable: {exc}") from exc
        return "seg6"
    run_ip("link", "del", probe, check=False)
    return "ip6tnl"


class NetlinkDataplane:
    """:class:`~nfq_mip6.dataplane.Dataplane` on the real kernel (run inside the HA netns)."""

    def __init__(
        self,
        interface: str,
        ha_address: IPv6Address,
        home_prefix: IPv6Network,
        *,
        backend: str = "seg6",
        sleep: Any = time.sleep,
        per_request_pyroute2: bool = False,
    ) -> None:
        from pyroute2 import IPRoute

        if backend not in ("seg6", "ip6tnl"):
            raise DataplaneError(f"unknown tunnel backend {backend!r}")
        patch_pyroute2_seg6_modes()
        self.backend = backend
        self.interface = interface
        self.ha_address = ha_address
        self.home_prefix = home_prefix
        self.counters = DataplaneCounters()
        self._enomem = EnomemRetry(sleep=sleep, on_retry=self._count_retries)
        self._enomem_bulk = EnomemRetry(
            sleep=sleep, on_retry=self._count_retries, retries=BULK_ENOMEM_RETRIES
        )
        self._tunnel_source = TunnelSource()
        self._ipr: Any = IPRoute()
        links = self._ipr.link_lookup(ifname=interface)
        if not links:
            self._ipr.close()
            raise DataplaneError(f"interface {interface!r} not found")
        self._ifindex: int = links[0]
        self._coa_of: dict[IPv6Address, IPv6Address] = {}  # mirror of the kernel state
        self._coa_refs: Counter[IPv6Address] = Counter()  # HoAs per CoA (decap route)
        self._rtnl = RtnlSocket()
        self.per_request_pyroute2 = per_request_pyroute2
        self._moved_local_rule = False

    # -- helpers ---------------------------------------------------------------------------
    def _count_retries(self, count: int) -> None:
        self.counters.enomem_retries += count

    def _retry(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._enomem.call(what, func, *args, **kwargs)
        except DataplaneError:
            self.counters.errors += 1
            raise

    def _ip(self, *args: str, check: bool = True) -> str:
        try:
            return run_ip(*args, check=check)
        except DataplaneError:
            self.counters.errors += 1
            raise

    def wanted_sysctls(self) -> list[tuple[str, str, bool]]:
        """(dotted sysctl name, value, required) the Home Agent needs in its netns."""
        return [
            ("net.ipv6.conf.all.forwarding", "1", True),
            # RFC 6275 §10.4.1: answer NS for the home addresses of away Mobile Nodes.
            (f"net.ipv6.conf.{self.interface}.proxy_ndp", "1", True),
            # ip6_forward only consults the proxy table when all.proxy_ndp is set: without
            # it unicast NS (the home router's NUD probes) for a HoA go unanswered.
            ("net.ipv6.conf.all.proxy_ndp", "1", False),
            # Answer multicast NS for a proxied HoA at once, not after up to 0.8 s.
            (f"net.ipv6.neigh.{self.interface}.proxy_delay", "0", False),
        ]

    # -- setup -----------------------------------------------------------------------------
    def setup(self) -> None:
        """Sysctls, tunnel source, policy rules; then read back the tunnels already there.

        Raises:
            SysctlError: a required sysctl has the wrong value and cannot be written here
                (read-only ``/proc/sys`` in a container); the message says how to set it.
        """
        for name, value, required in self.wanted_sysctls():
            ensure_sysctl(name, value, required=required)
        ipr, retry = self._ipr, self._enomem
        if self.backend == "seg6":
            # The outer source of every encap.red packet in this netns (no per-route source
            # on this kernel).
            self._tunnel_source.set(self.ha_address)
            # `local` must come after the decap rule, else the HA's address is delivered
            # locally before the End.DX6 lookup.
            if move_local_rule(ipr, retry):
                self._moved_local_rule = True
            if not has_rule(ipr, RULE_PRIORITY_DECAP, DECAP_TABLE):
                add_rule(
                    ipr, retry, "add decap rule", priority=RULE_PRIORITY_DECAP,
                    table=DECAP_TABLE, dst=str(self.ha_address), dst_len=128,
                    ip_proto=IPPROTO_IPV6,
                )  # fmt: skip
        if not has_rule(ipr, RULE_PRIORITY_TUNNEL, TUNNEL_TABLE):
            add_rule(
                ipr, retry, "add tunnel rule", priority=RULE_PRIORITY_TUNNEL, table=TUNNEL_TABLE,
                dst=str(self.home_prefix.network_address), dst_len=self.home_prefix.prefixlen,
            )  # fmt: skip
        # RFC 6275 §10.4.1: NS for a proxied HoA (marked by ha.rules) must reach
        # ip6_forward's proxy-NDP check, not the HoA's tunnel route (dataplane ND_FWMARK).
        for pref, table in (
            (RULE_PRIORITY_ND_LOCAL, RT_TABLE_LOCAL),
            (RULE_PRIORITY_ND, RT_TABLE_MAIN),
        ):
            if not has_rule(ipr, pref, table):
                add_rule(ipr, retry, "add ND rule", priority=pref, table=table, fwmark=ND_FWMARK)
        self._coa_of = self.tunnels()
        self._resync_refs()
        log.info(
            "dataplane %s on %s: HA %s, home prefix %s, %d tunnel(s) found in the kernel",
            self.backend, self.interface, self.ha_address, self.home_prefix, len(self._coa_of),
        )  # fmt: skip

    # -- single operations -----------------------------------------------------------------
    def install_tunnel(self, home_address: IPv6Address, care_of_address: IPv6Address) -> None:
        old = self._coa_of.get(home_address)
        if old == care_of_address:
            return
        if self.backend == "ip6tnl":
            self._install_ip6tnl(home_address, care_of_address)
        elif self.per_request_pyroute2:
            self._add_decap(care_of_address)
            self._retry(
                f"tunnel {home_address} -> {care_of_address}",
                self._ipr.route, "replace",
                dst=str(home_address), dst_len=128, table=TUNNEL_TABLE,
                proto=RT_PROTO_NFQ_MIP6, oif=self._ifindex,
                encap={"type": "seg6", "mode": "encap.red", "segs": [str(care_of_address)]},
            )  # fmt: skip
        else:
            # One sendmsg: decap for the new CoA first (the MN may reverse-tunnel as soon as
            # it sees the BA), then the encap route — RFC 6275 §10.4.2, `replace` = one
            # atomic change of CoA, no gap, no duplicate — then the old CoA's decap route
            # once nothing uses it.
            requests = []
            if self._coa_refs[care_of_address] == 0:
                requests.append(self._decap_request(care_of_address))
            requests.append(
                seg6_encap_red_route(
                    home_address, care_of_address, oif=self._ifindex, table=TUNNEL_TABLE,
                    proto=RT_PROTO_NFQ_MIP6,
                )
            )  # fmt: skip
            if old is not None and self._coa_refs[old] == 1:
                requests.append(self._decap_delete(old))
            self._transact(requests, f"tunnel {home_address} -> {care_of_address}")
        self._track(home_address, care_of_address)
        if old is None:
            self.counters.tunnel_installs += 1
        else:
            self.counters.tunnel_replacements += 1
            if self.per_request_pyroute2 and self._coa_refs[old] == 0:
                self._del_decap(old)
            elif self.backend == "ip6tnl" and self._coa_refs[old] == 0:
                self._ip("link", "del", _ip6tnl_name(old), check=False)

    def remove_tunnel(self, home_address: IPv6Address) -> None:
        old = self._coa_of.get(home_address)
        requests = [route_delete(home_address, table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6)]
        if old is not None and self._coa_refs[old] == 1 and self.backend == "seg6":
            requests.append(self._decap_delete(old))
        self._transact(requests, f"remove tunnel {home_address}")
        self._track(home_address, None)
        if old is not None:
            self.counters.tunnel_removals += 1
            if self.backend == "ip6tnl" and self._coa_refs[old] == 0:
                self._ip("link", "del", _ip6tnl_name(old), check=False)

    def _track(self, home_address: IPv6Address, care_of_address: IPv6Address | None) -> None:
        """Bookkeeping of HoA -> CoA and how many HoAs use each CoA (its decap route)."""
        old = self._coa_of.pop(home_address, None)
        if old is not None:
            self._coa_refs[old] -= 1
            if self._coa_refs[old] <= 0:
                del self._coa_refs[old]
        if care_of_address is not None:
            self._coa_of[home_address] = care_of_address
            self._coa_refs[care_of_address] += 1

    def _resync_refs(self) -> None:
        self._coa_refs = Counter(self._coa_of.values())

    def _decap_request(self, coa: IPv6Address) -> tuple[int, int, bytes]:
        # RFC 6275 §10.4.5: only a registered CoA may reverse-tunnel to the HA.
        return seg6local_dx6_route(
            self.ha_address, coa, oif=self._ifindex, table=DECAP_TABLE, proto=RT_PROTO_NFQ_MIP6
        )

    def _decap_delete(self, coa: IPv6Address) -> tuple[int, int, bytes]:
        return route_delete(self.ha_address, src=coa, table=DECAP_TABLE, proto=RT_PROTO_NFQ_MIP6)

    def _transact(self, requests: list[tuple[int, int, bytes]], what: str) -> None:
        """Send ``requests`` together; retry ENOMEM ones after 10 ms; a delete of a route
        that is not there is fine; any other refusal is a :class:`DataplaneError`."""

        def attempt(
            pending: list[tuple[int, int, bytes]], final: bool
        ) -> list[tuple[int, int, bytes]]:
            retry = []
            for request, code in zip(pending, self._rtnl.transact(pending), strict=True):
                if code == 0 or (code == errno.ESRCH and request[0] == RTM_DELROUTE):
                    continue
                if code == errno.ENOMEM and not final:
                    retry.append(request)
                    continue
                self.counters.errors += 1
                raise DataplaneError(f"{what}: {os.strerror(code)}")
            return retry

        self._enomem.rounds(requests, attempt)

    def _transact_many(
        self, requests: list[tuple[int, int, bytes]], what: str, *, ignore_missing: bool = False
    ) -> int:
        """Send ``requests`` in batches of :data:`NETLINK_BATCH` per ``sendmsg``; retry the
        ENOMEM ones; return how many still failed (counted, the first few logged). With
        ``ignore_missing`` a delete of something absent is fine."""
        failed = 0

        def attempt(
            pending: list[tuple[int, int, bytes]], final: bool
        ) -> list[tuple[int, int, bytes]]:
            nonlocal failed
            retry = []
            for start in range(0, len(pending), NETLINK_BATCH):
                chunk = pending[start : start + NETLINK_BATCH]
                for request, code in zip(chunk, self._rtnl.transact(chunk), strict=True):
                    if code == 0 or (ignore_missing and code in MISSING_ERRNOS):
                        continue
                    if code == errno.ENOMEM and not final:
                        retry.append(request)
                        continue
                    if failed < 5:
                        log.warning("%s: %s", what, os.strerror(code))
                    failed += 1
            return retry

        self._enomem_bulk.rounds(requests, attempt)
        self.counters.errors += failed
        return failed

    def _add_decap(self, coa: IPv6Address) -> None:
        # RFC 6275 §10.4.5: only a registered CoA may reverse-tunnel to the HA.
        self._retry(
            f"decap from {coa}",
            self._ipr.route, "replace",
            dst=str(self.ha_address), dst_len=128, src=str(coa), src_len=128,
            table=DECAP_TABLE, proto=RT_PROTO_NFQ_MIP6, oif=self._ifindex,
            encap={"type": "seg6local", "action": "End.DX6", "nh6": "::"},
        )  # fmt: skip

    def _del_decap(self, coa: IPv6Address) -> None:
        quietly(
            f"remove decap from {coa}", self._ipr.route, "del",
            dst=str(self.ha_address), dst_len=128, src=str(coa), src_len=128,
            table=DECAP_TABLE, proto=RT_PROTO_NFQ_MIP6,
        )  # fmt: skip

    def _install_ip6tnl(self, hoa: IPv6Address, coa: IPv6Address) -> None:
        name = _ip6tnl_name(coa)
        self._ip(
            "-6", "link", "add", name, "type", "ip6tnl", "mode", "ip6ip6",
            "local", str(self.ha_address), "remote", str(coa), check=False,
        )  # fmt: skip
        self._ip("link", "set", name, "up")
        self._ip(
            "-6", "route", "replace", f"{hoa}/128", "dev", name,
            "table", str(TUNNEL_TABLE), "proto", str(RT_PROTO_NFQ_MIP6),
        )  # fmt: skip

    # -- mobile network prefixes (RFC 3963 §6.4, §6.5) --------------------------------------
    def _prefix_rule(self, prefix: IPv6Network, *, add: bool) -> None:
        """``to <prefix> lookup TUNNEL_TABLE``: the prefix's packets meet its tunnel route."""
        selector: dict[str, Any] = {"dst": str(prefix.network_address), "dst_len": prefix.prefixlen}
        if add:
            add_rule(
                self._ipr, self._enomem, f"add tunnel rule for {prefix}",
                priority=RULE_PRIORITY_TUNNEL, table=TUNNEL_TABLE, **selector,
            )  # fmt: skip
        else:
            delete_rule(
                self._ipr, f"del tunnel rule for {prefix}",
                priority=RULE_PRIORITY_TUNNEL, table=TUNNEL_TABLE, **selector,
            )  # fmt: skip

    def install_prefix_routes(
        self,
        care_of_address: IPv6Address,
        prefixes: Sequence[IPv6Network],
        withdrawn: Sequence[IPv6Network] = (),
    ) -> None:
        if self.backend != "seg6":
            raise DataplaneError("mobile network prefixes need the seg6 tunnel backend")
        for prefix in prefixes:
            self._prefix_rule(prefix, add=True)
        # one sendmsg: every prefix's route replaced in place (NLM_F_REPLACE), then the
        # withdrawn ones deleted
        requests = [
            seg6_encap_red_route(
                prefix.network_address, care_of_address, oif=self._ifindex,
                table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6, dst_len=prefix.prefixlen,
            )
            for prefix in prefixes
        ] + [
            route_delete(
                prefix.network_address, table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6,
                dst_len=prefix.prefixlen,
            )
            for prefix in withdrawn
        ]  # fmt: skip
        self._transact(requests, f"mobile network prefixes -> {care_of_address}")
        for prefix in withdrawn:
            self._prefix_rule(prefix, add=False)

    def remove_prefix_routes(self, prefixes: Sequence[IPv6Network]) -> None:
        requests = [
            route_delete(
                prefix.network_address, table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6,
                dst_len=prefix.prefixlen,
            )
            for prefix in prefixes
        ]  # fmt: skip
        self._transact(requests, "remove mobile network prefixes")
        for prefix in prefixes:
            self._prefix_rule(prefix, add=False)

    def prefix_routes(self) -> dict[IPv6Network, IPv6Address]:
        return {
            IPv6Network((route.dst, route.dst_len)): route.segment
            for route in self._routes(TUNNEL_TABLE, prefixes_only=True)
            if route.dst_len < 128 and route.segment is not None
        }

    def reconcile_prefixes(self, wanted: Mapping[IPv6Network, IPv6Address]) -> ReconcileReport:
        present = self.prefix_routes()
        stale = [prefix for prefix in present if prefix not in wanted]
        changes = [prefix for prefix, coa in wanted.items() if present.get(prefix) != coa]
        failed = 0
        by_coa: dict[IPv6Address, list[IPv6Network]] = {}
        for prefix in changes:
            by_coa.setdefault(wanted[prefix], []).append(prefix)
        for coa, prefixes in by_coa.items():
            try:
                self.install_prefix_routes(coa, prefixes)
            except DataplaneError as exc:
                log.warning("restoring mobile network prefixes via %s: %s", coa, exc)
                failed += len(prefixes)
        for prefix in wanted:  # a rule lost in a crash between rule and route
            if prefix not in changes:
                self._prefix_rule(prefix, add=True)
        if stale:
            try:
                self.remove_prefix_routes(stale)
            except DataplaneError as exc:
                log.warning("removing stale mobile network prefixes: %s", exc)
                failed += len(stale)
        added = sum(1 for prefix in changes if prefix not in present)
        return ReconcileReport(
            kept=len(wanted) - len(changes),
            added=added,
            replaced=len(changes) - added,
            removed=len(stale),
            failed=failed,
        )

    # -- batched operations ----------------------------------------------------------------
    def _encap_line(self, hoa: IPv6Address, coa: IPv6Address) -> str:
        return (
            f"route replace {_a(hoa)}/128 encap seg6 mode encap.red segs {_a(coa)} "
            f"dev {self.interface} table {TUNNEL_TABLE} proto {RT_PROTO_NFQ_MIP6}"
        )

    def _decap_line(self, coa: IPv6Address) -> str:
        return (
            f"route replace {_a(self.ha_address)}/128 from {_a(coa)}/128 "
            f"encap seg6local action End.DX6 nh6 :: dev {self.interface} "
            f"table {DECAP_TABLE} proto {RT_PROTO_NFQ_MIP6}"
        )

    def run_batch(self, lines: Sequence[str], *, ignore_missing: bool = False) -> int:
        """Run ``ip -6 -force -batch -`` over ``lines``; retry ENOMEM failures; return the
        number of lines that still failed (hard failures of every round included)."""
        hard_total = 0

        def attempt(pending: list[str], final: bool) -> list[str]:
            nonlocal hard_total
            failed: list[tuple[str, str]] = []
            for start in range(0, len(pending), BATCH_CHUNK):
                failed.extend(_batch_failures(pending[start : start + BATCH_CHUNK]))
            if ignore_missing:
                failed = [(line, why) for line, why in failed if "No such process" not in why]
            retryable = [line for line, why in failed if "Cannot allocate memory" in why]
            hard = [(line, why) for line, why in failed if "Cannot allocate memory" not in why]
            for line, why in hard[:5]:
                log.warning("ip -batch: %s: %s", line, why)
            self.counters.errors += len(hard)
            hard_total += len(hard)
            if final:
                self.counters.errors += len(retryable)
                hard_total += len(retryable)
                return []
            return retryable

        self._enomem.rounds(lines, attempt)
        return hard_total

    def install_tunnels(self, bindings: Mapping[IPv6Address, IPv6Address]) -> int:
        if self.backend == "ip6tnl":
            failed = 0
            for hoa, coa in bindings.items():
                try:
                    self.install_tunnel(hoa, coa)
                except DataplaneError:
                    failed += 1
            return failed
        # _coa_refs (a Counter: 0 when absent) instead of sets over every tunnel: a standby
        # calls this for a few bindings at a time with 10k+ tunnels installed
        new_coas = {coa for coa in bindings.values() if not self._coa_refs[coa]}
        if self.per_request_pyroute2:
            lines = [self._decap_line(coa) for coa in sorted(new_coas)]
            lines += [self._encap_line(hoa, coa) for hoa, coa in bindings.items()]
            failed = self.run_batch(lines)
        else:
            # netlink requests in sendmsg batches: no `ip` process per call (a standby
            # applies a few bindings at a time) and 10k routes in ~0.1 s
            requests = [self._decap_request(coa) for coa in sorted(new_coas)]
            requests += [
                seg6_encap_red_route(
                    hoa, coa, oif=self._ifindex, table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6
                )
                for hoa, coa in bindings.items()
            ]
            failed = self._transact_many(requests, "tunnel install")
        old = {h: self._coa_of[h] for h in bindings if h in self._coa_of}
        for hoa, coa in bindings.items():
            if hoa in old:
                self.counters.tunnel_replacements += old[hoa] != coa
            else:
                self.counters.tunnel_installs += 1
            self._track(hoa, coa)
        stale = {coa for coa in old.values() if not self._coa_refs[coa]}
        if stale:
            failed += self._transact_many(
                [self._decap_delete(c) for c in stale], "decap removal", ignore_missing=True
            )
        if failed:
            self._coa_of = self.tunnels()  # the kernel is the truth after partial failure
            self._resync_refs()
        return failed

    def remove_tunnels(self, home_addresses: Iterable[IPv6Address]) -> int:
        hoas = list(home_addresses)
        if self.backend == "ip6tnl":
            for hoa in hoas:
                self.remove_tunnel(hoa)
            return 0
        known = [h for h in hoas if h in self._coa_of]
        released = {self._coa_of[h] for h in known}
        for hoa in known:
            self._track(hoa, None)
        self.counters.tunnel_removals += len(known)
        requests = [route_delete(hoa, table=TUNNEL_TABLE, proto=RT_PROTO_NFQ_MIP6) for hoa in hoas]
        requests += [self._decap_delete(c) for c in released if not self._coa_refs[c]]
        return self._transact_many(requests, "tunnel removal", ignore_missing=True)

    # -- reading the kernel ----------------------------------------------------------------
    def _routes(self, table: int, *, prefixes_only: bool = False) -> Iterator[_RouteLine]:
        """The HA's routes of ``table``, parsed from ``ip -6 route show`` text as it streams
        (100k routes: no 20 MB JSON document and its object tree in memory).
        ``prefixes_only``: host routes (``ip`` prints them without ``/128``) are skipped
        unparsed (a restart's prefix check among 10k tunnel routes)."""
        proc = subprocess.Popen(
            ["ip", "-6", "route", "show", "table", str(table), "proto", str(RT_PROTO_NFQ_MIP6)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if prefixes_only and "/" not in line.partition(" ")[0]:
                    continue
                route = _parse_route_line(line)
                if route is not None:
                    yield route
        finally:
            proc.stdout.close()
            proc.wait()

    def tunnels(self) -> dict[IPv6Address, IPv6Address]:
        found: dict[IPv6Address, IPv6Address] = {}
        for route in self._routes(TUNNEL_TABLE):
            if route.dst_len != 128:
                continue  # a mobile network prefix (prefix_routes)
            if route.segment is not None:
                found[route.dst] = route.segment
            elif route.dev.startswith("nfqm6-"):
                remote = self._ip6tnl_remote(route.dev)
                if remote is not None:
                    found[route.dst] = remote
        return found

    def decap_sources(self) -> set[IPv6Address]:
        """The CoAs accepted as reverse-tunnel outer sources (DECAP_TABLE)."""
        return {route.src for route in self._routes(DECAP_TABLE) if route.src is not None}

    def _ip6tnl_remote(self, name: str) -> IPv6Address | None:
        info = json.loads(self._ip("-j", "-d", "link", "show", name, check=False) or "[]")
        try:
            return IPv6Address(info[0]["linkinfo"]["info_data"]["remote"])
        except (IndexError, KeyError, ValueError):
            return None

    def reconcile(self, wanted: Mapping[IPv6Address, IPv6Address]) -> ReconcileReport:
        """Make the kernel hold exactly ``wanted`` (restart; §10.3.1 bindings restored)."""
        present = self.tunnels()
        self._coa_of = dict(present)
        self._resync_refs()
        stale = [hoa for hoa in present if hoa not in wanted]
        changes = {hoa: coa for hoa, coa in wanted.items() if present.get(hoa) != coa}
        added = sum(1 for hoa in changes if hoa not in present)
        failed = self.remove_tunnels(stale) + self.install_tunnels(changes)
        if self.backend == "seg6":
            # Decap routes nobody references any more (e.g. left by a crash mid-change).
            used = set(self._coa_of.values())
            present_decap = self.decap_sources()
            orphans = [c for c in present_decap if c not in used]
            missing = [c for c in used if c not in present_decap]
            lines = [
                self._decap_line(c).replace("route replace", "route del", 1) for c in orphans
            ] + [self._decap_line(c) for c in missing]
            if lines:
                failed += self.run_batch(lines, ignore_missing=True)
        report = ReconcileReport(
            kept=len(wanted) - len(changes),
            added=added,
            replaced=len(changes) - added,
            removed=len(stale),
            failed=failed,
        )
        log.info("reconciled kernel tunnels with the binding cache: %s", report)
        return report

    # -- proxy ND (§10.4.1) ----------------------------------------------------------------
    def add_proxy(self, address: IPv6Address) -> None:
        self._transact(
            [proxy_neighbor(address, ifindex=self._ifindex, add=True)], f"proxy {address}"
        )

    def remove_proxy(self, address: IPv6Address) -> None:
        results = self._rtnl.transact([proxy_neighbor(address, ifindex=self._ifindex, add=False)])
        if results[0] != 0 and results[0] not in MISSING_ERRNOS:
            raise DataplaneError(f"unproxy {address}: {os.strerror(results[0])}")

    def add_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        return self._proxy_batch(addresses, add=True)

    def remove_proxies(self, addresses: Iterable[IPv6Address]) -> int:
        return self._proxy_batch(addresses, add=False)

    def _proxy_batch(self, addresses: Iterable[IPv6Address], *, add: bool) -> int:
        """Proxy entries in batches of 1 000 requests per sendmsg; a delete of an absent
        entry (or an add of a present one) is fine; the other refusals are counted."""
        failed = 0
        pending = list(addresses)
        fine = {0} | (MISSING_ERRNOS if not add else {errno.EEXIST})
        for start in range(0, len(pending), 1000):
            requests = [
                proxy_neighbor(address, ifindex=self._ifindex, add=add)
                for address in pending[start : start + 1000]
            ]
            for code in self._rtnl.transact(requests):
                if code not in fine:
                    failed += 1
        if failed:
            self.counters.errors += failed
            log.warning("%d proxy entr(y/ies) not %s", failed, "added" if add else "removed")
        return failed

    def proxies(self) -> set[IPv6Address]:
        out = self._ip("-6", "neigh", "show", "proxy", "dev", self.interface)
        return {IPv6Address(line.split()[0]) for line in out.splitlines() if line.strip()}

    # -- stop ------------------------------------------------------------------------------
    def shutdown(self, *, flush: bool) -> None:
        """``flush=False`` (SIGTERM): keep tunnels, decap, rules and proxies so flows survive
        a restart (the next start reconciles). ``flush=True``: remove all HA-owned state."""
        try:
            if flush:
                prefixes = list(self.prefix_routes())
                if prefixes:
                    self.remove_prefix_routes(prefixes)
                self.remove_tunnels(list(self.tunnels()))
                for coa in self.decap_sources():
                    self._del_decap(coa)
                for address in self.proxies():
                    self.remove_proxy(address)
                ipr = self._ipr
                for pref, table in (
                    (RULE_PRIORITY_ND_LOCAL, RT_TABLE_LOCAL),
                    (RULE_PRIORITY_ND, RT_TABLE_MAIN),
                    (RULE_PRIORITY_DECAP, DECAP_TABLE),
                    (RULE_PRIORITY_TUNNEL, TUNNEL_TABLE),
                ):
                    while has_rule(ipr, pref, table) and delete_rule(
                        ipr, f"del rule {pref}", priority=pref, table=table
                    ):
                        pass
                if self._moved_local_rule:
                    restore_local_rule(ipr, self._enomem)
                if self.backend == "seg6":
                    with contextlib.suppress(DataplaneError):
                        self._tunnel_source.set(None)
                self._coa_of.clear()
                self._coa_refs.clear()
        finally:
            self._tunnel_source.close()
            self._ipr.close()
            self._rtnl.close()


@dataclass(frozen=True, slots=True)
class _RouteLine:
    dst: IPv6Address
    src: IPv6Address | None
    segment: IPv6Address | None  # the (last) seg6 segment: the CoA
    dev: str
    dst_len: int = 128


def _parse_route_line(line: str) -> _RouteLine | None:
    """``<dst> [from <src>] [encap seg6 mode encap.red segs 1 [ <seg> ]] … dev <dev> …``."""
    tokens = line.split()
    if not tokens:
        return None
    try:
        dst_text, _, length = tokens[0].partition("/")
        dst = IPv6Address(dst_text)
        dst_len = int(length) if length else 128
        src = IPv6Address(tokens[2].split("/")[0]) if tokens[1:2] == ["from"] else None
        segment = None
        if "[" in tokens and "]" in tokens:
            segs = tokens[tokens.index("[") + 1 : tokens.index("]")]
            segment = IPv6Address(segs[-1]) if segs else None
        dev = tokens[tokens.index("dev") + 1] if "dev" in tokens else ""
    except (ValueError, IndexError):
        return None
    return _RouteLine(dst, src, segment, dev, dst_len)


def _ip6tnl_name(coa: IPv6Address) -> str:
    return f"nfqm6-{int(coa) & 0xFFFFFFFF:08x}"  # ≤ 15 characters (IFNAMSIZ)


def _batch_failures(lines: Sequence[str]) -> list[tuple[str, str]]:
    """Run one ``ip -6 -force -batch -``; return (line, error) for each failed line.

    Lines are streamed into the pipe while ``ip`` works (two cores: Python formats, ``ip``
    parses and talks netlink); its stderr goes to a file, so a flood of error lines cannot
    block the pipe.
    """
    if not lines:
        return []
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            ["ip", "-6", "-force", "-batch", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            text=True,
        )
        assert proc.stdin is not None
        try:
            for start in range(0, len(lines), 2048):
                proc.stdin.write("\n".join(lines[start : start + 2048]) + "\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        returncode = proc.wait(timeout=300)
        errors.seek(0)
        stderr = errors.read()
    if returncode == 0:
        return []
    failures: list[tuple[str, str]] = []
    last_error = ""
    for text in stderr.splitlines():
        if text.startswith("Command failed -:"):
            try:
                number = int(text.rsplit(":", 1)[1])
            except ValueError:
                continue
            if 1 <= number <= len(lines):
                failures.append((lines[number - 1], last_error))
            last_error = ""
        else:
            last_error = text.strip()
    if not failures:  # ip failed as a whole (cannot run, bad syntax everywhere)
        failures = [(line, stderr.strip()) for line in lines]
    return failures


def _a(address: IPv6Address) -> str:
    """Fast text form of an address (``str(IPv6Address)`` is ~4x slower; bulk paths)."""
    return socket.inet_ntop(socket.AF_INET6, address.packed)


def count_by_coa(bindings: Mapping[IPv6Address, IPv6Address]) -> Counter[IPv6Address]:
    """How many HoAs share each CoA (diagnostics)."""
    return Counter(bindings.values())


def _follows_the_protocol(dataplane: NetlinkDataplane) -> Dataplane:
    """Never called: mypy checks here that the real data plane implements the Protocol."""
    return dataplane
