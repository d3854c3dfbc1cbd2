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
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

__all__ = ["JsonFormatter", "binding_logger", "level_from_name", "setup_logging"]

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
