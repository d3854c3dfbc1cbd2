"""The cluster backend of :class:`nfq_mip6.store.binding_store.BindingStore`: etcd v3.

Optional extra ``nfq-mip6[cluster]`` (client: ``etcd3gw``, etcd's HTTP/JSON gateway; no gRPC
or protobuf in the agent). docs/cluster.md has the design; in short:

* **Keys** under one prefix per virtual HA ``/nfq-mip6/v1/<name>/``: ``b/<home address>`` holds
  a binding as compact JSON (CoA, sequence, flags, lifetime, absolute expiry, link-local,
  prefixes, writer), ``auth/<spi>`` the RFC 4285 §6 last accepted Mesg-ID timestamp. No key
  material is ever written.
* **Commit = one compare-and-swap transaction**: every key the commit writes must still have
  the ``mod_revision`` this instance last saw (0 = absent), otherwise nothing is written, the
  keys are read back in the same round trip and :class:`CommitConflict` carries the fresh state
  (the BU is decided again on it: 135 or 144 become possible).
* **Store thread**: :meth:`EtcdBindingStore.submit` queues a commit and returns at once; the
  thread gathers what arrives within ``batch_window`` (1 ms) into one transaction (up to
  ``max_batch``), at most one commit per home address / SPI in flight (a later one waits for
  the next round, so each key's order is kept). A batch whose compare fails is retried one
  commit at a time. Results come back on :meth:`completions` (its :meth:`fileno` becomes
  readable), so the agent's selector loop never blocks on etcd. :meth:`commit` is the blocking
  form (:class:`BindingStore`).
* **Timeout**: a commit not confirmed within ``commit_timeout`` fails with
  :class:`CommitTimeout` (no BA; the MN retransmits). Its keys' revisions become unknown, so
  the next commit for them conflicts and is decided on a fresh read.
* **Replica** (standbys): :class:`EtcdReplica` reads the prefix page by page at one revision,
  then watches from the next revision; a compacted watch start triggers a full re-read.

Binding lifetimes are **not** etcd leases: expiry stays with the active instance, from the
stored absolute expiry (docs/cluster.md explains why).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client

from nfq_mip6.errors import StoreError
from nfq_mip6.store.binding_store import (
    BindingCommit,
    BindingSnapshot,
    CommitConflict,
    CommitTimeout,
)
from nfq_mip6.store.database import StoredBinding

__all__ = [
    "KEY_ROOT",
    "EtcdBindingStore",
    "EtcdReplica",
    "EtcdSettings",
    "ReplicaChanges",
    "WatchCompacted",
]

log = logging.getLogger("nfq_mip6.store.etcd")

KEY_ROOT: Final = "/nfq-mip6/v1/"
ROLE: Final = "ha"
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
    max_in_flight: int = 2
    """Transactions on their way to etcd at once (distinct keys; etcd syncs overlapping ones
    together) while fewer than ``max_batch`` commits wait; with a full batch waiting, one at
    a time (bigger batches: more commits/s). docs/cluster.md has the measurements."""

    @property
    def prefix(self) -> str:
        return f"{KEY_ROOT}{self.name}/"


# --------------------------------------------------------------------------------------------
# Records <-> compact JSON
# --------------------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    """The range end covering every key that starts with ``prefix`` (last byte + 1)."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


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
        home_address=IPv6Address(home_address),
        care_of_address=IPv6Address(record["coa"]),
        sequence=int(record["seq"]) & 0xFFFF,
        flags=int(record["flags"]),
        lifetime=int(record["lifetime"]),
        expires_wall=float(record["exp"]),
        link_local=IPv6Address(record["ll"]) if record.get("ll") else None,
        prefixes=tuple(IPv6Network(p) for p in record.get("pfx", ())),
    )


@dataclass(slots=True)
class _State:
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
                hoa = IPv6Address(name)
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
# The gateway: etcd3gw clients, one per endpoint, failover on connection errors
# --------------------------------------------------------------------------------------------


class _Gateway:
    def __init__(self, settings: EtcdSettings) -> None:
        if not settings.endpoints:
            raise StoreError("etcd: no endpoints")
        self._clients: list[Etcd3Client] = []
        for url in settings.endpoints:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
                raise StoreError(f"etcd endpoint {url!r}: expected http(s)://host:port")
            self._clients.append(
                Etcd3Client(
                    host=parts.hostname,
                    port=parts.port,
                    protocol=parts.scheme,
                    ca_cert=settings.ca_file,
                    cert_cert=settings.cert_file,
                    cert_key=settings.key_file,
                    api_path="/v3/",  # etcd >= 3.4: no version round trip
                )
            )
        self._current = 0
        self._lock = threading.Lock()

    def client(self) -> Etcd3Client:
        with self._lock:
            return self._clients[self._current]

    def _fail_over(self, failed: Etcd3Client) -> None:
        with self._lock:
            if self._clients[self._current] is failed:
                self._current = (self._current + 1) % len(self._clients)

    def post(self, path: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request; :class:`CommitTimeout` when no endpoint answered within ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        for _ in range(len(self._clients)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            client = self.client()
            try:
                response = client.session.post(client.get_url(path), json=body, timeout=remaining)
            except requests.Timeout as exc:
                last = exc
                self._fail_over(client)
                continue
            except requests.RequestException as exc:
                last = exc
                self._fail_over(client)
                continue
            if response.status_code != 200:
                if response.status_code >= 500:
                    last = etcd_errors.Etcd3Exception(response.text, response.reason)
                    self._fail_over(client)
                    continue
                raise StoreError(f"etcd {path}: {response.status_code} {response.text[:200]}")
            try:
                result: dict[str, Any] = response.json()
            except ValueError as exc:
                raise StoreError(f"etcd {path}: not JSON: {exc}") from exc
            return result
        raise CommitTimeout(f"etcd {path}: no answer within {timeout:.3f} s ({last})")

    def stream(self, body: dict[str, Any], connect_timeout: float) -> requests.Response:
        """A watch stream (one JSON object per chunk)."""
        client = self.client()
        try:
            return client.session.post(
                client.get_url("/watch"), json=body, stream=True, timeout=(connect_timeout, None)
            )
        except requests.RequestException as exc:
            self._fail_over(client)
            raise StoreError(f"etcd watch: {exc}") from exc

    def read_prefix(
        self, prefix: str, timeout: float, page: int = 1000
    ) -> tuple[int, list[tuple[str, str, int]]]:
        """All keys under ``prefix`` at one revision, ``page`` keys per request."""
        end = _b64(_prefix_end(prefix))
        key = prefix
        revision = 0
        out: list[tuple[str, str, int]] = []
        while True:
            body: dict[str, Any] = {"key": _b64(key), "range_end": end, "limit": page}
            if revision:
                body["revision"] = revision
            reply = self.post("/kv/range", body, timeout)
            if not revision:
                revision = int(reply["header"]["revision"])
            kvs = reply.get("kvs", [])
            for kv in kvs:
                out.append(
                    (_unb64(kv["key"]), _unb64(kv.get("value", "")), int(kv["mod_revision"]))
                )
            if not reply.get("more") or not kvs:
                return revision, out
            key = out[-1][0] + "\0"


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


_WAKE: Final = object()
"""Put on the store thread's queue by a worker whose batch finished (its keys are free)."""


@dataclass(slots=True)
class _Pending:
    change: BindingCommit
    token: object
    deadline: float
    keys: dict[str, str | None]
    """key -> new value (``None`` = delete)."""
    done: threading.Event | None = None
    error: StoreError | None = None


class CompletionQueue:
    """Commit results for the agent's loop: :meth:`fileno` becomes readable when
    :meth:`drain` has something; each item is ``(token, None | StoreError)``."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._items: deque[tuple[object, StoreError | None]] = deque()

    def fileno(self) -> int:
        return self._read

    def put(self, token: object, error: StoreError | None) -> None:
        self._items.append((token, error))
        with contextlib.suppress(BlockingIOError):  # full: already readable
            os.write(self._write, b"\0")

    def drain(self) -> list[tuple[object, StoreError | None]]:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        out: list[tuple[object, StoreError | None]] = []
        while self._items:
            out.append(self._items.popleft())
        return out

    def close(self) -> None:
        for fd in (self._read, self._write):
            os.close(fd)


class EtcdBindingStore:
    """:class:`BindingStore` on etcd: CAS transactions, group commit in a store thread."""

    def __init__(self, settings: EtcdSettings, *, writer: str | None = None) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self.writer = writer or f"{os.uname().nodename}/{os.getpid()}"
        self._gateway = _Gateway(settings)
        self._revisions: dict[str, int] = {}
        self._queue: queue.SimpleQueue[_Pending | object | None] = queue.SimpleQueue()
        self._completions = CompletionQueue()
        self._closed = False
        self.counters: dict[str, int] = {
            "commits": 0,
            "transactions": 0,
            "batched": 0,
            "conflicts": 0,
            "timeouts": 0,
            "errors": 0,
            "probes_failed": 0,
        }
        self.revision = 0
        """The store's revision as last seen (a commit or the idle probe)."""
        self.reachable: bool | None = None
        """Whether the last request (commit or probe) got an answer; ``None`` = none yet."""
        self.checked_at = 0.0
        """``time.monotonic()`` of that answer or failure."""
        self._control_gateway: _Gateway | None = None
        # transactions in flight (worker threads) and the keys they hold
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self._busy: set[str] = set()
        self._workers = ThreadPoolExecutor(
            max_workers=max(1, settings.max_in_flight), thread_name_prefix="etcd-txn"
        )  # used when more than one transaction may be in flight
        self._thread = threading.Thread(target=self._run, name="etcd-store", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"EtcdBindingStore({self.prefix!r}, {list(self.settings.endpoints)})"

    # -------------------------------------------------------------------- keys and values
    def binding_key(self, home_address: IPv6Address) -> str:
        return f"{self.prefix}b/{home_address}"

    def auth_key(self, spi: int) -> str:
        return f"{self.prefix}auth/{spi}"

    def _keys(self, change: BindingCommit) -> dict[str, str | None]:
        keys: dict[str, str | None] = {}
        for row in change.upserts:
            keys[self.binding_key(row.home_address)] = binding_value(row, self.writer)
        for hoa in change.deletions:
            keys[self.binding_key(hoa)] = None
        for spi, ts in change.mesg_ids.items():
            keys[self.auth_key(spi)] = json.dumps({"ts": ts}, separators=(",", ":"))
        return keys

    # -------------------------------------------------------------------- public API
    def completions(self) -> CompletionQueue:
        return self._completions

    def submit(self, change: BindingCommit, token: object) -> None:
        """Queue ``change``; its result comes back on :meth:`completions` with ``token``."""
        self._enqueue(change, token, None)

    def commit(self, change: BindingCommit) -> None:
        """The blocking form (:class:`BindingStore`): returns once etcd committed."""
        if not change:
            return
        done = threading.Event()
        pending = self._enqueue(change, None, done)
        done.wait(self.settings.commit_timeout + 1.0)
        if not done.is_set():
            raise CommitTimeout("etcd store thread did not answer")
        if pending.error is not None:
            raise pending.error

    def snapshot(self) -> BindingSnapshot:
        """Every binding and timestamp under the prefix, at one revision (paginated)."""
        revision, kvs = self._gateway.read_prefix(self.prefix, self.settings.commit_timeout * 5)
        state = _State()
        for key, value, mod in kvs:
            state.apply(self.prefix, key, value, mod)
        self._revisions.update(state.revisions)
        return state.snapshot(revision)

    def current_revision(self, timeout: float | None = None) -> int:
        """The store's revision now (a linearizable read, for a takeover's catch-up); its own
        HTTP session, so it may be called from the agent's thread."""
        if self._control_gateway is None:
            self._control_gateway = _Gateway(self.settings)
        revision = self._probe(self._control_gateway, timeout or self.settings.commit_timeout)
        return revision

    def seed_revisions(self, revisions: dict[str, int]) -> None:
        """Take the keys' ``mod_revision`` from a replica (a standby that becomes active), so
        its first commits compare against what it has seen instead of re-reading. Called
        while no commit is in flight."""
        self._revisions.update(revisions)

    def _probe(self, gateway: _Gateway, timeout: float) -> int:
        reply = gateway.post(
            "/kv/range",
            {"key": _b64(self.prefix), "range_end": _b64(_prefix_end(self.prefix)),
             "count_only": True},
            timeout,
        )  # fmt: skip
        revision = int(reply["header"]["revision"])
        self._seen(revision)
        return revision

    def _seen(self, revision: int | None) -> None:
        if revision is None:
            self.reachable = False
        else:
            self.reachable = True
            self.revision = max(self.revision, revision)
        self.checked_at = time.monotonic()

    def replace_all(self, rows: Iterable[StoredBinding]) -> None:
        """Nothing: every change was committed by CAS already; overwriting the prefix at stop
        could undo a newer commit of the instance that took over."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=self.settings.commit_timeout + 2.0)
            self._workers.shutdown(wait=False)
            self._completions.close()

    # -------------------------------------------------------------------- store thread
    def _enqueue(
        self, change: BindingCommit, token: object, done: threading.Event | None
    ) -> _Pending:
        if self._closed:
            raise StoreError("etcd store closed")
        pending = _Pending(
            change,
            token,
            time.monotonic() + self.settings.commit_timeout,
            self._keys(change),
            done,
        )
        self._queue.put(pending)
        return pending

    def _finish(self, pending: _Pending, error: StoreError | None) -> None:
        pending.error = error
        with self._flight_lock:
            if error is None:
                self.counters["commits"] += 1
            elif isinstance(error, CommitConflict):
                self.counters["conflicts"] += 1
            elif isinstance(error, CommitTimeout):
                self.counters["timeouts"] += 1
            else:
                self.counters["errors"] += 1
        if pending.done is not None:
            pending.done.set()
        else:
            self._completions.put(pending.token, error)

    def _run(self) -> None:
        """Gather what arrives within ``batch_window`` and hand batches of distinct keys to
        the workers, at most ``max_in_flight`` at once; a key stays busy until its batch is
        answered, so commits on one key keep their order."""
        held: list[_Pending] = []
        stopping = False
        while True:
            with self._flight_lock:
                idle = self._in_flight == 0
            if stopping and idle:
                break
            try:
                item = self._queue.get(timeout=self.settings.probe_interval)
            except queue.Empty:
                if idle and not held:
                    self._idle_probe()
                continue
            incoming: list[_Pending] = []
            if item is None:
                stopping = True
            elif isinstance(item, _Pending):
                incoming.append(item)
            window_end = time.monotonic() + self.settings.batch_window
            while not stopping and len(incoming) + len(held) < self.settings.max_batch * 4:
                remaining = window_end - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif isinstance(item, _Pending):
                    incoming.append(item)
            held += incoming
            if stopping:
                for pending in held:
                    self._finish(pending, StoreError("etcd store closed"))
                held = []
                continue
            while held:
                # a backlog of a full batch or more: one transaction at a time, as big as it
                # gets (throughput); less: overlap them (latency)
                limit = self.settings.max_in_flight if len(held) < self.settings.max_batch else 1
                with self._flight_lock:
                    if self._in_flight >= max(1, limit):
                        break
                    batch, held = self._pick(held, self._busy)
                    if not batch:
                        break
                    self._in_flight += 1
                    for pending in batch:
                        self._busy.update(pending.keys)
                if self.settings.max_in_flight <= 1:
                    self._work(batch)  # one at a time: no hop to a worker thread
                else:
                    self._workers.submit(self._work, batch)

    def _work(self, batch: list[_Pending]) -> None:
        try:
            self._commit_batch(batch)
        except Exception as exc:  # a bug must not strand the loop waiting for a result
            log.exception("etcd store worker")
            for pending in batch:
                if pending.error is None and (pending.done is None or not pending.done.is_set()):
                    self._finish(pending, StoreError(f"etcd store: {exc}"))
        finally:
            with self._flight_lock:
                self._in_flight -= 1
                for pending in batch:
                    self._busy.difference_update(pending.keys)
            self._queue.put(_WAKE)

    def _idle_probe(self) -> None:
        try:
            self._probe(self._gateway, min(self.settings.commit_timeout, 1.0))
        except StoreError as exc:
            self.counters["probes_failed"] += 1
            if self.reachable is not False:
                log.warning("etcd store %s unreachable: %s", self.prefix, exc)
            self._seen(None)
        except (KeyError, TypeError, ValueError) as exc:
            self.counters["probes_failed"] += 1
            self._seen(None)
            log.warning("etcd store %s: unreadable answer: %s", self.prefix, exc)

    def _pick(
        self, candidates: list[_Pending], in_flight: set[str] | None = None
    ) -> tuple[list[_Pending], list[_Pending]]:
        """One batch (distinct keys, none of them ``in_flight``, at most ``max_batch``); the
        rest, in order, waits."""
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        busy: set[str] = set(in_flight or ())
        for pending in candidates:
            if len(batch) < self.settings.max_batch and busy.isdisjoint(pending.keys):
                batch.append(pending)
            else:
                rest.append(pending)
            busy.update(pending.keys)  # a held commit also holds back later ones on its keys
        return batch, rest

    def _compare(self, key: str) -> dict[str, Any]:
        return {
            "key": _b64(key),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": str(self._revisions.get(key, 0)),
        }

    def _txn(self, pendings: list[_Pending]) -> tuple[bool, int, list[dict[str, Any]]]:
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        failure: list[dict[str, Any]] = []
        for pending in pendings:
            for key, value in pending.keys.items():
                compare.append(self._compare(key))
                if value is None:
                    success.append({"request_delete_range": {"key": _b64(key)}})
                else:
                    success.append({"request_put": {"key": _b64(key), "value": _b64(value)}})
                failure.append({"request_range": {"key": _b64(key)}})
        timeout = min(p.deadline for p in pendings) - time.monotonic()
        if timeout <= 0:
            raise CommitTimeout("commit deadline passed in the queue")
        try:
            reply = self._gateway.post(
                "/kv/txn", {"compare": compare, "success": success, "failure": failure}, timeout
            )
        except CommitTimeout:
            self._seen(None)
            raise
        self.counters["transactions"] += 1
        self._seen(int(reply["header"]["revision"]))
        return (
            bool(reply.get("succeeded")),
            int(reply["header"]["revision"]),
            reply.get("responses", []),
        )

    def _commit_batch(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        try:
            ok, revision, responses = self._txn(batch)
        except CommitTimeout as exc:
            for pending in batch:
                for key in pending.keys:
                    self._revisions[key] = UNKNOWN
                self._finish(pending, CommitTimeout(str(exc)))
            return
        except StoreError as exc:
            for pending in batch:
                self._finish(pending, exc)
            return
        if ok:
            if len(batch) > 1:
                self.counters["batched"] += len(batch)
            for pending in batch:
                for key, value in pending.keys.items():
                    self._revisions[key] = 0 if value is None else revision
                self._finish(pending, None)
            return
        if len(batch) > 1:  # all-or-nothing: find who conflicts, commit the others
            for pending in batch:
                self._commit_batch([pending])
            return
        (pending,) = batch
        fresh = _State()
        for response in responses:
            kvs = response.get("response_range", {}).get("kvs", [])
            for kv in kvs:
                fresh.apply(
                    self.prefix, _unb64(kv["key"]), _unb64(kv.get("value", "")),
                    int(kv["mod_revision"]),
                )  # fmt: skip
        for key in pending.keys:
            self._revisions[key] = fresh.revisions.get(key, 0)
        self._finish(
            pending,
            CommitConflict(
                f"etcd: {', '.join(sorted(pending.keys))} changed since read",
                fresh.snapshot(revision),
            ),
        )


# --------------------------------------------------------------------------------------------
# Replica (standby): paginated bootstrap + watch from the next revision
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaChanges:
    """What changed in a replica since the last :meth:`EtcdReplica.take_changes`: the current
    record of each changed home address and SPI (``None`` = deleted). ``full``: the replica
    was (re)read whole, these are all its records and anything else is gone."""

    revision: int
    bindings: dict[IPv6Address, StoredBinding | None]
    mesg_ids: dict[int, int | None]
    full: bool = False

    def __bool__(self) -> bool:
        return self.full or bool(self.bindings or self.mesg_ids)


class EtcdReplica:
    """A live copy of one virtual HA's bindings and timestamps, for a standby instance.

    :meth:`start` reads the prefix (paginated, at one revision R) and then follows a watch
    from R + 1 in a thread; if the watch start was compacted away, the prefix is read again
    (``resyncs``). ``on_change(replica)`` is called from that thread after every applied batch.
    """

    def __init__(
        self,
        settings: EtcdSettings,
        on_change: Callable[[EtcdReplica], None] | None = None,
        *,
        page: int = 1000,
    ) -> None:
        self.settings = settings
        self.prefix = settings.prefix
        self._gateway = _Gateway(settings)
        self._page = page
        self._on_change = on_change
        self._state = _State()
        self.revision = 0
        self.resyncs = 0
        self.events = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._response: requests.Response | None = None
        self._thread: threading.Thread | None = None
        # What changed since take_changes(), for a consumer in another thread; the pipe
        # becomes readable when there is something (a selectors loop watches it).
        self._changed_bindings: dict[IPv6Address, StoredBinding | None] = {}
        self._changed_mesg_ids: dict[int, int | None] = {}
        self._full = False
        self._notify_r, self._notify_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    @property
    def bindings(self) -> dict[IPv6Address, StoredBinding]:
        with self._lock:
            return dict(self._state.bindings)

    @property
    def mesg_ids(self) -> dict[int, int]:
        with self._lock:
            return dict(self._state.mesg_ids)

    def bootstrap(self) -> int:
        """Read the whole prefix at one revision; returns that revision."""
        revision, kvs = self._gateway.read_prefix(
            self.prefix, self.settings.commit_timeout * 5, self._page
        )
        state = _State()
        for key, value, mod in kvs:
            state.apply(self.prefix, key, value, mod)
        with self._lock:
            self._state = state
            self.revision = revision
            self._full = True
            self._changed_bindings.clear()
            self._changed_mesg_ids.clear()
            self._lock.notify_all()
        self._notify()
        return revision

    # ------------------------------------------------------------- changes for a consumer
    def fileno(self) -> int:
        """Readable when :meth:`take_changes` has something."""
        return self._notify_r

    def _notify(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._notify_w, b"\0")

    def take_changes(self) -> ReplicaChanges:
        """What changed since the last call (records as they are now)."""
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._notify_r, 4096):
                pass
        with self._lock:
            if self._full:
                changes = ReplicaChanges(
                    self.revision,
                    dict(self._state.bindings),
                    dict(self._state.mesg_ids),
                    full=True,
                )
            else:
                changes = ReplicaChanges(
                    self.revision, self._changed_bindings, self._changed_mesg_ids
                )
            self._full = False
            self._changed_bindings = {}
            self._changed_mesg_ids = {}
        return changes

    def key_revisions(self) -> dict[str, int]:
        """``mod_revision`` of every key the replica holds (to seed a store's compares)."""
        with self._lock:
            return dict(self._state.revisions)

    def _record_change(self, key: str) -> None:
        """Under the lock, after ``key`` was applied to the state."""
        kind, _, name = key[len(self.prefix) :].partition("/")
        try:
            if kind == "b":
                hoa = IPv6Address(name)
                self._changed_bindings[hoa] = self._state.bindings.get(hoa)
            elif kind == "auth":
                spi = int(name)
                self._changed_mesg_ids[spi] = self._state.mesg_ids.get(spi)
        except ValueError:
            pass  # counted as unreadable by _State.apply

    def start_in_background(self) -> None:
        """Bootstrap (retried until it works) and follow, all in the replica's thread."""

        def run() -> None:
            self._retry(self.bootstrap)
            self._follow()

        self._thread = threading.Thread(target=run, name="etcd-replica", daemon=True)
        self._thread.start()

    def start(self) -> None:
        self.bootstrap()
        self.start_following()

    def start_following(self) -> None:
        """Watch from the bootstrap revision + 1 in a thread."""
        self._thread = threading.Thread(target=self._follow, name="etcd-replica", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Closing the response from this thread would wait for the reader's lock: shut
            # the socket down instead, the watch thread's read returns and closes it.
            try:
                fd = response.raw._fp.fileno()
                with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (AttributeError, OSError, ValueError):
                pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def close(self) -> None:
        """:meth:`stop`, then release the change pipe."""
        self.stop()
        for fd in (self._notify_r, self._notify_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait_for(self, revision: int, timeout: float) -> bool:
        """True once the replica has applied ``revision`` (or later)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.revision >= revision, timeout)

    def watch(self, start_revision: int) -> Iterator[tuple[int, list[tuple[str, str | None, int]]]]:
        """Batches of (revision, [(key, value or None, mod_revision)]) from ``start_revision``;
        :class:`WatchCompacted` when that revision is gone. Ends when :meth:`stop` is called."""
        body = {
            "create_request": {
                "key": _b64(self.prefix),
                "range_end": _b64(_prefix_end(self.prefix)),
                "start_revision": start_revision,
            }
        }
        response = self._gateway.stream(body, self.settings.commit_timeout * 5)
        self._response = response
        try:
            if response.status_code != 200:
                raise StoreError(f"etcd watch: {response.status_code} {response.text[:200]}")
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                compact = int(result.get("compact_revision", 0) or 0)
                if compact:
                    raise WatchCompacted(compact)
                if result.get("canceled"):
                    raise StoreError(f"etcd watch canceled: {result.get('cancel_reason', '')}")
                events = result.get("events", [])
                if not events:
                    continue
                batch: list[tuple[str, str | None, int]] = []
                for event in events:
                    kv = event["kv"]
                    deleted = event.get("type") == "DELETE"
                    value = None if deleted else _unb64(kv.get("value", ""))
                    batch.append((_unb64(kv["key"]), value, int(kv["mod_revision"])))
                yield int(result["header"]["revision"]), batch
        except (requests.RequestException, AttributeError, ValueError) as exc:
            if self._stop.is_set():
                return
            raise StoreError(f"etcd watch: {exc}") from exc
        finally:
            response.close()

    def _follow(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                for revision, batch in self.watch(self.revision + 1):
                    with self._lock:
                        for key, value, mod in batch:
                            self._state.apply(self.prefix, key, value, mod)
                            self._record_change(key)
                        self.events += len(batch)
                        self.revision = max(self.revision, revision)
                        self._lock.notify_all()
                    self._notify()
                    failures = 0
                    if self._on_change is not None:
                        self._on_change(self)
            except WatchCompacted as exc:
                log.warning("replica %s: %s; reading the prefix again", self.prefix, exc)
                self.resyncs += 1
                self._retry(self.bootstrap)
            except StoreError as exc:
                if self._stop.is_set():
                    return
                failures += 1
                if failures == 1 or failures % 50 == 0:  # etcd down: not 5 lines a second
                    log.warning(
                        "replica %s: %s; watching again (%d failure(s) in a row)",
                        self.prefix, exc, failures,
                    )  # fmt: skip
                self._stop.wait(min(0.2 * failures, 2.0))

    def _retry(self, action: Callable[[], object]) -> None:
        for attempt in itertools.count():
            if self._stop.is_set():
                return
            try:
                action()
                return
            except StoreError as exc:
                log.warning("replica %s: %s (attempt %d)", self.prefix, exc, attempt + 1)
                self._stop.wait(min(0.2 * (attempt + 1), 2.0))
