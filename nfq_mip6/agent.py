"""``nfq-mip6 run``: the agent process (one role, one network namespace, one loop).

Before the role starts, ``nfq-mip6 run`` locks the state directory for the agent's life
(:class:`nfq_mip6.statedir.StateDirectoryLock`: a second agent on it exits 1).

Theory of operation: a single ``selectors`` loop watches

* the NFQUEUE netlink fd (:class:`~nfq_mip6.io.nfqueue.QueueAdapter`, drained with
  ``run(block=False)``; each packet goes to ``runtime.on_queued_packet``),
* the control socket's fds (:class:`nfq_mip6.control.ControlServer` registers them with
  zero-argument callbacks as the selector ``data``),
* extra fds of the role (``ctx.add_reader``: raw ICMPv6 socket, netlink monitor),
* a self-pipe for signals (``signal.set_wakeup_fd``),

and sleeps until ``runtime.next_deadline()`` (a single timer, aioquic-style). SIGTERM and
SIGINT stop cleanly (``runtime.stop()`` removes the rules), SIGHUP reloads (:meth:`Agent.reload`:
``nfq_mip6.config.reload_config``, log level/format applied here, one log line per applied or
refused change, the merged configuration handed to :meth:`RoleRuntime.reload`; the control
socket's ``reload`` takes the same path). No threads.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from nfq_mip6 import __version__
from nfq_mip6.runtime.base import FdCallback, QueuedPacket, RoleRuntime, RuntimeContext, Verdict

if TYPE_CHECKING:
    from nfq_mip6.config import AgentConfig

__all__ = ["Agent", "register", "run_command"]

log = logging.getLogger("nfq_mip6.agent")

# The loop never sleeps longer than this (keeps signal handling and stats sampling lively).
MAX_SLEEP_S = 1.0


class Agent:
    """The process-level loop around one :class:`RoleRuntime`."""

    def __init__(
        self,
        config: AgentConfig,
        runtime: RoleRuntime,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.clock = clock
        self.metrics = metrics
        self.selector = selectors.DefaultSelector()
        self._stop_requested = False
        self._reload_requested = False
        self._queue: Any = None
        self._sender: Any = None
        self._control: Any = None
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self.nfqueue_stats: dict[str, int] = {"accepted": 0, "dropped": 0, "rewritten": 0}

    # -- fds -------------------------------------------------------------------------------
    def add_reader(self, fd: int, callback: FdCallback) -> None:
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)

    def send_packet(self, packet: bytes) -> None:
        if self._sender is None:
            from nfq_mip6.io.rawsock import RawIPv6Sender

            self._sender = RawIPv6Sender()
        self._sender.send(packet)

    # -- queue -----------------------------------------------------------------------------
    def _on_queued(self, packet: QueuedPacket, now: float) -> Verdict:
        verdict = self.runtime.on_queued_packet(packet, now)
        if self.metrics is not None:
            try:
                self.metrics.nfqueue_verdict(verdict.kind.name.lower())
            except Exception:  # metrics must never break the data path
                log.debug("metrics.nfqueue_verdict failed", exc_info=True)
        return verdict

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except BlockingIOError:
            pass

    def request_stop(self) -> None:
        self._stop_requested = True
        with contextlib.suppress(OSError):
            self._wakeup_w.send(b"\0")

    # -- control ---------------------------------------------------------------------------
    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "version":
            return {"ok": True, "version": __version__, "role": str(self.config.role)}
        if cmd == "reload":
            return self.reload()
        try:
            return self.runtime.handle_control(request)
        except Exception as exc:
            log.exception("control request %r failed", cmd)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def snapshot(self) -> dict[str, Any]:
        """The ``stats`` snapshot (for the metrics collector)."""
        return self.handle_control({"cmd": "stats"})

    # -- lifecycle -------------------------------------------------------------------------
    def setup(self, *, with_queue: bool = True) -> None:
        from nfq_mip6.io.nfqueue import QueueAdapter

        self.add_reader(self._wakeup_r.fileno(), self._drain_wakeup)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        if with_queue:
            self._queue = QueueAdapter(self.config.queue_num, self._on_queued, self.clock)
            self.nfqueue_stats = self._queue.stats
            self.add_reader(self._queue.fileno(), self._queue.on_readable)
        ctx = RuntimeContext(
            config=self.config,
            send_packet=self.send_packet,
            add_reader=self.add_reader,
            remove_reader=self.remove_reader,
            metrics=self.metrics,
            logger=logging.getLogger(f"nfq_mip6.{self.config.role}"),
            clock=self.clock,
            queue_num=self.config.queue_num,
            queue_bypass=bool(getattr(self.config, "queue_bypass", False)),
            stats=self.nfqueue_stats,
        )
        self.runtime.start(ctx)
        control_path = getattr(self.config, "control_socket", None)
        if control_path is not None:
            try:
                from nfq_mip6.control import ControlServer
            except ImportError:
                log.warning("control socket support is not installed; %s not opened", control_path)
            else:
                self._control = ControlServer(Path(control_path), self.handle_control)
                self._control.register(self.selector)

    def run_forever(self) -> None:
        """Serve until SIGTERM/SIGINT or :meth:`request_stop`."""
        while not self._stop_requested:
            now = self.clock()
            deadline = self.runtime.next_deadline()
            if deadline is not None and deadline <= now:
                # What arrived while the loop was busy (a long callback, e.g. a cluster
                # takeover adding thousands of proxy entries) is read before the timers that
                # fell due meanwhile: a Binding Update queued before its binding's expiry
                # refreshes it instead of finding it expired. Timers still run every round.
                self._dispatch(0.0)
                self.runtime.on_timer(self.clock())
                continue
            timeout = MAX_SLEEP_S if deadline is None else min(MAX_SLEEP_S, deadline - now)
            self._dispatch(max(0.0, timeout))
            if self._reload_requested:
                self._reload_requested = False
                self.reload()

    def _dispatch(self, timeout: float) -> None:
        """Run the callback of every fd readable within ``timeout`` seconds."""
        for key, _mask in self.selector.select(timeout):
            callback = key.data
            try:
                callback()
            except Exception:
                log.exception("fd callback %r failed", callback)

    def reload(self) -> dict[str, Any]:
        """SIGHUP: re-read the configuration file and environment; take the reloadable
        changes (log level/format here, route optimization and lifetimes in the runtime), log
        the ones that need a restart. A configuration that became invalid changes nothing."""
        from nfq_mip6.config import ConfigError, reload_config

        try:
            new, applied, refused = reload_config(self.config, os.environ)
        except (ConfigError, OSError, ValueError) as exc:
            log.error("SIGHUP: configuration not reloaded, keeping the running one: %s", exc)
            return {"ok": False, "error": str(exc)}
        if (new.log_level, new.log_format) != (self.config.log_level, self.config.log_format):
            try:
                _setup_logging(new.log_level, new.log_format)
            except ValueError as exc:
                log.error("SIGHUP: logging unchanged: %s", exc)
        self.config = new
        for change in refused:
            log.warning("SIGHUP: %s needs a restart; not applied", change)
        try:
            reloaded = self.runtime.reload(new)
        except Exception as exc:
            log.exception("SIGHUP: the runtime failed to apply the configuration")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        for change in applied:
            log.info("SIGHUP: applied %s", change)
        log.info(
            "SIGHUP: configuration reloaded from %s (%d applied, %d need a restart)",
            new.source, len(applied), len(refused),
        )  # fmt: skip
        if self.metrics is not None:
            self.metrics.config_loaded(time.time())
        return {"ok": True, "reloaded": reloaded, "applied": applied, "refused": refused}

    def close(self) -> None:
        try:
            self.runtime.stop()
        except Exception:
            log.exception("runtime stop failed")
        if self._control is not None:
            self._control.close()
        if self._queue is not None:
            self.remove_reader(self._queue.fileno())
            self._queue.close()
        if self._sender is not None:
            self._sender.close()
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``nfq-mip6 run`` to the top-level parser."""
    parser = subparsers.add_parser(
        "run",
        help="run the agent (HA, MN or CN) in the foreground in this network namespace",
        description="Run the Mobile IPv6 agent in the foreground (needs root).",
    )
    parser.add_argument("--config", required=True, type=Path, help="TOML or network-mip6.conf")
    parser.add_argument("--control-socket", type=Path, default=None, help="Unix socket path")
    parser.add_argument(
        "--metrics-listen", default=None, metavar="HOST:PORT", help="serve Prometheus metrics"
    )
    parser.add_argument("--queue-num", type=int, default=None, help="NFQUEUE number")
    parser.add_argument("--log-format", choices=("text", "json"), default=None)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, …")
    parser.add_argument(
        "--cluster-role",
        choices=("active", "standby"),
        default=None,
        help="HA cluster: the role at start ([cluster] role; switch with 'nfq-mip6 cluster')",
    )
    parser.set_defaults(func=run_command)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _setup_logging(level: str, fmt: str) -> None:
    try:
        from nfq_mip6.logsetup import setup_logging
    except ImportError:
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return
    setup_logging(level=level, fmt=fmt)


def _apply_overrides(config: AgentConfig, args: argparse.Namespace) -> AgentConfig:
    changes: dict[str, Any] = {}
    if args.control_socket is not None:
        changes["control_socket"] = args.control_socket
    if args.metrics_listen is not None:
        changes["metrics_listen"] = _parse_listen(args.metrics_listen)
    if args.queue_num is not None:
        changes["queue_num"] = args.queue_num
    if args.log_format is not None:
        changes["log_format"] = args.log_format
    if args.log_level is not None:
        changes["log_level"] = args.log_level
    cluster_role = getattr(args, "cluster_role", None)
    if cluster_role is not None:
        if config.cluster is None:
            raise ValueError("--cluster-role needs a [cluster] section in the configuration")
        changes["cluster"] = dataclasses.replace(config.cluster, role=cluster_role)
    return dataclasses.replace(config, **changes) if changes else config


def run_command(args: argparse.Namespace) -> int:
    """``nfq-mip6 run``: exit 0 on a clean stop, 2 on bad configuration, 1 on failure."""
    from nfq_mip6.config import ConfigError, load_config
    from nfq_mip6.runtime import UnsupportedRole, create_runtime

    try:
        config = _apply_overrides(load_config(args.config), args)
    except (ConfigError, ValueError) as exc:
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level, config.log_format)
    if os.geteuid() != 0:
        log.warning("not running as root: NFQUEUE, raw sockets and netlink will fail")
    try:
        runtime = create_runtime(str(config.role))
    except UnsupportedRole as exc:
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 2
    from nfq_mip6.statedir import StateDirectoryBusy, StateDirectoryLock

    try:  # held for the agent's life: one agent per state directory
        state_lock = StateDirectoryLock(config.state_dir)
    except StateDirectoryBusy as exc:
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"nfq-mip6: state directory {config.state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return _run_agent(config, runtime)
    finally:
        state_lock.release()


def _run_agent(config: AgentConfig, runtime: RoleRuntime) -> int:
    from nfq_mip6.errors import ConfigurationError, DataplaneError, NfqMip6Error

    metrics = _make_metrics(config)
    if metrics is not None:
        metrics.config_loaded(time.time())
    agent = Agent(config, runtime, metrics=metrics)
    if metrics is not None:
        metrics_snapshot[0] = agent.snapshot
    try:
        agent.setup()
        # Everything allocated so far (pyroute2, config, the restored cache) lives for the
        # whole run: move it out of the cyclic GC's reach so that full collections stay short
        # (they showed up as millisecond BU -> BA tails).
        gc.collect()
        gc.freeze()
        log.info("nfq-mip6 %s running as %s (queue %d)", __version__, config.role, config.queue_num)
        agent.run_forever()
    except DataplaneError as exc:
        # The kernel refused the set-up (a missing interface, a required sysctl on a
        # read-only /proc/sys, a route, a rule, ip6tables, BPF): one clear line, exit 1.
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:  # e.g. key material the role reads at start
        print(f"nfq-mip6: {exc}", file=sys.stderr)
        return 2
    except (NfqMip6Error, OSError) as exc:
        log.error("agent failed: %s", exc)
        return 1
    finally:
        agent.close()
    log.info("stopped")
    return 0


# The metrics collector reads the agent's snapshot; the agent is created after the metrics.
metrics_snapshot: list[Callable[[], dict[str, Any]]] = [lambda: {}]


def _make_metrics(config: AgentConfig) -> Any:
    listen = getattr(config, "metrics_listen", None)
    try:
        from prometheus_client import CollectorRegistry

        from nfq_mip6.metrics import AgentMetrics, start_http_server
    except ImportError:
        if listen is not None:
            log.warning("metrics support is not installed; %s:%d not served", *listen)
        return None
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry, lambda: metrics_snapshot[0]())
    if listen is not None:
        start_http_server(listen[0], listen[1], registry)
    return metrics
