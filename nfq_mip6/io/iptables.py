"""Load and unload the agent's ip6tables rule fragments (``rules/*.rules``).

A fragment is ``ip6tables-restore --noflush`` input that only creates agent-owned chains
(``NFQMIP6-…``) and hooks them into built-in chains with ``-I <BUILTIN> -j NFQMIP6-…``.
Placeholders in braces (``{queue}``, ``{bypass}``, ``{ha_address}``, …) are filled by
:meth:`RuleSet.render`. Unloading deletes exactly the hooks and chains the fragment declares,
so nothing else in the tables is touched. Works with ip6tables-legacy and ip6tables-nft
(whichever ``ip6tables`` is); do not load both backends in one netns.
:func:`ip6tables_backend` says which one this ``ip6tables`` is (``nfq-mip6 stats`` shows it
with the chains loaded, :meth:`RuleSet.chain_names`).
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path

from nfq_mip6.errors import DataplaneError

__all__ = [
    "DestinationRules",
    "RuleSet",
    "RulesError",
    "TunnelCounters",
    "all_chain_counters",
    "backend_of_version",
    "chain_counters",
    "home_agent_tunnel_counters",
    "ip6tables_backend",
    "mobile_node_tunnel_counters",
    "rules_path",
    "run_ip6tables",
    "unspecified_source_drop",
]

log = logging.getLogger(__name__)

_HOOK = re.compile(r"^-[AI]\s+(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING)\s+(?:\d+\s+)?(.*)$")


class RulesError(DataplaneError):
    """ip6tables refused a rule fragment (the message carries ip6tables' own error)."""


@functools.cache
def ip6tables_backend() -> tuple[str, str]:
    """``(backend, version line)`` of the ``ip6tables`` on PATH: backend ``"nft"``
    (ip6tables-nft: the rules live in nftables tables ``ip6 raw``/``mangle``/``filter``),
    ``"legacy"`` (the x_tables of ip6tables-legacy) or ``"unknown"``. Asked once per process."""
    try:
        result = subprocess.run(
            ["ip6tables", "--version"], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "unknown", f"ip6tables --version: {exc}"
    version = (result.stdout.strip() or result.stderr.strip()).splitlines()[:1]
    line = version[0] if version else ""
    return backend_of_version(line), line


def backend_of_version(line: str) -> str:
    """``nft`` for ``ip6tables v1.8.9 (nf_tables)``, ``legacy`` for ``… (legacy)``, else
    ``unknown`` (ip6tables before 1.8 names no backend: it is legacy, but we do not guess)."""
    if "(nf_tables)" in line:
        return "nft"
    if "(legacy)" in line:
        return "legacy"
    return "unknown"


def rules_path(name: str) -> Path:
    """``rules/<name>`` of the source tree (or of an installed copy next to the package)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "rules" / name, package / "rules" / name):
        if candidate.exists():
            return candidate
    raise RulesError(f"rule file {name!r} not found (looked in {package.parent / 'rules'})")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A rendered fragment: its text and the (table, chain, hook spec) it declares."""

    name: str
    text: str

    @classmethod
    def from_file(cls, path: Path, params: Mapping[str, object]) -> RuleSet:
        return cls(path.name, cls.render(path.read_text(), params))

    @staticmethod
    def render(template: str, params: Mapping[str, object]) -> str:
        lines = []
        for line in template.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                rendered = stripped.format(**params)
            except KeyError as exc:
                raise RulesError(f"rule template needs a value for {exc}") from None
            if not rendered.startswith("#"):  # a placeholder may turn a rule off ("#")
                lines.append(rendered)
        return "\n".join(lines) + "\n"

    def chains(self) -> list[tuple[str, str]]:
        """(table, chain) of every agent-owned chain the fragment creates."""
        table = ""
        found: list[tuple[str, str]] = []
        for line in self.text.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                found.append((table, line[1:].split()[0]))
        return found

    def chain_names(self) -> list[str]:
        """``table/chain`` of every agent-owned chain, e.g. ``raw/NFQMIP6-HA-PRE``."""
        return [f"{table}/{chain}" for table, chain in self.chains()]

    def hooks(self) -> list[tuple[str, str, str]]:
        """(table, built-in chain, rule spec) of every jump into an agent-owned chain."""
        table = ""
        found: list[tuple[str, str, str]] = []
        for line in self.text.splitlines():
            if line.startswith("*"):
                table = line[1:]
                continue
            match = _HOOK.match(line)
            if match:
                found.append((table, match.group(1), match.group(2)))
        return found

    def load(self) -> None:
        """Remove leftovers of a previous run, then ``ip6tables-restore --noflush``."""
        self.unload()
        result = subprocess.run(
            ["ip6tables-restore", "--noflush", "--wait"],
            input=self.text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RulesError(f"ip6tables-restore {self.name}: {result.stderr.strip()}")
        backend, version = ip6tables_backend()
        log.info("loaded %s (%d chains) with %s (%s backend)", self.name, len(self.chains()),
                 version or "ip6tables", backend)  # fmt: skip

    def unload(self) -> None:
        """Delete our hooks (every copy) and chains; missing ones are fine."""
        for table, builtin, spec in self.hooks():
            while run_ip6tables(["-t", table, "-D", builtin, *spec.split()], quiet=True) == 0:
                pass
        for table, chain in self.chains():
            if run_ip6tables(["-t", table, "-F", chain], quiet=True) == 0:
                run_ip6tables(["-t", table, "-X", chain], quiet=True)


class DestinationRules:
    """One ``-d <address>/128 -j NFQUEUE`` rule per address in an agent-owned mangle chain
    (the per-binding rules of the CN's ``NFQMIP6-CN-OUT`` and the HA's ``NFQMIP6-HA-OUT``;
    the chain itself comes and goes with the role's fragment).

    ``run`` executes one ip6tables command (arguments after ``ip6tables --wait``), ``restore``
    feeds ``ip6tables-restore --noflush``; both return the exit code (tests replace them). A
    refused rule is logged and reported as ``False``, never raised.
    """

    def __init__(
        self,
        chain: str,
        queue_num: int,
        *,
        bypass: bool,
        run: Callable[[list[str]], int] | None = None,
        restore: Callable[[str], int] | None = None,
    ) -> None:
        self.chain = chain
        self._target = ["-j", "NFQUEUE", "--queue-num", str(queue_num)]
        if bypass:
            self._target.append("--queue-bypass")
        self._run = run or run_ip6tables
        self._restore = restore or _restore
        self.installed: set[IPv6Address] = set()

    def _spec(self, address: IPv6Address) -> list[str]:
        return ["-d", f"{address}/128", *self._target]

    def add(self, address: IPv6Address) -> bool:
        if address in self.installed:
            return True
        code = self._run(["-t", "mangle", "-A", self.chain, *self._spec(address)])
        if code == 0:
            self.installed.add(address)
        return code == 0

    def add_many(self, addresses: Iterable[IPv6Address]) -> bool:
        """Many addresses with one ``ip6tables-restore`` (a restart with restored bindings)."""
        new = [address for address in dict.fromkeys(addresses) if address not in self.installed]
        if not new:
            return True
        lines = [" ".join(["-A", self.chain, *self._spec(address)]) for address in new]
        if self._restore("*mangle\n" + "\n".join(lines) + "\nCOMMIT\n") != 0:
            return False
        self.installed.update(new)
        return True

    def remove(self, address: IPv6Address) -> bool:
        if address not in self.installed:
            return True
        self.installed.discard(address)
        return self._run(["-t", "mangle", "-D", self.chain, *self._spec(address)]) == 0

    def forget(self) -> None:
        """Forget the rules without touching the kernel (they went with the chain)."""
        self.installed.clear()


def unspecified_source_drop(interface: str) -> list[str]:
    """The ip6tables command line (to run in the namespace that owns ``interface``) that
    drops every packet leaving ``interface`` from the unspecified address ``::``."""
    return ["ip6tables", "-w", "-I", "OUTPUT", "-o", interface, "-s", "::/128", "-j", "DROP"]


def run_ip6tables(args: Sequence[str], *, stdin: str | None = None, quiet: bool = False) -> int:
    """The one way the agent runs ip6tables: ``ip6tables --wait <args>``, or with ``stdin``
    ``ip6tables-restore --noflush --wait`` reading it. Returns the exit code; a failure is
    logged as a warning with ip6tables' own message unless ``quiet`` (probes such as
    "delete until nothing is left")."""
    if stdin is None:
        command = ["ip6tables", "--wait", *args]
    else:
        command = ["ip6tables-restore", "--noflush", "--wait"]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0 and not quiet:
        log.warning("%s: %s", " ".join(command), result.stderr.strip())
    return result.returncode


def _restore(text: str) -> int:
    return run_ip6tables((), stdin=text)


def chain_counters(table: str, chain: str) -> list[tuple[int, int, str]]:
    """(packets, bytes, rule text) for each rule of ``chain`` (``ip6tables -L -v -x -n``)."""
    result = subprocess.run(
        ["ip6tables", "--wait", "-t", table, "-L", chain, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
        check=False,
    )
    rows: list[tuple[int, int, str]] = []
    if result.returncode != 0:
        return rows
    for line in result.stdout.splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2]))
    return rows


def all_chain_counters(prefix: str = "NFQMIP6-") -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Packet counters of every rule in chains named ``prefix…``, from one
    ``ip6tables-save -c``: {(table, chain): [(packets, rule text), …]} in rule order."""
    result = subprocess.run(["ip6tables-save", "-c"], capture_output=True, text=True, check=False)
    found: dict[tuple[str, str], list[tuple[int, str]]] = {}
    if result.returncode != 0:
        return found
    table = ""
    for line in result.stdout.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        match = _COUNTED.match(line)
        if match and match.group(3).startswith(prefix):
            found.setdefault((table, match.group(3)), []).append(
                (int(match.group(1)), match.group(4))
            )
    return found


_COUNTED = re.compile(r"^\[(\d+):(\d+)\]\s+-A\s+(\S+)\s*(.*)$")


@dataclass(frozen=True, slots=True)
class TunnelCounters:
    """What the counting rules of a role's fragment say about the kernel's tunnelling (the
    kernel fast path does the work; MIPL counted it in its own tunnel code).

    Attributes:
        encapsulations: packets the kernel put into a tunnel.
        decapsulations: tunnelled packets that arrived and were accepted.
        rejected: tunnelled packets dropped (HA: a reverse tunnel from an unbound source).
    """

    encapsulations: int
    decapsulations: int
    rejected: int = 0


def home_agent_tunnel_counters() -> TunnelCounters:
    """The counting rules of ``rules/ha.rules``, from one ``ip6tables-save -c``."""
    counters = all_chain_counters()

    def ipv6_in_ipv6(table: str, chain: str) -> int:
        return sum(
            n
            for n, rule in counters.get((table, chain), [])
            if "-j " not in rule and "-p ipv6" in rule
        )

    rejected = sum(
        n for n, rule in counters.get(("filter", "NFQMIP6-HA-IN"), []) if "-j DROP" in rule
    )
    arrived = ipv6_in_ipv6("mangle", "NFQMIP6-HA-MSS")
    return TunnelCounters(
        encapsulations=ipv6_in_ipv6("filter", "NFQMIP6-HA-FWD"),
        decapsulations=max(0, arrived - rejected),
        rejected=rejected,
    )


def mobile_node_tunnel_counters() -> TunnelCounters:
    """The counting rules of ``rules/mn.rules``."""
    return TunnelCounters(
        encapsulations=sum(n for n, _bytes, _text in chain_counters("mangle", "NFQMIP6-MN-POST")),
        decapsulations=sum(
            n
            for n, _bytes, text in chain_counters("raw", "NFQMIP6-MN-PRE")
            if "NFQUEUE" not in text
        ),
    )
