"""Thin helpers around ``ip netns``: run commands in a namespace, list and kill its processes.

Everything goes through the ``ip`` binary (iproute2), as an operator would type it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from nfq_mip6.errors import NfqMip6Error

Command = Sequence[str] | str


class TestbedError(NfqMip6Error, RuntimeError):
    """The test bed cannot do what was asked; the message says why and what to do."""

    __test__ = False  # not a pytest test class


class CommandFailed(TestbedError):
    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"`{shlex.join(self.argv)}` exited with {returncode}: {detail}")


def as_argv(cmd: Command) -> list[str]:
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 10.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; with ``check`` raise :class:`CommandFailed` carrying its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except FileNotFoundError as exc:
        raise TestbedError(
            f"{argv[0]}: command not found (install it: scripts/bootstrap.sh)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TestbedError(f"`{shlex.join(argv)}` timed out after {timeout} s") from exc
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stdout, done.stderr)
    return done


def ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``ip [-n NETNS] ARGS...``."""
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    return run(argv, check=check)


def list_netns() -> set[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = run(["ip", "netns", "list"]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_available() -> tuple[bool, str]:
    """Whether ``ip netns`` works here, and why not."""
    try:
        run(["ip", "netns", "list"], timeout=5.0)
    except TestbedError as exc:
        return False, str(exc)
    return True, ""


def netns_pids(netns: str) -> list[int]:
    """Processes living in ``netns`` (``ip netns pids``)."""
    done = run(["ip", "netns", "pids", netns], check=False)
    if done.returncode != 0:
        return []
    return [int(tok) for tok in done.stdout.split() if tok.isdigit()]


def sysctl(netns: str, values: dict[str, str]) -> None:
    """Set sysctls inside ``netns`` in one ``sysctl -w`` call."""
    if not values:
        return
    argv = ["ip", "netns", "exec", netns, "sysctl", "-q", "-w"]
    argv += [f"{key}={value}" for key, value in values.items()]
    run(argv)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0
    return reaped == 0


def terminate_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after ``grace`` seconds."""
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [pid for pid in alive if pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_netns_processes(netns: str, grace: float = 2.0) -> None:
    """Terminate every process in ``netns`` (the namespace is ours alone)."""
    for _ in range(3):
        pids = [pid for pid in netns_pids(netns) if pid != os.getpid()]
        if not pids:
            return
        terminate_pids(pids, grace)


@dataclass(frozen=True, slots=True)
class LinkKindProbe:
    kind: str
    supported: bool
    reason: str


def probe_link_kind(kind: str, probe_netns: str) -> LinkKindProbe:
    """Can this kernel create a link of ``kind`` (e.g. ``ip6tnl``)? Tries in a scratch netns."""
    run(["ip", "netns", "add", probe_netns])
    try:
        done = ip("link", "add", "probe0", "type", kind, netns=probe_netns, check=False)
        reason = (done.stderr or done.stdout).strip()
        return LinkKindProbe(kind, done.returncode == 0, reason)
    finally:
        run(["ip", "netns", "del", probe_netns], check=False)
