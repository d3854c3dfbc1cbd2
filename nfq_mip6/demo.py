"""``nfq-mip6 demo``: the HOWTO's walk-through (§4-§5.6) on the network-namespace test bed.

It builds the test bed, starts the Home Agent and Mobile Node agents when this checkout
has them (``nfq-mip6 run``), then makes the MN travel visitnet -> visitnet2 -> home while
the CN pings the home address, and prints at each step what the HOWTO shows: the MN's
addresses, ``mipdiag -c`` on the HA, ``mipdiag -l`` on the MN and the ping results. When
the agents are missing it still shows the topology, the Router Advertisements and SLAAC
on every link, and says which parts are missing. Everything is torn down at the end, also
on Ctrl-C or SIGTERM.

With ``--nemo`` the MN is a mobile router carrying a LAN (RFC 3963, NEMO Basic Support; the
test bed of ``nfq-mip6 testbed up --nemo``): the CN pings the mobile network node behind
it instead of the home address, and ``mipdiag -c`` on the HA shows the registered Mobile
Network Prefix with the binding (docs/nemo.md).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

from nfq_mip6.testbed import (
    MnLink,
    Node,
    PingResult,
    Testbed,
    TestbedError,
    care_of_address,
    cluster_processes,
)
from nfq_mip6.testbed.cluster import cluster_hosts
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    HOME_PREFIX,
    MN_HOME_ADDRESS,
    MN_INTERFACE,
    MNN_ADDRESS,
    MNN_INTERFACE,
    MOBILE_NETWORK_PREFIX,
)

DEFAULT_PREFIX: Final = "demo"
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEPLOY: Final = REPO_ROOT / "deploy"

TOPOLOGY: Final = """\
                 homenet fec0:106:2700::/64
      HA ::2 ────────┬──────── MN ::4 (home address, eth0 00:90:7d:f3:03:1a)
                     │
                  R ::1
                  R fec0:106:2300::2
                     │  internet fec0:106:2300::/64
      ┌──────────────┼───────────────────┐
   AR ::1         CN ::10             AR2 ::3
   AR fec0:106:1100::1                AR2 fec0:106:1000::1
      │ visitnet fec0:106:1100::/64      │ visitnet2 fec0:106:1000::/64
      └─ (MN travels here)               └─ (and here)"""

NEMO_TOPOLOGY: Final = """\

   with --nemo (RFC 3963), the MN is a mobile router and carries its LAN along:
      MN lan0 fec0:106:2800::1
         │ mobilenet fec0:106:2800::/64 (the Mobile Network Prefix)
      MNN fec0:106:2800:0:290:7dff:fef3:32b (mobile network node, eth0 00:90:7d:f3:03:2b)"""


@dataclass(frozen=True, slots=True)
class StepResult:
    link: MnLink
    care_of_address: str | None
    registered: str  # "yes", "no", "n/a"
    ping: PingResult | None


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the HOWTO walk-through: MN travels visitnet -> visitnet2 -> home, CN pings it",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="test bed name prefix")
    parser.add_argument(
        "--agents",
        choices=("auto", "on", "off"),
        default="auto",
        help="start the HA and MN agents: auto (when installed), on (fail if missing), off",
    )
    parser.add_argument(
        "--ha-config",
        type=Path,
        default=None,
        help="HA agent configuration (default: the HOWTO's, deploy/network-mip6.conf.ha; "
        "with --nemo the NEMO test bed's ha.toml)",
    )
    parser.add_argument(
        "--mn-config",
        type=Path,
        default=None,
        help="MN agent configuration (default: the HOWTO's, deploy/network-mip6.conf.mn; "
        "with --nemo the NEMO test bed's mn.toml or mn-implicit.toml)",
    )
    parser.add_argument(
        "--nemo",
        action="store_true",
        help="NEMO Basic Support (RFC 3963): the MN is a mobile router with a LAN, the CN "
        "pings the mobile network node behind it (docs/nemo.md)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="a virtual HA on three hosts (etcd, keepalived VRRPv3 and an HA agent each, "
        "docs/cluster.md): the MN registers from visitnet, then the active host dies under "
        "the CN's ping and the outage is printed",
    )
    parser.add_argument(
        "--prefix-mode",
        choices=("explicit", "implicit"),
        default="explicit",
        help="with --nemo: the router lists its prefix in its Binding Updates (explicit) "
        "or the HA takes it from its configuration (implicit), RFC 3963 §5.2",
    )
    parser.add_argument(
        "--dwell", type=float, default=2.0, help="seconds to keep pinging on each link"
    )
    parser.add_argument(
        "--ping-rate", type=_ping_rate, default=50, help="CN echo requests per second (1-500)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="leave the test bed up at the end (agents stop)"
    )
    parser.set_defaults(func=run_demo)


def _ping_rate(text: str) -> int:
    try:
        rate = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= rate <= 500:
        raise argparse.ArgumentTypeError("must be within 1..500")
    return rate


# ---------------------------------------------------------------------------------------
# Output


def _say(text: str = "", out: IO[str] | None = None) -> None:
    print(text, file=out or sys.stdout, flush=True)


def _banner(title: str) -> None:
    _say()
    _say(f"==== {title} " + "=" * max(0, 74 - len(title)))


def _shell(node: str, shown: str, output: str) -> None:
    """Print a command as the HOWTO does (``# cmd`` on a node) and its output."""
    _say(f"{node}# {shown}")
    for line in output.rstrip("\n").splitlines():
        _say(f"    {line}")


# ---------------------------------------------------------------------------------------
# Agents


def agents_available() -> tuple[bool, str]:
    """Whether ``nfq-mip6 run`` and the HA and MN runtimes are in this checkout."""
    try:
        agent = importlib.import_module("nfq_mip6.agent")
    except ImportError as exc:
        return False, f"nfq_mip6.agent cannot be imported ({exc})"
    if not hasattr(agent, "register"):
        return False, "nfq_mip6.agent has no `nfq-mip6 run` yet"
    try:
        runtimes = importlib.import_module("nfq_mip6.runtime")
        classes: dict[str, tuple[str, str]] = runtimes.RUNTIME_CLASSES
    except (ImportError, AttributeError) as exc:
        return False, f"no role runtimes ({exc})"
    missing = [
        f"{role} ({classes[role][0]})"
        for role in ("ha", "mn")
        if role not in classes or importlib.util.find_spec(classes[role][0]) is None
    ]
    if missing:
        return False, f"role runtime(s) not written yet: {', '.join(missing)}"
    return True, ""


@dataclass(slots=True)
class AgentProcess:
    role: str
    node: Node
    socket: Path
    log: Path
    proc: subprocess.Popen[str]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stats(self) -> dict[str, Any]:
        """The agent's ``stats`` answer ({} when it does not answer)."""
        from nfq_mip6.control import ControlError, request

        try:
            return request(self.socket, {"cmd": "stats"}, timeout=2.0)
        except (ControlError, OSError):
            return {}

    def mipdiag(self, flag: str) -> str:
        argv = [sys.executable, "-c", _MIPDIAG, flag, "--control-socket", str(self.socket)]
        done = self.node.run(argv, check=False, timeout=10.0)
        return (done.stdout + done.stderr).rstrip() or f"(mipdiag {flag}: no output)"


_MIPDIAG: Final = "import sys; from nfq_mip6.cli import mipdiag_main; sys.exit(mipdiag_main())"


def start_agent(bed: Testbed, role: str, config: Path, work: Path) -> AgentProcess:
    node = bed.node(role)
    sock = work / f"{role}.sock"
    log = work / f"{role}-agent.log"
    state_dir = work / f"{role}-state"
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "NFQ_MIP6_AGENT__INTERFACE": MN_INTERFACE if role == "mn" else "eth0",
        "NFQ_MIP6_AGENT__STATE_DIR": str(state_dir),
    }
    if role == "ha":
        env |= {"NFQ_MIP6_HA__ADDRESS": HA_ADDRESS, "NFQ_MIP6_HA__HOME_PREFIX": HOME_PREFIX}
    argv = [sys.executable, "-m", "nfq_mip6", "run", "--config", str(config)]
    argv += ["--control-socket", str(sock)]
    shown = " ".join(f"{k}={v}" for k, v in env.items())
    _say(f"{role}# {shown} nfq-mip6 run --config {config} --control-socket {sock}")
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            node.argv(["env", *(f"{k}={v}" for k, v in env.items()), *argv]),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    agent = AgentProcess(role, node, sock, log, proc)
    deadline = time.monotonic() + 10.0
    while not sock.exists():
        if not agent.alive():
            raise TestbedError(
                f"the {role.upper()} agent exited with {proc.returncode}:\n{agent.log_tail()}"
            )
        if time.monotonic() > deadline:
            agent.stop()
            raise TestbedError(f"the {role.upper()} agent opened no control socket in 10 s")
        time.sleep(0.05)
    return agent


# ---------------------------------------------------------------------------------------
# The walk-through


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    # Ctrl-C interrupts even when started in the background by a shell that ignores SIGINT.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def run_demo(args: argparse.Namespace) -> int:
    with _sigterm_as_interrupt():
        try:
            bed = Testbed(args.prefix, nemo=args.nemo, cluster=3 if args.cluster else 0)
        except TestbedError as exc:
            _say(f"nfq-mip6 demo: {exc}", sys.stderr)
            return 2
        agents: list[AgentProcess] = []
        try:
            if args.cluster:
                return _cluster_walk_through(bed, args, agents)
            return _walk_through(bed, args, agents)
        except TestbedError as exc:
            _say(f"nfq-mip6 demo: {exc}", sys.stderr)
            return 1
        except KeyboardInterrupt:
            _say("\ninterrupted: tearing down", sys.stderr)
            return 130
        finally:
            for agent in agents:
                agent.stop()
            if args.keep:
                _say(f"\ntest bed {bed.prefix!r} left up (nfq-mip6 testbed down --prefix ...)")
            else:
                with contextlib.suppress(TestbedError):
                    bed.down()
                    _say(f"\ntest bed {bed.prefix!r} removed")


def _walk_through(bed: Testbed, args: argparse.Namespace, agents: list[AgentProcess]) -> int:
    _banner("Linux Mobile IPv6 HOWTO test bed (§4.1), in network namespaces")
    _say(TOPOLOGY + (NEMO_TOPOLOGY if args.nemo else ""))
    started = time.monotonic()
    bed.up()
    _say(f"\ntest bed {bed.prefix!r} up in {time.monotonic() - started:.2f} s:")
    for spec in bed.nodes:
        addresses = ", ".join(f"{i.name} {a}" for i in spec.interfaces for a in i.addresses)
        _say(f"  {spec.name.upper():<4} netns {bed.netns_name(spec.name):<14} {addresses}")

    _banner("§4.2.4 radvd on the HA: Router Advertisements with the Home Agent flag")
    _shell("mn", f"rdisc6 {MN_INTERFACE}", bed.solicit_router())

    want_agents = args.agents != "off"
    available, why = agents_available()
    if args.agents == "on" and not available:
        raise TestbedError(f"--agents on, but {why}")
    if want_agents and available:
        _banner("§4.2.2 start Mobile IPv6 on the HA and the MN")
        work = bed.run_dir / "demo"
        work.mkdir(parents=True, exist_ok=True)
        ha_config, mn_config = _agent_configs(bed, args)
        try:
            agents.append(start_agent(bed, "ha", ha_config, work))
            agents.append(start_agent(bed, "mn", mn_config, work))
            _say("Starting Mobile IPv6: OK")
        except TestbedError as exc:
            if args.agents == "on":
                raise
            for agent in agents:
                agent.stop()
            agents.clear()
            last_line = (str(exc).strip().splitlines() or ["?"])[-1]
            why = f"the agents did not start: {last_line}"
            _say(f"Starting Mobile IPv6: FAILED\n{exc}")
            _say("(continuing without agents; --agents on makes this an error)")
    elif want_agents:
        _banner("agents: not available in this checkout")
        _say(f"MISSING: {why}.")
        _say("The demo shows the test bed, the RAs and SLAAC on each link; binding updates,")
        _say("mipdiag output and pings to the home address while away need the agents.")
    else:
        _say("\n(agents off: --agents off)")
    ha = next((a for a in agents if a.role == "ha"), None)
    mn = next((a for a in agents if a.role == "mn"), None)

    _banner("at home (§4.2.4): MN addresses")
    _shell("mn", f"ip -6 addr show dev {MN_INTERFACE}", _addresses(bed))
    if args.nemo:
        _banner("RFC 3963: the mobile network behind the MN (the router forwards for it)")
        with contextlib.suppress(TestbedError):
            bed.wait_for_address(MOBILE_NETWORK_PREFIX, node="mnn", ifname=MNN_INTERFACE)
        _shell("mnn", f"ip -6 addr show dev {MNN_INTERFACE}", _addresses(bed, "mnn"))
    _show_mipdiag(ha, mn)

    results: list[StepResult] = []
    steps: tuple[tuple[MnLink, str], ...] = (
        ("visitnet", "§5.2"),
        ("visitnet2", "§5.5"),
        ("home", "§5.6"),
    )
    for link, section in steps:
        results.append(_travel(bed, link, section, args, ha, mn))

    if mn is not None and ha is not None:
        _banner("§5.3 statistics after the journey")
        _shell("mn", "mipdiag -s", mn.mipdiag("-s"))
        _shell("ha", "mipdiag -s", ha.mipdiag("-s"))

    _banner("summary")
    target = "mobile network node" if args.nemo else "home address"
    _say(f"{'link':<10} {'care-of address':<36} {'bound':<9} CN -> {target}")
    for r in results:
        ping = r.ping.summary() if r.ping else "-"
        _say(f"{r.link:<10} {r.care_of_address or '-':<36} {r.registered:<9} {ping}")
    if ha is not None and results:
        _say(_first_move_note(results[0].link, ha.stats().get("home_agent", {})))
    if not agents:
        _say(f"\nMISSING: the HA and MN agents ({why or 'not started'}).")
        _say("Without them the CN's pings cannot reach the home address while the MN is away,")
        _say("and there is no binding to show.")
    for agent in agents:
        if not agent.alive():
            _say(f"\nthe {agent.role.upper()} agent died:\n{agent.log_tail()}")
            return 1
    return 0


CLUSTER_TOPOLOGY: Final = """\
   ha1 ::11 ─┐   the HA address fec0:106:2700::2 and the virtual MAC 00:00:5e:00:02:33
   ha2 ::12 ─┤   live on vrrp.51 of the active host only (keepalived, VRRPv3)
   ha3 ::13 ─┴── homenet ── R ── internet ── CN, AR ── visitnet (the MN, away)
   ha1..ha3 eth1 fd00:99::1..3 ── mgmt (one etcd member each; the bindings live there)"""


def _host_mipdiag(bed: Testbed, host: str) -> str:
    sock = cluster_processes.control_socket(bed, host)
    argv = [sys.executable, "-c", _MIPDIAG, "-c", "--control-socket", str(sock)]
    done = bed.node(host).run(argv, check=False, timeout=15.0)
    return (done.stdout + done.stderr).rstrip() or "(mipdiag -c: no output)"


def _host_holds(bed: Testbed, host: str, coa: str) -> bool:
    return coa in _host_mipdiag(bed, host)


def _cluster_walk_through(
    bed: Testbed, args: argparse.Namespace, agents: list[AgentProcess]
) -> int:
    """``--cluster``: register with the virtual HA, kill the active host under the CN's
    ping, print the outage and who took over (docs/cluster.md)."""
    _banner("A virtual HA on three hosts: etcd, keepalived (VRRPv3) and an HA agent each")
    _say(CLUSTER_TOPOLOGY)
    started = time.monotonic()
    bed.up(timeout=30.0)
    _say(f"\ntest bed {bed.prefix!r} up in {time.monotonic() - started:.2f} s:")
    _say(bed.status().format())
    hosts = [h.name for h in cluster_hosts(bed.cluster_size)]
    active = cluster_processes.active_host(bed) or "ha1"
    work = bed.run_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    mn = start_agent(bed, "mn", cluster_processes.mn_config_path(bed), work)
    agents.append(mn)

    _banner("The MN travels to visitnet and registers with the virtual HA")
    coa = care_of_address("visitnet")
    _say("mn# iwconfig eth0 essid visitnet    (nfq-mip6 testbed move visitnet)")
    bed.move("visitnet")
    for host in hosts:  # the active host and both standbys hold the binding
        holds = functools.partial(_host_holds, bed, host, coa)
        bed.wait_until(holds, 20.0, f"the binding on {host}")
        _shell(host, "mipdiag -c", _host_mipdiag(bed, host))

    _banner(f"{active} (the active host) dies while the CN pings the home address")
    stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=args.ping_rate).start()
    new_active: str | None = None
    try:
        time.sleep(args.dwell)
        _say(f"{active}# (power off: agent, keepalived and etcd member killed, links down)")
        killed = time.time()
        cluster_processes.kill_host(bed, active)
        bed.wait_until(
            lambda: cluster_processes.active_host(bed) not in (None, active), 10.0, "a new master"
        )
        new_active = cluster_processes.active_host(bed)
        master_at = cluster_processes.became_master_at(bed, new_active or "")
        after = f"{master_at - killed:.2f} s" if master_at else "?"
        _say(f"(keepalived on {new_active} became master {after} after the kill)")
        time.sleep(args.dwell)
    finally:
        result = stream.stop()
    _say(f"cn# ping6 -i {1 / args.ping_rate:g} {MN_HOME_ADDRESS}    (across the failure)")
    _say(f"    {result.summary()}")
    assert new_active is not None
    # The MN's next Binding Update (its refresh) goes to the new active host.
    sequence = _last_bu_sequence(mn)

    def answered() -> bool:
        events = mn.stats().get("mobile_node", {}).get("events", [])
        return any(str(what) == f"ba seq={sequence} status=0" for _t, what in events)

    with contextlib.suppress(TestbedError):
        bed.wait_until(answered, 20.0, f"the BA for the MN's BU {sequence}")
    _shell(new_active, "mipdiag -c", _host_mipdiag(bed, new_active))
    _shell("mn", "mipdiag -l", mn.mipdiag("-l"))
    _banner("Summary")
    _say(f"  {active} died; {new_active} took over the HA address and the virtual MAC")
    _say(f"  CN -> HoA across the failure: {result.summary()}")
    _say(
        f"  the MN's BU {sequence} (sequence + 1): "
        + ("answered 0 by the new active host, no new registration" if answered() else
           "not answered yet")
    )  # fmt: skip
    return 0


def _last_bu_sequence(mn: AgentProcess) -> int:
    """The sequence number of the MN's last BU sent so far, + 1 if its BA arrived."""
    events = [str(what) for _t, what in mn.stats().get("mobile_node", {}).get("events", [])]
    sent = [int(e.split()[1].removeprefix("seq=")) for e in events if e.startswith("bu seq=")]
    last = max(sent, default=0)
    return last + 1 if any(e.startswith(f"ba seq={last} ") for e in events) else last


def _travel(
    bed: Testbed,
    link: MnLink,
    section: str,
    args: argparse.Namespace,
    ha: AgentProcess | None,
    mn: AgentProcess | None,
) -> StepResult:
    _banner(f"{section} travel to {link}")
    target = MNN_ADDRESS if args.nemo else MN_HOME_ADDRESS
    stream = bed.ping_stream("cn", target, rate_pps=args.ping_rate).start()
    try:
        _say(f"mn# iwconfig eth0 essid {'homenet' if link == 'home' else link}"
             f"    (nfq-mip6 testbed move {link})")  # fmt: skip
        moved = time.monotonic()
        bed.move(link)
        expected = care_of_address(link)
        coa: str | None = None
        try:
            bed.wait_until(
                lambda: expected in bed.node("mn").ipv6_addresses(MN_INTERFACE), 10.0,
                f"the MN's address {expected}",
            )  # fmt: skip
            coa = expected if link != "home" else None
            _say(f"(SLAAC address {expected} after {time.monotonic() - moved:.2f} s)")
        except TestbedError as exc:
            _say(f"(no SLAAC address: {exc})")
        # The addresses are shown once the agents have acted on the move (the HoA leaves
        # eth0 while away and comes back at home, §11.5.5), not just after SLAAC.
        registered = _wait_binding(ha, coa) if ha is not None else "n/a"
        _shell("mn", f"ip -6 addr show dev {MN_INTERFACE}", _addresses(bed))
        if ha is None:
            rdisc = bed.solicit_router()
            _shell("mn", f"rdisc6 {MN_INTERFACE}", _rdisc6_summary(rdisc))
        remaining = args.dwell - (time.monotonic() - moved)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        result = stream.stop()
    _show_mipdiag(ha, mn)
    _say(f"cn# ping6 -i {1 / args.ping_rate:g} {target}    (during the move)")
    _say(f"    {result.summary()}")
    return StepResult(link, coa, registered, result)


def _first_move_note(link: str, home_agent: dict[str, Any]) -> str:
    """One line: why the first move loses more than the later ones (RFC 6275 §10.3.1)."""
    transmits, wait_ms = home_agent.get("nd_dad_transmits"), home_agent.get("nd_dad_wait_ms")
    dad = f"{transmits} probe(s), {wait_ms} ms here" if wait_ms is not None else "1 s by default"
    return (
        f"{link} is the first registration: before its first BA the HA runs proxy DAD for the "
        f"home address on the home link (RFC 6275 §10.3.1; {dad}: the home interface's "
        "dad_transmits x RetransTimer); later moves only update the binding."
    )


def _wait_binding(ha: AgentProcess, coa: str | None, timeout: float = 5.0) -> str:
    """Poll the HA's binding cache until it maps the HoA to ``coa`` (or is empty at home)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cache = ha.mipdiag("-c")
        if coa is not None and coa in cache:
            return "yes"
        if coa is None and MN_HOME_ADDRESS not in cache:
            return "no (home)"
        time.sleep(0.1)
    return "no"


def _show_mipdiag(ha: AgentProcess | None, mn: AgentProcess | None) -> None:
    if ha is not None:
        _shell("ha", "mipdiag -c", ha.mipdiag("-c"))
    if mn is not None:
        _shell("mn", "mipdiag -l", mn.mipdiag("-l"))
    if ha is None and mn is None:
        _say("ha# mipdiag -c    MISSING (no agents)")
        _say("mn# mipdiag -l    MISSING (no agents)")


def _agent_configs(bed: Testbed, args: argparse.Namespace) -> tuple[Path, Path]:
    """The HA's and the MN's configuration files: as given, else the HOWTO's legacy files,
    or with ``--nemo`` the ones the NEMO test bed wrote (a mobile router and its HA)."""
    if args.nemo:
        mn_name = "mn" if args.prefix_mode == "explicit" else "mn-implicit"
        ha_default, mn_default = bed.nemo_config("ha"), bed.nemo_config(mn_name)
    else:
        ha_default = DEPLOY / "network-mip6.conf.ha"
        mn_default = DEPLOY / "network-mip6.conf.mn"
    return args.ha_config or ha_default, args.mn_config or mn_default


def _addresses(bed: Testbed, node: str = "mn") -> str:
    ifname = MNN_INTERFACE if node == "mnn" else MN_INTERFACE
    done = bed.node(node).run(["ip", "-6", "addr", "show", "dev", ifname], check=False)
    return "\n".join(
        line.strip() for line in done.stdout.splitlines() if line.strip().startswith("inet6")
    )


def _rdisc6_summary(text: str) -> str:
    keep = ("Mobile home agent", "Prefix", "Router lifetime", "from ")
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(keep)]
    return "\n".join(lines) or "(no Router Advertisement)"
