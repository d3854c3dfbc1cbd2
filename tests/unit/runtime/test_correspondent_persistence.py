"""CN persistence (issue 9): Kcn, nonces and bindings survive a crash of the agent.

Two :class:`CorrespondentRuntime` instances share one state directory; the first is dropped
without ``stop()`` (as kill -9 would), the second starts on a new monotonic clock. Tokens
from the first run's HoT/CoT still verify (RFC 6275 §5.2.7: a nonce is valid up to
MAX_NONCE_LIFETIME = 240 s after it was generated, whatever happens to the process); a
binding in force is back with its route optimization. Plus the store round trips and the
pure core hooks.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

from nfq_mip6.config import load_config
from nfq_mip6.constants import MAX_NONCE_LIFETIME
from nfq_mip6.mobility.correspondent import CorrespondentConfig, CorrespondentNode, NodeKeyState
from nfq_mip6.mobility.events import InstallRouteOptimization
from nfq_mip6.runtime.base import VerdictKind
from nfq_mip6.runtime.correspondent import CorrespondentRuntime
from nfq_mip6.store import CorrespondentPersistence, StateStore, StoredNonce
from nfq_mip6.wire import BAStatus, BindingAck, BindingError
from tests.support.factories import counter_bytes, runtime_context
from tests.unit.runtime.test_correspondent import (
    CN,
    COA,
    HOA,
    Clock,
    Harness,
    bu_packet,
    run_rr,
)

WALL = 1_800_000_000.0


def start_runtime(tmp_path: Path, clock: Clock, wall: list[float]) -> Harness:
    config_file = tmp_path / "cn.toml"
    state = tmp_path / "state"
    config_file.write_text(
        f'role = "cn"\ninterface = "eth0"\nroute_optimization = true\nstate_dir = "{state}"\n'
    )
    config = load_config(config_file, environ={})
    assert config.state_dir == state
    sent: list[bytes] = []
    runtime = CorrespondentRuntime(
        load_rules=False, address=CN, persist=True, wall_clock=lambda: wall[0]
    )
    ctx = runtime_context(config, sent.append, clock)
    runtime.start(ctx)
    assert runtime.persistence is not None
    return Harness(runtime, clock, sent)


def crash(h: Harness) -> None:
    """What kill -9 leaves: the database as committed, no stop()."""
    assert h.runtime.persistence is not None
    h.runtime.persistence.store.close()


def test_tokens_issued_before_a_crash_stay_valid(tmp_path: Path) -> None:
    wall = [WALL]
    first = start_runtime(tmp_path, Clock(1000.0), wall)
    hot, cot = run_rr(first)
    crash(first)
    wall[0] += 30  # restarted 30 s later, new monotonic clock
    second = start_runtime(tmp_path, Clock(5.0), wall)
    assert second.queue(bu_packet(hot, cot)).kind == VerdictKind.DROP
    [(_pkt, ba)] = second.replies()
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.ACCEPTED
    # the next nonce index continues after the restored one
    hot2, _cot2 = run_rr(second)
    assert hot2.nonce_index == hot.nonce_index or hot2.nonce_index == hot.nonce_index + 1


def test_nonces_older_than_max_nonce_lifetime_are_not_restored(tmp_path: Path) -> None:
    wall = [WALL]
    first = start_runtime(tmp_path, Clock(1000.0), wall)
    hot, cot = run_rr(first)
    crash(first)
    wall[0] += MAX_NONCE_LIFETIME + 1
    second = start_runtime(tmp_path, Clock(5.0), wall)
    second.queue(bu_packet(hot, cot))
    [(_pkt, ba)] = second.replies()
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.EXPIRED_NONCES  # 138


def test_a_binding_in_force_is_restored_with_its_route_optimization(tmp_path: Path) -> None:
    wall = [WALL]
    first = start_runtime(tmp_path, Clock(1000.0), wall)
    hot, cot = run_rr(first)
    first.queue(bu_packet(hot, cot, sequence=7))
    first.replies()
    crash(first)
    wall[0] += 100
    second = start_runtime(tmp_path, Clock(5.0), wall)
    (row,) = second.runtime.handle_control({"cmd": "cache"})["bindings"]
    assert (row["home_address"], row["care_of_address"]) == (str(HOA), str(COA))
    assert 300 <= row["lifetime"] <= 320  # 420 s granted, 100 s gone
    assert second.runtime.bindings == {HOA.packed: COA.packed}  # RO data path back
    # the sequence number survived: a replay of the pre-crash BU is refused with 135
    second.queue(bu_packet(hot, cot, sequence=7))
    [(_pkt, ba)] = second.replies()
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW


def test_clean_stop_forgets_the_bindings_but_keeps_the_key(tmp_path: Path) -> None:
    wall = [WALL]
    first = start_runtime(tmp_path, Clock(1000.0), wall)
    hot, cot = run_rr(first)
    first.queue(bu_packet(hot, cot))
    first.replies()
    first.runtime.stop()  # BE 1 to the bound MN, then the binding is not kept
    assert any(isinstance(m, BindingError) for _p, m in first.replies())
    second = start_runtime(tmp_path, Clock(5.0), wall)
    assert second.runtime.handle_control({"cmd": "cache"})["bindings"] == []
    second.queue(bu_packet(hot, cot, sequence=2))
    [(_pkt, ba)] = second.replies()
    assert isinstance(ba, BindingAck) and ba.status == BAStatus.ACCEPTED


def test_node_state_round_trip(tmp_path: Path) -> None:
    nonces = [StoredNonce(4, b"n" * 8, WALL - 20), StoredNonce(5, b"m" * 8, WALL - 1)]
    with StateStore.in_state_dir(tmp_path) as store:
        store.save_node_state("cn", b"k" * 20, 5, nonces, WALL)
        store.save_node_state("cn", b"k" * 20, 5, nonces[1:], WALL)  # the table is replaced
        key = store.node_key("cn")
        assert key is not None and (key.node_key, key.nonce_index) == (b"k" * 20, 5)
        assert store.nonces("cn") == nonces[1:]
        assert "n" * 8 not in repr(store.nonces("cn")) and "k" * 20 not in repr(key)


def test_core_key_state_export_and_restore() -> None:
    core = CorrespondentNode(
        CorrespondentConfig(address=CN),
        random_bytes=counter_bytes(1),
    )
    index, nonce = core.nonces.current(100.0)
    state = core.export_key_state(130.0)
    assert state.nonces == ((index, nonce, 30.0),) and state.current_index == index
    assert "redacted" in repr(state)
    other = CorrespondentNode(CorrespondentConfig(address=CN))
    other.restore_key_state(state, 10.0)
    assert other.nonces.lookup(index, 10.0) == nonce
    assert other.nonces.lookup(index, 10.0 + MAX_NONCE_LIFETIME - 30.0) is None
    assert other.export_key_state(10.0).node_key == state.node_key
    # too old: not restored
    stale = NodeKeyState(state.node_key, index, ((index, nonce, MAX_NONCE_LIFETIME),))
    other.restore_key_state(stale, 10.0)
    assert other.nonces.lookup(index, 10.0) is None


def test_core_restore_binding() -> None:
    core = CorrespondentNode(CorrespondentConfig(address=CN))
    actions = core.restore_binding(
        HOA, COA, sequence=9, flags=0x8000, lifetime=420, remaining=100.0, now=50.0
    )
    assert actions == [InstallRouteOptimization(HOA, COA)]
    assert core.has_binding(HOA)
    assert core.binding_cache_rows(50.0)[0].lifetime_remaining == 100
    other = IPv6Address("fec0:106:2700::9")
    assert (
        core.restore_binding(other, COA, sequence=1, flags=0, lifetime=420, remaining=0.0, now=50.0)
        == []
    )


def test_persistence_writes_only_when_the_nonce_table_changes(tmp_path: Path) -> None:
    core = CorrespondentNode(CorrespondentConfig(address=CN))
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = CorrespondentPersistence(store, lambda: WALL)
        assert persistence.restore(core, 0.0) == []  # nothing stored: the fresh key is saved
        key = store.node_key("cn")
        assert key is not None and key.node_key == core.export_key_state(0.0).node_key
        writes = store.writes
        persistence.record(core, [], 1.0)
        assert store.writes == writes
        core.nonces.current(2.0)
        persistence.record(core, [], 2.0)
        assert store.writes == writes + 1 and len(store.nonces("cn")) == 1
