"""The Home Agent's store mapper (HomeBindingPersistence): bindings committed from the core's
actions, restored with their remaining wall-clock lifetime, the former JSON file imported."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.mobility.events import MobilityMessageReceived
from nfq_mip6.mobility.home_agent import HomeAgent
from nfq_mip6.mobility.home_agent import HomeAgentConfig as CoreConfig
from nfq_mip6.store import HomeBindingPersistence, StateStore
from nfq_mip6.wire.mh import BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::4")


def _registered_core() -> HomeAgent:
    core = HomeAgent(CoreConfig(address=HA, home_prefixes=(IPv6Network("fec0:106:2700::/64"),),
                                proxy_dad=False))  # fmt: skip
    bu = BindingUpdate(5, BUFlags.A | BUFlags.H, 100, (AlternateCareofAddress(COA),))
    core.handle(MobilityMessageReceived(bu, COA, HA, home_address=HOA), 0.0)
    assert HOA in core.cache
    return core


def test_persistence_records_restores_and_deletes(tmp_path: Path) -> None:
    wall = [1_800_000_000.0]
    core = _registered_core()
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = HomeBindingPersistence(store, wall_clock=lambda: wall[0])
        bu = BindingUpdate(6, BUFlags.A | BUFlags.H, 100, (AlternateCareofAddress(COA),))
        actions = core.handle(MobilityMessageReceived(bu, COA, HA, home_address=HOA), 10.0)
        persistence.record(core.cache, actions, 10.0)
        (row,) = store.bindings("ha")
        assert (row.home_address, row.sequence, row.lifetime) == (HOA, 6, 400)
        assert row.expires_wall == pytest.approx(wall[0] + 400)
    # "Restart" 100 s later: the lifetime continues from where it was.
    wall[0] += 100
    with StateStore.in_state_dir(tmp_path) as store:
        fresh = HomeAgent(
            CoreConfig(address=HA, home_prefixes=(IPv6Network("fec0:106:2700::/64"),))
        )
        persistence = HomeBindingPersistence(store, wall_clock=lambda: wall[0])
        (entry,) = persistence.restore(fresh.cache, 5000.0)
        assert entry.sequence == 6 and entry.remaining(5000.0) == pytest.approx(300)
        assert fresh.next_deadline() == pytest.approx(5300.0)
        # Expiry is persisted as a deletion.
        actions = fresh.handle_timer(5301.0)
        persistence.record(fresh.cache, actions, 5301.0)
        assert store.bindings("ha") == []


def test_persistence_imports_the_former_json_file(tmp_path: Path) -> None:
    legacy = tmp_path / "ha-bindings.json"
    legacy.write_text(
        '{"version": "0", "bindings": [{"home_address": "fec0:106:2700::4", '
        '"care_of_address": "fec0:106:1100::4", "sequence": 3, "flags": 49152, '
        '"lifetime": 400, "expires_wall": 4000000000.0, "link_local": null}]}'
    )
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = HomeBindingPersistence(store)
        assert persistence.import_json(legacy) == 1
        assert not legacy.exists()
        assert [b.home_address for b in store.bindings("ha")] == [HOA]
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        assert persistence.import_json(bad) == 0 and persistence.errors == 1
