"""Rate-limited logging for per-packet failures (a flood must not become a log flood).

:class:`LogThrottle` logs the first occurrence in full, then at most one summary line per
``interval`` seconds with how many occurrences it held back and the last one's text. The
callers keep their own counters (``send_errors`` …): the throttle only shapes the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """One logger call site, throttled (not thread-safe: the agent loop is single-threaded)."""

    __slots__ = (
        "_clock",
        "_last_text",
        "_suppressed",
        "_window_start",
        "interval",
        "level",
        "logger",
        "suppressed_total",
        "what",
    )

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        level: int = logging.WARNING,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what  # e.g. "sending a packet failed", used in the summary line
        self.level = level
        self.interval = interval
        self._clock = clock
        self._window_start: float | None = None
        self._suppressed = 0
        self._last_text = ""
        self.suppressed_total = 0

    def log(self, message: str, *args: object) -> None:
        """Log ``message % args`` now, or count it towards the next summary line."""
        now = self._clock()
        if self._window_start is not None and now - self._window_start < self.interval:
            self._suppressed += 1
            self.suppressed_total += 1
            self._last_text = message % args if args else message
            return
        if self._suppressed:
            self._suppressed += 1
            self.suppressed_total += 1
            self._last_text = message % args if args else message
            self._summary(now)
        else:
            self.logger.log(self.level, message, *args)
        self._window_start = now

    def flush(self) -> None:
        """Write the pending summary, if any (timer tick after the window, stop)."""
        if self._suppressed and self._window_start is not None:
            now = self._clock()
            if now - self._window_start >= self.interval:
                self._summary(now)
                self._window_start = now

    def close(self) -> None:
        """Write the pending summary whatever the window (agent stop)."""
        if self._suppressed:
            self._summary(self._clock())

    def _summary(self, now: float) -> None:
        assert self._window_start is not None
        self.logger.log(
            self.level,
            "%s %d more time(s) in the last %.0f s (last: %s)",
            self.what, self._suppressed, now - self._window_start, self._last_text,
        )  # fmt: skip
        self._suppressed = 0
