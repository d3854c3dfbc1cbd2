"""Proxy DAD's multicast group membership on the home link (RFC 4862 §5.4.2, RFC 6275
§10.4.1), with the sockets replaced by recorders (no root, no network)."""

from __future__ import annotations

import socket
from ipaddress import IPv6Address
from typing import Any, ClassVar

import pytest

from nfq_mip6.io import nd
from nfq_mip6.io.nd import GROUP_HOLD_S, DadResult, HomeLinkND
from nfq_mip6.mobility.dad import DadTiming
from nfq_mip6.wire import solicited_node_address

HOA = IPv6Address("3ffe:501:ffff:100:200:ff:fe00:1")
LINK_LOCAL = IPv6Address("fe80::200:ff:fe00:1")
HA = IPv6Address("3ffe:501:ffff:100:290:27ff:fe14:ceda")
GROUP = solicited_node_address(HOA)  # ff02::1:ff00:1, also the link-local's group


class RecordingSocket:
    """Stands in for the raw sockets: records memberships and sends, receives nothing."""

    memberships: ClassVar[list[tuple[str, IPv6Address]]] = []

    def __init__(self, *args: Any) -> None:
        self.sent: list[bytes] = []

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if level == socket.IPPROTO_IPV6 and option == socket.IPV6_JOIN_GROUP:
            self.memberships.append(("join", IPv6Address(bytes(value[:16]))))
        elif level == socket.IPPROTO_IPV6 and option == socket.IPV6_LEAVE_GROUP:
            self.memberships.append(("leave", IPv6Address(bytes(value[:16]))))

    def setblocking(self, flag: bool) -> None:
        pass

    def sendto(self, packet: bytes, address: Any) -> int:
        self.sent.append(packet)
        return len(packet)

    def recvmsg(self, *args: Any) -> Any:
        raise BlockingIOError

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


@pytest.fixture
def home_link(monkeypatch: pytest.MonkeyPatch) -> HomeLinkND:
    RecordingSocket.memberships = []
    monkeypatch.setattr(nd.socket, "socket", RecordingSocket)
    monkeypatch.setattr(nd.socket, "if_nametoindex", lambda name: 7)
    monkeypatch.setattr(nd, "interface_mac", lambda name: bytes.fromhex("009027141cda"))
    return HomeLinkND("home0", dad_timing=lambda: DadTiming(transmits=1, retrans_timer=1.0))


def test_the_dad_group_is_handed_to_the_proxy_entry_without_a_leave_in_between(
    home_link: HomeLinkND,
) -> None:
    """A successful DAD keeps its solicited-node group until the proxy entry exists: the
    kernel's membership never drops to zero, so no MLD leave + join reports for the same group
    go out in front of the BA (TAHI saw both before every first BA)."""
    home_link.start_dad(HOA, None, 100.0)
    assert RecordingSocket.memberships == [("join", GROUP)]
    assert home_link.poll(101.0) == [DadResult(HOA, duplicate=False)]
    assert RecordingSocket.memberships == [("join", GROUP)]  # still joined after the DAD
    # the runtime adds the kernel's proxy entry, then announces: now the group is released
    home_link.announce(HOA, HA, 101.0)
    assert RecordingSocket.memberships == [("join", GROUP), ("leave", GROUP)]
    assert home_link.next_deadline() == 102.0  # only the repeated NAs remain


def test_home_address_and_link_local_each_release_their_share_of_the_group(
    home_link: HomeLinkND,
) -> None:
    home_link.start_dad(HOA, LINK_LOCAL, 100.0)
    assert home_link.poll(101.0) == [DadResult(HOA, duplicate=False)]
    home_link.announce(HOA, HA, 101.0)
    assert ("leave", GROUP) not in RecordingSocket.memberships  # the link-local still holds it
    home_link.announce(LINK_LOCAL, HA, 101.0)
    assert RecordingSocket.memberships == [("join", GROUP), ("leave", GROUP)]


def test_a_duplicate_leaves_the_group_at_once(home_link: HomeLinkND) -> None:
    home_link.start_dad(HOA, None, 100.0)
    home_link._dad[HOA].duplicate = True  # an NA for the target arrived
    assert home_link.poll(100.5) == [DadResult(HOA, duplicate=True)]
    assert RecordingSocket.memberships == [("join", GROUP), ("leave", GROUP)]


def test_a_dad_result_that_never_becomes_a_proxy_releases_the_group_later(
    home_link: HomeLinkND,
) -> None:
    home_link.start_dad(HOA, None, 100.0)
    home_link.poll(101.0)  # e.g. the binding was deleted while its DAD ran
    assert home_link.next_deadline() == 101.0 + GROUP_HOLD_S
    home_link.poll(101.0 + GROUP_HOLD_S)
    assert RecordingSocket.memberships == [("join", GROUP), ("leave", GROUP)]
    assert home_link.next_deadline() is None


def test_a_second_dad_for_a_held_target_keeps_one_membership(home_link: HomeLinkND) -> None:
    home_link.start_dad(HOA, None, 100.0)
    home_link.poll(101.0)
    home_link.start_dad(HOA, None, 102.0)  # held, and joined again by the new DAD
    home_link.poll(103.0)
    home_link.announce(HOA, HA, 103.0)
    joins = [m for m in RecordingSocket.memberships if m[0] == "join"]
    leaves = [m for m in RecordingSocket.memberships if m[0] == "leave"]
    assert len(joins) == 1 and len(leaves) == 1  # the socket joined once, left once
