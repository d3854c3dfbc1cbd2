"""The HA's in-memory data plane keeps the Dataplane Protocol and
reconciles like the kernel one (nfq_mip6/dataplane/fake.py)."""

from __future__ import annotations

from ipaddress import IPv6Address

from nfq_mip6.dataplane import Dataplane, ReconcileReport
from nfq_mip6.dataplane.fake import FakeDataplane
from tests.support.howto import HOA

COA = IPv6Address("fec0:106:1100::10")
COA2 = IPv6Address("fec0:106:1000::10")


# -- FakeDataplane ---------------------------------------------------------------------------


def test_fake_dataplane_satisfies_the_protocol_and_reconciles() -> None:
    fake: Dataplane = FakeDataplane()
    fake.install_tunnel(HOA, COA)
    fake.install_tunnel(IPv6Address("fec0:106:2700::5"), COA)
    report = fake.reconcile({HOA: COA2, IPv6Address("fec0:106:2700::6"): COA})
    assert report == ReconcileReport(kept=0, added=1, replaced=1, removed=1)
    assert fake.tunnels() == {HOA: COA2, IPv6Address("fec0:106:2700::6"): COA}
