"""The Linux Mobile IPv6 HOWTO test bed (§4-§5) in network namespaces.

Usage (as root)::

    from nfq_mip6.testbed import Testbed

    bed = Testbed("nfqm")          # namespaces nfqm-sw, nfqm-ha, -r, -ar, -ar2, -cn, -mn
    bed.up()                       # idempotent; ~0.3 s
    bed.node("cn").run("ping -6 -c1 fec0:106:2700::4")
    with bed.ping_stream("cn", "fec0:106:2700::4", rate_pps=100) as stream:
        bed.move("visitnet")       # carrier flap + re-attach; no RS is sent
        bed.wait_for_address("fec0:106:1100::/64")
        result = stream.stop()     # PingResult: sent, received, loss, max_gap_s, outages
    with bed.capture("homenet", "/tmp/home.pcap"):
        bed.solicit_router()       # rdisc6 from the MN
    bed.down()                     # everything, also after a failed up()

From the shell: ``nfq-mip6 testbed up|down|status|move LINK [--prefix P]``.
Importing this package needs neither root nor C extensions.
"""

from nfq_mip6.testbed.netns import CommandFailed, TestbedError
from nfq_mip6.testbed.node import Node
from nfq_mip6.testbed.testbed import Testbed, TestbedStatus, unique_prefix
from nfq_mip6.testbed.topology import MN_LINKS, MnLink, care_of_address
from nfq_mip6.testbed.traffic import Outage, PingResult, PingStream, parse_ping_output

__all__ = [
    "MN_LINKS",
    "CommandFailed",
    "MnLink",
    "Node",
    "Outage",
    "PingResult",
    "PingStream",
    "Testbed",
    "TestbedError",
    "TestbedStatus",
    "care_of_address",
    "parse_ping_output",
    "unique_prefix",
]
