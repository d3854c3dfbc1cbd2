"""The Home Agent runtime as one member of a cluster: its bindings in etcd (docs/cluster.md).

The HA runtime (:mod:`nfq_mip6.runtime.home_agent`) hands every core event to
:meth:`HomeAgentCluster.feed` when ``[cluster]`` is configured. What differs from the single
node:

* **Active**: the core decides on its cache; the binding changes and advanced RFC 4285
  timestamps of that decision become one :class:`~nfq_mip6.store.binding_store.BindingCommit`,
  submitted to the etcd store thread with the decision's actions as the token. The agent loop
  goes on; when the completion pipe is readable (:meth:`on_commits`):

  - committed: the actions are carried out (kernel state, proxy ND, **then** the BA);
  - :class:`CommitConflict`: the fresh records go into the core (:class:`HomeBindingLoaded`)
    and the verifier, and the same BU is decided again (now possibly 135 or 144);
  - :class:`CommitTimeout` (or another store error): **no BA**, the decision is undone (the
    last committed state is loaded back); the MN retransmits (RFC 6275 §11.8) and its next
    commit re-reads the keys.

  A BU for a home address with a commit in flight waits for that commit (one decision per
  home address at a time, each on committed state).
* **Standby**: an :class:`EtcdReplica` follows the store; its changes go into the core's
  cache, the verifier's replay state and the kernel tunnel routes (batched). It answers
  nothing: no BA, no proxy ND, no DHAAD, no expiry.
* **Switching** (``nfq-mip6 cluster active|standby``): :meth:`set_role`.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Any, Final

from nfq_mip6.config import ClusterConfig
from nfq_mip6.constants import CLUSTER_TIMELINE_LENGTH
from nfq_mip6.dataplane import DataplaneError
from nfq_mip6.errors import ConfigurationError
from nfq_mip6.logsetup import LogThrottle
from nfq_mip6.mobility.binding import BindingState
from nfq_mip6.mobility.events import (
    Action,
    HomeAgentInput,
    HomeBindingLoaded,
    InstallHomeTunnel,
    InstallRouteOptimization,
    MobilityMessageReceived,
    ProxyDadCompleted,
    RemoveHomeTunnel,
    RemoveRouteOptimization,
    StartProxyDad,
    StartProxyNeighbor,
    StopProxyNeighbor,
    StoredHomeBinding,
)
from nfq_mip6.store.binding_store import BindingCommit, CommitConflict, CommitTimeout
from nfq_mip6.store.database import StoredBinding
from nfq_mip6.store.home_agent import binding_commit
from nfq_mip6.wire import home_agents_anycast
from nfq_mip6.wire.mh import BindingUpdate
from nfq_mip6.wire.options import AuthenticationOption, MessageIdentifier

if TYPE_CHECKING:
    from nfq_mip6.runtime.home_agent import HomeAgentRuntime
    from nfq_mip6.store.etcd import EtcdBindingStore
    from nfq_mip6.store.etcd_gateway import EtcdSettings
    from nfq_mip6.store.etcd_replica import EtcdReplica

__all__ = ["ACTIVE", "STANDBY", "HomeAgentCluster", "etcd_settings"]

log = logging.getLogger("nfq_mip6.ha.cluster")

ACTIVE: Final = "active"
STANDBY: Final = "standby"
MAX_REDECISIONS: Final = 3
"""A BU decided again this many times on fresh state and still conflicting is dropped
(another writer keeps changing it; the MN retransmits)."""
EGRESS_BATCH: Final = 1000
EGRESS_DELAY: Final = 1.0
"""A standby installs new home addresses' direct delivery rules once EGRESS_BATCH wait or the
oldest has waited this many seconds."""
PROXY_CHUNK: Final = 250
"""Proxy ND entries a takeover adds on the agent loop's first turn after it (then as many as
fit :data:`PROXY_TURN_S`, between :data:`PROXY_CHUNK_MIN` and this): 10 000 entries take
0.5-3 s in the kernel (slower per entry as its table fills), during which BUs would wait."""
PROXY_CHUNK_MIN: Final = 16
PROXY_TURN_S: Final = 0.02


def _require_etcd_client() -> None:
    """The ``[cluster]`` extra's client, or the configuration error naming the install."""
    try:
        import etcd3gw  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"[cluster] needs the etcd client: pip install 'nfq-mip6[cluster]' ({exc})"
        ) from None


def _etcd_store(settings: EtcdSettings) -> EtcdBindingStore:
    _require_etcd_client()
    from nfq_mip6.store.etcd import EtcdBindingStore

    return EtcdBindingStore(settings)


def etcd_settings(config: ClusterConfig) -> EtcdSettings:
    _require_etcd_client()
    from nfq_mip6.store.etcd_gateway import EtcdSettings

    return EtcdSettings(
        endpoints=config.endpoints,
        name=config.name,
        commit_timeout=config.commit_timeout_ms / 1000.0,
        ca_file=str(config.ca_file) if config.ca_file else None,
        cert_file=str(config.cert_file) if config.cert_file else None,
        key_file=str(config.key_file) if config.key_file else None,
        max_in_flight=config.max_in_flight,
        connect_timeout=config.connect_timeout_ms / 1000.0,
    )


@dataclass(slots=True)
class _Commit:
    """The token of a submitted commit: what to do once it is durable."""

    event: HomeAgentInput | None
    actions: list[Action]
    change: BindingCommit
    submitted: float
    attempt: int


def _bu_home_address(event: HomeAgentInput) -> IPv6Address | None:
    if isinstance(event, MobilityMessageReceived) and isinstance(event.message, BindingUpdate):
        return event.home_address if event.home_address is not None else event.src
    return None


def _bu_mesg_id(event: HomeAgentInput) -> tuple[int, int] | None:
    """(SPI, Mesg-ID) of an RFC 4285 authenticated BU."""
    if not isinstance(event, MobilityMessageReceived):
        return None
    message = event.message
    if not isinstance(message, BindingUpdate):
        return None
    spi = next((o.spi for o in message.options if isinstance(o, AuthenticationOption)), None)
    mesg_id = next(
        (o.identifier for o in message.options if isinstance(o, MessageIdentifier)), None
    )
    return None if spi is None or mesg_id is None else (spi, mesg_id)


class HomeAgentCluster:
    """The cluster side of one HA runtime (created by it at start, when ``[cluster]`` is set)."""

    def __init__(
        self,
        runtime: HomeAgentRuntime,
        config: ClusterConfig,
        *,
        store: EtcdBindingStore | None = None,
        replica_factory: Callable[[EtcdSettings], EtcdReplica] | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.settings = etcd_settings(config)
        self.store = store if store is not None else _etcd_store(self.settings)
        self._replica_factory = replica_factory
        self.role: str = config.role
        self.replica: EtcdReplica | None = None
        self.replica_revision = 0
        self._committed: dict[IPv6Address, StoredBinding] = {}
        self._committed_ts: dict[int, int] = {}
        self._inflight: Counter[IPv6Address] = Counter()
        self._inflight_spis: dict[int, int] = {}
        self._held: dict[IPv6Address, deque[HomeAgentInput]] = {}
        self._dad_started: dict[IPv6Address, tuple[HomeAgentInput, int]] = {}
        self._wall = time.time
        self._store_failures = LogThrottle(log, "etcd commit failed")
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "commits",
                "conflicts",
                "timeouts",
                "store_errors",
                "redecided",
                "redecisions_exhausted",
                "held",
                "superseded",
                "replica_changes",
                "replica_resyncs",
                "takeovers",
                "standby_dropped",
                "proxy_errors",
            ),
            0,
        )
        self.last_takeover_ms: float | None = None
        self.last_takeover_steps_ms: dict[str, float] = {}
        self._proxy_pending: dict[IPv6Address, None] = {}
        """Active after a takeover: proxy ND entries still to add, in order, a chunk per loop
        turn (:meth:`add_pending_proxies`); the loop's own proxy add or remove of an address
        takes it out first (:meth:`proxy_settled`), so no chunk re-adds a removed one."""
        self._over_capacity = False
        self._proxy_started = 0.0
        self._proxy_chunk = PROXY_CHUNK
        self._takeover_started = 0.0
        self._standby_egress: dict[IPv6Address, IPv6Address] = {}
        self._egress_since: float | None = None
        self._standby_tunnels: dict[IPv6Address, IPv6Address] = {}
        """Standby: the HoA -> CoA tunnel routes it installed (a refresh with the same CoA
        costs no netlink request)."""
        self.applied_log: deque[tuple[int, float, float]] = deque(maxlen=CLUSTER_TIMELINE_LENGTH)
        """Standby: ``(revision, received, applied)`` (``time.monotonic()``) of the latest
        revisions: when the replica got the watch event, when its change was in the core's
        cache and the kernel. Read with ``nfq-mip6``'s ``cluster timeline`` request."""

    # --------------------------------------------------------------------------------------
    # Start and stop
    # --------------------------------------------------------------------------------------
    def restore(self, now: float) -> None:
        """Fill the core from the store before the agent serves: the active reads a snapshot,
        a standby bootstraps its replica (and then follows it)."""
        from nfq_mip6.errors import StoreError

        rt = self.runtime
        ctx = rt.ctx
        assert ctx is not None
        ctx.add_reader(self.store.completions().fileno(), self.on_commits)
        if self.role == ACTIVE:
            try:
                snapshot = self.store.snapshot()
            except StoreError as exc:
                # Safe: every commit compares revisions, so a decision on this empty state
                # conflicts and is taken again on what etcd holds.
                log.error(
                    "cluster %s: no snapshot at start (%s); starting empty", self.settings.name, exc
                )
                return
            self._load(
                {row.home_address: row for row in snapshot.bindings},
                dict(snapshot.mesg_ids),
                now,
                kernel=False,
            )
            log.info(
                "cluster %s: active, %d binding(s) from the store at revision %d",
                self.settings.name, len(snapshot.bindings), snapshot.revision,
            )  # fmt: skip
            return
        self._start_replica(now, kernel=False)

    def _start_replica(self, now: float, *, kernel: bool) -> None:
        from nfq_mip6.errors import StoreError

        ctx = self.runtime.ctx
        assert ctx is not None
        if self._replica_factory is not None:
            replica = self._replica_factory(self.settings)
        else:
            from nfq_mip6.store.etcd_replica import EtcdReplica

            replica = EtcdReplica(self.settings)
        self.replica = replica
        ctx.add_reader(replica.fileno(), self.on_replica)
        if kernel:
            replica.start_in_background()
            return
        try:
            replica.bootstrap()
        except StoreError as exc:
            log.error(
                "cluster %s: replica bootstrap failed (%s); retrying", self.settings.name, exc
            )
            replica.start_in_background()
            return
        self._apply_replica(replica, now, kernel=False)
        replica.start_following()
        # The store's revision and reachability now, not after the store thread's first idle
        # probe: `cluster status` (keepalived's track_script) is right from the start.
        try:
            self.store.current_revision()
        except StoreError as exc:
            log.warning("cluster %s: store revision: %s", self.settings.name, exc)
        log.info(
            "cluster %s: standby, %d binding(s) at revision %d",
            self.settings.name, len(self.runtime.core.cache) if self.runtime.core else 0,
            replica.revision,
        )  # fmt: skip

    def _stop_replica(self) -> None:
        replica = self.replica
        if replica is None:
            return
        replica.stop()
        if self.runtime.ctx is not None:
            self.runtime.ctx.remove_reader(replica.fileno())
        replica.close()
        self.replica = None

    def stop(self) -> None:
        self._stop_replica()
        if self.runtime.ctx is not None:
            self.runtime.ctx.remove_reader(self.store.completions().fileno())
        self.store.close()

    # --------------------------------------------------------------------------------------
    # Active: decide, commit, then act
    # --------------------------------------------------------------------------------------
    def feed(self, event: HomeAgentInput, now: float, attempt: int = 0) -> None:
        rt = self.runtime
        assert rt.core is not None
        hoa = _bu_home_address(event)
        if hoa is not None and self._inflight[hoa]:
            self._held.setdefault(hoa, deque()).append(event)
            self.counters["held"] += 1
            return
        if isinstance(event, ProxyDadCompleted):
            # a first registration is decided when its proxy DAD ends: the BU that started
            # it is what a conflict decides again
            started = self._dad_started.pop(event.home_address, None)
            actions = rt.core.handle(event, now)
            bu, attempt = started if started is not None else (None, attempt)
            self.commit_then_perform(bu if bu is not None else event, actions, now, attempt)
            return
        actions = rt.core.handle(event, now)
        if hoa is not None and any(isinstance(a, StartProxyDad) for a in actions):
            self._dad_started[hoa] = (event, attempt)
        self.commit_then_perform(event, actions, now, attempt)

    def commit_then_perform(
        self, event: HomeAgentInput | None, actions: list[Action], now: float, attempt: int = 0
    ) -> None:
        """Submit the binding changes of ``actions``; carry them out now when there are none."""
        rt = self.runtime
        assert rt.core is not None
        guard = rt.guard
        unsaved = guard.unsaved_timestamps() if guard is not None else {}
        mesg_ids = {spi: ts for spi, ts in unsaved.items() if self._inflight_spis.get(spi) != ts}
        change = binding_commit(rt.core.cache, actions, now, self._wall(), mesg_ids)
        if not change or event is None:
            # No binding change, or the timer's (expiry, RFC 6275 §10.3.2): a binding past its
            # lifetime is torn down at once, whether or not its deletion can be committed.
            rt._perform(actions, now)
            if not change:
                return
            actions = []
        for hoa in change.home_addresses():
            self._inflight[hoa] += 1
        self._inflight_spis.update(change.mesg_ids)
        self.store.submit(change, _Commit(event, actions, change, time.perf_counter(), attempt))

    def _release(self, change: BindingCommit) -> None:
        for hoa in change.home_addresses():
            self._inflight[hoa] -= 1
            if self._inflight[hoa] <= 0:
                del self._inflight[hoa]
        for spi, ts in change.mesg_ids.items():
            if self._inflight_spis.get(spi) == ts:
                del self._inflight_spis[spi]

    def on_commits(self) -> None:
        """The store thread finished commits (its completion pipe is readable)."""
        rt = self.runtime
        if rt.ctx is None or rt.core is None:
            return
        metrics = rt.ctx.metrics
        for token, error in self.store.completions().drain():
            if not isinstance(token, _Commit):
                continue
            now = rt.ctx.clock()
            change = token.change
            self._release(change)
            latency = time.perf_counter() - token.submitted
            if error is None:
                self.counters["commits"] += 1
                if metrics is not None:
                    metrics.cluster_commit(latency, "committed")
                if rt.guard is not None and change.mesg_ids:
                    rt.guard.timestamps_saved(change.mesg_ids)
                for row in change.upserts:
                    self._committed[row.home_address] = row
                for hoa in change.deletions:
                    self._committed.pop(hoa, None)
                self._committed_ts.update(change.mesg_ids)
                rt._perform(token.actions, now)
            elif isinstance(error, CommitConflict):
                self.counters["conflicts"] += 1
                if metrics is not None:
                    metrics.cluster_commit(latency, "conflict")
                fresh = error.fresh
                fresh_bindings = {row.home_address: row for row in fresh.bindings} if fresh else {}
                fresh_ts = fresh.mesg_ids if fresh else {}
                self._load(
                    {hoa: fresh_bindings.get(hoa) for hoa in change.home_addresses()},
                    {spi: fresh_ts.get(spi) for spi in change.mesg_ids},
                    now,
                )
                self._forget_unstarted_dad(token, now)
                if token.event is not None and _bu_home_address(token.event) is not None:
                    if token.attempt + 1 < MAX_REDECISIONS and self.role == ACTIVE:
                        self.counters["redecided"] += 1
                        self._accept_own_mesg_id_again(token.event)
                        self.feed(token.event, now, token.attempt + 1)
                    else:
                        self.counters["redecisions_exhausted"] += 1
            else:
                kind = "timeout" if isinstance(error, CommitTimeout) else "error"
                self.counters["timeouts" if kind == "timeout" else "store_errors"] += 1
                if metrics is not None:
                    metrics.cluster_commit(latency, kind)
                self._store_failures.log(
                    "commit of %d binding change(s) failed, no BA sent: %s",
                    len(change.upserts) + len(change.deletions), error,
                )  # fmt: skip
                if token.event is None:
                    # An expiry, carried out already: a binding past its lifetime is gone
                    # whatever the store holds (its record says it expired).
                    for hoa in change.deletions:
                        self._committed.pop(hoa, None)
                else:
                    # Undo the decision: the last committed state goes back into the core.
                    self._load(
                        {hoa: self._committed.get(hoa) for hoa in change.home_addresses()},
                        {spi: self._committed_ts.get(spi) for spi in change.mesg_ids},
                        now,
                    )
                    self._forget_unstarted_dad(token, now)
            self._release_held(change.home_addresses(), now)

    def _forget_unstarted_dad(self, token: _Commit, now: float) -> None:
        """A BU that starts a proxy DAD commits only its Mesg-ID first, and the DAD starts
        once that is committed. When that commit fails, the core's pending registration (it
        answers the MN's retransmissions with "DAD in progress") goes, with the DAD that never
        ran: the next BU is decided again, from the last committed state."""
        if token.event is None or not any(isinstance(a, StartProxyDad) for a in token.actions):
            return
        hoa = _bu_home_address(token.event)
        if hoa is None or hoa in token.change.home_addresses():
            return
        self._dad_started.pop(hoa, None)
        self._load({hoa: self._committed.get(hoa)}, {}, now)

    def _accept_own_mesg_id_again(self, event: HomeAgentInput) -> None:
        """A BU decided again after a conflict is not a replay of itself (RFC 4285 §6): when
        the verifier's last Mesg-ID for its SPI is this BU's own (committed before, with the
        proxy DAD it started), it is set just below it for this decision."""
        guard = self.runtime.guard
        mesg = _bu_mesg_id(event)
        if guard is None or guard.verifier is None or mesg is None:
            return
        spi, mesg_id = mesg
        if guard.verifier.last_timestamps().get(spi) == mesg_id:
            guard.verifier.reload_timestamps({spi: (mesg_id - 1) % (1 << 64)})

    def _release_held(self, home_addresses: set[IPv6Address], now: float) -> None:
        """Decide the BUs that waited for a commit on their home address. Of several, only
        the last one that arrived: the MN takes only a BA for its most recent BU (RFC 6275
        §11.7.3), so deciding and committing the older ones one after the other would only
        make an overloaded store fall further behind (counted ``superseded``)."""
        for hoa in home_addresses:
            queue = self._held.get(hoa)
            if queue is not None and len(queue) > 1 and not self._inflight[hoa]:
                self.counters["superseded"] += len(queue) - 1
                latest = queue[-1]
                queue.clear()
                queue.append(latest)
            while queue and not self._inflight[hoa]:
                event = queue.popleft()
                if self.role == ACTIVE:
                    self.feed(event, now)
                else:
                    self.counters["standby_dropped"] += 1
            if queue is not None and not queue:
                del self._held[hoa]

    # --------------------------------------------------------------------------------------
    # Loading the store's state into the core, the verifier and the kernel
    # --------------------------------------------------------------------------------------
    def _load(
        self,
        bindings: dict[IPv6Address, StoredBinding | None],
        mesg_ids: dict[int, int | None] | dict[int, int],
        now: float,
        *,
        kernel: bool = True,
    ) -> None:
        rt = self.runtime
        assert rt.core is not None
        wall = self._wall()
        actions: list[Action] = []
        for hoa, row in bindings.items():
            if row is not None and row.expires_wall <= wall:
                row = None  # expired: no binding, whatever the store still holds
                entry = rt.core.cache.get(hoa)
                if self.role == ACTIVE and entry is not None:
                    # e.g. a refresh undone after the lifetime it replaced ended
                    log.info("binding for %s expired (its stored lifetime ended)", hoa)
            stored = (
                None
                if row is None
                else StoredHomeBinding(
                    row.care_of_address,
                    row.sequence,
                    row.flags,
                    row.lifetime,
                    now + (row.expires_wall - wall),
                    row.link_local,
                    row.prefixes,
                )
            )
            actions += rt.core.handle(HomeBindingLoaded(hoa, stored), now)
            if row is None:
                self._committed.pop(hoa, None)
            else:
                self._committed[hoa] = row
        self._check_capacity()
        if mesg_ids:
            if rt.guard is not None:
                rt.guard.reload_timestamps(mesg_ids)
            for spi, ts in mesg_ids.items():
                if ts is None:
                    self._committed_ts.pop(spi, None)
                else:
                    self._committed_ts[spi] = ts
        if kernel and actions:
            self._apply_kernel(actions, now)

    def _check_capacity(self) -> None:
        """Bindings loaded from the store are all kept, beyond ``[ha] max_tunnel_nr`` too: each
        was accepted by a member of this virtual HA, and dropping it would cut its MN off
        at a takeover. The limit refuses new registrations (130) against all of them, as on
        the member that accepted them. More than the limit means the members' limits
        differ: logged once per crossing, shown as ``over_capacity`` in the status."""
        core = self.runtime.core
        assert core is not None
        limit = core.config.max_bindings
        over = limit is not None and len(core.cache) > limit
        if over and not self._over_capacity:
            log.warning(
                "cluster %s: %d bindings from the store, more than [ha] max_tunnel_nr %s; "
                "all are kept, new registrations get 130 (give every member the same limit)",
                self.settings.name, len(core.cache), limit,
            )  # fmt: skip
        self._over_capacity = over

    def _apply_kernel(self, actions: list[Action], now: float) -> None:
        """The kernel side of loaded state. Active: as any action (proxy ND included). A
        standby: tunnel routes in one netlink batch each way, only where the CoA changed (no
        proxy ND); the direct delivery rules of new home addresses are collected for
        :meth:`_flush_standby_egress`, so a takeover finds them."""
        rt = self.runtime
        if self.role == ACTIVE:
            rt._perform(actions, now)
            return
        dataplane = rt.dataplane
        assert dataplane is not None
        installed = self._standby_tunnels
        installs: dict[IPv6Address, IPv6Address] = {}
        removals: list[IPv6Address] = []
        one_by_one: list[Action] = []
        for action in actions:
            if isinstance(action, InstallHomeTunnel):
                if action.prefixes or action.withdrawn:
                    installed.pop(action.home_address, None)
                    one_by_one.append(action)
                elif installed.get(action.home_address) != action.care_of_address:
                    installs[action.home_address] = action.care_of_address
            elif isinstance(action, RemoveHomeTunnel):
                installed.pop(action.home_address, None)
                if action.prefixes:
                    one_by_one.append(action)
                else:
                    removals.append(action.home_address)
            elif isinstance(action, RemoveRouteOptimization):
                self._standby_egress.pop(action.home_address, None)
                one_by_one.append(action)
            elif isinstance(action, StartProxyNeighbor | StopProxyNeighbor):
                continue  # a standby proxies nothing
            elif isinstance(action, InstallRouteOptimization):
                # direct delivery (RFC 6275 §9.3.2 for the HA's own packets): ready for a
                # takeover, installed once the change is in the tunnel table
                self._standby_egress[action.home_address] = action.care_of_address
        try:
            if removals:
                dataplane.remove_tunnels(removals)
            if installs:
                failed = dataplane.install_tunnels(installs)
                if failed:
                    rt.counters["dataplane_errors"] += failed
                else:
                    installed.update(installs)
        except DataplaneError as exc:
            rt.counters["dataplane_errors"] += 1
            log.error("standby tunnel routes: %s", exc)
        for action in one_by_one:
            try:
                rt._perform_one(action, now)
            except DataplaneError as exc:
                rt.counters["dataplane_errors"] += 1
                log.error("%s failed: %s", type(action).__name__, exc)

    # --------------------------------------------------------------------------------------
    # Standby: follow the replica
    # --------------------------------------------------------------------------------------
    def on_replica(self) -> None:
        replica = self.replica
        if replica is None or self.runtime.ctx is None:
            return
        self._apply_replica(replica, self.runtime.ctx.clock(), kernel=True)

    def _apply_replica(self, replica: EtcdReplica, now: float, *, kernel: bool) -> None:
        rt = self.runtime
        assert rt.core is not None
        changes = replica.take_changes()
        if not changes:
            return
        bindings: dict[IPv6Address, StoredBinding | None] = dict(changes.bindings)
        mesg_ids: dict[int, int | None] = dict(changes.mesg_ids)
        if changes.full:
            self.counters["replica_resyncs"] += 1
            for entry in list(rt.core.cache):
                if entry.home_address not in bindings:
                    bindings[entry.home_address] = None
            for spi in self._committed_ts:
                mesg_ids.setdefault(spi, None)
        else:
            metrics = rt.ctx.metrics if rt.ctx is not None else None
            if metrics is not None:
                wall = self._wall()
                for row in bindings.values():
                    if row is not None:  # decided at expiry - lifetime (the writer's clock)
                        metrics.cluster_replica_lag(wall - (row.expires_wall - row.lifetime))
        self.counters["replica_changes"] += len(bindings) + len(mesg_ids)
        self.replica_revision = changes.revision
        self._load(bindings, mesg_ids, now, kernel=kernel)
        if changes.received:
            applied = time.monotonic()
            self.applied_log.extend((rev, got, applied) for rev, got in changes.received)
        self._flush_standby_egress()

    def _flush_standby_egress(self, *, force: bool = False) -> None:
        """The direct delivery rules of new home addresses, at most one ``ip6tables-restore``
        a second (a process each time would hold back the next change sets); what is left
        when the standby takes over is installed with everything else then."""
        egress = self._standby_egress
        if not egress:
            return
        now = time.monotonic()
        if self._egress_since is None:
            self._egress_since = now
        if not force and len(egress) < EGRESS_BATCH and now - self._egress_since < EGRESS_DELAY:
            return
        self._standby_egress, self._egress_since = {}, None
        if self.runtime.egress is not None:
            self.runtime.egress.install_many(egress.items())

    # --------------------------------------------------------------------------------------
    # Role switch (nfq-mip6 cluster active|standby)
    # --------------------------------------------------------------------------------------
    def set_role(self, role: str, now: float) -> dict[str, Any]:
        if role not in (ACTIVE, STANDBY):
            return {"ok": False, "error": f"cluster role {role!r}: active or standby"}
        if role == self.role:
            return {"ok": True, "changed": False, **self.status()}
        started = time.perf_counter()
        if role == ACTIVE:
            caught_up = self._take_over(now)
            self.counters["takeovers"] += 1
            # Until the last proxy chunk is in: the time to serving (then the whole takeover)
            self.last_takeover_ms = round((time.perf_counter() - started) * 1000, 3)
            self.last_takeover_steps_ms["serving"] = self.last_takeover_ms
            log.info(
                "cluster %s: active (caught up: %s), serving after %.1f ms, %d binding(s), "
                "%d proxy entries to add",
                self.settings.name, caught_up, self.last_takeover_ms,
                len(self.runtime.core.cache) if self.runtime.core else 0,
                len(self._proxy_pending),
            )  # fmt: skip
            return {"ok": True, "changed": True, "caught_up": caught_up, **self.status()}
        self._step_down(now)
        log.info("cluster %s: standby", self.settings.name)
        return {"ok": True, "changed": True, **self.status()}

    def _proxied(self) -> list[IPv6Address]:
        rt = self.runtime
        assert rt.core is not None and rt.link is not None
        addresses = [home_agents_anycast(rt.link.prefix)]
        for entry in rt.core.cache:
            if entry.state is BindingState.REGISTERED:
                addresses.append(entry.home_address)
                if entry.link_local is not None:
                    addresses.append(entry.link_local)
        return addresses

    def _take_over(self, now: float) -> bool:
        """Catch up to the store's revision, then proxy ND (batched), direct delivery and
        the mobile routers' source checks; from here on the core's timers (expiry), DHAAD
        and BUs are served."""
        from nfq_mip6.errors import StoreError

        rt = self.runtime
        assert rt.core is not None and rt.dataplane is not None
        caught_up = False
        replica = self.replica
        steps = [time.perf_counter()]
        if replica is not None:
            try:
                revision = self.store.current_revision()
                caught_up = replica.wait_for(revision, self.settings.commit_timeout)
            except StoreError as exc:
                log.error(
                    "cluster %s: cannot read the store's revision: %s", self.settings.name, exc
                )
            steps.append(time.perf_counter())
            replica.stop()
            self._apply_replica(replica, now, kernel=True)
            self.store.seed_revisions(replica.key_revisions())
            self._stop_replica()
        else:
            steps.append(steps[0])
        self.role = ACTIVE
        self._standby_tunnels.clear()
        self._standby_egress, self._egress_since = {}, None  # all of them come just below
        steps.append(time.perf_counter())
        registered = [e for e in rt.core.cache if e.state is BindingState.REGISTERED]
        if rt.egress is not None:
            rt.egress.install_many((e.home_address, e.care_of_address) for e in registered)
        if rt.sources is not None:
            for entry in registered:
                if entry.prefixes:
                    rt.sources.install(entry.home_address, entry.care_of_address, entry.prefixes)
        steps.append(time.perf_counter())
        parts = ("catch_up", "replica_stop", "direct_delivery_rules")
        self.last_takeover_steps_ms = {
            part: round((steps[i + 1] - steps[i]) * 1000, 3) for i, part in enumerate(parts)
        }
        # The proxy entries: a chunk per loop turn from here on, BUs served in between (the
        # router's entries for the home addresses already point at the virtual MAC, so
        # traffic flows meanwhile). A home address registered meanwhile gets its entry at once.
        self._proxy_pending = dict.fromkeys(self._proxied())
        self._proxy_chunk = PROXY_CHUNK
        self._takeover_started = steps[0]
        self._proxy_started = time.perf_counter()
        return caught_up

    @property
    def proxy_pending(self) -> int:
        return len(self._proxy_pending)

    def proxy_settled(self, address: IPv6Address) -> None:
        """The loop adds or removes ``address``'s proxy entry itself (a registration, a
        de-registration, an expiry): the takeover's pending add of it is dropped, so the
        loop's operation is the last one."""
        self._proxy_pending.pop(address, None)

    def add_pending_proxies(self) -> None:
        """One chunk of the takeover's proxy entries (the agent loop calls it while
        :attr:`proxy_pending`); the last one completes ``last_takeover_steps_ms``."""
        pending = self._proxy_pending
        if not pending:
            return
        chunk = list(itertools.islice(pending, self._proxy_chunk))
        for address in chunk:
            del pending[address]
        rt = self.runtime
        assert rt.dataplane is not None
        began = time.perf_counter()
        try:
            self.counters["proxy_errors"] += rt.dataplane.add_proxies(chunk)
        except DataplaneError as exc:
            self.counters["proxy_errors"] += len(chunk)
            log.error("cluster %s: takeover proxy entries: %s", self.settings.name, exc)
        done = time.perf_counter()
        # the next chunk: what fits one turn at this chunk's cost per entry
        per_entry = (done - began) / len(chunk)
        fits = int(PROXY_TURN_S / per_entry) if per_entry > 0 else PROXY_CHUNK
        self._proxy_chunk = max(PROXY_CHUNK_MIN, min(PROXY_CHUNK, fits))
        if not pending:
            self.last_takeover_steps_ms["proxy_nd"] = round((done - self._proxy_started) * 1000, 3)
            self.last_takeover_ms = round((done - self._takeover_started) * 1000, 3)
            log.info(
                "cluster %s: takeover complete in %.1f ms (proxy ND entries %.1f ms)",
                self.settings.name, self.last_takeover_ms,
                self.last_takeover_steps_ms["proxy_nd"],
            )  # fmt: skip

    def _step_down(self, now: float) -> None:
        rt = self.runtime
        assert rt.dataplane is not None
        self.role = STANDBY
        pending, self._proxy_pending = self._proxy_pending, {}
        failed = rt.dataplane.remove_proxies(a for a in self._proxied() if a not in pending)
        self.counters["proxy_errors"] += failed
        self._start_replica(now, kernel=True)

    # --------------------------------------------------------------------------------------
    # What it shows
    # --------------------------------------------------------------------------------------
    def reachable(self) -> bool:
        """The store answered lately (a commit or the store thread's idle probe)."""
        store = self.store
        horizon = 3 * self.settings.probe_interval + self.settings.commit_timeout
        return bool(store.reachable) and time.monotonic() - store.checked_at <= horizon

    def timeline(self) -> dict[str, Any]:
        """When each recent revision was committed here (active: etcd's answer reached the
        store thread) and applied here (standby: in the cache and the kernel), on
        ``time.monotonic()``, which every process of one host shares."""
        committed = getattr(self.store, "commit_log", ())
        return {
            "committed": [list(entry) for entry in list(committed)],
            "applied": [list(entry) for entry in list(self.applied_log)],
        }

    def status(self) -> dict[str, Any]:
        store = self.store
        revision = store.revision
        if self.role == STANDBY and self.replica is not None:
            applied = self.replica.revision
            self.replica_revision = applied
        else:
            applied = revision
        return {
            "role": self.role,
            "name": self.settings.name,
            "endpoints": list(self.settings.endpoints),
            "store_reachable": self.reachable(),
            "revision": revision,
            "applied_revision": applied,
            "lag": max(0, revision - applied),
            "in_flight": sum(self._inflight.values()),
            "held": sum(len(q) for q in self._held.values()),
            "bindings": len(self.runtime.core.cache) if self.runtime.core else 0,
            "last_takeover_ms": self.last_takeover_ms,
            "last_takeover_steps_ms": self.last_takeover_steps_ms,
            "proxy_pending": len(self._proxy_pending),
            "max_bindings": self.runtime.core.config.max_bindings if self.runtime.core else None,
            "over_capacity": self._over_capacity,
            "counters": {**self.counters, **{f"store_{k}": v for k, v in store.counters.items()}},
        }
