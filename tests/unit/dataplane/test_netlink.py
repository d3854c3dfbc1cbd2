"""The HA's kernel data plane without root (nfq_mip6/dataplane/netlink.py):
ENOMEM retries, batch failures, ``ip route`` parsing."""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

import pytest

from tests.support.howto import HA, HOA, PREFIX

COA = IPv6Address("fec0:106:1100::10")
COA2 = IPv6Address("fec0:106:1000::10")


# -- FakeDataplane ---------------------------------------------------------------------------


class ScriptedRtnl:
    """Answers each transact() with the next list of errnos."""

    def __init__(self, answers: list[list[int]]) -> None:
        self.answers = answers
        self.calls: list[int] = []

    def transact(self, requests: list[Any]) -> list[int]:
        self.calls.append(len(requests))
        return self.answers.pop(0)

    def close(self) -> None: ...


def netlink_dataplane() -> Any:
    from nfq_mip6.dataplane.netlink import NetlinkDataplane

    return NetlinkDataplane("lo", HA, PREFIX, sleep=lambda s: None)


def test_enomem_is_retried_and_other_errors_are_reported() -> None:
    import errno

    from nfq_mip6.dataplane import DataplaneError

    dataplane = netlink_dataplane()
    try:
        # decap + encap in one batch; the encap hits ENOMEM once, then succeeds.
        dataplane._rtnl = ScriptedRtnl([[0, errno.ENOMEM], [0]])
        dataplane.install_tunnel(HOA, COA)
        assert dataplane._rtnl.calls == [2, 1]
        assert dataplane.counters.enomem_retries == 1
        assert dataplane._coa_of == {HOA: COA}
        # A CoA change: new decap, encap replace, old decap removed (ESRCH is fine).
        dataplane._rtnl = ScriptedRtnl([[0, 0, errno.ESRCH]])
        dataplane.install_tunnel(HOA, COA2)
        assert dataplane._rtnl.calls == [3] and dataplane.counters.tunnel_replacements == 1
        dataplane._rtnl = ScriptedRtnl([[errno.EINVAL, 0]])
        with pytest.raises(DataplaneError, match="Invalid argument"):
            dataplane.remove_tunnel(HOA)
    finally:
        dataplane._ipr.close()


def test_batch_failures_map_to_their_lines() -> None:
    from nfq_mip6.dataplane.netlink import _batch_failures

    lines = ["route frobnicate one", "help-me-not", "route frobnicate two"]
    failures = _batch_failures(lines)
    assert [line for line, _why in failures] == lines


def test_run_batch_retries_only_enomem(monkeypatch: pytest.MonkeyPatch) -> None:
    import nfq_mip6.dataplane.netlink as netlink

    rounds: list[list[str]] = []

    def fake_batch(lines: list[str]) -> list[tuple[str, str]]:
        rounds.append(list(lines))
        if len(rounds) == 1:
            return [
                (lines[0], "RTNETLINK answers: Cannot allocate memory"),
                (lines[1], "RTNETLINK answers: No such process"),
                (lines[2], "Error: invalid argument"),
            ]
        return []

    monkeypatch.setattr(netlink, "_batch_failures", fake_batch)
    dataplane = netlink_dataplane()
    try:
        assert dataplane.run_batch(["a", "b", "c", "d"], ignore_missing=True) == 1
        assert rounds == [["a", "b", "c", "d"], ["a"]]
        assert dataplane.counters.enomem_retries == 1
    finally:
        dataplane._ipr.close()


def test_route_lines_of_ip_route_show_are_parsed() -> None:
    from nfq_mip6.dataplane.netlink import _parse_route_line

    encap = _parse_route_line(
        "fec0:106:2700::4  encap seg6 mode encap.red segs 1 [ fec0:106:1100::10 ] dev eth0 "
        "proto 173 metric 1024 pref medium"
    )
    assert encap is not None
    assert (encap.dst, encap.src, encap.segment, encap.dev) == (HOA, None, COA, "eth0")
    decap = _parse_route_line(
        "fec0:106:2700::2 from fec0:106:1100::10  encap seg6local action End.DX6 nh6 :: "
        "dev eth0 proto 173 metric 1024 pref medium"
    )
    assert decap is not None and (decap.dst, decap.src, decap.segment) == (HA, COA, None)
    assert _parse_route_line("") is None
    assert _parse_route_line("unreachable default dev lo") is None
