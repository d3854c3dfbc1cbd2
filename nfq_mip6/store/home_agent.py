"""The Home Agent's mapper: core Binding Cache (home registrations) <-> the state database.

A binding change is committed before the BA that announces it is sent (see
:mod:`nfq_mip6.store.database` for the write-ordering contract); at start the bindings that
have not expired on the wall clock are restored with their remaining lifetime.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv6Address
from pathlib import Path
from typing import Final

from nfq_mip6.errors import StoreError
from nfq_mip6.mobility.binding import BindingCache, BindingCacheEntry, BindingState
from nfq_mip6.mobility.events import (
    BindingDeleted,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
    StoredHomeBinding,
)
from nfq_mip6.store.binding_store import BindingCommit, BindingStore, SqliteBindingStore
from nfq_mip6.store.database import StateStore, StoredBinding

__all__ = ["HomeBindingPersistence", "binding_commit", "stored_row"]

log = logging.getLogger("nfq_mip6.store")


def stored_row(entry: BindingCacheEntry, now: float, wall: float) -> StoredBinding:
    """The stored form of a home registration (absolute expiry on the wall clock)."""
    return StoredBinding.of_entry(HomeBindingPersistence.ROLE, entry, now, wall)


def binding_commit(
    cache: BindingCache,
    actions: Iterable[object],
    now: float,
    wall: float,
    mesg_ids: Mapping[int, int] | None = None,
) -> BindingCommit:
    """The :class:`BindingCommit` of one core call's ``actions`` (+ advanced timestamps)."""
    upserts: list[StoredBinding] = []
    deletions: list[IPv6Address] = []
    for action in actions:
        if isinstance(action, BindingRegistered | BindingRefreshed):
            if not action.home_registration:
                continue
            entry = cache.get(action.home_address)
            if entry is not None and entry.state is BindingState.REGISTERED:
                upserts.append(stored_row(entry, now, wall))
        elif isinstance(action, BindingDeleted | BindingExpired) and action.home_registration:
            deletions.append(action.home_address)
    return BindingCommit(tuple(upserts), tuple(deletions), dict(mesg_ids or {}))


class HomeBindingPersistence:
    """Keeps the HA core's home registrations in a :class:`StateStore`.

    The runtime calls :meth:`record` with the actions of every core call **before** carrying
    them out (so the binding is committed before its BA leaves), :meth:`save_all` at stop and
    :meth:`restore` at start. Failures are logged and counted (``errors``), never raised: the
    agent keeps serving from memory.
    """

    ROLE: Final = "ha"

    def __init__(
        self,
        store: StateStore,
        wall_clock: Callable[[], float] = time.time,
        *,
        backend: BindingStore | None = None,
    ) -> None:
        self.store = store
        self.backend: BindingStore = backend if backend is not None else SqliteBindingStore(store)
        """Where :meth:`record` commits (SQLite by default; etcd in a cluster)."""
        self._wall = wall_clock
        self.errors = 0

    def __repr__(self) -> str:
        return f"HomeBindingPersistence({self.store!r})"

    def _row(self, entry: BindingCacheEntry, now: float, wall: float) -> StoredBinding:
        return stored_row(entry, now, wall)

    def changes(
        self,
        cache: BindingCache,
        actions: Iterable[object],
        now: float,
        mesg_ids: Mapping[int, int] | None = None,
    ) -> BindingCommit:
        """The :class:`BindingCommit` of one core call's ``actions`` (+ advanced timestamps)."""
        return binding_commit(cache, actions, now, self._wall(), mesg_ids)

    def record(
        self,
        cache: BindingCache,
        actions: Iterable[object],
        now: float,
        mesg_ids: Mapping[int, int] | None = None,
    ) -> bool:
        """Commit the binding changes announced by ``actions`` together with the advanced
        RFC 4285 timestamps ``mesg_ids`` (SPI -> last accepted Mesg-ID) as one operation.
        False (logged, counted) when the store failed."""
        change = self.changes(cache, actions, now, mesg_ids)
        if not change:
            return True
        try:
            self.backend.commit(change)
        except StoreError as exc:
            self.errors += 1
            log.error(
                "could not persist %d binding change(s): %s",
                len(change.upserts) + len(change.deletions),
                exc,
            )
            return False
        return True

    def save_all(self, cache: BindingCache, now: float) -> None:
        wall = self._wall()
        rows = [
            self._row(entry, now, wall)
            for entry in cache
            if entry.state is BindingState.REGISTERED and entry.home_registration
        ]
        try:
            self.backend.replace_all(rows)
        except StoreError as exc:
            self.errors += 1
            log.error("could not save the binding cache: %s", exc)

    def restore(self, cache: BindingCache, now: float) -> list[BindingCacheEntry]:
        """Insert the stored bindings that have not expired; lifetimes continue (wall clock)."""
        wall = self._wall()
        try:
            rows = self.store.bindings(self.ROLE, wall_now=wall)
        except StoreError as exc:
            self.errors += 1
            log.error("could not read stored bindings: %s", exc)
            return []
        restored: list[BindingCacheEntry] = []
        for row in rows:
            if row.home_address in cache:
                continue
            stored = StoredHomeBinding(
                row.care_of_address,
                row.sequence,
                row.flags,
                row.lifetime,
                expires_at=now + row.remaining(wall),
                link_local=row.link_local,
                prefixes=row.prefixes,
            )
            restored.append(cache.insert_home(row.home_address, stored, now))
        return restored

    def import_json(self, path: Path) -> int:
        """One-time migration of the former ``ha-bindings.json`` (rows with ``expires_wall``);
        the file is renamed ``*.migrated``. Returns the number of rows imported."""
        if not path.exists():
            return 0
        try:
            rows = json.loads(path.read_text()).get("bindings", [])
            stored = [
                StoredBinding(
                    role=self.ROLE,
                    home_address=IPv6Address(row["home_address"]),
                    care_of_address=IPv6Address(row["care_of_address"]),
                    sequence=int(row["sequence"]),
                    flags=int(row["flags"]),
                    lifetime=int(row["lifetime"]),
                    expires_wall=float(row["expires_wall"]),
                    link_local=IPv6Address(row["link_local"]) if row.get("link_local") else None,
                )
                for row in rows
            ]
            existing = {b.home_address for b in self.store.bindings(self.ROLE)}
            self.store.apply_binding_changes(
                [row for row in stored if row.home_address not in existing]
            )
            os.replace(path, path.with_name(path.name + ".migrated"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StoreError) as exc:
            self.errors += 1
            log.warning("ignoring unreadable %s: %s", path, exc)
            return 0
        return len(stored)
