"""The kernel toolkit (nfq_mip6/dataplane/kernel.py) against a real kernel, inside a
namespace made for the test: policy rules added, found, refused and removed; the ``local``
rule moved behind the decap rules and put back; the seg6 tunnel source set through generic
netlink and through ``ip``; a refused request is the one DataplaneError."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.netns

SCRIPT = r"""
import json, sys
from ipaddress import IPv6Address
from pyroute2 import IPRoute
from nfq_mip6.dataplane import kernel
from nfq_mip6.errors import DataplaneError

ipr, retry = IPRoute(), kernel.EnomemRetry()
out = {}
kernel.add_rule(ipr, retry, "decap rule", priority=100, table=207,
                dst="2001:db8::4", dst_len=128, ip_proto=41)
kernel.add_rule(ipr, retry, "decap rule again", priority=100, table=207,
                dst="2001:db8::4", dst_len=128, ip_proto=41)  # already there: fine
kernel.add_rule(ipr, retry, "mark rule", priority=938, table=kernel.RT_TABLE_LOCAL,
                fwmark=kernel.ND_FWMARK)
out["has_decap"] = kernel.has_rule(ipr, 100, 207)
try:
    kernel.add_rule(ipr, retry, "bad rule", priority=101, table=207, exist_ok=False,
                    dst="2001:db8::4", dst_len=129)
except DataplaneError as exc:
    out["refused"] = str(exc)
out["moved"] = kernel.move_local_rule(ipr, retry)
out["moved_again"] = kernel.move_local_rule(ipr, retry)
out["after_move"] = [r.get_attr("FRA_PRIORITY", 0) for r in kernel.ipv6_rules(ipr)
                     if kernel.rule_table(r) == kernel.RT_TABLE_LOCAL]
kernel.restore_local_rule(ipr, retry)
out["after_restore"] = [r.get_attr("FRA_PRIORITY", 0) for r in kernel.ipv6_rules(ipr)
                        if kernel.rule_table(r) == kernel.RT_TABLE_LOCAL]
out["deleted"] = kernel.delete_rule(ipr, "decap rule", priority=100, table=207,
                                    dst="2001:db8::4", dst_len=128, ip_proto=41)
out["deleted_again"] = kernel.delete_rule(ipr, "decap rule", priority=100, table=207,
                                          dst="2001:db8::4", dst_len=128, ip_proto=41)
source = kernel.TunnelSource()
source.set(IPv6Address("2001:db8::1"))
out["tunsrc_genl"] = kernel.run_ip("sr", "tunsrc", "show").split()
source.close()
by_ip = kernel.TunnelSource(netns=sys.argv[1])
by_ip.set(IPv6Address("2001:db8::2"))
out["tunsrc_ip"] = kernel.run_ip("sr", "tunsrc", "show").split()
by_ip.set(None)
out["tunsrc_reset"] = kernel.run_ip("sr", "tunsrc", "show").split()
ipr.close()
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kernelkit-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_rules_local_rule_and_tunnel_source_on_a_real_kernel(netns: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT, netns],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["has_decap"] is True
    assert out["refused"].startswith("bad rule: ")
    assert out["moved"] is True and out["moved_again"] is False
    assert out["after_move"] == [938, 1000]  # the fwmark rule, the moved one
    assert out["after_restore"] == [0, 938]
    assert out["deleted"] is True and out["deleted_again"] is False
    assert out["tunsrc_genl"] == ["tunsrc", "addr", "2001:db8::1"]
    assert out["tunsrc_ip"] == ["tunsrc", "addr", "2001:db8::2"]
    assert out["tunsrc_reset"] == ["tunsrc", "addr", "::"]
    rules = subprocess.run(
        ["ip", "-n", netns, "-6", "rule", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert "fwmark 0x6275 lookup local" in rules


TUNNELS = r"""
import json, subprocess
from ipaddress import IPv6Address as A, IPv6Network as N
from nfq_mip6.dataplane.netlink import NetlinkDataplane

def count(table):
    out = subprocess.run(["ip", "-6", "route", "show", "table", str(table)],
                         capture_output=True, text=True, check=True).stdout
    return len([line for line in out.splitlines() if line.strip()])

hoa = lambda i: A(int(A("2001:db8:a::1:0")) + i)
coa = lambda i: A(int(A("2001:db8:b::1:0")) + i)
d = NetlinkDataplane("t0", A("2001:db8:a::1"), N("2001:db8:a::/64"))
out = {"failed": d.install_tunnels({hoa(i): coa(i % 10) for i in range(2500)})}
out["installed"] = [count(6275), count(6276)]
out["failed"] += d.install_tunnels({hoa(i): coa(10) for i in range(1000)})  # CoAs 0-9 kept
out["moved"] = [count(6275), count(6276), str(d.tunnels()[hoa(0)]), str(d.tunnels()[hoa(1500)])]
out["failed"] += d.install_tunnels({hoa(i): coa(11) for i in range(2500)})  # one CoA left
out["one_coa"] = [count(6275), count(6276)]
out["failed"] += d.remove_tunnels([hoa(i) for i in range(2500)] + [hoa(9999)])
out["removed"] = [count(6275), count(6276), len(d.tunnels())]
print(json.dumps(out))
"""


def test_tunnels_in_netlink_batches_on_a_real_kernel(netns: str) -> None:
    """2 500 tunnel routes (many sendmsg batches) with their decap routes, one per CoA; a
    CoA change of 1 000; every HoA to one CoA (the others' decap routes go); all removed
    (an absent one is fine)."""
    subprocess.run(
        ["ip", "-n", netns, "link", "add", "t0", "type", "veth", "peer", "name", "t1"], check=True
    )
    for dev in ("t0", "t1"):
        subprocess.run(["ip", "-n", netns, "link", "set", dev, "up"], check=True)
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", TUNNELS],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["failed"] == 0
    assert out["installed"] == [2500, 10]
    assert out["moved"] == [2500, 11, "2001:db8:b::1:a", "2001:db8:b::1:0"]
    assert out["one_coa"] == [2500, 1]
    assert out["removed"] == [0, 0, 0]
