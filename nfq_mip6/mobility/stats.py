"""The 19 MIPL 1.x statistics counters (``mipdiag -s``, Linux Mobile IPv6 HOWTO §5.2).

The core increments them directly; adapters (CLI, Prometheus collector) only read them.
Field names are MIPL's, so ``as_dict()`` prints exactly like ``mipdiag -s``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class MobilityStats:
    """Plain counters, in MIPL's order. "NAcks" are BAs with a status ≥ 128 (rejections)."""

    # MIPL names (mixedCase on purpose).
    NEncapsulations: int = 0
    NDecapsulations: int = 0
    NBindUpdatesRcvd: int = 0
    NBindAcksRcvd: int = 0
    NBindNAcksRcvd: int = 0
    NBindRqsRcvd: int = 0
    NBindUpdatesSent: int = 0
    NBindAcksSent: int = 0
    NBindNAcksSent: int = 0
    NBindRqsSent: int = 0
    NBindUpdatesDropAuth: int = 0
    NBindUpdatesDropInvalid: int = 0
    NBindUpdatesDropMisc: int = 0
    NBindAcksDropAuth: int = 0
    NBindAcksDropInvalid: int = 0
    NBindAcksDropMisc: int = 0
    NBindRqsDropAuth: int = 0
    NBindRqsDropInvalid: int = 0
    NBindRqsDropMisc: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by MIPL name, in ``mipdiag -s`` order."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


MIPL_COUNTER_NAMES: tuple[str, ...] = tuple(field.name for field in fields(MobilityStats))
