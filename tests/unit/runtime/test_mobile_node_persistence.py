"""MN persistence (issue 9): the BUL survives a restart (docs/security.md, "Persistence").

Store round trips (schema 2 with the entry state, migration of a version 1 database), the
:class:`MobileNodePersistence` glue (wall-clock expiry, no write when nothing changed,
RFC 4285 Mesg-ID state) and the pure core hook: a restarted MN continues its sequence
numbers (RFC 6275 §11.7.1) and keeps a home binding still in force.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from ipaddress import IPv6Address
from pathlib import Path

from nfq_mip6.constants import MAX_TOKEN_LIFETIME
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.mobility import mn_return_routability as mn_rr
from nfq_mip6.mobility.binding_update_list import BindingUpdateListEntry
from nfq_mip6.mobility.events import (
    Action,
    BindingRefreshed,
    InstallReverseTunnel,
    MobilityMessageReceived,
    MovedToForeignLink,
    RemoveRouteOptimization,
    ReturnedToHomeLink,
    SendMobilityMessage,
)
from nfq_mip6.mobility.mobile_node import (
    BindingUpdateListRecord,
    BulState,
    MobileNode,
    MobileNodeConfig,
)
from nfq_mip6.runtime.mobile_node import MobileNodeRuntime
from nfq_mip6.store import (
    DATABASE_NAME,
    SCHEMA_VERSION,
    MobileNodePersistence,
    StateStore,
    StoredBulEntry,
)
from nfq_mip6.wire.mh import BAFlags, BindingAck, BindingUpdate
from tests.support.factories import counter_bytes
from tests.support.vectors import CN, COA, COA2, HA, HOA, PREFIX
from tests.unit.runtime.test_mobile_node import AR, binding_ack, runtime_and_log
from tests.unit.runtime.test_mobile_node import COA as RUNTIME_COA

WALL = 1_800_000_000.0
__all__ = ["runtime_and_log"]  # the fixture, shared with test_movement_runtime


def make_mn(home_agent: IPv6Address | None = HA) -> MobileNode:
    config = MobileNodeConfig(home_address=HOA, home_prefix=PREFIX, home_agent=home_agent)
    return MobileNode(config, random_bytes=counter_bytes(1))


def the_bu(actions: list[Action]) -> BindingUpdate:
    (bu,) = [
        a.message
        for a in actions
        if isinstance(a, SendMobilityMessage) and isinstance(a.message, BindingUpdate)
    ]
    assert isinstance(bu, BindingUpdate)
    return bu


def ba(sequence: int, lifetime: int = 100) -> MobilityMessageReceived:
    message = BindingAck(0, BAFlags.NONE, sequence, lifetime)
    return MobilityMessageReceived(message, HA, COA, routing_address=HOA)


def bound_mn(now: float = 0.0) -> tuple[MobileNode, BindingUpdate]:
    mn = make_mn()
    bu = the_bu(mn.handle(MovedToForeignLink(COA, None), now))
    mn.handle(ba(bu.sequence), now + 0.1)
    return mn, bu


# ----------------------------------------------------------------------------------------------
# Store
# ----------------------------------------------------------------------------------------------


def test_bul_round_trip_keeps_the_state(tmp_path: Path) -> None:
    entries = [
        StoredBulEntry(HA, HOA, COA, 65535, True, 400, WALL + 300, "bound"),
        StoredBulEntry(CN, HOA, None, 7, False, 0, 0.0, "none"),
    ]
    with StateStore.in_state_dir(tmp_path) as store:
        store.replace_bul(entries)
        store.replace_bul(entries[:1])  # the whole list is replaced
        assert store.bul_entries() == entries[:1]
    with StateStore.in_state_dir(tmp_path) as again:
        assert again.bul_entries() == entries[:1]


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / DATABASE_NAME
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '1');"
        "CREATE TABLE binding_update_list (recipient TEXT NOT NULL, home_address TEXT NOT NULL,"
        " care_of_address TEXT, sequence INTEGER NOT NULL, home_registration INTEGER NOT NULL,"
        " lifetime INTEGER NOT NULL, expires_wall REAL NOT NULL,"
        " PRIMARY KEY (recipient, home_address));"
        f"INSERT INTO binding_update_list VALUES ('{HA}', '{HOA}', '{COA}', 9, 1, 400, {WALL});"
    )
    db.commit()
    db.close()
    with StateStore(path) as store:
        assert store.bul_entries() == [StoredBulEntry(HA, HOA, COA, 9, True, 400, WALL, "")]
        row = store._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert int(row[0]) == SCHEMA_VERSION


# ----------------------------------------------------------------------------------------------
# MobileNodePersistence
# ----------------------------------------------------------------------------------------------


def test_persistence_converts_to_wall_clock_and_skips_unchanged_saves(tmp_path: Path) -> None:
    wall = [WALL]
    mn, bu = bound_mn()
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = MobileNodePersistence(store, lambda: wall[0])
        assert persistence.save(mn.binding_update_list_records(1.0))
        writes = store.writes
        assert not persistence.save(mn.binding_update_list_records(1.0))  # nothing changed
        assert store.writes == writes
        (row,) = store.bul_entries()
        assert (row.recipient, row.care_of_address, row.sequence) == (HA, COA, bu.sequence)
        assert (row.state, row.home_registration, row.lifetime) == ("bound", True, 400)
        assert row.expires_wall == WALL + 399  # sent at 0.0, granted 400 s, saved at 1.0
    wall[0] = WALL + 100  # 100 s later, another process
    with StateStore.in_state_dir(tmp_path) as store:
        (record,) = MobileNodePersistence(store, lambda: wall[0]).load()
        assert record.remaining == 299 and record.sequence == bu.sequence
        assert record.state == "bound" and record.care_of_address == COA


def test_mesg_id_state_round_trip(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = MobileNodePersistence(store)
        assert persistence.load_auth() == (0, 0.0)
        persistence.save_auth(0x1234_5678_9ABC_DEF0, -2.5)
        writes = store.writes
        persistence.save_auth(0x1234_5678_9ABC_DEF0, -2.5)
        assert store.writes == writes
    with StateStore.in_state_dir(tmp_path) as store:
        assert MobileNodePersistence(store).load_auth() == (0x1234_5678_9ABC_DEF0, -2.5)


# ----------------------------------------------------------------------------------------------
# Core hook: restore_binding_update_list
# ----------------------------------------------------------------------------------------------


def test_restored_home_binding_is_bound_and_its_refresh_continues_the_sequence() -> None:
    old, bu = bound_mn()
    records = old.binding_update_list_records(50.0)
    mn = make_mn()  # a new process: new monotonic clock
    (entry,) = mn.restore_binding_update_list(records, 1000.0)
    assert entry.state is BulState.BOUND and entry.sequence == bu.sequence
    assert mn.binding_update_list_rows(1000.0)[0].lifetime_remaining == 350
    # the movement decision after the restart refreshes it with the next sequence number
    refresh = the_bu(mn.handle(MovedToForeignLink(COA, None), 1000.5))
    assert refresh.sequence == (bu.sequence + 1) & 0xFFFF
    actions = mn.handle(ba(refresh.sequence), 1000.6)
    assert any(isinstance(a, InstallReverseTunnel) for a in actions)
    assert any(isinstance(a, BindingRefreshed) for a in actions)  # not a new registration


def test_restored_binding_with_the_sequence_at_the_wrap() -> None:
    record = BindingUpdateListRecord(HA, HOA, COA, 0xFFFF, True, "bound", 400, 100.0)
    mn = make_mn()
    mn.restore_binding_update_list([record], 0.0)
    assert the_bu(mn.handle(MovedToForeignLink(COA2, None), 0.1)).sequence == 0


def test_expired_or_unacknowledged_entries_only_keep_their_sequence() -> None:
    records = [
        BindingUpdateListRecord(HA, HOA, COA, 500, True, "bound", 400, -3.0),
        BindingUpdateListRecord(CN, HOA, COA, 40, False, "bound", 200, 100.0),
    ]
    mn = make_mn()
    assert mn.restore_binding_update_list(records, 0.0) == []
    assert mn.bul == {}
    # the floors are kept until used (and saved again meanwhile)
    saved = {(r.destination, r.sequence, r.state) for r in mn.binding_update_list_records(0.0)}
    assert saved == {(HA, 500, "none"), (CN, 40, "none")}
    assert the_bu(mn.handle(MovedToForeignLink(COA, None), 1.0)).sequence == 501
    assert HA not in {
        r.destination for r in mn.binding_update_list_records(1.0) if r.state == "none"
    }


def test_restore_ignores_another_home_address_and_another_home_agent() -> None:
    other = IPv6Address("2001:db8:a::2")
    records = [
        BindingUpdateListRecord(HA, other, COA, 9, True, "bound", 400, 100.0),
        BindingUpdateListRecord(other, HOA, COA, 9, True, "bound", 400, 100.0),
    ]
    mn = make_mn()
    assert mn.restore_binding_update_list(records, 0.0) == []


def test_restore_without_a_configured_home_agent_skips_dhaad() -> None:
    record = BindingUpdateListRecord(HA, HOA, COA, 9, True, "refreshing", 400, 100.0)
    mn = make_mn(home_agent=None)
    (entry,) = mn.restore_binding_update_list([record], 0.0)
    assert mn.home_agent == HA and entry.destination == HA
    assert the_bu(mn.handle(MovedToForeignLink(COA, None), 0.1)).sequence == 10


def test_restored_binding_found_at_home_is_deregistered() -> None:
    record = BindingUpdateListRecord(HA, HOA, COA, 9, True, "bound", 400, 100.0)
    mn = make_mn()
    mn.restore_binding_update_list([record], 0.0)
    bu = the_bu(mn.handle(ReturnedToHomeLink(), 0.1))
    assert (bu.sequence, bu.lifetime) == (10, 0)  # §11.5.5, sequence continued


# ----------------------------------------------------------------------------------------------
# Runtime: write, then send
# ----------------------------------------------------------------------------------------------


def test_runtime_commits_the_bul_before_the_bu_leaves(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]], tmp_path: Path
) -> None:
    runtime, log = runtime_and_log
    store = StateStore.in_state_dir(tmp_path)
    runtime.persistence = MobileNodePersistence(store)
    replace_bul = store.replace_bul

    def recording_replace_bul(entries: Iterable[StoredBulEntry]) -> None:
        rows = list(entries)
        log.append("commit " + ",".join(str(row.sequence) for row in rows))
        replace_bul(rows)

    store.replace_bul = recording_replace_bul  # type: ignore[method-assign]
    runtime._decide([MovedToForeignLink(RUNTIME_COA, 86400.0, AR)], 100.0)
    sequence = runtime.bul_rows(100.0)[0]["sequence"]
    first_send = next(i for i, entry in enumerate(log) if entry.startswith("send "))
    assert f"commit {sequence}" in log[:first_send]
    (row,) = store.bul_entries()
    assert (row.sequence, row.state) == (sequence, "registering")
    # the BA accepted: committed as bound, with its expiry
    runtime.on_queued_packet(QueuedPacket(binding_ack(sequence, RUNTIME_COA)), 100.01)
    (row,) = store.bul_entries()
    assert row.state == "bound" and row.expires_wall > 0
    store.close()


# ----------------------------------------------------------------------------------------------
# Correspondent bindings (route optimization) survive a restart with their keygen tokens
# ----------------------------------------------------------------------------------------------

HOME_TOKEN, CAREOF_TOKEN = b"\x11" * 8, b"\x22" * 8


def with_correspondent(mn: MobileNode, coa: IPv6Address = COA) -> BindingUpdateListEntry:
    """A CN entry bound at 0.0 for 200 s, tokens received at 0.0 (as after RR and the BA)."""
    entry = BindingUpdateListEntry(CN, HOA, coa, home_registration=False, sequence=40)
    entry.transition(BulState.BOUND)
    entry.bound_once = entry.route_installed = True
    entry.lifetime_granted, entry.sent_at, entry.expires_at = 200, 0.0, 200.0
    entry.home_token, entry.home_nonce_index, entry.home_token_at = HOME_TOKEN, 3, 0.0
    entry.careof_token, entry.careof_nonce_index, entry.careof_token_at = CAREOF_TOKEN, 4, 0.0
    entry.careof_token_coa = coa
    mn.bul[CN] = entry
    return entry


def test_a_correspondent_binding_in_force_is_restored_with_its_tokens() -> None:
    old, _bu = bound_mn()
    with_correspondent(old)
    records = old.binding_update_list_records(50.0)
    (cn_record,) = [r for r in records if r.destination == CN]
    assert cn_record.rr is not None and cn_record.rr.home_token_age == 50.0
    assert [r.rr for r in records if r.destination == HA] == [None]
    mn = make_mn()
    home, cn = mn.restore_binding_update_list(records, 1000.0)
    assert home.home_registration and not cn.home_registration
    assert (cn.state, cn.route_installed, cn.care_of_address) == (BulState.BOUND, True, COA)
    assert (cn.home_token, cn.careof_token) == (HOME_TOKEN, CAREOF_TOKEN)
    assert (cn.home_nonce_index, cn.careof_nonce_index) == (3, 4)
    assert cn.home_token_at == cn.careof_token_at == 950.0 and cn.expires_at == 1150.0
    assert mn_rr.tokens_needed(cn, 1000.0, deletion=False) == (False, False)
    assert mn_rr.tokens_needed(cn, 950.0 + MAX_TOKEN_LIFETIME, deletion=False) == (True, True)


def test_a_correspondent_binding_is_not_restored_without_tokens_home_binding_or_ro() -> None:
    old, _bu = bound_mn()
    with_correspondent(old, coa=COA2)  # not the home registration's CoA
    records = old.binding_update_list_records(50.0)
    assert [e.destination for e in make_mn().restore_binding_update_list(records, 9.0)] == [HA]
    old, _bu = bound_mn()
    with_correspondent(old)
    records = old.binding_update_list_records(50.0)
    no_tokens = [replace(r, rr=None) for r in records]
    assert [e.destination for e in make_mn().restore_binding_update_list(no_tokens, 9.0)] == [HA]
    cn_only = [r for r in records if r.destination == CN]
    assert make_mn().restore_binding_update_list(cn_only, 9.0) == []
    config = MobileNodeConfig(
        home_address=HOA, home_prefix=PREFIX, home_agent=HA, route_optimization=False
    )
    ro_off = MobileNode(config, random_bytes=counter_bytes(1))
    assert [e.destination for e in ro_off.restore_binding_update_list(records, 9.0)] == [HA]


def test_correspondent_tokens_round_trip_through_the_store(tmp_path: Path) -> None:
    wall = [WALL]
    old, _bu = bound_mn()
    with_correspondent(old)
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = MobileNodePersistence(store, lambda: wall[0])
        persistence.save(old.binding_update_list_records(50.0))
        writes = store.writes
        persistence.save(old.binding_update_list_records(50.0))
        assert store.writes == writes  # tokens unchanged: nothing written
        assert store.get_value(MobileNodePersistence.RO_KEY)[str(CN)]["home_nonce_index"] == 3
    wall[0] = WALL + 30
    with StateStore.in_state_dir(tmp_path) as store:
        records = MobileNodePersistence(store, lambda: wall[0]).load()
    (cn_record,) = [r for r in records if r.destination == CN]
    assert cn_record.rr is not None
    assert (cn_record.rr.home_token, cn_record.rr.careof_token) == (HOME_TOKEN, CAREOF_TOKEN)
    assert cn_record.rr.home_token_age == 80.0 and cn_record.rr.careof_token_coa == COA
    mn = make_mn()
    assert [e.destination for e in mn.restore_binding_update_list(records, 0.0)] == [HA, CN]


def test_malformed_stored_tokens_are_ignored(tmp_path: Path) -> None:
    old, _bu = bound_mn()
    with_correspondent(old)
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = MobileNodePersistence(store)
        persistence.save(old.binding_update_list_records(50.0))
        store.set_value(MobileNodePersistence.RO_KEY, {str(CN): {"home_token": "zz"}})
        records = MobileNodePersistence(store).load()
    assert all(r.rr is None for r in records)


def test_the_first_movement_decision_keeps_a_restored_correspondent_binding() -> None:
    """A restarted MN finds itself on the link of the restored CoA: it refreshes its home
    registration, and the CN's binding (same CoA) and its data path stay."""
    old, bu = bound_mn()
    with_correspondent(old)
    records = old.binding_update_list_records(50.0)
    mn = make_mn()
    mn.restore_binding_update_list(records, 1000.0)
    actions = mn.handle(MovedToForeignLink(COA, None), 1000.5)
    assert the_bu(actions).sequence == (bu.sequence + 1) & 0xFFFF  # to the HA
    assert not any(isinstance(a, RemoveRouteOptimization) for a in actions)
    assert mn.bul[CN].state is BulState.BOUND
    # on another link, the CoA changes: back to the tunnel and return routability again
    actions = mn.handle(MovedToForeignLink(COA2, None), 1001.0)
    assert RemoveRouteOptimization(HOA, CN) in actions
    assert mn.bul[CN].state is BulState.RR_PENDING


def test_keygen_tokens_are_not_in_the_record_repr() -> None:
    old, _bu = bound_mn()
    with_correspondent(old)
    text = repr(old.binding_update_list_records(50.0))
    assert HOME_TOKEN.hex() not in text and repr(HOME_TOKEN) not in text
    assert repr(CAREOF_TOKEN) not in text and "home_nonce_index=3" in text
