"""Crash-safe persistence of protocol state in SQLite (WAL), under ``config.state_dir``: the
database (schema, migrations, transactions, typed rows). The per-role mappers between the
cores and these rows are :mod:`nfq_mip6.store.home_agent`, :mod:`nfq_mip6.store.mobile_node`
and :mod:`nfq_mip6.store.correspondent`.

What is stored (one database, ``<state_dir>/nfq-mip6.sqlite3``, one table per kind):

* ``bindings`` — the HA's home registrations (and a CN's bindings), keyed by
  ``(role, home address)``: CoA, sequence number, flags, granted lifetime, the link-local
  address proxied with it, and the **absolute expiry time on the wall clock** (Unix seconds).
  On restart the remaining lifetime is ``expires_wall - time.time()``: lifetimes continue
  where they were, and what expired while the agent was down is dropped.
* ``binding_update_list`` — the MN's BUL entries (recipient, HoA, CoA, sequence, expiry),
  so that a restarted MN continues its sequence numbers (RFC 6275 §11.7.1: a lower one
  would be refused with 135).
* ``node_keys`` — a CN's Kcn and its current nonce index (RFC 6275 §5.2.3/§5.2.7), so that
  keygen tokens handed out before a restart stay valid.
* ``nonces`` — a CN's nonces still valid (index, value, creation time on the wall clock;
  RFC 6275 §5.2.7: valid at most MAX_NONCE_LIFETIME = 240 s), saved with ``node_keys``.
* ``values`` — small JSON values, e.g. the RFC 4285 last accepted Mesg-ID per SPI
  (``auth.timestamps``), so a replay of a pre-restart BU is still refused.

Write ordering (documented contract with the runtimes): a binding change is **committed
before the BA that announces it is sent**. A crash between the commit and the BA loses only
that BA; the MN retransmits its BU (RFC 6275 §11.8, INITIAL_BINDACK_TIMEOUT back-off) and the
restarted HA answers it from the restored binding (the retransmission carries a new sequence
number or, for the same one, is answered with 135 and the MN resynchronises). The other order
could acknowledge a binding that is then lost. Each write is one transaction; WAL with
``synchronous=NORMAL`` survives a process crash (kill -9) without losing committed
transactions; ``durable=True`` selects ``synchronous=FULL`` to survive power loss as well.

MIPL statistics counters are not persisted: they restart from zero (like MIPL's
``/proc/net/mip6_stat`` after a module reload).

The store never raises into the packet path for I/O problems: :class:`StoreError` is the only
exception, and runtimes log it and continue with the in-memory state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nfq_mip6.errors import StoreError

if TYPE_CHECKING:
    from nfq_mip6.mobility.binding import BindingCacheEntry

__all__ = [
    "DATABASE_NAME",
    "SCHEMA_VERSION",
    "StateStore",
    "StoreError",
    "StoredBinding",
    "StoredBulEntry",
    "StoredNodeKey",
    "StoredNonce",
    "WalCheckpointer",
]

log = logging.getLogger("nfq_mip6.store")

DATABASE_NAME: Final = "nfq-mip6.sqlite3"
SCHEMA_VERSION: Final = 3
"""2: ``binding_update_list.state``; 3: ``bindings.prefixes``, a mobile router's Mobile Network
Prefixes (RFC 3963), comma-separated (older databases are migrated in place)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
    role TEXT NOT NULL,
    home_address TEXT NOT NULL,
    care_of_address TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    lifetime INTEGER NOT NULL,
    expires_wall REAL NOT NULL,
    link_local TEXT,
    prefixes TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (role, home_address)
);
CREATE TABLE IF NOT EXISTS binding_update_list (
    recipient TEXT NOT NULL,
    home_address TEXT NOT NULL,
    care_of_address TEXT,
    sequence INTEGER NOT NULL,
    home_registration INTEGER NOT NULL,
    lifetime INTEGER NOT NULL,
    expires_wall REAL NOT NULL,
    state TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (recipient, home_address)
);
CREATE TABLE IF NOT EXISTS node_keys (
    role TEXT PRIMARY KEY,
    node_key BLOB NOT NULL,
    nonce_index INTEGER NOT NULL,
    saved_wall REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    role TEXT NOT NULL,
    nonce_index INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    created_wall REAL NOT NULL,
    PRIMARY KEY (role, nonce_index)
);
CREATE TABLE IF NOT EXISTS "values" (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_INSERT_BINDING: Final = (
    "INSERT OR REPLACE INTO bindings (role, home_address, care_of_address, sequence, flags, "
    "lifetime, expires_wall, link_local, prefixes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class StoredBinding:
    """One Binding Cache entry as persisted (``role`` "ha" for home registrations)."""

    role: str
    home_address: IPv6Address
    care_of_address: IPv6Address
    sequence: int
    flags: int
    lifetime: int
    """Granted lifetime in seconds (as in the BA)."""
    expires_wall: float
    """Absolute expiry, Unix time."""
    link_local: IPv6Address | None = None
    prefixes: tuple[IPv6Network, ...] = ()
    """A mobile router's registered Mobile Network Prefixes (RFC 3963)."""

    def remaining(self, wall_now: float) -> float:
        return self.expires_wall - wall_now

    @classmethod
    def of_entry(
        cls, role: str, entry: BindingCacheEntry, now: float, wall: float
    ) -> StoredBinding:
        """The stored form of a Binding Cache entry (absolute expiry on the wall clock)."""
        return cls(
            role=role,
            home_address=entry.home_address,
            care_of_address=entry.care_of_address,
            sequence=entry.sequence,
            flags=entry.flags,
            lifetime=entry.lifetime,
            expires_wall=wall + entry.remaining(now),
            link_local=entry.link_local,
            prefixes=entry.prefixes,
        )


@dataclass(frozen=True, slots=True)
class StoredBulEntry:
    """One Binding Update List entry of an MN."""

    recipient: IPv6Address
    home_address: IPv6Address
    care_of_address: IPv6Address | None
    sequence: int
    home_registration: bool
    lifetime: int
    """Granted lifetime in seconds (0: no binding acknowledged)."""
    expires_wall: float
    """Absolute expiry of the acknowledged binding, Unix time (0: none in force)."""
    state: str = ""
    """The MN core's entry state (``BulState`` value; "none": only a sequence number)."""


@dataclass(frozen=True, slots=True)
class StoredNodeKey:
    """A CN's node key (Kcn) and nonce index. ``repr`` hides the key."""

    role: str
    node_key: bytes
    nonce_index: int
    saved_wall: float

    def __repr__(self) -> str:
        return (
            f"StoredNodeKey(role={self.role!r}, node_key=<redacted>, "
            f"nonce_index={self.nonce_index})"
        )


@dataclass(frozen=True, slots=True)
class StoredNonce:
    """One CN nonce (§5.2.3). ``repr`` hides the value."""

    index: int
    nonce: bytes
    created_wall: float
    """Creation time, Unix time."""

    def __repr__(self) -> str:
        return f"StoredNonce(index={self.index}, nonce=<redacted>, created={self.created_wall})"


class StateStore:
    """The SQLite state database. One connection, used from the agent's single thread.

    Args:
        path: the database file (parent directories are created with mode 0700).
        durable: ``synchronous=FULL`` (survives power loss) instead of ``NORMAL`` (survives
            process crashes).
    """

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        self.path.chmod(0o600)
        self.writes = 0

    @classmethod
    def in_state_dir(cls, state_dir: Path, *, durable: bool = False) -> StateStore:
        return cls(Path(state_dir) / DATABASE_NAME, durable=durable)

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as exc:
            log.warning("closing %s: %s", self.path, exc)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) in (1, 2):
            if int(row[0]) == 1:  # 1 -> 2: the BUL entry's state
                self._db.execute(
                    "ALTER TABLE binding_update_list ADD COLUMN state TEXT NOT NULL DEFAULT ''"
                )
            # 2 -> 3: a mobile router's prefixes (a table the schema script just created has it)
            columns = {info[1] for info in self._db.execute("PRAGMA table_info(bindings)")}
            if "prefixes" not in columns:
                self._db.execute(
                    "ALTER TABLE bindings ADD COLUMN prefixes TEXT NOT NULL DEFAULT ''"
                )
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.writes += 1
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    # ----------------------------------------------------------------------------------------
    # Binding cache
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _binding_args(row: StoredBinding) -> tuple[Any, ...]:
        return (
            row.role,
            str(row.home_address),
            str(row.care_of_address),
            row.sequence,
            row.flags,
            row.lifetime,
            row.expires_wall,
            str(row.link_local) if row.link_local is not None else None,
            ",".join(str(prefix) for prefix in row.prefixes),
        )

    def apply_binding_changes(
        self,
        upserts: Iterable[StoredBinding] = (),
        deletions: Iterable[tuple[str, IPv6Address]] = (),
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert/replace and delete bindings, and set the small JSON ``values`` (the RFC 4285
        timestamps), in **one** transaction (commit before the BA)."""
        upsert_args = [self._binding_args(row) for row in upserts]
        delete_args = [(role, str(hoa)) for role, hoa in deletions]
        value_args = [
            (key, json.dumps(value, sort_keys=True)) for key, value in (values or {}).items()
        ]
        if not upsert_args and not delete_args and not value_args:
            return
        with self._transaction() as db:
            db.executemany(_INSERT_BINDING, upsert_args)
            db.executemany("DELETE FROM bindings WHERE role = ? AND home_address = ?", delete_args)
            db.executemany('INSERT OR REPLACE INTO "values" VALUES (?, ?)', value_args)

    def save_binding(self, row: StoredBinding) -> None:
        self.apply_binding_changes(upserts=(row,))

    def delete_binding(self, role: str, home_address: IPv6Address) -> None:
        self.apply_binding_changes(deletions=((role, home_address),))

    def replace_bindings(self, role: str, rows: Iterable[StoredBinding]) -> None:
        """The whole binding cache of ``role`` becomes ``rows`` (one transaction)."""
        args = [self._binding_args(row) for row in rows]
        with self._transaction() as db:
            db.execute("DELETE FROM bindings WHERE role = ?", (role,))
            db.executemany(_INSERT_BINDING, args)

    def bindings(self, role: str, *, wall_now: float | None = None) -> list[StoredBinding]:
        """Stored bindings of ``role``; with ``wall_now``, only those not yet expired (and the
        expired ones are deleted). Rows that do not parse are skipped with a warning."""
        rows: list[StoredBinding] = []
        expired: list[tuple[str, IPv6Address]] = []
        for raw in self._query(
            "SELECT role, home_address, care_of_address, sequence, flags, lifetime, "
            "expires_wall, link_local, prefixes FROM bindings WHERE role = ? "
            "ORDER BY home_address",
            (role,),
        ):
            try:
                row = StoredBinding(
                    role=str(raw[0]),
                    home_address=IPv6Address(raw[1]),
                    care_of_address=IPv6Address(raw[2]),
                    sequence=int(raw[3]) & 0xFFFF,
                    flags=int(raw[4]),
                    lifetime=int(raw[5]),
                    expires_wall=float(raw[6]),
                    link_local=IPv6Address(raw[7]) if raw[7] else None,
                    prefixes=tuple(IPv6Network(text) for text in str(raw[8]).split(",") if text),
                )
            except (ValueError, TypeError) as exc:
                log.warning("%s: skipping a bad stored binding %r: %s", self.path, raw, exc)
                continue
            if wall_now is not None and row.expires_wall <= wall_now:
                expired.append((row.role, row.home_address))
                continue
            rows.append(row)
        if expired:
            self.apply_binding_changes(deletions=expired)
        return rows

    # ----------------------------------------------------------------------------------------
    # Binding Update List (MN)
    # ----------------------------------------------------------------------------------------

    def replace_bul(self, entries: Iterable[StoredBulEntry]) -> None:
        args = [
            (
                str(e.recipient),
                str(e.home_address),
                str(e.care_of_address) if e.care_of_address is not None else None,
                e.sequence,
                int(e.home_registration),
                e.lifetime,
                e.expires_wall,
                e.state,
            )
            for e in entries
        ]
        with self._transaction() as db:
            db.execute("DELETE FROM binding_update_list")
            db.executemany(
                "INSERT INTO binding_update_list (recipient, home_address, care_of_address, "
                "sequence, home_registration, lifetime, expires_wall, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                args,
            )

    def bul_entries(self) -> list[StoredBulEntry]:
        out: list[StoredBulEntry] = []
        for raw in self._query(
            "SELECT recipient, home_address, care_of_address, sequence, home_registration, "
            "lifetime, expires_wall, state FROM binding_update_list ORDER BY recipient"
        ):
            try:
                out.append(
                    StoredBulEntry(
                        recipient=IPv6Address(raw[0]),
                        home_address=IPv6Address(raw[1]),
                        care_of_address=IPv6Address(raw[2]) if raw[2] else None,
                        sequence=int(raw[3]) & 0xFFFF,
                        home_registration=bool(raw[4]),
                        lifetime=int(raw[5]),
                        expires_wall=float(raw[6]),
                        state=str(raw[7]),
                    )
                )
            except (ValueError, TypeError) as exc:
                log.warning("%s: skipping a bad stored BUL entry %r: %s", self.path, raw, exc)
        return out

    # ----------------------------------------------------------------------------------------
    # CN node key and nonce index
    # ----------------------------------------------------------------------------------------

    def save_node_key(self, role: str, node_key: bytes, nonce_index: int, wall_now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO node_keys VALUES (?, ?, ?, ?)",
                (role, node_key, nonce_index & 0xFFFF, wall_now),
            )

    def save_node_state(
        self,
        role: str,
        node_key: bytes,
        nonce_index: int,
        nonces: Iterable[StoredNonce],
        wall_now: float,
    ) -> None:
        """Kcn, the current nonce index and the whole nonce table of ``role`` in **one**
        transaction (committed before a HoT/CoT with a token from a new nonce leaves)."""
        args = [(role, n.index & 0xFFFF, n.nonce, n.created_wall) for n in nonces]
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO node_keys VALUES (?, ?, ?, ?)",
                (role, node_key, nonce_index & 0xFFFF, wall_now),
            )
            db.execute("DELETE FROM nonces WHERE role = ?", (role,))
            db.executemany("INSERT INTO nonces VALUES (?, ?, ?, ?)", args)

    def nonces(self, role: str) -> list[StoredNonce]:
        """The stored nonces of ``role``, oldest first."""
        out: list[StoredNonce] = []
        for raw in self._query(
            "SELECT nonce_index, nonce, created_wall FROM nonces WHERE role = ? "
            "ORDER BY created_wall",
            (role,),
        ):
            try:
                out.append(StoredNonce(int(raw[0]) & 0xFFFF, bytes(raw[1]), float(raw[2])))
            except (ValueError, TypeError) as exc:
                log.warning("%s: skipping a bad stored nonce: %s", self.path, exc)
        return out

    def node_key(self, role: str) -> StoredNodeKey | None:
        rows = self._query(
            "SELECT role, node_key, nonce_index, saved_wall FROM node_keys WHERE role = ?",
            (role,),
        )
        if not rows:
            return None
        role_, key, index, saved = rows[0]
        return StoredNodeKey(str(role_), bytes(key), int(index), float(saved))

    # ----------------------------------------------------------------------------------------
    # Small JSON values
    # ----------------------------------------------------------------------------------------

    def set_value(self, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True)
        with self._transaction() as db:
            db.execute('INSERT OR REPLACE INTO "values" VALUES (?, ?)', (key, text))

    def get_value(self, key: str, default: Any = None) -> Any:
        rows = self._query('SELECT value FROM "values" WHERE key = ?', (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0][0])
        except ValueError:
            log.warning("%s: value %r is not JSON; ignored", self.path, key)
            return default


class WalCheckpointer(threading.Thread):
    """Keeps SQLite's WAL checkpoints (and their fsync) off the BU -> BA path.

    Every binding change is committed before its BA (:mod:`nfq_mip6.store`); with SQLite's
    default ``wal_autocheckpoint`` (1000 pages) the committing connection itself checkpoints
    every ~300 BUs, an fsync of several ms in the single agent thread (measured: BU -> BA p99
    3–5 ms at 1k BU/s, 0.5 ms without it). This thread runs a ``PASSIVE`` checkpoint on its
    own connection every ``interval`` seconds, which blocks neither readers nor the writer
    and releases the GIL while it works, so the WAL never grows to the autocheckpoint size
    (measured p99 with 30 ms: 0.7–1.0 ms; with 250 ms: 1.1–2.5 ms).
    """

    def __init__(self, path: Path, interval: float = 0.03) -> None:
        super().__init__(name="nfq-mip6-wal-checkpoint", daemon=True)
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            db = sqlite3.connect(str(self.path), timeout=0.5, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("WAL checkpointer disabled: %s", exc)
            return
        try:
            while not self._stopping.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or gone: try again next round
                    log.debug("WAL checkpoint: %s", exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=2.0)
