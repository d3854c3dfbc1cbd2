"""A smoke subset of the TAHI Mobile IPv6 Home Agent conformance suite (tools/tahi).

Builds the TAHI tester (v6eval, about a minute the first time; the build is kept in the work
directory and reused while its inputs are unchanged) and runs a handful of ct-mipv6-ha cases
against ``nfq-mip6 run`` as the Home Agent, each in its own pair of network namespaces with
radvd and a fresh agent (docs/conformance.md). The verdicts are TAHI's own: every case must
PASS (a WARN, e.g. an unexpected ICMPv6 Redirect, fails here too).

* HA_2_1_1: home registration (BU A = 1 → BA 0 with an RH2, proxy DAD), then the suite's
  Binding Existence Test: an Echo Request with a Home Address option from the CoA must be
  answered directly with a type 2 routing header (RFC 6275 §9.3.2, §10.3.1).
* HA_7_1_1: Dynamic Home Agent Address Discovery (§10.5).
* HA_6_1_1: registration, then reverse tunnelling from the MN through the HA (§10.4.5)
  without an ICMPv6 Redirect.

The whole selection (160 cases, ~80 minutes) is a documented command, not a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
TAHI = REPO / "tools" / "tahi"
# Two shards run at once (different namespace prefixes and results), ~1 minute each.
SHARDS = (("HA_2_1_1", "HA_7_1_1"), ("HA_6_1_1",))
CASE_LIMIT_S = 900


def _environment(shard: int, results: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TAHI_WORK": os.environ.get("TAHI_WORK", "/tmp/nfq-mip6-tahi-work"),
        "TAHI_RESULTS": str(results),
        "TAHI_PREFIX": f"ts{shard}{os.getpid() % 1_000_000}",
        "TAHI_AGENT": f"{sys.executable} -m nfq_mip6",
    }


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to run.sh's process group: its trap stops the agent and radvd and deletes
    the namespaces."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(CASE_LIMIT_S + 60)
def test_tahi_home_agent_smoke_cases_pass(tmp_path: Path) -> None:
    build = subprocess.run(
        ["bash", str(TAHI / "build.sh")],
        env=_environment(0, tmp_path / "build"),
        capture_output=True,
        text=True,
        timeout=CASE_LIMIT_S,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    runs: list[tuple[tuple[str, ...], Path, subprocess.Popen[str]]] = []
    try:
        for number, cases in enumerate(SHARDS, start=1):
            results = tmp_path / f"shard{number}"
            proc = subprocess.Popen(
                ["bash", str(TAHI / "run.sh"), *cases],
                cwd=REPO,
                env=_environment(number, results),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            runs.append((cases, results, proc))
        outputs = [proc.communicate(timeout=CASE_LIMIT_S)[0] for _, _, proc in runs]
    finally:
        for _, _, proc in runs:
            _stop(proc)
    for (cases, results, proc), output in zip(runs, outputs, strict=True):
        print(output)
        rows = [line.split("\t") for line in (results / "results.tsv").read_text().splitlines()]
        verdicts = {row[0]: (row[1], row[3] if len(row) > 3 else "") for row in rows}
        assert set(verdicts) == set(cases), output
        failed = {case: v for case, v in verdicts.items() if v[0] != "PASS"}
        assert failed == {}, f"TAHI verdicts (see {results}/CASE.html): {failed}"
        assert proc.returncode == 0, output
