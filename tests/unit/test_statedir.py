"""The state directory: one agent per directory (flock), state only for the identity it was
written for (moved aside otherwise, never deleted)."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from nfq_mip6.statedir import (
    IDENTITY_KEY,
    LOCK_NAME,
    StateDirectoryBusy,
    StateDirectoryLock,
    open_state,
)
from nfq_mip6.store import DATABASE_NAME, StateStore, StoredBinding
from tests.support.howto import HOA

HA_HOME = {"role": "ha", "interface": "eth1", "home_prefix": "fec0:106:2700::/64"}
OTHER_HOME = {"role": "ha", "interface": "eth1", "home_prefix": "2001:db8:1::/64"}
WALL = 1_800_000_000.0


def binding() -> StoredBinding:
    coa = IPv6Address("fec0:106:1100::4")
    return StoredBinding("ha", HOA, coa, 300, 0xC000, 400, WALL + 100)


def test_second_lock_on_one_directory_is_refused_naming_directory_and_pid(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with StateDirectoryLock(state) as first:
        assert first.path == state / LOCK_NAME
        with pytest.raises(StateDirectoryBusy) as caught:
            StateDirectoryLock(state)
        assert caught.value.pid == os.getpid()
        assert str(state) in str(caught.value) and f"PID {os.getpid()}" in str(caught.value)
        with StateDirectoryLock(tmp_path / "other"):  # another directory is free
            pass
    with StateDirectoryLock(state):  # released: the next agent may take it
        pass


def test_second_agent_on_a_locked_state_directory_exits_1_with_one_line(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "cn.toml"
    config.write_text(
        f'role = "cn"\ninterface = "eth0"\ncontrol_socket = "{tmp_path / "cn.sock"}"\n'
        f'metrics_listen = ""\nstate_dir = "{state}"\n'
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NFQ_MIP6_")}
    with StateDirectoryLock(state):
        done = subprocess.run(
            [sys.executable, "-m", "nfq_mip6", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "state directory" in line]
    assert lines == [
        f"nfq-mip6: state directory {state} is in use by another nfq-mip6 agent "
        f"(PID {os.getpid()}); give each agent its own state_dir"
    ], done.stderr
    assert "Traceback" not in done.stderr


def test_state_of_the_same_identity_is_restored(tmp_path: Path) -> None:
    with open_state(tmp_path, HA_HOME) as store:
        store.save_binding(binding())
    with open_state(tmp_path, dict(HA_HOME)) as again:
        assert again.bindings("ha") == [binding()]
        assert again.get_value(IDENTITY_KEY) == HA_HOME
    assert sorted(p.name for p in tmp_path.glob("*.aside")) == []


def test_state_of_another_identity_is_moved_aside_and_the_agent_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with open_state(tmp_path, OTHER_HOME) as store:
        store.save_binding(binding())
    with open_state(tmp_path, HA_HOME, wall=WALL) as fresh:
        assert fresh.bindings("ha") == []
        assert fresh.get_value(IDENTITY_KEY) == HA_HOME
    aside = list(tmp_path.glob(f"{DATABASE_NAME}.ha-*.aside"))
    assert [p.name for p in aside] == [f"{DATABASE_NAME}.ha-20270115T080000Z.aside"]
    with StateStore(aside[0]) as kept:  # never deleted: the old bindings are still there
        assert kept.bindings("ha") == [binding()]
        assert kept.get_value(IDENTITY_KEY) == OTHER_HOME
    assert "moved aside" in caplog.text and "2001:db8:1::/64" in caplog.text


def test_another_role_does_not_adopt_the_state(tmp_path: Path) -> None:
    with open_state(tmp_path, HA_HOME) as store:
        store.save_binding(binding())
    with open_state(tmp_path, {"role": "mn", "home_address": "fec0:106:2700::4/64"}) as mn:
        assert mn.bindings("ha") == []
    with open_state(tmp_path, {"role": "cn"}, wall=WALL + 1) as cn:  # a second move aside
        assert cn.bindings("ha") == []
    assert len(list(tmp_path.glob("*.aside"))) == 2


def test_state_without_identity_is_adopted(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as old:  # written before identities were kept
        old.save_binding(binding())
    with open_state(tmp_path, HA_HOME) as store:
        assert store.bindings("ha") == [binding()]
        assert store.get_value(IDENTITY_KEY) == HA_HOME
