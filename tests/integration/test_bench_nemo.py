"""The NEMO benchmark runs in CI, shortened: the router phase only, two moves, one short
iperf3 round per path, on the NEMO test bed with the real agents.

Only what a user would observe is asserted (both streams, to the mobile network node and to
the router's home address, were delivered after every move; TCP reaches the mobile network
node through the tunnel, its segments clamped by the HA); the loss gaps and throughput
ratios are printed, not asserted (no timed assertions in tests). The full run is
``.venv/bin/python bench/bench_nemo.py`` as root.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_nemo.py"


def test_shortened_nemo_benchmark_delivers_to_the_mobile_network_after_every_move() -> None:
    argv = [sys.executable, str(BENCH), "--moves", "2", "--dwell", "1.0"]
    argv += ["--seconds", "1", "--rounds", "1", "--phases", "router"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["benchmark"] == "nemo"
    router = report["phases"]["router"]
    for stream in ("mnn", "hoa"):  # the mobile network node, the router's home address
        assert len(router[stream]["loss_gap_ms"]["values"]) == 2
        assert router[stream]["moves_without_delivery"] == 0
    throughput = router["throughput"]["mbit_per_s_median"]
    assert throughput["plain"] > 0
    assert throughput["tunnel"] > 0  # TCP through the tunnel to the node (the HA's MSS clamp)
    print(
        "loss gap ms (network, router):", router["mnn"]["loss_gap_ms"]["values"],
        router["hoa"]["loss_gap_ms"]["values"],
        "throughput Mbit/s:", throughput,
        "queued to userspace:", router["userspace"]["total"],
    )  # fmt: skip
