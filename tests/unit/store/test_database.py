"""SQLite (WAL) state store: bindings with wall-clock expiry, BUL, CN node key, values."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from nfq_mip6.store import (
    DATABASE_NAME,
    StateStore,
    StoredBinding,
    StoredBulEntry,
    StoreError,
)
from tests.support.howto import HOA

HOA2 = IPv6Address("fec0:106:2700::5")
COA = IPv6Address("fec0:106:1100::4")
WALL = 1_800_000_000.0


def binding(
    hoa: IPv6Address = HOA, expires: float = WALL + 100, sequence: int = 3
) -> StoredBinding:
    return StoredBinding("ha", hoa, COA, sequence, 0xC000, 400, expires, IPv6Address("fe80::4"))


def test_round_trip_and_wal(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path / "state") as store:
        store.save_binding(binding())
        store.save_binding(binding(HOA2, sequence=9))
        store.save_binding(binding(sequence=4))  # replaces
        assert store.bindings("ha") == [binding(sequence=4), binding(HOA2, sequence=9)]
        assert store.bindings("cn") == []
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    path = tmp_path / "state" / DATABASE_NAME
    assert path.stat().st_mode & 0o077 == 0
    with StateStore(path) as again:
        assert len(again.bindings("ha")) == 2


def test_expired_bindings_are_dropped_on_load(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        store.apply_binding_changes(upserts=[binding(expires=WALL - 1), binding(HOA2)])
        assert [b.home_address for b in store.bindings("ha", wall_now=WALL)] == [HOA2]
        assert [b.home_address for b in store.bindings("ha")] == [HOA2]  # deleted
        assert store.bindings("ha")[0].remaining(WALL) == 100


def test_changes_and_replace_are_transactions(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        store.apply_binding_changes(upserts=[binding(), binding(HOA2)])
        store.apply_binding_changes(deletions=[("ha", HOA)])
        assert [b.home_address for b in store.bindings("ha")] == [HOA2]
        store.replace_bindings("ha", [binding()])
        assert [b.home_address for b in store.bindings("ha")] == [HOA]
        writes = store.writes
        store.apply_binding_changes()
        assert store.writes == writes


def test_bul_node_key_values(tmp_path: Path) -> None:
    entry = StoredBulEntry(IPv6Address("fec0:106:2700::2"), HOA, COA, 17, True, 1000, WALL + 5)
    with StateStore.in_state_dir(tmp_path) as store:
        store.replace_bul([entry])
        assert store.bul_entries() == [entry]
        assert store.node_key("cn") is None
        store.save_node_key("cn", b"k" * 20, 0x1_0005, WALL)
        key = store.node_key("cn")
        assert key is not None and key.node_key == b"k" * 20 and key.nonce_index == 5
        assert "kkkk" not in repr(key)
        store.set_value("auth.timestamps", {"1000": 123})
        assert store.get_value("auth.timestamps") == {"1000": 123}
        assert store.get_value("missing", 7) == 7


def test_bad_rows_are_skipped(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        store.save_binding(binding())
        store._db.execute(
            "INSERT INTO bindings VALUES ('ha', 'not an address', '::1', 1, 0, 1, 1e12, NULL, '')"
        )
        assert [b.home_address for b in store.bindings("ha")] == [HOA]


def test_unusable_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_NAME
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        StateStore(path)
    newer = tmp_path / "newer" / DATABASE_NAME
    StateStore(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError):
        StateStore(newer)


WRITER = r"""
import os, sys
from ipaddress import IPv6Address
from nfq_mip6.store import StateStore, StoredBinding
store = StateStore.in_state_dir(sys.argv[1])
for i in range(int(sys.argv[2])):
    hoa = IPv6Address(f"fec0::{i + 1:x}")
    store.save_binding(StoredBinding("ha", hoa, IPv6Address("fec0:1::1"), i, 0, 400, 1e12))
print("committed", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_committed_writes_survive_kill_9(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), "50"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "committed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    with StateStore.in_state_dir(tmp_path) as store:
        assert len(store.bindings("ha")) == 50


def test_mobile_router_prefixes_round_trip_and_version_2_is_migrated(tmp_path: Path) -> None:
    """Schema 3 keeps a mobile router's Mobile Network Prefixes (RFC 3963) with its binding."""
    import sqlite3
    from dataclasses import replace
    from ipaddress import IPv6Network

    path = tmp_path / DATABASE_NAME
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE bindings (role TEXT NOT NULL, home_address TEXT NOT NULL, "
        "care_of_address TEXT NOT NULL, sequence INTEGER NOT NULL, flags INTEGER NOT NULL, "
        "lifetime INTEGER NOT NULL, expires_wall REAL NOT NULL, link_local TEXT, "
        "PRIMARY KEY (role, home_address));"
        "INSERT INTO bindings VALUES ('ha', '2001:db8::5', '2001:db8:1::5', 1, 0, 1, 1e12, NULL);"
    )
    db.commit()
    db.close()
    with StateStore(path) as store:
        [old] = store.bindings("ha")
        assert old.prefixes == ()
        prefixes = (IPv6Network("2001:db8:77::/48"), IPv6Network("2001:db8:78:1::/64"))
        store.save_binding(replace(binding(), prefixes=prefixes))
        assert {b.home_address: b.prefixes for b in store.bindings("ha")}[HOA] == prefixes
