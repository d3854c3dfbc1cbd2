"""HomeAgentGuard: verifier, rate limits and persisted RFC 4285 timestamps."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import HomeAgentConfig
from nfq_mip6.security.auth_codec import SecurityAssociation
from nfq_mip6.security.guard import HomeAgentGuard
from nfq_mip6.security.keys import KeySource, MobileNodeCredentials
from nfq_mip6.security.mobile_node_auth import MobileNodeAuthenticator
from nfq_mip6.security.ratelimit import RateLimits
from nfq_mip6.store import StateStore
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


def test_reload_timestamps_replaces_them_backwards_too() -> None:
    """HA cluster: the store's last Mesg-ID replaces the verifier's, also an older one (an
    uncommitted acceptance is undone) or none; reloaded values count as saved."""
    sa = SecurityAssociation(SPI, KEY, (IPv6Network(f"{HOA}/128"),))
    guard = HomeAgentGuard.from_config(
        HomeAgentConfig(mobile_nodes=(credentials(),)), legacy=False, environ={"K": KEY.hex()}
    )
    assert guard.verifier is not None
    bu = MobileNodeAuthenticator(sa).sign_binding_update(
        BindingUpdate(1, BUFlags.A | BUFlags.H, 10, (AlternateCareofAddress(COA),)), COA, HOA
    )
    mh = build_mh(bu, HOA, HA)
    assert guard.verifier.check_home_binding_update(bu, mh, HOA, COA, 0) is None
    accepted = guard.unsaved_timestamps()
    assert list(accepted) == [SPI]
    guard.reload_timestamps({SPI: None})  # the commit timed out: undone
    assert guard.unsaved_timestamps() == {}
    assert guard.verifier.check_home_binding_update(bu, mh, HOA, COA, 0) is None  # not a replay
    guard.reload_timestamps(accepted)  # the store holds it (another instance accepted it)
    assert guard.unsaved_timestamps() == {}
    rejection = guard.verifier.check_home_binding_update(bu, mh, HOA, COA, 0)
    assert rejection is not None and rejection.status == 144
    guard.reload_timestamps({SPI + 1: 5})  # an SPI not configured here: ignored
    assert SPI + 1 not in guard.verifier.last_timestamps()
