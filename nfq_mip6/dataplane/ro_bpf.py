"""Route optimization in tc BPF: load ``ro.bpf.o``, attach it, keep its binding map.

The object file is built at install time (``scripts/build-bpf.sh``, run by
``scripts/bootstrap.sh`` and the Dockerfile's build stage) from ``bpf/ro.bpf.c`` and shipped
with the package; nothing is compiled when the agent runs.

* **Loading**: libbpf (``libbpf.so.1``, a dependency of iproute2's ``tc``) through ctypes:
  open the object, load only this role's two programs and two maps, attach them as clsact
  direct-action filters (handle :data:`FILTER_HANDLE`, priority :data:`FILTER_PRIORITY`) on
  ingress and egress of every interface that carries a binding. No bpffs is needed, which
  matters because ``ip netns exec`` hides the host's ``/sys/fs/bpf``.
* **Surviving the agent**: a tc filter holds its program and the program its maps, so a
  ``kill -9`` of the agent leaves the data path working. A restarted agent finds its filters
  by handle and priority, takes the maps of the attached programs by ID, loads the shipped
  object again *reusing those maps*, replaces the filters atomically and reconciles the map
  with its persisted bindings (:meth:`BpfRouteOptimization.reconcile`).
* **Map updates**: one ``bpf(2)`` call each (:mod:`nfq_mip6.dataplane.bpf_syscall`); an
  update of an existing key replaces the value atomically (a CoA change).
* **Routes** (+24 octets per packet for the RH2 / HAO): with each binding a host route with
  the interface MTU less 24, so nothing that is not GSO exceeds the path MTU after the
  insert. On the CN ``<HoA>/128 via <next hop to the CoA>``; on the MN a rule
  ``to <CN>/128 lookup`` :data:`MN_RO_ROUTE_TABLE` (before the reverse-tunnel rule
  ``from HoA``) with ``<CN>/128 via <next hop> src <HoA>``: the packet leaves the interface
  the programs are on instead of the tunnel, and a socket bound to ``::`` answers from the
  HoA (Linux has RFC 6724 rule 4 only with ``CONFIG_IPV6_MIP6``). These routes carry
  ``proto`` :data:`RT_PROTO_RO`. For the home agent as peer the rule is
  ``from <HoA>/128 to <HA>/128``: the reverse tunnel's outer packets and the BUs (from the
  CoA) keep the main table's route.
* **Clean stop**: the filters are detached and routes, rules and entries removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Final

from nfq_mip6.dataplane import DataplaneError, ReconcileReport
from nfq_mip6.dataplane.bpf_syscall import (
    BpfError,
    BpfMap,
    prog_fd_by_id,
    prog_info,
)
from nfq_mip6.dataplane.kernel import MN_RO_ROUTE_TABLE, MN_RO_RULE_PRIORITY, RT_PROTO_RO
from nfq_mip6.dataplane.ro_fastpath import COUNTER_NAMES, BindingKey, reconcile_plan
from nfq_mip6.dataplane.ro_routes import BindingRoutes

__all__ = [
    "FILTER_HANDLE",
    "FILTER_PRIORITY",
    "MN_RO_ROUTE_TABLE",
    "MN_RO_RULE_PRIORITY",
    "OBJECT_PATH",
    "RT_PROTO_RO",
    "BpfRouteOptimization",
    "Libbpf",
    "open_ro_fast_path",
]

log = logging.getLogger("nfq_mip6.ro_bpf")

OBJECT_PATH: Final = Path(__file__).with_name("bpf") / "ro.bpf.o"
FILTER_HANDLE: Final = 1
FILTER_PRIORITY: Final = {"cn": 0x6275, "mn": 0x6276}
PROGRAMS: Final = {"cn": ("cn_ingress", "cn_egress"), "mn": ("mn_ingress", "mn_egress")}
MAPS: Final = {"cn": ("mip6_cn_bind", "mip6_cn_stats"), "mn": ("mip6_mn_bind", "mip6_mn_stats")}
MIP6_EXT_LEN: Final = 24
ARPHRD_ETHER: Final = 1
BPF_TC_INGRESS: Final = 1
BPF_TC_EGRESS: Final = 2
BPF_TC_F_REPLACE: Final = 1


class _TcHook(ctypes.Structure):
    _fields_ = (  # struct bpf_tc_hook (libbpf.h)
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
    )


class _TcOpts(ctypes.Structure):
    _fields_ = (  # struct bpf_tc_opts (libbpf.h)
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
    )


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class Libbpf:
    """The libbpf 1.x calls we use, with its messages (verifier log) kept for error reports."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise DataplaneError(f"libbpf is not installed ({exc})") from exc
        self.lib = lib
        ptr = ctypes.c_void_p
        for func, restype, argtypes in (
            ("bpf_object__open_file", ptr, [ctypes.c_char_p, ptr]),
            ("bpf_object__find_program_by_name", ptr, [ptr, ctypes.c_char_p]),
            ("bpf_object__find_map_by_name", ptr, [ptr, ctypes.c_char_p]),
            ("bpf_object__next_program", ptr, [ptr, ptr]),
            ("bpf_object__next_map", ptr, [ptr, ptr]),
            ("bpf_program__name", ctypes.c_char_p, [ptr]),
            ("bpf_map__name", ctypes.c_char_p, [ptr]),
            ("bpf_program__set_autoload", ctypes.c_int, [ptr, ctypes.c_bool]),
            ("bpf_map__set_autocreate", ctypes.c_int, [ptr, ctypes.c_bool]),
            ("bpf_map__reuse_fd", ctypes.c_int, [ptr, ctypes.c_int]),
            ("bpf_object__load", ctypes.c_int, [ptr]),
            ("bpf_object__close", None, [ptr]),
            ("bpf_program__fd", ctypes.c_int, [ptr]),
            ("bpf_map__fd", ctypes.c_int, [ptr]),
            ("bpf_tc_hook_create", ctypes.c_int, [ptr]),
            ("bpf_tc_attach", ctypes.c_int, [ptr, ptr]),
            ("bpf_tc_detach", ctypes.c_int, [ptr, ptr]),
            ("bpf_tc_query", ctypes.c_int, [ptr, ptr]),
            ("libbpf_set_print", ptr, [ptr]),
        ):
            function = getattr(lib, func)
            function.restype = restype
            function.argtypes = argtypes
        self.messages: list[str] = []
        libc = ctypes.CDLL(None)
        vsnprintf = libc.vsnprintf
        vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]

        def _print(level: int, fmt: bytes | None, args: int | None) -> int:
            buffer = ctypes.create_string_buffer(2048)
            vsnprintf(buffer, len(buffer), fmt, args)
            text = buffer.value.decode(errors="replace").rstrip()
            if level < 2 and text:  # LIBBPF_WARN, LIBBPF_INFO; not DEBUG
                self.messages.append(text)
                del self.messages[:-200]
                log.debug("libbpf: %s", text)
            return 0

        self._print = _PRINT_FN(_print)  # kept alive as long as the library uses it
        lib.libbpf_set_print(ctypes.cast(self._print, ctypes.c_void_p))

    def last_messages(self, count: int = 4) -> str:
        return " | ".join(self.messages[-count:])


def _hook(ifindex: int, attach_point: int) -> _TcHook:
    return _TcHook(ctypes.sizeof(_TcHook), ifindex, attach_point, 0)


def _opts(priority: int, *, prog_fd: int = 0, flags: int = 0) -> _TcOpts:
    return _TcOpts(ctypes.sizeof(_TcOpts), prog_fd, flags, 0, FILTER_HANDLE, priority)


def _key(home_address: IPv6Address, peer: IPv6Address) -> bytes:
    return home_address.packed + peer.packed


def _run_ip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


class BpfRouteOptimization:
    """:class:`~nfq_mip6.dataplane.ro_fastpath.RouteOptimizationFastPath` in tc BPF.

    ``interfaces`` are attached at start (the CN's interface); others are attached when a
    binding's route leaves through them (the MN's visited links).
    """

    kind = "bpf"

    def __init__(
        self,
        role: str,
        *,
        interfaces: tuple[str, ...] = (),
        object_path: Path = OBJECT_PATH,
        run_ip: Callable[[list[str]], subprocess.CompletedProcess[str]] = _run_ip,
    ) -> None:
        if role not in PROGRAMS:
            raise ValueError(f"route optimization fast path: unknown role {role!r}")
        self.role = role
        self.priority = FILTER_PRIORITY[role]
        self.object_path = object_path
        self._initial_interfaces = interfaces
        self._libbpf: Libbpf | None = None
        self._object: int | None = None
        self._prog_fds: dict[str, int] = {}  # "ingress"/"egress" -> fd owned by the object
        self.bind_map: BpfMap | None = None
        self.stats_map: BpfMap | None = None
        self.attached: dict[str, int] = {}  # interface -> ifindex
        self.routes = BindingRoutes(role, run_ip=run_ip, on_interface=self.attach)
        self.adopted = False

    # ------------------------------------------------------------------ load / attach
    def start(self) -> str:
        if not self.object_path.is_file():
            raise DataplaneError(
                f"{self.object_path} is missing: build it with scripts/build-bpf.sh "
                "(scripts/bootstrap.sh does)"
            )
        self._libbpf = Libbpf()
        leftovers = self._find_attached()
        adopted_maps = self._maps_of(leftovers)
        try:
            self._load(adopted_maps)
        except DataplaneError:
            if not adopted_maps:
                raise
            log.warning("reusing the maps of the attached programs failed; fresh maps")
            adopted_maps = {}
            self._load({})
        for fd in adopted_maps.values():
            os.close(fd)
        self.adopted = bool(adopted_maps)
        for interface in dict.fromkeys([*leftovers, *self._initial_interfaces]):
            self.attach(interface)
        log.info(
            "route optimization in tc BPF (%s): %s, on %s",
            self.role,
            "adopted" if self.adopted else "loaded",
            ", ".join(self.attached) or "no interface yet",
        )
        return "adopted" if self.adopted else "loaded"

    def _find_attached(self) -> dict[str, int]:
        """Interfaces where our ingress filter is attached -> its program ID."""
        assert self._libbpf is not None
        found: dict[str, int] = {}
        for ifindex, name in socket.if_nameindex():
            hook = _hook(ifindex, BPF_TC_INGRESS)
            opts = _opts(self.priority)
            if self._libbpf.lib.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts)) == 0:
                found[name] = int(opts.prog_id)
        return found

    def _maps_of(self, attached: Mapping[str, int]) -> dict[str, int]:
        """Map name -> fd of the maps of an attached program of ours (one is enough)."""
        wanted = set(MAPS[self.role])
        for prog_id in attached.values():
            try:
                prog_fd = prog_fd_by_id(prog_id)
            except BpfError:
                continue
            try:
                info = prog_info(prog_fd)
            finally:
                os.close(prog_fd)
            if info.name not in PROGRAMS[self.role]:
                continue
            maps: dict[str, int] = {}
            for map_id in info.map_ids:
                with contextlib.suppress(BpfError):
                    bpf_map = BpfMap.by_id(map_id)
                    if bpf_map.name in wanted:
                        maps[bpf_map.name] = os.dup(bpf_map.fd)
                    bpf_map.close()
            if set(maps) == wanted:
                return maps
            for fd in maps.values():
                os.close(fd)
        return {}

    def _load(self, reuse: Mapping[str, int]) -> None:
        assert self._libbpf is not None
        lib = self._libbpf.lib
        self._libbpf.messages.clear()  # only this load's messages go into an error
        obj = lib.bpf_object__open_file(str(self.object_path).encode(), None)
        if not obj:
            raise DataplaneError(
                f"cannot open {self.object_path}: {os.strerror(ctypes.get_errno())}"
            )
        ingress_name, egress_name = PROGRAMS[self.role]
        prog = lib.bpf_object__next_program(obj, None)
        while prog:
            name = lib.bpf_program__name(prog).decode()
            lib.bpf_program__set_autoload(prog, name in (ingress_name, egress_name))
            prog = lib.bpf_object__next_program(obj, prog)
        bpf_map = lib.bpf_object__next_map(obj, None)
        while bpf_map:
            name = lib.bpf_map__name(bpf_map).decode()
            if name in MAPS[self.role]:
                if name in reuse and lib.bpf_map__reuse_fd(bpf_map, reuse[name]) != 0:
                    lib.bpf_object__close(obj)
                    raise DataplaneError(f"cannot reuse map {name}")
            else:
                lib.bpf_map__set_autocreate(bpf_map, False)
            bpf_map = lib.bpf_object__next_map(obj, bpf_map)
        code = lib.bpf_object__load(obj)
        if code != 0:
            lib.bpf_object__close(obj)
            reason = os.strerror(-code) if code < 0 else str(code)
            hint = ""
            if code in (-errno.EPERM, -errno.EACCES):
                hint = " (needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)"
            raise DataplaneError(
                f"loading {self.object_path.name} failed: {reason}{hint}; "
                f"{self._libbpf.last_messages()}"
            )
        self._object = obj
        for direction, name in (("ingress", ingress_name), ("egress", egress_name)):
            self._prog_fds[direction] = lib.bpf_program__fd(
                lib.bpf_object__find_program_by_name(obj, name.encode())
            )
        bind_name, stats_name = MAPS[self.role]
        self.bind_map = BpfMap(
            os.dup(lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, bind_name.encode())))
        )
        self.stats_map = BpfMap(
            os.dup(lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, stats_name.encode()))),
            per_cpu=True,
        )

    def attach(self, interface: str) -> None:
        """Attach both programs on ``interface`` (clsact; replaces our earlier filters)."""
        if interface in self.attached:
            return
        assert self._libbpf is not None
        lib = self._libbpf.lib
        try:
            ifindex = socket.if_nametoindex(interface)
            link_type = int(Path(f"/sys/class/net/{interface}/type").read_text())
        except OSError as exc:
            raise DataplaneError(f"interface {interface}: {exc}") from exc
        if link_type != ARPHRD_ETHER:
            raise DataplaneError(
                f"interface {interface} is not Ethernet-like (type {link_type}): "
                "the programs expect a 14-octet link header"
            )
        for direction, point in (("ingress", BPF_TC_INGRESS), ("egress", BPF_TC_EGRESS)):
            hook = _hook(ifindex, point)
            code = lib.bpf_tc_hook_create(ctypes.byref(hook))
            if code not in (0, -errno.EEXIST):
                raise DataplaneError(f"clsact on {interface}: {os.strerror(-code)}")
            opts = _opts(self.priority, prog_fd=self._prog_fds[direction], flags=BPF_TC_F_REPLACE)
            code = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
            if code != 0:
                raise DataplaneError(f"attaching {direction} on {interface}: {os.strerror(-code)}")
        self.attached[interface] = ifindex

    def detach(self, interface: str) -> None:
        ifindex = self.attached.pop(interface, None)
        if ifindex is None or self._libbpf is None:
            return
        for point in (BPF_TC_INGRESS, BPF_TC_EGRESS):
            hook = _hook(ifindex, point)
            opts = _opts(self.priority)
            self._libbpf.lib.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))

    # ------------------------------------------------------------------ bindings
    def _map(self) -> BpfMap:
        if self.bind_map is None:
            raise DataplaneError("route optimization fast path not started")
        return self.bind_map

    def install(
        self,
        home_address: IPv6Address,
        peer: IPv6Address,
        care_of_address: IPv6Address,
        *,
        from_home_address_only: bool = False,
    ) -> None:
        try:
            self._map().update(_key(home_address, peer), care_of_address.packed)
        except BpfError as exc:
            raise DataplaneError(str(exc)) from exc
        try:
            self.routes.install(
                home_address,
                peer,
                care_of_address,
                from_home_address_only=from_home_address_only,
            )
        except (DataplaneError, OSError) as exc:  # no route: the entry must not stay either
            with contextlib.suppress(BpfError):
                self._map().delete(_key(home_address, peer))
            raise DataplaneError(f"route for {home_address} / {peer}: {exc}") from exc

    def remove(self, home_address: IPv6Address, peer: IPv6Address) -> None:
        self.routes.remove(home_address, peer)
        try:
            self._map().delete(_key(home_address, peer))
        except BpfError as exc:
            raise DataplaneError(str(exc)) from exc

    def bindings(self) -> dict[BindingKey, IPv6Address]:
        result: dict[BindingKey, IPv6Address] = {}
        for key, value in self._map().items().items():
            result[(IPv6Address(key[:16]), IPv6Address(key[16:]))] = IPv6Address(value)
        return result

    def reconcile(self, wanted: Mapping[BindingKey, IPv6Address]) -> ReconcileReport:
        stale, write, report = reconcile_plan(self.bindings(), wanted)
        failed = 0
        for home_address, peer in stale:
            self.remove(home_address, peer)
        for (home_address, peer), coa in wanted.items():
            try:
                if (home_address, peer) in write:
                    self.install(home_address, peer, coa)
                else:
                    self.routes.install(home_address, peer, coa)
            except DataplaneError as exc:
                log.warning("reconcile %s/%s: %s", home_address, peer, exc)
                failed += 1
        self.routes.remove_stale(wanted)
        return ReconcileReport(
            kept=report.kept,
            added=report.added,
            replaced=report.replaced,
            removed=report.removed,
            failed=failed,
        )

    # ------------------------------------------------------------------ state
    def counters(self) -> dict[str, int]:
        if self.stats_map is None:
            return dict.fromkeys(COUNTER_NAMES, 0)
        try:
            values = self.stats_map.per_cpu_sums(len(COUNTER_NAMES))
        except BpfError:
            return dict.fromkeys(COUNTER_NAMES, 0)
        return dict(zip(COUNTER_NAMES, values, strict=True))

    def snapshot(self) -> dict[str, Any]:
        bindings = self.bindings() if self.bind_map is not None else {}
        return {
            "kind": self.kind,
            "interfaces": sorted(self.attached),
            "adopted": self.adopted,
            "entries": len(bindings),
            "bindings": [  # the first 64, for ro status / stats
                {"home_address": str(h), "peer": str(p), "care_of_address": str(c)}
                for (h, p), c in sorted(bindings.items())[:64]
            ],
            "counters": self.counters(),
        }

    def stop(self, *, flush: bool) -> None:
        if flush and self.bind_map is not None:
            for home_address, peer in list(self.bindings()):
                with contextlib.suppress(DataplaneError):
                    self.remove(home_address, peer)
            self.routes.remove_stale({})
            for interface in list(self.attached):
                self.detach(interface)
        for bpf_map in (self.bind_map, self.stats_map):
            if bpf_map is not None:
                bpf_map.close()
        self.bind_map = self.stats_map = None
        if self._object is not None and self._libbpf is not None:
            self._libbpf.lib.bpf_object__close(self._object)
        self._object = None
        self._prog_fds.clear()
        self.attached.clear()


def open_ro_fast_path(
    role: str, mode: str, *, interfaces: tuple[str, ...] = ()
) -> tuple[BpfRouteOptimization | None, str]:
    """The configured RO data path (``[agent] ro_datapath``) for ``role`` (``cn``/``mn``).

    Returns ``(fast path, reason)``: a started :class:`BpfRouteOptimization`, or ``None``
    when NFQUEUE carries the data packets, with why. ``"bpf"`` raises
    :class:`~nfq_mip6.dataplane.DataplaneError` when the programs cannot run; ``"auto"``
    falls back to NFQUEUE and logs the reason.
    """
    if mode == "nfqueue":
        return None, "configured (ro_datapath = nfqueue)"
    fast_path = BpfRouteOptimization(role, interfaces=interfaces)
    try:
        how = fast_path.start()
    except DataplaneError as exc:
        fast_path.stop(flush=False)
        if mode == "bpf":
            raise
        log.warning("route optimization data path: NFQUEUE, tc BPF unavailable: %s", exc)
        return None, f"tc BPF unavailable: {exc}"
    return fast_path, f"tc BPF programs {how}"
