"""The HA runtime's ``drain`` control command on the fake data plane: the Home Agent Switch
leaves as a BA does (to the CoA, RH2 = HoA), bad requests are refused, stats count it."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from nfq_mip6.dataplane.fake import FakeDataplane
from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.runtime.home_agent import HomeAgentRuntime
from nfq_mip6.wire import HomeAgentSwitch, parse_ipv6, parse_mh, verify_mh_checksum
from tests.support.factories import home_agent_runtime
from tests.support.howto import HA, HOA
from tests.unit.runtime.test_home_agent import COA, FakeND, bu

HA2 = IPv6Address("fec0:106:2700::3")


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[tuple[HomeAgentRuntime, list[bytes]]]:
    sent: list[bytes] = []
    rt = home_agent_runtime(tmp_path, FakeDataplane(), sent.append, nd=FakeND())
    rt.on_queued_packet(QueuedPacket(bu(1)), 100.0)
    rt.on_timer(101.0)  # proxy DAD done: registered, BA sent
    sent.clear()
    yield rt, sent
    rt.stop()


def test_drain_sends_a_switch_like_a_binding_ack(
    registered: tuple[HomeAgentRuntime, list[bytes]],
) -> None:
    rt, sent = registered
    answer = rt.handle_control({"cmd": "drain", "rate": 5, "home_agents": [str(HA2)]})
    assert answer["ok"] and answer["drain"]["draining"] is True
    assert answer["drain"]["switch_sent"] == 1 and answer["drain"]["home_agents"] == [str(HA2)]
    (packet,) = (parse_ipv6(raw) for raw in sent)
    assert (packet.src, packet.dst, packet.rh2_address) == (HA, COA, HOA)
    assert parse_mh(packet.upper_layer_bytes) == HomeAgentSwitch((HA2,))
    assert verify_mh_checksum(packet.upper_layer_bytes, HA, HOA)
    stats = rt.handle_control({"cmd": "stats"})["home_agent"]
    assert stats["draining"] == 1 and stats["drain_switch_sent"] == 1
    status = rt.handle_control({"cmd": "drain", "status": True})
    assert status["drain"]["switch_sent"] == 1 and len(sent) == 1
    assert rt.handle_control({"cmd": "drain", "stop": True})["drain"]["draining"] is False


@pytest.mark.parametrize(
    "request_",
    [
        {"cmd": "drain", "rate": 0},
        {"cmd": "drain", "rate": "fast"},
        {"cmd": "drain", "rate": True},
        {"cmd": "drain", "home_agents": ["not-an-address"]},
    ],
)
def test_bad_drain_requests_are_refused(
    registered: tuple[HomeAgentRuntime, list[bytes]], request_: dict[str, object]
) -> None:
    rt, sent = registered
    answer = rt.handle_control(request_)
    assert answer["ok"] is False and "drain" in answer["error"]
    assert sent == [] and not rt.core.draining  # type: ignore[union-attr]
