"""``nfq-mip6 cluster drain`` against a fake agent (docs/cluster.md): the request it sends,
what it prints, its exit status and its argument checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.cli import main
from tests.unit.test_control_cli import serving

STATUS: dict[str, Any] = {
    "draining": True,
    "rate": 5.0,
    "queued": 3,
    "awaiting": 1,
    "registered": 4,
    "home_agents": ["fec0:106:2700::3"],
    "preference": 100,
    "home_agents_list": [
        {
            "link_local": "fe80::3",
            "preference": 10,
            "lifetime": 1799,
            "addresses": ["fec0:106:2700::3"],
        },
    ],
    "switch_sent": 1,
    "switch_retransmitted": 0,
    "switch_followed": 0,
    "switch_unsupported": 0,
    "switch_unanswered": 0,
}


def test_drain_sends_the_rate_and_the_listed_home_agents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests: list[dict[str, Any]] = []

    def handle(command: dict[str, Any]) -> dict[str, Any]:
        requests.append(command)
        return {"ok": True, "drain": STATUS}

    path = tmp_path / "agent.sock"
    argv = ["cluster", "drain", "--rate", "5", "--home-agent", "fec0:106:2700::3"]
    with serving(path, handle):
        assert main([*argv, "--control-socket", str(path)]) == 0
        assert main(["cluster", "drain", "--status", "--json", "--control-socket", str(path)]) == 0
    assert requests[0] == {"cmd": "drain", "rate": 5.0, "home_agents": ["fec0:106:2700::3"]}
    assert requests[1] == {"cmd": "drain", "rate": 10.0, "status": True}
    out = capsys.readouterr().out
    assert "draining at 5.0 Home Agent Switch messages/s: 3 queued, 1 awaiting" in out
    assert "home agents listed: fec0:106:2700::3" in out
    assert "preference 100; home agents heard: fec0:106:2700::3 (preference 10)" in out
    assert json.loads(out[out.index("{") :])["drain"]["switch_sent"] == 1


def test_drain_refused_by_the_agent_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    with serving(path, lambda _command: {"ok": False, "error": "unknown command 'drain'"}):
        assert main(["cluster", "drain", "--stop", "--control-socket", str(path)]) == 1
    assert "refused 'drain'" in capsys.readouterr().err


@pytest.mark.parametrize("rate", ["0", "-1", "fast"])
def test_drain_rate_must_be_positive(rate: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster", "drain", "--rate", rate])
    assert exit_info.value.code == 2
    assert "not a rate > 0" in capsys.readouterr().err
