"""The Mobile Node's mapper: core Binding Update List (and the RFC 4285 Mesg-ID state) <->
the state database, so that a restarted MN continues its sequence numbers (RFC 6275 §11.7.1)
and keeps its correspondent bindings: the keygen tokens of each correspondent binding in
force (§5.2.5) are kept under the key ``mn.ro``, their ages as wall-clock receive times;
the home agent the MN is registered with under ``mn.home_agent``, so that a restart after an
RFC 5142 Home Agent Switch registers with the new home agent, not the configured one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from typing import Any, Final

from nfq_mip6.errors import StoreError
from nfq_mip6.mobility.binding_update_list import (
    BindingUpdateListRecord,
    ReturnRoutabilityRecord,
)
from nfq_mip6.store.database import StateStore, StoredBulEntry

__all__ = ["MobileNodePersistence"]

log = logging.getLogger("nfq_mip6.store")


class MobileNodePersistence:
    """Keeps the MN core's Binding Update List (and its RFC 4285 Mesg-ID state) in a
    :class:`StateStore`.

    The runtime calls :meth:`save` with the core's records before it carries out the actions
    of a core call (so the sequence number of a BU is committed **before** the BU leaves: a
    restarted MN never reuses one, RFC 6275 §11.7.1), and :meth:`load` at start. A save whose
    rows equal the last saved ones (expiry to the second) writes nothing, so the packet path
    pays one comparison when nothing changed. Failures are logged and counted (``errors``),
    never raised.
    """

    AUTH_KEY: Final = "mn.auth"
    RO_KEY: Final = "mn.ro"
    HOME_AGENT_KEY: Final = "mn.home_agent"

    def __init__(self, store: StateStore, wall_clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._wall = wall_clock
        self._last: list[StoredBulEntry] | None = None
        self._saved: dict[str, Any] = {}
        """Key -> the value last written or read under it (an equal one is not written)."""
        self.errors = 0

    def __repr__(self) -> str:
        return f"MobileNodePersistence({self.store!r})"

    def _rows(self, records: Iterable[BindingUpdateListRecord]) -> list[StoredBulEntry]:
        wall = self._wall()
        return sorted(
            (
                StoredBulEntry(
                    recipient=r.destination,
                    home_address=r.home_address,
                    care_of_address=r.care_of_address,
                    sequence=r.sequence & 0xFFFF,
                    home_registration=r.home_registration,
                    lifetime=r.lifetime_granted,
                    expires_wall=float(round(wall + r.remaining)) if r.remaining > 0 else 0.0,
                    state=r.state,
                )
                for r in records
            ),
            key=lambda e: (e.recipient, e.home_address),
        )

    def _tokens(self, records: Iterable[BindingUpdateListRecord]) -> dict[str, Any]:
        """Recipient -> keygen tokens of every correspondent binding in force (JSON)."""
        wall = self._wall()
        tokens: dict[str, Any] = {}
        for r in records:
            if r.rr is None or r.home_registration:
                continue
            coa = r.rr.careof_token_coa
            tokens[str(r.destination)] = {
                "home_token": r.rr.home_token.hex(),
                "home_nonce_index": r.rr.home_nonce_index,
                "home_token_wall": float(round(wall - r.rr.home_token_age)),
                "careof_token": r.rr.careof_token.hex() if r.rr.careof_token else None,
                "careof_nonce_index": r.rr.careof_nonce_index,
                "careof_token_wall": float(round(wall - r.rr.careof_token_age)),
                "careof_token_coa": str(coa) if coa is not None else None,
            }
        return tokens

    def save(self, records: Iterable[BindingUpdateListRecord]) -> bool:
        """Commit the BUL (one transaction) and the correspondent bindings' tokens unless
        they equal the last ones saved. True if the BUL was written."""
        records = list(records)
        self._save_tokens(self._tokens(records))
        rows = self._rows(records)
        if rows == self._last:
            return False
        try:
            self.store.replace_bul(rows)
        except StoreError as exc:
            self.errors += 1
            log.error("could not persist the binding update list: %s", exc)
            return False
        self._last = rows
        return True

    def _set_value(self, key: str, value: dict[str, Any], what: str) -> None:
        """Write ``value`` under ``key`` unless it equals the last one; a failure is counted
        and logged (the next save tries again)."""
        if key in self._saved and self._saved[key] == value:
            return
        try:
            self.store.set_value(key, value)
        except StoreError as exc:
            self.errors += 1
            log.error("could not persist %s: %s", what, exc)
            return
        self._saved[key] = value

    def _save_tokens(self, tokens: dict[str, Any]) -> None:
        self._set_value(self.RO_KEY, tokens, "the correspondent bindings' tokens")

    def _load_tokens(self) -> dict[IPv6Address, ReturnRoutabilityRecord]:
        """The stored tokens; a malformed value is ignored (RR runs again)."""
        wall = self._wall()
        found: dict[IPv6Address, ReturnRoutabilityRecord] = {}
        try:
            value = self.store.get_value(self.RO_KEY, {})
            if isinstance(value, dict):
                self._saved[self.RO_KEY] = value
            for recipient, t in (value or {}).items():
                careof = t.get("careof_token")
                coa = t.get("careof_token_coa")
                found[IPv6Address(recipient)] = ReturnRoutabilityRecord(
                    home_token=bytes.fromhex(t["home_token"]),
                    home_nonce_index=int(t["home_nonce_index"]),
                    home_token_age=wall - float(t["home_token_wall"]),
                    careof_token=bytes.fromhex(careof) if careof else None,
                    careof_nonce_index=int(t.get("careof_nonce_index", 0)),
                    careof_token_age=wall - float(t.get("careof_token_wall", wall)),
                    careof_token_coa=IPv6Address(coa) if coa else None,
                )
        except (StoreError, AttributeError, KeyError, TypeError, ValueError) as exc:
            self.errors += 1
            log.warning("ignoring the stored correspondent binding tokens: %s", exc)
            return {}
        return found

    def load(self) -> list[BindingUpdateListRecord]:
        """The stored BUL as core records; ``remaining`` from the wall clock (≤ 0 when the
        binding expired while the agent was down: only its sequence number counts)."""
        wall = self._wall()
        try:
            rows = self.store.bul_entries()
        except StoreError as exc:
            self.errors += 1
            log.error("could not read the stored binding update list: %s", exc)
            return []
        self._last = rows
        tokens = self._load_tokens()
        return [
            BindingUpdateListRecord(
                destination=row.recipient,
                home_address=row.home_address,
                care_of_address=row.care_of_address or row.home_address,
                sequence=row.sequence,
                home_registration=row.home_registration,
                state=row.state or "none",
                lifetime_granted=row.lifetime,
                remaining=row.expires_wall - wall if row.expires_wall > 0 else 0.0,
                rr=None if row.home_registration else tokens.get(row.recipient),
            )
            for row in rows
        ]

    def save_auth(self, last_mesg_id: int, clock_offset: float) -> None:
        """RFC 4285 §6: the last Mesg-ID timestamp sent and the clock offset learnt from
        the HA, so that a restarted MN keeps its timestamps increasing and in the window."""
        value = {"last_mesg_id": int(last_mesg_id), "clock_offset": float(clock_offset)}
        self._set_value(self.AUTH_KEY, value, "the Mesg-ID state")

    def load_auth(self) -> tuple[int, float]:
        """(last Mesg-ID timestamp sent, clock offset); (0, 0.0) when none is stored."""
        try:
            value = self.store.get_value(self.AUTH_KEY, {})
            result = (int(value.get("last_mesg_id", 0)), float(value.get("clock_offset", 0.0)))
        except (StoreError, AttributeError, TypeError, ValueError) as exc:
            self.errors += 1
            log.warning("ignoring the stored Mesg-ID state: %s", exc)
            return (0, 0.0)
        self._saved[self.AUTH_KEY] = {"last_mesg_id": result[0], "clock_offset": result[1]}
        return result

    def save_home_agent(self, home_agent: IPv6Address, configured: IPv6Address | None) -> None:
        """The home agent whose BA accepted the MN's home registration, with the configured
        one at that time (a restart with another configured home agent ignores it)."""
        value = {
            "home_agent": str(home_agent),
            "configured": str(configured) if configured is not None else None,
        }
        self._set_value(self.HOME_AGENT_KEY, value, "the home agent")

    def load_home_agent(self) -> tuple[IPv6Address, IPv6Address | None] | None:
        """(home agent registered with, the configured one then); ``None`` when none is
        stored or the value is unreadable."""
        try:
            value = self.store.get_value(self.HOME_AGENT_KEY, None)
            if value is None:
                return None
            home_agent = IPv6Address(value["home_agent"])
            configured = value.get("configured")
            result = (home_agent, IPv6Address(configured) if configured else None)
        except (StoreError, AttributeError, KeyError, TypeError, ValueError) as exc:
            self.errors += 1
            log.warning("ignoring the stored home agent: %s", exc)
            return None
        self._saved[self.HOME_AGENT_KEY] = dict(value)
        return result
