"""The RFC 3849 documentation addresses of ``tests/vectors/mh_vectors.json``, and the vectors.

The return-routability and checksum vectors (docs/protocol-notes.md §5) use HoA
2001:db8:a::100, CoA 2001:db8:f::1, CN 2001:db8:c::1 and HA 2001:db8:a::1; core and codec
tests use the same plan so that their packets can be compared with the vectors.
"""

from __future__ import annotations

import json
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final

VECTORS_PATH: Final = Path(__file__).resolve().parents[1] / "vectors" / "mh_vectors.json"
VECTORS: Final[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

HA: Final = IPv6Address("2001:db8:a::1")
"""The home agent."""
HA2: Final = IPv6Address("2001:db8:a::2")
"""A second home agent on the home link."""
HOA: Final = IPv6Address("2001:db8:a::100")
"""The mobile node's home address."""
PREFIX: Final = IPv6Network("2001:db8:a::/64")
"""The home prefix."""
COA: Final = IPv6Address("2001:db8:f::1")
"""The care-of address on the first visited link."""
COA2: Final = IPv6Address("2001:db8:e::1")
"""The care-of address on a second visited link."""
CN: Final = IPv6Address("2001:db8:c::1")
"""The correspondent node."""

assert str(HOA) == VECTORS["addresses"]["hoa"] and str(COA) == VECTORS["addresses"]["coa"]
assert str(CN) == VECTORS["addresses"]["cn"] and str(HA) == VECTORS["addresses"]["ha"]
