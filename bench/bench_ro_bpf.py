"""Route optimization in tc BPF against plain CN <-> CoA traffic, in the same run.

Three namespaces (``nfq_mip6.testbed.ro_lab``: CN ── router ── MN, no home network); the
BPF adapter installs the binding HoA -> CoA at both ends. Interleaved rounds of:

* ``base``: the CN talks to the MN's care-of address (no MIPv6 at all);
* ``bpf``: the CN talks to the MN's home address, RH2 / HAO inserted and removed in tc.

Per mode: iperf3 TCP CN -> MN and MN -> CN (``-R``), UDP 64-octet packets received per
second, ping RTT (200 x 5 ms). Also bpf(2) map updates / deletes per second from Python
(pre-packed keys) and the programs' counters. Prints one JSON object; the ratios compare
bpf with base from the same rounds. Needs root, iperf3, the built ``ro.bpf.o``.

    sudo .venv/bin/python bench/bench_ro_bpf.py [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nfq_mip6.testbed.ro_lab import COA, HOA, RoLab  # noqa: E402

MAP_BENCH = """
import json, os, time
from nfq_mip6.dataplane.ro_bpf import BpfRouteOptimization
n = int(os.environ["N"])
fast_path = BpfRouteOptimization("cn")
fast_path.start()
m = fast_path.bind_map
keys = [i.to_bytes(16, "big") + bytes(16) for i in range(n)]
value = bytes(16)
t = time.perf_counter()
for k in keys:
    m.update(k, value)
updates = n / (time.perf_counter() - t)
t = time.perf_counter()
for k in keys:
    m.delete(k)
deletes = n / (time.perf_counter() - t)
print(json.dumps({"updates_per_s": round(updates), "deletes_per_s": round(deletes)}))
fast_path.stop(flush=False)
"""


def iperf(lab: RoLab, target: str, port: int, seconds: int, *extra: str) -> dict[str, Any]:
    done = lab.sh(
        lab.cn, "iperf3", "-c", target, "-p", str(port), "-t", str(seconds), "-J", *extra,
        check=False,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout or "{}")
    if "error" in result or "end" not in result:
        raise RuntimeError(f"iperf3 {target} {extra}: {result.get('error', done.stderr)}")
    return result


def measure(lab: RoLab, target: str, port: int, seconds: int) -> dict[str, float]:
    tcp = iperf(lab, target, port, seconds)["end"]["sum_received"]["bits_per_second"]
    tcp_r = iperf(lab, target, port, seconds, "-R")["end"]["sum_received"]["bits_per_second"]
    udp = iperf(lab, target, port, seconds, "-u", "-l", "64", "-b", "0")["end"]["sum"]
    udp_pps = (udp["packets"] - udp["lost_packets"]) / udp["seconds"]
    ping = lab.sh(lab.cn, "ping", "-c", "200", "-i", "0.005", "-q", target, check=False).stdout
    rtt_line = next(line for line in ping.splitlines() if "min/avg" in line)
    rtt_avg = float(rtt_line.split("=")[1].split("/")[1])
    return {
        "tcp_cn_to_mn_gbps": tcp / 1e9,
        "tcp_mn_to_cn_gbps": tcp_r / 1e9,
        "udp64_rx_kpps": udp_pps / 1e3,
        "ping_avg_ms": rtt_avg,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--map-entries", type=int, default=50000)
    args = parser.parse_args()

    lab = RoLab()
    servers: list[subprocess.Popen[bytes]] = []
    try:
        lab.up()
        lab.bind()
        # One server per address: each answers from the address it is bound to (the MN's
        # per-CN route has `src HoA`, which a server bound to :: would use for CoA traffic).
        for address, port in ((COA, 5201), (HOA, 5202)):
            servers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", lab.mn, "iperf3", "-s", "-B", address, "-p", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        rounds: dict[str, list[dict[str, float]]] = {"base": [], "bpf": []}
        for _ in range(args.rounds):
            rounds["base"].append(measure(lab, COA, 5201, args.seconds))
            rounds["bpf"].append(measure(lab, HOA, 5202, args.seconds))
        medians = {
            mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for mode, runs in rounds.items()
        }
        ratios = {
            key: round(medians["bpf"][key] / medians["base"][key], 3) for key in medians["base"]
        }
        done = lab.sh(
            lab.cn, "env", f"N={args.map_entries}", sys.executable, "-c", MAP_BENCH, check=False
        )
        maps = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        counters = {role: lab.adapter(role, "keep")["counters"] for role in ("cn", "mn")}
        targets = {
            "tcp_cn_to_mn>=0.90": ratios["tcp_cn_to_mn_gbps"] >= 0.90,
            "tcp_mn_to_cn>=0.90": ratios["tcp_mn_to_cn_gbps"] >= 0.90,
            "udp64>=0.85": ratios["udp64_rx_kpps"] >= 0.85,
            "rtt<=1.2": ratios["ping_avg_ms"] <= 1.2,
            "map_updates>=50k/s": maps.get("updates_per_s", 0) >= 50000,
        }
        print(
            json.dumps(
                {
                    "rounds": rounds,
                    "median": medians,
                    "ratio_bpf_over_base": ratios,
                    "map": maps,
                    "bpf_counters": counters,
                    "targets_met": targets,
                    "seconds": args.seconds,
                },
                indent=2,
            )
        )
    finally:
        for server in servers:
            server.kill()
        lab.down()


if __name__ == "__main__":
    main()
