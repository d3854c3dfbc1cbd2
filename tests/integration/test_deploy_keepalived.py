"""The keepalived configurations of deploy/cluster (hosts, and the Kubernetes ConfigMap)
pass keepalived's own configuration test (``keepalived -t``, Debian's keepalived) in a
namespace that has their home-link interface. keepalived's script security wants every
directory above a script root-owned and not writable by others, which a checkout under /tmp
is not: the notify script and a stand-in for the CLI are copied to a directory in /run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfq_mip6.testbed import unique_prefix

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "cluster"
CLI = "/opt/nfq-mip6/venv/bin/nfq-mip6", "/opt/venv/bin/nfq-mip6"  # a host install, the image
NOTIFY = "/etc/keepalived/nfq-mip6-notify", "/etc/nfq-mip6/scripts/nfq-mip6-notify"


@pytest.fixture(scope="module")
def scripts() -> Iterator[Path]:
    """A root-owned directory in /run with the notify script and the CLI (a stand-in that
    runs this checkout's)."""
    directory = Path("/run") / f"nfq-mip6-{unique_prefix('ka')}"
    directory.mkdir(mode=0o755)
    try:
        shutil.copy(DEPLOY / "nfq-mip6-notify", directory / "nfq-mip6-notify")
        (directory / "nfq-mip6").write_text(f'#!/bin/sh\nexec {sys.executable} -m nfq_mip6 "$@"\n')
        for script in directory.iterdir():
            script.chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    if shutil.which("keepalived") is None:
        pytest.skip("keepalived is not installed (scripts/bootstrap.sh installs it)")
    name = unique_prefix("ka")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "eth1", "type", "veth", "peer", "name",
                        "eth9"], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", name, "link", "set", "eth1", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def config_test(
    netns: str, scripts: Path, text: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    for deployed in CLI:
        text = text.replace(deployed, str(scripts / "nfq-mip6"))
    for deployed in NOTIFY:
        text = text.replace(deployed, str(scripts / "nfq-mip6-notify"))
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    return subprocess.run(
        ["ip", "netns", "exec", netns, "keepalived", "-t", "-f", str(conf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def kubernetes_keepalived_conf() -> str:
    yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) parses the manifests")
    manifests = yaml.safe_load_all((DEPLOY / "kubernetes" / "home-agent.yaml").read_text())
    (config_map,) = [d for d in manifests if d and d["kind"] == "ConfigMap"]
    return str(config_map["data"]["keepalived.conf"])


@pytest.mark.parametrize("where", ["hosts", "kubernetes"])
def test_keepalived_accepts_the_deployed_configuration(
    netns: str, scripts: Path, tmp_path: Path, where: str
) -> None:
    if where == "hosts":
        text = (DEPLOY / "keepalived.conf").read_text()
    else:
        text = kubernetes_keepalived_conf()
    done = config_test(netns, scripts, text, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_keepalived_config_test_catches_a_mistake(
    netns: str, scripts: Path, tmp_path: Path
) -> None:
    """The check above means something: a VRID out of range fails it."""
    text = (
        (DEPLOY / "keepalived.conf")
        .read_text()
        .replace("virtual_router_id 51", "virtual_router_id 999")
    )
    done = config_test(netns, scripts, text, tmp_path)
    assert done.returncode != 0
    assert "999" in done.stdout + done.stderr
