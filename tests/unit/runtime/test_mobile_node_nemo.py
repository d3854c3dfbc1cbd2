"""The Mobile Node runtime as a mobile router (RFC 3963 §5.3): what it logs and counts when
the home agent refuses it (140–143) or accepts it without the Mobile Router flag."""

from __future__ import annotations

import logging
from ipaddress import IPv6Address, IPv6Network

import pytest

from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.mobility.events import MovedToForeignLink, SendDhaadRequest
from nfq_mip6.runtime.mobile_node import MobileNodeRuntime, _make_core
from nfq_mip6.wire import (
    BAFlags,
    BindingAck,
    DhaadRequest,
    build_ipv6_packet,
    build_mh,
    parse_icmpv6,
    parse_ipv6,
)
from nfq_mip6.wire.mh import IPPROTO_MH
from tests.support.howto import COA, HA
from tests.support.howto import HOA_INTERFACE as HOA
from tests.unit.runtime.test_mobile_node import runtime_and_log, sent_packets  # noqa: F401

AR = IPv6Address("fe80::11")
MNP = IPv6Network("2001:db8:77::/48")


@pytest.fixture
def router(runtime_and_log: tuple[MobileNodeRuntime, list[str]]) -> MobileNodeRuntime:  # noqa: F811
    runtime, _log = runtime_and_log
    runtime.core = _make_core(HOA, HA, 1000, mobile_router=True, prefixes=(MNP,))
    runtime._decide([MovedToForeignLink(COA, 86400.0, AR)], 100.0)
    return runtime


def answer(runtime: MobileNodeRuntime, status: int, flags: BAFlags) -> None:
    sequence = runtime.bul_rows(100.0)[0]["sequence"]
    lifetime = 0 if status >= 128 else 250
    mh = build_mh(BindingAck(status, flags, sequence, lifetime), HA, HOA.ip)
    packet = build_ipv6_packet(HA, COA, IPPROTO_MH, mh, rh2_address=HOA.ip)
    runtime.on_queued_packet(QueuedPacket(packet), 100.01)


def test_rfc3963_5_3_accepted_as_a_router_is_quiet(
    router: MobileNodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.mn"):
        answer(router, 0, BAFlags.R)
    assert router.counters["mobile_router_not_acknowledged"] == 0
    assert not caplog.records
    assert router.bul_rows(100.02)[0]["state"] == 1


def test_rfc3963_5_3_accepted_without_r_is_logged_and_counted(
    router: MobileNodeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.mn"):
        answer(router, 0, BAFlags.NONE)
    assert router.counters["mobile_router_not_acknowledged"] == 1
    [record] = caplog.records
    assert "without the Mobile Router flag" in record.getMessage()
    assert "not the mobile network prefixes" in record.getMessage()
    assert router.bul_rows(100.02)[0]["state"] == 1  # the home address stays registered


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (140, "mobile router operation not permitted"),
        (141, "invalid prefix"),
        (142, "not authorized for prefix"),
        (143, "forwarding setup failed"),
    ],
)
def test_rfc3963_5_3_refusals_140_to_143_are_logged_with_the_reason_and_counted(
    router: MobileNodeRuntime, caplog: pytest.LogCaptureFixture, status: int, reason: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.mn"):
        answer(router, status, BAFlags.NONE)
    assert router.counters["mobile_router_rejections"] == 1
    [record] = caplog.records
    assert f"status {status} ({reason})" in record.getMessage()
    assert router.bul_rows(100.02) == []


def test_rfc3963_7_1_the_dhaad_request_on_the_wire_carries_r(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]],  # noqa: F811
) -> None:
    runtime, log = runtime_and_log
    anycast = IPv6Address("fec0:106:2700::fdff:ffff:ffff:fffe")
    runtime._apply([SendDhaadRequest(7, COA, anycast, mobile_router=True)], 100.0)
    (packet,) = sent_packets(log)
    parsed = parse_ipv6(packet)
    assert (parsed.src, parsed.dst) == (COA, anycast)
    assert parse_icmpv6(parsed.upper_layer_bytes) == DhaadRequest(7, mobile_router=True)
