"""The HA's BindingStore seam: SqliteBindingStore commits a binding and the RFC 4285 timestamps
it advanced in one transaction (both or neither); the guard hands over only the advanced SPIs,
and a restart refuses a replay of the committed BU (144)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import HomeAgentConfig
from nfq_mip6.errors import StoreError
from nfq_mip6.mobility.events import MobilityMessageReceived
from nfq_mip6.mobility.home_agent import HomeAgent
from nfq_mip6.mobility.home_agent import HomeAgentConfig as CoreConfig
from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.security.keys import KeySource, MobileNodeCredentials
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.store import (
    BindingCommit,
    BindingStore,
    HomeBindingPersistence,
    SqliteBindingStore,
    StateStore,
    StoredBinding,
)
from nfq_mip6.wire import build_mh
from nfq_mip6.wire.mh import BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(40, 60))
SPI = 777
PREFIX = IPv6Network("fec0:106:2700::/64")


def _row(sequence: int) -> StoredBinding:
    return StoredBinding("ha", HOA, COA, sequence, 0xC000, 400, 1_800_000_400.0)


def test_sqlite_store_commits_binding_and_timestamps_together(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as state:
        store: BindingStore = SqliteBindingStore(state)
        store.commit(BindingCommit((_row(6),), (), {SPI: 1000}))
        store.commit(BindingCommit((), (), {SPI + 1: 5}))  # merged, the first SPI kept
        snap = store.snapshot()
        assert [b.sequence for b in snap.bindings] == [6]
        assert snap.mesg_ids == {SPI: 1000, SPI + 1: 5}
        assert state.get_value("auth.timestamps") == {str(SPI): 1000, str(SPI + 1): 5}
        store.commit(BindingCommit((), (HOA,), {SPI: 2000}))
        assert store.snapshot().bindings == () and store.snapshot().mesg_ids[SPI] == 2000


def test_sqlite_store_failure_writes_neither(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as state:
        store = SqliteBindingStore(state)
        bad = StoredBinding("ha", HOA, COA, 6, 0, 400, 1.0, prefixes=(PREFIX,))
        object.__setattr__(bad, "sequence", object())  # not bindable: the transaction fails
        with pytest.raises(StoreError):
            store.commit(BindingCommit((bad,), (), {SPI: 1000}))
        assert state.get_value("auth.timestamps") is None and state.bindings("ha") == []


def test_accepted_bu_commits_binding_and_mesg_id_and_a_replay_after_restart_gets_144(
    tmp_path: Path,
) -> None:
    config = HomeAgentConfig(
        mobile_nodes=(MobileNodeCredentials(SPI, KeySource(env="K"), (IPv6Network(f"{HOA}/128"),)),)
    )
    sa = SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),))
    bu = MobileNodeAuthenticator(sa).sign_binding_update(
        BindingUpdate(6, BUFlags.A | BUFlags.H, 100, (AlternateCareofAddress(COA),)), COA, HOA
    )
    mh = build_mh(bu, HOA, HA)
    with StateStore.in_state_dir(tmp_path) as state:
        guard = HomeAgentGuard.from_config(config, legacy=False, environ={"K": KEY.hex()})
        guard.restore_state(state)
        core = HomeAgent(CoreConfig(address=HA, home_prefixes=(PREFIX,), proxy_dad=False),
                         authorizer=guard.verifier)  # fmt: skip
        persistence = HomeBindingPersistence(state)
        actions = core.handle(
            MobilityMessageReceived(bu, COA, HA, home_address=HOA, mh_bytes=mh), 0.0
        )
        mesg_ids = guard.unsaved_timestamps()
        assert list(mesg_ids) == [SPI]
        assert persistence.record(core.cache, actions, 0.0, mesg_ids)
        guard.timestamps_saved(mesg_ids)
        assert guard.unsaved_timestamps() == {}
        assert [b.sequence for b in state.bindings("ha")] == [6]
    with StateStore.in_state_dir(tmp_path) as state:
        again = HomeAgentGuard.from_config(config, legacy=False, environ={"K": KEY.hex()})
        again.restore_state(state)
        assert again.verifier is not None
        rejection = again.verifier.check_home_binding_update(bu, mh, HOA, COA, 0)
        assert rejection is not None and rejection.status == 144
