"""Token buckets (RFC 6275 §9.3.3 Binding Error rate limit, BU floods), now injected."""

from __future__ import annotations

import pytest

from nfq_mip6.security.ratelimit import RateLimiter, RateLimits, TokenBucket


def test_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.4)  # 0.8 token
    assert bucket.allow(0.5)  # 1 token
    assert not bucket.allow(0.5)
    assert [bucket.allow(100.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert not bucket.allow(10.5)
    assert bucket.allow(11.0)


def test_zero_rate_only_burst() -> None:
    bucket = TokenBucket(rate=0.0, burst=2.0)
    assert [bucket.allow(t) for t in (0.0, 1.0, 1e6)] == [True, True, False]


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1.0), (1.0, 0.5)])
def test_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


def test_limiter_is_per_key_and_counts() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=2.0)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)  # another source is not affected
    assert (limiter.allowed, limiter.dropped) == (3, 1)


def test_limiter_memory_is_bounded() -> None:
    limiter: RateLimiter[int] = RateLimiter(rate=1.0, burst=1.0, max_tracked=100)
    for source in range(10_000):
        limiter.allow(source, 0.0)
    assert len(limiter) == 100
    assert not limiter.allow(9_999, 0.0)  # recent sources are remembered


def test_forget_idle() -> None:
    limiter: RateLimiter[str] = RateLimiter(rate=1.0, burst=2.0)
    limiter.allow("a", 0.0)
    limiter.allow("b", 0.0)
    limiter.allow("b", 0.0)
    assert limiter.forget_idle(1.0) == 1  # "a" is full again, "b" is not
    assert limiter.forget_idle(2.0) == 1
    assert len(limiter) == 0


def test_default_limits_are_sane() -> None:
    limits = RateLimits()
    assert limits.bu_per_source_burst >= limits.bu_per_source_rate > 0
    assert limits.binding_error_rate > 0 and limits.icmp_error_rate > 0
