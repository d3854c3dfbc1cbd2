"""What the tests share: address plans, deterministic factories, the in-memory network.

* :mod:`tests.support.howto`: the HOWTO test bed's address plan (``nfq_mip6.testbed.topology``)
  as ``ipaddress`` objects;
* :mod:`tests.support.vectors`: the RFC 3849 documentation addresses of
  ``tests/vectors/mh_vectors.json`` and the vectors themselves;
* :mod:`tests.support.factories`: deterministic randomness and other small builders;
* :mod:`tests.support.network`: MN, HA and CN cores wired together with a fake clock.
"""
