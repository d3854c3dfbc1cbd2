"""``nfq-mip6 radvd-config``: a home agent's radvd.conf from its configuration, carrying
``[ha] preference`` in the Home Agent Information option (RFC 6275 §7.4), and the clear
errors (exit 2, the key named) when the configuration cannot give one."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfq_mip6.cli import main

HA_TOML = """\
role = "ha"
interface = "vrrp.51"
[ha]
address = "fec0:106:2700::2"
home_prefix = "fec0:106:2700::/64"
preference = {preference}
require_authentication = false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_configured_preference_is_advertised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, HA_TOML.format(preference=250))
    assert main(["radvd-config", "--config", str(config), "--router-lifetime", "0"]) == 0
    text = capsys.readouterr().out
    assert "interface vrrp.51" in text
    assert "HomeAgentPreference 250;" in text
    assert "prefix fec0:106:2700::2/64" in text
    assert "AdvDefaultLifetime 0;" in text


def test_the_environment_overrides_the_preference_and_output_goes_to_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, HA_TOML.format(preference=250))
    monkeypatch.setenv("NFQ_MIP6_HA__PREFERENCE", "7")
    out = tmp_path / "radvd.conf"
    assert main(["radvd-config", "--config", str(config), "--interface", "eth0",
                 "--output", str(out)]) == 0  # fmt: skip
    text = out.read_text()
    assert "HomeAgentPreference 7;" in text and "interface eth0" in text
    assert out.stat().st_mode & 0o022 == 0  # radvd refuses a world-writable file


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (HA_TOML.format(preference=70000), "ha.preference"),
        (HA_TOML.format(preference=1).replace('address = "fec0:106:2700::2"\n', ""), "ha.address"),
        (
            HA_TOML.format(preference=1).replace('home_prefix = "fec0:106:2700::/64"\n', ""),
            "ha.home_prefix",
        ),
        ('role = "cn"\ninterface = "eth0"\n', "not ha"),
    ],
)
def test_a_configuration_that_cannot_give_one_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, problem: str
) -> None:
    config = write(tmp_path, text)
    assert main(["radvd-config", "--config", str(config)]) == 2
    assert problem in capsys.readouterr().err
