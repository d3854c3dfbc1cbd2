"""What the benchmarks' harnesses share: an etcd server, the agent processes they start and
stop, and the JSON they print."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from tests.support.processes import terminate


def start_etcd(
    data_dir: Path,
    client_port: int,
    peer_port: int,
    netns: str | None = None,
    also_listen: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """A single-member etcd on loopback (in ``netns`` if given; clients also on the
    addresses ``also_listen``), once it reports healthy."""
    binary = shutil.which("etcd")
    if binary is None:
        raise SystemExit("etcd not installed (scripts/bootstrap.sh installs etcd-server)")
    in_netns = ["ip", "netns", "exec", netns] if netns else []
    url, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    listen = ",".join([url, *(f"http://{host}:{client_port}" for host in also_listen)])
    log = (data_dir.parent / "etcd.log").open("ab")
    proc = subprocess.Popen(
        [*in_netns, binary, "--name", "b", "--data-dir", str(data_dir),
         "--listen-client-urls", listen, "--advertise-client-urls", url,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"b={peer}", "--log-level", "warn"],
        stdout=log, stderr=log,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = subprocess.run(
            [*in_netns, "curl", "-s", "-m", "1", url + "/health"], capture_output=True, check=False
        )
        if b'"health":"true"' in done.stdout:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("etcd did not become healthy")


def wait_for_socket(proc: subprocess.Popen[bytes], sock: Path, timeout: float = 15) -> None:
    """Until the agent ``proc`` has opened its control socket ``sock`` (and 0.2 s more)."""
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the HA agent did not start")
        time.sleep(0.05)
    time.sleep(0.2)


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; a process already gone is left."""
    if proc is not None:
        terminate(proc, timeout)


def print_result(result: dict[str, Any]) -> int:
    """A benchmark's result as indented JSON on stdout; the exit status (0)."""
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
