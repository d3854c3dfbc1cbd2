"""The 19 MIPL counters keep the HOWTO's names and order (mipdiag -s)."""

from __future__ import annotations

from nfq_mip6.mobility.stats import MIPL_COUNTER_NAMES, MobilityStats

HOWTO_ORDER = (
    "NEncapsulations",
    "NDecapsulations",
    "NBindUpdatesRcvd",
    "NBindAcksRcvd",
    "NBindNAcksRcvd",
    "NBindRqsRcvd",
    "NBindUpdatesSent",
    "NBindAcksSent",
    "NBindNAcksSent",
    "NBindRqsSent",
    "NBindUpdatesDropAuth",
    "NBindUpdatesDropInvalid",
    "NBindUpdatesDropMisc",
    "NBindAcksDropAuth",
    "NBindAcksDropInvalid",
    "NBindAcksDropMisc",
    "NBindRqsDropAuth",
    "NBindRqsDropInvalid",
    "NBindRqsDropMisc",
)


def test_stats_names_and_order_match_mipdiag() -> None:
    assert MIPL_COUNTER_NAMES == HOWTO_ORDER
    stats = MobilityStats()
    stats.NBindAcksRcvd += 1
    assert tuple(stats.as_dict()) == HOWTO_ORDER
    assert stats.as_dict()["NBindAcksRcvd"] == 1
