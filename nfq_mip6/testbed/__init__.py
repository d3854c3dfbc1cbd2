"""The Linux Mobile IPv6 HOWTO test bed (§4-§5) in network namespaces.

``Testbed(prefix).up()`` / ``.move("visitnet")`` / ``.down()``; see :mod:`.testbed`.
Importing this package needs neither root nor C extensions.
"""

from nfq_mip6.testbed.netns import CommandFailed, TestbedError
from nfq_mip6.testbed.testbed import (
    Node,
    Outage,
    PingResult,
    PingStream,
    Testbed,
    TestbedStatus,
    parse_ping_output,
    unique_prefix,
)
from nfq_mip6.testbed.topology import MN_LINKS, MnLink, care_of_address

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
