"""Project-wide pytest configuration: markers and the root / network-namespace fence.

Tests marked ``netns`` build real hosts in network namespaces; they are skipped, with the
reason, when the run is not root or when ``ip netns`` does not work here. The default
``pytest`` run therefore stays green on any machine (pyroute2's ``require_root()`` idea).
The markers themselves are declared in ``pyproject.toml`` (``--strict-markers``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why netns tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces): run bash scripts/test.sh as root"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` (scripts/bootstrap.sh installs it)"
    try:
        done = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is not usable: {exc}"
    if done.returncode != 0:
        return f"`ip netns` is not usable: {done.stderr.strip()}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)
