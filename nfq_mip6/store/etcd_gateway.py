"""etcd v3 through its HTTP/JSON gateway, the part the store and the replica share.

* :class:`EtcdSettings`: endpoints, the virtual HA's name (its key prefix
  ``/nfq-mip6/v1/<name>/``), timeouts, TLS files, group-commit knobs.
* The record codec: a binding as compact JSON (CoA, sequence, flags, lifetime, absolute expiry,
  link-local, prefixes, writer) under ``b/<home address>``; the RFC 4285 §6 last accepted
  Mesg-ID timestamp under ``auth/<spi>``. No key material is ever written.
* :class:`KeyState`: bindings and timestamps parsed from key/values, with each key's
  ``mod_revision``.
* :class:`Gateway`: requests to the current endpoint over a persistent connection per thread,
  failing over to the next endpoint on connection errors.

docs/cluster.md has the design.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from etcd3gw.client import Etcd3Client

from nfq_mip6.errors import StoreError
from nfq_mip6.store.binding_store import BindingSnapshot, CommitTimeout
from nfq_mip6.store.database import StoredBinding

__all__ = [
    "KEY_ROOT",
    "ROLE",
    "UNKNOWN",
    "EtcdSettings",
    "Gateway",
    "KeyState",
    "WatchCompacted",
    "b64",
    "binding_value",
    "ipv6",
    "parse_binding",
    "prefix_end",
    "unb64",
]

log = logging.getLogger("nfq_mip6.store.etcd")

KEY_ROOT: Final = "/nfq-mip6/v1/"
ROLE: Final = "ha"
_HEADERS: Final = {"Content-Type": "application/json"}
_LEADER_POLL: Final = 0.02
"""How often a member's status is read while waiting for a new leader (s)."""
UNKNOWN: Final = -1
"""Revision of a key whose last commit timed out: never equal, the next commit re-reads."""


class WatchCompacted(StoreError):
    """The watch start revision was compacted away: re-read the whole prefix."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch start revision compacted (etcd compacted at {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    """Where and how to reach etcd (from the ``[cluster]`` configuration section)."""

    endpoints: tuple[str, ...]
    """Client URLs, ``http://host:port`` or ``https://host:port``."""
    name: str
    """The virtual HA's name: its keys live under ``/nfq-mip6/v1/<name>/``."""
    commit_timeout: float = 1.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    batch_window: float = 0.001
    max_batch: int = 64
    probe_interval: float = 1.0
    """Idle store thread: read the store's revision this often (health, ``cluster status``)."""
    connect_timeout: float = 0.25
    """At most this long to open a connection to one endpoint (capped by the request's own
    deadline), so a dead member leaves time to fail over to the next one."""
    max_in_flight: int = 1
    """Transactions on their way to etcd at once (distinct keys; etcd syncs overlapping ones
    together) while fewer than ``max_batch`` commits wait; with a full batch waiting, one at
    a time (bigger batches: more commits/s). 1 (the default, measured best on a 2-CPU host
    shared with etcd: docs/cluster.md) sends from the store thread itself."""

    @property
    def prefix(self) -> str:
        return f"{KEY_ROOT}{self.name}/"


# --------------------------------------------------------------------------------------------
# Records <-> compact JSON
# --------------------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The range end covering every key that starts with ``prefix`` (last byte + 1)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


def ipv6(text: str) -> IPv6Address:
    """An address from its text, 7 times faster than ``IPv6Address(text)`` (a standby parses
    two per binding); ``ValueError`` when it is not one."""
    try:
        return IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (OSError, TypeError) as exc:
        raise ValueError(f"not an IPv6 address: {text!r}") from exc


def binding_value(row: StoredBinding, writer: str) -> str:
    record: dict[str, Any] = {
        "coa": str(row.care_of_address),
        "seq": row.sequence,
        "flags": row.flags,
        "lifetime": row.lifetime,
        "exp": round(row.expires_wall, 3),
        "w": writer,
    }
    if row.link_local is not None:
        record["ll"] = str(row.link_local)
    if row.prefixes:
        record["pfx"] = [str(p) for p in row.prefixes]
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def parse_binding(home_address: str, value: str) -> StoredBinding:
    record = json.loads(value)
    return StoredBinding(
        role=ROLE,
        home_address=ipv6(home_address),
        care_of_address=ipv6(record["coa"]),
        sequence=int(record["seq"]) & 0xFFFF,
        flags=int(record["flags"]),
        lifetime=int(record["lifetime"]),
        expires_wall=float(record["exp"]),
        link_local=ipv6(record["ll"]) if record.get("ll") else None,
        prefixes=tuple(IPv6Network(p) for p in record.get("pfx", ())),
    )


@dataclass(slots=True)
class KeyState:
    """Bindings and timestamps parsed from key/values (a snapshot or a conflict's read)."""

    bindings: dict[IPv6Address, StoredBinding] = field(default_factory=dict)
    mesg_ids: dict[int, int] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    bad: int = 0

    def apply(self, prefix: str, key: str, value: str | None, mod_revision: int) -> None:
        """One key's current value (``None`` = deleted). Unparsable records are counted."""
        rest = key[len(prefix) :]
        kind, _, name = rest.partition("/")
        try:
            if kind == "b":
                hoa = ipv6(name)
                if value is None:
                    self.bindings.pop(hoa, None)
                else:
                    self.bindings[hoa] = parse_binding(name, value)
            elif kind == "auth":
                spi = int(name)
                if value is None:
                    self.mesg_ids.pop(spi, None)
                else:
                    self.mesg_ids[spi] = int(json.loads(value)["ts"])
            else:
                return
        except (ValueError, KeyError, TypeError) as exc:
            self.bad += 1
            log.warning("ignoring an unreadable etcd record %s: %s", key, exc)
            return
        self.revisions[key] = 0 if value is None else mod_revision

    def snapshot(self, revision: int) -> BindingSnapshot:
        rows = tuple(self.bindings[hoa] for hoa in sorted(self.bindings))
        return BindingSnapshot(rows, dict(self.mesg_ids), revision)


# --------------------------------------------------------------------------------------------
# The gateway: http.client per endpoint and thread (watches: etcd3gw), failover
# --------------------------------------------------------------------------------------------


class Gateway:
    """etcd's JSON gateway at each endpoint: ``post`` over a persistent HTTP/1.1 connection
    per endpoint and thread (``http.client``), ``stream`` (watches) over ``etcd3gw``'s
    ``requests`` session. A connection error, a timeout or a 5xx answer moves on to the next
    endpoint; the one that answered stays current."""

    def __init__(self, settings: EtcdSettings) -> None:
        if not settings.endpoints:
            raise StoreError("etcd: no endpoints")
        self._settings = settings
        self._endpoints: list[tuple[str, str, int]] = []
        for url in settings.endpoints:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
                raise StoreError(f"etcd endpoint {url!r}: expected http(s)://host:port")
            self._endpoints.append((parts.scheme, parts.hostname, parts.port))
        self._clients: list[Etcd3Client] | None = None
        self._tls: ssl.SSLContext | None = None
        if any(scheme == "https" for scheme, _, _ in self._endpoints):
            self._tls = ssl.create_default_context(cafile=settings.ca_file)
            if settings.cert_file:
                self._tls.load_cert_chain(settings.cert_file, settings.key_file)
        self._local = threading.local()
        self._current = 0
        self._lock = threading.Lock()
        self._member_ids: list[str | None] = [None] * len(self._endpoints)
        """Each endpoint's etcd member id, from the header of its last answer."""
        self._gone: set[str] = set()
        """Members whose process was found gone (connection refused or reset): until another
        member names a leader that is not one of them, no request goes out (below)."""

    def client(self) -> Etcd3Client:
        """The current endpoint's ``etcd3gw`` client (watch streams)."""
        with self._lock:
            if self._clients is None:
                self._clients = [
                    Etcd3Client(
                        host=host,
                        port=port,
                        protocol=scheme,
                        ca_cert=self._settings.ca_file,
                        cert_cert=self._settings.cert_file,
                        cert_key=self._settings.key_file,
                        api_path="/v3/",  # etcd >= 3.4: no version round trip
                    )
                    for scheme, host, port in self._endpoints
                ]
            return self._clients[self._current]

    def _fail_over(self, index: int) -> None:
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self._endpoints)

    def _connections(self) -> dict[int, http.client.HTTPConnection]:
        conns: dict[int, http.client.HTTPConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def _connection(self, index: int, timeout: float) -> http.client.HTTPConnection:
        """This thread's connection to endpoint ``index``: the open one unless the server
        closed it meanwhile (readable while idle), else a new one, connected within
        ``min(timeout, connect_timeout)``."""
        conns = self._connections()
        conn = conns.get(index)
        if conn is not None and conn.sock is not None:
            if not select.select([conn.sock], [], [], 0)[0]:
                return conn
            conn.close()
        scheme, host, port = self._endpoints[index]
        connect = min(timeout, self._settings.connect_timeout)
        conn = (
            http.client.HTTPSConnection(host, port, timeout=connect, context=self._tls)
            if scheme == "https"
            else http.client.HTTPConnection(host, port, timeout=connect)
        )
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[index] = conn
        return conn

    def _drop(self, index: int) -> None:
        conn = self._connections().pop(index, None)
        if conn is not None:
            conn.close()

    def post(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request; :class:`CommitTimeout` when no endpoint answered within ``timeout``."""
        deadline = time.monotonic() + timeout
        data = json.dumps(body, separators=(",", ":")).encode()
        last: Exception | str | None = None
        for _ in range(len(self._endpoints)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._lock:
                index = self._current
            try:
                if self._gone and not self._await_leader(index, deadline):
                    last = "no leader elected yet after a member's process was found gone"
                    break
                status, payload = self._exchange(index, "/v3" + path, data, deadline)
            except (OSError, http.client.HTTPException) as exc:  # timeouts are OSErrors
                last = exc
                self._drop(index)
                member = self._member_ids[index]
                if isinstance(exc, ConnectionError) and member is not None:
                    with self._lock:  # refused or reset: the member's process is gone
                        self._gone.add(member)
                self._fail_over(index)
                continue
            if status != 200:
                text = payload.decode(errors="replace")
                if status >= 500:
                    last = f"{status} {text[:200]}"
                    self._fail_over(index)
                    continue
                raise StoreError(f"etcd {path}: {status} {text[:200]}")
            try:
                result: dict[str, Any] = json.loads(payload)
            except ValueError as exc:
                raise StoreError(f"etcd {path}: not JSON: {exc}") from exc
            self._note_member(index, result)
            return result
        raise CommitTimeout(f"etcd {path}: no answer within {timeout:.3f} s ({last})")

    def _exchange(self, index: int, path: str, data: bytes, deadline: float) -> tuple[int, bytes]:
        """One POST to endpoint ``index`` on this thread's connection: (status, body);
        TimeoutError (an OSError) once ``deadline`` has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        conn = self._connection(index, remaining)
        conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        conn.request("POST", path, data, _HEADERS)
        response = conn.getresponse()
        payload = response.read()
        if response.will_close:
            self._drop(index)
        return response.status, payload

    def _note_member(self, index: int, answer: dict[str, Any]) -> None:
        header = answer.get("header")
        if isinstance(header, dict) and header.get("member_id") is not None:
            self._member_ids[index] = str(header["member_id"])

    def _answers(self, member: str, deadline: float) -> bool:
        """The endpoint of ``member`` answers its status (its process runs after all)."""
        for index, known in enumerate(self._member_ids):
            if known == member:
                try:
                    status, _ = self._exchange(
                        index,
                        "/v3/maintenance/status",
                        b"{}",
                        min(deadline, time.monotonic() + 0.1),
                    )
                except (OSError, http.client.HTTPException):
                    self._drop(index)
                    return False
                return status == 200
        return False

    def _await_leader(self, index: int, deadline: float) -> bool:
        """After a member's process was found gone: wait (within ``deadline``) until endpoint
        ``index`` names a leader that is none of the gone members.

        A follower still takes a dead leader for alive until its election timeout and
        forwards a write (or a linearizable read) to it, where it is lost: the request would
        hang until our deadline, holding a store worker, and commits submitted during the
        election would time out although a new leader came soon enough. The member's status
        (``/v3/maintenance/status``) is answered locally, without the leader. Only a refused
        or reset connection marks a member gone (its process is not running), never a
        timeout: a member we cannot reach may well be a live leader for the others.
        OSError from the status request propagates (the caller fails over)."""
        while True:
            status, payload = self._exchange(index, "/v3/maintenance/status", b"{}", deadline)
            try:
                answer = json.loads(payload) if status == 200 else None
            except ValueError:
                answer = None
            if isinstance(answer, dict):
                self._note_member(index, answer)
                leader = str(answer.get("leader", "0"))
                if leader in self._gone and self._answers(leader, deadline):
                    with self._lock:  # it was not gone after all (a reset of another kind)
                        self._gone.discard(leader)
                with self._lock:
                    if leader != "0" and leader not in self._gone:
                        self._gone.clear()  # an elected leader: the gone ones are followers now
                        return True
            if time.monotonic() + _LEADER_POLL >= deadline:
                return False
            time.sleep(_LEADER_POLL)

    def stream(self, body: dict[str, Any], connect_timeout: float) -> requests.Response:
        """A watch stream (one JSON object per chunk)."""
        client = self.client()
        with self._lock:
            index = self._current
        try:
            return client.session.post(
                client.get_url("/watch"), json=body, stream=True, timeout=(connect_timeout, None)
            )
        except requests.RequestException as exc:
            self._fail_over(index)
            raise StoreError(f"etcd watch: {exc}") from exc

    def read_prefix(
        self, prefix: str, timeout: float, page: int = 1000
    ) -> tuple[int, list[tuple[str, str, int]]]:
        """All keys under ``prefix`` at one revision, ``page`` keys per request."""
        end = b64(prefix_end(prefix))
        key = prefix
        revision = 0
        out: list[tuple[str, str, int]] = []
        while True:
            body: dict[str, Any] = {"key": b64(key), "range_end": end, "limit": page}
            if revision:
                body["revision"] = revision
            reply = self.post("/kv/range", body, timeout)
            if not revision:
                revision = int(reply["header"]["revision"])
            kvs = reply.get("kvs", [])
            for kv in kvs:
                out.append((unb64(kv["key"]), unb64(kv.get("value", "")), int(kv["mod_revision"])))
            if not reply.get("more") or not kvs:
                return revision, out
            key = out[-1][0] + "\0"
