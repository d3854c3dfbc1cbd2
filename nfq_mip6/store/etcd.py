"""The cluster backend of :class:`nfq_mip6.store.binding_store.BindingStore`: etcd v3.

Optional extra ``nfq-mip6[cluster]`` (client: ``etcd3gw``, etcd's HTTP/JSON gateway; no gRPC
or protobuf in the agent). Settings, key layout and the record codec are in
:mod:`nfq_mip6.store.etcd_gateway`; the standby's copy is :mod:`nfq_mip6.store.etcd_replica`.
docs/cluster.md has the design; in short:

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

Binding lifetimes are **not** etcd leases: expiry stays with the active instance, from the
stored absolute expiry (docs/cluster.md explains why).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any, Final

from nfq_mip6.constants import CLUSTER_TIMELINE_LENGTH
from nfq_mip6.errors import StoreError
from nfq_mip6.store.binding_store import (
    BindingCommit,
    BindingSnapshot,
    CommitConflict,
    CommitTimeout,
)
from nfq_mip6.store.database import StoredBinding
from nfq_mip6.store.etcd_gateway import (
    UNKNOWN,
    EtcdSettings,
    Gateway,
    KeyState,
    b64,
    binding_value,
    prefix_end,
    unb64,
)

__all__ = ["CompletionQueue", "EtcdBindingStore"]

log = logging.getLogger("nfq_mip6.store.etcd")


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
        self._gateway = Gateway(settings)
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
            "already_applied": 0,
        }
        self.revision = 0
        """The store's revision as last seen (a commit or the idle probe)."""
        self.reachable: bool | None = None
        """Whether the last request (commit or probe) got an answer; ``None`` = none yet."""
        self.checked_at = 0.0
        """``time.monotonic()`` of that answer or failure."""
        self.commit_log: deque[tuple[int, float]] = deque(maxlen=CLUSTER_TIMELINE_LENGTH)
        """``(revision, time.monotonic())`` of each successful transaction when etcd's answer
        arrived (the start of a standby's replication lag)."""
        self._control_gateway: Gateway | None = None
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
        state = KeyState()
        for key, value, mod in kvs:
            state.apply(self.prefix, key, value, mod)
        self._revisions.update(state.revisions)
        return state.snapshot(revision)

    def current_revision(self, timeout: float | None = None) -> int:
        """The store's revision now (a linearizable read, for a takeover's catch-up); its own
        HTTP session, so it may be called from the agent's thread."""
        if self._control_gateway is None:
            self._control_gateway = Gateway(self.settings)
        revision = self._probe(self._control_gateway, timeout or self.settings.commit_timeout)
        return revision

    def seed_revisions(self, revisions: dict[str, int]) -> None:
        """Take the keys' ``mod_revision`` from a replica (a standby that becomes active), so
        its first commits compare against what it has seen instead of re-reading. Called
        while no commit is in flight."""
        self._revisions.update(revisions)

    def _probe(self, gateway: Gateway, timeout: float) -> int:
        reply = gateway.post(
            "/kv/range",
            {"key": b64(self.prefix), "range_end": b64(prefix_end(self.prefix)),
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
            "key": b64(key),
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
                    success.append({"request_delete_range": {"key": b64(key)}})
                else:
                    success.append({"request_put": {"key": b64(key), "value": b64(value)}})
                failure.append({"request_range": {"key": b64(key)}})
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
            self.commit_log.append((revision, time.monotonic()))
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
        fresh = KeyState()
        values: dict[str, str] = {}
        for response in responses:
            kvs = response.get("response_range", {}).get("kvs", [])
            for kv in kvs:
                key, value = unb64(kv["key"]), unb64(kv.get("value", ""))
                values[key] = value
                fresh.apply(self.prefix, key, value, int(kv["mod_revision"]))
        for key in pending.keys:
            self._revisions[key] = fresh.revisions.get(key, 0)
        if all(values.get(key) == value for key, value in pending.keys.items()):
            # etcd holds exactly this commit's values (the binding record names this writer):
            # an earlier attempt of the same transaction was applied although its answer was
            # lost (a timeout, then the next endpoint). Committed, not a conflict: deciding
            # the BU again on its own result would answer 135.
            self.counters["already_applied"] += 1
            self._finish(pending, None)
            return
        self._finish(
            pending,
            CommitConflict(
                f"etcd: {', '.join(sorted(pending.keys))} changed since read",
                fresh.snapshot(revision),
            ),
        )
