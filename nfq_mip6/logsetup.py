"""Logging: stdlib ``logging`` on stderr, as text lines or JSON lines.

``setup_logging(level, fmt)`` configures the root logger once (calling it again, e.g. after a
SIGHUP reload, replaces the handler). ``level`` takes a level name (``debug`` … ``critical``)
or MIPL's ``DEBUGLEVEL`` number (0 → WARNING, 1 → INFO, ≥ 2 → DEBUG). ``binding_logger`` gives a
``LoggerAdapter`` that adds the binding's home address to every record (as ``hoa`` in JSON).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Final, TextIO

__all__ = ["JsonFormatter", "LogThrottle", "binding_logger", "level_from_name", "setup_logging"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_MARK: Final = "_nfq_mip6_handler"

# Attributes every LogRecord has; anything else was passed with ``extra=`` and goes to JSON.
_RECORD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def level_from_name(level: str | int) -> int:
    """``"debug"``/``"INFO"``/… or a MIPL ``DEBUGLEVEL`` (0, 1, ≥ 2) to a logging level."""
    if isinstance(level, int) or str(level).strip().isdigit():
        number = int(level)
        if number <= 0:
            return logging.WARNING
        return logging.INFO if number == 1 else logging.DEBUG
    name = str(level).strip().upper()
    if name == "WARN":
        name = "WARNING"
    value = logging.getLevelNamesMapping().get(name)
    if value is None:
        raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra`` keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(
    level: str | int = "INFO", fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Send the root logger to ``stream`` (stderr) as ``fmt`` ("text" or "json") at ``level``.

    Raises:
        ValueError: unknown level or format.
    """
    numeric = level_from_name(level)
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r} (text, json)")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _UTCFormatter(TEXT_FORMAT))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)


class _BindingAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return f"[{extra.get('hoa')}] {msg}", kwargs


def binding_logger(
    logger: logging.Logger, home_address: object
) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose messages start with ``[HoA]`` and carry ``hoa`` in JSON output."""
    return _BindingAdapter(logger, {"hoa": str(home_address)})


# Rate-limited logging for per-packet failures (a flood must not become a log flood):
# LogThrottle logs the first occurrence in full, then at most one summary line per `interval`
# seconds with how many occurrences it held back and the last one's text. The callers keep
# their own counters (send_errors …): the throttle only shapes the log.


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
