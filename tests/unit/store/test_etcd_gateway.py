"""The etcd gateway's transport, against small HTTP servers on loopback (no etcd needed):
requests reuse one connection, a connection the server closed is replaced, and an endpoint
that accepts but never answers makes the request move on to the next endpoint, which then
stays current."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

from nfq_mip6.store.binding_store import CommitTimeout
from nfq_mip6.store.etcd_gateway import EtcdSettings, Gateway


class _Etcd(BaseHTTPRequestHandler):
    """Answers every POST with its path and body, counting connections."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.client_address[1])  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"path": self.path, "body": json.loads(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Etcd)
    httpd.connections = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(sock_or_server: socket.socket | ThreadingHTTPServer) -> str:
    if isinstance(sock_or_server, socket.socket):
        return f"http://127.0.0.1:{sock_or_server.getsockname()[1]}"
    return f"http://127.0.0.1:{sock_or_server.server_address[1]}"


def test_requests_share_one_connection_and_replace_a_closed_one(
    server: ThreadingHTTPServer,
) -> None:
    gateway = Gateway(EtcdSettings((url(server),), "vha1"))
    first = gateway.post("/kv/range", {"key": "a"}, 2.0)
    assert first == {"path": "/v3/kv/range", "body": {"key": "a"}}
    gateway.post("/kv/txn", {"n": 2}, 2.0)
    assert len(server.connections) == 1  # type: ignore[attr-defined]
    conn = gateway._connections()[0]
    assert conn.sock is not None
    conn.sock.shutdown(socket.SHUT_RDWR)  # as if the server had closed it while idle
    assert gateway.post("/kv/txn", {"n": 3}, 2.0)["body"] == {"n": 3}
    assert len(server.connections) == 2  # type: ignore[attr-defined]


def test_an_endpoint_that_never_answers_fails_over_to_the_next(
    server: ThreadingHTTPServer,
) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing is ever read or sent
    try:
        gateway = Gateway(EtcdSettings((url(silent), url(server)), "vha1"))
        with pytest.raises(CommitTimeout):
            gateway.post("/kv/txn", {"n": 1}, 0.3)  # the silent one used the whole deadline
        assert gateway.post("/kv/txn", {"n": 2}, 2.0)["body"] == {"n": 2}  # now the other
        assert gateway.post("/kv/txn", {"n": 3}, 2.0)["body"] == {"n": 3}  # and it stays
        assert len(server.connections) == 1  # type: ignore[attr-defined]
    finally:
        silent.close()


def test_a_refused_endpoint_fails_over_within_one_request(server: ThreadingHTTPServer) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    dead = url(closed)
    closed.close()  # nothing listens there: connection refused
    gateway = Gateway(EtcdSettings((dead, url(server)), "vha1"))
    assert gateway.post("/kv/range", {"key": "a"}, 2.0)["path"] == "/v3/kv/range"
