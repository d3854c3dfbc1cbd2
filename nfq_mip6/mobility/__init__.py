"""Pure, sans-I/O Mobile IPv6 protocol core (RFC 6275): events in, actions out, ``now`` injected.

See :mod:`nfq_mip6.mobility.events` for the contract with the runtimes.
"""
