"""Pure, sans-I/O Mobile IPv6 protocol core (RFC 6275): events in, actions out, ``now`` injected.

Public API (see :mod:`nfq_mip6.mobility.events` for the contract with the runtimes):

* ``HomeAgent(HomeAgentConfig(address, home_prefixes, ...), stats=, correspondent=)``
  (:mod:`~nfq_mip6.mobility.home_agent`), ``CorrespondentNode(CorrespondentConfig(address,
  ...), random_bytes=, stats=)`` (:mod:`~nfq_mip6.mobility.correspondent`) and
  ``MobileNode(MobileNodeConfig(home_address, home_prefix, home_agent, ...), random_bytes=,
  stats=)`` (:mod:`~nfq_mip6.mobility.mobile_node`). Each has
  ``handle(event, now) -> list[Action]``, ``handle_timer(now) -> list[Action]`` and
  ``next_deadline() -> float | None``.
* Operator snapshots: ``HomeAgent.binding_cache_rows(now)``,
  ``MobileNode.binding_update_list_rows(now)``; counters: ``role.stats.as_dict()`` (the 19
  MIPL names, :mod:`~nfq_mip6.mobility.stats`).
* Data packets with a Home Address option: ``check_home_address_option(src, home_address,
  now)`` on the HA or CN returns ``[]`` (deliver) or the BE 1 to send.
* Return routability crypto: :mod:`~nfq_mip6.mobility.rr`; the Binding Cache and sequence
  arithmetic: :mod:`~nfq_mip6.mobility.binding`.

Nothing here opens sockets, reads the clock or imports netfilterqueue/pyroute2/prometheus
(``tests/unit/test_core_imports.py`` enforces it).
"""
