"""HomeAgentGuard (verifier + rate limits + persisted timestamps) and HomeBindingPersistence."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import HomeAgentConfig
from nfq_mip6.mobility.events import MobilityMessageReceived
from nfq_mip6.mobility.home_agent import HomeAgent
from nfq_mip6.mobility.home_agent import HomeAgentConfig as CoreConfig
from nfq_mip6.security.auth import (
    KeySource,
    MobileNodeAuthenticator,
    MobileNodeCredentials,
    SecurityAssociation,
)
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.security.ratelimit import RateLimits
from nfq_mip6.store import HomeBindingPersistence, StateStore
from nfq_mip6.wire import build_mh
from nfq_mip6.wire.mh import BAFlags, BindingAck, BindingError, BindingUpdate, BUFlags
from nfq_mip6.wire.options import AlternateCareofAddress, AuthenticationOption
from tests.support.howto import HA, HOA

COA = IPv6Address("fec0:106:1100::4")
KEY = bytes(range(40, 60))
SPI = 777


def credentials() -> MobileNodeCredentials:
    return MobileNodeCredentials(SPI, KeySource(env="K"), (IPv6Network(f"{HOA}/128"),))


def test_from_config_reads_keys_and_warns_when_unauthenticated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = HomeAgentGuard.from_config(
        HomeAgentConfig(mobile_nodes=(credentials(),)), legacy=False, environ={"K": KEY.hex()}
    )
    assert guard.verifier is not None and guard.verifier.required
    assert "NOT authenticated" not in caplog.text
    assert KEY.hex() not in repr(guard)
    legacy = HomeAgentGuard.from_config(HomeAgentConfig(), legacy=True, environ={})
    assert legacy.verifier is not None and not legacy.verifier.required
    assert "legacy network-mip6.conf" in caplog.text and "NOT authenticated" in caplog.text


def test_rate_limits_are_counted() -> None:
    guard = HomeAgentGuard(None, RateLimits(1, 2, 1, 1, 1, 1))
    assert [guard.allow_binding_update(COA, 0.0) for _ in range(3)] == [True, True, False]
    assert guard.allow_binding_update(HOA, 0.0)
    assert [guard.allow_binding_error(0.0) for _ in range(2)] == [True, False]
    assert [guard.allow_icmp_error(0.0) for _ in range(2)] == [True, False]
    assert guard.allow_binding_error(1.0)
    counters = guard.counters()
    assert counters["rate_limited_binding_updates"] == 1
    assert counters["rate_limited_binding_errors"] == 1
    assert counters["rate_limited_icmp_errors"] == 1


def test_outgoing_signs_only_authenticated_bas() -> None:
    sa = SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),))
    guard = HomeAgentGuard.from_config(
        HomeAgentConfig(mobile_nodes=(credentials(),)), legacy=False, environ={"K": KEY.hex()}
    )
    assert guard.verifier is not None
    mn = MobileNodeAuthenticator(sa)
    bu = mn.sign_binding_update(
        BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),)), COA, HOA
    )
    assert guard.verifier.check_home_binding_update(bu, build_mh(bu, HOA, HA), HOA, COA, 0) is None
    ba = guard.outgoing(BindingAck(0, BAFlags.NONE, 1, 10), COA, HOA)
    assert isinstance(ba, BindingAck) and isinstance(ba.options[-1], AuthenticationOption)
    be = BindingError(1, HOA)
    assert guard.outgoing(be, COA, None) is be
    assert guard.counters()["binding_acks_authenticated"] == 1
    assert guard.counters()["auth_accepted"] == 1


def test_timestamps_persist_across_restarts(tmp_path: Path) -> None:
    sa = SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),))
    config = HomeAgentConfig(mobile_nodes=(credentials(),))
    bu = MobileNodeAuthenticator(sa).sign_binding_update(
        BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),)), COA, HOA
    )
    mh = build_mh(bu, HOA, HA)
    with StateStore.in_state_dir(tmp_path) as store:
        guard = HomeAgentGuard.from_config(config, legacy=False, environ={"K": KEY.hex()})
        guard.restore_state(store)
        assert guard.verifier is not None
        assert guard.verifier.check_home_binding_update(bu, mh, HOA, COA, 0) is None
        guard.save_state(store)
        writes = store.writes
        guard.save_state(store)  # unchanged: no write
        assert store.writes == writes
    with StateStore.in_state_dir(tmp_path) as store:
        again = HomeAgentGuard.from_config(config, legacy=False, environ={"K": KEY.hex()})
        again.restore_state(store)
        assert again.verifier is not None
        rejection = again.verifier.check_home_binding_update(bu, mh, HOA, COA, 0)
        assert rejection is not None and rejection.status == 144


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
