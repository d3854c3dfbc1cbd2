"""The agent loop's control path: SIGHUP and the control socket's ``reload`` both re-read the
configuration and hand the merged result to :meth:`RoleRuntime.reload` (one path)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nfq_mip6.agent import Agent
from nfq_mip6.config import AgentConfig, load_config
from nfq_mip6.io.nfqueue import QueuedPacket, Verdict
from nfq_mip6.mobility.stats import MobilityStats
from nfq_mip6.runtime.base import RoleRuntime, RuntimeContext


class RecordingRuntime(RoleRuntime):
    role = "cn"
    log = logging.getLogger("test.runtime")

    def __init__(self) -> None:
        super().__init__()
        self.reloaded: list[AgentConfig] = []

    def start(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def on_queued_packet(self, packet: QueuedPacket, now: float) -> Verdict:
        return Verdict.accept()

    def on_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def stop(self) -> None:
        pass

    def reload(self, config: AgentConfig) -> list[str]:
        self.reloaded.append(config)
        return ["route_optimization: off"]

    def mobility_stats(self) -> MobilityStats:
        return MobilityStats()

    def role_stats(self, now: float) -> dict[str, Any]:
        return {"correspondent": {}}


def test_control_reload_rereads_the_file_and_hands_the_merged_config_to_the_runtime(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "network-mip6.conf"
    conf.write_text("FUNCTIONALITY=cn\nDEBUGLEVEL=1\naccept_return_routability=yes\n")
    runtime = RecordingRuntime()
    agent = Agent(load_config(conf, environ={}), runtime)
    conf.write_text("FUNCTIONALITY=cn\nDEBUGLEVEL=1\naccept_return_routability=no\n")
    reply = agent.handle_control({"cmd": "reload"})
    assert reply["ok"] is True and reply["reloaded"] == ["route_optimization: off"]
    (config,) = runtime.reloaded
    assert config.route_optimization is False and agent.config is config


def test_a_broken_file_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "nfq-mip6.toml"
    conf.write_text('role = "cn"\n')
    runtime = RecordingRuntime()
    agent = Agent(load_config(conf, environ={}), runtime)
    conf.write_text("role = \n")
    assert agent.handle_control({"cmd": "reload"})["ok"] is False
    assert runtime.reloaded == []


def test_the_common_stats_block_and_role_defaults(tmp_path: Path) -> None:
    conf = tmp_path / "nfq-mip6.toml"
    conf.write_text('role = "cn"\n')
    runtime = RecordingRuntime()
    assert runtime.handle_control({"cmd": "stats"})["ok"] is False  # not started
    runtime.ctx = RuntimeContext(
        config=load_config(conf, environ={}),
        send_packet=lambda packet: None,
        add_reader=lambda fd, callback: None,
        remove_reader=lambda fd: None,
        metrics=None,
        logger=runtime.log,
        clock=lambda: 1.0,
        stats={"accepted": 3},
    )
    stats = runtime.handle_control({"cmd": "stats"})
    assert stats["role"] == "cn" and stats["bindings"] == 0 and "correspondent" in stats
    assert stats["nfqueue"] == {"accepted": 3, "dropped": 0, "rewritten": 0}
    assert runtime.handle_control({"cmd": "bul"}) == {"ok": True, "entries": []}
    assert runtime.handle_control({"cmd": "ro", "set": True})["ok"] is False  # no switch
    assert runtime.handle_control({"cmd": "nope"})["ok"] is False


class BusyRuntime(RecordingRuntime):
    """A timer that fell due while the loop was busy, and input that arrived before it."""

    def __init__(self, agent_stop: list[Agent]) -> None:
        super().__init__()
        self.order: list[str] = []
        self.deadline: float | None = 0.0  # long past
        self._agent_stop = agent_stop

    def next_deadline(self) -> float | None:
        return self.deadline

    def on_timer(self, now: float) -> None:
        self.order.append("timer")
        self.deadline = None
        self._agent_stop[0].request_stop()


def test_input_that_waited_is_read_before_the_timers_that_fell_due(tmp_path: Path) -> None:
    """A BU queued before its binding's expiry, read after a long callback, must be decided
    before the expiry timer (docs/cluster.md: a long takeover)."""
    import socket

    conf = tmp_path / "nfq-mip6.toml"
    conf.write_text('role = "cn"\n')
    holder: list[Agent] = []
    runtime = BusyRuntime(holder)
    agent = Agent(load_config(conf, environ={}), runtime)
    holder.append(agent)
    reader, writer = socket.socketpair()
    try:
        writer.send(b"bu")

        def on_input() -> None:
            reader.recv(16)
            runtime.order.append("input")

        agent.add_reader(reader.fileno(), on_input)
        agent.run_forever()
    finally:
        reader.close()
        writer.close()
    assert runtime.order == ["input", "timer"]
