"""nfq_mip6.control: the JSON-lines control socket, server in a selector loop, client errors."""

from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nfq_mip6.control import AgentNotRunning, ControlError, ControlServer, request

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class LoopThread:
    """A ControlServer served by a selectors loop in a thread, as the agent loop does."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.server = ControlServer(path, handler)
        self.selector = selectors.DefaultSelector()
        self.server.register(self.selector)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _mask in self.selector.select(0.05):
                key.data()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()
        self.selector.close()


def echo_handler(command: dict[str, Any]) -> dict[str, Any]:
    if command["cmd"] == "boom":
        raise RuntimeError("handler bug")
    if command["cmd"] == "big":
        return {"ok": True, "blob": "x" * 2_000_000}
    return {"ok": True, "echo": command}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "run" / "agent.sock"
    loop = LoopThread(path, echo_handler)
    try:
        yield path
    finally:
        loop.close()


def test_request_roundtrip(served: Path) -> None:
    assert request(served, {"cmd": "stats"}) == {"ok": True, "echo": {"cmd": "stats"}}
    assert request(served, {"cmd": "ro", "set": False})["echo"] == {"cmd": "ro", "set": False}
    assert served.stat().st_mode & 0o777 == 0o660


def test_handler_exception_becomes_error(served: Path) -> None:
    answer = request(served, {"cmd": "boom"})
    assert answer["ok"] is False
    assert "handler bug" in answer["error"]
    # The server survives and answers the next request.
    assert request(served, {"cmd": "version"})["ok"] is True


def test_large_answer_is_delivered(served: Path) -> None:
    answer = request(served, {"cmd": "big"}, timeout=10.0)
    assert len(answer["blob"]) == 2_000_000


def test_bad_requests_on_one_connection(served: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(served))
        sock.sendall(b'not json\n[1,2]\n{"cmd":"x"}\n')
        data = b""
        while data.count(b"\n") < 3:
            data += sock.recv(4096)
    answers = [json.loads(line) for line in data.splitlines()]
    assert answers[0]["ok"] is False and "not JSON" in answers[0]["error"]
    assert answers[1]["ok"] is False and "cmd" in answers[1]["error"]
    assert answers[2] == {"ok": True, "echo": {"cmd": "x"}}


def test_no_agent(tmp_path: Path) -> None:
    with pytest.raises(AgentNotRunning) as info:
        request(tmp_path / "absent.sock", {"cmd": "stats"})
    assert "absent.sock" in str(info.value)


def test_stale_socket_is_replaced_and_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # file left behind, nobody listens
    with pytest.raises(AgentNotRunning):
        request(path, {"cmd": "stats"})
    loop = LoopThread(path, echo_handler)
    try:
        assert request(path, {"cmd": "stats"})["ok"] is True
        with pytest.raises(OSError, match="another agent"):
            ControlServer(path, echo_handler)
    finally:
        loop.close()
    assert not path.exists()


def test_silent_server_times_out(tmp_path: Path) -> None:
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as mute:
        mute.bind(str(path))
        mute.listen(1)
        with pytest.raises(ControlError, match="did not answer"):
            request(path, {"cmd": "stats"}, timeout=0.2)
