"""Real etcd (Debian ``etcd-server``) for the store and cluster tests.

* :class:`EtcdServer`: one member, by default a single-member cluster on 127.0.0.1 with two
  unused ports and a temporary data directory, stopped (or killed) by its PID.
* :class:`EtcdCluster`: several members forming one cluster (each on its own address, all in
  one network namespace or in the caller's), its leader read from the members' status
  (``/v3/maintenance/status``), a member killed by PID, the keys under a prefix read back.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def unused_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


class EtcdServer:
    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        *,
        name: str = "t",
        client_port: int | None = None,
        peer_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.name = name
        self.client_port = client_port if client_port is not None else unused_port()
        self.peer_port = peer_port if peer_port is not None else unused_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.netns: str | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def launch(
        self,
        netns: str | None = None,
        initial_cluster: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Start the process (``initial_cluster`` = ``name=peer,...`` of every member; this
        member alone by default); :meth:`wait_healthy` waits for it."""
        binary = shutil.which("etcd")
        assert binary, "etcd not installed (scripts/bootstrap.sh installs etcd-server)"
        command = [
            binary, "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster or f"{self.name}={self.peer_url}",
            "--log-level", "warn", *extra_args,
        ]  # fmt: skip
        self.netns = netns
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-2000:]
            if self.healthy():
                return
            time.sleep(0.1)
        raise AssertionError(f"etcd did not become healthy: {self.log_path.read_text()[-2000:]}")

    def start(self, timeout: float = 30.0, netns: str | None = None) -> None:
        self.launch(netns)
        self.wait_healthy(timeout)

    def healthy(self) -> bool:
        try:
            return bool(self._get("/health").get("health") == "true")
        except (OSError, ValueError):
            return False

    def post(self, path: str, body: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """One v3 gateway request (``/v3/...``), from the member's namespace."""
        if self.netns is None:
            request = urllib.request.Request(
                self.url + path, data=json.dumps(body).encode(), method="POST"
            )
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        done = subprocess.run(
            ["ip", "netns", "exec", self.netns, "curl", "-sf", "-m", str(timeout),
             "-X", "POST", "-d", json.dumps(body), self.url + path],
            capture_output=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise OSError(f"etcd {self.url}{path}: curl exit {done.returncode}")
        answer = json.loads(done.stdout)
        return answer

    def _get(self, path: str) -> dict[str, Any]:
        if self.netns is None:
            with urllib.request.urlopen(self.url + path, timeout=1) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        done = subprocess.run(
            ["ip", "netns", "exec", self.netns, "curl", "-s", "-m", "1", self.url + path],
            capture_output=True, check=False,
        )  # fmt: skip
        answer = json.loads(done.stdout or b"{}")
        return answer

    def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """``/v3/maintenance/status``: ``header.member_id``, ``leader``, ``raftTerm``, ..."""
        return self.post("/v3/maintenance/status", {}, timeout)

    def member_id(self) -> str:
        return str(self.status()["header"]["member_id"])

    def compact(self, revision: int) -> None:
        self.post("/v3/kv/compaction", {"revision": revision, "physical": True}, 5)

    def kill(self) -> None:
        """SIGKILL by PID (a crash: no goodbye to the other members)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def running_etcd(data_dir: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class EtcdCluster:
    """One etcd cluster of ``len(hosts)`` members, member i on ``hosts[i]`` (ports 2379 and
    2380 unless given), data under ``parent``; all in namespace ``netns`` if given.
    ``extra_args`` go to every member (e.g. ``--election-timeout``)."""

    def __init__(
        self,
        parent: Path,
        hosts: Sequence[str],
        netns: str | None = None,
        *,
        client_port: int = 2379,
        peer_port: int = 2380,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.netns = netns
        self.extra_args = tuple(extra_args)
        self.members = [
            EtcdServer(parent / f"etcd{i + 1}", host, name=f"e{i + 1}",
                       client_port=client_port, peer_port=peer_port)
            for i, host in enumerate(hosts)
        ]  # fmt: skip

    @property
    def endpoints(self) -> list[str]:
        return [member.url for member in self.members]

    def alive(self) -> list[EtcdServer]:
        return [m for m in self.members if m.process is not None and m.process.poll() is None]

    def start(self, timeout: float = 30.0) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:  # all at once: a member is healthy once there is a quorum
            member.launch(self.netns, initial, self.extra_args)
        for member in self.members:
            member.wait_healthy(timeout)

    def leader(self) -> EtcdServer | None:
        """The member the live members agree is leader (None: no leader, or no agreement)."""
        ids: dict[str, EtcdServer] = {}
        leaders: set[str] = set()
        for member in self.alive():
            try:
                status = member.status(timeout=1.0)
            except (OSError, ValueError):
                return None
            ids[str(status["header"]["member_id"])] = member
            leaders.add(str(status.get("leader", "0")))
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    def wait_leader(self, timeout: float = 15.0, not_: EtcdServer | None = None) -> EtcdServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not not_:
                return leader
            time.sleep(0.05)
        raise AssertionError("etcd elected no leader")

    def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` and its value, as a live member holds them (a
        linearizable read: it goes through the leader)."""
        raw = prefix.encode()
        end = (raw[:-1] + bytes([raw[-1] + 1])).decode()
        member = self.alive()[0]
        reply = member.post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)}, 5)
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
            for kv in reply.get("kvs", [])
        }

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@contextmanager
def running_etcd_cluster(
    parent: Path, hosts: Sequence[str], netns: str | None = None
) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(parent, hosts, netns)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
