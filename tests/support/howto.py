"""The address plan of the Linux Mobile IPv6 HOWTO test bed (§4.1, §4.2.1, §5.5).

The strings live in :mod:`nfq_mip6.testbed.topology` (the test bed builds them); these are the
same addresses as ``ipaddress`` objects, under the names the tests use.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from typing import Final

from nfq_mip6.testbed.topology import (
    CN_ADDRESS,
    HA_ADDRESS,
    HOME_PREFIX,
    MN_HOME_ADDRESS,
    VISITNET2_PREFIX,
    VISITNET_PREFIX,
    care_of_address,
)

HA: Final = IPv6Address(HA_ADDRESS)
"""The home agent on the home link (fec0:106:2700::2)."""
PREFIX: Final = IPv6Network(HOME_PREFIX)
"""The home prefix (fec0:106:2700::/64)."""
HOA: Final = IPv6Address(MN_HOME_ADDRESS)
"""The mobile node's home address (fec0:106:2700::4)."""
HOA_INTERFACE: Final = IPv6Interface(f"{MN_HOME_ADDRESS}/{PREFIX.prefixlen}")
"""The home address with the home prefix length, as configured on the MN."""
CN: Final = IPv6Address(CN_ADDRESS)
"""The correspondent node on the internet link (fec0:106:2300::10)."""
VISIT: Final = IPv6Network(VISITNET_PREFIX)
"""visitnet's prefix (fec0:106:1100::/64)."""
VISIT2: Final = IPv6Network(VISITNET2_PREFIX)
"""visitnet2's prefix (fec0:106:1000::/64)."""
COA: Final = IPv6Address(care_of_address("visitnet"))
"""The MN's SLAAC care-of address on visitnet (fec0:106:1100:0:290:7dff:fef3:31a)."""
COA2: Final = IPv6Address(care_of_address("visitnet2"))
"""The MN's SLAAC care-of address on visitnet2 (fec0:106:1000:0:290:7dff:fef3:31a)."""
