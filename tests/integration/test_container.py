"""The Home Agent container image (Dockerfile) built and run with podman on the real kernel.

The image is built (or reused: podman's layer cache makes an unchanged rebuild take seconds)
by ``scripts/container-build.sh``, which also installs podman on first use; a cold build takes
about 1.5 minutes here. Containers run with only NET_ADMIN and NET_RAW, in network namespaces
made here or in the test bed's HA namespace (``--network ns:/run/netns/NAME``); the control
socket directory is bind-mounted so that the host's ``nfq-mip6``/``mipdiag`` talk to the agent
in the container.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import control_answers as answers
from helpers import netns_with_home_link, terminate

from nfq_mip6 import __version__
from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS

# The first test builds the image (about 1.5 minutes alone, more with clang in the build stage on a
# loaded machine): pytest-timeout counts that fixture set-up in the test's time.
pytestmark = [pytest.mark.container, pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "container-build.sh"
MN_CONFIG = REPO / "deploy" / "nfq-mip6-mn.toml"
# The image's configuration (deploy/nfq-mip6-ha.toml) requires RFC 4285 MN-HA authentication
# with the key in /etc/nfq-mip6/keys/mn1.key (docs/security.md): the tests mount a test key
# there and give the MN (deploy/nfq-mip6-mn.toml) the same one.
TEST_KEY_HEX = bytes(range(0x41, 0x55)).hex()
HA_CAPS = ["--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"]
# /proc/sys stays read-only in the container: the agent only reads sysctls that are already
# right. podman refuses --sysctl in a network namespace it did not create, so the test sets
# them in the namespace before the container starts, as the host's administrator would
# (docs/operations.md, "Run" and "Container").


def set_home_agent_sysctls(netns: str) -> None:
    """The HA's sysctls in ``netns``, for every interface but ``lo``."""
    links = json.loads(
        subprocess.run(
            ["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True
        ).stdout
    )
    values = ["net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.proxy_ndp=1"]
    for link in links:
        if link["ifname"] != "lo":
            values += [
                f"net.ipv6.conf.{link['ifname']}.proxy_ndp=1",
                f"net.ipv6.neigh.{link['ifname']}.proxy_delay=0",
            ]
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", *values], check=True)


_names = itertools.count()


def write_mn1_key(directory: Path) -> Path:
    """``directory/mn1.key`` (mode 600, in a mode 700 directory) holding the test key."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = directory / "mn1.key"
    key.write_text(TEST_KEY_HEX + "\n")
    key.chmod(0o600)
    return key


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


class Podman:
    """podman with the configuration written by scripts/container-build.sh."""

    def __init__(self, env: dict[str, str], image: str) -> None:
        self.env = env
        self.image = image

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done


@pytest.fixture(scope="module")
def podman() -> Podman:
    if os.geteuid() != 0:
        pytest.skip("needs root (podman with runc/cgroupfs as root)")
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"container-build.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    exports = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--env"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(os.environ)
    for name, value in re.findall(r"^export (\w+)='([^']*)'$", exports, re.MULTILINE):
        env[name] = value
    assert shutil.which("podman", path=env.get("PATH")), "podman missing after the build script"
    return Podman(env, env["NFQ_MIP6_IMAGE"])


@contextlib.contextmanager
def ha_container(
    podman: Podman, netns: str, socket_dir: Path, *extra: str
) -> Iterator[tuple[str, Path]]:
    """The HA image running detached in ``netns``; yields (container name, control socket)."""
    name = f"nfq-mip6-test-{uuid.uuid4().hex[:8]}"
    socket_dir.mkdir(parents=True, exist_ok=True)
    socket_path = socket_dir / "agent.sock"
    key_dir = write_mn1_key(socket_dir.parent / "keys").parent
    set_home_agent_sysctls(netns)
    podman.run(
        "run", "-d", "--name", name, "--network", f"ns:/run/netns/{netns}",
        *HA_CAPS, "--no-healthcheck", "--security-opt", "no-new-privileges",
        "-v", f"{socket_dir}:/run/nfq-mip6", "-v", f"{key_dir}:/etc/nfq-mip6/keys:ro",
        *extra, podman.image,
    )  # fmt: skip
    try:
        running = wait_until(
            lambda: (
                answers(socket_path)
                or podman.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
                != "true"
            ),
            30.0,
        )
        if not (running and answers(socket_path)):
            logs = podman.run("logs", name, check=False)
            raise AssertionError(f"HA container did not come up:\n{logs.stdout}{logs.stderr}")
        yield name, socket_path
    finally:
        podman.run("stop", "-t", "10", name, check=False)
        podman.run("rm", "-f", name, check=False)


def ip6tables_save(podman: Podman, netns: str) -> str:
    """The netns's ip6tables rules, read with the image's own ip6tables (same backend)."""
    return podman.run(
        "run", "--rm", "--network", f"ns:/run/netns/{netns}", *HA_CAPS, "--no-healthcheck",
        "--entrypoint", "ip6tables-save", podman.image,
    ).stdout  # fmt: skip


def test_image_version_and_config_errors(podman: Podman) -> None:
    done = podman.run("run", "--rm", "--no-healthcheck", podman.image, "--version")
    assert done.stdout.strip() == f"nfq-mip6 {__version__}"
    # A bad environment override: exit 2, naming the variable (no traceback).
    done = podman.run(
        "run", "--rm", "--no-healthcheck", "--network", "none",
        "-e", "NFQ_MIP6_HA__MAX_BINDING_LIFETIME=forever", podman.image,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "NFQ_MIP6_HA__MAX_BINDING_LIFETIME" in done.stderr
    assert "Traceback" not in done.stderr
    # The CA bundle given as a build secret is not in the image.
    done = podman.run(
        "run", "--rm", "--no-healthcheck", "--entrypoint", "sh", podman.image, "-c",
        "test ! -e /run/secrets/extra_ca && echo clean",
    )  # fmt: skip
    assert done.stdout.strip() == "clean"


def test_home_agent_container_runs_with_two_capabilities(podman: Podman, tmp_path: Path) -> None:
    with netns_with_home_link(f"h5ctr-{os.getpid()}-{next(_names)}") as netns:
        with ha_container(podman, netns, tmp_path / "run") as (name, socket_path):
            # The host's CLI reads the agent in the container through the bind-mounted socket.
            stats = request(socket_path, {"cmd": "stats"})
            assert stats["ok"] and stats["role"] == "ha"
            assert len(stats["counters"]) == 19
            done = subprocess.run(
                [sys.executable, "-m", "nfq_mip6", "stats", "--json",
                 "--control-socket", str(socket_path)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            assert json.loads(done.stdout)["role"] == "ha"
            # Only NET_ADMIN (12) and NET_RAW (13).
            status = podman.run("exec", name, "cat", "/proc/1/status").stdout
            assert re.search(r"^CapEff:\s+0+3000$", status, re.MULTILINE), status
            # The liveness probe of deploy/k8s works inside the container.
            assert podman.run("exec", name, "nfq-mip6", "stats", check=False).returncode == 0
            # The agent's chains are loaded.
            assert "NFQMIP6-HA" in ip6tables_save(podman, netns)
            # Prometheus endpoint (the image listens on 0.0.0.0:10135).
            metrics = subprocess.run(
                ["ip", "netns", "exec", netns, sys.executable, "-c",
                 "import urllib.request;print(urllib.request.urlopen("
                 "'http://127.0.0.1:10135/metrics', timeout=5).read().decode())"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert f'nfq_mip6_build_info{{version="{__version__}"}} 1.0' in metrics
            assert "nfq_mip6_bind_updates_received_total 0.0" in metrics
            # SIGTERM through tini: a clean stop (exit 0) that removes the agent's rules.
            podman.run("stop", "-t", "10", name)
            exit_code = podman.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout
            assert exit_code.strip() == "0", podman.run("logs", name).stderr
        assert "NFQMIP6" not in ip6tables_save(podman, netns)


@pytest.fixture
def mobile_node_agent(testbed_home: Testbed, tmp_path: Path) -> Iterator[Path]:
    """``nfq-mip6 run`` as the MN (host venv) in the test bed's MN namespace."""
    socket_path = tmp_path / "mn.sock"
    log_path = tmp_path / "mn.log"
    key_override = f"NFQ_MIP6_MN__AUTH_KEY_FILE={write_mn1_key(tmp_path / 'keys')}"
    with log_path.open("w") as log:
        proc = testbed_home.node("mn").popen(
            ["env", key_override, f"NFQ_MIP6_AGENT__STATE_DIR={tmp_path / 'mn-state'}",
             sys.executable, "-m", "nfq_mip6", "run",
             "--config", str(MN_CONFIG), "--control-socket", str(socket_path)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        if not wait_until(lambda: answers(socket_path) or proc.poll() is not None, 15.0):
            raise AssertionError(f"MN agent did not answer: {log_path.read_text()}")
        if proc.poll() is not None:
            raise AssertionError(f"MN agent exited {proc.returncode}: {log_path.read_text()}")
        yield socket_path
    finally:
        terminate(proc)


def test_home_agent_container_serves_the_howto_test_bed(
    podman: Podman, testbed_home: Testbed, mobile_node_agent: Path, tmp_path: Path
) -> None:
    """HOWTO §5.2-5.3 with the HA in the container: the MN registers, the CN's ping
    to the home address crosses the HA's tunnel, and the MN comes home."""
    bed = testbed_home
    env = ["-e", "NFQ_MIP6_AGENT__INTERFACE=eth0"]
    with ha_container(podman, bed.netns_name("ha"), tmp_path / "ha", *env) as (_, ha_socket):
        bed.move("visitnet")
        coa = care_of_address("visitnet")

        def registered() -> bool:
            entries: list[dict[str, Any]] = request(mobile_node_agent, {"cmd": "bul"})["entries"]
            return any(e["care_of_address"] == coa and e["state"] == 1 for e in entries)

        assert wait_until(registered, 20.0), request(mobile_node_agent, {"cmd": "bul"})
        cache = request(ha_socket, {"cmd": "cache"})["bindings"]
        assert [(b["home_address"], b["care_of_address"], b["type"]) for b in cache] == [
            (MN_HOME_ADDRESS, coa, 2)
        ]
        cn = bed.node("cn")

        def ping(count: int) -> str:
            argv = ["ping", "-6", "-c", str(count), "-i", "0.2", "-W", "2", MN_HOME_ADDRESS]
            return cn.run(argv, check=False).stdout

        # The first packets wait for neighbour discovery on the home link (proxy NA by the
        # HA) and on the router; once one echo comes back, none may be lost.
        assert wait_until(lambda: " 0% packet loss" in ping(1), 20.0), ping(1)
        done = ping(3)
        assert " 0% packet loss" in done, done
        stats = request(ha_socket, {"cmd": "stats"})["counters"]
        assert stats["NBindUpdatesRcvd"] >= 1 and stats["NBindAcksSent"] >= 1
        # RFC 4285: the image's configuration required the MN-HA authentication option.
        guarded = request(ha_socket, {"cmd": "stats"})["home_agent"]
        assert guarded["auth_accepted"] >= 1 and guarded["binding_acks_authenticated"] >= 1
        # HOWTO §5.6: home again, the binding cache empties.
        bed.move("home")
        assert wait_until(lambda: not request(ha_socket, {"cmd": "cache"})["bindings"], 20.0)
