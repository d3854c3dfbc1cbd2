"""A standby's live copy of one virtual HA's bindings: paginated read, then a watch.

:class:`EtcdReplica` reads the prefix page by page at one revision R, then follows a watch from
R + 1 in a thread; a compacted watch start triggers a full re-read. docs/cluster.md has the
design.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

import requests

from nfq_mip6.errors import StoreError
from nfq_mip6.store.database import StoredBinding
from nfq_mip6.store.etcd_gateway import (
    EtcdSettings,
    Gateway,
    KeyState,
    WatchCompacted,
    b64,
    ipv6,
    prefix_end,
    unb64,
)

__all__ = ["EtcdReplica", "ReplicaChanges"]

log = logging.getLogger("nfq_mip6.store.etcd")


@dataclass(frozen=True, slots=True)
class ReplicaChanges:
    """What changed in a replica since the last :meth:`EtcdReplica.take_changes`: the current
    record of each changed home address and SPI (``None`` = deleted). ``full``: the replica
    was (re)read whole, these are all its records and anything else is gone."""

    revision: int
    bindings: dict[IPv6Address, StoredBinding | None]
    mesg_ids: dict[int, int | None]
    full: bool = False
    received: tuple[tuple[int, float], ...] = ()
    """``(revision, time.monotonic())`` of each revision in this set when its watch event
    reached the replica (the start of its apply path; a bootstrap carries none)."""

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
        self._gateway = Gateway(settings)
        self._page = page
        self._on_change = on_change
        self._state = KeyState()
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
        self._received: list[tuple[int, float]] = []
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
        state = KeyState()
        for key, value, mod in kvs:
            state.apply(self.prefix, key, value, mod)
        with self._lock:
            self._state = state
            self.revision = revision
            self._full = True
            self._changed_bindings.clear()
            self._changed_mesg_ids.clear()
            self._received.clear()
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
                    self.revision,
                    self._changed_bindings,
                    self._changed_mesg_ids,
                    received=tuple(self._received),
                )
            self._full = False
            self._changed_bindings = {}
            self._changed_mesg_ids = {}
            self._received = []
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
                hoa = ipv6(name)
                self._changed_bindings[hoa] = self._state.bindings.get(hoa)
            elif kind == "auth":
                spi = int(name)
                self._changed_mesg_ids[spi] = self._state.mesg_ids.get(spi)
        except ValueError:
            pass  # counted as unreadable by KeyState.apply

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
                "key": b64(self.prefix),
                "range_end": b64(prefix_end(self.prefix)),
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
                    value = None if deleted else unb64(kv.get("value", ""))
                    batch.append((unb64(kv["key"]), value, int(kv["mod_revision"])))
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
                    received = time.monotonic()
                    with self._lock:
                        for key, value, mod in batch:
                            self._state.apply(self.prefix, key, value, mod)
                            self._record_change(key)
                        self._received.extend(
                            (mod, received) for mod in sorted({mod for _k, _v, mod in batch})
                        )
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
