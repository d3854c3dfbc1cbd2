"""The HOWTO's test bed (§4, §5) built from network namespaces, bridges, veths and radvd.

Theory of operation
-------------------
``Testbed(prefix).up()`` creates one namespace per node (``<prefix>-ha``, ``-r``, ``-ar``,
``-ar2``, ``-cn``, ``-mn``) and a switch namespace (``<prefix>-sw``) holding one bridge per
link (``homenet``, ``internet``, ``visitnet``, ``visitnet2``). Each node interface is one
end of a veth pair; the other end (``<node>-<ifname>``) is a bridge port in the switch
namespace, so nothing of the test bed is visible in the host's namespace.

Every name it creates is recorded in a state file (``/run/nfq-mip6-testbed/<prefix>/
state.json``) *before* it is created, so ``down()`` removes everything even after a crash
halfway through ``up()``. ``up()`` refuses to touch namespaces that exist but are not in
its record. radvd runs once per advertising router, with its config, pid file and log in
``/run/nfq-mip6-testbed/<prefix>/<node>/``.

``move(link)`` is the HOWTO's ``iwconfig eth0 essid visitnet``: the switch end of the MN's
veth goes down, is re-mastered to another bridge and comes up again, so the MN sees its
carrier drop and return. Linux sends no Router Solicitation on carrier regain; the MN
learns about the new link from the next unsolicited RA (radvd sends one at least every
1.5 s) or from an RS that its agent (or a test, with ``rdisc6``) sends.

This module is the bed itself (build, tear down, status, move). A node is
:class:`~nfq_mip6.testbed.node.Node`; the traffic tools (ping stream, capture, iperf3) are in
:mod:`nfq_mip6.testbed.traffic` and the resets for tests sharing a bed in
:mod:`nfq_mip6.testbed.resets`; the :class:`Testbed` methods of the same names use them.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from nfq_mip6.errors import DataplaneError
from nfq_mip6.io.radvd import Radvd
from nfq_mip6.testbed import cluster_processes, nemo, resets, traffic
from nfq_mip6.testbed.cluster import (
    CLUSTER_LINKS,
    MAX_CLUSTER_SIZE,
    cluster_hosts,
    cluster_nodes,
)
from nfq_mip6.testbed.netns import (
    TestbedError,
    ip,
    kill_netns_processes,
    list_netns,
    netns_available,
    pid_alive,
    run,
    sysctl,
    terminate_pids,
)
from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.radvd import home_router_config, radvd_config
from nfq_mip6.testbed.topology import (
    MN_INTERFACE,
    MN_LINK_BRIDGE,
    MN_LINKS,
    MNN_INTERFACE,
    NEMO_NODE_NAMES,
    SWITCH_SYSCTLS,
    LinkName,
    MnLink,
    NodeSpec,
    interface_sysctls,
    links,
    node_spec,
    nodes,
    sysctls,
)
from nfq_mip6.testbed.traffic import Outage, PingResult, PingStream, parse_ping_output

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_RUN_DIR",
    "Node",
    "Outage",
    "PingResult",
    "PingStream",
    "Testbed",
    "TestbedStatus",
    "parse_ping_output",
    "unique_prefix",
]

DEFAULT_PREFIX: Final = "nfqm"
DEFAULT_RUN_DIR: Final = Path("/run/nfq-mip6-testbed")
STATE_VERSION: Final = 1
SWITCH: Final = "sw"
_PREFIX_RE: Final = re.compile(r"^[a-z][a-z0-9]{0,10}$")


# ---------------------------------------------------------------------------------------
# State file


@dataclass(slots=True)
class _State:
    prefix: str
    namespaces: list[str] = field(default_factory=list)
    radvd_pidfiles: dict[str, str] = field(default_factory=dict)
    radvd_pids: dict[str, int] = field(default_factory=dict)
    mn_link: str = "home"
    complete: bool = False
    nemo: bool = False  # the NEMO variant: the MN as a mobile router with a LAN (RFC 3963)
    cluster: int = 0  # HA hosts of the cluster variant; 0 = the HOWTO's single HA
    pids: dict[str, int] = field(default_factory=dict)  # cluster: "ha1/etcd" -> pid
    version: int = STATE_VERSION

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ValueError("unknown state file version")
        return cls(
            prefix=str(raw["prefix"]),
            namespaces=[str(n) for n in raw.get("namespaces", [])],
            radvd_pidfiles={str(k): str(v) for k, v in raw.get("radvd_pidfiles", {}).items()},
            radvd_pids={str(k): int(v) for k, v in raw.get("radvd_pids", {}).items()},
            mn_link=str(raw.get("mn_link", "home")),
            complete=bool(raw.get("complete", False)),
            nemo=bool(raw.get("nemo", False)),
            cluster=int(raw.get("cluster", 0)),
            pids={str(k): int(v) for k, v in raw.get("pids", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class TestbedStatus:
    __test__ = False

    prefix: str
    state_file: str
    recorded: bool
    complete: bool
    namespaces: dict[str, bool]  # name -> exists
    radvd: dict[str, int | None]  # node -> live pid
    mn_link: str | None
    mn_addresses: tuple[str, ...]
    nemo: bool = False
    mnn_addresses: tuple[str, ...] = ()  # the mobile network node's (NEMO test bed)
    # the cluster test bed: "ha1/etcd" -> live pid, and the host holding the HA address
    processes: dict[str, int | None] = field(default_factory=dict)
    active_host: str | None = None

    @property
    def healthy(self) -> bool:
        return (
            self.recorded
            and self.complete
            and all(self.namespaces.values())
            and all(pid is not None for pid in self.radvd.values())
            and all(pid is not None for pid in self.processes.values())
        )

    def format(self) -> str:
        lines = [
            f"test bed {self.prefix!r}{' (NEMO)' if self.nemo else ''}: "
            + ("up" if self.healthy else "partly up" if self.recorded else "down"),
            f"  state file: {self.state_file}" + ("" if self.recorded else " (none)"),
        ]
        for name, exists in self.namespaces.items():
            lines.append(f"  netns {name:<16} {'present' if exists else 'absent'}")
        for node, pid in self.radvd.items():
            lines.append(f"  radvd on {node:<10} {f'pid {pid}' if pid else 'not running'}")
        for what, pid in self.processes.items():
            lines.append(f"  {what:<19} {f'pid {pid}' if pid else 'not running'}")
        if self.processes:
            lines.append(f"  active HA host: {self.active_host or 'none'}")
        if self.mn_link is not None:
            lines.append(f"  MN attached to: {self.mn_link}")
            for address in self.mn_addresses:
                lines.append(f"    {MN_INTERFACE} {address}")
        if self.nemo:
            lines.append("  mobile network node:")
            for address in self.mnn_addresses:
                lines.append(f"    {MNN_INTERFACE} {address}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"healthy": self.healthy}, indent=2)


# ---------------------------------------------------------------------------------------
# The test bed


class Testbed:
    """The HOWTO test bed under a name prefix (parallel sessions use different prefixes).

    ``nemo``: the NEMO variant (RFC 3963; the MN as a mobile router with a LAN and a mobile
    network node on it, :mod:`nfq_mip6.testbed.topology`); ``None`` (the default) means what
    the state file of a bed that is up records, and the plain bed when there is none.
    ``cluster``: N HA hosts serving one virtual HA instead of the single HA (etcd, keepalived
    and an HA agent per host, :mod:`nfq_mip6.testbed.cluster`); ``None`` likewise means what
    the state file records, else 0 (no cluster).
    """

    __test__ = False

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        run_dir: Path = DEFAULT_RUN_DIR,
        nemo: bool | None = None,
        cluster: int | None = None,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise TestbedError(
                f"bad prefix {prefix!r}: use 1-11 lower-case letters/digits, starting with a letter"
            )
        self.prefix = prefix
        self.run_dir = run_dir / prefix
        self.state_path = self.run_dir / "state.json"
        self._lock_path = run_dir / f"{prefix}.lock"
        self._nemo = nemo
        if cluster:
            try:
                cluster_hosts(cluster)
            except ValueError as exc:
                raise TestbedError(str(exc)) from None
            if nemo:
                raise TestbedError("a cluster test bed has no NEMO variant")
        self._cluster = cluster
        self.last_up_seconds: float | None = None  # how long the last up() took

    # -- names ----------------------------------------------------------------------

    def netns_name(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def nemo(self) -> bool:
        """Whether this is the NEMO test bed (as asked, else as recorded)."""
        if self._nemo is not None:
            return self._nemo
        with contextlib.suppress(TestbedError):
            state = self._load_state()
            return bool(state and state.nemo)
        return False

    @property
    def cluster_size(self) -> int:
        """HA hosts of the cluster variant (as asked, else as recorded); 0 = single HA."""
        if self._cluster is not None:
            return self._cluster
        with contextlib.suppress(TestbedError):
            state = self._load_state()
            return state.cluster if state else 0
        return 0

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        size = self.cluster_size
        return cluster_nodes(size) if size else nodes(self.nemo)

    @property
    def links(self) -> tuple[LinkName, ...]:
        return CLUSTER_LINKS if self.cluster_size else links(self.nemo)

    def node_spec(self, name: str) -> NodeSpec:
        """The description of node ``name`` of this bed (KeyError listing the nodes)."""
        if not self.cluster_size:
            return node_spec(name, self.nemo)
        for spec in self.nodes:
            if spec.name == name:
                return spec
        names = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node {name!r} in the test bed (nodes: {names})")

    @property
    def namespace_names(self) -> list[str]:
        return [self.netns_name(SWITCH), *(self.netns_name(n.name) for n in self.nodes)]

    def node(self, name: str) -> Node:
        if name != SWITCH:
            self.node_spec(name)  # KeyError with the list of nodes
        return Node(name, self.netns_name(name))

    @property
    def switch(self) -> Node:
        return self.node(SWITCH)

    # -- lifecycle ------------------------------------------------------------------

    def up(self, timeout: float = 15.0) -> None:
        """Build the test bed; a no-op when it is already up and healthy.

        Raises ``TestbedError`` when not root, or when a namespace with one of our
        names exists but is not recorded in our state file.
        """
        _require_root()
        started = time.monotonic()
        with self._locked():
            state = self._load_state()
            if self._nemo is None:  # as recorded: rebuilt as the same kind
                self._nemo = bool(state and state.nemo)
            if self._cluster is None:
                self._cluster = state.cluster if state else 0
            existing = list_netns()
            recorded = set(state.namespaces) if state else set()
            foreign = [n for n in self.namespace_names if n in existing and n not in recorded]
            if foreign:
                raise TestbedError(
                    f"network namespace(s) {', '.join(foreign)} exist but were not created by "
                    f"this test bed (no record in {self.state_path}); use another --prefix, "
                    f"or remove them with `nfq-mip6 testbed down --prefix {self.prefix} --force`"
                )
            if state is not None:
                same_kind = state.nemo == self.nemo and state.cluster == self.cluster_size
                if same_kind and state.complete and self._status(state).healthy:
                    self.last_up_seconds = time.monotonic() - started
                    return
                self._teardown(state)
            self._build(timeout)
        self.last_up_seconds = time.monotonic() - started

    def down(self, force: bool = False) -> list[str]:
        """Remove everything ``up()`` made (also after a failed ``up()``); returns the
        namespaces removed. ``force`` also removes namespaces with our names that are
        not recorded (e.g. after the state file was lost)."""
        _require_root()
        with self._locked():
            state = self._load_state() or _State(self.prefix)
            if force:  # every name either variant of the test bed may have made
                existing = list_netns()
                cluster = [f"ha{i}" for i in range(1, MAX_CLUSTER_SIZE + 1)]
                names = [self.netns_name(n) for n in (SWITCH, *NEMO_NODE_NAMES, *cluster)]
                state.namespaces += [
                    n for n in names if n in existing and n not in state.namespaces
                ]
            removed = self._teardown(state)
        # No trace: the lock file and the (then empty) run directory go too.
        self._lock_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._lock_path.parent.rmdir()
        return removed

    def status(self) -> TestbedStatus:
        return self._status(self._load_state())

    def move(self, mn_link: MnLink) -> None:
        """Make the MN travel (HOWTO §5.2 ``iwconfig eth0 essid visitnet``): carrier down,
        re-attach to the link's bridge, carrier up. Sends no Router Solicitation."""
        if mn_link not in MN_LINKS:
            raise TestbedError(f"unknown MN link {mn_link!r}; choose one of {', '.join(MN_LINKS)}")
        with self._locked():
            state = self._load_state()
            if state is None or not state.complete:
                raise TestbedError(f"test bed {self.prefix!r} is not up (nfq-mip6 testbed up)")
            port = _port_name("mn", MN_INTERFACE)
            sw = self.netns_name(SWITCH)
            ip("link", "set", port, "down", netns=sw)
            ip("link", "set", port, "master", MN_LINK_BRIDGE[mn_link], netns=sw)
            ip("link", "set", port, "up", netns=sw)
            state.mn_link = mn_link
            self._save_state(state)

    def reset(self, timeout: float = 10.0) -> None:
        """Put the whole test bed back to the state ``up()`` left it in (for tests that
        share one test bed): every node's kernel state that agents touch is restored
        (:meth:`restore_baseline`), then the MN comes home (:meth:`reset_mn`)."""
        for spec in self.nodes:
            self.restore_baseline(spec.name)
        self.reset_mn(timeout)

    def restore_baseline(self, node: str) -> None:
        """Undo what an agent or a test may have left in ``node``
        (:func:`nfq_mip6.testbed.resets.restore_baseline`)."""
        resets.restore_baseline(self.node(node), self.node_spec(node))

    def reset_mn(self, timeout: float = 10.0) -> None:
        """Bring the MN home and make it forget visited links (for tests): remove its
        SLAAC addresses, RA-learnt routers and visited prefixes, then solicit the HA's RA
        and wait until the home SLAAC address and default router are back."""
        state = self._load_state()
        if state is None or not state.complete:
            raise TestbedError(f"test bed {self.prefix!r} is not up (nfq-mip6 testbed up)")
        if state.mn_link != "home":
            self.move("home")
        mn = self.node("mn")
        resets.forget_visited_links(mn)
        self.solicit_router()
        self.wait_until(lambda: resets.home_again(mn), timeout, resets.HOME_AGAIN)

    # -- helpers for tests and the demo ---------------------------------------------

    @property
    def nemo_dir(self) -> Path:
        """Where the NEMO bed keeps its agents' configurations (:mod:`.nemo`)."""
        return self.run_dir / "nemo"

    def nemo_config(self, name: str) -> Path:
        """The path of a NEMO agent configuration: ``ha``, ``mn`` (explicit prefix mode),
        ``mn-implicit``, or ``key`` (:mod:`nfq_mip6.testbed.nemo`)."""
        if not self.nemo:
            raise TestbedError(
                f"test bed {self.prefix!r} is not the NEMO variant (nfq-mip6 testbed up --nemo)"
            )
        files = {**nemo.CONFIG_FILES, "key": "mr.key"}
        if name not in files:
            raise TestbedError(f"no NEMO configuration {name!r}; choose one of {', '.join(files)}")
        return self.nemo_dir / files[name]

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` every 20 ms; raise ``TestbedError`` naming ``what``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TestbedError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    def solicit_router(self, node: str = "mn", ifname: str = MN_INTERFACE) -> str:
        """Send a Router Solicitation and return rdisc6's dump of the first RA."""
        return self.node(node).run(["rdisc6", "-1", "-w", "1000", ifname], check=False).stdout

    def wait_for_address(
        self, prefix: str, node: str = "mn", ifname: str = MN_INTERFACE, timeout: float = 10.0
    ) -> str:
        """Poll until ``node`` has an address in ``prefix`` on ``ifname``; return it."""
        network = ipaddress.IPv6Network(prefix)
        deadline = time.monotonic() + timeout
        target = self.node(node)
        while True:
            for address in target.ipv6_addresses(ifname):
                if ipaddress.IPv6Address(address) in network:
                    return address
            if time.monotonic() > deadline:
                raise TestbedError(f"{node} got no address in {prefix} on {ifname} in {timeout} s")
            time.sleep(0.02)

    def capture(
        self, link: str, path: str | os.PathLike[str], node: str | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        """tcpdump to a pcap while the block runs. ``link`` is a bridge (``homenet``...)
        watched from the switch, or an interface of ``node`` when ``node`` is given."""
        if node is None and link not in self.links:
            raise TestbedError(f"unknown link {link!r}; choose one of {', '.join(self.links)}")
        return traffic.capture(self.node(node) if node else self.switch, link, path)

    def ping_stream(
        self, src_node: str, dst: str, rate_pps: int = 100, source: str | None = None
    ) -> PingStream:
        """A ping stream (not started): ``with tb.ping_stream("cn", HoA) as s: ...; s.stop()``."""
        return PingStream(self.node(src_node), dst, rate_pps, source)

    def iperf3(
        self,
        client: str,
        server: str,
        server_address: str,
        seconds: int = 2,
        udp: bool = False,
        bitrate: str | None = None,
        port: int = 5201,
    ) -> dict[str, Any]:
        """Run iperf3 from ``client`` to ``server_address`` (served in node ``server``);
        returns the client's JSON report (:func:`nfq_mip6.testbed.traffic.iperf3`)."""
        return traffic.iperf3(
            self.node(client),
            self.node(server),
            server_address,
            seconds=seconds,
            udp=udp,
            bitrate=bitrate,
            port=port,
        )

    # -- internals ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load_state(self) -> _State | None:
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        try:
            return _State.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise TestbedError(
                f"unreadable state file {self.state_path} ({exc}); inspect it, then remove it "
                f"and run `nfq-mip6 testbed down --prefix {self.prefix} --force`"
            ) from exc

    def _save_state(self, state: _State) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
        tmp.replace(self.state_path)

    def _status(self, state: _State | None) -> TestbedStatus:
        existing = list_netns() if netns_available()[0] else set()
        namespaces = {n: n in existing for n in self.namespace_names}
        radvd: dict[str, int | None] = {}
        mn_addresses: tuple[str, ...] = ()
        mnn_addresses: tuple[str, ...] = ()
        processes: dict[str, int | None] = {}
        active_host: str | None = None
        if state is not None:
            for node, pid in state.radvd_pids.items():
                radvd[node] = pid if pid_alive(pid) else None
            for what, pid in state.pids.items():
                processes[what] = pid if pid_alive(pid) else None
            if state.cluster and state.complete:
                with contextlib.suppress(TestbedError):
                    active_host = cluster_processes.active_host(self)
            if namespaces.get(self.netns_name("mn")):
                with contextlib.suppress(TestbedError):
                    mn_addresses = tuple(self.node("mn").ipv6_addresses(MN_INTERFACE, True))
            if state.nemo and namespaces.get(self.netns_name("mnn")):
                mnn = Node("mnn", self.netns_name("mnn"))
                with contextlib.suppress(TestbedError):
                    mnn_addresses = tuple(mnn.ipv6_addresses(MNN_INTERFACE, True))
        return TestbedStatus(
            prefix=self.prefix,
            state_file=str(self.state_path),
            recorded=state is not None,
            complete=bool(state and state.complete),
            namespaces=namespaces,
            radvd=radvd,
            mn_link=state.mn_link if state else None,
            mn_addresses=mn_addresses,
            nemo=bool(state and state.nemo),
            mnn_addresses=mnn_addresses,
            processes=processes,
            active_host=active_host,
        )

    def _build(self, timeout: float) -> None:
        state = _State(self.prefix, nemo=self.nemo, cluster=self.cluster_size)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._build_steps(state, timeout)
        except BaseException:
            # Leave nothing half-built behind (also on Ctrl-C).
            self._teardown(state)
            raise

    def _build_steps(self, state: _State, timeout: float) -> None:
        sw = self.netns_name(SWITCH)
        # 1. Namespaces, recorded before they exist.
        for name in self.namespace_names:
            state.namespaces.append(name)
            self._save_state(state)
            run(["ip", "netns", "add", name])
            ip("link", "set", "lo", "up", netns=name)
        # 2. Sysctls (HOWTO §4.2.1) before any interface exists, so they are inherited.
        sysctl(sw, SWITCH_SYSCTLS)
        for spec in self.nodes:
            sysctl(self.netns_name(spec.name), sysctls(spec))
        # 3. One bridge per link: no STP, no forwarding delay, no multicast snooping
        #    (a port that just joined must pass RAs, RSs and NSs at once).
        for link in self.links:
            ip("link", "add", link, "type", "bridge", "stp_state", "0", "forward_delay", "0",
               "mcast_snooping", "0", netns=sw)  # fmt: skip
            ip("link", "set", link, "up", netns=sw)
        # 4. Node interfaces: veth with the node end in the node's namespace.
        for spec in self.nodes:
            ns = self.netns_name(spec.name)
            for iface in spec.interfaces:
                port = _port_name(spec.name, iface.name)
                peer = ["peer", "name", iface.name]
                if iface.mac:
                    peer += ["address", iface.mac]
                ip("link", "add", port, "type", "veth", *peer, "netns", ns, netns=sw)
            sysctl(
                ns,
                {k: v for i in spec.interfaces for k, v in interface_sysctls(spec, i.name).items()},
            )
            for iface in spec.interfaces:
                for address in iface.addresses:
                    ip("-6", "addr", "add", address, "dev", iface.name, "nodad", netns=ns)
                ip("link", "set", iface.name, "up", netns=ns)
                ip("link", "set", _port_name(spec.name, iface.name), "master", iface.link,
                   "up", netns=sw)  # fmt: skip
            for route in spec.routes:
                dev = ("dev", route.device) if route.device else ()
                ip("-6", "route", "add", route.destination, "via", route.gateway, *dev, netns=ns)
        # 5. radvd on the HA (the home router R in a cluster) and the access routers.
        for spec in self.nodes:
            if spec.radvd_interface is not None:
                self._start_radvd(state, spec.name)
        # The NEMO bed: the HA's and the mobile router's configurations, with their key.
        if self.nemo:
            nemo.write_configs(self.nemo_dir)
        # The cluster bed: etcd members, HA agents, keepalived (nfq_mip6.testbed.cluster).
        if self.cluster_size:
            cluster_processes.start(self, state.pids, lambda: self._save_state(state))
        state.mn_link = "home"
        state.complete = True
        self._save_state(state)
        # 6. Ready when the MN has its default router from the HA's RA.
        self._wait_ready(timeout)

    def _start_radvd(self, state: _State, node: str) -> None:
        radvd = Radvd(self.run_dir / node, argv_prefix=self.node(node).argv([]))
        home_router = self.cluster_size and node == "r"
        pid = radvd.spawn(home_router_config() if home_router else radvd_config(node))
        state.radvd_pidfiles[node] = str(radvd.pidfile)
        state.radvd_pids[node] = pid
        self._save_state(state)
        try:
            radvd.wait_ready()
        except DataplaneError as exc:
            raise TestbedError(f"radvd on {node} did not start: {radvd.output()}") from exc

    def _wait_ready(self, timeout: float) -> None:
        advertiser = "r" if self.cluster_size else "ha"
        mn = self.node("mn")
        deadline = time.monotonic() + timeout
        while not mn.ipv6_routes("default"):
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"the MN got no default route from the home link's Router Advertisements "
                    f"in {timeout} s (radvd log: {self.run_dir / advertiser / 'radvd.log'})"
                )
            time.sleep(0.02)

    def _teardown(self, state: _State) -> list[str]:
        # radvd first, by pid and pid file, then anything else in our namespaces.
        pids = set(state.radvd_pids.values()) | set(state.pids.values())
        for pidfile in state.radvd_pidfiles.values():
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(Path(pidfile).read_text().split()[0]))
        terminate_pids(sorted(pids))
        existing = list_netns()
        removed: list[str] = []
        for name in state.namespaces:
            if name not in existing:
                continue
            kill_netns_processes(name)
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return removed


def unique_prefix(tag: str = "t") -> str:
    """A name prefix unique to this process: ``tag`` + the pid in base 36 (``t1x3k``)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    number, text = os.getpid(), ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return f"{tag}{text}"


def _port_name(node: str, ifname: str) -> str:
    """The switch-side end of a node interface's veth (at most 15 characters)."""
    return f"{node}-{ifname}"


def _require_root() -> None:
    if os.geteuid() != 0:
        raise TestbedError("the test bed needs root (network namespaces, bridges, radvd)")
    ok, why = netns_available()
    if not ok:
        raise TestbedError(f"`ip netns` is not usable here: {why}")
