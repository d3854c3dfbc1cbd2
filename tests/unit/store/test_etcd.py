"""The etcd store's pure parts (no etcd needed): compact JSON records round-trip, the key
layout under the virtual HA's prefix, the group-commit picker (distinct keys, order kept per
key), and the range end of a prefix."""

from __future__ import annotations

import json
import time
from ipaddress import IPv6Address, IPv6Network

import pytest

pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")

from nfq_mip6.store import BindingCommit, StoredBinding
from nfq_mip6.store.etcd import EtcdBindingStore, _Pending
from nfq_mip6.store.etcd_gateway import (
    EtcdSettings,
    KeyState,
    binding_value,
    ipv6,
    parse_binding,
    prefix_end,
)

HOA = IPv6Address("2001:db8::1")
ROW = StoredBinding(
    "ha", HOA, IPv6Address("2001:db8:c::1"), 7, 0xC000, 400, 1_900_000_000.25,
    link_local=IPv6Address("fe80::1"), prefixes=(IPv6Network("2001:db8:77::/48"),),
)  # fmt: skip


def test_binding_record_round_trips_as_compact_json_without_secrets() -> None:
    value = binding_value(ROW, "host-a/42")
    assert " " not in value and json.loads(value)["w"] == "host-a/42"
    assert parse_binding(str(HOA), value) == ROW


def test_addresses_parse_as_ipaddress_does_and_bad_records_are_counted() -> None:
    for text in ("2001:db8::1", "::", "fe80::1:2:3:4", "::ffff:192.0.2.1", "2001:DB8::A"):
        assert ipv6(text) == IPv6Address(text)
    for bad in ("2001:db8::g", "1.2.3.4", "", "fe80::1%eth0", "2001:db8:::1"):
        with pytest.raises(ValueError):
            ipv6(bad)
    state = KeyState()
    state.apply("/p/", "/p/b/2001:db8::zz", '{"coa":"2001:db8::1"}', 5)
    state.apply(
        "/p/", "/p/b/2001:db8::1", '{"coa":"nope","seq":1,"flags":0,"lifetime":1,"exp":1}', 6
    )
    assert state.bad == 2 and state.bindings == {}


def test_prefix_end_covers_exactly_the_prefix() -> None:
    assert prefix_end("/nfq-mip6/v1/vha1/") == "/nfq-mip6/v1/vha10"


def pending(store: EtcdBindingStore, change: BindingCommit, token: int) -> _Pending:
    return _Pending(change, token, time.monotonic() + 1, store._keys(change))


def test_picker_keeps_one_commit_per_key_in_flight_and_order_per_key() -> None:
    # An unreachable endpoint: the picker and key layout need no etcd.
    store = EtcdBindingStore(EtcdSettings(("http://127.0.0.1:9",), "vha1", max_batch=3))
    try:
        other = IPv6Address("2001:db8::2")
        a1 = pending(store, BindingCommit((ROW,), (), {5: 1}), 1)
        b1 = pending(store, BindingCommit((), (other,)), 2)
        a2 = pending(store, BindingCommit((ROW,), ()), 3)  # same HoA as a1: waits
        c1 = pending(store, BindingCommit((), (IPv6Address("2001:db8::3"),), {5: 2}), 4)  # SPI
        d1 = pending(store, BindingCommit((), (IPv6Address("2001:db8::4"),)), 5)
        e1 = pending(store, BindingCommit((), (IPv6Address("2001:db8::5"),)), 6)  # batch full
        batch, rest = store._pick([a1, b1, a2, c1, d1, e1])
        assert [p.token for p in batch] == [1, 2, 5] and [p.token for p in rest] == [3, 4, 6]
        assert set(a1.keys) == {"/nfq-mip6/v1/vha1/b/2001:db8::1", "/nfq-mip6/v1/vha1/auth/5"}
        assert b1.keys == {"/nfq-mip6/v1/vha1/b/2001:db8::2": None}
    finally:
        store.close()


def test_transactions_overlap_only_without_a_backlog() -> None:
    """Two transactions in flight on distinct keys when commits trickle in (latency); one at
    a time, as big as it gets, while a full batch or more waits (throughput). The round trip
    to etcd is replaced by a function that holds until the test releases it."""
    import select
    import threading

    # a long batch window: the 20 commits of the backlog reach the store thread before it
    # picks the first batch however slowly this process is scheduled
    store = EtcdBindingStore(
        EtcdSettings(
            ("http://127.0.0.1:9",), "vha1", max_batch=4, max_in_flight=2, batch_window=0.2
        )
    )
    lock = threading.Lock()
    active = [0]
    seen: list[int] = []
    release = threading.Event()

    def round_trip(batch: list[_Pending]) -> None:
        with lock:
            active[0] += 1
            seen.append(active[0])
        release.wait(5.0)
        time.sleep(0.01)  # a held batch would have the chance to start meanwhile
        with lock:
            active[0] -= 1
        for item in batch:
            store._finish(item, None)

    def commit(n: int) -> BindingCommit:
        hoa = IPv6Address(int(HOA) + n)
        return BindingCommit((StoredBinding("ha", hoa, ROW.care_of_address, 1, 0, 400, 1e9),))

    def wait_for(count: int) -> None:
        done = 0
        while done < count:
            select.select([store.completions()], [], [], 5.0)
            done += len(store.completions().drain())

    def until(predicate: object) -> None:
        deadline = time.monotonic() + 5.0
        while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.001)

    store._commit_batch = round_trip  # type: ignore[method-assign]
    try:
        release.set()
        for n in range(20):  # a backlog: 5 batches of 4, one after the other
            store.submit(commit(n), n)
        wait_for(20)
        assert max(seen) == 1
        seen.clear()
        release.clear()
        store.submit(commit(100), 100)
        until(lambda: len(seen) == 1)  # the first one is on its way to etcd
        store.submit(commit(101), 101)
        until(lambda: len(seen) == 2)
        release.set()
        wait_for(2)
        assert seen == [1, 2]
    finally:
        release.set()
        store.close()
