"""Fixtures for integration tests on the HOWTO test bed (real namespaces, real kernel).

* ``testbed`` (session): the whole test bed, built once with a prefix unique to this
  pytest process (parallel sessions do not collide) and torn down at the end, even when
  tests fail.
* ``testbed_home`` (function): the same test bed reset to its state after ``up()``
  (``Testbed.reset()``: policy rules, extra routes and tables, proxy neighbours,
  ip6tables rules and addresses on ``lo`` removed on every node; the MN back home with
  visited-link addresses and routers forgotten), for tests that make it travel.
* ``nemo_hosts`` (module): the bare-kernel namespaces of a mobile network
  (:func:`helpers.nemo_kernel_hosts`: CN, HA, mobile router, mobile network node) that the
  dataplane tests of RFC 3963 share.
* ``require_link_kind("ip6tnl")``: skip, with the kernel's reason, when a link type is
  missing here.

Mark tests with ``pytestmark = pytest.mark.netns``; ``tests/conftest.py`` skips them when
not root or when ``ip netns`` is unavailable.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest
from helpers import NemoHosts, nemo_kernel_hosts, running_testbed

from nfq_mip6.testbed import Testbed, unique_prefix
from nfq_mip6.testbed.netns import probe_link_kind


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    with running_testbed("t") as bed:
        yield bed


@pytest.fixture
def testbed_home(testbed: Testbed) -> Testbed:
    """The session test bed as after ``up()``: kernel state left by earlier tests and
    agents removed on every node, the MN back on its home link."""
    testbed.reset()
    return testbed


_nemo_tags = itertools.count()


@pytest.fixture(scope="module")
def nemo_hosts() -> Iterator[NemoHosts]:
    with nemo_kernel_hosts(f"nk{os.getpid():x}{next(_nemo_tags)}") as hosts:
        yield hosts


_link_kinds: dict[str, tuple[bool, str]] = {}


@pytest.fixture(scope="session")
def require_link_kind() -> Callable[[str], None]:
    """``require_link_kind("ip6tnl")`` skips the test when the kernel cannot create it."""

    def require(kind: str) -> None:
        if kind not in _link_kinds:
            probe = probe_link_kind(kind, f"{unique_prefix('p')}-probe")
            _link_kinds[kind] = (probe.supported, probe.reason)
        supported, reason = _link_kinds[kind]
        if not supported:
            pytest.skip(f"kernel has no {kind} links here: {reason}")

    return require
