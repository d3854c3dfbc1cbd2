"""The Home Agent's binding state behind one interface (:class:`BindingStore`).

What the HA commits before a BA leaves (RFC 6275 §10.3.1: the Binding Cache entry exists when
the BA says so) is one :class:`BindingCommit`: the home registrations created, refreshed or
removed by one core call, plus the RFC 4285 §6 last accepted Mesg-ID timestamp of each
security association (SPI) that call advanced. Both go in **one** operation, so a replay of a
BU whose binding was committed is refused after a restart or on another instance.

Implementations:

* :class:`SqliteBindingStore`: the single-node default, one SQLite transaction in the agent's
  state database (:mod:`nfq_mip6.store.database`);
* :class:`nfq_mip6.store.etcd.EtcdBindingStore`: the cluster backend (optional extra
  ``nfq-mip6[cluster]``), one compare-and-swap transaction per commit (docs/cluster.md).

A failure is a :class:`nfq_mip6.errors.StoreError` (:class:`CommitConflict` when another
writer changed a key since this instance read it, :class:`CommitTimeout` when the store did
not answer in time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Final, Protocol

from nfq_mip6.errors import StoreError
from nfq_mip6.store.database import StateStore, StoredBinding

__all__ = [
    "TIMESTAMPS_KEY",
    "BindingCommit",
    "BindingSnapshot",
    "BindingStore",
    "CommitConflict",
    "CommitTimeout",
    "SqliteBindingStore",
]

ROLE: Final = "ha"
TIMESTAMPS_KEY: Final = "auth.timestamps"
"""Key of the RFC 4285 timestamps in the SQLite ``values`` table (kept from schema 1)."""


class CommitConflict(StoreError):
    """Another writer changed a binding or Mesg-ID key of the commit since it was read: the
    BU is decided again on the fresh state (:attr:`fresh`)."""

    def __init__(self, message: str, fresh: BindingSnapshot | None = None) -> None:
        super().__init__(message)
        self.fresh = fresh


class CommitTimeout(StoreError):
    """The store did not confirm the commit in time: no BA is sent (the MN retransmits,
    RFC 6275 §11.8). The commit may or may not have been applied."""


@dataclass(frozen=True, slots=True)
class BindingCommit:
    """One core call's binding changes + advanced RFC 4285 timestamps (one operation)."""

    upserts: tuple[StoredBinding, ...] = ()
    deletions: tuple[IPv6Address, ...] = ()
    mesg_ids: Mapping[int, int] = field(default_factory=dict)
    """SPI -> last accepted Mesg-ID timestamp (only the SPIs this commit advanced)."""

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletions or self.mesg_ids)

    def home_addresses(self) -> set[IPv6Address]:
        return {row.home_address for row in self.upserts} | set(self.deletions)


@dataclass(frozen=True, slots=True)
class BindingSnapshot:
    """The whole stored state: bindings (expired ones included), timestamps, store revision
    (0 for SQLite, which has none)."""

    bindings: tuple[StoredBinding, ...]
    mesg_ids: dict[int, int]
    revision: int = 0


class BindingStore(Protocol):
    """Where the HA's binding state lives; every method raises only :class:`StoreError`."""

    def commit(self, change: BindingCommit) -> None:
        """Apply ``change`` as one operation; return only once it is durable."""

    def snapshot(self) -> BindingSnapshot:
        """Read the whole state (at one revision)."""

    def replace_all(self, rows: Iterable[StoredBinding]) -> None:
        """The stored bindings become ``rows`` (the SQLite agent's stop-time save)."""

    def close(self) -> None: ...


class SqliteBindingStore:
    """Today's single-node behaviour: bindings rows + the ``auth.timestamps`` value, written in
    one SQLite transaction of :class:`StateStore`."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._timestamps: dict[int, int] | None = None

    def __repr__(self) -> str:
        return f"SqliteBindingStore({self.store!r})"

    def _stored_timestamps(self) -> dict[int, int]:
        if self._timestamps is None:
            saved = self.store.get_value(TIMESTAMPS_KEY, {})
            try:
                self._timestamps = {int(spi): int(ts) for spi, ts in dict(saved).items()}
            except (TypeError, ValueError):
                self._timestamps = {}
        return self._timestamps

    def commit(self, change: BindingCommit) -> None:
        if not change:
            return
        values = None
        if change.mesg_ids:
            merged = dict(self._stored_timestamps())
            merged.update(change.mesg_ids)
            values = {TIMESTAMPS_KEY: {str(spi): ts for spi, ts in sorted(merged.items())}}
        self.store.apply_binding_changes(
            change.upserts, [(ROLE, hoa) for hoa in change.deletions], values
        )
        if values is not None:
            self._timestamps = merged

    def snapshot(self) -> BindingSnapshot:
        return BindingSnapshot(
            tuple(self.store.bindings(ROLE)), dict(self._stored_timestamps()), revision=0
        )

    def replace_all(self, rows: Iterable[StoredBinding]) -> None:
        self.store.replace_bindings(ROLE, rows)

    def close(self) -> None:
        self.store.close()
