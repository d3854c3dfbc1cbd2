"""Traffic tools for the test bed: a ping stream with reply gaps and outages, a tcpdump
capture, an iperf3 run. Each runs in a :class:`~nfq_mip6.testbed.node.Node`; the
:class:`~nfq_mip6.testbed.testbed.Testbed` methods of the same names pick the nodes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from nfq_mip6.testbed.netns import TestbedError
from nfq_mip6.testbed.node import Node

__all__ = ["Outage", "PingResult", "PingStream", "capture", "iperf3", "parse_ping_output"]


@dataclass(frozen=True, slots=True)
class Outage:
    """A run of consecutive unanswered echo requests."""

    first_seq: int
    last_seq: int
    seconds: float  # number of lost requests x interval


@dataclass(frozen=True, slots=True)
class PingResult:
    sent: int
    received: int
    interval_s: float
    max_gap_s: float  # longest time between two consecutive replies (ping -D timestamps)
    outages: tuple[Outage, ...]

    @property
    def loss(self) -> float:
        return 0.0 if self.sent == 0 else 1.0 - min(self.received, self.sent) / self.sent

    def summary(self) -> str:
        text = (
            f"{self.sent} sent, {self.received} received, {self.loss:.1%} loss, "
            f"longest gap between replies {self.max_gap_s * 1000:.0f} ms"
        )
        if self.outages:
            worst = max(self.outages, key=lambda o: o.seconds)
            text += (
                f", {len(self.outages)} outage(s), longest {worst.seconds * 1000:.0f} ms "
                f"(seq {worst.first_seq}-{worst.last_seq})"
            )
        return text


_REPLY_RE: Final = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")
_SUMMARY_RE: Final = re.compile(r"(\d+) packets transmitted, (\d+) received")


class PingStream:
    """``ping -i 1/rate`` from a node, collecting reply timestamps until ``stop()``."""

    def __init__(
        self, node: Node, destination: str, rate_pps: int = 100, source: str | None = None
    ) -> None:
        if not 1 <= rate_pps <= 500:
            raise ValueError("rate_pps must be within 1..500")
        self.node = node
        self.destination = destination
        self.interval_s = round(1.0 / rate_pps, 3)
        self.source = source
        self._proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> PingStream:
        argv = ["ping", "-6", "-n", "-D", "-O", "-W", "1", "-i", f"{self.interval_s:.3f}"]
        if self.source:
            argv += ["-I", self.source]
        self._proc = self.node.popen([*argv, self.destination], stderr=subprocess.STDOUT)
        proc = self._proc

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self._lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, name="ping-stream", daemon=True)
        self._reader.start()
        return self

    @property
    def replies_so_far(self) -> int:
        """Echo replies seen up to now (the stream keeps running)."""
        return sum(1 for line in list(self._lines) if _REPLY_RE.match(line))

    def stop(self) -> PingResult:
        if self._proc is None:
            raise TestbedError("ping stream was not started")
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        return parse_ping_output(self._lines, self.interval_s)

    def __enter__(self) -> PingStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self.stop()


def parse_ping_output(lines: Sequence[str], interval_s: float) -> PingResult:
    """Parse iputils ``ping -D -O`` output into counts, reply gaps and outages."""
    replies: dict[int, float] = {}
    sent = received = 0
    for line in lines:
        if match := _REPLY_RE.match(line):
            seq = int(match.group(2))
            replies.setdefault(seq, float(match.group(1)))
        elif match := _SUMMARY_RE.search(line):
            sent, received = int(match.group(1)), int(match.group(2))
    if sent == 0:  # killed before the summary: estimate from what was seen
        received = len(replies)
        sent = max(replies, default=0)
    seqs = sorted(replies)
    times = [replies[s] for s in seqs]
    max_gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    outages: list[Outage] = []
    expected = 1
    for seq in seqs:
        if seq > expected:
            outages.append(Outage(expected, seq - 1, (seq - expected) * interval_s))
        expected = seq + 1
    return PingResult(sent, received, interval_s, max_gap, tuple(outages))


@contextlib.contextmanager
def capture(where: Node, link: str, path: str | os.PathLike[str]) -> Iterator[Path]:
    """tcpdump on interface or bridge ``link`` of ``where`` to a pcap while the block runs."""
    pcap = Path(path)
    proc = where.popen(
        ["tcpdump", "-i", link, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", str(pcap)],
        stdout=subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    if "listening on" not in first:
        proc.kill()
        proc.wait()
        raise TestbedError(f"tcpdump on {link} failed: {first.strip()}")
    try:
        yield pcap
    finally:
        time.sleep(0.05)  # let the last packets reach the capture
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def iperf3(
    client: Node,
    server: Node,
    server_address: str,
    *,
    seconds: int = 2,
    udp: bool = False,
    bitrate: str | None = None,
    port: int = 5201,
) -> dict[str, Any]:
    """Run iperf3 from ``client`` to ``server_address`` (served in ``server``); returns the
    client's JSON report. ``seconds`` is whole (iperf3 3.12 reads 0.5 as 0, i.e. forever)."""
    if seconds < 1:
        raise ValueError("iperf3 duration must be at least 1 s")
    srv = server.popen(
        ["iperf3", "-s", "-1", "-B", server_address, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5.0
        while not server.run(["ss", "-Htln", f"sport = :{port}"]).stdout.strip():
            if srv.poll() is not None or time.monotonic() > deadline:
                raise TestbedError(f"iperf3 server on {server.name} did not start")
            time.sleep(0.02)
        argv = ["iperf3", "-c", server_address, "-p", str(port), "-t", str(seconds), "-J"]
        if udp:
            argv += ["-u", "-b", bitrate or "100M"]
        elif bitrate:
            argv += ["-b", bitrate]
        done = client.run(argv, check=False, timeout=seconds + 15.0)
        report: dict[str, Any] = json.loads(done.stdout or "{}")
        if done.returncode != 0 or "error" in report:
            raise TestbedError(f"iperf3 failed: {report.get('error', done.stderr.strip())}")
        return report
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(timeout=5.0)
