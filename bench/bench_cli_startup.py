"""Benchmark: the CPU time of one ``nfq-mip6 cluster status`` (keepalived's ``track_script``
runs it every few seconds on every HA host, docs/cluster.md).

A stand-in agent answers the control request on a Unix socket in this process (one JSON line,
as ``nfq_mip6.control`` does), so only the client is measured. Each command runs ``--repeat``
times as its own process; the CPU time is the child's user + system time (``wait4``), the
wall time is measured around it. Same-run baselines: the interpreter alone (``python -c
pass``) and, with ``--baseline-src DIR``, the same command on another source tree (e.g.
``git archive`` of an older commit unpacked there), interleaved with this tree's runs. Prints
JSON.

    .venv/bin/python bench/bench_cli_startup.py --repeat 20 [--baseline-src /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import print_result

ROOT = Path(__file__).resolve().parents[1]
STATUS = {
    "ok": True,
    "role": "active",
    "name": "vha1",
    "endpoints": ["http://[fd00:99::1]:2379"],
    "store_reachable": True,
    "revision": 40,
    "applied_revision": 40,
    "lag": 0,
    "bindings": 1,
    "in_flight": 0,
    "held": 0,
    "last_takeover_ms": None,
    "last_takeover_steps_ms": {},
    "counters": {"commits": 3},
}


def serve(path: Path, stop: threading.Event) -> threading.Thread:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    listener.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(json.dumps(STATUS).encode() + b"\n")
        listener.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(CPU s, wall s, exit status) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        proc.stderr.close()
    return usage.ru_utime + usage.ru_stime, wall, proc.returncode


def summary(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    cpu = [s[0] * 1000 for s in samples]
    wall = [s[1] * 1000 for s in samples]
    return {
        "runs": len(samples),
        "exit_status": sorted({s[2] for s in samples}),
        "cpu_ms_median": round(statistics.median(cpu), 1),
        "cpu_ms_min": round(min(cpu), 1),
        "cpu_ms_max": round(max(cpu), 1),
        "wall_ms_median": round(statistics.median(wall), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "agent.sock"
        stop = threading.Event()
        thread = serve(sock, stop)
        command = ["cluster", "status", "--json", "--control-socket", str(sock)]
        variants: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass": ([sys.executable, "-c", "pass"], dict(os.environ)),
            "cluster status (this tree)": (
                [sys.executable, "-m", "nfq_mip6", *command],
                {**os.environ, "PYTHONPATH": str(ROOT)},
            ),
        }
        if args.baseline_src is not None:
            variants["cluster status (baseline tree)"] = (
                [sys.executable, "-m", "nfq_mip6", *command],
                {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())},
            )
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        for argv, env in variants.values():
            run_once(argv, env)  # warm the page cache and the bytecode caches
        for _ in range(args.repeat):  # interleaved: the machine's load hits all alike
            for name, (argv, env) in variants.items():
                samples[name].append(run_once(argv, env))
        stop.set()
        thread.join()
    result: dict[str, Any] = {
        "benchmark": "cli_startup",
        "command": "nfq-mip6 " + " ".join(command[:3]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": {name: summary(s) for name, s in samples.items()},
    }
    print_result(result)


if __name__ == "__main__":
    main()
