"""The kernel toolkit shared by the HA and MN data planes (nfq_mip6/dataplane/kernel.py)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from nfq_mip6.dataplane import kernel
from nfq_mip6.dataplane.kernel import (
    ENOMEM_RETRIES,
    ENOMEM_RETRY_DELAY_S,
    EnomemRetry,
    patch_pyroute2_seg6_modes,
    quietly,
)
from nfq_mip6.errors import DataplaneError, NfqMip6Error


class Flaky:
    """A pyroute2 request that fails with the given errnos, then answers ``"done"``."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        if self.codes:
            raise NetlinkError(self.codes.pop(0))
        return "done"


def test_enomem_is_retried_after_10_ms_and_counted() -> None:
    slept: list[float] = []
    counted: list[int] = []
    retry = EnomemRetry(sleep=slept.append, on_retry=counted.append)
    request = Flaky(errno.ENOMEM, errno.ENOMEM)
    assert retry.call("add route", request) == "done"
    assert request.calls == 3
    assert slept == [ENOMEM_RETRY_DELAY_S] * 2 and counted == [1, 1] and retry.retried == 2


def test_other_refusals_and_enomem_after_the_last_retry_are_one_dataplane_error() -> None:
    retry = EnomemRetry(sleep=lambda s: None)
    with pytest.raises(DataplaneError, match=r"^add route: ") as refused:
        retry.call("add route", Flaky(errno.EINVAL))
    assert isinstance(refused.value, NfqMip6Error)
    assert isinstance(refused.value.__cause__, NetlinkError)
    request = Flaky(*[errno.ENOMEM] * (ENOMEM_RETRIES + 1))
    with pytest.raises(DataplaneError):
        retry.call("add route", request)
    assert request.calls == ENOMEM_RETRIES + 1


def test_batch_rounds_retry_only_what_failed_with_enomem() -> None:
    rounds: list[tuple[list[str], bool]] = []

    def attempt(pending: list[str], final: bool) -> list[str]:
        rounds.append((pending, final))
        return [item for item in pending if item == "b"] if len(rounds) < 3 else []

    counted: list[int] = []
    EnomemRetry(sleep=lambda s: None, on_retry=counted.append).rounds(["a", "b", "c"], attempt)
    assert rounds == [(["a", "b", "c"], False), (["b"], False), (["b"], False)]
    assert counted == [1, 1]


def test_the_last_round_is_marked_final_and_nothing_is_retried_after_it() -> None:
    finals: list[bool] = []

    def attempt(pending: list[str], final: bool) -> list[str]:
        finals.append(final)
        return pending

    EnomemRetry(sleep=lambda s: None, retries=2).rounds(["x"], attempt)
    assert finals == [False, False, True]


def test_removing_what_is_not_there_is_quiet() -> None:
    for code in (errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL, errno.ENODEV):
        assert quietly("del rule", Flaky(code)) is False
    assert quietly("del rule", Flaky()) is True
    with pytest.raises(DataplaneError, match="del rule"):
        quietly("del rule", Flaky(errno.EPERM))


def test_pyroute2_learns_encap_red_once() -> None:
    from pyroute2.netlink.rtnl.rtmsg import rtmsg_base

    patch_pyroute2_seg6_modes()
    patch_pyroute2_seg6_modes()
    for srh in (
        rtmsg_base.seg6_encap_info.ipv6_sr_hdr,
        rtmsg_base.seg6local_encap_info.ipv6_sr_hdr,
    ):
        assert srh.encapmodes["encap.red"] == kernel.SEG6_IPTUN_MODE_ENCAP_RED
        assert srh.r_encapmodes[kernel.SEG6_IPTUN_MODE_ENCAP_RED] == "encap.red"


def test_run_ip_names_the_command_that_failed() -> None:
    with pytest.raises(DataplaneError, match=r"^ip -6 route frobnicate: "):
        kernel.run_ip("-6", "route", "frobnicate")


def test_the_rule_priorities_keep_decap_before_local_before_the_home_address_rule() -> None:
    assert kernel.MN_DECAP_RULE_PRIORITY < kernel.LOCAL_RULE_PRIORITY
    # a bound correspondent's route (tc BPF route optimization) wins over the tunnel
    assert kernel.LOCAL_RULE_PRIORITY < kernel.MN_RO_RULE_PRIORITY
    assert kernel.MN_RO_RULE_PRIORITY < kernel.MN_HOME_ADDRESS_RULE_PRIORITY
    assert kernel.RULE_PRIORITY_ND_LOCAL < kernel.RULE_PRIORITY_ND < kernel.RULE_PRIORITY_DECAP
    assert kernel.RULE_PRIORITY_DECAP < kernel.LOCAL_RULE_PRIORITY


def test_every_table_and_route_protocol_the_agent_owns_is_distinct() -> None:
    tables = [
        kernel.TUNNEL_TABLE,
        kernel.DECAP_TABLE,
        kernel.MN_REVERSE_TUNNEL_TABLE,
        kernel.MN_DECAP_TABLE,
        kernel.MN_RO_ROUTE_TABLE,
    ]
    assert len(set(tables)) == len(tables)
    assert not {kernel.RT_TABLE_MAIN, kernel.RT_TABLE_LOCAL} & set(tables)
    assert kernel.RT_PROTO_NFQ_MIP6 != kernel.RT_PROTO_RO


def test_sysctl_paths_keep_dots_in_interface_names() -> None:
    assert kernel.sysctl_path("net.ipv6.conf.all.forwarding") == Path(
        "/proc/sys/net/ipv6/conf/all/forwarding"
    )
    assert kernel.sysctl_path("net.ipv6.neigh.eth0.100.proxy_delay") == Path(
        "/proc/sys/net/ipv6/neigh/eth0.100/proxy_delay"
    )


def test_ensure_sysctl_reads_first_and_explains_what_it_cannot_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files = {"net.ok": tmp_path / "ok", "net.ro": tmp_path / "ro"}
    files["net.ok"].write_text("1\n")
    files["net.ro"].write_text("0\n")
    files["net.ro"].chmod(0o444)
    monkeypatch.setattr(kernel, "sysctl_path", lambda name: files[name])
    monkeypatch.setattr(Path, "write_text", _refuse_read_only(Path.write_text))
    assert kernel.ensure_sysctl("net.ok", "1") is True  # already right: never written
    with pytest.raises(kernel.SysctlError, match=r"net\.ro is 0, needs 1.*--sysctl net\.ro=1"):
        kernel.ensure_sysctl("net.ro", "1")
    assert kernel.ensure_sysctl("net.ro", "1", required=False) is False
    assert "net.ro is 0, needs 1" in caplog.text


def _refuse_read_only(original: Any) -> Any:
    """Path.write_text that fails with EROFS on read-only files (like /proc/sys in a pod)."""
    import errno
    import os

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if not os.access(self, os.W_OK) or self.stat().st_mode & 0o222 == 0:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        result: int = original(self, data, *args, **kwargs)
        return result

    return write_text
