"""Route optimization end to end with the real agents (RFC 6275 §5.2, §9, §11.3, §11.6–§11.7).

HA, MN and CN each run ``nfq-mip6 run`` in their namespace of the HOWTO test bed (HA and MN
with the HOWTO's ``network-mip6.conf``, the CN with a TOML file). The MN travels to visitnet
while the CN pings its home address: the MN sees the CN's echo requests arrive through the
tunnel, runs return routability (HoTI through the reverse tunnel, CoTI directly), registers
with the CN, and from then on the echo traffic flows CN ↔ CoA directly (RH2 one way, HAO
the other) — the capture on homenet shows none of it. Switching RO off at the MN in the
middle of the flow puts the traffic back into the tunnel (the MN tells the CN with a
de-registration BU); travelling on to visitnet2 moves the CN's binding to the new CoA; when the
CN agent stops, its Binding Error 1 and then its kernel's Parameter Problem put the MN back on
the tunnel for good. Replies must keep coming after every step; ping counts and losses are
printed (not asserted: CPU contention on shared CI machines loses pings on any path).

The CN agent alone, against a scripted MN (forged BUs, statuses, Binding Errors), is tested
in ``test_route_optimization_cn.py``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mobile_node import running_agent, wait_until

from nfq_mip6.control import request
from nfq_mip6.testbed import Testbed, care_of_address, unique_prefix
from nfq_mip6.testbed.topology import CN_ADDRESS, HA_ADDRESS, MN_HOME_ADDRESS

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
HA_CONFIG = REPO / "deploy" / "network-mip6.conf.ha"
MN_CONFIG = REPO / "deploy" / "network-mip6.conf.mn"
VISIT_COA = care_of_address("visitnet")
VISIT2_COA = care_of_address("visitnet2")


@contextlib.contextmanager
def agents_on_the_testbed(
    bed: Testbed | None = None, tmp: Path | None = None
) -> Iterator[dict[str, Any]]:
    """HA, MN and CN agents running; the MN registered on visitnet. Yields the sockets and
    the test bed (a private one, built and torn down here, when ``bed`` is None)."""
    own = bed is None
    if bed is None:
        bed = Testbed(unique_prefix("ro"))
        bed.up()
    work = tmp or Path(f"/tmp/nfq-mip6-ro-{bed.prefix}")
    work.mkdir(parents=True, exist_ok=True)
    cn_config = work / "cn.toml"
    cn_config.write_text('role = "cn"\ninterface = "eth0"\nroute_optimization = true\n')
    sockets = {name: work / f"{name}.sock" for name in ("ha", "mn", "cn")}
    try:
        with (
            running_agent(bed.node("ha"), HA_CONFIG, sockets["ha"]),
            running_agent(bed.node("cn"), cn_config, sockets["cn"]) as cn_proc,
            running_agent(bed.node("mn"), MN_CONFIG, sockets["mn"]),
        ):
            bed.move("visitnet")
            assert wait_until(lambda: home_registered(sockets["mn"], VISIT_COA), 15.0), bul(
                sockets["mn"]
            )
            yield {"bed": bed, "cn_proc": cn_proc, **sockets}
    finally:
        if own:
            bed.down()


def bul(socket_path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = request(socket_path, {"cmd": "bul"})["entries"]
    return entries


def home_registered(mn_socket: Path, coa: str) -> bool:
    return any(
        e["home_registration"] and e["state"] == 1 and e["care_of_address"] == coa
        for e in bul(mn_socket)
    )


def cn_cache(cn_socket: Path) -> list[tuple[str, str]]:
    rows = request(cn_socket, {"cmd": "cache"})["bindings"]
    return [(row["home_address"], row["care_of_address"]) for row in rows]


def ro_rules(bed: Testbed) -> list[str]:
    """The MN's per-correspondent rules in mangle ``NFQMIP6-MN-RO`` (match part only)."""
    listing = bed.node("mn").run(["ip6tables", "-w", "-t", "mangle", "-S", "NFQMIP6-MN-RO"])
    return [
        line.split(" -j ")[0].removeprefix("-A NFQMIP6-MN-RO ")
        for line in listing.stdout.splitlines()
        if line.startswith("-A NFQMIP6-MN-RO ")
    ]


def ro(socket_path: Path, action: str) -> str:
    """``nfq-mip6 ro on|off|status`` as an operator types it."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "nfq_mip6", "ro", action, "--control-socket", str(socket_path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout


def echo_frames(pcap: Path) -> list[Any]:
    """Echo requests/replies between the CN and the MN's home address in a capture."""
    from scapy.layers.inet6 import HAO, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
    from scapy.utils import rdpcap

    found = []
    for frame in rdpcap(str(pcap)):
        if ICMPv6EchoRequest not in frame and ICMPv6EchoReply not in frame:
            continue
        addresses = set()
        for layer in (frame[IPv6], *frame[IPv6].iterpayloads()):
            if isinstance(layer, IPv6):
                addresses |= {layer.src, layer.dst}
        if HAO in frame:
            addresses.add(frame[HAO].hoa)
        if CN_ADDRESS in addresses:
            found.append(frame)
    return found


def ping_rtt(agents: dict[str, Any], count: int, *, route_optimization: bool) -> dict[str, Any]:
    """``ping -c count`` CN → HoA with RO on or off at the MN (for the benchmark)."""
    bed: Testbed = agents["bed"]
    mn_socket, cn_socket = agents["mn"], agents["cn"]
    ro(mn_socket, "on" if route_optimization else "off")
    if route_optimization:
        bed.node("cn").run(["ping", "-6", "-c", "3", "-i", "0.2", MN_HOME_ADDRESS], check=False)
        wait_until(lambda: bool(cn_cache(cn_socket)), 15.0)
    else:
        wait_until(lambda: not cn_cache(cn_socket), 15.0)
    done = bed.node("cn").run(
        ["ping", "-6", "-n", "-c", str(count), "-i", "0.05", MN_HOME_ADDRESS],
        check=False,
        timeout=count * 0.05 + 15,
    )
    times = sorted(float(t) for t in re.findall(r"time=([\d.]+) ms", done.stdout))
    ttls = re.findall(r"ttl=(\d+)", done.stdout)
    loss = re.search(r"([\d.]+)% packet loss", done.stdout)
    return {
        "median_ms": times[len(times) // 2] if times else None,
        "max_ms": times[-1] if times else None,
        "loss": float(loss.group(1)) / 100 if loss else None,
        "hop_limit_of_replies": int(ttls[-1]) if ttls else None,
    }


def test_route_optimization_with_real_agents(testbed_home: Testbed, tmp_path: Path) -> None:
    with agents_on_the_testbed(testbed_home, tmp_path) as agents:
        bed: Testbed = agents["bed"]
        mn_socket, cn_socket = agents["mn"], agents["cn"]
        assert "route optimization: on" in ro(mn_socket, "status")

        # 1. The CN pings the HoA: through the tunnel first, then RR, then directly.
        stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=20).start()
        try:
            assert wait_until(
                lambda: cn_cache(cn_socket) == [(MN_HOME_ADDRESS, VISIT_COA)], 20.0
            ), (
                cn_cache(cn_socket),
                bul(mn_socket),
            )
            entries = {e["recipient"]: e for e in bul(mn_socket)}
            assert (
                entries[CN_ADDRESS]["state"] == 1 and not entries[CN_ADDRESS]["home_registration"]
            )
            with (
                bed.capture("homenet", tmp_path / "homenet-ro.pcap") as homenet,
                bed.capture("visitnet", tmp_path / "visitnet-ro.pcap") as visitnet,
            ):
                before = stream.replies_so_far
                assert wait_until(lambda: stream.replies_so_far >= before + 20, 5.0)
            assert echo_frames(homenet) == [], "echo traffic still crosses the home network"
            direct = echo_frames(visitnet)
            assert len(direct) >= 20
            from scapy.layers.inet6 import HAO, IPv6ExtHdrRouting

            assert all(IPv6ExtHdrRouting in f or HAO in f for f in direct)
            mn_stats = request(mn_socket, {"cmd": "stats"})
            assert mn_stats["route_optimization"] is True
            if mn_stats["ro_datapath"]["datapath"] == "bpf":
                # the tc programs rewrite: a map entry at each end, no NFQUEUE rule
                assert ro_rules(bed) == []
                cn_datapath = request(cn_socket, {"cmd": "stats"})["ro_datapath"]
                # the MN's entries: the CN and its HA (§11.3.1: the HA holds a binding)
                for datapath, entries in ((mn_stats["ro_datapath"], 2), (cn_datapath, 1)):
                    assert datapath["datapath"] == "bpf" and datapath["entries"] == entries
                    assert datapath["counters"]["out_rewritten"] >= 20
                    assert datapath["counters"]["in_rewritten"] >= 20
            else:
                assert sorted(ro_rules(bed)) == sorted(
                    [
                        f"-s {MN_HOME_ADDRESS}/128 -d {CN_ADDRESS}/128",
                        f"-s {MN_HOME_ADDRESS}/128 -d {HA_ADDRESS}/128",
                    ]
                )

            # 2. RO off at the MN mid-flow: back to the tunnel (the CN is told too).
            assert "route optimization: off" in ro(mn_socket, "off")
            assert wait_until(lambda: cn_cache(cn_socket) == [], 5.0), cn_cache(cn_socket)
            with bed.capture("homenet", tmp_path / "homenet-tunnel.pcap") as homenet:
                before = stream.replies_so_far
                assert wait_until(lambda: stream.replies_so_far >= before + 10, 5.0)
            assert len(echo_frames(homenet)) >= 10, "no echo traffic through the home network"
            assert CN_ADDRESS not in {e["recipient"] for e in bul(mn_socket)}
            assert ro_rules(bed) == []

            # 3. RO on again: the next data from the CN starts return routability again.
            assert "route optimization: on" in ro(mn_socket, "on")
            assert wait_until(lambda: cn_cache(cn_socket) == [(MN_HOME_ADDRESS, VISIT_COA)], 20.0)
        finally:
            result = stream.stop()
        # Counts are printed, not asserted: losses here come from CPU contention on a shared
        # machine (the tunnel alone shows them too), not from the switches, which never take
        # a path away before the other one is in place.
        print(f"\nCN -> HoA while RO is set up, switched off and on: {result.summary()}")
        print("  lost sequence numbers:", [(o.first_seq, o.last_seq) for o in result.outages])

        # 4. Travel on to visitnet2: the CN's binding follows the new CoA.
        stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=20).start()
        try:
            bed.move("visitnet2")
            assert wait_until(
                lambda: cn_cache(cn_socket) == [(MN_HOME_ADDRESS, VISIT2_COA)], 30.0
            ), (cn_cache(cn_socket), bul(mn_socket))
            before = stream.replies_so_far
            assert wait_until(lambda: stream.replies_so_far >= before + 10, 5.0)
        finally:
            result = stream.stop()
        print(f"CN -> HoA across the move to visitnet2 with RO: {result.summary()}")
        cn_stats = request(cn_socket, {"cmd": "stats"})
        print(
            "CN:",
            {k: cn_stats["counters"][k] for k in ("NBindUpdatesRcvd", "NBindAcksSent")},
            cn_stats["correspondent"]["counters"],
        )

        # 5. The CN agent stops: its Binding Error 1 sends the MN back to the tunnel, the new
        #    HoTI gets the CN kernel's Parameter Problem (no MH support), RO stays off for it.
        stream = bed.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=20).start()
        try:
            agents["cn_proc"].send_signal(signal.SIGTERM)
            assert agents["cn_proc"].wait(timeout=10) == 0
            assert wait_until(
                lambda: CN_ADDRESS not in {e["recipient"] for e in bul(mn_socket)}, 10.0
            ), bul(mn_socket)
            before = stream.replies_so_far
            assert wait_until(lambda: stream.replies_so_far >= before + 10, 5.0)
        finally:
            result = stream.stop()
        print(f"CN -> HoA while the CN agent stops (back to the tunnel): {result.summary()}")
        # The CN kernel's Parameter Problem ended RO with it: no entry, no rule, no new RR
        # (the HA's rule stays: its binding is in force, §11.3.1).
        ha_rule = [f"-s {MN_HOME_ADDRESS}/128 -d {HA_ADDRESS}/128"]
        assert ro_rules(bed) == ([] if mn_stats["ro_datapath"]["datapath"] == "bpf" else ha_rule)
        assert CN_ADDRESS not in {e["recipient"] for e in bul(mn_socket)}
