"""The one error root of nfq_mip6 and its branches.

Every exception the package raises on purpose derives from :class:`NfqMip6Error`, through
the branch that says whose fault it is and what a caller can do about it:

* :class:`MalformedInput`: bytes from the network that cannot be decoded or break a rule
  of the protocol (the codec's ``MalformedPacket``, a bad Router Advertisement). A remote
  peer's doing: the adapter drops the packet and counts it, the agent keeps running.
* :class:`InternalError`: a local bug (e.g. a state change outside a transition table).
  Nothing a remote peer or an operator can cause; it is an ``AssertionError`` too.
* :class:`DataplaneError`: the kernel refused or failed an operation (routes, rules,
  addresses, sysctls, ip6tables). At start-up the agent exits 1 with one line naming it.
* :class:`ConfigurationError`: the configuration (file, environment, key files, role) is
  unusable; the agent exits 2 before touching the kernel.
* :class:`StoreError`: the state database cannot be opened, read or written.
* :class:`ControlError`: a control-socket request to a running agent failed.

The builtin base each error had before the root existed (``ValueError``, ``RuntimeError``,
``AssertionError``, ``OSError``) is kept as a second base, so existing ``except`` clauses see
the same errors. This module imports nothing: the pure core (``wire``, ``mobility``) may use it.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ControlError",
    "DataplaneError",
    "InternalError",
    "MalformedInput",
    "NfqMip6Error",
    "StoreError",
]


class NfqMip6Error(Exception):
    """Root of every error nfq_mip6 raises on purpose."""


class MalformedInput(NfqMip6Error, ValueError):
    """Remote input that cannot be decoded or is not allowed (counted, dropped)."""


class InternalError(NfqMip6Error, AssertionError):
    """A local bug: the program reached a state its own rules forbid."""


class DataplaneError(NfqMip6Error, RuntimeError):
    """A kernel operation failed; the message says which and why."""


class ConfigurationError(NfqMip6Error):
    """The configuration (file, environment, key material, role) cannot be used."""


class StoreError(NfqMip6Error):
    """The state database cannot be opened, read or written."""


class ControlError(NfqMip6Error):
    """The control request failed (no answer, bad answer, permission)."""
