"""What the Home Agent runtime calls: RFC 4285 verifier plus rate limits, in one object.

The runtime keeps its packet handling; it asks this guard four questions and counts the
answers (``counters()`` goes into ``nfq-mip6 stats`` under ``home_agent``):

* ``allow_binding_update(src, now)`` — per-source BU token bucket;
* ``allow_binding_error(now)`` — RFC 6275 §9.3.3 Binding Error rate limit;
* ``allow_icmp_error(now)`` — RFC 4443 §2.4(f) ICMPv6 error rate limit;
* ``outgoing(message, dst, routing_address)`` — authenticates BAs (RFC 4285 §5.1).

Drops are logged at most once per second per kind (floods must not flood the log).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from ipaddress import IPv6Address
from typing import Any, Protocol

from nfq_mip6.errors import StoreError
from nfq_mip6.security.home_agent_auth import HomeAgentVerifier, home_agent_verifier
from nfq_mip6.security.keys import MobileNodeCredentials
from nfq_mip6.security.ratelimit import RateLimiter, RateLimits, TokenBucket
from nfq_mip6.wire.mh import BindingAck, HomeAgentSwitch, MobilityMessage

log = logging.getLogger("nfq_mip6.security")


class AuthenticationSettings(Protocol):
    """The ``[ha]`` settings the guard reads (the configuration's ``HomeAgentConfig`` has
    them; security does not import the configuration, which sits above it)."""

    @property
    def mobile_nodes(self) -> tuple[MobileNodeCredentials, ...]: ...

    @property
    def require_authentication(self) -> bool | None: ...

    @property
    def auth_timestamp_window(self) -> float: ...


class ValueStore(Protocol):
    """Where the guard keeps its state across restarts (the agent's ``StateStore``); its
    failures are :class:`nfq_mip6.errors.StoreError`."""

    def get_value(self, key: str, default: Any = None) -> Any: ...

    def set_value(self, key: str, value: Any) -> None: ...


LOG_INTERVAL = 1.0
"""Seconds between two log lines about the same kind of drop."""


class HomeAgentGuard:
    """RFC 4285 verifier (or ``None``: unauthenticated) and the HA's rate limits."""

    def __init__(
        self, verifier: HomeAgentVerifier | None, limits: RateLimits | None = None
    ) -> None:
        limits = limits if limits is not None else RateLimits()
        self.verifier = verifier
        self.limits = limits
        self._bu: RateLimiter[IPv6Address] = RateLimiter(
            limits.bu_per_source_rate, limits.bu_per_source_burst
        )
        self._binding_errors = TokenBucket(limits.binding_error_rate, limits.binding_error_burst)
        self._icmp_errors = TokenBucket(limits.icmp_error_rate, limits.icmp_error_burst)
        self._counts = {
            "rate_limited_binding_updates": 0,
            "rate_limited_binding_errors": 0,
            "rate_limited_icmp_errors": 0,
            "binding_acks_authenticated": 0,
            "home_agent_switches_authenticated": 0,
        }
        self._last_log: dict[str, float] = {}
        self._saved_timestamps: dict[int, int] = {}

    @classmethod
    def from_config(
        cls,
        ha: AuthenticationSettings | None,
        *,
        legacy: bool,
        environ: Mapping[str, str] = os.environ,
        limits: RateLimits | None = None,
    ) -> HomeAgentGuard:
        """Read the keys named by ``[[ha.mobile_nodes]]`` (raises ``KeyMaterialError``)."""
        limits = limits if limits is not None else RateLimits()
        # Project issue 9: required by default for TOML (load_config refuses a TOML HA
        # without keys); the legacy file and an explicit "false" run with a loud warning.
        if ha is None or (not ha.mobile_nodes and not ha.require_authentication):
            log.warning(
                "SECURITY: %s: home Binding Updates are NOT authenticated (RFC 4285 MN-HA "
                "keys: [[ha.mobile_nodes]] in a TOML configuration, see docs/security.md); "
                "anyone on the path can redirect a home address",
                "legacy network-mip6.conf"
                if legacy
                else "require_authentication = false and no [[ha.mobile_nodes]]",
            )
        elif ha.require_authentication is False:
            log.warning(
                "SECURITY: require_authentication = false: home Binding Updates for home "
                "addresses no [[ha.mobile_nodes]] entry covers are accepted NOT authenticated "
                "(RFC 4285, docs/security.md)"
            )
        verifier = home_agent_verifier(
            ha.mobile_nodes if ha is not None else (),
            required=ha.require_authentication if ha is not None else None,
            window=ha.auth_timestamp_window if ha is not None else 7.0,
            environ=environ,
            warn=False,  # warned above, with the reason
            auth_failure_limit=TokenBucket(
                limits.auth_failure_ba_rate, limits.auth_failure_ba_burst
            ),
        )
        if verifier.associations:
            log.info(
                "RFC 4285 MN-HA authentication: %d security association(s), required=%s",
                len(verifier.associations),
                verifier.required,
            )
        return cls(verifier, limits)

    def __repr__(self) -> str:
        return f"HomeAgentGuard({self.verifier!r}, {self.limits})"

    def _drop(self, kind: str, now: float, detail: str) -> bool:
        self._counts[kind] += 1
        last = self._last_log.get(kind)
        if last is None or now - last >= LOG_INTERVAL or now < last:
            self._last_log[kind] = now
            log.info("%s (%d so far): %s", kind.replace("_", " "), self._counts[kind], detail)
        return False

    def allow_binding_update(self, src: IPv6Address, now: float) -> bool:
        if self._bu.allow(src, now):
            return True
        return self._drop("rate_limited_binding_updates", now, f"BU from {src} dropped")

    def allow_binding_error(self, now: float) -> bool:
        if self._binding_errors.allow(now):
            return True
        return self._drop("rate_limited_binding_errors", now, "Binding Error not sent (§9.3.3)")

    def allow_icmp_error(self, now: float) -> bool:
        if self._icmp_errors.allow(now):
            return True
        return self._drop("rate_limited_icmp_errors", now, "ICMPv6 error not sent (RFC 4443)")

    def outgoing(
        self, message: MobilityMessage, dst: IPv6Address, routing_address: IPv6Address | None
    ) -> MobilityMessage:
        """A BA authenticated for the MN it goes to (HoA = the RH2 address, else ``dst`` for
        an MN at home; the CoA of the Mobility Data is the one its BU registered, not
        necessarily ``dst``), a Home Agent Switch likewise (RFC 5142 §5.1); anything else
        unchanged."""
        if self.verifier is not None and isinstance(message, HomeAgentSwitch):
            home_address = routing_address if routing_address is not None else dst
            switch = self.verifier.protect_home_agent_switch(message, home_address)
            if switch is not message:
                self._counts["home_agent_switches_authenticated"] += 1
            return switch
        if self.verifier is None or not isinstance(message, BindingAck):
            return message
        protected = self.verifier.protect_binding_ack(
            message, dst, routing_address if routing_address is not None else dst
        )
        if protected is not message:
            self._counts["binding_acks_authenticated"] += 1
        return protected

    def counters(self) -> dict[str, int]:
        out = dict(self._counts)
        if self.verifier is not None:
            for reason, count in self.verifier.counters.items():
                out[f"auth_{reason.replace('-', '_')}"] = count
        return out

    # RFC 4285 §6 across restarts: the last accepted timestamp per SPI is persisted so that
    # a BU captured before a restart cannot be replayed after it.
    STATE_KEY = "auth.timestamps"

    def restore_state(self, store: ValueStore) -> None:
        if self.verifier is None:
            return
        try:
            saved = store.get_value(self.STATE_KEY, {})
            values = {int(spi): int(ts) for spi, ts in dict(saved).items()}
        except (StoreError, TypeError, ValueError) as exc:
            log.warning("ignoring stored RFC 4285 timestamps: %s", exc)
            return
        self.verifier.restore_timestamps(values)
        self._saved_timestamps = self.verifier.last_timestamps()

    def unsaved_timestamps(self) -> dict[int, int]:
        """SPI -> last accepted timestamp for the SPIs advanced since the last save (committed
        with the bindings, :class:`nfq_mip6.store.binding_store.BindingCommit`)."""
        if self.verifier is None:
            return {}
        return {
            spi: ts
            for spi, ts in self.verifier.last_timestamps().items()
            if self._saved_timestamps.get(spi) != ts
        }

    def timestamps_saved(self, values: Mapping[int, int]) -> None:
        """``values`` (from :meth:`unsaved_timestamps`) were committed."""
        self._saved_timestamps = {**self._saved_timestamps, **values}

    def reload_timestamps(self, values: Mapping[int, int | None]) -> None:
        """HA cluster: the store's timestamps (docs/cluster.md) replace the verifier's for
        these SPIs; they are what the store holds, so they count as saved."""
        if self.verifier is None:
            return
        self.verifier.reload_timestamps(values)
        saved = dict(self._saved_timestamps)
        for spi, timestamp in values.items():
            if timestamp is None:
                saved.pop(spi, None)
            else:
                saved[spi] = int(timestamp)
        self._saved_timestamps = saved

    def save_state(self, store: ValueStore) -> None:
        """Commit the timestamps if they changed (call before the BA is sent)."""
        if self.verifier is None:
            return
        current = self.verifier.last_timestamps()
        if current == self._saved_timestamps:
            return
        try:
            store.set_value(self.STATE_KEY, {str(k): v for k, v in current.items()})
            self._saved_timestamps = current
        except StoreError as exc:
            log.error("could not persist RFC 4285 timestamps: %s", exc)
