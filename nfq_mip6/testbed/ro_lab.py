"""A three-namespace route-optimization lab: CN ── router ── MN, no home network.

::

    CN 2001:db8:c::2/64 (cn0) ── rc0 2001:db8:c::1 [router] rm0 2001:db8:f::1 ── (mn0) MN
                                                                   CoA 2001:db8:f::2/64
                                                                   HoA 2001:db8:a::100 on lo

The router has no route to the home prefix, so the CN reaches the HoA only through route
optimization. Used by the BPF data-path tests and ``bench/bench_ro_bpf.py``; needs root.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Final

from nfq_mip6.testbed.testbed import unique_prefix

__all__ = ["CN", "COA", "HOA", "RoLab"]

CN: Final = "2001:db8:c::2"
COA: Final = "2001:db8:f::2"
HOA: Final = "2001:db8:a::100"

_ADAPTER: Final = """
import json, sys
from ipaddress import IPv6Address as A
from nfq_mip6.dataplane.ro_bpf import BpfRouteOptimization
role, dev, action = sys.argv[1:4]
fast_path = BpfRouteOptimization(role, interfaces=(dev,))
how = fast_path.start()
if action == "install":
    fast_path.install(A(sys.argv[4]), A(sys.argv[5]), A(sys.argv[6]))
elif action == "reconcile":
    wanted = json.loads(sys.argv[4])
    fast_path.reconcile({(A(h), A(p)): A(c) for h, p, c in wanted})
bindings = {f"{h} {p}": str(c) for (h, p), c in fast_path.bindings().items()}
print(json.dumps({"start": how, "bindings": bindings, "counters": fast_path.counters()}))
fast_path.stop(flush=action == "stop")
"""


class RoLab:
    """The namespaces (``cn``, ``router``, ``mn`` attribute names) and a few commands."""

    def __init__(self, prefix: str | None = None) -> None:
        prefix = prefix or unique_prefix("rb")
        self.cn, self.router, self.mn = (f"{prefix}-cn", f"{prefix}-r", f"{prefix}-mn")

    def sh(self, ns: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check
        )

    def up(self) -> None:
        for ns in (self.cn, self.router, self.mn):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.sh(ns, "ip", "link", "set", "lo", "up")
        for dev, ns, peer in (("cn0", self.cn, "rc0"), ("mn0", self.mn, "rm0")):
            subprocess.run(
                ["ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", peer,
                 "netns", self.router],
                check=True,
            )  # fmt: skip
        self.sh(self.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for ns, dev, address in (
            (self.cn, "cn0", f"{CN}/64"),
            (self.router, "rc0", "2001:db8:c::1/64"),
            (self.router, "rm0", "2001:db8:f::1/64"),
            (self.mn, "mn0", f"{COA}/64"),
        ):
            self.sh(ns, "ip", "addr", "add", address, "dev", dev, "nodad")
            self.sh(ns, "ip", "link", "set", dev, "up")
        self.sh(self.mn, "ip", "addr", "add", f"{HOA}/128", "dev", "lo")
        self.sh(self.cn, "ip", "-6", "route", "add", "default", "via", "2001:db8:c::1")
        self.sh(self.mn, "ip", "-6", "route", "add", "default", "via", "2001:db8:f::1")
        # resolve the neighbours before the first measurement
        self.sh(self.cn, "ping", "-c1", "-W2", "2001:db8:c::1", check=False)
        self.sh(self.mn, "ping", "-c1", "-W2", "2001:db8:f::1", check=False)

    def down(self) -> None:
        for ns in (self.cn, self.router, self.mn):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def adapter(self, role: str, action: str, *args: str) -> dict[str, Any]:
        """Run the BPF adapter once in the role's namespace (``install``, ``reconcile``,
        ``keep`` = just adopt and report, ``stop`` = clean stop); its JSON report."""
        ns, dev = (self.cn, "cn0") if role == "cn" else (self.mn, "mn0")
        done = self.sh(ns, sys.executable, "-c", _ADAPTER, role, dev, action, *args, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"adapter {role} {action}: {done.stderr.strip()}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def bind(self) -> None:
        """The RO binding HoA -> CoA with the CN at both ends."""
        self.adapter("cn", "install", HOA, CN, COA)
        self.adapter("mn", "install", HOA, CN, COA)

    def ping(self, ns: str, target: str, *extra: str) -> bool:
        done = self.sh(ns, "ping", "-c2", "-i0.2", "-W2", *extra, target, check=False)
        return done.returncode == 0
