"""The etcd gateway when a member's process is gone (docs/cluster.md, "The etcd leader dies
under load"), against small HTTP servers standing in for etcd members: after a refused
connection to the member that was leader, no request goes to a follower that still names it
as leader (the request would be forwarded to the dead member and hang until the deadline);
it goes out as soon as the follower names another leader. A member that answers again is not
waited for."""

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


class _Member(BaseHTTPRequestHandler):
    """An etcd member: every answer carries its member id; ``/v3/maintenance/status`` names
    the next leader of the server's ``leaders`` list (the last one once used up)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.sockets.append(self.connection)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        server = self.server
        self.rfile.read(int(self.headers["Content-Length"]))
        server.paths.append(self.path)  # type: ignore[attr-defined]
        answer: dict[str, object] = {"header": {"member_id": server.member_id}}  # type: ignore[attr-defined]
        if self.path == "/v3/maintenance/status":
            leaders = server.leaders  # type: ignore[attr-defined]
            answer["leader"] = leaders.pop(0) if len(leaders) > 1 else leaders[0]
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _member(member_id: str, leaders: list[str]) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Member)
    httpd.member_id, httpd.leaders = member_id, leaders  # type: ignore[attr-defined]
    httpd.paths, httpd.sockets = [], []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


def _url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture
def members() -> Iterator[list[ThreadingHTTPServer]]:
    started: list[ThreadingHTTPServer] = []
    yield started
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def _kill(httpd: ThreadingHTTPServer) -> None:
    """The member's process dies: its connections close, its port refuses new ones."""
    httpd.shutdown()
    httpd.server_close()
    for sock in httpd.sockets:  # type: ignore[attr-defined]
        sock.shutdown(socket.SHUT_RDWR)


def test_a_write_waits_until_a_follower_names_a_new_leader(
    members: list[ThreadingHTTPServer],
) -> None:
    leader = _member("11", ["11"])
    follower = _member("22", ["11", "11", "11", "22"])  # elects itself at the 4th status
    members.append(follower)
    gateway = Gateway(EtcdSettings((_url(leader), _url(follower)), "vha1"))
    assert gateway.post("/kv/txn", {}, 2.0)["header"] == {"member_id": "11"}
    _kill(leader)
    # the refused connection marks member 11 gone: status until 22 is leader, then the write
    assert gateway.post("/kv/txn", {}, 2.0)["header"] == {"member_id": "22"}
    assert follower.paths == ["/v3/maintenance/status"] * 4 + ["/v3/kv/txn"]  # type: ignore[attr-defined]
    # the election is over: the next write goes straight out
    gateway.post("/kv/txn", {}, 2.0)
    assert follower.paths == ["/v3/maintenance/status"] * 4 + ["/v3/kv/txn"] * 2  # type: ignore[attr-defined]


def test_no_leader_within_the_deadline_is_a_commit_timeout(
    members: list[ThreadingHTTPServer],
) -> None:
    leader = _member("11", ["11"])
    follower = _member("22", ["11"])  # never elects anyone else
    members.append(follower)
    gateway = Gateway(EtcdSettings((_url(leader), _url(follower)), "vha1"))
    gateway.post("/kv/range", {}, 2.0)
    _kill(leader)
    with pytest.raises(CommitTimeout):
        gateway.post("/kv/txn", {}, 0.3)
    assert "/v3/kv/txn" not in follower.paths  # type: ignore[attr-defined]


def test_a_member_that_answers_again_is_not_waited_for(
    members: list[ThreadingHTTPServer],
) -> None:
    leader = _member("11", ["11"])
    follower = _member("22", ["11"])
    members += [leader, follower]
    gateway = Gateway(EtcdSettings((_url(leader), _url(follower)), "vha1"))
    gateway.post("/kv/range", {}, 2.0)
    # member 11 found gone (a reset connection) although its process runs
    gateway._gone.add("11")
    assert gateway.post("/kv/txn", {}, 2.0)["header"] == {"member_id": "11"}
    assert gateway._gone == set()


def test_a_gone_member_probed_at_the_deadline_is_a_commit_timeout(
    members: list[ThreadingHTTPServer],
) -> None:
    leader = _member("11", ["11"])
    follower = _member("22", ["11"])
    members.append(follower)
    gateway = Gateway(EtcdSettings((_url(leader), _url(follower)), "vha1"))
    gateway.post("/kv/range", {}, 2.0)
    _kill(leader)
    # deadlines that run out anywhere on the way (status, probe of the gone member, the
    # request itself) end in CommitTimeout, never another exception
    for timeout in (0.001, 0.005, 0.01, 0.02, 0.05):
        with pytest.raises(CommitTimeout):
            gateway.post("/kv/txn", {}, timeout)
