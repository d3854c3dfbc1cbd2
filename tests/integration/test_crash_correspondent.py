"""Crash safety of the correspondent node (issue 9; docs/security.md, "Persistence").

Real HA, MN and CN agents (route optimization, as in ``test_journey_ro.py``). Once the MN
and the CN talk directly, the CN agent is killed with SIGKILL while the CN pings the home
address at 100 packets per second, and started again with the same state directory: its
binding cache shows the MN's binding at once (restored with its remaining lifetime, not
re-registered), the flow continues and both ends are bound again. Losses are printed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from test_journey import mipdiag, reachable
from test_journey_ro import CN_CONFIG, HA_CONFIG, MN_CONFIG, both_ends_bound
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address
from nfq_mip6.testbed.topology import MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

PING_RATE = 100  # packets per second


def test_correspondent_kill_9_restores_its_binding(testbed_home: Testbed, tmp_path: Path) -> None:
    bed = testbed_home
    ha, mn, cn = bed.node("ha"), bed.node("mn"), bed.node("cn")
    sockets = {name: tmp_path / f"{name}.sock" for name in ("ha", "mn", "cn")}
    coa = care_of_address("visitnet")
    with running_agent(ha, HA_CONFIG, sockets["ha"]), running_agent(mn, MN_CONFIG, sockets["mn"]):
        with running_agent(cn, CN_CONFIG, sockets["cn"]) as agent:
            bed.move("visitnet")
            assert wait_until(lambda: reachable(cn), 10.0), "CN cannot reach the MN away"
            converged = functools.partial(both_ends_bound, cn, sockets, coa)
            assert wait_until(converged, 20.0), mipdiag("-c", sockets["cn"])
            (before,) = request(sockets["cn"], {"cmd": "cache"})["bindings"]
            stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=PING_RATE).start()
            try:
                assert wait_until(lambda: stream.replies_so_far >= 20, 10.0), "no replies"
                agent.kill()
                agent.wait(timeout=10)
            except BaseException:
                stream.stop()
                raise
        try:
            with running_agent(cn, CN_CONFIG, sockets["cn"]):
                # the binding is back at once, with the lifetime it had left
                (after,) = request(sockets["cn"], {"cmd": "cache"})["bindings"]
                assert (after["home_address"], after["care_of_address"]) == (
                    MN_HOME_ADDRESS,
                    coa,
                )
                assert after["sequence"] == before["sequence"]
                assert 0 < after["lifetime"] <= before["lifetime"]
                at_restart = stream.replies_so_far
                assert wait_until(lambda: stream.replies_so_far >= at_restart + 20, 10.0), (
                    "no echo replies after the restart"
                )
                assert wait_until(converged, 20.0), mipdiag("-c", sockets["cn"])
        finally:
            result = stream.stop()
    print(f"\nCN kill -9 and restart, ping at {PING_RATE} pps: {result.summary()}")
    assert result.received > 0
