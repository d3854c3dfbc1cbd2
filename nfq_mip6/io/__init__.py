"""Kernel I/O adapters: NFQUEUE, the raw IPv6 sender, ICMPv6/ND sockets, ip6tables rules.

The only package (with :mod:`nfq_mip6.dataplane`) that touches sockets and C extensions.
"""
