"""The in-memory data planes of nfq_mip6/dataplane/fake.py behave like the kernel ones."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface, IPv6Network

import pytest

from nfq_mip6.dataplane import InterfaceAddress
from nfq_mip6.dataplane.fake import FakeDataplane, FakeMobileNodeKernel
from nfq_mip6.dataplane.kernel import IFA_F_DADFAILED, IFA_F_OPTIMISTIC, IFA_F_TENTATIVE
from nfq_mip6.errors import DataplaneError
from tests.support.howto import HA
from tests.support.howto import HOA_INTERFACE as HOA

COA1 = IPv6Address("fec0:106:2900::4")
COA2 = IPv6Address("fec0:106:2a00::4")


def test_ha_fake_install_failure_is_the_one_kernel_error() -> None:
    dataplane = FakeDataplane()
    dataplane.fail_next = 1
    with pytest.raises(DataplaneError):
        dataplane.install_tunnel(HOA.ip, COA1)
    dataplane.install_tunnel(HOA.ip, COA1)
    assert dataplane.tunnels() == {HOA.ip: COA1} and dataplane.counters.errors == 1


def test_mn_fake_moves_the_tunnel_make_before_break_and_comes_home_clean() -> None:
    kernel = FakeMobileNodeKernel(HOA)
    kernel.move_home_address_away()
    kernel.prepare_care_of_address(COA1)
    kernel.install_reverse_tunnel(COA1, HA)
    kernel.prepare_care_of_address(COA2)
    assert kernel.decap == {COA1, COA2}  # both while the BU for COA2 is in flight
    kernel.install_reverse_tunnel(COA2, HA)
    assert kernel.decap == {COA2} and kernel.tunnel_source == COA2
    assert (kernel.care_of_address, kernel.home_agent) == (COA2, HA)
    assert kernel.home_address_away and kernel.local_rule_moved
    kernel.cleanup()
    assert not kernel.home_address_away and not kernel.local_rule_moved
    assert kernel.care_of_address is None and not kernel.decap
    assert kernel.snapshot()["care_of_address"] is None


def test_mn_fake_failures_raise_the_kernel_error_and_change_nothing() -> None:
    kernel = FakeMobileNodeKernel(HOA)
    kernel.fail_next = 1
    with pytest.raises(DataplaneError, match="fake failure"):
        kernel.install_reverse_tunnel(COA1, HA)
    assert kernel.care_of_address is None and not kernel.decap


def test_mn_fake_adopts_leftovers_of_a_run_that_ended_away() -> None:
    kernel = FakeMobileNodeKernel(HOA)
    assert kernel.adopt_leftovers() is False
    kernel.leftovers = True
    assert kernel.adopt_leftovers() is True
    assert kernel.home_address_away and kernel.local_rule_moved


def test_mn_fake_purges_addresses_of_links_left_but_keeps_the_home_address() -> None:
    kernel = FakeMobileNodeKernel(HOA)
    old = IPv6Interface("fec0:106:2900::4/64")
    new = IPv6Interface("fec0:106:2a00::4/64")
    kernel.addresses = [InterfaceAddress(interface, 0, None, None) for interface in (HOA, old, new)]
    removed = kernel.purge_visited_link_state((IPv6Network("fec0:106:2a00::/64"),), None)
    assert removed == [old]
    assert [entry.interface for entry in kernel.interface_addresses()] == [HOA, new]


@pytest.mark.parametrize(
    ("flags", "usable"),
    [
        (0, True),
        (IFA_F_TENTATIVE, False),
        (IFA_F_TENTATIVE | IFA_F_OPTIMISTIC, True),
        (IFA_F_DADFAILED, False),
    ],
)
def test_an_address_is_usable_unless_tentative_or_dad_failed(flags: int, usable: bool) -> None:
    assert InterfaceAddress(HOA, flags, None, None).usable is usable
