"""The HA's proxy DAD timing (RFC 4862 §5.1, §5.4; RFC 6275 §10.3.1): the home interface's
dad_transmits and RetransTimer decide the probes and the wait before the first BA."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfq_mip6.io.nd import read_dad_timing
from nfq_mip6.mobility.dad import DadTiming


def test_rfc_defaults_one_probe_and_one_second() -> None:
    timing = DadTiming()
    assert (timing.transmits, timing.retrans_timer) == (1, 1.0)
    assert timing.probe_times(100.0) == (100.0,)
    assert timing.deadline(100.0) == 101.0
    assert timing.wait_ms == 1000


def test_a_shorter_retrans_timer_and_more_transmits_set_probes_and_wait() -> None:
    timing = DadTiming.from_interface(dad_transmits=3, retrans_time_ms=200)
    assert timing.probe_times(10.0) == pytest.approx((10.0, 10.2, 10.4))
    assert timing.deadline(10.0) == pytest.approx(10.6)  # RetransTimer after the last probe
    assert timing.wait_ms == 600


def test_zero_transmits_turns_dad_off() -> None:
    timing = DadTiming.from_interface(dad_transmits=0, retrans_time_ms=1000)
    assert not timing.enabled
    assert timing.probe_times(5.0) == ()
    assert timing.deadline(5.0) == 5.0 and timing.wait_ms == 0


def test_unspecified_or_nonsense_settings_fall_back_to_the_rfc() -> None:
    assert DadTiming.from_interface(dad_transmits=-1, retrans_time_ms=0) == DadTiming()
    assert DadTiming.from_interface(dad_transmits=1000, retrans_time_ms=100).transmits == 10
    with pytest.raises(ValueError):
        DadTiming(transmits=1, retrans_timer=0)


def proc_sys(tmp_path: Path, interface: str, transmits: str, retrans_ms: str) -> Path:
    (tmp_path / "conf" / interface).mkdir(parents=True)
    (tmp_path / "neigh" / interface).mkdir(parents=True)
    (tmp_path / "conf" / interface / "dad_transmits").write_text(transmits + "\n")
    (tmp_path / "neigh" / interface / "retrans_time_ms").write_text(retrans_ms + "\n")
    return tmp_path


def test_read_from_the_home_interface_settings(tmp_path: Path) -> None:
    root = proc_sys(tmp_path, "eth1", "2", "250")
    assert read_dad_timing("eth1", root) == DadTiming(2, 0.25)


def test_unreadable_settings_give_the_rfc_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = proc_sys(tmp_path, "eth1", "garbage", "300")
    assert read_dad_timing("eth1", root) == DadTiming(1, 0.3)
    assert read_dad_timing("eth9", root) == DadTiming()
    assert "dad_transmits unreadable" in caplog.text
