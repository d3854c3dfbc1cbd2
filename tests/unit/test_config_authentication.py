"""RFC 4285 MN-HA authentication is required by default for TOML configurations (issue 9).

A TOML HA needs ``[[ha.mobile_nodes]]`` and a TOML MN ``auth_spi`` plus a key source unless
``require_authentication = false`` says otherwise; the legacy ``network-mip6.conf`` keeps
running unauthenticated with a loud warning at start.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nfq_mip6.config import AgentConfig, ConfigError, Role, load_config
from nfq_mip6.security.guard import HomeAgentGuard

HA_TOML = 'role = "ha"\ninterface = "eth1"\n[ha]\naddress = "fec0:106:2700::2"\n'
HA_KEYS = """
[[ha.mobile_nodes]]
home_address = "fec0:106:2700::4"
spi = 1000
key_env = "NFQ_MIP6_TEST_MN1_KEY"
"""
MN_TOML = 'role = "mn"\ninterface = "eth0"\n[mn]\nhome_address = "fec0:106:2700::4/64"\n'
MN_KEYS = 'auth_spi = 1000\nauth_key_env = "NFQ_MIP6_TEST_MN1_KEY"\n'
PROBLEM = "authentication is required for TOML configurations"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_home_agent_without_keys_is_a_configuration_error(tmp_path: Path) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert (error.path, error.key) == (path, "ha.mobile_nodes")
    assert error.problem == (
        f"{PROBLEM}: add [[ha.mobile_nodes]] entries with keys, or set "
        "require_authentication = false"
    )
    assert str(error).startswith(f"{path}: ha.mobile_nodes: {PROBLEM}")


def test_toml_home_agent_required_explicitly_without_keys_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML + "require_authentication = true\n")
    with pytest.raises(ConfigError, match="require_authentication is true") as caught:
        load_config(path, environ={})
    assert caught.value.key == "ha.mobile_nodes"


def test_agent_exits_2_naming_file_key_and_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NFQ_MIP6_")}
    done = subprocess.run(
        [sys.executable, "-m", "nfq_mip6", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{path}: ha.mobile_nodes: {PROBLEM}" in done.stderr
    assert "Traceback" not in done.stderr


def test_toml_home_agent_with_keys_requires_authentication(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "ha.toml", HA_TOML + HA_KEYS), environ={})
    assert config.ha is not None and len(config.ha.mobile_nodes) == 1
    assert not config.unauthenticated


def test_toml_home_agent_explicitly_unauthenticated_loads_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML + "require_authentication = false\n")
    config = load_config(path, environ={})
    assert config.ha is not None and config.ha.require_authentication is False
    assert config.unauthenticated
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.security"):
        guard = HomeAgentGuard.from_config(config.ha, legacy=config.legacy, environ={})
    assert guard.verifier is not None and not guard.verifier.required
    assert "require_authentication = false" in caplog.text
    assert "NOT authenticated" in caplog.text


def test_toml_home_agent_false_with_keys_warns_about_uncovered_addresses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML + "require_authentication = false\n" + HA_KEYS)
    config = load_config(path, environ={})
    assert config.unauthenticated
    assert config.ha is not None
    environ = {"NFQ_MIP6_TEST_MN1_KEY": "00" * 20}
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.security"):
        HomeAgentGuard.from_config(config.ha, legacy=False, environ=environ)
    assert "no [[ha.mobile_nodes]] entry covers are accepted NOT authenticated" in caplog.text


def test_environment_switches_home_agent_authentication_off(tmp_path: Path) -> None:
    path = write(tmp_path, "ha.toml", HA_TOML)
    config = load_config(path, environ={"NFQ_MIP6_HA__REQUIRE_AUTHENTICATION": "false"})
    assert config.ha is not None and config.ha.require_authentication is False
    assert config.unauthenticated
    # ... and back on: the error names the variable that asked for it.
    keyed = write(tmp_path, "ha2.toml", HA_TOML + "require_authentication = false\n")
    variable = "NFQ_MIP6_HA__REQUIRE_AUTHENTICATION"
    with pytest.raises(ConfigError) as caught:
        load_config(keyed, environ={variable: "true"})
    assert caught.value.path == f"environment {variable}"


def test_legacy_home_agent_loads_unauthenticated_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "network-mip6.conf", "FUNCTIONALITY=ha\nMAX_TUNNEL_NR=5\n")
    config = load_config(path, environ={})
    assert config.legacy and config.role is Role.HA and config.unauthenticated
    assert config.ha is not None and config.ha.require_authentication is None
    with caplog.at_level(logging.WARNING, logger="nfq_mip6.security"):
        guard = HomeAgentGuard.from_config(config.ha, legacy=True, environ={})
    assert guard.verifier is not None and not guard.verifier.required
    assert "legacy network-mip6.conf" in caplog.text and "NOT authenticated" in caplog.text


def test_legacy_home_agent_cannot_require_authentication(tmp_path: Path) -> None:
    path = write(tmp_path, "network-mip6.conf", "FUNCTIONALITY=ha\n")
    with pytest.raises(ConfigError, match=r"network-mip6\.conf has no keys"):
        load_config(path, environ={"NFQ_MIP6_HA__REQUIRE_AUTHENTICATION": "yes"})


def test_toml_mobile_node_without_keys_is_a_configuration_error(tmp_path: Path) -> None:
    path = write(tmp_path, "mn.toml", MN_TOML)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    error = caught.value
    assert (error.path, error.key) == (path, "mn.auth_spi")
    assert error.problem == (
        f"{PROBLEM}: set auth_spi and exactly one of auth_key_file or auth_key_env, or set "
        "require_authentication = false"
    )


def test_toml_mobile_node_spi_without_key_is_a_configuration_error(tmp_path: Path) -> None:
    path = write(tmp_path, "mn.toml", MN_TOML + "auth_spi = 1000\n")
    with pytest.raises(ConfigError, match="auth_spi 1000 given") as caught:
        load_config(path, environ={})
    assert caught.value.key == "mn.auth_spi"


def test_toml_mobile_node_with_keys_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "mn.toml", MN_TOML + MN_KEYS), environ={})
    assert config.mn is not None and config.mn.auth_spi == 1000
    assert config.mn.require_authentication is None
    assert not config.unauthenticated


def test_toml_mobile_node_explicitly_unauthenticated_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "mn.toml", MN_TOML + "require_authentication = false\n")
    config = load_config(path, environ={})
    assert config.mn is not None and config.mn.require_authentication is False
    assert config.unauthenticated
    via_environment = load_config(
        write(tmp_path, "mn2.toml", MN_TOML),
        environ={"NFQ_MIP6_MN__REQUIRE_AUTHENTICATION": "false"},
    )
    assert via_environment.unauthenticated


def test_legacy_mobile_node_loads_unauthenticated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "network-mip6.conf",
        "FUNCTIONALITY=mn\nHOMEADDRESS=fec0:106:2700::4/64\nHOMEAGENT=fec0:106:2700::2/64\n",
    )
    config = load_config(path, environ={})
    assert config.legacy and config.unauthenticated
    assert config.mn is not None and config.mn.auth_spi is None


def test_correspondent_is_never_flagged(tmp_path: Path) -> None:
    config: AgentConfig = load_config(write(tmp_path, "cn.toml", 'role = "cn"\n'), environ={})
    assert not config.unauthenticated
