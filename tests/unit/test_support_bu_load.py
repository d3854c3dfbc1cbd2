"""The scripted MNs' bookkeeping (tests/support/bu_load.py) that the etcd leader test and
bench/bench_etcd_leader_loss.py assert on: a BA is read back from the bytes an HA sends, and
``analyse`` finds BUs answered twice, BAs for no BU, MNs whose last BU got no status 0, the
longest time without a BA."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.wire import BAFlags, BindingAck, build_ipv6_packet, build_mh
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.bu_load import LoadRecord, analyse, ba_fields, bu_packet, mobile_nodes

HA = IPv6Address("2001:db8:a::1")
HOA, COA = IPv6Address("2001:db8:a::1:5"), IPv6Address("2001:db8:b::1:5")


def test_ba_fields_with_and_without_a_type_2_routing_header() -> None:
    mh = build_mh(BindingAck(0, BAFlags(0), 7, 250), HA, HOA)
    routed = build_ipv6_packet(HA, COA, IPPROTO_MH, mh, rh2_address=HOA)
    assert ba_fields(routed) == (HOA.packed, 0, 7)
    error = build_mh(BindingAck(135, BAFlags(0), 9, 0), HA, COA)
    assert ba_fields(build_ipv6_packet(HA, COA, IPPROTO_MH, error)) == (COA.packed, 135, 9)
    assert ba_fields(bu_packet(HA, HOA, COA, 7)) is None  # a BU is not a BA


def test_mobile_nodes_count_up_from_the_bases() -> None:
    nodes = mobile_nodes(3, IPv6Address("2001:db8:a::1:0"), IPv6Address("2001:db8:b::1:0"))
    assert nodes[2] == (IPv6Address("2001:db8:a::1:2"), IPv6Address("2001:db8:b::1:2"))


def test_analyse_reports_what_the_mns_saw() -> None:
    record = LoadRecord(3, 10.0, 2.0)
    record.sent = [
        (0, 1, -1.0, "register"), (1, 1, -1.0, "register"), (2, 1, -1.0, "register"),
        (0, 2, 0.1, "load"), (1, 2, 0.2, "load"), (2, 2, 0.3, "load"),
        (2, 3, 1.3, "load+r"),
    ]  # fmt: skip
    record.received = [
        (0, 1, 0, -0.5), (1, 1, 0, -0.5), (2, 1, 0, -0.5),
        (0, 2, 0, 0.15), (0, 2, 0, 0.16),  # answered twice
        (1, 2, 135, 0.25),  # refused: MN 1's last BU has no status 0
        (1, 9, 0, 0.26),  # a BA for a BU nobody sent
        (2, 3, 0, 1.8),  # MN 2's retransmission answered
    ]  # fmt: skip
    record.last_sequence = [2, 2, 3]
    seen = analyse(record)
    assert seen.answered_twice == [(0, 2)]
    assert seen.unmatched == [(1, 9)]
    assert seen.statuses == {0: 7, 135: 1}
    assert seen.last_unanswered == [1]
    assert seen.retransmissions == 1
    assert (round(seen.longest_gap, 2), seen.longest_gap_start) == (1.54, 0.26)
    assert [round(lat, 2) for _sent, lat in seen.latencies] == [0.05, 0.05, 0.5]
    summary = seen.summary(late_after=0.4)
    assert summary["late_bas"] == 1 and summary["bas_answered_twice"] == 1
