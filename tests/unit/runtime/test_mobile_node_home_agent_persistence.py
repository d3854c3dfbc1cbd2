"""The MN's home agent across a restart (RFC 5142): :class:`MobileNodePersistence` keeps the
home agent whose BA accepted the registration (with the configured one then), and the runtime
hands it to the core at start unless the configuration names another home agent since."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface
from pathlib import Path

from nfq_mip6.io.nfqueue import QueuedPacket
from nfq_mip6.runtime.mobile_node import MobileNodeRuntime
from nfq_mip6.runtime.movement import AddressObservation, HeardRouterAdvertisement
from nfq_mip6.store import MobileNodePersistence, StateStore
from nfq_mip6.wire import PrefixInformation, RouterAdvertisement, build_ipv6_packet, build_mh
from nfq_mip6.wire.mh import IPPROTO_MH, BAFlags, BindingAck
from tests.support.howto import COA, HA
from tests.support.howto import HOA_INTERFACE as HOA
from tests.unit.runtime.test_mobile_node import AR, runtime_and_log

__all__ = ["runtime_and_log"]  # the fixture

HA_OTHER = IPv6Address("fec0:106:2700::12")


def test_round_trip_and_no_rewrite_when_unchanged(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        persistence = MobileNodePersistence(store)
        assert persistence.load_home_agent() is None
        persistence.save_home_agent(HA_OTHER, HA)
        writes: list[str] = []
        set_value = store.set_value

        def recording(key: str, value: object) -> None:
            writes.append(key)
            set_value(key, value)

        store.set_value = recording  # type: ignore[method-assign]
        persistence.save_home_agent(HA_OTHER, HA)
        assert writes == []
    with StateStore.in_state_dir(tmp_path) as store:
        assert MobileNodePersistence(store).load_home_agent() == (HA_OTHER, HA)


def test_a_malformed_value_is_ignored_and_counted(tmp_path: Path) -> None:
    with StateStore.in_state_dir(tmp_path) as store:
        store.set_value(MobileNodePersistence.HOME_AGENT_KEY, {"home_agent": "not an address"})
        persistence = MobileNodePersistence(store)
        assert persistence.load_home_agent() is None and persistence.errors == 1


def test_restart_registers_with_the_stored_home_agent(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]], tmp_path: Path
) -> None:
    runtime, _log = runtime_and_log
    assert runtime.ctx is not None and runtime.ctx.config.mn is not None
    configured = runtime.ctx.config.mn.home_agent
    assert configured == HA
    with StateStore.in_state_dir(tmp_path) as store:
        runtime.persistence = MobileNodePersistence(store)
        runtime.persistence.save_home_agent(HA_OTHER, configured)
        runtime._restore_home_agent(runtime.ctx)
        assert runtime._core.home_agent == HA_OTHER


def test_a_configuration_naming_another_home_agent_wins(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]], tmp_path: Path
) -> None:
    runtime, _log = runtime_and_log
    assert runtime.ctx is not None
    with StateStore.in_state_dir(tmp_path) as store:
        runtime.persistence = MobileNodePersistence(store)
        # saved while another home agent was configured: the operator changed it since
        runtime.persistence.save_home_agent(HA_OTHER, IPv6Address("fec0:106:2700::99"))
        runtime._restore_home_agent(runtime.ctx)
        assert runtime._core.home_agent == HA


def test_the_home_agent_is_saved_once_it_accepted(
    runtime_and_log: tuple[MobileNodeRuntime, list[str]], tmp_path: Path
) -> None:
    runtime, _log = runtime_and_log
    with StateStore.in_state_dir(tmp_path) as store:
        runtime.persistence = MobileNodePersistence(store)
        visited = PrefixInformation(
            IPv6Address("fec0:106:1100::"), 64, True, True, False, 86400, 14400
        )
        runtime._observe(
            HeardRouterAdvertisement(AR, RouterAdvertisement(prefixes=(visited,))), 100.0
        )
        runtime._observe(AddressObservation(IPv6Interface(f"{COA}/64"), True, 86400.0), 100.0)
        assert runtime.persistence.load_home_agent() is None  # no BA yet
        entry = runtime._core.home_entry
        assert entry is not None
        mh = build_mh(BindingAck(0, BAFlags.NONE, entry.sequence, 250), HA, HOA.ip)
        ba = build_ipv6_packet(HA, COA, IPPROTO_MH, mh, rh2_address=HOA.ip)
        runtime.on_queued_packet(QueuedPacket(ba), 100.5)
        assert runtime.persistence.load_home_agent() == (HA, HA)
