"""``nfq-mip6 cluster active|standby|status`` and the cluster line of ``mipdiag -c`` against a
fake agent (docs/cluster.md): the requests sent, the text and JSON printed, the exit status
keepalived's ``track_script`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.cli import main, mipdiag_main
from tests.unit.test_control_cli import CACHE, STATS, serving


class FakeClusterAgent:
    def __init__(self, *, reachable: bool = True) -> None:
        self.role = "standby"
        self.reachable = reachable
        self.requests: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "role": self.role,
            "name": "vha1",
            "endpoints": ["http://10.0.99.1:2379"],
            "store_reachable": self.reachable,
            "revision": 42,
            "applied_revision": 40,
            "lag": 2,
            "bindings": 3,
            "in_flight": 0,
            "counters": {"commits": 7, "conflicts": 1, "timeouts": 2},
        }

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(command)
        if command["cmd"] == "cache":
            return CACHE | {
                "cluster": {
                    k: self.status()[k]
                    for k in ("role", "name", "revision", "applied_revision", "store_reachable")
                }
            }
        if command["cmd"] == "stats":
            return STATS | {"cluster": self.status()}
        if command["cmd"] != "cluster":
            return {"ok": False, "error": "unknown"}
        if command["action"] in ("active", "standby"):
            self.role = command["action"]
        return self.status()


def test_cluster_status_text_and_exit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeClusterAgent()
    path = tmp_path / "agent.sock"
    with serving(path, fake.handle):
        assert main(["cluster", "status", "--control-socket", str(path)]) == 0
    out = capsys.readouterr().out
    assert fake.requests == [{"cmd": "cluster", "action": "status"}]
    assert "Role                      : standby" in out
    assert "Store revision            : 42" in out and "Lag (revisions)           : 2" in out
    assert "Timeouts                  : 2" in out


def test_cluster_switch_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeClusterAgent()
    path = tmp_path / "agent.sock"
    with serving(path, fake.handle):
        assert main(["cluster", "active", "--json", "--control-socket", str(path)]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["role"] == "active" and answer["revision"] == 42
        assert main(["cluster", "standby", "--control-socket", str(path)]) == 0
    assert [r["action"] for r in fake.requests] == ["active", "standby"]


def test_status_fails_when_the_store_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    with serving(path, FakeClusterAgent(reachable=False).handle):
        assert main(["cluster", "status", "--control-socket", str(path)]) == 3
        assert "unreachable" in capsys.readouterr().err
        # a track on the agent's liveness only
        assert main(["cluster", "status", "--agent-only", "--control-socket", str(path)]) == 0


def test_status_fails_without_agent_or_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    assert main(["cluster", "status", "--control-socket", str(path)]) == 1
    refusal = {"ok": False, "error": "not a cluster member"}
    with serving(path, lambda _c: refusal):
        assert main(["cluster", "status", "--control-socket", str(path)]) == 1
    assert "not a cluster member" in capsys.readouterr().err


def test_cache_shows_role_and_store_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.sock"
    with serving(path, FakeClusterAgent().handle):
        assert mipdiag_main(["-c", "--control-socket", str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "Cluster vha1: standby, store revision 40"
        )
        assert main(["cache", "--control-socket", str(path)]) == 0
        assert capsys.readouterr().out.splitlines()[-1] == (
            "Cluster vha1: standby, store revision 40"
        )


def test_stats_show_the_cluster_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.sock"
    with serving(path, FakeClusterAgent().handle):
        assert main(["stats", "--control-socket", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Cluster                   : vha1 standby, store revision 40 (reachable)" in lines
    assert "Cluster commits           : 7 (conflicts 1, timeouts 2)" in lines
