#!/usr/bin/env python3
"""Mobile Node handover benchmark on the HOWTO test bed (real kernel, real agents). JSON out.

Handover latency = link change (the test bed re-attaches the MN's link) → the first packet
of a 100 pps CN → HoA echo stream delivered at the MN through the new care-of address.
Packets lost per move = echo requests sent from that link change to the next one that never
reached the MN. Components come from the MN agent's event log (same CLOCK_MONOTONIC):

* link_layer: move command → carrier up seen by the agent (test bed + kernel);
* movement_detection: carrier up → new CoA usable (our RS, the AR's RA, SLAAC with
  optimistic DAD, so DAD itself is off the critical path);
* bu_send: CoA → BU sent (HoA off the interface, stale state purged, BU built);
* bu_to_ba: BU sent → BA received (network + HA processing);
* route_install: BA → reverse tunnel installed;
* dad_off_path: CoA usable (optimistic) → DAD finished, i.e. what optimistic DAD takes off
  the critical path (a move shorter than this never sees it finish);

The baseline measured in the same run is the steady-state echo round trip through the
tunnel and the kernel-only part of a move (link_layer + movement_detection), so the cost of
the Mobile IPv6 signalling is latency − baseline.

The first move (home → visitnet, the stream already running) is the first registration and is
reported apart, next to the later moves (``first_registration``: latency, lost packets,
longest gap in the stream): before its first BA the HA runs proxy DAD for the home address
(RFC 6275 §10.3.1), ``dad_transmits`` × RetransTimer of its home interface (RFC 4862;
``proxy_dad_wait_ms``), which the later moves (binding updates) do not wait for.

Usage (root): ``python bench/bench_handover.py [--moves 20] [--rate 100] [--dwell 1.5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import stop_process  # noqa: E402  (bench/ is the script's own folder)

HOME_ADDRESS = "fec0:106:2700::4"
ECHO_REQUEST, ECHO_REPLY = 128, 129
ICMP6_FILTER = 1
SO_TIMESTAMPNS = 35  # linux/socket.h (also SCM_TIMESTAMPNS)
TARGETS = {"median_ms": 50.0, "p95_ms": 150.0, "lost_per_move": 3}


# ---------------------------------------------------------------------------------------------
# Helpers run inside the namespaces (``python bench_handover.py _prober|_listener ...``)
# ---------------------------------------------------------------------------------------------


def _icmp_filter(*types: int) -> bytes:
    words = [0xFFFFFFFF] * 8
    for icmp_type in types:
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


_stop = False


def _on_signal(_signum: int, _frame: Any) -> None:
    global _stop
    _stop = True


def prober(destination: str, rate: float, identifier: int, out: Path) -> None:
    """CN: echo requests at ``rate`` per second; send and reply times by sequence number."""
    signal.signal(signal.SIGTERM, _on_signal)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp_filter(ECHO_REPLY))
    sock.setblocking(False)
    sent: dict[int, float] = {}
    replies: dict[int, float] = {}
    interval = 1.0 / rate
    start = time.monotonic()
    seq = 0
    while not _stop:
        now = time.monotonic()
        next_send = start + seq * interval
        if now >= next_send:
            packet = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, identifier, seq & 0xFFFF)
            with contextlib.suppress(OSError):
                sock.sendto(packet + b"nfq-mip6-bench", (destination, 0))
            sent[seq] = now
            seq += 1
            continue
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            time.sleep(min(0.001, max(0.0, next_send - now)))
            continue
        if len(data) >= 8 and data[0] == ECHO_REPLY:
            reply_id, reply_seq = struct.unpack_from("!HH", data, 4)
            if reply_id == identifier:
                # sequence numbers wrap at 2^16 (≈ 11 min at 100 pps): map to the latest
                base = (seq - 1) - (((seq - 1) - reply_seq) & 0xFFFF)
                replies.setdefault(base, time.monotonic())
    out.write_text(json.dumps({"sent": sent, "replies": replies}))


def listener(identifier: int, out: Path) -> None:
    """MN: arrival time of every echo request of the stream (after decapsulation)."""
    signal.signal(signal.SIGTERM, _on_signal)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp_filter(ECHO_REQUEST))
    sock.settimeout(0.2)
    # kernel receive timestamps: a stall of this process must not delay the arrivals
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    arrivals: dict[int, float] = {}
    epoch, last = 0, 0
    while not _stop:
        try:
            data, ancillary, _flags, _address = sock.recvmsg(2048, 256)
        except (TimeoutError, InterruptedError):
            continue
        arrived = time.monotonic()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack_from("=qq", value)
                # CLOCK_REALTIME of the kernel -> our CLOCK_MONOTONIC
                arrived = seconds + nanoseconds / 1e9 - (time.time() - time.monotonic())
        if len(data) >= 8 and data[0] == ECHO_REQUEST:
            request_id, request_seq = struct.unpack_from("!HH", data, 4)
            if request_id == identifier:
                if request_seq < last - 0x8000:  # the 16-bit sequence number wrapped
                    epoch += 1
                last = request_seq
                arrivals.setdefault(epoch << 16 | request_seq, arrived)
    out.write_text(json.dumps({"arrivals": arrivals}))


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "p95": None, "max": None, "values": []}
    return {
        "median": round(statistics.median(values), 2),
        "p95": round(_percentile(values, 0.95), 2),
        "max": round(max(values), 2),
        "values": [round(v, 2) for v in values],
    }


@contextlib.contextmanager
def _agent(node: Any, config: Path, control: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    from nfq_mip6.control import ControlError, request

    with log.open("w") as handle:
        proc = node.popen(
            [
                "env",
                f"NFQ_MIP6_AGENT__STATE_DIR={control.with_suffix('.state')}",
                sys.executable,
                "-m",
                "nfq_mip6",
                "run",
                "--config",
                str(config),
                "--control-socket",
                str(control),
                "--log-level",
                "INFO",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if request(control, {"cmd": "version"}, timeout=0.5).get("ok"):
                    break
            except ControlError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent {config.name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)


def _helper(node: Any, mode: str, *args: str) -> subprocess.Popen[str]:
    proc: subprocess.Popen[str] = node.popen(
        [sys.executable, str(Path(__file__).resolve()), mode, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc


def take_down(bed: Any, workdir: Path, keep_workdir: bool) -> None:
    """The test bed down; the work directory (agent logs, raw samples) removed unless kept."""
    bed.down()
    if keep_workdir:
        print(f"agent logs and raw samples kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def move_back_and_forth(
    bed: Any, moves: int, dwell: float, move_times: list[tuple[str, float]]
) -> float:
    """``moves`` handovers visitnet -> visitnet2 -> visitnet ..., ``dwell`` seconds apart,
    each appended to ``move_times`` with its start; returns the time after the last dwell."""
    from nfq_mip6.testbed.topology import MnLink

    for index in range(moves):
        target: MnLink = "visitnet2" if index % 2 == 0 else "visitnet"
        move_times.append((target, time.monotonic()))
        bed.move(target)
        time.sleep(dwell)
    return time.monotonic()


def _events(control: Path) -> list[tuple[float, str]]:
    from nfq_mip6.control import request

    answer = request(control, {"cmd": "stats"})
    return [(float(t), str(what)) for t, what in answer["mobile_node"]["events"]]


def _first(
    events: list[tuple[float, str]], prefix: str, after: float, before: float
) -> float | None:
    for when, what in events:
        if after <= when < before and what.startswith(prefix):
            return when
    return None


def run(
    moves: int,
    rate: float,
    dwell: float,
    pcap_dir: Path | None = None,
    keep_workdir: bool = False,
    home_retrans_timer_ms: int | None = None,
) -> dict[str, Any]:
    from nfq_mip6.control import request
    from nfq_mip6.testbed import Testbed, care_of_address, unique_prefix

    bed = Testbed(unique_prefix("bh"))
    workdir = Path(tempfile.mkdtemp(prefix="nfq-mip6-bench-"))
    ha_control, mn_control = workdir / "ha.sock", workdir / "mn.sock"
    identifier = os.getpid() & 0xFFFF
    try:
        bed.up()
        ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
        if home_retrans_timer_ms is not None:  # the HA's proxy DAD wait (RFC 4862 RetransTimer)
            ha.run(
                ["sysctl", "-qw", f"net.ipv6.neigh.eth0.retrans_time_ms={home_retrans_timer_ms}"]
            )
        with (
            _agent(ha, REPO / "deploy" / "network-mip6.conf.ha", ha_control, workdir / "ha.log"),
            _agent(mn, REPO / "deploy" / "network-mip6.conf.mn", mn_control, workdir / "mn.log"),
        ):
            captures = contextlib.ExitStack()
            if pcap_dir is not None:  # diagnostics: every link of the test bed, from the switch
                pcap_dir.mkdir(parents=True, exist_ok=True)
                for link in ("homenet", "internet", "visitnet", "visitnet2"):
                    captures.enter_context(bed.capture(link, pcap_dir / f"{link}.pcap"))
            listener_out, prober_out = workdir / "listener.json", workdir / "prober.json"
            listen = _helper(mn, "_listener", str(identifier), str(listener_out))
            time.sleep(0.3)
            probe = _helper(
                cn, "_prober", HOME_ADDRESS, str(rate), str(identifier), str(prober_out)
            )
            time.sleep(1.0)  # the stream reaches the MN at home
            # First registration (home -> visitnet, HA proxy DAD): move 0, reported apart.
            move_times: list[tuple[str, float]] = [("visitnet", time.monotonic())]
            bed.move("visitnet")
            coa = care_of_address("visitnet")
            while not any(  # registered: proxy DAD over, BA sent
                b.get("care_of_address") == coa and b.get("state") == "registered"
                for b in request(ha_control, {"cmd": "cache"}).get("bindings", [])
            ):
                if time.monotonic() - move_times[0][1] > 15:
                    raise RuntimeError("first registration did not complete")
                time.sleep(0.005)
            first_registration = time.monotonic() - move_times[0][1]
            tunnel_steady_from = time.monotonic() + 0.5
            time.sleep(max(dwell, 1.5))  # steady state through the tunnel (the baseline)
            end = move_back_and_forth(bed, moves, dwell, move_times)
            stop_process(probe)
            stop_process(listen)
            captures.close()
            events = _events(mn_control)
            ha_stats = request(ha_control, {"cmd": "stats"})
            agent_queues = {
                "ha": ha_stats.get("nfqueue"),
                "mn": request(mn_control, {"cmd": "stats"}).get("nfqueue"),
            }
            proxy_dad = {
                "transmits": ha_stats.get("home_agent", {}).get("nd_dad_transmits"),
                "wait_ms": ha_stats.get("home_agent", {}).get("nd_dad_wait_ms"),
            }
        probe_data = json.loads(prober_out.read_text())
        arrivals = {int(k): v for k, v in json.loads(listener_out.read_text())["arrivals"].items()}
        sent = {int(k): v for k, v in probe_data["sent"].items()}
        replies = {int(k): v for k, v in probe_data["replies"].items()}
    finally:
        take_down(bed, workdir, keep_workdir)

    latency: list[float] = []
    lost: list[float] = []
    unanswered: list[float] = []
    gaps_per_move: list[float] = []
    per_move: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    arrival_times = sorted(arrivals.values())
    prober_stalls = 0
    path_stalls = 0
    parts: dict[str, list[float]] = {
        "link_layer": [],
        "movement_detection": [],
        "bu_send": [],
        "bu_to_ba": [],
        "route_install": [],
        "dad_off_path": [],
    }
    for index, (_link, start) in enumerate(move_times):
        stop = move_times[index + 1][1] if index + 1 < len(move_times) else end
        measured = index > 0  # move 0 is the first registration, reported apart
        # The longest silence of the stream at the MN around the move.
        around = [t for t in arrival_times if start - 0.5 <= t < stop]
        longest_gap = max((b - a for a, b in itertools.pairwise(around)), default=stop - start)
        carrier = _first(events, "carrier up", start, stop)
        # Packets still in flight on the old link can arrive just after the move command;
        # the first delivery through the new CoA is the first one after the new link is up.
        attached = carrier if carrier is not None else start
        delivered = [t for t in arrivals.values() if attached <= t < stop]
        # On a loaded machine the prober itself can stall; such a move says nothing about
        # the handover (nothing was sent to deliver): counted apart, not in the latency.
        until = min(delivered) if delivered else stop
        send_times = sorted(t for t in sent.values() if start - 0.1 <= t <= until)
        gaps = [b - a for a, b in itertools.pairwise(send_times)]
        stalled = bool(gaps) and max(gaps) > 5.0 / rate
        # Packets sent before the move that arrive only after it were held upstream for
        # reasons unrelated to it (e.g. the home router re-resolving the HoA through the
        # HA's delayed proxy NDP): that move's latency says nothing about the handover.
        held = any(
            arrivals.get(seq, 0.0) >= attached
            for seq, t in sent.items()
            if start - 0.5 <= t < start - 0.02
        )
        window = [seq for seq, t in sent.items() if start <= t < stop - 0.05]
        move_lost = sum(1 for seq in window if seq not in arrivals)
        if not measured:
            first = {
                "link": _link,
                "latency_ms": round(1000 * (min(delivered) - start), 2) if delivered else None,
                "lost": move_lost,
                "sent": len(window),
                "longest_gap_ms": round(1000 * longest_gap, 1),
                "registration_ms": round(1000 * first_registration, 1),
                "proxy_dad_transmits": proxy_dad["transmits"],
                "proxy_dad_wait_ms": proxy_dad["wait_ms"],
                "prober_stalled": stalled,
            }
            bu = _first(events, "bu seq", start, stop)
            ba = _first(events, "ba seq", start, stop)
            if bu is not None and ba is not None:  # includes the HA's proxy DAD
                first["bu_to_ba_ms"] = round(1000 * (ba - bu), 2)
            continue
        if stalled:
            prober_stalls += 1
        elif held:
            path_stalls += 1
        elif delivered:
            latency.append(1000 * (min(delivered) - start))
        lost.append(move_lost)
        gaps_per_move.append(1000 * longest_gap)
        unanswered.append(sum(1 for seq in window if seq not in replies))
        moved_at = _first(events, "moved", start, stop)
        bu = _first(events, "bu seq", start, stop)
        ba = _first(events, "ba seq", start, stop)
        tunnel = _first(events, "tunnel installed", start, stop)
        dad_done = _first(events, "coa dad done", start, stop)
        spans: tuple[tuple[str, float | None, float | None], ...] = (
            ("link_layer", start, carrier),
            ("movement_detection", carrier, moved_at),
            ("bu_send", moved_at, bu),
            ("bu_to_ba", bu, ba),
            ("route_install", ba, tunnel),
            ("dad_off_path", moved_at, dad_done),
        )
        detail: dict[str, Any] = {
            "link": _link,
            "lost": lost[-1],
            "longest_gap_ms": round(1000 * longest_gap, 1),
            "prober_stalled": stalled,
            "path_held_before_move": held,
        }
        for name, begin, finish in spans:
            if begin is not None and finish is not None:
                parts[name].append(1000 * (finish - begin))
                detail[name] = round(1000 * (finish - begin), 2)
        if delivered:
            detail["latency"] = round(1000 * (min(delivered) - start), 2)
        per_move.append(detail)
    next_move = move_times[1][1] if len(move_times) > 1 else end
    steady = [  # through the tunnel, after the first registration, before the next move
        1000 * (replies[seq] - sent[seq])
        for seq in sent
        if seq in replies and tunnel_steady_from <= sent[seq] < next_move
    ]
    kernel_only = [
        a + b for a, b in zip(parts["link_layer"], parts["movement_detection"], strict=False)
    ]
    latency_summary = _summary(latency)
    lost_summary = _summary(lost)
    result = {
        "benchmark": "handover",
        "moves": moves,
        "rate_pps": rate,
        "dwell_s": dwell,
        "handover_latency_ms": latency_summary,
        "moves_without_delivery": moves - len(latency) - prober_stalls - path_stalls,
        "moves_with_prober_stall": prober_stalls,
        "moves_with_path_held_before_move": path_stalls,
        "lost_per_move": lost_summary,
        "unanswered_per_move": _summary(unanswered),
        "components_ms": {name: _summary(values) for name, values in parts.items()},
        "per_move": per_move,
        "first_registration": first,
        "later_moves": {
            "latency_ms_median": latency_summary["median"],
            "lost_median": lost_summary["median"],
            "lost_max": lost_summary["max"],
            "longest_gap_ms_median": _summary(gaps_per_move)["median"],
        },
        "first_registration_ms": round(1000 * first_registration, 1),
        "baseline": {
            "steady_state_rtt_ms": _summary(steady)["median"],
            "kernel_only_move_ms": _summary(kernel_only)["median"],
        },
        "nfqueue_verdicts": agent_queues,
        "move_times_monotonic": [round(t, 6) for _link, t in move_times[1:]],
        "clock_offset_realtime_minus_monotonic": round(time.time() - time.monotonic(), 6),
        "targets": TARGETS,
        "meets_targets": {
            "median": latency_summary["median"] is not None
            and latency_summary["median"] <= TARGETS["median_ms"],
            "p95": latency_summary["p95"] is not None
            and latency_summary["p95"] <= TARGETS["p95_ms"],
            "lost_per_move": lost_summary["max"] is not None
            and lost_summary["max"] <= TARGETS["lost_per_move"],
        },
    }
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_prober":
        prober(argv[1], float(argv[2]), int(argv[3]), Path(argv[4]))
        return 0
    if argv and argv[0] == "_listener":
        listener(int(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--moves", type=int, default=20, help="measured moves (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="echo requests per second")
    parser.add_argument("--dwell", type=float, default=1.5, help="seconds on each link")
    parser.add_argument("--pcap-dir", type=Path, default=None, help="capture every link here")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep agent logs and raw samples"
    )
    parser.add_argument(
        "--home-retrans-timer-ms",
        type=int,
        default=None,
        help="RetransTimer of the HA's home interface (default: the test bed's 200 ms; "
        "1000 is the RFC 4861 default), i.e. the first registration's proxy DAD wait",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(json.dumps({"benchmark": "handover", "error": "needs root (network namespaces)"}))
        return 2
    result = run(
        args.moves,
        args.rate,
        args.dwell,
        args.pcap_dir,
        args.keep_workdir,
        args.home_retrans_timer_ms,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
