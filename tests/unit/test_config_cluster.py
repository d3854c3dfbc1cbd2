"""The ``[cluster]`` section: parsed into ClusterConfig (HA only), environment overrides
(NFQ_MIP6_CLUSTER__...), every problem names the key; ``nfq-mip6 run`` exits 2 on one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nfq_mip6.config import ClusterConfig, ConfigError, load_config

HA = """role = "ha"
[ha]
require_authentication = false
"""
CLUSTER = """[cluster]
backend = "etcd"
endpoints = ["http://127.0.0.1:2379", "http://[fd00:99::2]:2379"]
name = "vha1"
commit_timeout_ms = 500
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_absent_section_means_single_node(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, HA), environ={}).cluster is None


def test_cluster_section_parsed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HA + CLUSTER), environ={})
    assert config.cluster == ClusterConfig(
        backend="etcd",
        endpoints=("http://127.0.0.1:2379", "http://[fd00:99::2]:2379"),
        name="vha1",
        commit_timeout_ms=500,
    )


def test_environment_overrides_cluster_keys(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, HA + CLUSTER),
        environ={
            "NFQ_MIP6_CLUSTER__ENDPOINTS": "http://10.0.0.1:2379,http://10.0.0.2:2379",
            "NFQ_MIP6_CLUSTER__COMMIT_TIMEOUT_MS": "250",
        },
    )
    assert config.cluster is not None
    assert config.cluster.endpoints == ("http://10.0.0.1:2379", "http://10.0.0.2:2379")
    assert config.cluster.commit_timeout_ms == 250


def test_commit_path_knobs_from_file_and_environment(tmp_path: Path) -> None:
    """max_in_flight (transactions overlapping on distinct keys) and connect_timeout_ms (per
    endpoint, then the next one) reach the store's settings; defaults 1 and 250 ms."""
    pytest.importorskip("etcd3gw", reason="optional extra nfq-mip6[cluster] not installed")
    from nfq_mip6.runtime.home_agent_cluster import etcd_settings

    default = load_config(write(tmp_path, HA + CLUSTER), environ={}).cluster
    assert default is not None
    assert (default.max_in_flight, default.connect_timeout_ms) == (1, 250)
    text = HA + CLUSTER + "max_in_flight = 2\nconnect_timeout_ms = 100\n"
    cluster = load_config(write(tmp_path, text), environ={}).cluster
    assert cluster is not None
    settings = etcd_settings(cluster)
    assert (settings.max_in_flight, settings.connect_timeout) == (2, 0.1)
    cluster = load_config(
        write(tmp_path, text),
        environ={
            "NFQ_MIP6_CLUSTER__MAX_IN_FLIGHT": "4",
            "NFQ_MIP6_CLUSTER__CONNECT_TIMEOUT_MS": "500",
        },
    ).cluster
    assert cluster is not None
    assert (cluster.max_in_flight, cluster.connect_timeout_ms) == (4, 500)


def test_tls_files(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    text = (
        HA
        + CLUSTER.replace("http://", "https://")
        + (
            f'ca_file = "{tmp_path}/ca.pem"\ncert_file = "{tmp_path}/client.pem"\n'
            f'key_file = "{tmp_path}/client.key"\n'
        )
    )
    cluster = load_config(write(tmp_path, text), environ={}).cluster
    assert cluster is not None and cluster.key_file == tmp_path / "client.key"


@pytest.mark.parametrize(
    ("text", "environ", "key"),
    [
        (HA + CLUSTER.replace('"etcd"', '"consul"'), {}, "cluster.backend"),
        (HA + CLUSTER.replace("http://127.0.0.1:2379", "127.0.0.1:2379"), {}, "cluster.endpoints"),
        (HA + CLUSTER.replace('name = "vha1"\n', ""), {}, "cluster.name"),
        (HA + CLUSTER.replace('"vha1"', '"a/b"'), {}, "cluster.name"),
        (HA + CLUSTER.replace("500", "0"), {}, "cluster.commit_timeout_ms"),
        (HA + CLUSTER + 'ca_file = "/nonexistent/ca.pem"\n', {}, "cluster.ca_file"),
        (HA + CLUSTER + "lease = 5\n", {}, "cluster.lease"),
        (HA + CLUSTER, {"NFQ_MIP6_CLUSTER__ENDPOINTS": "nope"}, "NFQ_MIP6_CLUSTER__ENDPOINTS"),
        ('role = "cn"\n' + CLUSTER, {}, "cluster.backend"),
        (HA + CLUSTER + "max_in_flight = 0\n", {}, "cluster.max_in_flight"),
        (HA + CLUSTER, {"NFQ_MIP6_CLUSTER__MAX_IN_FLIGHT": "x"}, "NFQ_MIP6_CLUSTER__MAX_IN_FLIGHT"),
        (HA + CLUSTER + "connect_timeout_ms = 5\n", {}, "cluster.connect_timeout_ms"),
    ],
)
def test_bad_cluster_config_names_the_key(
    tmp_path: Path, text: str, environ: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ)
    assert key in str(caught.value)


def test_client_certificate_needs_key_and_https(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text("x")
    (tmp_path / "client.key").write_text("x")
    only_cert = HA + CLUSTER + f'cert_file = "{tmp_path}/client.pem"\n'
    together = "cluster.cert_file: cert_file and key_file go together"
    with pytest.raises(ConfigError, match=together):
        load_config(write(tmp_path, only_cert), environ={})
    plain = only_cert + f'key_file = "{tmp_path}/client.key"\n'
    needs_https = "cluster.endpoints: a client certificate needs https"
    with pytest.raises(ConfigError, match=needs_https):
        load_config(write(tmp_path, plain), environ={})


def test_agent_exits_2_naming_the_cluster_key(tmp_path: Path) -> None:
    path = write(tmp_path, HA + CLUSTER.replace('"vha1"', '"a/b"'))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NFQ_MIP6_")}
    done = subprocess.run(
        [sys.executable, "-m", "nfq_mip6", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{path}: cluster.name:" in done.stderr and "Traceback" not in done.stderr
