"""Benchmark: throughput CN -> HoA through the Home Agent's kernel tunnel vs plain routing.

Three private namespaces: ``c`` (CN 2001:db8:c::2) — ``h`` (HA: 2001:db8:c::1, 2001:db8:b::1,
home link 2001:db8:a::1/64) — ``m`` (MN: CoA 2001:db8:b::2, HoA 2001:db8:a::100 on lo). The HA
side is the agent's own data plane (:class:`NetlinkDataplane`: seg6 encap.red to the CoA,
End.DX6 for the reverse tunnel) plus ``rules/ha.rules`` (MSS clamp; queue rules with
``--queue-bypass`` since no agent listens); the MN side is plain ``ip`` (End.DT6 decap,
encap.red reverse tunnel from the HoA). iperf3 TCP and UDP, alternating rounds:
``tunnel`` = CN -> HoA (bidirectional tunnel), ``plain`` = CN -> CoA (the baseline, routed
by the same HA). Prints JSON with medians and ratios. Needs root.

    .venv/bin/python bench/bench_tunnel.py --seconds 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from nfq_mip6.dataplane.netlink import NetlinkDataplane
from nfq_mip6.io.iptables import RuleSet, rules_path

TAG = f"{os.getpid()}"
NS_C, NS_H, NS_M = f"nfqbt-c-{TAG}", f"nfqbt-h-{TAG}", f"nfqbt-m-{TAG}"
CN = IPv6Address("2001:db8:c::2")
HA = IPv6Address("2001:db8:a::1")
HOME = IPv6Network("2001:db8:a::/64")
HOA = IPv6Address("2001:db8:a::100")
COA = IPv6Address("2001:db8:b::2")


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True)


def build() -> None:
    for ns in (NS_C, NS_H, NS_M):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    ip(NS_C, "link", "add", "c0", "type", "veth", "peer", "name", "hc0", "netns", NS_H)
    ip(NS_M, "link", "add", "m0", "type", "veth", "peer", "name", "hm0", "netns", NS_H)
    ip(NS_H, "link", "add", "hh0", "type", "veth", "peer", "name", "hh1")
    for ns, devs in (
        (NS_C, ("lo", "c0")),
        (NS_M, ("lo", "m0")),
        (NS_H, ("lo", "hc0", "hm0", "hh0", "hh1")),
    ):
        for dev in devs:
            ip(ns, "link", "set", dev, "up")
    ip(NS_C, "-6", "addr", "add", f"{CN}/64", "dev", "c0", "nodad")
    ip(NS_C, "-6", "route", "add", "default", "via", "2001:db8:c::1")
    ip(NS_H, "-6", "addr", "add", "2001:db8:c::1/64", "dev", "hc0", "nodad")
    ip(NS_H, "-6", "addr", "add", "2001:db8:b::1/64", "dev", "hm0", "nodad")
    ip(NS_H, "-6", "addr", "add", f"{HA}/64", "dev", "hh0", "nodad")
    ip(NS_M, "-6", "addr", "add", f"{COA}/64", "dev", "m0", "nodad")
    ip(NS_M, "-6", "addr", "add", f"{HOA}/128", "dev", "lo", "nodad")
    ip(NS_M, "-6", "route", "add", "default", "via", "2001:db8:b::1")
    # The MN's side of the tunnel (what the MN runtime installs).
    ip(NS_M, "-6", "rule", "add", "pref", "100", "to", f"{COA}/128", "ipproto", "41",
       "lookup", "100")  # fmt: skip
    ip(NS_M, "-6", "rule", "add", "pref", "1000", "lookup", "local")
    ip(NS_M, "-6", "rule", "del", "pref", "0", "lookup", "local")
    ip(NS_M, "-6", "route", "add", f"{COA}/128", "encap", "seg6local", "action", "End.DT6",
       "table", "local", "dev", "m0", "table", "100")  # fmt: skip
    ip(NS_M, "-6", "rule", "add", "pref", "50", "from", str(HOA), "lookup", "200")
    ip(NS_M, "-6", "route", "add", "default", "encap", "seg6", "mode", "encap.red", "segs",
       str(HA), "dev", "m0", "table", "200")  # fmt: skip


def ha_dataplane() -> tuple[NetlinkDataplane, RuleSet]:
    from pyroute2 import netns

    netns.setns(NS_H)
    dataplane = NetlinkDataplane("hh0", HA, HOME)
    dataplane.setup()
    dataplane.install_tunnel(HOA, COA)
    mss = 1500 - 40 - 40 - 20
    rules = RuleSet.from_file(
        rules_path("ha.rules"),
        {"queue": 9, "bypass": " --queue-bypass", "ha_address": HA, "home_prefix": HOME,
         "ha_anycast": "2001:db8:a::fdff:ffff:ffff:fffe", "mss": mss, "mss_above": mss + 1,
         "seg6_only": "", "interface": "hh0", "nd_mark": "0x6275"},
    )  # fmt: skip
    rules.load()
    return dataplane, rules


def iperf3(server_address: IPv6Address, seconds: int, udp: bool, port: int) -> dict[str, Any]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", NS_M, "iperf3", "-s", "-1", "-B", str(server_address),
         "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.3)
        argv = ["ip", "netns", "exec", NS_C, "iperf3", "-c", str(server_address), "-p",
                str(port), "-t", str(seconds), "-J"]  # fmt: skip
        if udp:
            argv += ["-u", "-b", "0", "-l", "1200"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        report: dict[str, Any] = json.loads(done.stdout or "{}")
        if "error" in report or done.returncode != 0:
            raise RuntimeError(f"iperf3: {report.get('error', done.stderr)}")
        return report
    finally:
        server.kill()
        server.wait()


def mbps(report: dict[str, Any], udp: bool) -> float:
    end = report["end"]
    if udp:
        return (
            float(end["sum"]["bits_per_second"])
            * (1 - float(end["sum"].get("lost_percent", 0.0)) / 100)
            / 1e6
        )
    return float(end["sum_received"]["bits_per_second"]) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[float]] = {
        "tcp_plain": [], "tcp_tunnel": [], "udp_plain": [], "udp_tunnel": []
    }  # fmt: skip
    try:
        build()
        dataplane, rules = ha_dataplane()
        port = 5400
        for _ in range(args.rounds):
            for udp in (False, True):
                for path, address in (("plain", COA), ("tunnel", HOA)):
                    port += 1
                    report = iperf3(address, args.seconds, udp, port)
                    results[f"{'udp' if udp else 'tcp'}_{path}"].append(mbps(report, udp))
        rules.unload()
        dataplane.shutdown(flush=True)
    finally:
        for ns in (NS_C, NS_H, NS_M):
            subprocess.run(["ip", "netns", "del", ns], check=False)
    med = {key: round(statistics.median(values), 1) for key, values in results.items()}
    out = {
        "benchmark": "tunnel_throughput",
        "seconds": args.seconds,
        "rounds": args.rounds,
        "mbit_per_s_median": med,
        "runs_mbit_per_s": {k: [round(v, 1) for v in vs] for k, vs in results.items()},
        "ratio_tcp": round(med["tcp_tunnel"] / med["tcp_plain"], 3),
        "ratio_udp": round(med["udp_tunnel"] / med["udp_plain"], 3),
        "target_ratio_tcp": 0.97,
    }
    out["meets_target"] = out["ratio_tcp"] >= 0.97
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
