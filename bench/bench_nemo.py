#!/usr/bin/env python3
"""NEMO Basic Support (RFC 3963) benchmark on the NEMO test bed, real agents. JSON out.

On ``nfq-mip6 testbed up --nemo`` (the MN is a mobile router with the LAN fec0:106:2800::/64
and a mobile network node, MNN, on it), with the HA and the router run from the test bed's
configurations:

1. **Throughput** (router on visitnet, registered): iperf3 TCP CN -> MNN through the HA and
   the bidirectional tunnel (``tunnel``), alternating with the same flow routed *plainly over
   the same hops* (``plain``, the baseline): CN -> R -> HA -> R -> AR -> router -> MNN and
   back MNN -> router -> AR -> R -> HA -> R -> CN, by policy rules (priority 5, tables
   250/251) that take the packets around the tunnel at each hop for the plain rounds only.
2. **Userspace in steady state**: the NFQUEUE counters of the HA's and the router's
   namespaces (``/proc/net/netfilter/nfnetlink_queue``: ``id_sequence`` counts every packet
   ever queued, ``queue_dropped``/``user_dropped`` the losses) read before and after each
   tunnel round; the difference is what crossed userspace during the flow.
3. **Whole-network handover** at 100 pps: two echo streams run at once from the CN, one to
   the MNN (the mobile network) and one to the router's home address (the MN's own
   handover, the same-run baseline), while the router moves visitnet2 <-> visitnet. Per
   move and stream: the longest silence at the receiver around the move (the loss gap),
   the packets lost, and when the stream came back. Phases, each on a reset bed:

   * ``router``: the MN as a mobile router (the test bed's ``mn.toml``), both streams;
   * ``mn``: the same MN, HA and key as a plain mobile node (no ``mobile_router``), the HoA
     stream only: the MN handover of bench_handover.py, in the same run.

The HA clamps the TCP MSS toward and from the registered prefixes (a full-sized segment
does not fit the tunnel, and the HA's Packet Too Big would go to the HA itself,
docs/kernel-notes.md §7); the plain rounds pass the HA's PREROUTING clamp too. With
``--extra-mss-clamp`` every round runs twice more with the bench's own MSS 1400 clamps on both
paths (at the HA toward the prefix, at the router from its LAN), the same MSS either way.
The ratio is given from the medians and as the median of the rounds' own ratios (adjacent
rounds, which shares the machine's slower load changes).

Usage (root): ``python bench/bench_nemo.py [--moves 10] [--rate 100] [--dwell 1.5]
[--seconds 3] [--rounds 3] [--phases router,mn] [--extra-mss-clamp]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_handover as handover  # noqa: E402  (the prober/listener helpers, the agent runner)
from harness import stop_process  # noqa: E402

TARGETS = {"throughput_ratio_tcp": 0.97, "userspace_packets": 0, "median_gap_ms": 50.0}
PHASES = ("router", "mn")
PLAIN_PREF = "5"


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def nfqueue_counters(node: Any) -> dict[str, int]:
    """Sum over the queues of a namespace: packets ever queued and dropped."""
    text = node.run(["cat", "/proc/net/netfilter/nfnetlink_queue"], check=False).stdout
    totals = {"queued": 0, "queue_dropped": 0, "user_dropped": 0, "queues": 0}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        totals["queues"] += 1
        totals["queue_dropped"] += int(fields[5])
        totals["user_dropped"] += int(fields[6])
        totals["queued"] += int(fields[7])
    return totals


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in ("queued", "queue_dropped", "user_dropped")}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def _wait_registered(control: Path, coa: str, timeout: float = 15.0) -> float:
    from nfq_mip6.control import request

    started = time.monotonic()
    while True:
        bindings = request(control, {"cmd": "cache"}).get("bindings", [])
        if any(
            b.get("care_of_address") == coa and b.get("state") == "registered" for b in bindings
        ):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"no registration of {coa} in {timeout} s: {bindings}")
        time.sleep(0.01)


@contextlib.contextmanager
def plain_same_hops(bed: Any, coa: str) -> Iterator[None]:
    """Route CN <-> MNN over the tunnel's hops without the tunnel (the baseline)."""
    from nfq_mip6.testbed.topology import (
        AR_INTERNET_ADDRESS,
        AR_VISIT_ADDRESS,
        HA_ADDRESS,
        MOBILE_NETWORK_PREFIX,
        R_HOME_ADDRESS,
        R_INTERNET_ADDRESS,
    )

    mnp = MOBILE_NETWORK_PREFIX
    steps: dict[str, list[list[str]]] = {
        # the HA sends the CN's packets back to R (instead of into the tunnel)
        "ha": [
            ["route", "replace", mnp, "via", R_HOME_ADDRESS, "table", "250"],
            ["rule", "add", "pref", PLAIN_PREF, "to", mnp, "lookup", "250"],
        ],
        # R: from the home link on to AR; the MNN's answers from AR to the HA
        "r": [
            ["route", "replace", mnp, "via", AR_INTERNET_ADDRESS, "table", "250"],
            ["rule", "add", "pref", PLAIN_PREF, "iif", "eth1", "to", mnp, "lookup", "250"],
            ["route", "replace", "default", "via", HA_ADDRESS, "table", "251"],
            ["rule", "add", "pref", PLAIN_PREF, "iif", "eth0", "from", mnp, "lookup", "251"],
        ],
        # AR: to the router's care-of address; the answers up to R
        "ar": [
            ["route", "replace", mnp, "via", coa, "table", "250"],
            ["rule", "add", "pref", PLAIN_PREF, "to", mnp, "lookup", "250"],
            ["route", "replace", "default", "via", R_INTERNET_ADDRESS, "table", "251"],
            ["rule", "add", "pref", PLAIN_PREF, "iif", "eth1", "from", mnp, "lookup", "251"],
        ],
        # the router: the MNN's packets to AR (instead of into the reverse tunnel)
        "mn": [
            ["route", "replace", "default", "via", AR_VISIT_ADDRESS, "table", "250"],
            ["rule", "add", "pref", PLAIN_PREF, "from", mnp, "lookup", "250"],
        ],
    }
    try:
        for node, commands in steps.items():
            for command in commands:
                bed.node(node).run(["ip", "-6", *command])
        yield
    finally:
        for node in steps:
            target = bed.node(node)
            while (
                target.run(["ip", "-6", "rule", "del", "pref", PLAIN_PREF], check=False).returncode
                == 0
            ):
                pass
            for table in ("250", "251"):
                target.run(["ip", "-6", "route", "flush", "table", table], check=False)


# TCP MSS clamps like the HA's toward the home prefix (docs/kernel-notes.md §7), for the mobile
# network: the CN's SYNs toward the prefix at the HA, the mobile network node's SYNs at the
# router's LAN, both before the encapsulation at route input (mangle PREROUTING). 1400 =
# 1500 - 40 (outer IPv6) - 40 (inner IPv6) - 20 (TCP).
MSS_CLAMP = "1400"


@contextlib.contextmanager
def mss_clamps(bed: Any) -> Iterator[None]:
    from nfq_mip6.testbed.topology import MOBILE_NETWORK_PREFIX, MR_LAN_INTERFACE

    syn = ["-p", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS", "--set-mss", MSS_CLAMP]
    rules = {
        "ha": ["PREROUTING", "-d", MOBILE_NETWORK_PREFIX, *syn],
        "mn": ["PREROUTING", "-i", MR_LAN_INTERFACE, "-s", MOBILE_NETWORK_PREFIX, *syn],
    }
    for node, rule in rules.items():
        bed.node(node).run(["ip6tables", "-w", "-t", "mangle", "-I", *rule])
    try:
        yield
    finally:
        for node, rule in rules.items():
            bed.node(node).run(["ip6tables", "-w", "-t", "mangle", "-D", *rule], check=False)


def _mbps(report: dict[str, Any]) -> float:
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e6


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def throughput(
    bed: Any, coa: str, seconds: int, rounds: int, extra_clamp: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    from nfq_mip6.testbed.topology import MNN_ADDRESS

    paths: tuple[str, ...] = ("tunnel", "plain")
    if extra_clamp:
        paths += ("tunnel_mss_clamped", "plain_mss_clamped")
    runs: dict[str, list[float]] = {path: [] for path in paths}
    queued = {"ha": {"queued": 0, "queue_dropped": 0, "user_dropped": 0}}
    queued["mn"] = dict(queued["ha"])
    port = 5300
    for _ in range(rounds):
        for path in paths:
            port += 1
            with contextlib.ExitStack() as stack:
                if path.endswith("mss_clamped"):
                    stack.enter_context(mss_clamps(bed))
                if path.startswith("plain"):
                    stack.enter_context(plain_same_hops(bed, coa))
                before = {n: nfqueue_counters(bed.node(n)) for n in ("ha", "mn")}
                report = bed.iperf3("cn", "mnn", MNN_ADDRESS, seconds=seconds, port=port)
                if path.startswith("tunnel"):
                    for n in ("ha", "mn"):
                        delta = _delta(nfqueue_counters(bed.node(n)), before[n])
                        for key, value in delta.items():
                            queued[n][key] += value
            runs[path].append(_mbps(report))
    med = {k: round(statistics.median(v), 1) for k, v in runs.items()}

    def ratio(tunnel: str, plain: str) -> float | None:
        return round(med[tunnel] / med[plain], 3) if med[plain] else None

    def paired(tunnel: str, plain: str) -> float | None:  # round by round, then the median
        pairs = [t / b for t, b in zip(runs[tunnel], runs[plain], strict=True) if b]
        return round(statistics.median(pairs), 3) if pairs else None

    result = {
        "seconds": seconds,
        "rounds": rounds,
        "mbit_per_s_median": med,
        "runs_mbit_per_s": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
        # as the agents set the path up: medians, and the median of the rounds' ratios
        "ratio_tcp": ratio("tunnel", "plain"),
        "ratio_tcp_paired_median": paired("tunnel", "plain"),
    }
    if extra_clamp:  # with the bench's clamps at the HA and the router (MSS 1400 on both)
        result["ratio_tcp_mss_clamped"] = ratio("tunnel_mss_clamped", "plain_mss_clamped")
    userspace = {
        "during": "the tunnel rounds",
        "queued_to_userspace": queued,
        "total": sum(v["queued"] for v in queued.values()),
        "queues_present": {n: nfqueue_counters(bed.node(n))["queues"] for n in ("ha", "mn")},
    }
    return result, userspace


def _analyse(
    sent: dict[int, float],
    arrivals: dict[int, float],
    move_times: list[tuple[str, float]],
    end: float,
) -> dict[str, Any]:
    """Per move after the first registration: the loss gap (the longest silence at the
    receiver from 0.5 s before the move to the next move), the packets sent in that time
    that never arrived, and when the stream came back (the arrival ending the gap)."""
    arrival_times = sorted(arrivals.values())
    gaps: list[float] = []
    lost: list[float] = []
    back: list[float] = []
    for index, (_link, start) in enumerate(move_times):
        if index == 0:
            continue  # the first registration (HA proxy DAD) is not a handover
        stop = move_times[index + 1][1] if index + 1 < len(move_times) else end
        around = [t for t in arrival_times if start - 0.5 <= t < stop]
        pairs = list(itertools.pairwise(around))
        if pairs:
            first, last = max(pairs, key=lambda pair: pair[1] - pair[0])
            gaps.append(1000 * (last - first))
            back.append(1000 * (last - start))
        else:
            gaps.append(1000 * (stop - start))
        window = [seq for seq, t in sent.items() if start <= t < stop - 0.05]
        lost.append(float(sum(1 for seq in window if seq not in arrivals)))

    def summary(values: list[float]) -> dict[str, Any]:
        return {
            "median": _median(values),
            "max": round(max(values), 1) if values else None,
            "values": [round(v, 1) for v in values],
        }

    return {
        "loss_gap_ms": summary(gaps),
        "lost_per_move": summary(lost),
        "back_after_move_ms": summary(back),
        "moves_without_delivery": len(gaps) - len(back),
    }


def handover_phase(
    bed: Any, phase: str, workdir: Path, moves: int, rate: float, dwell: float,
    seconds: int, rounds: int, extra_clamp: bool = False,
) -> dict[str, Any]:  # fmt: skip
    from nfq_mip6.testbed import care_of_address
    from nfq_mip6.testbed.topology import (
        MN_HOME_ADDRESS,
        MNN_ADDRESS,
        MOBILE_NETWORK_PREFIX,
    )

    router = phase != "mn"
    mn_config = bed.nemo_config("mn")
    if not router:  # the same MN, key and HA, without the mobile router lines
        text = mn_config.read_text()
        keep = [
            line for line in text.splitlines()
            if not line.startswith(("mobile_router", "prefixes", "prefix_mode", "mobile_network"))
        ]  # fmt: skip
        mn_config = workdir / "mn-plain.toml"
        mn_config.write_text("\n".join(keep) + "\n")
    tag = phase.replace("-", "_")
    ha_control, mn_control = workdir / f"{tag}-ha.sock", workdir / f"{tag}-mn.sock"
    result: dict[str, Any] = {"phase": phase}
    ha_log, mn_log = workdir / f"{tag}-ha.log", workdir / f"{tag}-mn.log"
    with (
        handover._agent(bed.node("ha"), bed.nemo_config("ha"), ha_control, ha_log),
        handover._agent(bed.node("mn"), mn_config, mn_control, mn_log),
    ):
        if router:  # the node autoconfigures from the router agent's RAs on its LAN
            bed.wait_for_address(MOBILE_NETWORK_PREFIX, node="mnn", timeout=20.0)
        sysctl_keys = ["all.forwarding", "eth0.accept_ra", "eth0.force_forwarding"]
        values = (
            bed.node("mn")
            .run(["sysctl", "-n", *(f"net.ipv6.conf.{k}" for k in sysctl_keys)])
            .stdout.split()
        )
        result["router_sysctls"] = dict(zip(sysctl_keys, values, strict=False))
        streams = {"hoa": (MN_HOME_ADDRESS, "mn")}
        if router:
            streams["mnn"] = (MNN_ADDRESS, "mnn")
        helpers = []
        files: dict[str, tuple[Path, Path, int]] = {}
        for index, (name, (_address, node)) in enumerate(streams.items()):
            identifier = (os.getpid() + 17 * index + 101 * PHASES.index(phase)) & 0xFFFF
            listener_out, prober_out = (
                workdir / f"{tag}-{name}-l.json",
                workdir / f"{tag}-{name}-p.json",
            )
            files[name] = (listener_out, prober_out, identifier)
            helpers.append(
                handover._helper(bed.node(node), "_listener", str(identifier), str(listener_out))
            )
        time.sleep(0.3)
        for name, (address, _node) in streams.items():
            _l, prober_out, identifier = files[name]
            helpers.append(
                handover._helper(
                    bed.node("cn"), "_prober", address, str(rate), str(identifier), str(prober_out)
                )
            )
        time.sleep(1.0)
        move_times: list[tuple[str, float]] = [("visitnet", time.monotonic())]
        bed.move("visitnet")
        result["first_registration_ms"] = round(
            1000 * _wait_registered(ha_control, care_of_address("visitnet")), 1
        )
        time.sleep(max(dwell, 1.5))
        end = handover.move_back_and_forth(bed, moves, dwell, move_times)
        for helper in helpers:
            stop_process(helper)
        values = (
            bed.node("mn")
            .run(["sysctl", "-n", *(f"net.ipv6.conf.{k}" for k in sysctl_keys)])
            .stdout.split()
        )
        result["router_sysctls_after_moves"] = dict(zip(sysctl_keys, values, strict=False))
        if router and phase == "router" and rounds > 0:
            coa = care_of_address(move_times[-1][0])  # type: ignore[arg-type]
            _wait_registered(ha_control, coa)
            time.sleep(0.5)
            result["throughput"], result["userspace"] = throughput(
                bed, coa, seconds, rounds, extra_clamp
            )
    for name, (listener_out, prober_out, _identifier) in files.items():
        arrivals = {int(k): v for k, v in json.loads(listener_out.read_text())["arrivals"].items()}
        sent = {int(k): v for k, v in json.loads(prober_out.read_text())["sent"].items()}
        result[name] = _analyse(sent, arrivals, move_times, end)
    return result


def run(
    moves: int, rate: float, dwell: float, seconds: int, rounds: int, phases: list[str],
    keep_workdir: bool = False, extra_clamp: bool = False,
) -> dict[str, Any]:  # fmt: skip
    from nfq_mip6.testbed import Testbed, unique_prefix

    bed = Testbed(unique_prefix("bn"), nemo=True)
    workdir = Path(tempfile.mkdtemp(prefix="nfq-mip6-bench-nemo-"))
    results: dict[str, Any] = {}
    try:
        bed.up()
        for phase in phases:
            bed.reset()  # every node as after up(), the router back home
            results[phase] = handover_phase(
                bed, phase, workdir, moves, rate, dwell, seconds, rounds, extra_clamp
            )
    finally:
        handover.take_down(bed, workdir, keep_workdir)
    out: dict[str, Any] = {
        "benchmark": "nemo",
        "moves": moves,
        "rate_pps": rate,
        "dwell_s": dwell,
        "phases": results,
        "targets": TARGETS,
    }
    summary: dict[str, Any] = {}
    router = results.get("router")
    if router is not None and "throughput" in router:
        summary["throughput_ratio_tcp"] = router["throughput"]["ratio_tcp"]
        summary["throughput_ratio_tcp_paired_median"] = router["throughput"][
            "ratio_tcp_paired_median"
        ]
        if "ratio_tcp_mss_clamped" in router["throughput"]:
            summary["throughput_ratio_tcp_mss_clamped"] = router["throughput"][
                "ratio_tcp_mss_clamped"
            ]
        summary["userspace_packets"] = router["userspace"]["total"]
    for phase, result in results.items():
        for stream in ("mnn", "hoa"):
            if stream in result:
                summary[f"{phase}.{stream}.median_gap_ms"] = result[stream]["loss_gap_ms"]["median"]
    out["summary"] = summary
    meets: dict[str, bool] = {}
    if "throughput_ratio_tcp" in summary:
        meets["throughput"] = (summary["throughput_ratio_tcp"] or 0.0) >= TARGETS[
            "throughput_ratio_tcp"
        ]
        meets["userspace"] = summary["userspace_packets"] == TARGETS["userspace_packets"]
    gap = summary.get("router.mnn.median_gap_ms")
    if gap is not None:
        meets["handover_gap"] = gap <= TARGETS["median_gap_ms"]
        # the network no slower than the router's own handover, and than a plain MN's
        # (within one packet interval)
        for own in ("router.hoa", "mn.hoa"):
            baseline = summary.get(f"{own}.median_gap_ms")
            if baseline is not None:
                meets[f"network_vs_{own}"] = gap <= baseline + 1000.0 / rate
    out["meets_targets"] = meets
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_prober":
        handover.prober(argv[1], float(argv[2]), int(argv[3]), Path(argv[4]))
        return 0
    if argv and argv[0] == "_listener":
        handover.listener(int(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--moves", type=int, default=10, help="measured moves per phase")
    parser.add_argument("--rate", type=float, default=100.0, help="echo requests per second")
    parser.add_argument("--dwell", type=float, default=1.5, help="seconds on each link")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per iperf3 round")
    parser.add_argument("--rounds", type=int, default=3, help="iperf3 rounds (0: none)")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated phases")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and samples")
    parser.add_argument(
        "--extra-mss-clamp",
        action="store_true",
        help="also run each round with the bench's own MSS 1400 clamps on both paths",
    )
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    if os.geteuid() != 0:
        print(json.dumps({"benchmark": "nemo", "error": "needs root (network namespaces)"}))
        return 2
    result = run(
        args.moves, args.rate, args.dwell, args.seconds, args.rounds, phases,
        args.keep_workdir, args.extra_mss_clamp,
    )  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
