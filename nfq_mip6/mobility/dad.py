"""When the Home Agent's proxy Duplicate Address Detection probes and decides (RFC 4862 §5.4).

RFC 6275 §10.3.1: before the first Binding Acknowledgement for a home address, the HA runs
DAD for it on the home link on the MN's behalf. It does so with the home interface's own DAD
settings, as the MN itself would on that link (RFC 4862 §5.1, §5.4):

* ``DupAddrDetectTransmits`` Neighbor Solicitations (Linux: ``conf/<if>/dad_transmits``),
  ``RetransTimer`` apart (Linux: ``neigh/<if>/retrans_time_ms``, which a router's RA sets on
  hosts and ``AdvRetransTimer`` advertises);
* the address is unique when no defence was heard ``RetransTimer`` after the last one, i.e.
  ``DupAddrDetectTransmits × RetransTimer`` after the first;
* ``DupAddrDetectTransmits = 0`` turns DAD off: nothing is sent, the address is unique at
  once.

This is the whole first-registration delay the HA adds (1 s with the RFC defaults). Pure: the
caller passes the settings and ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nfq_mip6.constants import DUP_ADDR_DETECT_TRANSMITS, RETRANS_TIMER

__all__ = ["DadTiming"]

MAX_DAD_TRANSMITS = 10
"""A sanity cap on ``dad_transmits`` (Linux accepts any int; 10 probes is 10 RetransTimers)."""


@dataclass(frozen=True, slots=True)
class DadTiming:
    """``transmits`` probes ``retrans_timer`` seconds apart (RFC 4862 §5.4)."""

    transmits: int = DUP_ADDR_DETECT_TRANSMITS
    retrans_timer: float = RETRANS_TIMER

    def __post_init__(self) -> None:
        if not 0 <= self.transmits <= MAX_DAD_TRANSMITS:
            raise ValueError(f"dad_transmits {self.transmits} is out of range 0..10")
        if not self.retrans_timer > 0:
            raise ValueError(f"RetransTimer {self.retrans_timer} s must be positive")

    @classmethod
    def from_interface(cls, dad_transmits: int, retrans_time_ms: int) -> DadTiming:
        """The timing from an interface's settings; values outside what RFC 4862 allows fall
        back to the defaults (negative transmits, a zero RetransTimer = "unspecified")."""
        transmits = dad_transmits if dad_transmits >= 0 else DUP_ADDR_DETECT_TRANSMITS
        retrans = retrans_time_ms / 1000 if retrans_time_ms > 0 else RETRANS_TIMER
        return cls(min(transmits, MAX_DAD_TRANSMITS), retrans)

    @property
    def enabled(self) -> bool:
        return self.transmits > 0

    def probe_times(self, start: float) -> tuple[float, ...]:
        """When each Neighbor Solicitation is sent."""
        return tuple(start + n * self.retrans_timer for n in range(self.transmits))

    def deadline(self, start: float) -> float:
        """When the address is unique if nothing defended it (``start`` when DAD is off)."""
        return start + self.transmits * self.retrans_timer

    @property
    def wait_ms(self) -> int:
        """The whole wait, in milliseconds."""
        return round(1000 * self.transmits * self.retrans_timer)
