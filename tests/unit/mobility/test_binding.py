"""Binding cache, state transitions and RFC 6275 §9.5.1 sequence arithmetic."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfq_mip6.mobility.binding import (
    TRANSITIONS,
    BindingCache,
    BindingCacheEntry,
    BindingState,
    IllegalTransition,
    seq_newer,
    seq_next,
)
from tests.support.vectors import COA, HOA


def _entry(hoa: IPv6Address = HOA, lifetime: int = 100, now: float = 0.0) -> BindingCacheEntry:
    return BindingCacheEntry(
        hoa, COA, sequence=1, flags=0, lifetime=lifetime, now=now, home_registration=True
    )


def test_seq_newer_tahi_ha_2_5_valid() -> None:
    assert seq_newer(16, 15) and seq_newer(32782, 15)


def test_seq_newer_tahi_ha_2_6_invalid() -> None:
    assert not seq_newer(14, 15)
    assert not seq_newer(15, 15)
    assert not seq_newer(32783, 15)


def test_seq_newer_tahi_ha_2_7_valid_across_wrap() -> None:
    assert seq_newer(32784, 32783) and seq_newer(14, 32783)


def test_seq_newer_tahi_ha_2_8_invalid() -> None:
    assert not seq_newer(32782, 32783)
    assert not seq_newer(32783, 32783)
    assert not seq_newer(15, 32783)


def test_seq_newer_tahi_cn_5_1_1_valid() -> None:
    assert seq_newer(10001, 10000) and seq_newer(42767, 10000)
    assert seq_newer(0, 42768) and seq_newer(9999, 42768)


def test_seq_newer_tahi_cn_5_1_2_invalid() -> None:
    assert not any(seq_newer(s, 10000) for s in (9999, 10000, 42768, 0))


def test_seq_newer_rfc_example_last_15() -> None:
    # RFC 6275 §9.5.1: with last = 15, 0..15 and 32783..65535 are "less than or equal".
    assert not any(seq_newer(s, 15) for s in range(16))
    assert not any(seq_newer(s, 15) for s in range(32783, 65536))
    assert all(seq_newer(s, 15) for s in range(16, 32783))


def test_seq_next_wraps_at_65535() -> None:
    assert seq_next(65535) == 0
    assert seq_newer(seq_next(65535), 65535)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_seq_newer_antisymmetric(a: int, b: int) -> None:
    # For distinct numbers not exactly 32768 apart, exactly one is newer.
    if a == b:
        assert not seq_newer(a, b)
    elif (a - b) & 0xFFFF == 0x8000:
        assert not seq_newer(a, b) and not seq_newer(b, a)
    else:
        assert seq_newer(a, b) != seq_newer(b, a)


def test_transition_table_terminal_states_have_no_exit() -> None:
    assert TRANSITIONS[BindingState.DELETED] == frozenset()
    assert TRANSITIONS[BindingState.EXPIRED] == frozenset()


def test_illegal_transition_raises() -> None:
    entry = _entry()
    entry._transition(BindingState.DELETED)
    with pytest.raises(IllegalTransition):
        entry._transition(BindingState.REGISTERED)


def test_cache_expiry_order_and_refresh() -> None:
    cache = BindingCache()
    a = _entry(IPv6Address("2001:db8:a::1"), lifetime=10)
    b = _entry(IPv6Address("2001:db8:a::2"), lifetime=20)
    cache.insert(a)
    cache.insert(b)
    assert cache.next_expiry() == 10
    cache.register(a, care_of_address=COA, sequence=2, flags=0, lifetime=30, now=5)
    assert cache.next_expiry() == 20
    assert [e.home_address for e, _ in cache.pop_expired(20)] == [b.home_address]
    assert cache.pop_expired(34.9) == []
    expired = cache.pop_expired(35)
    assert [(e.home_address, prev) for e, prev in expired] == [
        (a.home_address, BindingState.REGISTERED)
    ]
    assert a.state is BindingState.EXPIRED
    assert len(cache) == 0 and cache.next_expiry() is None


def test_cache_insert_duplicate_is_a_bug() -> None:
    cache = BindingCache()
    cache.insert(_entry())
    with pytest.raises(KeyError):
        cache.insert(_entry())


def test_cache_remove_marks_deleted() -> None:
    cache = BindingCache()
    cache.insert(_entry())
    entry = cache.remove(HOA, BindingState.DELETED)
    assert entry.state is BindingState.DELETED and HOA not in cache


def test_binding_entry_uses_slots() -> None:
    entry = _entry()
    assert not hasattr(entry, "__dict__")


_ops = st.lists(
    st.tuples(
        st.sampled_from(["register", "remove", "expire"]),
        st.integers(0, 7),
        st.integers(0, 50),
        st.integers(1, 5),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_cache_invariants_hold_under_random_operations(
    ops: list[tuple[str, int, int, int]],
) -> None:
    """Invariants: no expired entry survives pop_expired(now); next_expiry is the minimum
    expiry of live entries; every entry in the cache is in a live state."""
    cache = BindingCache()
    now = 0.0
    for op, key, lifetime, step in ops:
        now += step
        hoa = IPv6Address(f"2001:db8:a::{key + 1}")
        entry = cache.get(hoa)
        if op == "register":
            if entry is None:
                cache.insert(
                    BindingCacheEntry(
                        hoa,
                        COA,
                        sequence=0,
                        flags=0,
                        lifetime=lifetime,
                        now=now,
                        home_registration=True,
                    )
                )
            else:
                cache.register(
                    entry,
                    care_of_address=COA,
                    sequence=entry.sequence + 1,
                    flags=0,
                    lifetime=lifetime,
                    now=now,
                )
        elif op == "remove" and entry is not None:
            cache.remove(hoa, BindingState.DELETED)
        else:
            for gone, _ in cache.pop_expired(now):
                assert gone.expires_at <= now and gone.state is BindingState.EXPIRED
            assert all(e.expires_at > now for e in cache)
        live = list(cache)
        assert all(e.live for e in live)
        expected = min((e.expires_at for e in live), default=None)
        assert cache.next_expiry() == expected
