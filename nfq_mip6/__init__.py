"""nfq_mip6: Mobile IPv6 (RFC 6275) for today's Linux, netfilter-queue based and kernel-assisted.

Imports nothing that needs root or a C extension, so that ``import nfq_mip6`` always works.
"""

__version__ = "0.1.0"
