"""A real single-member etcd (Debian ``etcd-server``) for the store tests: listens on
127.0.0.1 on two unused ports, data in a temporary directory, stopped by its PID."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def unused_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    def __init__(self, data_dir: Path, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.client_port = unused_port(host)
        self.peer_port = unused_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self, timeout: float = 30.0, netns: str | None = None) -> None:
        binary = shutil.which("etcd")
        assert binary, "etcd not installed (scripts/bootstrap.sh installs etcd-server)"
        peer = f"http://{self.host}:{self.peer_port}"
        command = [
            binary, "--name", "t", "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"t={peer}", "--log-level", "warn",
        ]  # fmt: skip
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-2000:]
            if netns is None and self.healthy():
                return
            if netns is not None and self._healthy_in(netns):
                return
            time.sleep(0.1)
        raise AssertionError(f"etcd did not become healthy: {self.log_path.read_text()[-2000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                return bool(json.loads(response.read()).get("health") == "true")
        except OSError:
            return False

    def _healthy_in(self, netns: str) -> bool:
        done = subprocess.run(
            ["ip", "netns", "exec", netns, "curl", "-s", "-m", "1", self.url + "/health"],
            capture_output=True, check=False,
        )  # fmt: skip
        return b'"health":"true"' in done.stdout

    def compact(self, revision: int) -> None:
        body = json.dumps({"revision": revision, "physical": True}).encode()
        request = urllib.request.Request(self.url + "/v3/kv/compaction", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

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
