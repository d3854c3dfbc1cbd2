"""The Correspondent Node's mapper: Kcn, the nonce table and the CN's bindings <-> the state
database, so that keygen tokens handed out before a restart stay valid (RFC 6275 §5.2.3,
§5.2.7).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from typing import Final

from nfq_mip6.errors import StoreError
from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.correspondent import CorrespondentNode, NodeKeyState
from nfq_mip6.mobility.events import (
    Action,
    BindingDeleted,
    BindingExpired,
    BindingRefreshed,
    BindingRegistered,
)
from nfq_mip6.store.database import StateStore, StoredBinding, StoredNonce

__all__ = ["CorrespondentPersistence"]

log = logging.getLogger("nfq_mip6.store")


class CorrespondentPersistence:
    """Keeps a CN core's Kcn, nonce table and binding cache in a :class:`StateStore`.

    The runtime calls :meth:`record` with the actions of every core call **before** carrying
    them out: a new nonce is committed before the HoT/CoT whose token depends on it leaves,
    and a binding before its BA. :meth:`restore` at start; :meth:`forget_bindings` after a
    clean stop (the runtime has told every bound MN with a Binding Error status 1). Failures
    are logged and counted (``errors``), never raised.
    """

    ROLE: Final = "cn"

    def __init__(self, store: StateStore, wall_clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall_clock
        self._saved_index: tuple[bytes, int, frozenset[int]] | None = None
        self.errors = 0

    def __repr__(self) -> str:
        return f"CorrespondentPersistence({self.store!r})"

    def _save_keys(self, core: CorrespondentNode, now: float) -> None:
        state = core.export_key_state(now)
        signature = (state.node_key, state.current_index, frozenset(i for i, _, _ in state.nonces))
        if signature == self._saved_index:
            return
        wall = self._wall()
        nonces = [StoredNonce(index, nonce, wall - age) for index, nonce, age in state.nonces]
        try:
            self.store.save_node_state(self.ROLE, state.node_key, state.current_index, nonces, wall)
        except StoreError as exc:
            self.errors += 1
            log.error("could not persist the node key and nonces: %s", exc)
            return
        self._saved_index = signature

    def record(self, core: CorrespondentNode, actions: Iterable[object], now: float) -> None:
        """Commit a new nonce and the binding changes announced by ``actions``."""
        self._save_keys(core, now)
        upserts: list[StoredBinding] = []
        deletions: list[tuple[str, IPv6Address]] = []
        wall = self._wall()
        for action in actions:
            if isinstance(action, BindingRegistered | BindingRefreshed):
                if action.home_registration:
                    continue
                entry = core.cache.get(action.home_address)
                if entry is not None and entry.state is BindingState.REGISTERED:
                    upserts.append(StoredBinding.of_entry(self.ROLE, entry, now, wall))
            elif (
                isinstance(action, BindingDeleted | BindingExpired) and not action.home_registration
            ):
                deletions.append((self.ROLE, action.home_address))
        if not upserts and not deletions:
            return
        try:
            self.store.apply_binding_changes(upserts, deletions)
        except StoreError as exc:
            self.errors += 1
            log.error("could not persist %d CN binding change(s): %s", len(upserts), exc)

    def restore(self, core: CorrespondentNode, now: float) -> list[Action]:
        """Give ``core`` the stored Kcn and nonces (a fresh Kcn is saved when none is stored)
        and the bindings that have not expired; returns the core's actions installing their
        route optimization (for the runtime to carry out)."""
        wall = self._wall()
        try:
            key = self.store.node_key(self.ROLE)
            nonces = self.store.nonces(self.ROLE) if key is not None else []
            rows = self.store.bindings(self.ROLE, wall_now=wall)
        except StoreError as exc:
            self.errors += 1
            log.error("could not read the CN state: %s", exc)
            return []
        if key is not None and len(key.node_key) == len(core.export_key_state(now).node_key):
            core.restore_key_state(
                NodeKeyState(
                    key.node_key,
                    key.nonce_index,
                    tuple((n.index, n.nonce, wall - n.created_wall) for n in nonces),
                ),
                now,
            )
        self._save_keys(core, now)
        actions: list[Action] = []
        for row in rows:
            actions += core.restore_binding(
                row.home_address,
                row.care_of_address,
                sequence=row.sequence,
                flags=row.flags,
                lifetime=row.lifetime,
                remaining=row.remaining(wall),
                now=now,
            )
        return actions

    def forget_bindings(self) -> None:
        try:
            self.store.replace_bindings(self.ROLE, [])
        except StoreError as exc:
            self.errors += 1
            log.error("could not clear the stored CN bindings: %s", exc)
