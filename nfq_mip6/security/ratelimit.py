"""Token-bucket rate limits; pure, ``now`` (monotonic seconds) is always an argument.

Where the agent uses them:

* **Binding Updates per source address** at the HA: each BU costs an HMAC, possibly a proxy
  DAD and kernel route changes, so a flood from one source must not starve the others.
* **Binding Errors** (RFC 6275 §9.3.3: "the node MUST limit the rate at which it sends
  Binding Error messages", same rule as ICMPv6 errors) and **ICMPv6 errors** (RFC 4443
  §2.4(f)): one global bucket each, so forged packets cannot turn the HA into a reflector.

A limit that refuses a packet is a counted, logged drop in the runtime, never an exception.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

DEFAULT_MAX_TRACKED: Final = 4096
"""Sources remembered at most by a :class:`RateLimiter` (least recently used evicted)."""

_Key = TypeVar("_Key", bound=Hashable)


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; a full bucket at creation.

    ``allow(now)`` takes one token when there is one. Time going backwards never adds tokens.
    """

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 1:
            raise ValueError(f"token bucket needs rate ≥ 0 and burst ≥ 1, got {self}")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def allow(self, now: float, cost: float = 1.0) -> bool:
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def full_at(self, now: float) -> float:
        """When the bucket will be full again (for forgetting idle sources)."""
        self._refill(now)
        if self.rate == 0:
            return now if self.tokens >= self.burst else float("inf")
        return now + (self.burst - self.tokens) / self.rate


class RateLimiter(Generic[_Key]):
    """One :class:`TokenBucket` per key (e.g. source address), bounded memory.

    Buckets are created full on first sight; the least recently used one is forgotten when
    more than ``max_tracked`` keys are seen (forgetting a key only ever makes it *more*
    permissive, never blocks a legitimate sender). ``allowed``/``dropped`` count decisions.
    """

    def __init__(
        self, rate: float, burst: float, *, max_tracked: int = DEFAULT_MAX_TRACKED
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be ≥ 1")
        TokenBucket(rate, burst)  # validates
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[_Key, TokenBucket] = OrderedDict()
        self.allowed = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: _Key, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.allow(now):
            self.allowed += 1
            return True
        self.dropped += 1
        return False

    def forget_idle(self, now: float) -> int:
        """Drop buckets that are full again (they carry no information); returns how many."""
        idle = [key for key, bucket in self._buckets.items() if bucket.full_at(now) <= now]
        for key in idle:
            del self._buckets[key]
        return len(idle)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The agent's limits (per second, burst). Defaults are generous for real MNs (a BU
    every few seconds at most) and tight for floods."""

    bu_per_source_rate: float = 10.0
    bu_per_source_burst: float = 20.0
    binding_error_rate: float = 10.0
    binding_error_burst: float = 20.0
    icmp_error_rate: float = 10.0
    icmp_error_burst: float = 20.0
    auth_failure_ba_rate: float = 20.0
    auth_failure_ba_burst: float = 40.0
