"""nfq_mip6.config: TOML, legacy network-mip6.conf (HOWTO §4.2.2), environment, reload."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from nfq_mip6.config import (
    DEFAULT_CONTROL_SOCKET,
    AgentConfig,
    ConfigError,
    Role,
    load_config,
    merge_reload,
    parse_listen,
    reload_changes,
    reload_config,
)

REPO = Path(__file__).resolve().parents[2]

# Verbatim from the HOWTO §4.2.2 (indentation and trailing whitespace included).
HOWTO_HA = """\
    # Home Agent configuration file
    FUNCTIONALITY=ha
    DEBUGLEVEL=1
    MIN_TUNNEL_NR=1
    MAX_TUNNEL_NR=5
    TUNNEL_SITELOCAL=yes
"""
HOWTO_MN = """\
     # Mobile Node configuration file
     FUNCTIONALITY=mn
     DEBUGLEVEL=1
     TUNNEL_SITELOCAL=yes
     MIN_TUNNEL_NR=1
     MAX_TUNNEL_NR=3
     HOMEDEV=mip6mnha1     
     HOMEADDRESS=fec0:106:2700::4/64  # MN's home adress
     HOMEAGENT=fec0:106:2700::2/64    # HA's address
"""  # noqa: W291


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_howto_ha_legacy(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "network-mip6.conf", HOWTO_HA), environ={})
    assert config.role is Role.HA
    assert config.legacy
    assert config.log_level == "INFO"
    assert config.ha is not None
    assert config.ha.min_tunnel_nr == 1
    assert config.ha.max_tunnel_nr == 5
    assert config.ha.tunnel_sitelocal is True
    assert config.ha.address is None  # derived from the interface at start
    assert config.mn is None
    assert config.control_socket == DEFAULT_CONTROL_SOCKET


def test_howto_mn_legacy(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "network-mip6.conf", HOWTO_MN), environ={})
    assert config.role is Role.MN
    assert config.mn is not None
    assert config.mn.home_address == IPv6Interface("fec0:106:2700::4/64")
    assert config.mn.home_agent == IPv6Address("fec0:106:2700::2")
    assert config.mn.home_device == "mip6mnha1"
    assert config.mn.tunnel_sitelocal is True
    assert config.ha is None


@pytest.mark.parametrize(
    ("level", "expected"), [("0", "WARNING"), ("1", "INFO"), ("2", "DEBUG"), ("7", "DEBUG")]
)
def test_debuglevel_mapping(tmp_path: Path, level: str, expected: str) -> None:
    path = write(tmp_path, "n.conf", f"FUNCTIONALITY=cn\nDEBUGLEVEL={level}\n")
    assert load_config(path, environ={}).log_level == expected


def test_legacy_accept_return_routability_and_quotes(tmp_path: Path) -> None:
    path = write(tmp_path, "n.conf", 'FUNCTIONALITY="cn"\naccept_return_routability=no # off\n')
    config = load_config(path, environ={})
    assert config.role is Role.CN
    assert config.route_optimization is False


def test_legacy_unknown_key_is_tolerated(tmp_path: Path) -> None:
    path = write(tmp_path, "n.conf", "FUNCTIONALITY=cn\nSOMETHING_OLD=1\n")
    assert load_config(path, environ={}).role is Role.CN


def test_example_configs_load() -> None:
    for role in ("ha", "mn", "cn"):
        config = load_config(REPO / "deploy" / f"nfq-mip6-{role}.toml", environ={})
        assert config.role == Role(role)
        assert not config.legacy


def test_toml_full(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.toml",
        """
role = "ha"
interface = "eth1"
log_level = "debug"
log_format = "json"
queue_num = 7
queue_bypass = true
route_optimization = false
control_socket = ""
metrics_listen = "[::1]:10135"
state_dir = "/tmp/x"
[ha]
address = "fec0:106:2700::2"
home_prefix = "fec0:106:2700::/64"
max_binding_lifetime = 600
tunnel_backend = "seg6"
preference = 10
switch_home_agents = ["fec0:106:2700::3", "fec0:106:2700::5"]
require_authentication = false
""",
    )
    config = load_config(path, environ={})
    assert config.log_level == "DEBUG"
    assert config.log_format == "json"
    assert config.queue_num == 7
    assert config.queue_bypass is True
    assert config.route_optimization is False
    assert config.control_socket is None
    assert config.metrics_listen == ("::1", 10135)
    assert config.state_dir == Path("/tmp/x")
    assert config.ha is not None
    assert config.ha.home_prefix == IPv6Network("fec0:106:2700::/64")
    assert config.ha.max_binding_lifetime == 600
    assert config.ha.tunnel_backend == "seg6"
    assert config.ha.preference == 10
    assert config.ha.switch_home_agents == (
        IPv6Address("fec0:106:2700::3"),
        IPv6Address("fec0:106:2700::5"),
    )


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('role = "xx"\n', "role", "not one of ha, mn, cn"),
        ("interface = 'eth0'\n", "role", "missing"),
        ('role = "ha"\nqueue_num = 70000\n', "queue_num", "out of range"),
        ('role = "ha"\nqueue_bypass = "maybe"\n', "queue_bypass", "boolean"),
        ('role = "ha"\nbogus = 1\n', "bogus", "unknown key"),
        ('role = "ha"\n[ha]\naddress = "10.0.0.1"\n', "ha.address", "not an IPv6 address"),
        ('role = "ha"\n[ha]\nmax_binding_lifetime = 300000\n', "ha.max_binding_lifetime", "range"),
        (
            'role = "ha"\n[ha]\nmin_tunnel_nr = 9\nmax_tunnel_nr = 2\n',
            "ha.min_tunnel_nr",
            "greater",
        ),
        (
            'role = "ha"\n[ha]\naddress = "fec0:1::1"\nhome_prefix = "fec0:2::/64"\n',
            "ha.address",
            "not inside",
        ),
        ('role = "ha"\n[ha]\ntunnel_backend = "gre"\n', "ha.tunnel_backend", "not one of"),
        ('role = "ha"\n[ha]\npreference = 65536\n', "ha.preference", "out of range"),
        (
            'role = "ha"\n[ha]\nswitch_home_agents = ["ff02::1"]\n',
            "ha.switch_home_agents",
            "unicast",
        ),
        ('role = "mn"\n', "mn.home_address", "missing"),
        ('role = "mn"\n[mn]\nhome_address = "fec0::4"\n', "mn.home_address", "prefix length"),
        ('role = "cn"\n[mn]\nhome_address = "fec0::4/64"\n', "mn.home_address", "role is cn"),
        ('role = "ha"\nmetrics_listen = "nope"\n', "metrics_listen", "HOST:PORT"),
        ('role = "ha"\ninterface = "a/b"\n', "interface", "interface name"),
        ("role = \n", "", "invalid TOML"),
    ],
)
def test_toml_errors_name_file_key_problem(
    tmp_path: Path, text: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.key == key
    assert fragment in info.value.problem
    assert str(path) in str(info.value)


def test_legacy_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "n.conf", "FUNCTIONALITY=mn\nHOMEADDRESS=zzz/64\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.key == "HOMEADDRESS"
    path = write(tmp_path, "m.conf", "FUNCTIONALITY=ha\nDEBUGLEVEL=high\n")
    with pytest.raises(ConfigError, match="DEBUGLEVEL"):
        load_config(path, environ={})
    path = write(tmp_path, "o.conf", "FUNCTIONALITY=ha\nthis is not a line\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(path, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "network-mip6.conf", HOWTO_HA)
    environ = {
        "NFQ_MIP6_AGENT__LOG_LEVEL": "debug",
        "NFQ_MIP6_AGENT__ROUTE_OPTIMIZATION": "off",
        "NFQ_MIP6_AGENT__METRICS_LISTEN": "0.0.0.0:10135",
        "NFQ_MIP6_HA__MAX_BINDING_LIFETIME": "600",
        "NFQ_MIP6_TESTBED__WHATEVER": "not ours",
        "NFQ_MIP6_CONFIG": "not ours either",
    }
    config = load_config(path, environ=environ)
    assert config.log_level == "DEBUG"
    assert config.route_optimization is False
    assert config.metrics_listen == ("0.0.0.0", 10135)
    assert config.ha is not None
    assert config.ha.max_binding_lifetime == 600


def test_ro_datapath_choice_from_file_and_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", 'role = "cn"\nro_datapath = "nfqueue"\n')
    assert load_config(path, environ={}).ro_datapath == "nfqueue"
    environ = {"NFQ_MIP6_AGENT__RO_DATAPATH": "bpf"}
    assert load_config(path, environ=environ).ro_datapath == "bpf"
    default = write(tmp_path, "b.toml", 'role = "cn"\n')
    assert load_config(default, environ={}).ro_datapath == "auto"
    with pytest.raises(ConfigError, match="ro_datapath"):
        load_config(path, environ={"NFQ_MIP6_AGENT__RO_DATAPATH": "xdp"})


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", 'role = "ha"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"NFQ_MIP6_HA__MAX_BINDING_LIFETIME": "forever"})
    assert "NFQ_MIP6_HA__MAX_BINDING_LIFETIME" in str(info.value)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path, environ={"NFQ_MIP6_AGENT__NOPE": "1"})


def test_parse_listen() -> None:
    assert parse_listen("10135") == ("127.0.0.1", 10135)
    assert parse_listen("0.0.0.0:9") == ("0.0.0.0", 9)
    assert parse_listen("[fe80::1%eth0]:10135") == ("fe80::1%eth0", 10135)
    for bad in ("::1:80", "host:", "host:99999", "[::1]"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def _ha(tmp_path: Path) -> AgentConfig:
    return load_config(REPO / "deploy" / "nfq-mip6-ha.toml", environ={})


def test_reload_changes(tmp_path: Path) -> None:
    old = _ha(tmp_path)
    assert old.ha is not None
    new = dataclasses.replace(
        old,
        route_optimization=False,
        log_level="DEBUG",
        interface="eth9",
        ha=dataclasses.replace(
            old.ha, max_binding_lifetime=400, address=IPv6Address("fec0:106:2700::9")
        ),
    )
    applied, refused = reload_changes(old, new)
    assert applied == [
        "ha.max_binding_lifetime: 262140 -> 400",
        "log_level: INFO -> DEBUG",
        "route_optimization: true -> false",
    ]
    assert refused == [
        "ha.address: fec0:106:2700::2 -> fec0:106:2700::9",
        "interface: eth1 -> eth9",
    ]
    merged = merge_reload(old, new)
    assert merged.route_optimization is False
    assert merged.log_level == "DEBUG"
    assert merged.interface == "eth1"
    assert merged.ha is not None
    assert merged.ha.max_binding_lifetime == 400
    assert merged.ha.address == IPv6Address("fec0:106:2700::2")
    assert reload_changes(old, old) == ([], [])


def test_reload_refuses_role_change(tmp_path: Path) -> None:
    old = _ha(tmp_path)
    new = load_config(REPO / "deploy" / "nfq-mip6-cn.toml", environ={})
    applied, refused = reload_changes(old, new)
    assert applied == []
    assert "role: ha -> cn" in refused
    assert merge_reload(old, new) is old


def test_reload_config_rereads_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ha.toml",
        'role = "ha"\ninterface = "eth1"\nroute_optimization = true\n'
        "[ha]\nrequire_authentication = false\n",
    )
    running = dataclasses.replace(load_config(path, environ={}), queue_num=9)  # --queue-num 9
    path.write_text(
        'role = "ha"\ninterface = "eth2"\nroute_optimization = false\n'
        "[ha]\nrequire_authentication = false\n"
    )
    config, applied, refused = reload_config(
        running, environ={"NFQ_MIP6_AGENT__LOG_LEVEL": "debug"}
    )
    assert applied == ["log_level: INFO -> DEBUG", "route_optimization: true -> false"]
    assert refused == ["interface: eth1 -> eth2", "queue_num: 9 -> 0"]
    assert (config.route_optimization, config.interface, config.queue_num) == (False, "eth1", 9)
    path.write_text("role = \n")
    with pytest.raises(ConfigError):
        reload_config(running, environ={})


def test_mn_mobile_router_keys(tmp_path: Path) -> None:
    """RFC 3963 (docs/nemo.md): [mn] mobile_router, prefixes, prefix_mode."""

    path = tmp_path / "mr.toml"
    path.write_text(
        'role = "mn"\n[mn]\nhome_address = "2001:db8:a::4/64"\nrequire_authentication = false\n'
        'mobile_router = true\nprefixes = ["2001:db8:77::/48"]\nprefix_mode = "implicit"\n'
    )
    mn = load_config(path).mn
    assert mn is not None and mn.mobile_router and mn.prefix_mode == "implicit"
    assert mn.prefixes == (IPv6Network("2001:db8:77::/48"),)
    path.write_text(
        'role = "mn"\n[mn]\nhome_address = "2001:db8:a::4/64"\nrequire_authentication = false\n'
        'prefixes = ["fe80::/64"]\n'
    )
    with pytest.raises(ConfigError, match="prefixes"):
        load_config(path)
