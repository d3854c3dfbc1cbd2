"""Control socket: a Unix stream socket speaking JSON lines, in the agent's ``selectors`` loop.

Server side (:class:`ControlServer`) runs inside ``nfq-mip6 run``; no threads: it registers its
listening socket and each client with the agent's selector, the selector's ``data`` being a
zero-argument callback. Each request is one JSON object on one line, each response likewise:

* ``{"cmd": "stats"}``, ``{"cmd": "cache"}``, ``{"cmd": "bul"}``, ``{"cmd": "version"}``;
* ``{"cmd": "ro"}`` (status) and ``{"cmd": "ro", "set": true|false}``;
* responses ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.

Client side: :func:`request` (used by ``nfq-mip6 stats|cache|bul|ro`` and ``mipdiag``) raises
:class:`AgentNotRunning` when nobody listens on the path.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import selectors
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from nfq_mip6.errors import ControlError

__all__ = [
    "DEFAULT_CONTROL_SOCKET",
    "AgentNotRunning",
    "ControlError",
    "ControlServer",
    "request",
]

log = logging.getLogger(__name__)

DEFAULT_CONTROL_SOCKET: Final = Path("/run/nfq-mip6/agent.sock")
SOCKET_MODE: Final = 0o660
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_CLIENTS: Final = 16
MAX_PENDING_OUTPUT: Final = 16 * 1024 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class AgentNotRunning(ControlError):
    """Nobody listens on the control socket ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"no agent is listening on {path} (is 'nfq-mip6 run' started? "
            "use --control-socket PATH for another socket)"
        )


class _Client:
    __slots__ = ("closed", "inbuf", "outbuf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closed = False


class ControlServer:
    """Non-blocking JSON-lines server on a Unix socket (mode 0660).

    ``handler(request) -> response`` is called in the agent's loop for each request line; an
    exception in it becomes ``{"ok": false, "error": ...}``, never a crash.
    """

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self._handler = handler
        self._selector: selectors.BaseSelector | None = None
        self._clients: dict[int, _Client] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_socket()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.bind(str(self.path))
            os.chmod(self.path, SOCKET_MODE)
            self._sock.listen(8)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise

    def _remove_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(0.5)
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)  # stale: left behind by a dead agent
            return
        finally:
            probe.close()
        raise OSError(errno.EADDRINUSE, f"another agent is listening on {self.path}")

    # -- selector integration ---------------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def register(self, selector: selectors.BaseSelector) -> None:
        """Register the listening socket; clients are registered as they connect."""
        self._selector = selector
        selector.register(self._sock, selectors.EVENT_READ, self.on_readable)

    def on_readable(self) -> None:
        """Accept pending connections."""
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control socket accept failed: %s", exc)
                return
            if len(self._clients) >= MAX_CLIENTS or self._selector is None:
                log.warning("control socket: too many clients, refusing one")
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn)
            self._clients[conn.fileno()] = client
            self._selector.register(
                conn, selectors.EVENT_READ, functools.partial(self._service, client)
            )

    # -- per-client handling ----------------------------------------------------------------
    def _service(self, client: _Client) -> None:
        """Called when the client is readable (or writable while output is pending)."""
        if client.outbuf and not self._flush(client):
            return
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        if not data:
            self._drop(client)
            return
        client.inbuf += data
        while b"\n" in client.inbuf:
            line, _, rest = bytes(client.inbuf).partition(b"\n")
            client.inbuf = bytearray(rest)
            self._answer(client, self._dispatch(line))
            if client.closed:
                return
        if len(client.inbuf) > MAX_REQUEST_BYTES:
            self._answer(client, {"ok": False, "error": "request line too long"})
            self._drop(client)
            return
        if client.outbuf and not client.closed:
            self._flush(client)

    def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            command = json.loads(line)
        except (UnicodeDecodeError, ValueError) as exc:
            return {"ok": False, "error": f"request is not JSON: {exc}"}
        if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
            return {"ok": False, "error": 'request must be an object with a "cmd" string'}
        try:
            response: object = self._handler(command)
        except Exception as exc:  # a handler bug must not take the agent down
            log.exception("control command %r failed", command.get("cmd"))
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not isinstance(response, dict):
            return {"ok": False, "error": "handler returned no object"}
        return response

    def _answer(self, client: _Client, response: dict[str, Any]) -> None:
        try:
            payload = json.dumps(response, default=str, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            payload = json.dumps({"ok": False, "error": f"response not serialisable: {exc}"})
        client.outbuf += payload.encode() + b"\n"
        if len(client.outbuf) > MAX_PENDING_OUTPUT:
            log.warning("control client does not read its answers; dropping it")
            self._drop(client)

    def _flush(self, client: _Client) -> bool:
        """Send what we can; True when the output buffer is empty."""
        try:
            sent = client.sock.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(client)
            return False
        del client.outbuf[:sent]
        self._set_interest(client)
        return not client.outbuf

    def _set_interest(self, client: _Client) -> None:
        if self._selector is None or client.closed:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbuf else 0)
        key = self._selector.get_key(client.sock)
        if key.events != events:
            self._selector.modify(client.sock, events, key.data)

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        client.closed = True
        fd = client.sock.fileno()
        if fd >= 0 and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
        self._clients.pop(fd, None)
        client.sock.close()

    def close(self) -> None:
        """Close all clients and the socket, and remove the socket file."""
        for client in list(self._clients.values()):
            self._drop(client)
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._sock)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def request(path: Path, command: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
    """Send one command to the agent at ``path`` and return its response.

    Raises:
        AgentNotRunning: no socket, or nobody accepts on it.
        ControlError: permission denied, timeout, or an unreadable answer.
    """
    path = Path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise AgentNotRunning(path) from None
        except PermissionError:
            raise ControlError(f"permission denied on {path} (run as root?)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc}") from None
        try:
            sock.sendall(json.dumps(command).encode() + b"\n")
            answer = bytearray()
            while b"\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            raise ControlError(f"the agent on {path} did not answer within {timeout} s") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc}") from None
    finally:
        sock.close()
    line = bytes(answer).partition(b"\n")[0]
    if not line:
        raise ControlError(f"the agent on {path} closed the connection without answering")
    try:
        response = json.loads(line)
    except ValueError as exc:
        raise ControlError(f"unreadable answer from {path}: {exc}") from None
    if not isinstance(response, dict):
        raise ControlError(f"unreadable answer from {path}: not an object")
    return response
