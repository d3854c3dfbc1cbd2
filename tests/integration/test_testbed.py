"""The HOWTO test bed itself (§4.2.1, §4.2.3-4.2.4, §5.2, §5.5) on the real kernel."""

from __future__ import annotations

import subprocess
from itertools import permutations
from pathlib import Path

import pytest

from nfq_mip6.testbed import (
    Testbed,
    TestbedError,
    care_of_address,
    parse_ping_output,
    unique_prefix,
)
from nfq_mip6.testbed import radvd as radvd_module
from nfq_mip6.testbed.netns import list_netns, run
from nfq_mip6.testbed.topology import (
    HA_ADDRESS,
    LINKS,
    MN_HOME_ADDRESS,
    MN_LINK_PREFIX,
    NODE_NAMES,
    NODES,
    node_addresses,
)

DEPLOY_RADVD = Path(__file__).resolve().parents[2] / "deploy" / "radvd"


# -- no root needed ---------------------------------------------------------------------


@pytest.mark.parametrize("node", ["ha", "ar", "ar2"])
def test_deploy_radvd_configs_are_what_the_testbed_runs(node: str) -> None:
    assert (DEPLOY_RADVD / f"{node}.conf").read_text() == radvd_module.radvd_config(node)


def test_care_of_addresses_are_the_howtos() -> None:
    # HOWTO §5.2 and §5.5 ifconfig output (MAC 00:90:7D:F3:03:1A).
    assert care_of_address("visitnet") == "fec0:106:1100:0:290:7dff:fef3:31a"
    assert care_of_address("visitnet2") == "fec0:106:1000:0:290:7dff:fef3:31a"


def test_parse_ping_output_counts_gaps_and_outages() -> None:
    lines = [
        "PING fec0:106:2700::4(fec0:106:2700::4) 56 data bytes",
        "[1000.000000] 64 bytes from fec0:106:2700::4: icmp_seq=1 ttl=62 time=0.1 ms",
        "no answer yet for icmp_seq=2",
        "no answer yet for icmp_seq=3",
        "[1000.030000] 64 bytes from fec0:106:2700::4: icmp_seq=4 ttl=62 time=0.1 ms",
        "[1000.040000] 64 bytes from fec0:106:2700::4: icmp_seq=5 ttl=62 time=0.1 ms",
        "--- fec0:106:2700::4 ping statistics ---",
        "5 packets transmitted, 3 received, 40% packet loss, time 40ms",
    ]
    result = parse_ping_output(lines, 0.01)
    assert (result.sent, result.received) == (5, 3)
    assert result.loss == pytest.approx(0.4)
    assert result.max_gap_s == pytest.approx(0.03)
    assert len(result.outages) == 1
    assert (result.outages[0].first_seq, result.outages[0].last_seq) == (2, 3)
    assert result.outages[0].seconds == pytest.approx(0.02)


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(TestbedError, match="bad prefix"):
        Testbed("Bad-Prefix")


# -- on the real kernel -----------------------------------------------------------------


@pytest.mark.netns
def test_all_nodes_ping_each_other(testbed_home: Testbed) -> None:
    """HOWTO §4.2.1: "All the nodes should be able to ping each other"."""
    pings: dict[tuple[str, str], subprocess.Popen[str]] = {}
    for src, dst in permutations(NODE_NAMES, 2):
        for address in node_addresses(dst):
            pings[(src, address)] = testbed_home.node(src).popen(
                ["ping", "-6", "-n", "-c", "1", "-W", "2", address]
            )
    failed = []
    for (src, address), proc in pings.items():
        out, _ = proc.communicate(timeout=10)
        if proc.returncode != 0:
            failed.append(f"{src} -> {address}: {out.strip().splitlines()[-1:]}")
    assert not failed, "\n".join(failed)


@pytest.mark.netns
def test_mn_autoconfigures_a_care_of_address_on_each_visited_link(testbed_home: Testbed) -> None:
    """HOWTO §5.2 and §5.5: visitnet, then visitnet2, then home."""
    bed = testbed_home
    mn = bed.node("mn")

    def carrier_changes() -> int:
        return int(mn.run(["cat", "/sys/class/net/eth0/carrier_changes"]).stdout)

    for link in ("visitnet", "visitnet2"):
        changes = carrier_changes()
        bed.move(link)
        assert carrier_changes() == changes + 2  # the MN's carrier went down and up
        bed.solicit_router()  # Linux sends no RS on carrier regain; the MN agent would
        address = bed.wait_for_address(MN_LINK_PREFIX[link])
        assert address == care_of_address(link)
        assert bed.status().mn_link == link
    bed.move("home")
    rdisc = bed.solicit_router()
    assert "Mobile home agent         :          Yes" in rdisc
    assert MN_HOME_ADDRESS in bed.node("mn").ipv6_addresses("eth0")


@pytest.mark.netns
def test_the_mn_reaches_the_cn_from_a_visited_link_with_its_care_of_address(
    testbed_home: Testbed,
) -> None:
    bed = testbed_home
    bed.move("visitnet2")
    # The default router learnt at home (the HA) lingers until its lifetime ends; the MN
    # agent removes it on movement (RFC 6275 §11.5.1); here the test does.
    bed.node("mn").run(["ip", "-6", "route", "flush", "dev", "eth0", "proto", "ra"])
    bed.solicit_router()
    coa = bed.wait_for_address(MN_LINK_PREFIX["visitnet2"])
    bed.node("mn").run(["ping", "-6", "-n", "-c", "1", "-W", "2", "-I", coa, "fec0:106:2300::10"])


@pytest.mark.netns
def test_home_agent_ra_carries_the_h_flag_and_home_agent_information(
    testbed_home: Testbed, tmp_path: Path
) -> None:
    """HOWTO §4.2.4 (radvdump output): AdvHomeAgentFlag on, HomeAgentPreference 20."""
    pcap = tmp_path / "homenet.pcap"
    with testbed_home.capture("homenet", pcap):
        rdisc = testbed_home.solicit_router()
    assert "Mobile home agent         :          Yes" in rdisc
    assert f"{HA_ADDRESS}/64" in rdisc  # AdvRouterAddr on: the R flag carries the address
    tshark_fields = [
        "icmpv6.nd.ra.flag.h",
        "icmpv6.opt.home_agent_preference",
        "icmpv6.opt.home_agent_lifetime",
    ]
    argv = ["tshark", "-r", str(pcap), "-Y", "icmpv6.type == 134", "-T", "fields"]
    for name in tshark_fields:
        argv += ["-e", name]
    fields = run(argv, timeout=30.0).stdout.split()
    # H flag (RFC 6275 §7.1), Home Agent Information option (§7.4): preference 20.
    assert fields[:3] == ["1", "20", "10000"], fields


@pytest.mark.netns
def test_ping_stream_and_iperf3_between_cn_and_home(testbed_home: Testbed) -> None:
    stream = testbed_home.ping_stream("cn", MN_HOME_ADDRESS, rate_pps=100).start()
    testbed_home.wait_until(lambda: stream.replies_so_far >= 5, 5.0, "5 echo replies")
    result = stream.stop()
    assert result.sent > 0
    assert result.received == result.sent
    report = testbed_home.iperf3("cn", "ha", HA_ADDRESS, seconds=1)
    assert report["end"]["sum_received"]["bytes"] > 0


@pytest.mark.netns
def test_up_is_idempotent_and_down_leaves_no_trace() -> None:
    ours = {*LINKS, *(f"{n.name}-{i.name}" for n in NODES for i in n.interfaces)}
    root_links_before = _root_links()
    bed = Testbed(unique_prefix("u"))
    try:
        bed.up()
        radvd_pids = [pid for pid in bed.status().radvd.values() if pid is not None]
        assert len(radvd_pids) == 3
        bed.up()  # no-op
        assert bed.status().radvd == dict(zip(("ha", "ar", "ar2"), radvd_pids, strict=True))
        assert set(bed.namespace_names) <= list_netns()
    finally:
        removed = bed.down()
    assert sorted(removed) == sorted(bed.namespace_names)
    assert not set(bed.namespace_names) & list_netns()
    assert not bed.run_dir.exists()
    for pid in radvd_pids:
        assert not Path(f"/proc/{pid}").exists()
    # Nothing in the host's namespace (other sessions may add their own links meanwhile).
    assert not (_root_links() - root_links_before) & ours


def _root_links() -> set[str]:
    """Names of the links in the host's (pytest's) namespace."""
    lines = run(["ip", "-o", "link", "show"]).stdout.splitlines()
    return {line.split(":")[1].strip().split("@")[0] for line in lines}


@pytest.mark.netns
def test_up_refuses_namespaces_it_did_not_create() -> None:
    bed = Testbed(unique_prefix("f"))
    foreign = bed.netns_name("cn")
    run(["ip", "netns", "add", foreign])
    try:
        with pytest.raises(TestbedError, match="not created by this test bed"):
            bed.up()
        assert foreign in list_netns()  # untouched
        assert not {n for n in bed.namespace_names if n != foreign} & list_netns()
    finally:
        run(["ip", "netns", "del", foreign], check=False)
        bed.down()


@pytest.mark.netns
def test_failed_up_cleans_up_after_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # radvd refuses this configuration, so up() fails after namespaces, links and the
    # first radvd exist; nothing may be left behind.
    import nfq_mip6.testbed.testbed as testbed_module

    monkeypatch.setattr(
        testbed_module, "radvd_config", lambda node: "interface eth0 { bogus on; };\n"
    )
    bed = Testbed(unique_prefix("e"))
    with pytest.raises(TestbedError, match="radvd on ha did not start"):
        bed.up()
    assert not set(bed.namespace_names) & list_netns()
    assert not bed.run_dir.exists()
    bed.down()  # still fine afterwards


@pytest.mark.netns
def test_link_kind_probe_answers_and_leaves_nothing_behind() -> None:
    from nfq_mip6.testbed.netns import probe_link_kind

    probe_netns = f"{unique_prefix('p')}-probe"
    bridge = probe_link_kind("bridge", probe_netns)
    assert bridge.supported, bridge.reason
    ip6tnl = probe_link_kind("ip6tnl", probe_netns)
    assert ip6tnl.supported or ip6tnl.reason  # absent on our CI kernel: a reason is given
    assert probe_netns not in list_netns()


@pytest.mark.netns
def test_cli_up_move_status_down(capsys: pytest.CaptureFixture[str]) -> None:
    from nfq_mip6.cli import main

    prefix = unique_prefix("c")
    try:
        assert main(["testbed", "up", "--prefix", prefix]) == 0
        assert main(["testbed", "move", "visitnet", "--solicit", "--prefix", prefix]) == 0
        Testbed(prefix).wait_for_address(MN_LINK_PREFIX["visitnet"])
        assert main(["testbed", "status", "--prefix", prefix]) == 0
        out = capsys.readouterr().out
        assert "MN attached to: visitnet" in out
        assert care_of_address("visitnet") in out
    finally:
        assert main(["testbed", "down", "--prefix", prefix]) == 0
    assert not {n for n in list_netns() if n.startswith(f"{prefix}-")}


@pytest.mark.netns
def test_demo_without_agents_walks_the_howto_and_cleans_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nfq_mip6.cli import main

    prefix = unique_prefix("d")
    status = main(["demo", "--prefix", prefix, "--agents", "off", "--dwell", "0.2"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Mobile home agent         :          Yes" in out  # §4.2.4
    for link in ("visitnet", "visitnet2"):
        assert f"inet6 {care_of_address(link)}/64" in out  # §5.2, §5.5
    assert "mipdiag -c    MISSING (no agents)" in out
    assert f"test bed {prefix!r} removed" in out
    assert not {n for n in list_netns() if n.startswith(f"{prefix}-")}


def test_up_and_down_refuse_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    bed = Testbed("nonroot")
    with pytest.raises(TestbedError, match="needs root"):
        bed.up()
    with pytest.raises(TestbedError, match="needs root"):
        bed.down()
