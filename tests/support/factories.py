"""Small deterministic builders shared by tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable


def counter_bytes(start: int = 1) -> Callable[[int], bytes]:
    """A deterministic ``random_bytes``: call k returns ``n`` octets of ``(start + k) & 0xFF``.

    Cores take randomness (sequence numbers, nonces, Kcn) as an injected callable; this one
    makes their choices repeatable.
    """
    counter = itertools.count(start)

    def random_bytes(n: int) -> bytes:
        return bytes([next(counter) & 0xFF]) * n

    return random_bytes
